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
//!   keep the child's own id (unique among its open requests; a stateless client sees it as
//!   the input request's key) and go to one session, chosen by [`Mux::route`]; only that
//!   session's answer goes back to the child. The child's `ping` is answered here.
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
    jsonrpc::{self, Envelope},
    version,
};

mod child;
mod client;

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
    asked: HashSet<String>,
    /// Resource URIs this session subscribed to.
    subscriptions: HashSet<String>,
    /// Known once the session sent `initialize`.
    caps: Option<Caps>,
}

/// A request from the child waiting for a session's answer (by the child's own raw id, which
/// the session sees too: ids of one child's open requests are unique, and a stateless client
/// gets them as its input request keys).
#[derive(Debug)]
struct Asked {
    session: Uuid,
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
    seq: u64,
    pending: HashMap<u64, Pending>,
    members: HashMap<Uuid, Member>,
    asked: HashMap<String, Asked>,
    /// Child-side token → (session, original raw token).
    progress: HashMap<String, (Uuid, String)>,
    subscriptions: HashMap<String, HashSet<Uuid>>,
    handshake: Handshake,
    handshake_since: Option<Instant>,
    /// False while a restarted child is being re-initialized: client messages wait in `held`.
    ready: bool,
    held: Vec<Bytes>,
    /// Bytes of `held`.
    held_bytes: usize,
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
            held_bytes: 0,
            last_active: None,
            gateway_version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// Client messages wait until [`Mux::child_started`]: for a mux created before its first
    /// child runs (messages sent to no child would be lost).
    pub fn before_first_child(mut self) -> Self {
        self.ready = false;
        self
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

    /// Drops a pending child-side id and its progress token.
    fn forget(&mut self, n: u64) -> Option<Pending> {
        let p = self.pending.remove(&n)?;
        if let Some(token) = &p.progress {
            self.progress.remove(token);
        }
        Some(p)
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

    /// Sends a client-originated line, or holds it while the child restarts.
    fn send_child(&mut self, line: Bytes, out: &mut Vec<Out>) {
        if self.ready {
            out.push(Out::Child(line));
        } else {
            self.held_bytes += line.len();
            self.held.push(line);
        }
    }

    /// Whether a client message of `len` bytes may be taken now: always while the child is
    /// ready (its input queue has its own bound); while it (re)starts, only as long as what is
    /// held stays within [`MAX_HELD`] messages and `limit` bytes.
    pub fn room_for(&self, len: usize, limit: usize) -> bool {
        self.ready || (self.held.len() < MAX_HELD && self.held_bytes.saturating_add(len) <= limit)
    }

    /// What waits for the child: messages and bytes.
    pub fn held(&self) -> (usize, usize) {
        (self.held.len(), self.held_bytes)
    }

    /// Everything held, for a child that is ready now.
    fn release_held(&mut self, out: &mut Vec<Out>) {
        self.held_bytes = 0;
        out.extend(self.held.drain(..).map(Out::Child));
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
        self.held_bytes = 0;
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
        for (child_id, a) in self.asked.drain() {
            let id: Value = serde_json::from_str(&child_id).unwrap_or(Value::Null);
            let params = json!({"requestId": id, "reason": "the MCP server restarted"});
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
            self.release_held(out);
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
mod listen_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
