//! A federated session: the client's messages routed to members, the members' messages back.
//!
//! Ids: every request the session sends a member carries an id of the session's own (a number),
//! kept in `pending` with what to do with the answer — relay it to the client under the
//! client's id, or hand it to the gateway's own waiting request (initialize, a list). A
//! member's requests to the client (sampling, elicitation, roots) get a fresh number too, kept
//! in `asks`, so two members asking at the same moment with the same id never meet; the
//! client's answer goes back to the member that asked, under that member's id. Progress tokens
//! are the client's own and reach only the member its request went to, so they pass unchanged.
//!
//! Owns: routing within one session. Must not touch: how a member is reached (see [`member`]).

use parking_lot::{Mutex, RwLock};
use std::{
    collections::HashMap,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{
    Group,
    catalog::{ListKind, Route},
    slot::{Places, Slot, Stamps},
};
use crate::{
    gateway::backend::{Client, CloseCause, ForwardError, Link},
    mcp::{
        asks,
        jsonrpc::{self, Envelope, Kind},
        splice,
    },
};

/// What to do with a member's answer.
pub(super) enum Pending {
    /// A client's request (relayed at `since`): the answer goes to the client under its id.
    Relay {
        client_id: String,
        since: std::time::Instant,
    },
    /// The gateway's own request: the answer (`Ok(result)` or `Err(error)`) goes to the waiter.
    Ask(oneshot::Sender<Result<Value, Value>>),
}

#[derive(Default)]
pub(super) struct Routing {
    /// Member index and the session's id toward it → what to do with its answer (a client's
    /// cancellation finds its request here by the client's id: rare, so scanned).
    pub pending: HashMap<(usize, u64), Pending>,
    /// The id a member's request carries toward the client → its member and its own id.
    pub asks: HashMap<String, (usize, String)>,
    /// The latest merged names of each list → member and own name.
    pub routes: HashMap<ListKind, HashMap<String, Route>>,
    /// The latest answer to each list.
    pub answers: HashMap<ListKind, Answer>,
}

/// A merged list as last answered, with the members' stamps it was made from.
#[derive(Clone)]
pub(super) struct Answer {
    pub stamps: Stamps,
    /// The whole list's result, ready to send.
    pub body: Arc<str>,
    pub items: Arc<Vec<Value>>,
}

pub(super) struct FedSession {
    pub group: Arc<Group>,
    /// The session as the table knows it, held (as every backend holds its client) until the
    /// session is released.
    client: Mutex<Option<Arc<dyn Client>>>,
    pub env: Vec<(String, String)>,
    /// A place per member (see [`Places`]); routes and ids name members by their place.
    pub places: RwLock<Places>,
    /// The client's `initialize` params (what each member is initialized with).
    pub init: Mutex<Option<Value>>,
    /// The client sent `notifications/initialized`.
    pub initialized: AtomicBool,
    /// The client's `initialize` has been answered (later arrivals are announced).
    pub introduced: AtomicBool,
    pub routing: Mutex<Routing>,
    next_id: AtomicU64,
    pub closed: CancellationToken,
    /// `closed` as a flag, for the per-message check (the token's own check takes a lock).
    ended: AtomicBool,
    /// Itself, for tasks and member clients.
    pub me: Weak<FedSession>,
}

pub(super) fn open(
    group: Arc<Group>,
    client: Arc<dyn Client>,
    env: &[(String, String)],
) -> Box<dyn Link> {
    let members = group.roster.members();
    let session = Arc::new_cyclic(|me| FedSession {
        places: RwLock::new(Places::new(&members)),
        group,
        client: Mutex::new(Some(client)),
        env: env.to_vec(),
        init: Mutex::new(None),
        initialized: AtomicBool::new(false),
        introduced: AtomicBool::new(false),
        routing: Mutex::default(),
        next_id: AtomicU64::new(1),
        closed: CancellationToken::new(),
        ended: AtomicBool::new(false),
        me: me.clone(),
    });
    session.group.roster.join(&session);
    // A reload between reading the members and joining is taken now.
    let now = session.group.roster.members();
    if !Arc::ptr_eq(&now, &members) {
        session.adopt(&now);
    }
    Box::new(FedLink { session })
}

/// A JSON-RPC error object's message, for logs and for errors the client sees.
pub(super) fn error_text(error: &Value) -> String {
    error
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), str::to_string)
}

