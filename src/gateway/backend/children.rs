//! How a server ended ([`ExitCause`]) and how many child processes run ([`Children`], for
//! `/health` and `/metrics`). In-process servers end the same ways, so one relay serves both.
//!
//! Owns: those words and the count. Must not touch: processes themselves.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::sandbox::Limit;
use crate::gateway::metrics::ServerMetrics;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// Exited on its own with status 0.
    Exited,
    /// Exited with a non-zero status or was killed by a signal it was not sent by us.
    Crashed,
    /// Ended because we terminated it.
    Terminated,
    /// Ended by one of its sandbox's limits.
    Limit(Limit),
}

impl ExitCause {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitCause::Exited => "exited",
            ExitCause::Crashed => "crashed",
            ExitCause::Terminated => "terminated",
            ExitCause::Limit(Limit::Cpu) => "limit_cpu",
            ExitCause::Limit(Limit::FileSize) => "limit_file_size",
            ExitCause::Limit(Limit::Memory) => "limit_memory",
        }
    }
}

/// Child processes running, counted for `/health` and `/metrics`.
pub struct Children {
    alive: AtomicUsize,
    pub metrics: ServerMetrics,
}

impl Children {
    pub fn new(metrics: ServerMetrics) -> Self {
        Children {
            alive: AtomicUsize::new(0),
            metrics,
        }
    }

    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    pub fn started(&self) {
        self.alive.fetch_add(1, Ordering::Relaxed);
        self.metrics.child_started();
    }

    pub fn ended(&self, cause: ExitCause) {
        self.alive.fetch_sub(1, Ordering::Relaxed);
        self.metrics.child_ended(cause.as_str());
    }
}
