//! The multiplexer of a shared child: many client sessions over one stdio MCP server, with the
//! protocol kept whole. A synchronous state machine — messages in, [`Out`]s to deliver — so the
//! routing rules are tested without processes or sockets.
//!
//! What it does (see `docs` in the README for the user-facing rules):
//! - Client requests get child-side ids minted here (integers, never reused while the child
//!   lives) and responses are mapped back to (session, original id); `1` and `"1"` are different
//!   ids because ids are compared as raw JSON text.
//! - `params._meta.progressToken` is replaced by a child-side token (the minted id) and the
//!   child's `notifications/progress` is routed back with the original token; cancellations are
//!   rewritten both ways.
//! - Requests from the child (`sampling/createMessage`, `roots/list`, `elicitation/create`)
//!   get a gateway id and go to one session, chosen by [`Mux::route`]; its answer goes back to
//!   the child under the child's id. The child's `ping` is answered here.
//! - `initialize` reaches the child once (later sessions are answered from the cached result,
//!   each with its own negotiated version); every `notifications/initialized` is swallowed and
//!   the gateway sends its own right after the handshake.
//! - List-changed notifications go to every session; `notifications/resources/updated` only to
//!   the sessions subscribed to that URI (subscriptions are reference-counted toward the child).
//! - A session that leaves has its in-flight requests cancelled toward the child and the
//!   child's questions to it answered with an error.
//! - When the child dies every in-flight request gets an error at once; while it restarts,
//!   client messages wait (bounded) and are sent after the cached handshake is replayed.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::mcp::{
    jsonrpc::{self, Envelope, Kind},
    version,
};

/// Client messages that may wait for a restarting child; more are refused.
const MAX_HELD: usize = 10_000;

/// Something to deliver.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// A line for the child's stdin.
    Child(Bytes),
    /// A message for one session's stream.
    Session(Uuid, String),
}

/// Who is waiting for a child-side id.
#[derive(Debug)]
enum Origin {
    /// A client request: its session and raw id.
    Client { session: Uuid, id: String },
    /// The first `initialize`, sent on behalf of every session waiting in the handshake.
    Handshake,
    /// The cached `initialize` replayed to a restarted child.
    Replay,
    /// The gateway's own bookkeeping (e.g. an unsubscribe after the last subscriber left).
    Internal,
}

#[derive(Debug)]
struct Pending {
    origin: Origin,
    /// Order in which requests were sent, for [`Mux::route`].
    seq: u64,
    /// The child-side progress token of this request, if it asked for progress.
    progress: Option<String>,
}

/// What a client declared it can answer (from its `initialize`).
#[derive(Debug, Clone, Copy, Default)]
struct Caps {
    sampling: bool,
    roots: bool,
    elicitation: bool,
}

impl Caps {
    fn from_params(params: &Value) -> Caps {
        let caps = &params["capabilities"];
        Caps {
            sampling: caps.get("sampling").is_some(),
            roots: caps.get("roots").is_some(),
            elicitation: caps.get("elicitation").is_some(),
        }
    }

    fn allows(&self, method: &str) -> bool {
        match method {
            "sampling/createMessage" => self.sampling,
            "roots/list" => self.roots,
            "elicitation/create" => self.elicitation,
            _ => true,
        }
    }
}

#[derive(Debug, Default)]
struct Member {
    /// Raw client id → child-side id, for requests in flight.
    requests: HashMap<String, u64>,
    /// Gateway ids of the child's requests waiting for this session's answer.
    asked: HashSet<u64>,
    /// Resource URIs this session subscribed to.
    subscriptions: HashSet<String>,
    /// Known once the session sent `initialize`.
    caps: Option<Caps>,
}

/// A request from the child waiting for a session's answer.
#[derive(Debug)]
struct Asked {
    session: Uuid,
    /// The child's own raw id.
    child_id: String,
}

#[derive(Debug)]
struct Waiter {
    session: Uuid,
    id: String,
    requested: Option<String>,
}

#[derive(Debug)]
enum Handshake {
    NotStarted,
    InFlight {
        params: Value,
        waiters: Vec<Waiter>,
    },
    Done {
        /// The `initialize` params sent to the child (replayed after a restart).
        params: Value,
        result: Map<String, Value>,
        /// The version the child chose.
        version: String,
    },
}

