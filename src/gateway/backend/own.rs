//! A server of the session's own — a child process or an in-process server — relayed line for
//! line. The relay remembers which client requests are unanswered, so a server that dies (or
//! never starts answering) fails them at once instead of leaving the client waiting.
//!
//! The path is short on purpose: a client's message is pushed to the server's input from the
//! HTTP handler (written to the pipe right there when nothing waits), and the task that reads
//! the server's output classifies each line and hands it to the client itself — no task or
//! channel in between.
//!
//! Owns: the relay between one session and one server. Must not touch: how the server was
//! started (that is the worker's business) or the session table.

use parking_lot::Mutex;
use std::{
    collections::HashSet,
    future::Future,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    api::{Client, CloseCause, ForwardError, Link},
    children::{Children, ExitCause},
};
use crate::{
    gateway::metrics::ServerMetrics,
    mcp::{
        jsonrpc::{self, Kind},
        lines::{Frame, FrameSink},
        queue::LineQueue,
    },
};

/// What runs the server: a child process or an in-process server.
pub trait Worker: Send + 'static {
    /// Stops the server, politely first, and returns once it has ended (or `grace` is spent).
    fn terminate(&mut self, grace: Duration) -> impl Future<Output = ()> + Send;
}

/// What the server writes, and how it ends.
pub trait Output: Send + 'static {
    /// Hands every frame the server writes to `sink`, then says how the server ended.
    fn relay(self, sink: impl FrameSink) -> impl Future<Output = (ExitCause, String)> + Send;
}

/// Settings every relay of a backend shares.
#[derive(Clone)]
pub struct RelaySettings {
    pub metrics: ServerMetrics,
    /// Bytes that may wait for the server's input before a sender is refused.
    pub input_limit: usize,
    pub max_line_bytes: usize,
    pub start_timeout: Duration,
    /// Where terminations run, so shutdown can wait for them.
    pub terminations: TaskTracker,
    /// Counts the process, for a child process (`None` in process).
    pub children: Option<Arc<Children>>,
}

/// State the link and its pump share.
struct Relay {
    client: Weak<dyn Client>,
    /// Raw ids of client requests the server has not answered yet.
    inflight: Mutex<HashSet<String>>,
    /// Set once the server has written its first message.
    answered: AtomicBool,
    /// Set once the start watchdog is armed.
    watchdog_armed: AtomicBool,
    started_at: Instant,
    settings: RelaySettings,
    /// Cancelled when the session releases its server.
    released: CancellationToken,
}

/// A session's link to a server of its own.
pub struct OwnLink<W: Worker> {
    relay: Arc<Relay>,
    input: LineQueue,
    worker: Mutex<Option<W>>,
}

impl<W: Worker> OwnLink<W> {
    /// Starts relaying `output` (the server's) to `client`.
    pub fn start(
        client: Arc<dyn Client>,
        input: LineQueue,
        worker: W,
        output: impl Output,
        settings: RelaySettings,
        started_at: Instant,
    ) -> Self {
        let relay = Arc::new(Relay {
            client: Arc::downgrade(&client),
            inflight: Mutex::default(),
            answered: AtomicBool::new(false),
            watchdog_armed: AtomicBool::new(false),
            started_at,
            settings,
            released: CancellationToken::new(),
        });
        let sink = ToClient {
            relay: relay.clone(),
            client,
        };
        tokio::spawn(async move {
            let client = sink.client.clone();
            let relay = sink.relay.clone();
            let (cause, detail) = output.relay(sink).await;
            relay.ended(client.as_ref(), cause, &detail);
        });
        OwnLink {
            relay,
            input,
            worker: Mutex::new(Some(worker)),
        }
    }
}

impl<W: Worker> Link for OwnLink<W> {
    fn forward<'a>(
        &'a self,
        line: Bytes,
        kind: &'a Kind,
    ) -> BoxFuture<'a, Result<(), ForwardError>> {
        Box::pin(async move {
            let relay = &self.relay;
            match kind {
                Kind::Request { id, .. } => {
                    relay.inflight.lock().insert(id.clone());
                    relay.arm_start_watchdog();
                }
                // A cancelled request gets no response; forget it so a later server failure
                // does not answer it either.
                Kind::Notification { method } if method == "notifications/cancelled" => {
                    if let Some(id) = jsonrpc::cancelled_request_id(&line) {
                        relay.inflight.lock().remove(&id);
                    }
                }
                _ => {}
            }
            if !self
                .input
                .wait_room(relay.settings.input_limit, Duration::from_secs(10))
                .await
            {
                return Err(ForwardError::Busy);
            }
            self.input.push(line).map_err(|_| ForwardError::Closed)
        })
    }

    fn release(&self, grace: Duration) {
        self.relay.released.cancel();
        if let Some(mut worker) = self.worker.lock().take() {
            self.relay
                .settings
                .terminations
                .spawn(async move { worker.terminate(grace).await });
        }
    }
}

