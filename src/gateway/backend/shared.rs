//! The shared backend: one child process (per slot) serving many sessions through a [`Mux`].
//! This file owns the process side — spawning, relaying lines through the mux under one lock (so
//! what a session sends reaches the child in order; what the child says is delivered to sessions
//! after the lock is released, in the same order), restarting with backoff when the child dies,
//! killing a child whose handshake hangs — and leaves routing to the mux.
//!
//! Owns: the shared children and their members. Must not touch: routing decisions (the mux's)
//! or the session table (members are [`Client`]s).

use parking_lot::Mutex;
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use super::{
    api::{Backend, Client, CloseCause, ForwardError, Limits, Link, OpenError, Status},
    children::{Children, ExitCause},
    deliveries::Deliveries,
    mux::{Mux, Out},
    own::Output,
    process::{ChildOutput, ChildProcess},
};
use crate::{
    config::{Backend as BackendKind, ServerConfig},
    gateway::metrics::ServerMetrics,
    mcp::{
        jsonrpc::Kind,
        lines::{Frame, FrameSink},
        queue::{Input, LineQueue},
    },
};

/// First restart delay; doubles per consecutive failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A child that ran this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Every shared child of the gateway.
pub struct Shared {
    config: Arc<ServerConfig>,
    limits: Limits,
    children: Arc<Children>,
    slots: Vec<Arc<Slot>>,
    /// The supervisors, so shutdown can wait for them.
    supervisors: TaskTracker,
    stop: CancellationToken,
}

impl Shared {
    pub fn new(config: Arc<ServerConfig>, limits: Limits, children: Arc<Children>) -> Self {
        Shared {
            slots: (0..config.children).map(Slot::new).collect(),
            config,
            limits,
            children,
            supervisors: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }
}

impl Backend for Shared {
    fn kind(&self) -> BackendKind {
        BackendKind::Shared
    }

    fn start(self: Arc<Self>) -> anyhow::Result<()> {
        for slot in &self.slots {
            let spawned = ChildProcess::spawn(
                &self.config.child,
                slot.name(),
                self.limits.max_line_bytes,
                &[],
                Input::Queued,
            )
            .map_err(|e| anyhow::anyhow!("cannot start {:?}: {e}", self.config.child.program))?;
            self.supervisors.spawn(slot.clone().supervise(
                self.config.clone(),
                self.limits,
                self.children.clone(),
                spawned,
                self.stop.clone(),
            ));
        }
        Ok(())
    }

    fn open(
        &self,
        client: Arc<dyn Client>,
        _env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError> {
        // The least busy slot, preferring ready ones.
        let slot = self
            .slots
            .iter()
            .min_by_key(|c| c.load())
            .expect("at least one shared child");
        let id = client.id();
        // With --otel: a step of the request that opens the session (its initialize).
        let step = crate::telemetry::spans::step("attach shared child", "internal");
        step.record("gateway.server", self.config.name.as_str());
        step.in_scope(|| slot.attach(client));
        Ok(Box::new(SharedLink {
            slot: slot.clone(),
            session: id,
            input_limit: self.limits.input_bytes,
        }))
    }

    fn status(&self) -> Status {
        Status {
            children_alive: self.children.alive(),
            slots: self.slots.iter().map(|c| c.status()).collect(),
            ready: Some(self.slots.iter().filter(|c| c.is_ready()).count()),
            ..Status::default()
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop.cancel();
            self.supervisors.close();
            self.supervisors.wait().await;
        })
    }
}

/// A session's place on a shared child.
struct SharedLink {
    slot: Arc<Slot>,
    session: Uuid,
    input_limit: usize,
}

impl Link for SharedLink {
    fn forward<'a>(
        &'a self,
        line: Bytes,
        kind: &'a Kind,
    ) -> BoxFuture<'a, Result<(), ForwardError>> {
        Box::pin(
            self.slot
                .forward(self.session, line, kind, self.input_limit),
        )
    }

    fn release(&self, _grace: Duration) {
        self.slot.detach(self.session);
    }

    fn serving(&self) -> Option<&str> {
        Some(self.slot.name())
    }
}

struct Inner {
    mux: Mux,
    /// The running child's input; `None` while there is no child.
    stdin: Option<LineQueue>,
    /// The sessions on this child.
    members: HashMap<Uuid, Arc<dyn Client>>,
}

/// One shared child slot: the current process (restarted as needed) and its sessions.
///
/// Locks, in the only order they are taken: `inner` (the mux and the child's input), then the
/// child's input queue or `deliveries.queue` (each alone, briefly). A session's own locks
/// (`Client::send`: its outbound buffer and stream routing) are never taken under `inner`:
/// messages for sessions are queued under it, in the mux's order, and delivered after it is
/// released ([`Deliveries`]), so one slow session cannot hold up the child's other sessions.
struct Slot {
    index: usize,
    name: String,
    inner: Mutex<Inner>,
    deliveries: Deliveries,
    pid: AtomicU32,
    restarts: AtomicU64,
}

