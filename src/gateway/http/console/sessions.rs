//! The console's views of every replica: the open sessions (and ending one wherever it is
//! held) and the recent calls. With `--redis`, the replica the page asks asks the others (with the same cookie and
//! the cluster secret, so each checks the login itself); a replica that does not answer in time
//! is named, not waited for.
//!
//! Owns: the sessions page's data. Must not touch: how sessions are served.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use warp::{
    http::{HeaderMap, Method, StatusCode},
    reply::Response,
};

use super::{Admin, COOKIE, CSRF_HEADER, csrf_of};
use crate::gateway::{
    http::{
        forward::{FORWARDED_BY, PEER_HEADER},
        reply::{error_reply, json_reply},
        state::Http,
    },
    session::CloseCause,
};

/// How long the console waits for another replica's view.
const ASK_PEER: Duration = Duration::from_secs(3);

impl Http {
    /// `GET /console/api/sessions`: this replica's sessions, and with `--redis` (unless another
    /// replica is asking) every other replica's.
    pub(super) async fn sessions_reply(&self, headers: &HeaderMap, admin: &Admin) -> Response {
        let here = self.cluster.as_ref().map(|c| c.replica().to_string());
        let mut sessions = self.session_views();
        for s in &mut sessions {
            s["replica"] = json!(here);
        }
        let unreachable = self
            .gather(
                "/console/api/sessions",
                "sessions",
                headers,
                admin,
                &mut sessions,
            )
            .await;
        json_reply(
            StatusCode::OK,
            json!({"replica": here, "sessions": sessions, "unreachable": unreachable}),
        )
    }

    /// `GET /console/api/calls`: the recent lines of this replica's audit log, and with
    /// `--redis` (unless another replica is asking) the others', newest last.
    pub(super) async fn calls_reply(&self, headers: &HeaderMap, admin: &Admin) -> Response {
        let audit = self.registry.audit.as_ref();
        let mut calls = audit.map(|a| a.recent()).unwrap_or_default();
        let unreachable = self
            .gather("/console/api/calls", "calls", headers, admin, &mut calls)
            .await;
        // RFC 3339 times in UTC sort as text.
        calls.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
        json_reply(
            StatusCode::OK,
            json!({"audit": audit.is_some(), "calls": calls, "unreachable": unreachable}),
        )
    }

    /// `DELETE /console/api/sessions/<id>`: ends it here, or on the replica that holds it.
    pub(super) async fn end_session_reply(
        &self,
        id: &str,
        headers: &HeaderMap,
        admin: &Admin,
    ) -> Response {
        let here = self.end_session(id, admin);
        if here.status() != StatusCode::NOT_FOUND || headers.contains_key(PEER_HEADER) {
            return here;
        }
        let path = format!("/console/api/sessions/{id}");
        for (replica, answer) in self.ask_peers(Method::DELETE, &path, admin).await {
            if let Ok((StatusCode::OK, _)) = answer {
                return json_reply(StatusCode::OK, json!({"ended": id, "replica": replica}));
            }
        }
        here
    }

    /// Adds the other replicas' `key` lists (from `GET path`) to `into`, unless another replica
    /// is asking; the replicas not heard from, with why.
    async fn gather(
        &self,
        path: &str,
        key: &str,
        headers: &HeaderMap,
        admin: &Admin,
        into: &mut Vec<Value>,
    ) -> Vec<String> {
        let mut unreachable = vec![];
        if headers.contains_key(PEER_HEADER) {
            return unreachable;
        }
        for (replica, answer) in self.ask_peers(Method::GET, path, admin).await {
            match answer {
                Ok((StatusCode::OK, mut body)) => {
                    if let Some(list) = body[key].as_array_mut() {
                        into.append(list);
                    }
                }
                Ok((status, _)) => unreachable.push(format!("{replica} (HTTP {status})")),
                Err(e) => unreachable.push(format!("{replica} ({e})")),
            }
        }
        unreachable
    }

    /// Sends the same console request to every other replica at once: each one's answer.
    async fn ask_peers(
        &self,
        method: Method,
        path: &str,
        admin: &Admin,
    ) -> Vec<(String, Result<(StatusCode, Value), String>)> {
        let (Some(cluster), Some(secret)) = (
            self.cluster.as_ref(),
            self.cluster.as_ref().and_then(|c| c.secret()),
        ) else {
            return vec![];
        };
        let cookie = format!("{COOKIE}={}", super::cookie_value(&admin.credential));
        let csrf = csrf_of(&admin.credential);
        let headers = [
            ("cookie", cookie.as_str()),
            (CSRF_HEADER, csrf.as_str()),
            (PEER_HEADER, secret.as_str()),
            (FORWARDED_BY, cluster.replica()),
        ];
        let peers = cluster.others();
        let asked = peers.iter().map(|p| {
            let url = format!("{}{path}", p.url);
            let (method, headers) = (method.clone(), &headers);
            async move { self.forwarder.ask(method, &url, headers, ASK_PEER).await }
        });
        let answers = join_all(asked).await;
        peers.into_iter().map(|p| p.replica).zip(answers).collect()
    }

    /// Every open session of this replica, with its server.
    pub(super) fn session_views(&self) -> Vec<Value> {
        let mut all = vec![];
        for served in self.registry.all() {
            for mut view in served.sessions.views() {
                view["server"] = json!(served.name());
                all.push(view);
            }
        }
        all
    }

    /// Ends session `id` (its client's next request gets 404).
    pub(super) fn end_session(&self, id: &str, admin: &Admin) -> Response {
        let Ok(uuid) = id.parse::<uuid::Uuid>() else {
            return error_reply(StatusCode::NOT_FOUND, "no such session");
        };
        for served in self.registry.all() {
            if served.sessions.get(&uuid).is_some() {
                served.sessions.close(&uuid, CloseCause::Ended);
                tracing::info!(session = id, by = %admin.subject, "session ended from the console");
                return json_reply(StatusCode::OK, json!({"ended": id}));
            }
        }
        error_reply(
            StatusCode::NOT_FOUND,
            "no such session on this replica (it may have ended, or be held by another replica)",
        )
    }
}
