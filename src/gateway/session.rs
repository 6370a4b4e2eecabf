//! Sessions: one per client, whatever the transport, served through a [`Backend`]. A session
//! holds what waits for its client (bounded), when it was last active, and its [`Link`] to the
//! server; the table opens, finds, reaps and closes them, each exactly once.
//!
//! Owns: the session table and each session's outbound queue. Must not touch: HTTP (transports
//! read a session's messages through a channel or a [`Sink`]) or any particular backend (only
//! the [`Backend`] and [`Link`] traits).

use parking_lot::{Mutex, RwLock};
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use super::backend::{CloseCause, ForwardError, OpenError};
use super::{
    backend::{Backend, Client, Link, Status},
    caller::Caller,
    metrics::ServerMetrics,
};
use crate::{config::GatewayConfig, mcp::jsonrpc::Kind};

/// One client session and what serves it.
pub struct Session {
    pub id: Uuid,
    /// The id as sent in URLs and logs.
    pub id_str: String,
    /// Messages for the client's stream; `None` once the session is closed.
    outbound: Mutex<Option<Outbound>>,
    /// Bytes sitting in `outbound`, bounded by the config's session buffer.
    queued_bytes: AtomicUsize,
    /// Milliseconds since the gateway epoch of the last message either way.
    last_activity: AtomicU64,
    /// Cancelled when the session closes; ends the stream.
    pub closed: CancellationToken,
    /// Set once the backend has connected the session.
    link: OnceLock<Box<dyn Link>>,
    /// The table, to close the session from the backend's side.
    table: Weak<Sessions>,
    metrics: ServerMetrics,
    epoch: Instant,
    buffer_limit: usize,
    /// With OAuth: the subject whose token opened the session (only it may use the session).
    owner: OnceLock<String>,
    /// Who sent the latest request (see [`Session::set_caller`]).
    caller: RwLock<Option<Arc<Caller>>>,
    /// With `--otel`: the server span of each request awaiting its answer (raw id), ended when
    /// the answer is on its way to the client (or the session ends).
    spans: crate::telemetry::spans::Held,
    /// Milliseconds since the gateway epoch when it opened.
    opened: u64,
    /// The client's address.
    client: IpAddr,
    /// Requests the client sent.
    requests: AtomicU64,
    /// What the client said of itself in its `initialize`.
    hello: OnceLock<Hello>,
}

/// The client's name, version and protocol revision, from its `initialize`.
#[derive(Default)]
struct Hello {
    name: String,
    version: String,
    protocol: String,
}

/// Where a session's messages for the client go.
enum Outbound {
    /// A queue read by the client's stream (HTTP+SSE).
    Channel(mpsc::UnboundedSender<String>),
    /// Handed straight to a router (Streamable HTTP), which applies its own bound and returns
    /// false when the client has fallen too far behind.
    Sink(Sink),
}

/// Receives a session's messages in order; false means "close the session, it is not read".
pub type Sink = Box<dyn Fn(String) -> bool + Send + Sync>;

impl Session {
    /// Binds the session to the subject that opened it (once; later calls change nothing).
    pub fn bind_owner(&self, subject: &str) {
        if self.owner.set(subject.to_string()).is_ok() {
            tracing::info!(session = %self.id_str, %subject, "session opened by an authorized subject");
        }
    }

    /// The subject the session is bound to, if any.
    /// Who sends the requests that follow (the policy layer judges them by it); kept when
    /// unchanged, so a session's requests share one caller.
    pub fn set_caller(&self, caller: Caller) {
        if self.caller.read().as_deref() != Some(&caller) {
            *self.caller.write() = Some(Arc::new(caller));
        }
    }

    pub fn owner(&self) -> Option<&str> {
        self.owner.get().map(String::as_str)
    }

    fn touch(&self) {
        self.last_activity
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Keeps request `id`'s span open until its answer passes [`Session::push`].
    pub fn hold_span(&self, id: String, open: crate::telemetry::spans::Open) {
        self.spans.hold(id, open);
    }

    /// Queues a message for the client. Returns false when the session is closed or the client
    /// has fallen too far behind (the caller then closes the session).
    fn push(&self, message: String, limit: usize) -> bool {
        self.spans.answered(&message);
        let outbound = self.outbound.lock();
        match outbound.as_ref() {
            None => false,
            Some(Outbound::Sink(sink)) => sink(message),
            Some(Outbound::Channel(tx)) => {
                let len = message.len();
                let queued = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
                // One message larger than the whole budget still goes through to an empty
                // queue.
                if queued > 0 && queued + len > limit {
                    self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                    return false;
                }
                tx.send(message).is_ok()
            }
        }
    }

    /// From now on, messages go to `sink` instead of the channel `rx` reads; what is already
    /// queued there goes to the sink first, in order.
    pub fn redirect(&self, mut rx: mpsc::UnboundedReceiver<String>, sink: Sink) {
        let mut outbound = self.outbound.lock();
        if outbound.is_none() {
            return;
        }
        while let Ok(message) = rx.try_recv() {
            self.queued_bytes
                .fetch_sub(message.len(), Ordering::Relaxed);
            sink(message);
        }
        *outbound = Some(Outbound::Sink(sink));
    }

    /// Called by the stream as it hands a message to the client.
    pub fn delivered(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
    }
}

impl Client for Session {
    fn id(&self) -> Uuid {
        self.id
    }

