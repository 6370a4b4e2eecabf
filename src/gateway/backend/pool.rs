//! The warm pool of the per-session backend (`--prespawn N`): N children started ahead of any
//! session and waiting, so a new session takes one that is ready instead of waiting for a
//! process to start. A pooled child has seen nothing yet — the session's own `initialize` is the
//! first message it reads — and serves that one session only. The pool refills in the
//! background; a pooled child that dies while waiting is replaced, with the backoff the shared
//! backend uses for restarts.
//!
//! Owns: the waiting children. Must not touch: sessions (a child leaves the pool for good).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::sync::Notify;
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
        })
    }

    /// Starts filling the pool, and keeps it full until [`Pool::drain`].
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(self.clone().refill());
    }

    /// A waiting child for a new session, if one is ready.
    pub fn take(&self) -> Option<Spawned> {
        let taken = loop {
            let next = self.ready.lock().unwrap().pop_front();
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
        metrics.pool_ready(self.ready.lock().unwrap().len());
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
                let mut ready = self.ready.lock().unwrap();
                let (dead, alive): (Vec<_>, Vec<_>) =
                    ready.drain(..).partition(|(c, _)| c.has_exited());
                ready.extend(alive);
                dead
            };
            for (child, _) in dead {
                self.retire(&child);
            }
            let mut backoff = None;
            while self.ready.lock().unwrap().len() < self.target && !self.stop.is_cancelled() {
                match ChildProcess::spawn(
                    &self.command,
                    "pool",
                    self.max_line_bytes,
                    &[],
                    Input::Direct,
                ) {
                    Ok(spawned) => {
                        failures = 0;
                        self.children.started();
                        self.ready.lock().unwrap().push_back(spawned);
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
            self.children
                .metrics
                .pool_ready(self.ready.lock().unwrap().len());
            let wait = backoff.unwrap_or(CHECK_EVERY);
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.taken.notified(), if backoff.is_none() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Stops refilling and terminates the waiting children (on `terminations`).
    pub fn drain(&self, terminations: &TaskTracker, grace: Duration) {
        self.stop.cancel();
        let waiting: Vec<Spawned> = self.ready.lock().unwrap().drain(..).collect();
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
            "ready": self.ready.lock().unwrap().len(),
            "hits": self.hits.load(Ordering::Relaxed),
            "misses": self.misses.load(Ordering::Relaxed),
        })
    }
}