/// The routing state of one shared child.
pub struct Mux {
    next_id: u64,
    next_asked: u64,
    seq: u64,
    pending: HashMap<u64, Pending>,
    members: HashMap<Uuid, Member>,
    asked: HashMap<u64, Asked>,
    /// Child-side token → (session, original raw token).
    progress: HashMap<String, (Uuid, String)>,
    subscriptions: HashMap<String, HashSet<Uuid>>,
    handshake: Handshake,
    handshake_since: Option<Instant>,
    /// False while a restarted child is being re-initialized: client messages wait in `held`.
    ready: bool,
    held: Vec<Bytes>,
    last_active: Option<Uuid>,
    gateway_version: &'static str,
}

impl Default for Mux {
    fn default() -> Self {
        Self::new()
    }
}

impl Mux {
    pub fn new() -> Self {
        Mux {
            next_id: 1,
            next_asked: 1,
            seq: 0,
            pending: HashMap::new(),
            members: HashMap::new(),
            asked: HashMap::new(),
            progress: HashMap::new(),
            subscriptions: HashMap::new(),
            handshake: Handshake::NotStarted,
            handshake_since: None,
            ready: true,
            held: Vec::new(),
            last_active: None,
            gateway_version: env!("CARGO_PKG_VERSION"),
        }
    }

