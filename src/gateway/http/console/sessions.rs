//! The console's sessions view: the open sessions of this replica, and ending one.
//!
//! Owns: the sessions page's data. Must not touch: how sessions are served.

use serde_json::{Value, json};
use warp::{http::StatusCode, reply::Response};

use super::Admin;
use crate::gateway::{
    http::{
        reply::{error_reply, json_reply},
        state::Http,
    },
    session::CloseCause,
};

impl Http {
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