    fn name(&self) -> &str {
        &self.id_str
    }

    fn send(&self, message: String) -> bool {
        self.touch();
        self.metrics.message("server_to_client");
        if self.push(message, self.buffer_limit) || self.closed.is_cancelled() {
            return true;
        }
        tracing::warn!(session = %self.id_str, limit = self.buffer_limit, "client is not reading its stream; closing the session");
        self.metrics.error("slow_client");
        false
    }

    fn send_unbounded(&self, message: String) {
        self.push(message, usize::MAX);
    }

    fn end(&self, cause: CloseCause) {
        if let Some(table) = self.table.upgrade() {
            table.close(&self.id, cause);
        }
    }

    fn caller(&self) -> Option<Arc<Caller>> {
        self.caller.read().clone()
    }
}

impl Hello {
    /// What an `initialize` request (`line`) says of its client.
    fn of(line: &[u8]) -> Hello {
        let params = crate::mcp::jsonrpc::Envelope::parse(line)
            .and_then(|e| e.params())
            .unwrap_or_default();
        let text =
            |v: &serde_json::Value| v.as_str().unwrap_or_default().chars().take(100).collect();
        Hello {
            name: text(&params["clientInfo"]["name"]),
            version: text(&params["clientInfo"]["version"]),
            protocol: text(&params["protocolVersion"]),
        }
    }
}

/// Told of every session that ends, with why (the cluster keeps its directory by it).
pub type CloseHook = Box<dyn Fn(&Session, CloseCause) + Send + Sync>;

/// All sessions of the gateway.
pub struct Sessions {
    config: Arc<GatewayConfig>,
    pub metrics: ServerMetrics,
    /// Most concurrent sessions of this server.
    max_sessions: usize,
    map: RwLock<HashMap<Uuid, Arc<Session>>>,
    on_close: OnceLock<CloseHook>,
    /// Sessions counted against the limit (reserved before the server is started).
    count: AtomicUsize,
    backend: Arc<dyn Backend>,
    epoch: Instant,
}

impl Sessions {
    pub fn new(
        config: Arc<GatewayConfig>,
        max_sessions: usize,
        metrics: ServerMetrics,
        backend: Arc<dyn Backend>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            metrics,
            max_sessions,
            map: RwLock::default(),
            on_close: OnceLock::new(),
            count: AtomicUsize::new(0),
            backend,
            epoch: Instant::now(),
        })
    }

    /// Sets what is told of every session that ends (once).
    pub fn on_close(&self, hook: CloseHook) {
        let _ = self.on_close.set(hook);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The backend that serves these sessions (a group's members are served by theirs).
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// The backend's children and readiness, for `/health` and `/metrics`.
    pub fn backend_status(&self) -> Status {
        self.backend.status()
    }

    pub fn get(&self, id: &Uuid) -> Option<Arc<Session>> {
        self.map.read().get(id).cloned()
    }

    /// Opens a session: reserves a slot, connects it to its server, starts relaying.
    pub fn open(
        self: &Arc<Self>,
        client: IpAddr,
        env: &[(String, String)],
    ) -> Result<(Arc<Session>, mpsc::UnboundedReceiver<String>), OpenError> {
        self.open_with_id(Uuid::new_v4(), client, env)
    }

    /// Opens a session under an id it already has (one restored from another replica).
    pub fn open_with_id(
        self: &Arc<Self>,
        id: Uuid,
        client: IpAddr,
        env: &[(String, String)],
    ) -> Result<(Arc<Session>, mpsc::UnboundedReceiver<String>), OpenError> {
        let max = self.max_sessions;
        if self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(OpenError::Full(max));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let session = Arc::new(Session {
            id,
            id_str: id.to_string(),
            outbound: Mutex::new(Some(Outbound::Channel(tx))),
            queued_bytes: AtomicUsize::new(0),
            last_activity: AtomicU64::new(self.now_ms()),
            closed: CancellationToken::new(),
            link: OnceLock::new(),
            table: Arc::downgrade(self),
            metrics: self.metrics.clone(),
            epoch: self.epoch,
            buffer_limit: self.config.session_buffer_bytes,
            owner: OnceLock::new(),
            caller: RwLock::new(None),
            spans: Default::default(),
            opened: self.now_ms(),
            client,
            requests: AtomicU64::new(0),
            hello: OnceLock::new(),
        });
        // In the table before the backend starts relaying, so a server that dies at once can
        // close its session.
        {
            let mut map = self.map.write();
            if map.contains_key(&id) {
                drop(map);
                self.count.fetch_sub(1, Ordering::AcqRel);
                return Err(OpenError::Duplicate);
            }
            self.metrics.session_active(1);
            map.insert(id, session.clone());
        }
        let link = match self.backend.open(session.clone(), env) {
            Ok(link) => link,
            Err(e) => {
                self.map.write().remove(&id);
                self.metrics.session_active(-1);
                self.count.fetch_sub(1, Ordering::AcqRel);
                return Err(e);
            }
        };
        self.metrics.session_counted();
        match link.serving() {
            Some(child) => {
                tracing::info!(session = %session.id_str, %client, child, "session opened")
            }
            None => tracing::info!(session = %session.id_str, %client, "session opened"),
        }
        let _ = session.link.set(link);
        if session.closed.is_cancelled() {
            // Closed while connecting (shutdown): release what was just started.
            self.release(&session, self.grace());
        }
        Ok((session, rx))
    }

    /// Sends one client message to the session's server.
    pub async fn forward(
        &self,
        session: &Arc<Session>,
        line: Bytes,
        kind: &Kind,
    ) -> Result<(), ForwardError> {
        if session.closed.is_cancelled() {
            return Err(ForwardError::Closed);
        }
        session.touch();
        self.metrics.message("client_to_server");
        if let Kind::Request { method, .. } = kind {
            session.requests.fetch_add(1, Ordering::Relaxed);
            if method == "initialize" && session.hello.get().is_none() {
                let _ = session.hello.set(Hello::of(&line));
            }
        }
        match session.link.get() {
            Some(link) => link.forward(line, kind).await,
            None => Err(ForwardError::Closed),
        }
    }

    /// What the console shows of each open session.
    pub fn views(&self) -> Vec<serde_json::Value> {
        let now = self.now_ms();
        let sessions: Vec<Arc<Session>> = self.map.read().values().cloned().collect();
        sessions
            .iter()
            .map(|s| {
                let hello = s.hello.get();
                let streamable = matches!(*s.outbound.lock(), Some(Outbound::Sink(_)));
                let caller = s.caller.read().as_ref().map(|c| c.subject.clone());
                serde_json::json!({
                    "id": s.id_str,
                    "transport": if streamable { "streamable-http" } else { "sse" },
                    "protocol": hello.map(|h| h.protocol.as_str()),
                    "client": hello.map(|h| format!("{} {}", h.name, h.version).trim().to_string()),
                    "address": s.client.to_string(),
                    "subject": s.owner.get().cloned().or(caller).filter(|c| !c.is_empty()),
                    "age_s": now.saturating_sub(s.opened) / 1000,
                    "idle_s": now.saturating_sub(s.last_activity.load(Ordering::Relaxed)) / 1000,
                    "requests": s.requests.load(Ordering::Relaxed),
                })
            })
            .collect()
    }

    /// Answers a request on the client's stream without involving the server.
    pub fn answer(&self, session: &Session, message: String) {
        self.metrics.message("server_to_client");
        session.push(message, usize::MAX);
    }

    fn grace(&self) -> Duration {
        self.config.shutdown_grace.min(Duration::from_secs(2))
    }

    /// Ends a session once: its stream ends (after what is queued), its server is stopped (or,
    /// on a shared child, its requests are cancelled).
    pub fn close(&self, id: &Uuid, cause: CloseCause) {
        let Some(session) = self.map.write().remove(id) else {
            return;
        };
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.metrics.session_active(-1);
        session.closed.cancel();
        session.outbound.lock().take();
        tracing::info!(session = %session.id_str, cause = cause.as_str(), "session closed");
        self.release(&session, self.grace());
        if let Some(hook) = self.on_close.get() {
            hook(&session, cause);
        }
    }

    fn release(&self, session: &Session, grace: Duration) {
        if let Some(link) = session.link.get() {
            link.release(grace);
        }
    }

    /// Closes sessions idle for longer than the configured timeout.
    pub fn reap_idle(&self) {
        let idle_ms = self.config.session_idle_timeout.as_millis() as u64;
        let now = self.now_ms();
        let idle: Vec<Uuid> = self
            .map
            .read()
            .values()
            .filter(|s| now.saturating_sub(s.last_activity.load(Ordering::Relaxed)) > idle_ms)
            .map(|s| s.id)
            .collect();
        for id in idle {
            self.close(&id, CloseCause::IdleTimeout);
        }
    }

    /// Closes every session, stops every server, and waits (up to `grace` plus the kill) for
    /// children.
    pub async fn close_all(&self, grace: Duration) {
        let all: Vec<Arc<Session>> = self.map.write().drain().map(|(_, s)| s).collect();
        for s in &all {
            self.count.fetch_sub(1, Ordering::AcqRel);
            self.metrics.session_active(-1);
            s.closed.cancel();
            s.outbound.lock().take();
        }
        tracing::info!(sessions = all.len(), "closing all sessions");
        for s in all {
            self.release(&s, grace);
            if let Some(hook) = self.on_close.get() {
                hook(&s, CloseCause::Shutdown);
            }
        }
        self.backend.shutdown().await;
    }
}
