//! `/health` (JSON, for load balancers and people) and `/metrics` (Prometheus text).
//!
//! Owns: how the gateway reports itself. Must not touch: admission (the router applies the
//! policy before these run).

use serde_json::json;
use warp::{
    http::{HeaderValue, StatusCode},
    reply::Response,
};

use super::{
    reply::{json_reply, reply},
    state::Http,
};

impl Http {
    /// 200 when sessions can be served; 503 while shutting down or when no shared child is
    /// ready (all restarting). "degraded" (with a `reason`) when some shared children are
    /// restarting or, in a cluster, when Redis is unreachable.
    pub(super) fn health(&self) -> Response {
        let (code, body) = self.health_view();
        json_reply(code, body)
    }

    /// What `/health` says, and its status code (the console's overview shows the same).
    pub(super) fn health_view(&self) -> (StatusCode, serde_json::Value) {
        let shutting_down = self.is_draining();
        let default = self.registry.serving(None);
        let backend = default
            .as_ref()
            .map(|s| s.sessions.backend_status())
            .unwrap_or_default();
        let shared = backend.slots;
        let ready = backend.ready;
        let (servers, failed) = self.registry.status();
        let cluster = self.cluster.as_ref().map(|c| c.status());
        let cluster_reason = cluster.as_ref().and_then(|(_, reason)| reason.clone());
        let (status, reason) = if shutting_down {
            ("shutting_down", None)
        } else {
            match ready {
                Some(0) => ("unavailable", Some("no shared child is ready".to_string())),
                Some(n) if n < shared.len() => (
                    "degraded",
                    Some(format!(
                        "{} of {} shared children restarting",
                        shared.len() - n,
                        shared.len()
                    )),
                ),
                _ if cluster_reason.is_some() => ("degraded", cluster_reason),
                _ if !failed.is_empty() => (
                    "degraded",
                    Some(format!("not started: {}", failed.join(", "))),
                ),
                _ => ("ok", None),
            }
        };
        let mut body = json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "backend": default.as_ref().map(|s| s.config.backend.as_str()),
            "sessions": default.as_ref().map_or(0, |s| s.sessions.len()),
            "max_sessions": default.as_ref().map_or(0, |s| s.config.max_sessions),
            "children_alive": backend.children_alive,
        });
        if !shared.is_empty() {
            body["shared_children"] = serde_json::Value::Array(shared);
        }
        if let Some(pool) = backend.pool {
            body["pool"] = pool;
        }
        if let Some(d) = &default {
            body["stateless"] = d.stateless.status();
        }
        if self.config.servers_file.is_some() {
            body["servers"] = servers;
            body["servers_file"] = self.registry.file_status().unwrap_or_default();
        }
        if let Some(keys) = self.registry.keys_status() {
            body["api_keys"] = keys;
        }
        if let Some(reason) = reason {
            body["reason"] = reason.into();
        }
        if let Some((cluster, _)) = cluster {
            body["cluster"] = cluster;
        }
        body["sandbox"] = self.registry.sandbox_status();
        body["uptime_s"] = self.started.elapsed().as_secs().into();
        let code = if matches!(status, "shutting_down" | "unavailable") {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        (code, body)
    }

    pub(super) fn metrics_reply(&self) -> Response {
        if let Some(ready) = self
            .registry
            .serving(None)
            .and_then(|s| s.sessions.backend_status().ready)
        {
            self.metrics.shared_children_ready.set(ready as i64);
        }
        self.metrics.runtime_tasks.set(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as i64,
        );
        let mut r = reply(StatusCode::OK, self.metrics.encode());
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        r
    }
}
