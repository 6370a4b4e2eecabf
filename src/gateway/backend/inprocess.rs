//! The in-process backend: a session is served by the built-in Aareguru server (rmcp) over an
//! in-memory pipe inside the gateway — no process, and every session shares one upstream client
//! and cache. To the relay it looks exactly like a child: lines in, frames out, framed by the
//! same code, so both backends behave alike down to over-long replies.
//!
//! Owns: running the built-in server per session. Must not touch: processes.

use std::{sync::Arc, time::Instant};

use futures::future::BoxFuture;
use rmcp::{service::serve_server_with_ct, transport::async_rw::AsyncRwTransport};
use tokio::{
    io::{DuplexStream, ReadHalf},
    sync::watch,
    task::JoinHandle,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    api::{Backend, Client, Limits, Link, OpenError, Status},
    children::ExitCause,
    own::{Output, OwnLink, RelaySettings, Worker},
};
use crate::{
    config::Backend as BackendKind,
    gateway::metrics::ServerMetrics,
    mcp::{
        lines::{self, FrameSink},
        queue::{self, LineQueue},
    },
    server::AareguruServer,
};

/// Serves every session with its own instance of the built-in server (all sharing one
/// upstream client and cache).
pub struct InProcessBackend {
    server: AareguruServer,
    relay: RelaySettings,
}

impl InProcessBackend {
    pub fn new(limits: Limits, metrics: ServerMetrics, server: AareguruServer) -> Self {
        InProcessBackend {
            server,
            relay: RelaySettings {
                metrics,
                input_limit: limits.input_bytes,
                max_line_bytes: limits.max_line_bytes,
                start_timeout: limits.start_timeout,
                terminations: TaskTracker::new(),
                children: None,
            },
        }
    }
}

impl Backend for InProcessBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::InProcess
    }

    fn start(self: Arc<Self>) -> anyhow::Result<()> {
        Ok(())
    }

    fn open(
        &self,
        client: Arc<dyn Client>,
        _env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError> {
        let started_at = Instant::now();
        let (server, output) = InProcess::start(
            self.server.clone(),
            client.name(),
            self.relay.max_line_bytes,
        );
        let input = server.stdin();
        Ok(Box::new(OwnLink::start(
            client,
            input,
            server,
            output,
            self.relay.clone(),
            started_at,
        )))
    }

    fn status(&self) -> Status {
        Status::default()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.relay.terminations.close();
            self.relay.terminations.wait().await;
        })
    }
}

/// Bytes the pipe buffers in each direction before a writer waits.
const PIPE_BYTES: usize = 64 * 1024;

/// One in-process session server.
pub struct InProcess {
    stdin: LineQueue,
    /// Cancelled to stop the server (it also stops when its input closes).
    stop: CancellationToken,
    /// Closes the server's input (the polite stop, like closing a child's stdin).
    close_input: CancellationToken,
    done: watch::Receiver<bool>,
}

/// What an in-process server writes, read by the session's relay.
pub struct InProcessOutput {
    from_server: ReadHalf<DuplexStream>,
    serve: JoinHandle<()>,
    stopped: CancellationToken,
    done: watch::Sender<bool>,
    session: String,
    max_line: usize,
}

impl InProcess {
    /// Starts serving `server` for one session; its output is read through the returned
    /// [`InProcessOutput`].
    pub fn start(
        server: AareguruServer,
        session: &str,
        max_line: usize,
    ) -> (InProcess, InProcessOutput) {
        let (gateway_side, server_side) = tokio::io::duplex(PIPE_BYTES);
        let (from_server, to_server) = tokio::io::split(gateway_side);
        let (server_read, server_write) = tokio::io::split(server_side);
        let transport =
            AsyncRwTransport::new_server(server_read, server_write).with_max_line_length(max_line);
        let stop = CancellationToken::new();
        let close_input = CancellationToken::new();
        let (stdin, stdin_rx) = LineQueue::channel();
        let (done_tx, done_rx) = watch::channel(false);

        tokio::spawn(queue::write_lines(
            to_server,
            stdin_rx,
            close_input.clone(),
            session.to_string(),
        ));
        let serve = {
            let (session, stopped) = (session.to_string(), stop.clone());
            tokio::spawn(async move {
                match serve_server_with_ct(server, transport, stopped).await {
                    Ok(running) => {
                        let reason = running.waiting().await;
                        tracing::debug!(session = %session, ?reason, "in-process server ended");
                    }
                    Err(e) => {
                        tracing::debug!(session = %session, reason = %e, "in-process server ended before initialization")
                    }
                }
            })
        };
        (
            InProcess {
                stdin,
                stop: stop.clone(),
                close_input,
                done: done_rx,
            },
            InProcessOutput {
                from_server,
                serve,
                stopped: stop,
                done: done_tx,
                session: session.to_string(),
                max_line,
            },
        )
    }

    pub fn stdin(&self) -> LineQueue {
        self.stdin.clone()
    }

    /// Stops the server (in-flight handlers are dropped) and waits up to `grace` for it to end.
    pub async fn terminate(&mut self, grace: std::time::Duration) {
        // Cancelling `stop` first is what marks the end as ours rather than a crash.
        self.stop.cancel();
        self.close_input.cancel();
        let mut done = self.done.clone();
        let _ = tokio::time::timeout(grace, done.wait_for(|d| *d)).await;
    }
}

impl Worker for InProcess {
    fn terminate(&mut self, grace: std::time::Duration) -> impl Future<Output = ()> + Send {
        InProcess::terminate(self, grace)
    }
}

impl Output for InProcessOutput {
    async fn relay(self, sink: impl FrameSink) -> (ExitCause, String) {
        lines::read_lines(self.from_server, self.max_line, sink, &self.session).await;
        // The server dropped its end of the pipe: it has ended (or is about to).
        let result = self.serve.await;
        let _ = self.done.send(true);
        match result {
            Err(e) if e.is_panic() => (ExitCause::Crashed, "the server panicked".to_string()),
            _ if self.stopped.is_cancelled() => (ExitCause::Terminated, "stopped".to_string()),
            _ => (ExitCause::Exited, "ended".to_string()),
        }
    }
}
