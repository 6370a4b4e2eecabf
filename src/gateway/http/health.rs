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
    /// ready (all restarting). "degraded" when some shared children are restarting.
    pub(super) fn health(&self) -> Response {
        let shutting_down = self.is_shutting_down();
        let backend = self.sessions.backend_status();
        let shared = backend.slots;
        let ready = backend.ready;
        let status = if shutting_down {
            "shutting_down"
        } else {
            match ready {
                Some(0) => "unavailable",
                Some(n) if n < shared.len() => "degraded",
                _ => "ok",
            }
        };
        let mut body = json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "backend": self.config.backend.as_str(),
            "sessions": self.sessions.len(),
            "max_sessions": self.config.max_sessions,
            "children_alive": backend.children_alive,
        });
        if !shared.is_empty() {
            body["shared_children"] = serde_json::Value::Array(shared);
        }
        json_reply(
            if matches!(status, "shutting_down" | "unavailable") {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            },
            body,
        )
    }

    pub(super) fn metrics_reply(&self) -> Response {
        if let Some(ready) = self.sessions.backend_status().ready {
            self.metrics.shared_children_ready.set(ready as i64);
        }
        let mut r = reply(StatusCode::OK, self.metrics.encode());
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        r
    }
}
