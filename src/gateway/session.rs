//! Sessions: one per client stream, served by the configured backend — a child process of its
//! own, an in-process server of its own, or a slot of the shared backend. A session with its own
//! server relays lines both ways and remembers which client requests are unanswered (so a dying
//! server can fail them); a shared session hands messages to its slot's multiplexer. Either way
//! what waits for a slow client is bounded and a session is cleaned up exactly once.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use super::{
    child::{ChildEvent, ChildProcess, ExitCause},
    inprocess::InProcess,
    metrics::{BackendLabel, Metrics},
    shared::SharedChild,
};
use crate::{
    config::{Backend as BackendKind, GatewayConfig},
    mcp::{
        jsonrpc::{self, Kind},
        lines::LineQueue,
    },
    server::AareguruServer,
    upstream::Upstream,
};

/// Why a session ended (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    ClientGone,
    IdleTimeout,
    ChildExited,
    ChildStartTimeout,
    SlowClient,
    Shutdown,
}

impl CloseCause {
    fn as_str(self) -> &'static str {
        match self {
            CloseCause::ClientGone => "client disconnected",
            CloseCause::IdleTimeout => "idle timeout",
            CloseCause::ChildExited => "child exited",
            CloseCause::ChildStartTimeout => "child did not answer in time",
            CloseCause::SlowClient => "client not reading its stream",
            CloseCause::Shutdown => "gateway shutting down",
        }
    }
}

/// Why a message could not be delivered to the child.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the session's MCP server has stopped")]
    Closed,
    #[error("the session's MCP server is not reading its input")]
    Busy,
}

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
    link: Link,
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

/// What serves a session.
enum Link {
    /// Its own server: a child process or an in-process server.
    Own(Own),
    /// A slot of the shared backend.
    Shared(Arc<SharedChild>),
}

/// A server of the session's own, relayed line for line.
struct Own {
    /// Lines for the server's input.
    stdin: LineQueue,
    /// Raw ids of client requests the server has not answered yet.
    inflight: Mutex<HashSet<String>>,
    /// Set once the server has written its first message.
    answered: AtomicBool,
    /// Set once the start watchdog is armed.
    watchdog_armed: AtomicBool,
    worker: tokio::sync::Mutex<Worker>,
    started_at: Instant,
}

enum Worker {
    Process(ChildProcess),
    InProcess(InProcess),
}

impl Worker {
    async fn terminate(&mut self, grace: Duration) {
        match self {
            Worker::Process(c) => c.terminate(grace).await,
            Worker::InProcess(s) => s.terminate(grace).await,
        }
    }
}

impl Session {
    fn touch(&self, sessions: &Sessions) {
        self.last_activity
            .store(sessions.now_ms(), Ordering::Relaxed);
    }

    fn own(&self) -> Option<&Own> {
        match &self.link {
            Link::Own(own) => Some(own),
            Link::Shared(_) => None,
        }
    }

