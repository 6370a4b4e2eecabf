//! Bounds on what waits for a stateless request's reader: what the server said to a call that
//! nobody reads yet (a parked call waits up to `--input-wait-timeout` for its retry), and what
//! the request has to say to an HTTP client that stopped reading its stream. Each is counted in
//! bytes against the same limit as a session's buffer (`--session-buffer-bytes`); past it the
//! call ends as a slow client, as a session would.
//!
//! Owns: byte accounting between a writer and a reader. Must not touch: what the bytes mean.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::mpsc;

/// What goes back to the client.
#[derive(Debug)]
pub enum Reply {
    /// A notification related to the request (progress, a log message).
    Related(String),
    /// The response; the error code if it is an error.
    Final(String, Option<i64>),
}

/// Bytes queued and not yet read, against a limit.
#[derive(Clone)]
pub(super) struct Budget {
    queued: Arc<AtomicUsize>,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            queued: Arc::default(),
            limit,
        }
    }

    /// Counts `n` more bytes queued; false (and nothing counted) when that would pass the limit.
    pub fn take(&self, n: usize) -> bool {
        let mut now = self.queued.load(Ordering::Relaxed);
        loop {
            if now.saturating_add(n) > self.limit {
                return false;
            }
            match self.queued.compare_exchange_weak(
                now,
                now + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => now = seen,
            }
        }
    }

    /// Counts `n` bytes queued whatever the limit (small messages that settle a request).
    pub fn force(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::AcqRel);
    }

    /// `n` bytes were read.
    pub fn give(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// Where a stateless request's replies go.
pub(super) struct Replies {
    tx: mpsc::UnboundedSender<Reply>,
    budget: Budget,
}

/// What the HTTP side reads: related notifications, then the final answer.
pub struct ReplyStream {
    rx: mpsc::UnboundedReceiver<Reply>,
    budget: Budget,
}

pub(super) fn replies(limit: usize) -> (Replies, ReplyStream) {
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Budget::new(limit);
    (
        Replies {
            tx,
            budget: budget.clone(),
        },
        ReplyStream { rx, budget },
    )
}

impl Replies {
    /// A related notification; false when the client has not read what it already has.
    #[must_use]
    pub fn related(&self, text: String) -> bool {
        if !self.budget.take(text.len()) {
            return false;
        }
        let _ = self.tx.send(Reply::Related(text));
        true
    }

    /// The final answer (always queued: it settles the request).
    pub fn answer(&self, text: String, code: Option<i64>) {
        self.budget.force(text.len());
        let _ = self.tx.send(Reply::Final(text, code));
    }

    /// Resolves once the reader is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

impl ReplyStream {
    pub async fn recv(&mut self) -> Option<Reply> {
        let reply = self.rx.recv().await?;
        self.budget.give(match &reply {
            Reply::Related(t) | Reply::Final(t, _) => t.len(),
        });
        Some(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_does_not_read_stops_the_writer_at_the_limit() {
        let (tx, mut rx) = replies(100);
        assert!(tx.related("x".repeat(60)));
        assert!(!tx.related("x".repeat(60)), "past the limit");
        assert!(tx.related("x".repeat(40)), "up to the limit");
        tx.answer("y".repeat(500), None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut read = 0;
            while let Some(r) = rx.recv().await {
                read += 1;
                if matches!(r, Reply::Final(..)) {
                    break;
                }
            }
            assert_eq!(read, 3);
        });
        assert_eq!(rx.budget.queued(), 0, "everything read is given back");
        assert!(tx.related("x".repeat(100)));
    }
}
