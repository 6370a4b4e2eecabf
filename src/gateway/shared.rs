//! The shared backend: one child process (per pool slot) serving many sessions through a
//! [`Mux`]. This file owns the process side — spawning, relaying lines both ways under one
//! lock (so what a session sends reaches the child in order), restarting with backoff when the
//! child dies, killing a child whose handshake hangs — and leaves routing to the mux.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::mcp::{jsonrpc::Kind, lines::LineQueue};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    child::{ChildEvent, ChildProcess, ExitCause},
    mux::{Mux, Out},
    session::{CloseCause, ForwardError, Session, Sessions},
};

/// First restart delay; doubles per consecutive failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A child that ran this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

struct Inner {
    mux: Mux,
    /// The running child's input; `None` while there is no child.
    stdin: Option<LineQueue>,
}

/// One shared child slot: the current process (restarted as needed) and its sessions.
pub struct SharedChild {
    pub index: usize,
    name: String,
    inner: Mutex<Inner>,
    pid: AtomicU32,
    restarts: AtomicU64,
}

pub type Spawned = (ChildProcess, mpsc::Receiver<ChildEvent>);

impl SharedChild {
    pub fn new(index: usize) -> Arc<Self> {
        Arc::new(SharedChild {
            index,
            name: format!("shared-{index}"),
            inner: Mutex::new(Inner {
                mux: Mux::new(),
                stdin: None,
            }),
            pid: AtomicU32::new(0),
            restarts: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How to rank this slot for a new session: ready ones first, then the least busy.
    pub fn load(&self) -> (bool, usize) {
        let inner = self.inner.lock().unwrap();
        (
            inner.stdin.is_none() || !inner.mux.is_ready(),
            inner.mux.members(),
        )
    }

    /// Running and initialized (or not yet asked to initialize).
    pub fn is_ready(&self) -> bool {
        let inner = self.inner.lock().unwrap();
        inner.stdin.is_some() && inner.mux.is_ready()
    }

    pub fn status(&self) -> Value {
        let inner = self.inner.lock().unwrap();
        let state = match (&inner.stdin, inner.mux.is_ready()) {
            (Some(_), true) => "ready",
            (Some(_), false) => "initializing",
            (None, _) => "restarting",
        };
        json!({
            "index": self.index,
            "state": state,
            "pid": self.pid.load(Ordering::Relaxed),
            "sessions": inner.mux.members(),
            "in_flight": inner.mux.in_flight(),
            "restarts": self.restarts.load(Ordering::Relaxed),
        })
    }

    pub fn attach(&self, session: Uuid) {
        self.inner.lock().unwrap().mux.attach(session);
    }

    /// The session has ended: its requests are cancelled toward the child.
    pub fn detach(&self, sessions: &Sessions, session: Uuid) {
        let mut out = vec![];
        let mut inner = self.inner.lock().unwrap();
        inner.mux.detach(session, &mut out);
        // Only child-bound messages come out of a detach; nothing to close.
        let _ = self.apply(&mut inner, out, sessions);
    }

    /// One client message for the child (rewritten by the mux).
    pub async fn forward(
        &self,
        sessions: &Arc<Sessions>,
        session: &Session,
        line: &[u8],
        kind: &Kind,
    ) -> Result<(), ForwardError> {
        let stdin = self.inner.lock().unwrap().stdin.clone();
        if let Some(stdin) = stdin
            && !stdin
                .wait_room(sessions.stdin_limit(), Duration::from_secs(10))
                .await
        {
            return Err(ForwardError::Busy);
        }
        let closes = {
            let mut out = vec![];
            let mut inner = self.inner.lock().unwrap();
            inner.mux.from_client(session.id, line, kind, &mut out);
            self.apply(&mut inner, out, sessions)
        };
        sessions.close_many(closes, CloseCause::SlowClient);
        Ok(())
    }

    /// Delivers the mux's output; returns sessions that must be closed for not reading.
    fn apply(&self, inner: &mut Inner, out: Vec<Out>, sessions: &Sessions) -> Vec<Uuid> {
        let mut closes = vec![];
        for o in out {
            match o {
                Out::Child(line) => match &inner.stdin {
                    Some(stdin) if stdin.push(line).is_ok() => {}
                    _ => tracing::debug!(child = %self.name, "child input closed; message dropped"),
                },
                Out::Session(id, message) => {
                    if let Some(session) = sessions.get(&id)
                        && !sessions.deliver(&session, message)
                    {
                        closes.push(id);
                    }
                }
            }
        }
        closes
    }

    /// Runs the slot until shutdown: relays the child's output, restarts it when it dies.
    pub async fn supervise(
        self: Arc<Self>,
        sessions: Arc<Sessions>,
        first: Spawned,
        shutdown: CancellationToken,
    ) {
        let config = sessions.config().clone();
        let metrics = sessions.metrics.clone();
        let mut next = Some(first);
        let mut failures: u32 = 0;
        loop {
            let (mut child, mut events) = match next.take() {
                Some(spawned) => spawned,
                None => {
                    let delay = FIRST_BACKOFF
                        .saturating_mul(1 << failures.min(10))
                        .min(MAX_BACKOFF);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    self.restarts.fetch_add(1, Ordering::Relaxed);
                    metrics.child_restarts.inc();
                    match ChildProcess::spawn(&config.child, &self.name, config.max_line_bytes) {
                        Ok(spawned) => spawned,
                        Err(e) => {
                            failures += 1;
                            metrics.error("spawn");
                            tracing::error!(child = %self.name, error = %e, retry_in_s = delay.as_secs_f64() * 2.0, "cannot restart the shared child");
                            self.fail_waiting(&sessions, &format!("cannot start: {e}"));
                            continue;
                        }
                    }
                }
            };
            metrics.child_spawns.inc();
            sessions.child_started();
            self.pid.store(child.pid, Ordering::Relaxed);
            tracing::info!(child = %self.name, pid = child.pid, "shared child started");
            let closes = {
                let mut out = vec![];
                let mut inner = self.inner.lock().unwrap();
                inner.stdin = Some(child.stdin());
                inner.mux.child_started(&mut out);
                self.apply(&mut inner, out, &sessions)
            };
            sessions.close_many(closes, CloseCause::SlowClient);
            let started = Instant::now();
            let ended = self
                .relay(&sessions, &mut child, &mut events, &shutdown)
                .await;
            self.inner.lock().unwrap().stdin = None;
            let Some((cause, detail)) = ended else {
                // Shutdown: the sessions are already gone.
                child.terminate(config.shutdown_grace).await;
                sessions.child_ended(ExitCause::Terminated);
                return;
            };
            sessions.child_ended(cause);
            tracing::warn!(child = %self.name, %detail, cause = cause.as_str(), "shared child ended; restarting it");
            self.fail_waiting(&sessions, &detail);
            failures = if started.elapsed() > STABLE_AFTER {
                0
            } else {
                failures + 1
            };
        }
    }

    /// Fails what waits on a dead child (in-flight and held requests).
    fn fail_waiting(&self, sessions: &Arc<Sessions>, reason: &str) {
        let closes = {
            let mut out = vec![];
            let mut inner = self.inner.lock().unwrap();
            inner.mux.child_died(reason, &mut out);
            self.apply(&mut inner, out, sessions)
        };
        sessions.close_many(closes, CloseCause::SlowClient);
    }

    /// Relays the child's output until it ends (`Some`) or shutdown (`None`).
    async fn relay(
        &self,
        sessions: &Arc<Sessions>,
        child: &mut ChildProcess,
        events: &mut mpsc::Receiver<ChildEvent>,
        shutdown: &CancellationToken,
    ) -> Option<(ExitCause, String)> {
        let limit = sessions.config().max_line_bytes;
        let start_timeout = sessions.config().child_start_timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = tick.tick() => {
                    let overdue = self.inner.lock().unwrap().mux.handshake_overdue(start_timeout);
                    if overdue {
                        tracing::error!(child = %self.name, timeout_s = start_timeout.as_secs_f64(), "shared child did not answer initialize in time; killing it");
                        sessions.metrics.error("child_start_timeout");
                        child.terminate(Duration::from_millis(500)).await;
                    }
                    continue;
                }
                _ = shutdown.cancelled() => return None,
            };
            let out_and_closes = {
                let mut out = vec![];
                let mut inner = self.inner.lock().unwrap();
                match event {
                    Some(ChildEvent::Line(line)) => inner.mux.from_child(&line, &mut out),
                    Some(ChildEvent::TooLong { prefix, len }) => {
                        sessions.metrics.error("child_line_too_long");
                        tracing::warn!(child = %self.name, len, limit, "child wrote an over-long message; dropped");
                        inner.mux.child_too_long(&prefix, len, limit, &mut out);
                    }
                    Some(ChildEvent::Exited { cause, detail }) => return Some((cause, detail)),
                    None => return Some((ExitCause::Crashed, "output ended".into())),
                }
                self.apply(&mut inner, out, sessions)
            };
            sessions.close_many(out_and_closes, CloseCause::SlowClient);
        }
    }
}