    pub fn attach(&mut self, session: Uuid) {
        self.members.insert(session, Member::default());
    }

    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// Client requests waiting for the child.
    pub fn in_flight(&self) -> usize {
        self.pending
            .values()
            .filter(|p| matches!(p.origin, Origin::Client { .. }))
            .count()
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Whether an `initialize` sent to the child has waited longer than `limit`.
    pub fn handshake_overdue(&self, limit: Duration) -> bool {
        self.handshake_since.is_some_and(|t| t.elapsed() > limit)
    }

    fn mint(&mut self) -> u64 {
        let n = self.next_id;
        self.next_id += 1;
        n
    }

    /// Sends a client-originated line, or holds it while the child restarts.
    fn send_child(&mut self, line: Bytes, out: &mut Vec<Out>) {
        if self.ready {
            out.push(Out::Child(line));
        } else {
            self.held.push(line);
        }
    }

    // ---- from a client ----------------------------------------------------------------

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

    /// Drops a pending child-side id and its progress token.
    fn forget(&mut self, n: u64) -> Option<Pending> {
        let p = self.pending.remove(&n)?;
        if let Some(token) = &p.progress {
            self.progress.remove(token);
        }
        Some(p)
    }

    fn client_response(&mut self, session: Uuid, id: &str, line: &[u8], out: &mut Vec<Out>) {
        // Only the session that was asked may answer.
        let g = id
            .parse::<u64>()
            .ok()
            .filter(|g| self.asked.get(g).is_some_and(|a| a.session == session));
        let Some((g, asked)) = g.and_then(|g| self.asked.remove(&g).map(|a| (g, a))) else {
            tracing::debug!(session = %session, id, "response to an unknown request; dropped");
            return;
        };
        if let Some(m) = self.members.get_mut(&session) {
            m.asked.remove(&g);
        }
        if let Some(env) = Envelope::parse(line) {
            self.send_child(Bytes::from(env.render(&[("id", &asked.child_id)])), out);
        }
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
        for g in member.asked {
            if let Some(a) = self.asked.remove(&g) {
                let error = jsonrpc::error_response(
                    &a.child_id,
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

    /// A child-side id for a request whose answer nobody needs.
    fn internal(&mut self) -> u64 {
        let n = self.mint();
        self.pending.insert(
            n,
            Pending {
                origin: Origin::Internal,
                seq: 0,
                progress: None,
            },
        );
        n
    }

    // ---- from the child --------------------------------------------------------------------

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
                out.extend(self.held.drain(..).map(Out::Child));
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
        let Some(env) = Envelope::parse(line) else {
            return;
        };
        let g = self.next_asked;
        self.next_asked += 1;
        self.asked.insert(
            g,
            Asked {
                session,
                child_id: id.to_string(),
            },
        );
        if let Some(m) = self.members.get_mut(&session) {
            m.asked.insert(g);
        }
        out.push(Out::Session(
            session,
            text(env.render(&[("id", &g.to_string())])),
        ));
    }

    fn child_notification(&mut self, method: &str, line: &[u8], out: &mut Vec<Out>) {
        let Some(env) = Envelope::parse(line) else {
            return;
        };
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
                let Some(mut params) = env.params() else {
                    return;
                };
                let child_id = params["requestId"].to_string();
                let Some(g) = self
                    .asked
                    .iter()
                    .find_map(|(g, a)| (a.child_id == child_id).then_some(*g))
                else {
                    return;
                };
                let Some(a) = self.asked.remove(&g) else {
                    return;
                };
                if let Some(m) = self.members.get_mut(&a.session) {
                    m.asked.remove(&g);
                }
                params["requestId"] = json!(g);
                let params = params.to_string();
                out.push(Out::Session(
                    a.session,
                    text(env.render(&[("params", &params)])),
                ));
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

    fn broadcast(&self, line: &[u8], out: &mut Vec<Out>) {
        let message = String::from_utf8_lossy(line).into_owned();
        for s in self.members.keys() {
            out.push(Out::Session(*s, message.clone()));
        }
    }

    /// The session a message from the child that names no request belongs to.
    ///
    /// On stdio nothing ties a server's request or log message to the client request that
    /// caused it, so: among sessions with a request in flight (whose declared capabilities
    /// allow `method`), the one that sent the most recent such request — exact whenever one
    /// session has requests in flight. With none in flight, a request goes to the session that
    /// spoke last (falling back to any capable one) and a notification (`None` here) to all.
    pub fn route(&self, method: Option<&str>) -> Option<Uuid> {
        let allows = |s: &Uuid| {
            self.members
                .get(s)
                .is_some_and(|m| method.is_none_or(|meth| m.caps.is_none_or(|c| c.allows(meth))))
        };
        let in_flight = self
            .pending
            .values()
            .filter_map(|p| match &p.origin {
                Origin::Client { session, .. } if allows(session) => Some((p.seq, *session)),
                _ => None,
            })
            .max_by_key(|(seq, _)| *seq)
            .map(|(_, s)| s);
        if in_flight.is_some() || method.is_none() {
            return in_flight;
        }
        self.last_active
            .filter(allows)
            .or_else(|| self.members.keys().find(|s| allows(s)).copied())
    }

    // ---- the child's life ------------------------------------------------------------------

    /// The child died: every request in flight gets an error now, the child's open questions
    /// are withdrawn, and client messages wait until a new child is ready.
    pub fn child_died(&mut self, reason: &str, out: &mut Vec<Out>) {
        self.ready = false;
        self.held.clear();
        self.handshake_since = None;
        let message =
            format!("the MCP server ended ({reason}) before answering; it is being restarted");
        for (_, p) in self.pending.drain() {
            match p.origin {
                Origin::Client { session, id } => out.push(Out::Session(
                    session,
                    jsonrpc::error_response(&id, jsonrpc::INTERNAL_ERROR, &message),
                )),
                Origin::Handshake => {
                    if let Handshake::InFlight { waiters, .. } =
                        std::mem::replace(&mut self.handshake, Handshake::NotStarted)
                    {
                        for w in waiters {
                            out.push(Out::Session(
                                w.session,
                                jsonrpc::error_response(&w.id, jsonrpc::INTERNAL_ERROR, &message),
                            ));
                        }
                    }
                }
                Origin::Replay | Origin::Internal => {}
            }
        }
        self.progress.clear();
        for (g, a) in self.asked.drain() {
            let params = json!({"requestId": g, "reason": "the MCP server restarted"});
            let note = jsonrpc::message(None, "notifications/cancelled", Some(&params));
            out.push(Out::Session(a.session, text(note.to_vec())));
        }
        for m in self.members.values_mut() {
            m.requests.clear();
            m.asked.clear();
        }
    }

    /// A new child is running: replay the cached handshake (client messages keep waiting until
    /// it is answered), or, if there is none yet, release what waited.
    pub fn child_started(&mut self, out: &mut Vec<Out>) {
        if let Handshake::Done { params, .. } = &self.handshake {
            let params = params.clone();
            let n = self.mint();
            self.pending.insert(
                n,
                Pending {
                    origin: Origin::Replay,
                    seq: 0,
                    progress: None,
                },
            );
            self.handshake_since = Some(Instant::now());
            out.push(Out::Child(jsonrpc::message(
                Some(&n.to_string()),
                "initialize",
                Some(&params),
            )));
        } else {
            self.ready = true;
            out.extend(self.held.drain(..).map(Out::Child));
        }
    }
}

fn text(rendered: Vec<u8>) -> String {
    // Rendered from parsed JSON, so valid UTF-8.
    String::from_utf8(rendered).unwrap_or_default()
}

fn uri_param(line: &[u8]) -> Option<String> {
    Envelope::parse(line)?
        .params()?
        .get("uri")?
        .as_str()
        .map(str::to_string)
}

/// The version a session gets: what it asked for when the gateway knows it and the child's
/// version is at least as new, else the child's.
fn negotiate(requested: Option<&str>, child: &str) -> String {
    match requested {
        Some(r) if version::HANDSHAKE.contains(&r) && r <= child => r.to_string(),
        _ => child.to_string(),
    }
}

fn initialize_reply(w: &Waiter, result: &Map<String, Value>, child_version: &str) -> String {
    let mut result = result.clone();
    result.insert(
        "protocolVersion".into(),
        Value::String(negotiate(w.requested.as_deref(), child_version)),
    );
    jsonrpc::result_response(&w.id, &Value::Object(result).to_string())
}

/// The child's one `initialize`: the first client's, asking for the newest revision the gateway
/// knows, naming the gateway, and declaring every client capability the gateway can route
/// (each session's own capabilities decide which session is asked).
fn child_initialize_params(mut params: Value, gateway_version: &str) -> Value {
    if !params.is_object() {
        params = json!({});
    }
    params["protocolVersion"] = json!(version::NEWEST_HANDSHAKE);
    params["clientInfo"] = json!({"name": "aareguru-mcp-gateway", "version": gateway_version});
    if !params["capabilities"].is_object() {
        params["capabilities"] = json!({});
    }
    let caps = &mut params["capabilities"];
    for (cap, default) in [
        ("sampling", json!({})),
        ("roots", json!({"listChanged": true})),
        ("elicitation", json!({})),
    ] {
        if caps.get(cap).is_none() {
            caps[cap] = default;
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(line: &str) -> Kind {
        jsonrpc::classify(line.as_bytes()).unwrap()
    }

    fn send(mux: &mut Mux, s: Uuid, line: &str) -> Vec<Out> {
        let mut out = vec![];
        mux.from_client(s, line.as_bytes(), &kind(line), &mut out);
        out
    }

    fn child_says(mux: &mut Mux, v: Value) -> Vec<Out> {
        let mut out = vec![];
        mux.from_child(v.to_string().as_bytes(), &mut out);
        out
    }

    fn child_lines(out: &[Out]) -> Vec<Value> {
        out.iter()
            .filter_map(|o| match o {
                Out::Child(b) => Some(serde_json::from_slice(b).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn session_msgs(out: &[Out], s: Uuid) -> Vec<Value> {
        out.iter()
            .filter_map(|o| match o {
                Out::Session(t, m) if *t == s => Some(serde_json::from_str(m).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn req(id: &str, method: &str, params: Value) -> String {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
    }

    fn init(version: &str, caps: Value) -> String {
        req(
            "0",
            "initialize",
            json!({"protocolVersion": version, "capabilities": caps, "clientInfo": {"name": "t", "version": "1"}}),
        )
    }

    fn member(mux: &mut Mux) -> Uuid {
        let s = Uuid::new_v4();
        mux.attach(s);
        s
    }

    /// Puts the mux past the handshake with one session and returns it.
    fn initialized(mux: &mut Mux) -> Uuid {
        let s = member(mux);
        let out = send(mux, s, &init("2025-06-18", json!({"sampling": {}})));
        let id = child_lines(&out)[0]["id"].clone();
        child_says(
            mux,
            json!({"jsonrpc": "2.0", "id": id, "result": {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "c", "version": "1"}}}),
        );
        s
    }

    #[test]
    fn hundreds_of_sessions_with_colliding_ids_get_their_own_replies() {
        let mut mux = Mux::new();
        initialized(&mut mux);
        let sessions: Vec<Uuid> = (0..300).map(|_| member(&mut mux)).collect();
        let mut to_child = vec![];
        for (i, s) in sessions.iter().enumerate() {
            for id in ["1", "\"1\"", "2", "\"x y\""] {
                let line = req(
                    id,
                    "tools/call",
                    json!({"name": "echo", "arguments": {"from": i, "id": id}}),
                );
                to_child.extend(child_lines(&send(&mut mux, *s, &line)));
            }
        }
        let ids: HashSet<String> = to_child.iter().map(|m| m["id"].to_string()).collect();
        assert_eq!(ids.len(), 1200, "child-side ids must be unique");
        // The child answers in reverse order, echoing the arguments.
        let mut out = vec![];
        for m in to_child.iter().rev() {
            out.extend(child_says(
                &mut mux,
                json!({"jsonrpc": "2.0", "id": m["id"], "result": m["params"]["arguments"]}),
            ));
        }
        assert_eq!(out.len(), 1200);
        for (i, s) in sessions.iter().enumerate() {
            let got = session_msgs(&out, *s);
            assert_eq!(got.len(), 4);
            for reply in got {
                assert_eq!(reply["result"]["from"], i);
                // The id comes back with its original type and text.
                assert_eq!(
                    reply["id"].to_string(),
                    reply["result"]["id"].as_str().unwrap()
                );
            }
        }
        assert_eq!(mux.in_flight(), 0);
    }

    #[test]
    fn initialize_reaches_the_child_once_and_each_session_gets_its_version() {
        let mut mux = Mux::new();
        let (a, b, c) = (member(&mut mux), member(&mut mux), member(&mut mux));
        let out = send(&mut mux, a, &init("2025-06-18", json!({"roots": {}})));
        let sent = child_lines(&out);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["params"]["protocolVersion"], "2025-11-25");
        assert_eq!(
            sent[0]["params"]["clientInfo"]["name"],
            "aareguru-mcp-gateway"
        );
        assert!(sent[0]["params"]["capabilities"]["sampling"].is_object());
        assert!(sent[0]["params"]["capabilities"]["elicitation"].is_object());
        // Another session arrives while the handshake is in flight: it waits, nothing is sent.
        assert!(send(&mut mux, b, &init("2024-11-05", json!({}))).is_empty());
        let out = child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "id": sent[0]["id"], "result": {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "c", "version": "1"}}}),
        );
        // `initialized` goes to the child before any session hears back.
        assert!(matches!(&out[0], Out::Child(l) if l.windows(11).any(|w| w == b"initialized")));
        assert_eq!(
            session_msgs(&out, a)[0]["result"]["protocolVersion"],
            "2025-06-18"
        );
        assert_eq!(
            session_msgs(&out, b)[0]["result"]["protocolVersion"],
            "2024-11-05"
        );
        assert_eq!(session_msgs(&out, a)[0]["id"], 0);
        // Later sessions: answered from the cache; an unknown version gets the child's.
        let out = send(&mut mux, c, &init("2026-07-28", json!({})));
        assert!(child_lines(&out).is_empty());
        assert_eq!(
            session_msgs(&out, c)[0]["result"]["protocolVersion"],
            "2025-11-25"
        );
        assert_eq!(
            session_msgs(&out, c)[0]["result"]["serverInfo"]["name"],
            "c"
        );
        // Clients' own `initialized` never reaches the child.
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert!(send(&mut mux, c, note).is_empty());
    }

    #[test]
    fn a_failed_handshake_is_not_cached() {
        let mut mux = Mux::new();
        let a = member(&mut mux);
        let sent = child_lines(&send(&mut mux, a, &init("2025-06-18", json!({}))));
        let out = child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "id": sent[0]["id"], "error": {"code": -32602, "message": "no"}}),
        );
        assert_eq!(session_msgs(&out, a)[0]["error"]["code"], -32602);
        assert_eq!(session_msgs(&out, a)[0]["id"], 0);
        assert_eq!(
            child_lines(&send(&mut mux, a, &init("2025-06-18", json!({})))).len(),
            1
        );
    }

    #[test]
    fn progress_and_cancellation_are_rewritten_both_ways() {
        let mut mux = Mux::new();
        initialized(&mut mux);
        let (a, b) = (member(&mut mux), member(&mut mux));
        let call = |tok: Value| {
            req(
                "1",
                "tools/call",
                json!({"name": "slow", "_meta": {"progressToken": tok}}),
            )
        };
        let to_a = child_lines(&send(&mut mux, a, &call(json!("t"))));
        let to_b = child_lines(&send(&mut mux, b, &call(json!(1)))); // same id, other type of token
        let (ta, tb) = (
            &to_a[0]["params"]["_meta"]["progressToken"],
            &to_b[0]["params"]["_meta"]["progressToken"],
        );
        assert_ne!(ta, tb);
        let progress = |t: &Value| json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": t, "progress": 1}});
        let out = child_says(&mut mux, progress(tb));
        assert_eq!(session_msgs(&out, b)[0]["params"]["progressToken"], 1);
        assert!(session_msgs(&out, a).is_empty());
        let out = child_says(&mut mux, progress(ta));
        assert_eq!(session_msgs(&out, a)[0]["params"]["progressToken"], "t");
        // b cancels its request 1: the child hears about its own id for it.
        let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"user"}}"#;
        let sent = child_lines(&send(&mut mux, b, cancel));
        assert_eq!(sent[0]["params"]["requestId"], to_b[0]["id"]);
        assert_eq!(sent[0]["params"]["reason"], "user");
        // A late answer to the cancelled request and its progress are dropped.
        assert!(
            child_says(
                &mut mux,
                json!({"jsonrpc": "2.0", "id": to_b[0]["id"], "result": {}})
            )
            .is_empty()
        );
        assert!(child_says(&mut mux, progress(tb)).is_empty());
        // Cancelling a request that is not in flight sends nothing.
        assert!(send(&mut mux, b, cancel).is_empty());
        // a's request is unaffected.
        let out = child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "id": to_a[0]["id"], "result": {"ok": true}}),
        );
        assert_eq!(session_msgs(&out, a)[0]["id"], 1);
    }

    #[test]
    fn child_requests_go_to_the_session_whose_call_is_in_flight_and_answers_come_back() {
        let mut mux = Mux::new();
        let first = initialized(&mut mux);
        let (a, b) = (member(&mut mux), member(&mut mux));
        send(&mut mux, a, &init("2025-11-25", json!({"sampling": {}})));
        send(&mut mux, b, &init("2025-11-25", json!({})));
        send(
            &mut mux,
            a,
            &req("7", "tools/call", json!({"name": "sample"})),
        );
        // b's call is more recent, but b cannot sample: a is asked.
        send(
            &mut mux,
            b,
            &req("7", "tools/call", json!({"name": "other"})),
        );
        let out = child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "id": 7, "method": "sampling/createMessage", "params": {"messages": []}}),
        );
        let asked = session_msgs(&out, a);
        assert_eq!(asked.len(), 1);
        assert!(session_msgs(&out, b).is_empty() && session_msgs(&out, first).is_empty());
        // a answers with the gateway's id; the child gets its own id back.
        let answer = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":{{"type":"text","text":"hi"}}}}}}"#,
            asked[0]["id"]
        );
        // b cannot answer a's question.
        assert!(send(&mut mux, b, &answer).is_empty());
        let sent = child_lines(&send(&mut mux, a, &answer));
        assert_eq!(sent[0]["id"], 7);
        assert_eq!(sent[0]["result"]["content"]["text"], "hi");
        // A roots request goes to the most recent in-flight session whose capabilities allow it
        // (b declared none, a did not declare roots: neither; the one that spoke last is asked).
        let out = child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "id": 8, "method": "ping"}),
        );
        assert_eq!(
            child_lines(&out)[0]["id"],
            8,
            "the child's ping is answered by the gateway"
        );
        assert_eq!(child_lines(&out)[0]["result"], json!({}));
    }

    #[test]
    fn with_nothing_in_flight_requests_go_to_the_last_speaker_and_logs_to_everyone() {
        let mut mux = Mux::new();
        let s0 = initialized(&mut mux);
        let a = member(&mut mux);
        send(
            &mut mux,
            a,
            r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#,
        );
        let out = child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"}),
        );
        assert_eq!(session_msgs(&out, a).len(), 1);
        let out = child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}),
        );
        assert_eq!(
            session_msgs(&out, a).len() + session_msgs(&out, s0).len(),
            2
        );
        // With no session at all, the child is told at once.
        let mut lonely = Mux::new();
        let out = child_says(
            &mut lonely,
            json!({"jsonrpc": "2.0", "id": 3, "method": "roots/list"}),
        );
        assert_eq!(
            child_lines(&out)[0]["error"]["code"],
            jsonrpc::INTERNAL_ERROR
        );
    }

    #[test]
    fn a_departing_session_cancels_its_requests_and_answers_pending_questions() {
        let mut mux = Mux::new();
        initialized(&mut mux);
        let a = member(&mut mux);
        let sent = child_lines(&send(
            &mut mux,
            a,
            &req("1", "tools/call", json!({"name": "never"})),
        ));
        let out = child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "id": "q", "method": "elicitation/create", "params": {}}),
        );
        assert_eq!(session_msgs(&out, a).len(), 1);
        let mut out = vec![];
        mux.detach(a, &mut out);
        let to_child = child_lines(&out);
        assert!(
            to_child
                .iter()
                .any(|m| m["method"] == "notifications/cancelled"
                    && m["params"]["requestId"] == sent[0]["id"])
        );
        assert!(
            to_child
                .iter()
                .any(|m| m["id"] == "q" && m["error"].is_object())
        );
        assert_eq!(mux.in_flight(), 0);
        assert!(
            child_says(
                &mut mux,
                json!({"jsonrpc": "2.0", "id": sent[0]["id"], "result": {}})
            )
            .is_empty()
        );
    }

    #[test]
    fn subscriptions_are_counted_and_updates_go_only_to_subscribers() {
        let mut mux = Mux::new();
        let s0 = initialized(&mut mux);
        let (a, b) = (member(&mut mux), member(&mut mux));
        let sub = |id: &str| req(id, "resources/subscribe", json!({"uri": "aareguru://x"}));
        let sent = child_lines(&send(&mut mux, a, &sub("1")));
        assert_eq!(sent[0]["method"], "resources/subscribe");
        let out = send(&mut mux, b, &sub("\"s\""));
        assert!(child_lines(&out).is_empty());
        assert_eq!(session_msgs(&out, b)[0]["id"], "s");
        let upd = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "aareguru://x"}});
        let out = child_says(&mut mux, upd.clone());
        assert_eq!(session_msgs(&out, a).len(), 1);
        assert_eq!(session_msgs(&out, b).len(), 1);
        assert!(session_msgs(&out, s0).is_empty());
        // a leaves the subscription; the child keeps sending for b.
        let out = send(
            &mut mux,
            a,
            &req("2", "resources/unsubscribe", json!({"uri": "aareguru://x"})),
        );
        assert!(child_lines(&out).is_empty());
        assert_eq!(session_msgs(&child_says(&mut mux, upd.clone()), a).len(), 0);
        // b disconnects: the gateway unsubscribes the child itself.
        let mut out = vec![];
        mux.detach(b, &mut out);
        assert_eq!(child_lines(&out)[0]["method"], "resources/unsubscribe");
        // List changes reach everyone.
        let out = child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
        );
        assert_eq!(
            session_msgs(&out, a).len() + session_msgs(&out, s0).len(),
            2
        );
    }

    #[test]
    fn a_dead_child_fails_in_flight_requests_and_a_new_one_is_reinitialized_first() {
        let mut mux = Mux::new();
        initialized(&mut mux);
        let a = member(&mut mux);
        send(
            &mut mux,
            a,
            &req("1", "resources/subscribe", json!({"uri": "u"})),
        );
        send(
            &mut mux,
            a,
            &req("\"p\"", "tools/call", json!({"name": "never"})),
        );
        let mut out = vec![];
        mux.child_died("exit status: 3", &mut out);
        let errors = session_msgs(&out, a);
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|e| {
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("exit status: 3")
        }));
        // While the child is down, client messages wait.
        assert!(send(&mut mux, a, &req("2", "tools/list", json!({}))).is_empty());
        let mut out = vec![];
        mux.child_started(&mut out);
        let replay = child_lines(&out);
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0]["method"], "initialize");
        assert_eq!(
            replay[0]["params"]["clientInfo"]["name"],
            "aareguru-mcp-gateway"
        );
        assert!(!mux.is_ready());
        let out = child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "id": replay[0]["id"], "result": {"protocolVersion": "2025-11-25"}}),
        );
        let sent = child_lines(&out);
        let methods: Vec<&str> = sent.iter().map(|m| m["method"].as_str().unwrap()).collect();
        assert_eq!(
            methods,
            [
                "notifications/initialized",
                "resources/subscribe",
                "tools/list"
            ]
        );
        assert!(
            session_msgs(&out, a).is_empty(),
            "the replayed handshake is not shown to clients"
        );
        let out = child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "id": sent[2]["id"], "result": {"tools": []}}),
        );
        assert_eq!(session_msgs(&out, a)[0]["id"], 2);
    }
}
