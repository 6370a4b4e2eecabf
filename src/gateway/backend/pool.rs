//! The warm pool of the per-session backend (`--prespawn N`): N children started ahead of any
//! session and waiting, so a new session takes one that is ready instead of waiting for a
//! process to start. A pooled child has seen nothing yet — the session's own `initialize` is the
//! first message it reads — and serves that one session only. The pool refills in the
//! background; a pooled child that dies while waiting is replaced, with the backoff the shared
//! backend uses for restarts.
//!
//! Owns: the waiting children. Must not touch: sessions (a child leaves the pool for good).

use parking_lot::Mutex;
use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    children::{Children, ExitCause},
    process::{ChildOutput, ChildProcess},
};
use crate::{config::ChildCommand, mcp::queue::Input};

/// First delay after a failed start; doubles per consecutive failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often waiting children are checked for having died.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// After a child was taken, the refill waits until sessions stopped taking for this long (a
/// burst of new sessions is served before the pool competes with it for the CPU)…
const REFILL_QUIET: Duration = Duration::from_millis(100);
/// …but no longer than this.
const REFILL_LATEST: Duration = Duration::from_secs(1);

/// A started child and its output (unread until a session takes it).
pub type Spawned = (ChildProcess, ChildOutput);

pub struct Pool {
    target: usize,
    command: ChildCommand,
    max_line_bytes: usize,
    children: Arc<Children>,
    ready: Mutex<VecDeque<Spawned>>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Wakes the refill loop when a child was taken.
    taken: Notify,
    stop: CancellationToken,
    /// The refill loop, awaited on shutdown (a child it is starting joins the pool first).
    refilling: Mutex<Option<JoinHandle<()>>>,
}

impl Pool {
    pub fn new(
        target: usize,
        command: ChildCommand,
        max_line_bytes: usize,
        children: Arc<Children>,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            target,
            command,
            max_line_bytes,
            children,
            ready: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            taken: Notify::new(),
            stop: CancellationToken::new(),
            refilling: Mutex::new(None),
        })
    }

    /// Starts filling the pool, and keeps it full until [`Pool::drain`].
    pub fn start(self: &Arc<Self>) {
        self.children.metrics.pool_started();
        let refill = tokio::spawn(self.clone().refill());
        *self.refilling.lock() = Some(refill);
    }

    /// A waiting child for a new session, if one is ready.
    pub fn take(&self) -> Option<Spawned> {
        let taken = loop {
            let next = self.ready.lock().pop_front();
            match next {
                // One that died while waiting is the refill loop's to count; skip it.
                Some((child, _)) if child.has_exited() => self.retire(&child),
                other => break other,
            }
        };
        let metrics = &self.children.metrics;
        match &taken {
            Some(_) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                metrics.pool_hit();
                self.taken.notify_one();
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                metrics.pool_miss();
            }
        }
        metrics.pool_ready(self.ready.lock().len());
        taken
    }

    /// A child that died while waiting: counted as ended.
    fn retire(&self, child: &ChildProcess) {
        let (cause, detail) = child
            .ended()
            .unwrap_or((ExitCause::Crashed, "ended".into()));
        tracing::warn!(%detail, "a waiting pooled child ended; replacing it");
        self.children.ended(cause);
    }

    async fn refill(self: Arc<Self>) {
        let mut failures: u32 = 0;
        loop {
            // Drop the ones that died while waiting.
            let dead: Vec<Spawned> = {
                let mut ready = self.ready.lock();
                let (dead, alive): (Vec<_>, Vec<_>) =
                    ready.drain(..).partition(|(c, _)| c.has_exited());
                ready.extend(alive);
                dead
            };
            for (child, _) in dead {
                self.retire(&child);
            }
            let mut backoff = None;
            while self.ready.lock().len() < self.target && !self.stop.is_cancelled() {
                // On a runtime thread, never a blocking-pool one: the kernel sends
                // PR_SET_PDEATHSIG when the *thread* that forked the child exits, and idle
                // blocking threads exit after ten seconds. Between spawns, sessions go first.
                tokio::task::yield_now().await;
                let spawned = ChildProcess::spawn(
                    &self.command,
                    "pool",
                    self.max_line_bytes,
                    &[],
                    Input::Direct,
                );
                match spawned {
                    Ok(spawned) => {
                        failures = 0;
                        self.children.started();
                        self.ready.lock().push_back(spawned);
                    }
                    Err(e) => {
                        failures += 1;
                        let delay = FIRST_BACKOFF
                            .saturating_mul(1 << failures.min(10))
                            .min(MAX_BACKOFF);
                        self.children.metrics.error("spawn");
                        tracing::error!(error = %e, retry_in_s = delay.as_secs_f64(), "cannot start a pooled child");
                        backoff = Some(delay);
                        break;
                    }
                }
            }
            self.children.metrics.pool_ready(self.ready.lock().len());
            let wait = backoff.unwrap_or(CHECK_EVERY);
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.taken.notified(), if backoff.is_none() => self.quiet().await,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Waits until no child has been taken for [`REFILL_QUIET`] (at most [`REFILL_LATEST`]).
    async fn quiet(&self) {
        let latest = tokio::time::sleep(REFILL_LATEST);
        tokio::pin!(latest);
        loop {
            tokio::select! {
                _ = &mut latest => return,
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(REFILL_QUIET) => return,
                _ = self.taken.notified() => {}
            }
        }
    }

    /// Stops refilling and terminates the waiting children (on `terminations`).
    pub async fn drain(&self, terminations: &TaskTracker, grace: Duration) {
        self.stop.cancel();
        let refill = self.refilling.lock().take();
        if let Some(refill) = refill {
            let _ = refill.await;
        }
        let waiting: Vec<Spawned> = self.ready.lock().drain(..).collect();
        self.children.metrics.pool_ready(0);
        for (mut child, _) in waiting {
            let children = self.children.clone();
            terminations.spawn(async move {
                child.terminate(grace).await;
                children.ended(ExitCause::Terminated);
            });
        }
    }

    /// What `/health` shows of the pool.
    pub fn status(&self) -> Value {
        json!({
            "target": self.target,
            "ready": self.ready.lock().len(),
            "hits": self.hits.load(Ordering::Relaxed),
            "misses": self.misses.load(Ordering::Relaxed),
        })
    }
}
