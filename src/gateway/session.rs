//! Sessions: one per SSE stream, each with its own child. A session relays client messages to
//! the child's stdin and the child's stdout lines to the client's stream, remembers which client
//! requests are unanswered (so a dying child can fail them), bounds what waits for a slow
//! client, and cleans up exactly once however it ends.

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
    jsonrpc::{self, Kind},
    metrics::Metrics,
};
use crate::config::GatewayConfig;

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

/// One client session and its child.
pub struct Session {
    pub id: Uuid,
    /// The id as sent in URLs and logs.
    pub id_str: String,
    /// Messages for the client's stream; `None` once the session is closed.
    outbound: Mutex<Option<mpsc::UnboundedSender<String>>>,
    /// Bytes sitting in `outbound`, bounded by the config's session buffer.
    queued_bytes: AtomicUsize,
    /// Lines for the child's stdin.
    stdin: mpsc::Sender<Bytes>,
    /// Raw ids of client requests the child has not answered yet.
    inflight: Mutex<HashSet<String>>,
    /// Milliseconds since the gateway epoch of the last message either way.
    last_activity: AtomicU64,
    /// Set once the child has written its first message.
    answered: AtomicBool,
    /// Set once the start watchdog is armed.
    watchdog_armed: AtomicBool,
    /// Cancelled when the session closes; ends the stream.
    pub closed: CancellationToken,
    /// The child, for termination.
    child: tokio::sync::Mutex<ChildProcess>,
    spawned_at: Instant,
}

impl Session {
    fn touch(&self, sessions: &Sessions) {
        self.last_activity
            .store(sessions.now_ms(), Ordering::Relaxed);
    }

    /// Queues a message for the client. Returns false when the session is closed or the client
    /// has fallen too far behind (the caller then closes the session).
    fn push(&self, message: String, limit: usize) -> bool {
        let len = message.len();
        let queued = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        // One message larger than the whole budget still goes through to an empty queue.
        if queued > 0 && queued + len > limit {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        match self.outbound.lock().unwrap().as_ref() {
            Some(tx) => tx.send(message).is_ok(),
            None => false,
        }
    }

    /// Called by the stream as it hands a message to the client.
    pub fn delivered(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
    }
}

/// All sessions of the gateway.
pub struct Sessions {
    config: Arc<GatewayConfig>,
    pub metrics: Arc<Metrics>,
    map: RwLock<HashMap<Uuid, Arc<Session>>>,
    /// Sessions counted against the limit (reserved before the child is spawned).
    count: AtomicUsize,
    children_alive: AtomicUsize,
    /// Child terminations under way, so shutdown can wait for them.
    terminations: TaskTracker,
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
    pub fn new(config: Arc<GatewayConfig>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            config,
            metrics,
            map: RwLock::default(),
            count: AtomicUsize::new(0),
            children_alive: AtomicUsize::new(0),
            terminations: TaskTracker::new(),
            epoch: Instant::now(),
        })
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

    pub fn get(&self, id: &Uuid) -> Option<Arc<Session>> {
        self.map.read().unwrap().get(id).cloned()
    }

