//! What a server's owner hears from it ([`ChildEvent`]), how it ended ([`ExitCause`]), and how
//! many child processes run ([`Children`], for `/health` and `/metrics`). In-process servers
//! speak the same events, so one relay serves both.
//!
//! Owns: those words and the count. Must not touch: processes themselves.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use crate::{gateway::metrics::ServerMetrics, mcp::lines::Frame};

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// Exited on its own with status 0.
    Exited,
    /// Exited with a non-zero status or was killed by a signal it was not sent by us.
    Crashed,
    /// Ended because we terminated it.
    Terminated,
}

impl ExitCause {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitCause::Exited => "exited",
            ExitCause::Crashed => "crashed",
            ExitCause::Terminated => "terminated",
        }
    }
}

/// What the child said or did, in order, to whoever owns it.
#[derive(Debug)]
pub enum ChildEvent {
    /// One JSON line from stdout (without the newline).
    Line(Bytes),
    /// A line longer than the limit: its first bytes (to find an id) and its length (without
    /// the newline).
    TooLong { prefix: Bytes, len: usize },
    /// Stdout closed and the process was reaped; always the last event.
    Exited { cause: ExitCause, detail: String },
}

impl From<Frame> for ChildEvent {
    fn from(frame: Frame) -> Self {
        match frame {
            Frame::Line(line) => ChildEvent::Line(line),
            Frame::TooLong { prefix, len } => ChildEvent::TooLong { prefix, len },
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