    /// Queues a message for the client. Returns false when the session is closed or the client
    /// has fallen too far behind (the caller then closes the session).
    fn push(&self, message: String, limit: usize) -> bool {
        let outbound = self.outbound.lock().unwrap();
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
        let mut outbound = self.outbound.lock().unwrap();
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

/// The backend serving sessions.
enum Backend {
    PerSession,
    InProcess(AareguruServer),
    Shared(Vec<Arc<SharedChild>>),
}

/// All sessions of the gateway.
pub struct Sessions {
    config: Arc<GatewayConfig>,
    pub metrics: Arc<Metrics>,
    map: RwLock<HashMap<Uuid, Arc<Session>>>,
    /// Sessions counted against the limit (reserved before the server is started).
    count: AtomicUsize,
    children_alive: AtomicUsize,
    backend: Backend,
    /// Child terminations and shared-child supervisors, so shutdown can wait for them.
    terminations: TaskTracker,
    /// Stops the shared children.
    shutdown: CancellationToken,
    epoch: Instant,
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("too many sessions (limit {0})")]
    Full(usize),
    #[error("cannot start the MCP server: {0}")]
    Spawn(std::io::Error),
}

impl Sessions {
    pub fn new(config: Arc<GatewayConfig>, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Self>> {
        let backend = match config.backend {
            BackendKind::PerSession => Backend::PerSession,
            BackendKind::InProcess => {
                Backend::InProcess(AareguruServer::new(Upstream::new(config.upstream.clone())?))
            }
            BackendKind::Shared => {
                Backend::Shared((0..config.children).map(SharedChild::new).collect())
            }
        };
        metrics
            .backend
            .get_or_create(&BackendLabel {
                backend: config.backend.as_str(),
            })
            .set(1);
        Ok(Arc::new(Self {
            config,
            metrics,
            map: RwLock::default(),
            count: AtomicUsize::new(0),
            children_alive: AtomicUsize::new(0),
            backend,
            terminations: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            epoch: Instant::now(),
        }))
    }

    /// Starts the shared children, if any. Fails when one cannot be spawned at all, so a
    /// wrong command is reported at startup rather than per session.
    pub fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        let Backend::Shared(children) = &self.backend else {
            return Ok(());
        };
        for slot in children {
            let spawned =
                ChildProcess::spawn(&self.config.child, slot.name(), self.config.max_line_bytes)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot start {:?}: {e}", self.config.child.program)
                    })?;
            self.terminations.spawn(slot.clone().supervise(
                self.clone(),
                spawned,
                self.shutdown.clone(),
            ));
        }
        Ok(())
    }

    pub fn config(&self) -> &Arc<GatewayConfig> {
        &self.config
    }

    /// Bytes that may wait for a child's input before senders are held back.
    pub fn stdin_limit(&self) -> usize {
        self.config.session_buffer_bytes
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn children_alive(&self) -> usize {
        self.children_alive.load(Ordering::Relaxed)
    }

    pub(super) fn child_started(&self) {
        self.children_alive.fetch_add(1, Ordering::Relaxed);
        self.metrics.children_alive.inc();
    }

    pub(super) fn child_ended(&self, cause: ExitCause) {
        self.children_alive.fetch_sub(1, Ordering::Relaxed);
        self.metrics.children_alive.dec();
        self.metrics
            .child_exits
            .get_or_create(&super::metrics::Cause {
                cause: cause.as_str(),
            })
            .inc();
    }

    /// The shared children's states (empty for other backends).
    pub fn shared_status(&self) -> Vec<serde_json::Value> {
        match &self.backend {
            Backend::Shared(children) => children.iter().map(|c| c.status()).collect(),
            _ => vec![],
        }
    }

    /// How many shared children are ready (`None` for other backends).
    pub fn shared_ready(&self) -> Option<usize> {
        match &self.backend {
            Backend::Shared(children) => Some(children.iter().filter(|c| c.is_ready()).count()),
            _ => None,
        }
    }

    pub fn get(&self, id: &Uuid) -> Option<Arc<Session>> {
        self.map.read().unwrap().get(id).cloned()
    }

    /// Opens a session: reserves a slot, starts or picks its server, starts relaying.
    pub fn open(
        self: &Arc<Self>,
        client: IpAddr,
    ) -> Result<(Arc<Session>, mpsc::UnboundedReceiver<String>), OpenError> {
        let max = self.config.max_sessions;
        if self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(OpenError::Full(max));
        }
        let id = Uuid::new_v4();
        let id_str = id.to_string();
        let started_at = Instant::now();
        let max_line = self.config.max_line_bytes;
        let (link, events) = match &self.backend {
            Backend::PerSession => match ChildProcess::spawn(&self.config.child, &id_str, max_line)
            {
                Ok((child, events)) => {
                    self.metrics.child_spawns.inc();
                    self.child_started();
                    (
                        Link::Own(Own::new(child.stdin(), Worker::Process(child), started_at)),
                        Some(events),
                    )
                }
                Err(e) => {
                    self.count.fetch_sub(1, Ordering::AcqRel);
                    return Err(OpenError::Spawn(e));
                }
            },
            Backend::InProcess(server) => {
                let (server, events) = InProcess::start(server.clone(), &id_str, max_line);
                (
                    Link::Own(Own::new(
                        server.stdin(),
                        Worker::InProcess(server),
                        started_at,
                    )),
                    Some(events),
                )
            }
            Backend::Shared(children) => {
                // The least busy slot, preferring ready ones.
                let slot = children
                    .iter()
                    .min_by_key(|c| c.load())
                    .expect("at least one shared child");
                slot.attach(id);
                (Link::Shared(slot.clone()), None)
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let session = Arc::new(Session {
            id,
            id_str,
            outbound: Mutex::new(Some(Outbound::Channel(tx))),
            queued_bytes: AtomicUsize::new(0),
            last_activity: AtomicU64::new(self.now_ms()),
            closed: CancellationToken::new(),
            link,
        });
        self.map.write().unwrap().insert(id, session.clone());
        self.metrics.sessions_total.inc();
        self.metrics.sessions_active.inc();
        match &session.link {
            Link::Shared(slot) => {
                tracing::info!(session = %session.id_str, %client, child = slot.name(), "session opened")
            }
            Link::Own(_) => tracing::info!(session = %session.id_str, %client, "session opened"),
        }
        if let Some(events) = events {
            tokio::spawn(self.clone().pump(session.clone(), events));
        }
        Ok((session, rx))
    }

    /// Queues a message for a session's client; false if the client is too far behind (the
    /// caller closes the session).
    pub(super) fn deliver(&self, session: &Session, message: String) -> bool {
        session.touch(self);
        self.metrics.message("server_to_client");
        if session.push(message, self.config.session_buffer_bytes) || session.closed.is_cancelled()
        {
            return true;
        }
        tracing::warn!(session = %session.id_str, limit = self.config.session_buffer_bytes, "client is not reading its stream; closing the session");
        self.metrics.error("slow_client");
        false
    }

    pub(super) fn close_many(self: &Arc<Self>, ids: Vec<Uuid>, cause: CloseCause) {
        for id in ids {
            self.close(&id, cause);
        }
    }

    /// Relays a session's own server's output to the client until the server ends.
    async fn pump(self: Arc<Self>, session: Arc<Session>, mut events: mpsc::Receiver<ChildEvent>) {
        let Some(own) = session.own() else {
            return;
        };
        while let Some(event) = events.recv().await {
            match event {
                ChildEvent::Line(line) => {
                    if !own.answered.swap(true, Ordering::Relaxed) {
                        self.metrics
                            .child_spawn_duration
                            .observe(own.started_at.elapsed().as_secs_f64());
                    }
                    match jsonrpc::classify(&line) {
                        Ok(Kind::Response { id }) => {
                            own.inflight.lock().unwrap().remove(&id);
                        }
                        Ok(_) => {}
                        Err(reason) => {
                            tracing::warn!(session = %session.id_str, %reason, "child sent an invalid message; skipped");
                            self.metrics.error("child_invalid_message");
                            continue;
                        }
                    }
                    // Lines are valid UTF-8: classify parsed them as JSON.
                    let text = String::from_utf8(line.to_vec()).unwrap_or_default();
                    if !self.deliver(&session, text) {
                        self.close(&session.id, CloseCause::SlowClient);
                    }
                }
                ChildEvent::TooLong { prefix, len } => {
                    self.metrics.error("child_line_too_long");
                    tracing::warn!(session = %session.id_str, len, limit = self.config.max_line_bytes, "child wrote an over-long message; dropped");
                    if let Some(id) = jsonrpc::id_from_prefix(&prefix)
                        && own.inflight.lock().unwrap().remove(&id)
                    {
                        let msg = format!(
                            "the response was {len} bytes, over the gateway's limit of {} bytes",
                            self.config.max_line_bytes
                        );
                        session.push(
                            jsonrpc::error_response(&id, jsonrpc::INTERNAL_ERROR, &msg),
                            usize::MAX,
                        );
                    }
                }
                ChildEvent::Exited { cause, detail } => {
                    if matches!(&*own.worker.lock().await, Worker::Process(_)) {
                        self.child_ended(cause);
                    }
                    if cause != ExitCause::Terminated {
                        tracing::warn!(session = %session.id_str, %detail, "child exited");
                        let message =
                            format!("the MCP server process ended ({detail}) before answering");
                        self.fail_inflight(&session, &message);
                        self.close(&session.id, CloseCause::ChildExited);
                    }
                    return;
                }
            }
        }
    }

    /// Answers every unanswered request of `session` with an error.
    fn fail_inflight(&self, session: &Session, message: &str) {
        let Some(own) = session.own() else {
            return;
        };
        let ids: Vec<String> = own.inflight.lock().unwrap().drain().collect();
        for id in ids {
            session.push(
                jsonrpc::error_response(&id, jsonrpc::INTERNAL_ERROR, message),
                usize::MAX,
            );
        }
    }

    /// Sends one client message to the session's server.
    pub async fn forward(
        self: &Arc<Self>,
        session: &Arc<Session>,
        line: Bytes,
        kind: &Kind,
    ) -> Result<(), ForwardError> {
        if session.closed.is_cancelled() {
            return Err(ForwardError::Closed);
        }
        session.touch(self);
        self.metrics.message("client_to_server");
        let own = match &session.link {
            Link::Shared(slot) => return slot.forward(self, session, &line, kind).await,
            Link::Own(own) => own,
        };
        match kind {
            Kind::Request { id, .. } => {
                own.inflight.lock().unwrap().insert(id.clone());
                self.arm_start_watchdog(session);
            }
            // A cancelled request gets no response; forget it so a later child failure does
            // not answer it either.
            Kind::Notification { method } if method == "notifications/cancelled" => {
                if let Some(id) = jsonrpc::cancelled_request_id(&line) {
                    own.inflight.lock().unwrap().remove(&id);
                }
            }
            _ => {}
        }
        if !own
            .stdin
            .wait_room(self.stdin_limit(), Duration::from_secs(10))
            .await
        {
            return Err(ForwardError::Busy);
        }
        own.stdin.push(line).map_err(|_| ForwardError::Closed)
    }

    /// Answers a request on the client's stream without involving the server.
    pub fn answer(&self, session: &Session, message: String) {
        self.metrics.message("server_to_client");
        session.push(message, usize::MAX);
    }

    /// On the first request, start a timer: a server that has not answered anything by then is
    /// considered failed to start.
    fn arm_start_watchdog(self: &Arc<Self>, session: &Arc<Session>) {
        let Some(own) = session.own() else {
            return;
        };
        if own.answered.load(Ordering::Relaxed) || own.watchdog_armed.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let (sessions, session) = (self.clone(), session.clone());
        let timeout = self.config.child_start_timeout;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {}
                _ = session.closed.cancelled() => return,
            }
            if session
                .own()
                .is_some_and(|o| !o.answered.load(Ordering::Relaxed))
            {
                tracing::error!(session = %session.id_str, timeout_s = timeout.as_secs_f64(), "child did not answer its first request in time");
                sessions.metrics.error("child_start_timeout");
                let msg = format!(
                    "the MCP server did not start answering within {} s",
                    timeout.as_secs_f64()
                );
                sessions.fail_inflight(&session, &msg);
                sessions.close(&session.id, CloseCause::ChildStartTimeout);
            }
        });
    }

    /// Ends a session once: its stream ends (after what is queued), its server is stopped (or,
    /// on a shared child, its requests are cancelled).
    pub fn close(self: &Arc<Self>, id: &Uuid, cause: CloseCause) {
        let Some(session) = self.map.write().unwrap().remove(id) else {
            return;
        };
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.metrics.sessions_active.dec();
        session.closed.cancel();
        session.outbound.lock().unwrap().take();
        tracing::info!(session = %session.id_str, cause = cause.as_str(), "session closed");
        let grace = self.config.shutdown_grace.min(Duration::from_secs(2));
        self.release(session, grace);
    }

    fn release(self: &Arc<Self>, session: Arc<Session>, grace: Duration) {
        match &session.link {
            Link::Shared(slot) => slot.detach(self, session.id),
            Link::Own(_) => {
                self.terminations.spawn(async move {
                    if let Some(own) = session.own() {
                        own.worker.lock().await.terminate(grace).await;
                    }
                });
            }
        }
    }

    /// Closes sessions idle for longer than the configured timeout.
    pub fn reap_idle(self: &Arc<Self>) {
        let idle_ms = self.config.session_idle_timeout.as_millis() as u64;
        let now = self.now_ms();
        let idle: Vec<Uuid> = self
            .map
            .read()
            .unwrap()
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
    pub async fn close_all(self: &Arc<Self>, grace: Duration) {
        let all: Vec<Arc<Session>> = self.map.write().unwrap().drain().map(|(_, s)| s).collect();
        for s in &all {
            self.count.fetch_sub(1, Ordering::AcqRel);
            self.metrics.sessions_active.dec();
            s.closed.cancel();
            s.outbound.lock().unwrap().take();
        }
        tracing::info!(sessions = all.len(), "closing all sessions");
        for s in all {
            self.release(s, grace);
        }
        self.shutdown.cancel();
        self.terminations.close();
        self.terminations.wait().await;
    }
}

impl Own {
    fn new(stdin: LineQueue, worker: Worker, started_at: Instant) -> Own {
        Own {
            stdin,
            inflight: Mutex::default(),
            answered: AtomicBool::new(false),
            watchdog_armed: AtomicBool::new(false),
            worker: tokio::sync::Mutex::new(worker),
            started_at,
        }
    }
}