    /// Opens a session: reserves a slot, spawns the child, starts relaying its output.
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
        let spawned_at = Instant::now();
        let (child, events) =
            match ChildProcess::spawn(&self.config.child, &id_str, self.config.max_line_bytes) {
                Ok(c) => c,
                Err(e) => {
                    self.count.fetch_sub(1, Ordering::AcqRel);
                    return Err(OpenError::Spawn(e));
                }
            };
        self.metrics.child_spawns.inc();
        self.children_alive.fetch_add(1, Ordering::Relaxed);
        self.metrics.children_alive.inc();
        let (tx, rx) = mpsc::unbounded_channel();
        let session = Arc::new(Session {
            id,
            id_str,
            outbound: Mutex::new(Some(tx)),
            queued_bytes: AtomicUsize::new(0),
            stdin: child.stdin(),
            inflight: Mutex::default(),
            last_activity: AtomicU64::new(self.now_ms()),
            answered: AtomicBool::new(false),
            watchdog_armed: AtomicBool::new(false),
            closed: CancellationToken::new(),
            child: tokio::sync::Mutex::new(child),
            spawned_at,
        });
        self.map.write().unwrap().insert(id, session.clone());
        self.metrics.sessions_total.inc();
        self.metrics.sessions_active.inc();
        tracing::info!(session = %session.id_str, %client, "session opened");
        tokio::spawn(self.clone().pump(session.clone(), events));
        Ok((session, rx))
    }

    /// Relays the child's output to the client until the child ends.
    async fn pump(self: Arc<Self>, session: Arc<Session>, mut events: mpsc::Receiver<ChildEvent>) {
        let limit = self.config.session_buffer_bytes;
        while let Some(event) = events.recv().await {
            match event {
                ChildEvent::Line(line) => {
                    if !session.answered.swap(true, Ordering::Relaxed) {
                        self.metrics
                            .child_spawn_duration
                            .observe(session.spawned_at.elapsed().as_secs_f64());
                    }
                    match jsonrpc::classify(&line) {
                        Ok(Kind::Response { id }) => {
                            session.inflight.lock().unwrap().remove(&id);
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
                    session.touch(&self);
                    self.metrics.message("server_to_client");
                    if !session.push(text, limit) && !session.closed.is_cancelled() {
                        tracing::warn!(session = %session.id_str, limit, "client is not reading its stream; closing the session");
                        self.metrics.error("slow_client");
                        self.close(&session.id, CloseCause::SlowClient);
                    }
                }
                ChildEvent::TooLong { prefix, len } => {
                    self.metrics.error("child_line_too_long");
                    tracing::warn!(session = %session.id_str, len, limit = self.config.max_line_bytes, "child wrote an over-long message; dropped");
                    if let Some(id) = jsonrpc::id_from_prefix(&prefix)
                        && session.inflight.lock().unwrap().remove(&id)
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
                    self.children_alive.fetch_sub(1, Ordering::Relaxed);
                    self.metrics.children_alive.dec();
                    self.metrics
                        .child_exits
                        .get_or_create(&super::metrics::Cause {
                            cause: cause.as_str(),
                        })
                        .inc();
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
        let ids: Vec<String> = session.inflight.lock().unwrap().drain().collect();
        for id in ids {
            session.push(
                jsonrpc::error_response(&id, jsonrpc::INTERNAL_ERROR, message),
                usize::MAX,
            );
        }
    }

    /// Sends one client message to the session's child.
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
        match kind {
            Kind::Request { id, .. } => {
                session.inflight.lock().unwrap().insert(id.clone());
                self.arm_start_watchdog(session);
            }
            // A cancelled request gets no response; forget it so a later child failure does
            // not answer it either.
            Kind::Notification { method } if method == "notifications/cancelled" => {
                if let Some(id) = jsonrpc::cancelled_request_id(&line) {
                    session.inflight.lock().unwrap().remove(&id);
                }
            }
            _ => {}
        }
        self.metrics.message("client_to_server");
        match session
            .stdin
            .send_timeout(line, Duration::from_secs(10))
            .await
        {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(ForwardError::Closed),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(ForwardError::Busy),
        }
    }

    /// Answers a request on the client's stream without involving the child.
    pub fn answer(&self, session: &Session, message: String) {
        self.metrics.message("server_to_client");
        session.push(message, usize::MAX);
    }

    /// On the first request, start a timer: a child that has not answered anything by then is
    /// considered failed to start.
    fn arm_start_watchdog(self: &Arc<Self>, session: &Arc<Session>) {
        if session.answered.load(Ordering::Relaxed)
            || session.watchdog_armed.swap(true, Ordering::Relaxed)
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
            if !session.answered.load(Ordering::Relaxed) {
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

    /// Ends a session once: its stream ends (after what is queued), its child is terminated.
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
        self.terminations.spawn(async move {
            session.child.lock().await.terminate(grace).await;
        });
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

    /// Closes every session and waits (up to `grace` plus the kill) for their children.
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
            self.terminations.spawn(async move {
                s.child.lock().await.terminate(grace).await;
            });
        }
        self.terminations.close();
        self.terminations.wait().await;
    }
}
