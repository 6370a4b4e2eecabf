//! The mux's client side: a session's requests, notifications and answers on their way to the
//! child, and a session leaving.

use std::time::Instant;

use bytes::Bytes;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    Caps, Handshake, MAX_HELD, Mux, Origin, Out, Pending, Waiter, child_initialize_params,
    initialize_reply, uri_param,
};
use crate::mcp::jsonrpc::{self, Envelope, Kind};

impl Mux {
    /// One message from `session` (already classified).
    pub fn from_client(&mut self, session: Uuid, line: &[u8], kind: &Kind, out: &mut Vec<Out>) {
        if !self.members.contains_key(&session) {
            return;
        }
        self.last_active = Some(session);
        match kind {
            Kind::Request { id, method } => match method.as_str() {
                "initialize" => self.client_initialize(session, id, line, out),
                "resources/subscribe" => self.client_subscribe(session, id, line, out),
                "resources/unsubscribe" => self.client_unsubscribe(session, id, line, out),
                _ => self.client_request(session, id, line, out),
            },
            Kind::Notification { method } => match method.as_str() {
                // The gateway sends its own right after the one real handshake.
                "notifications/initialized" => {}
                "notifications/cancelled" => self.client_cancel(session, line, out),
                _ => self.send_child(Bytes::copy_from_slice(line), out),
            },
            Kind::Response { id } => self.client_response(session, id, line, out),
        }
    }

    fn client_request(&mut self, session: Uuid, id: &str, line: &[u8], out: &mut Vec<Out>) {
        if !self.ready && self.held.len() >= MAX_HELD {
            out.push(Out::Session(
                session,
                jsonrpc::error_response(
                    id,
                    jsonrpc::INTERNAL_ERROR,
                    "the MCP server is restarting; try again shortly",
                ),
            ));
            return;
        }
        let Some(env) = Envelope::parse(line) else {
            return;
        };
        let n = self.mint();
        let n_raw = n.to_string();
        let mut progress = None;
        let mut params_raw = None;
        if let Some(raw) = env.get("params")
            && raw.get().contains("progressToken")
            && let Ok(mut params) = serde_json::from_str::<Value>(raw.get())
            && let Some(token) = params.pointer_mut("/_meta/progressToken")
        {
            let original = token.to_string();
            *token = json!(n);
            self.progress.insert(n_raw.clone(), (session, original));
            progress = Some(n_raw.clone());
            params_raw = Some(params.to_string());
        }
        let mut replace = vec![("id", n_raw.as_str())];
        if let Some(p) = &params_raw {
            replace.push(("params", p.as_str()));
        }
        let bytes = Bytes::from(env.render(&replace));
        self.seq += 1;
        self.pending.insert(
            n,
            Pending {
                origin: Origin::Client {
                    session,
                    id: id.to_string(),
                },
                seq: self.seq,
                progress,
            },
        );
        if let Some(m) = self.members.get_mut(&session) {
            m.requests.insert(id.to_string(), n);
        }
        self.send_child(bytes, out);
    }

    fn client_cancel(&mut self, session: Uuid, line: &[u8], out: &mut Vec<Out>) {
        let Some(raw) = jsonrpc::cancelled_request_id(line) else {
            return;
        };
        let Some(n) = self
            .members
            .get_mut(&session)
            .and_then(|m| m.requests.remove(&raw))
        else {
            // Already answered (or never sent): nothing to cancel.
            return;
        };
        self.forget(n);
        let Some(env) = Envelope::parse(line) else {
            return;
        };
        let mut params = env.params().unwrap_or_else(|| json!({}));
        params["requestId"] = json!(n);
        let params = params.to_string();
        self.send_child(Bytes::from(env.render(&[("params", &params)])), out);
    }

    fn client_response(&mut self, session: Uuid, id: &str, line: &[u8], out: &mut Vec<Out>) {
        // Only the session that was asked may answer.
        if self.asked.get(id).is_none_or(|a| a.session != session) {
            tracing::debug!(session = %session, id, "response to an unknown request; dropped");
            return;
        }
        self.asked.remove(id);
        if let Some(m) = self.members.get_mut(&session) {
            m.asked.remove(id);
        }
        self.send_child(Bytes::copy_from_slice(line), out);
    }