/// The server's output, handed to the client as it is read.
struct ToClient {
    relay: Arc<Relay>,
    client: Arc<dyn Client>,
}

impl FrameSink for ToClient {
    async fn frame(&mut self, frame: Frame) -> bool {
        self.relay.server_wrote(&self.client, frame);
        true
    }
}

impl Relay {
    /// One frame of the server's output, for the client.
    fn server_wrote(&self, client: &Arc<dyn Client>, frame: Frame) {
        let metrics = &self.settings.metrics;
        match frame {
            Frame::Line(line) => {
                if !self.answered.swap(true, Ordering::Relaxed) {
                    metrics
                        .all
                        .child_spawn_duration
                        .observe(self.started_at.elapsed().as_secs_f64());
                }
                match jsonrpc::classify(&line) {
                    Ok(Kind::Response { id }) => {
                        self.inflight.lock().remove(&id);
                    }
                    Ok(_) => {}
                    Err(reason) => {
                        tracing::warn!(session = %client.name(), %reason, "child sent an invalid message; skipped");
                        metrics.error("child_invalid_message");
                        return;
                    }
                }
                // Lines are valid UTF-8: classify parsed them as JSON.
                let text = String::from_utf8(Vec::from(line)).unwrap_or_default();
                if !client.send(text) {
                    client.end(CloseCause::SlowClient);
                }
            }
            Frame::TooLong { prefix, len } => {
                let limit = self.settings.max_line_bytes;
                metrics.error("child_line_too_long");
                tracing::warn!(session = %client.name(), len, limit, "child wrote an over-long message; dropped");
                if let Some(id) = jsonrpc::id_from_prefix(&prefix)
                    && self.inflight.lock().remove(&id)
                {
                    let msg = format!(
                        "the response was {len} bytes, over the gateway's limit of {limit} bytes"
                    );
                    client.send_unbounded(jsonrpc::error_response(
                        &id,
                        jsonrpc::INTERNAL_ERROR,
                        &msg,
                    ));
                }
            }
        }
    }

    /// The server has ended: unless we stopped it, its unanswered requests fail and the
    /// session ends.
    fn ended(&self, client: &dyn Client, cause: ExitCause, detail: &str) {
        if let Some(children) = &self.settings.children {
            children.ended(cause);
        }
        if cause != ExitCause::Terminated {
            tracing::warn!(session = %client.name(), %detail, "child exited");
            let message = format!("the MCP server process ended ({detail}) before answering");
            self.fail_inflight(client, &message);
            client.end(CloseCause::ChildExited);
        }
    }

    /// Answers every unanswered request with an error.
    fn fail_inflight(&self, client: &dyn Client, message: &str) {
        let ids: Vec<String> = self.inflight.lock().drain().collect();
        for id in ids {
            client.send_unbounded(jsonrpc::error_response(
                &id,
                jsonrpc::INTERNAL_ERROR,
                message,
            ));
        }
    }

    /// On the first request, start a timer: a server that has not answered anything by then is
    /// considered failed to start.
    fn arm_start_watchdog(self: &Arc<Self>) {
        if self.answered.load(Ordering::Relaxed)
            || self.watchdog_armed.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let relay = self.clone();
        let timeout = self.settings.start_timeout;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {}
                _ = relay.released.cancelled() => return,
            }
            let Some(client) = relay.client.upgrade() else {
                return;
            };
            if !relay.answered.load(Ordering::Relaxed) {
                tracing::error!(session = %client.name(), timeout_s = timeout.as_secs_f64(), "child did not answer its first request in time");
                relay.settings.metrics.error("child_start_timeout");
                let msg = format!(
                    "the MCP server did not start answering within {} s",
                    timeout.as_secs_f64()
                );
                relay.fail_inflight(client.as_ref(), &msg);
                client.end(CloseCause::ChildStartTimeout);
            }
        });
    }
}
