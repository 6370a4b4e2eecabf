//! The mux's child side: the child's answers, requests and notifications on their way to the
//! sessions.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{Asked, Handshake, Mux, Origin, Out, Pending, initialize_reply, text};
use crate::mcp::{
    asks::SUBSCRIPTION_ID_KEY,
    jsonrpc::{self, Envelope, Kind},
    version,
};

impl Mux {
    /// One line from the child.
    pub fn from_child(&mut self, line: &[u8], out: &mut Vec<Out>) {
        let kind = match jsonrpc::classify(line) {
            Ok(k) => k,
            Err(reason) => {
                tracing::warn!(%reason, "shared child sent an invalid message; skipped");
                return;
            }
        };
        match kind {
            Kind::Response { id } => self.child_response(&id, line, out),
            Kind::Request { id, method } => self.child_request(&id, &method, line, out),
            Kind::Notification { method } => self.child_notification(&method, line, out),
        }
    }

    /// The child wrote a line over the limit; answer its request with an error if it was one.
    pub fn child_too_long(&mut self, prefix: &[u8], len: usize, limit: usize, out: &mut Vec<Out>) {
        let Some(n) = jsonrpc::id_from_prefix(prefix).and_then(|id| id.parse::<u64>().ok()) else {
            return;
        };
        if let Some(Pending {
            origin: Origin::Client { session, id },
            ..
        }) = self.forget(n)
        {
            if let Some(m) = self.members.get_mut(&session) {
                m.requests.remove(&id);
            }
            let msg =
                format!("the response was {len} bytes, over the gateway's limit of {limit} bytes");
            out.push(Out::Session(
                session,
                jsonrpc::error_response(&id, jsonrpc::INTERNAL_ERROR, &msg),
            ));
        }
    }

    fn child_response(&mut self, id: &str, line: &[u8], out: &mut Vec<Out>) {
        let Some(p) = id.parse::<u64>().ok().and_then(|n| self.forget(n)) else {
            tracing::debug!(
                id,
                "shared child answered an unknown or cancelled request; dropped"
            );
            return;
        };
        let Some(env) = Envelope::parse(line) else {
            return;
        };
        match p.origin {
            Origin::Client { session, id } => {
                if let Some(m) = self.members.get_mut(&session) {
                    m.requests.remove(&id);
                }
                out.push(Out::Session(session, text(env.render(&[("id", &id)]))));
            }
            Origin::Handshake => self.handshake_answered(&env, out),
            Origin::Replay => {
                self.handshake_since = None;
                if env.get("error").is_some() {
                    tracing::warn!("restarted child refused the replayed initialize; carrying on");
                }
                self.out_now_initialized(out);
                let uris: Vec<String> = self.subscriptions.keys().cloned().collect();
                for uri in uris {
                    let n = self.internal();
                    out.push(Out::Child(jsonrpc::message(
                        Some(&n.to_string()),
                        "resources/subscribe",
                        Some(&json!({"uri": uri})),
                    )));
                }
                self.ready = true;
                self.release_held(out);
            }
            Origin::Internal => {}
        }
    }

    fn out_now_initialized(&self, out: &mut Vec<Out>) {
        out.push(Out::Child(jsonrpc::message(
            None,
            "notifications/initialized",
            None,
        )));
    }

    fn handshake_answered(&mut self, env: &Envelope, out: &mut Vec<Out>) {
        self.handshake_since = None;
        let Handshake::InFlight { params, waiters } =
            std::mem::replace(&mut self.handshake, Handshake::NotStarted)
        else {
            return;
        };
        let result = env
            .get("result")
            .and_then(|r| serde_json::from_str::<Map<String, Value>>(r.get()).ok());
        match result {
            Some(result) => {
                let version = result
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(version::NEWEST_HANDSHAKE)
                    .to_string();
                // Before any session hears back, so no session request can overtake it.
                self.out_now_initialized(out);
                for w in &waiters {
                    out.push(Out::Session(
                        w.session,
                        initialize_reply(w, &result, &version),
                    ));
                }
                self.handshake = Handshake::Done {
                    params,
                    result,
                    version,
                };
            }
            None => {
                // Not cached: the next initialize tries again.
                for w in &waiters {
                    out.push(Out::Session(w.session, text(env.render(&[("id", &w.id)]))));
                }
            }
        }
    }