    fn client_initialize(&mut self, session: Uuid, id: &str, line: &[u8], out: &mut Vec<Out>) {
        let params = Envelope::parse(line)
            .and_then(|e| e.params())
            .unwrap_or_else(|| json!({}));
        if let Some(m) = self.members.get_mut(&session) {
            m.caps = Some(Caps::from_params(&params));
        }
        let waiter = Waiter {
            session,
            id: id.to_string(),
            requested: params["protocolVersion"].as_str().map(str::to_string),
        };
        match &mut self.handshake {
            Handshake::Done {
                result, version, ..
            } => {
                let reply = initialize_reply(&waiter, result, version);
                out.push(Out::Session(session, reply));
            }
            Handshake::InFlight { waiters, .. } => waiters.push(waiter),
            Handshake::NotStarted => {
                let params = child_initialize_params(params, self.gateway_version);
                let n = self.mint();
                self.seq += 1;
                self.pending.insert(
                    n,
                    Pending {
                        origin: Origin::Handshake,
                        seq: self.seq,
                        progress: None,
                    },
                );
                let line = jsonrpc::message(Some(&n.to_string()), "initialize", Some(&params));
                self.handshake = Handshake::InFlight {
                    params,
                    waiters: vec![waiter],
                };
                self.handshake_since = Some(Instant::now());
                self.send_child(line, out);
            }
        }
    }

    fn client_subscribe(&mut self, session: Uuid, id: &str, line: &[u8], out: &mut Vec<Out>) {
        let Some(uri) = uri_param(line) else {
            return self.client_request(session, id, line, out);
        };
        let subscribers = self.subscriptions.entry(uri.clone()).or_default();
        let first = subscribers.is_empty();
        subscribers.insert(session);
        if let Some(m) = self.members.get_mut(&session) {
            m.subscriptions.insert(uri);
        }
        if first {
            self.client_request(session, id, line, out);
        } else {
            // The child already sends this URI's updates; the gateway fans them out.
            out.push(Out::Session(session, jsonrpc::result_response(id, "{}")));
        }
    }

    fn client_unsubscribe(&mut self, session: Uuid, id: &str, line: &[u8], out: &mut Vec<Out>) {
        let Some(uri) = uri_param(line) else {
            return self.client_request(session, id, line, out);
        };
        if let Some(m) = self.members.get_mut(&session) {
            m.subscriptions.remove(&uri);
        }
        let others_remain = match self.subscriptions.get_mut(&uri) {
            Some(set) => {
                set.remove(&session);
                !set.is_empty()
            }
            None => false,
        };
        if others_remain {
            out.push(Out::Session(session, jsonrpc::result_response(id, "{}")));
        } else {
            self.subscriptions.remove(&uri);
            self.client_request(session, id, line, out);
        }
    }

    // ---- a session leaves ------------------------------------------------------------------

    /// `session` is gone: cancel its requests toward the child, answer the child's questions to
    /// it, drop its subscriptions.
    pub fn detach(&mut self, session: Uuid, out: &mut Vec<Out>) {
        let Some(member) = self.members.remove(&session) else {
            return;
        };
        if self.last_active == Some(session) {
            self.last_active = None;
        }
        for n in member.requests.into_values() {
            self.forget(n);
            let params = json!({"requestId": n, "reason": "the client disconnected"});
            self.send_child(
                jsonrpc::message(None, "notifications/cancelled", Some(&params)),
                out,
            );
        }
        for child_id in member.asked {
            if self.asked.remove(&child_id).is_some() {
                let error = jsonrpc::error_response(
                    &child_id,
                    jsonrpc::INTERNAL_ERROR,
                    "the client this request was routed to has disconnected",
                );
                self.send_child(Bytes::from(error), out);
            }
        }
        for uri in member.subscriptions {
            let last = self.subscriptions.get_mut(&uri).is_some_and(|set| {
                set.remove(&session);
                set.is_empty()
            });
            if last {
                self.subscriptions.remove(&uri);
                let n = self.internal();
                let line = jsonrpc::message(
                    Some(&n.to_string()),
                    "resources/unsubscribe",
                    Some(&json!({"uri": uri})),
                );
                self.send_child(line, out);
            }
        }
        if let Handshake::InFlight { waiters, .. } = &mut self.handshake {
            waiters.retain(|w| w.session != session);
        }
    }
}