impl FedSession {
    pub fn client(&self) -> Option<Arc<dyn Client>> {
        self.client.lock().clone()
    }

    /// Member place `index`.
    pub fn slot(&self, index: usize) -> Arc<Slot> {
        self.places.read().all[index].clone()
    }

    /// The current members' places, in the group's order.
    pub fn active(&self) -> Vec<(usize, Arc<Slot>)> {
        let places = self.places.read();
        places
            .active
            .iter()
            .map(|&i| (i, places.all[i].clone()))
            .collect()
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends the client a message the gateway wrote; a client too far behind is ended.
    pub fn to_client(&self, message: String) {
        if let Some(c) = self.client()
            && !c.send(message)
        {
            c.end(CloseCause::SlowClient);
        }
    }

    fn answer(&self, id: &str, result: &Value) {
        self.to_client(jsonrpc::result_response(id, &result.to_string()));
    }

    pub fn fail(&self, id: &str, code: i64, message: &str) {
        if let Some(c) = self.client() {
            c.send_unbounded(jsonrpc::error_response(id, code, message));
        }
    }

    /// Tells the client its lists changed (once the session is under way).
    pub fn announce(&self, kinds: &[&'static str]) {
        if !self.introduced.load(Ordering::Relaxed) {
            return;
        }
        for method in kinds {
            let line = jsonrpc::message(None, method, None);
            self.to_client(String::from_utf8_lossy(&line).into_owned());
        }
    }

    /// A message from member `index` (of the open generation `generation`); false when the
    /// client has fallen too far behind.
    pub fn member_wrote(&self, index: usize, generation: u64, message: String) -> bool {
        let slot = self.slot(index);
        if !slot.is(generation) {
            return true;
        }
        // The hot path: the answer to a relayed request, its id put back in place.
        if let Some(reply) = splice::Reply::parse(message.as_bytes())
            && let Ok(ours) = reply.raw_id.parse::<u64>()
        {
            let relayed = {
                let mut r = self.routing.lock();
                match r.pending.get(&(index, ours)) {
                    Some(Pending::Relay { .. }) => r.pending.remove(&(index, ours)),
                    _ => None,
                }
            };
            if let Some(Pending::Relay { client_id, since }) = relayed {
                slot.member.metrics.answered(reply.ok, since.elapsed());
                let out = String::from_utf8(reply.with_id(&client_id)).unwrap_or_default();
                return self.client().is_none_or(|c| c.send(out));
            }
        }
        let Some(env) = Envelope::parse(message.as_bytes()) else {
            return true;
        };
        let Some(kind) = env.kind() else {
            return true;
        };
        let client = match self.client() {
            Some(c) => c,
            None => return true,
        };
        // Notifications pass as they are; the rest gets an id rewritten.
        if let Kind::Notification { method } = &kind
            && !matches!(method.as_str(), "notifications/cancelled")
        {
            if method.ends_with("/list_changed") {
                slot.forget(method);
            }
            drop(env);
            return client.send(message);
        }
        let out = match kind {
            Kind::Response { id } => {
                // Ids toward members are numbers of the session's own; anything else is not ours.
                let Ok(id) = id.parse::<u64>() else {
                    return true;
                };
                let pending = self.routing.lock().pending.remove(&(index, id));
                match pending {
                    Some(Pending::Relay { client_id, since }) => {
                        let ok = env.get("result").is_some();
                        slot.member.metrics.answered(ok, since.elapsed());
                        env.render(&[("id", &client_id)])
                    }
                    Some(Pending::Ask(tx)) => {
                        let answer = match (env.get("result"), env.get("error")) {
                            (Some(r), _) => {
                                Ok(serde_json::from_str(r.get()).unwrap_or(Value::Null))
                            }
                            (None, Some(e)) => {
                                Err(serde_json::from_str(e.get()).unwrap_or(Value::Null))
                            }
                            (None, None) => {
                                Err(json!({"message": "an answer with neither result nor error"}))
                            }
                        };
                        let _ = tx.send(answer);
                        return true;
                    }
                    None => return true,
                }
            }
            Kind::Request { id, .. } => {
                // A member's question keeps the name its id gives it (`"name#…"`), so a
                // stateless client gets the same input request key as from the member alone.
                let n = self.next_id();
                let theirs = serde_json::from_str::<String>(&id).unwrap_or_default();
                let ours = match asks::question_name(&theirs) {
                    Some(name) => Value::String(format!("{name}#g{n}")).to_string(),
                    None => n.to_string(),
                };
                self.routing.lock().asks.insert(ours.clone(), (index, id));
                env.render(&[("id", &ours)])
            }
            Kind::Notification { method } => match method.as_str() {
                "notifications/cancelled" => {
                    let Some(mut params) = env.params() else {
                        return true;
                    };
                    let theirs = params.get("requestId").map(Value::to_string);
                    let ours = {
                        let mut r = self.routing.lock();
                        let found = r
                            .asks
                            .iter()
                            .find(|(_, (m, id))| *m == index && Some(id) == theirs.as_ref())
                            .map(|(ours, _)| ours.clone());
                        found.inspect(|o| {
                            r.asks.remove(o);
                        })
                    };
                    let Some(ours) = ours else {
                        return true;
                    };
                    params["requestId"] = serde_json::from_str(&ours).unwrap_or(Value::Null);
                    env.render(&[("params", &params.to_string())])
                }
                _ => message.into_bytes(),
            },
        };
        client.send(String::from_utf8(out).unwrap_or_default())
    }

    /// A message from the client.
    async fn client_wrote(&self, line: Bytes, kind: &Kind) -> Result<(), ForwardError> {
        if self.ended.load(Ordering::Acquire) {
            return Err(ForwardError::Closed);
        }
        match kind {
            Kind::Request { id, method } => self.request(line, id, method).await,
            Kind::Notification { method } => self.notification(line, method).await,
            Kind::Response { id } => {
                let asked = self.routing.lock().asks.remove(id);
                if let Some((index, theirs)) = asked
                    && let Some(env) = Envelope::parse(&line)
                {
                    let line = Bytes::from(env.render(&[("id", &theirs)]));
                    self.slot(index)
                        .send(line, &Kind::Response { id: theirs })
                        .await;
                }
            }
        }
        Ok(())
    }

    async fn request(&self, line: Bytes, id: &str, method: &str) {
        // The hot path: a call by name, rewritten in place (its id and name) without a map of
        // its fields.
        let named = match method {
            "tools/call" => Some(ListKind::Tools),
            "prompts/get" => Some(ListKind::Prompts),
            _ => None,
        };
        if let Some(kind) = named
            && let Some(call) = splice::Named::parse(&line)
        {
            match self.lookup(kind, &call.name).await {
                Ok((index, own)) => {
                    self.relay(index, id, method, |ours| call.with(ours, &own))
                        .await
                }
                Err(message) => self.fail(id, jsonrpc::INVALID_PARAMS, &message),
            }
            return;
        }
        let Some(env) = Envelope::parse(&line) else {
            return;
        };
        let params = || env.params().unwrap_or_else(|| json!({}));
        match method {
            "ping" => self.answer(id, &json!({})),
            "initialize" => {
                *self.init.lock() = Some(params());
                self.spawn_with(id, |s, id| async move { s.initialize(&id).await });
            }
            "logging/setLevel" => {
                let params = params();
                self.spawn_with(id, |s, id| async move { s.set_level(&id, params).await });
            }
            _ => {
                if let Some(kind) = ListKind::from_method(method) {
                    let cursor = params()
                        .get("cursor")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    self.spawn_with(
                        id,
                        move |s, id| async move { s.list(&id, kind, cursor).await },
                    );
                    return;
                }
                let raw = env.get("params").map_or("{}", |p| p.get());
                let Some(routed) = Box::pin(self.route(method, raw)).await else {
                    let message = format!(
                        "method {method:?} is not served by group {:?}",
                        self.group.name
                    );
                    return self.fail(id, jsonrpc::METHOD_NOT_FOUND, &message);
                };
                match routed {
                    Ok((index, params)) => {
                        let render = |ours: &str| env.render(&[("id", ours), ("params", &params)]);
                        self.relay(index, id, method, render).await
                    }
                    Err(message) => self.fail(id, jsonrpc::INVALID_PARAMS, &message),
                }
            }
        }
    }

    /// Runs `work` for request `id` on its own task (it waits for members).
    fn spawn_with<F, Fut>(&self, id: &str, work: F)
    where
        F: FnOnce(Arc<FedSession>, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let Some(me) = self.me.upgrade() else { return };
        let closed = self.closed.clone();
        let fut = work(me, id.to_string());
        tokio::spawn(async move {
            tokio::select! {
                _ = closed.cancelled() => {}
                _ = fut => {}
            }
        });
    }

    /// Sends the client's request `id` to member `index` with `params`; the answer is relayed.
    /// `render` writes the request as the member gets it, given the id it carries there.
    async fn relay(
        &self,
        index: usize,
        id: &str,
        method: &str,
        render: impl FnOnce(&str) -> Vec<u8>,
    ) {
        if !crate::telemetry::spans::on() {
            return self.relay_to(index, id, method, render).await;
        }
        // With --otel: the member's part is a step of the request's span.
        let member = self.slot(index).member.name.clone();
        let step = crate::telemetry::spans::step(&format!("member {member}"), "internal");
        step.record("gateway.member", member.as_str());
        step.record("gateway.server", self.group.name.as_str());
        let relayed = self.relay_to(index, id, method, render);
        tracing::Instrument::instrument(relayed, step).await
    }

    async fn relay_to(
        &self,
        index: usize,
        id: &str,
        method: &str,
        render: impl FnOnce(&str) -> Vec<u8>,
    ) {
        let link = match self.up(index).await {
            Ok(link) => link,
            Err(why) => {
                let slot = self.slot(index);
                slot.member.metrics.unavailable();
                let member = &slot.member.name;
                let message = format!(
                    "member {member:?} of group {:?} is not available: {why}",
                    self.group.name
                );
                return self.fail(id, jsonrpc::INTERNAL_ERROR, &message);
            }
        };
        let ours = self.next_id();
        self.routing.lock().pending.insert(
            (index, ours),
            Pending::Relay {
                client_id: id.to_string(),
                since: std::time::Instant::now(),
            },
        );
        let raw = ours.to_string();
        let line = Bytes::from(render(&raw));
        let kind = Kind::Request {
            id: raw,
            method: method.to_string(),
        };
        if let Err(e) = link.forward(line, &kind).await {
            let pending = self.routing.lock().pending.remove(&(index, ours));
            if let Some(Pending::Relay { since, .. }) = pending {
                self.slot(index)
                    .member
                    .metrics
                    .answered(false, since.elapsed());
            }
            self.fail(id, jsonrpc::INTERNAL_ERROR, &e.to_string());
        }
    }

    /// Ends the session's part in every member.
    fn release(&self) {
        self.ended.store(true, Ordering::Release);
        self.closed.cancel();
        self.client.lock().take();
        let all = self.places.read().all.clone();
        for slot in all {
            slot.close(self.group.grace, "the session has ended");
        }
        let mut r = self.routing.lock();
        r.pending.clear();
        r.asks.clear();
    }
}

/// The session's link, as the session table holds it.
struct FedLink {
    session: Arc<FedSession>,
}

impl Link for FedLink {
    fn forward<'a>(
        &'a self,
        line: Bytes,
        kind: &'a Kind,
    ) -> BoxFuture<'a, Result<(), ForwardError>> {
        Box::pin(self.session.client_wrote(line, kind))
    }

    fn release(&self, _grace: Duration) {
        self.session.release();
    }
}

#[cfg(test)]
mod tests {
    /// Every client message of a group session is one boxed future: its slow paths (listing,
    /// opening a member) are boxed on their own, so the hot path moves little — and stays
    /// under 1 KiB, where glibc serves it from its small bins instead of consolidating.
    #[test]
    fn a_messages_future_stays_small() {
        let size = std::mem::size_of_val(&async {
            let s: Option<std::sync::Arc<super::FedSession>> = None;
            if let Some(s) = s {
                let kind = crate::mcp::jsonrpc::Kind::Notification {
                    method: String::new(),
                };
                let _ = s.client_wrote(bytes::Bytes::new(), &kind).await;
            }
        });
        eprintln!("client_wrote future: {size} bytes");
        assert!(size < 1024, "{size} bytes");
    }
}