    fn child_request(&mut self, id: &str, method: &str, line: &[u8], out: &mut Vec<Out>) {
        if method == "ping" {
            // The gateway is the child's peer; it is alive.
            out.push(Out::Child(Bytes::from(jsonrpc::result_response(id, "{}"))));
            return;
        }
        let Some(session) = self.route(Some(method)) else {
            let msg = format!("no connected client can answer {method}");
            out.push(Out::Child(Bytes::from(jsonrpc::error_response(
                id,
                jsonrpc::INTERNAL_ERROR,
                &msg,
            ))));
            return;
        };
        if self.asked.contains_key(id) {
            // Its earlier request with this id is still open: the id cannot name both.
            let msg = format!("request id {id} is already in use by an open request");
            out.push(Out::Child(Bytes::from(jsonrpc::error_response(
                id,
                jsonrpc::INVALID_REQUEST,
                &msg,
            ))));
            return;
        }
        self.asked.insert(id.to_string(), Asked { session });
        if let Some(m) = self.members.get_mut(&session) {
            m.asked.insert(id.to_string());
        }
        out.push(Out::Session(session, text(line.to_vec())));
    }

    fn child_notification(&mut self, method: &str, line: &[u8], out: &mut Vec<Out>) {
        let Some(env) = Envelope::parse(line) else {
            return;
        };
        if self.on_listen_stream(&env, out) {
            return;
        }
        match method {
            "notifications/progress" => {
                let Some(mut params) = env.params() else {
                    return;
                };
                let token = params["progressToken"].to_string();
                let Some((session, original)) = self.progress.get(&token) else {
                    tracing::debug!(token, "progress for an unknown token; dropped");
                    return;
                };
                let session = *session;
                params["progressToken"] = serde_json::from_str(original).unwrap_or(Value::Null);
                let params = params.to_string();
                out.push(Out::Session(
                    session,
                    text(env.render(&[("params", &params)])),
                ));
            }
            "notifications/cancelled" => {
                // The child withdraws one of its own requests to a client.
                let Some(params) = env.params() else {
                    return;
                };
                let child_id = params["requestId"].to_string();
                let Some(a) = self.asked.remove(&child_id) else {
                    return;
                };
                if let Some(m) = self.members.get_mut(&a.session) {
                    m.asked.remove(&child_id);
                }
                out.push(Out::Session(a.session, text(line.to_vec())));
            }
            "notifications/resources/updated" => {
                let uri = env
                    .params()
                    .and_then(|p| p["uri"].as_str().map(str::to_string));
                let Some(subscribers) = uri.and_then(|u| self.subscriptions.get(&u)) else {
                    return;
                };
                let message = String::from_utf8_lossy(line).into_owned();
                for s in subscribers {
                    out.push(Out::Session(*s, message.clone()));
                }
            }
            m if m.ends_with("/list_changed") => self.broadcast(line, out),
            _ => match self.route(None) {
                Some(session) => out.push(Out::Session(
                    session,
                    String::from_utf8_lossy(line).into_owned(),
                )),
                None => self.broadcast(line, out),
            },
        }
    }

    /// A notification of protocol revision 2026-07-28 that names the `subscriptions/listen`
    /// request it belongs to (`_meta`'s subscription id, a child-side id here) goes to that
    /// request's session only, under the id the session gave it. True when it was one.
    fn on_listen_stream(&self, env: &Envelope, out: &mut Vec<Out>) -> bool {
        let Some(mut params) = env.params() else {
            return false;
        };
        let Some(n) = params["_meta"][SUBSCRIPTION_ID_KEY].as_u64() else {
            return false;
        };
        let Some(Pending {
            origin: Origin::Client { session, id },
            ..
        }) = self.pending.get(&n)
        else {
            // Its stream is gone (or the id is not one of ours): nobody listens.
            return params["_meta"].get(SUBSCRIPTION_ID_KEY).is_some();
        };
        params["_meta"][SUBSCRIPTION_ID_KEY] = serde_json::from_str(id).unwrap_or(Value::Null);
        let params = params.to_string();
        out.push(Out::Session(
            *session,
            text(env.render(&[("params", &params)])),
        ));
        true
    }

    fn broadcast(&self, line: &[u8], out: &mut Vec<Out>) {
        let message = String::from_utf8_lossy(line).into_owned();
        for s in self.members.keys() {
            out.push(Out::Session(*s, message.clone()));
        }
    }
}