type Spawned = (ChildProcess, ChildOutput);

impl Slot {
    fn new(index: usize) -> Arc<Self> {
        Arc::new(Slot {
            index,
            name: format!("shared-{index}"),
            deliveries: Deliveries::default(),
            inner: Mutex::new(Inner {
                mux: Mux::new().before_first_child(),
                stdin: None,
                members: HashMap::new(),
            }),
            pid: AtomicU32::new(0),
            restarts: AtomicU64::new(0),
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// How to rank this slot for a new session: ready ones first, then the least busy.
    fn load(&self) -> (bool, usize) {
        let inner = self.inner.lock();
        (
            inner.stdin.is_none() || !inner.mux.is_ready(),
            inner.mux.members(),
        )
    }

    /// Running and initialized (or not yet asked to initialize).
    fn is_ready(&self) -> bool {
        let inner = self.inner.lock();
        inner.stdin.is_some() && inner.mux.is_ready()
    }

    fn status(&self) -> Value {
        let inner = self.inner.lock();
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

    fn attach(&self, client: Arc<dyn Client>) {
        let mut inner = self.inner.lock();
        inner.mux.attach(client.id());
        inner.members.insert(client.id(), client);
    }

    /// The session has ended: its requests are cancelled toward the child.
    fn detach(&self, session: Uuid) {
        self.with_mux(|inner, out| {
            inner.members.remove(&session);
            inner.mux.detach(session, out);
        });
    }

    /// One client message for the child (rewritten by the mux).
    async fn forward(
        &self,
        session: Uuid,
        line: Bytes,
        kind: &Kind,
        input_limit: usize,
    ) -> Result<(), ForwardError> {
        // With --otel, a request's way onto the child (waiting for room, the id rewritten) is
        // a step: sent, held while the child restarts, or busy.
        let step = match kind {
            Kind::Request { .. } => {
                crate::telemetry::spans::step("route on shared child", "internal")
            }
            _ => tracing::Span::none(),
        };
        step.record("gateway.child", self.name());
        let stdin = self.inner.lock().stdin.clone();
        let outcome = if stdin.is_some() { "sent" } else { "held" };
        if let Some(stdin) = stdin
            && !stdin.wait_room(input_limit, Duration::from_secs(10)).await
        {
            step.record("gateway.outcome", "busy");
            return Err(ForwardError::Busy);
        }
        let taken = self.with_mux(|inner, out| {
            #[cfg(debug_assertions)]
            test_panic(kind);
            // While no child takes input, what waits for one is bounded in bytes too.
            if !inner.mux.room_for(line.len(), input_limit) {
                return false;
            }
            inner.mux.from_client(session, &line, kind, out);
            true
        });
        step.record("gateway.outcome", if taken { outcome } else { "busy" });
        if taken {
            Ok(())
        } else {
            Err(ForwardError::Busy)
        }
    }

    /// Runs `f` on the mux under its lock; what the mux says goes to the child at once (under the
    /// lock, in order) and to sessions after the lock is released, and sessions that stopped
    /// reading are ended.
    fn with_mux<R>(&self, f: impl FnOnce(&mut Inner, &mut Vec<Out>) -> R) -> R {
        let r = {
            let mut out = vec![];
            let mut inner = self.inner.lock();
            let r = f(&mut inner, &mut out);
            self.apply(&inner, out);
            r
        };
        end_all(self.deliveries.drain());
        r
    }

    /// Sends the mux's output to the child and queues what is for sessions.
    fn apply(&self, inner: &Inner, out: Vec<Out>) {
        for o in out {
            match o {
                Out::Child(line) => match &inner.stdin {
                    Some(stdin) if stdin.push(line).is_ok() => {}
                    _ => tracing::debug!(child = %self.name, "child input closed; message dropped"),
                },
                Out::Session(id, message) => {
                    if let Some(client) = inner.members.get(&id) {
                        self.deliveries
                            .queue
                            .lock()
                            .push_back((client.clone(), message));
                    }
                }
            }
        }
    }

    /// Runs the slot until shutdown: relays the child's output, restarts it when it dies.
    async fn supervise(
        self: Arc<Self>,
        config: Arc<ServerConfig>,
        limits: Limits,
        children: Arc<Children>,
        first: Spawned,
        shutdown: CancellationToken,
    ) {
        let metrics = children.metrics.clone();
        let mut next = Some(first);
        let mut failures: u32 = 0;
        loop {
            let (mut child, output) = match next.take() {
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
                    metrics.all.child_restarts.inc();
                    match ChildProcess::spawn(
                        &config.child,
                        &self.name,
                        limits.max_line_bytes,
                        &[],
                        Input::Queued,
                    ) {
                        Ok(spawned) => spawned,
                        Err(e) => {
                            failures += 1;
                            metrics.error("spawn");
                            tracing::error!(child = %self.name, error = %e, retry_in_s = delay.as_secs_f64() * 2.0, "cannot restart the shared child");
                            self.fail_waiting(&format!("cannot start: {e}"));
                            continue;
                        }
                    }
                }
            };
            children.started();
            self.pid.store(child.pid, Ordering::Relaxed);
            tracing::info!(child = %self.name, pid = child.pid, "shared child started");
            self.with_mux(|inner, out| {
                inner.stdin = Some(child.stdin());
                inner.mux.child_started(out);
            });
            let started = Instant::now();
            let ended = self
                .relay(limits, &children, &mut child, output, &shutdown)
                .await;
            self.inner.lock().stdin = None;
            let Some((cause, detail)) = ended else {
                // Shutdown: the sessions are already gone.
                child.terminate(limits.shutdown_grace).await;
                children.ended(ExitCause::Terminated);
                return;
            };
            children.ended(cause);
            tracing::warn!(child = %self.name, %detail, cause = cause.as_str(), "shared child ended; restarting it");
            self.fail_waiting(&detail);
            failures = if started.elapsed() > STABLE_AFTER {
                0
            } else {
                failures + 1
            };
        }
    }

    /// Fails what waits on a dead child (in-flight and held requests).
    fn fail_waiting(&self, reason: &str) {
        self.with_mux(|inner, out| inner.mux.child_died(reason, out));
    }

    /// Relays the child's output until it ends (`Some`) or shutdown (`None`). Lines go
    /// through the mux as they are read, on this task.
    async fn relay(
        self: &Arc<Self>,
        limits: Limits,
        children: &Children,
        child: &mut ChildProcess,
        output: ChildOutput,
        shutdown: &CancellationToken,
    ) -> Option<(ExitCause, String)> {
        let start_timeout = limits.start_timeout;
        let metrics = &children.metrics;
        let sink = ToMux {
            slot: self.clone(),
            limit: limits.max_line_bytes,
            metrics: metrics.clone(),
        };
        let reading = output.relay(sink);
        tokio::pin!(reading);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                ended = &mut reading => return Some(ended),
                _ = tick.tick() => {
                    let overdue = self.inner.lock().mux.handshake_overdue(start_timeout);
                    if overdue {
                        tracing::error!(child = %self.name, timeout_s = start_timeout.as_secs_f64(), "shared child did not answer initialize in time; killing it");
                        metrics.error("child_start_timeout");
                        child.terminate(Duration::from_millis(500)).await;
                    }
                }
                _ = shutdown.cancelled() => return None,
            }
        }
    }
}

/// The child's output, through the mux to the sessions, as it is read.
struct ToMux {
    slot: Arc<Slot>,
    limit: usize,
    metrics: ServerMetrics,
}

impl FrameSink for ToMux {
    async fn frame(&mut self, frame: Frame) -> bool {
        let slot = &self.slot;
        slot.with_mux(|inner, out| match frame {
            Frame::Line(line) => inner.mux.from_child(&line, out),
            Frame::TooLong { prefix, len } => {
                let limit = self.limit;
                self.metrics.error("child_line_too_long");
                tracing::warn!(child = %slot.name, len, limit, "child wrote an over-long message; dropped");
                inner.mux.child_too_long(&prefix, len, limit, out);
            }
        });
        true
    }
}

/// Ends sessions whose clients stopped reading (called outside the slot's lock: ending a session
/// detaches it, which takes the lock).
fn end_all(clients: Vec<Arc<dyn Client>>) {
    for client in clients {
        client.end(CloseCause::SlowClient);
    }
}

/// Debug builds only (the tests' binary): with `AAREGURU_MCP_TEST_PANICS=1` in the gateway's
/// environment, a request for `aareguru-test/panic` panics while this child's lock is held —
/// how the tests show that one panicking request cannot take the other sessions down.
#[cfg(debug_assertions)]
fn test_panic(kind: &Kind) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if matches!(kind, Kind::Request { method, .. } if method == "aareguru-test/panic")
        && *ON.get_or_init(|| std::env::var_os("AAREGURU_MCP_TEST_PANICS").is_some())
    {
        panic!("aareguru-test/panic: a request panicked while holding the shared child's lock");
    }
}
