//! Backends: what serves a session's MCP traffic. The session layer talks to the [`Backend`] and
//! [`Link`] traits only; a backend talks back through [`Client`], the session as it sees it.
//!
//! - [`per_session`]: a child process of the session's own ([`process`]).
//! - [`inprocess`]: the built-in Aareguru server inside the gateway, over an in-memory pipe.
//! - [`shared`]: one child (or a few) for every session, through the multiplexer [`mux`].
//! - [`own`]: the relay both "own server" backends use (line for line, with in-flight tracking).
//!
//! Owns: processes, pipes and routing between sessions and servers. Must not touch: HTTP, the
//! session table, names of servers — a backend only knows sessions by [`Client`].

pub mod inprocess;
pub mod mux;
pub mod own;
pub mod per_session;
pub mod process;
pub mod shared;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::future::BoxFuture;
use uuid::Uuid;

use self::process::ExitCause;
use super::metrics::{BackendLabel, Cause, Metrics};
use crate::{
    config::{Backend as BackendKind, GatewayConfig},
    mcp::jsonrpc::Kind,
    server::AareguruServer,
    upstream::Upstream,
};

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
    pub fn as_str(self) -> &'static str {
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

/// Why a message could not be delivered to the session's server.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the session's MCP server has stopped")]
    Closed,
    #[error("the session's MCP server is not reading its input")]
    Busy,
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("too many sessions (limit {0})")]
    Full(usize),
    #[error("cannot start the MCP server: {0}")]
    Spawn(std::io::Error),
}

/// A session, as a backend sees it: somewhere to send the server's messages.
pub trait Client: Send + Sync + 'static {
    fn id(&self) -> Uuid;
    /// The id as written in URLs and logs.
    fn name(&self) -> &str;
    /// Queues a message from the server for the client. False when the client has fallen too
    /// far behind; the backend then calls [`Client::end`] (outside any lock of its own).
    fn send(&self, message: String) -> bool;
    /// Queues a message the gateway wrote itself (an error answering a request the server will
    /// never answer), past the bound: it is small and it settles a request.
    fn send_unbounded(&self, message: String);
    /// The backend can no longer serve this session: the session layer ends it.
    fn end(&self, cause: CloseCause);
}

/// One session's connection to its server.
pub trait Link: Send + Sync {
    /// Hands one client message (already classified) to the server.
    fn forward<'a>(
        &'a self,
        line: Bytes,
        kind: &'a Kind,
    ) -> BoxFuture<'a, Result<(), ForwardError>>;
    /// The session has ended: stop its own server within `grace`, or leave the shared one.
    /// Calling it again does nothing.
    fn release(&self, grace: Duration);
    /// Which shared child serves the session, for logs.
    fn serving(&self) -> Option<&str> {
        None
    }
}

/// What `/health` and `/metrics` show of a backend.
#[derive(Debug, Default)]
pub struct Status {
    pub children_alive: usize,
    /// Shared children, one JSON object each (empty for other backends).
    pub slots: Vec<serde_json::Value>,
    /// Shared children ready for sessions (`None` for other backends).
    pub ready: Option<usize>,
}

/// Something that serves sessions.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;
    /// Starts what runs before any session (the shared children). Fails when the command cannot
    /// be started at all, so a wrong command is reported at startup rather than per session.
    fn start(self: Arc<Self>) -> anyhow::Result<()>;
    /// Connects a new session to its server.
    fn open(&self, client: Arc<dyn Client>) -> Result<Box<dyn Link>, OpenError>;
    fn status(&self) -> Status;
    /// Stops every server and waits for the children released so far (each within the grace
    /// it was given, plus the kill).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// The backend `config` asks for.
pub fn build(
    config: Arc<GatewayConfig>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Arc<dyn Backend>> {
    metrics
        .backend
        .get_or_create(&BackendLabel {
            backend: config.backend.as_str(),
        })
        .set(1);
    let children = Arc::new(Children::new(metrics.clone()));
    Ok(match config.backend {
        BackendKind::PerSession => Arc::new(per_session::PerSession::new(config, children)),
        BackendKind::InProcess => {
            let server = AareguruServer::new(Upstream::new(config.upstream.clone())?);
            Arc::new(inprocess::InProcessBackend::new(config, metrics, server))
        }
        BackendKind::Shared => Arc::new(shared::Shared::new(config, children)),
    })
}

/// Child processes running, counted for `/health` and `/metrics`.
pub struct Children {
    alive: AtomicUsize,
    pub metrics: Arc<Metrics>,
}

impl Children {
    pub fn new(metrics: Arc<Metrics>) -> Self {
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
        self.metrics.child_spawns.inc();
        self.metrics.children_alive.inc();
    }

    pub fn ended(&self, cause: ExitCause) {
        self.alive.fetch_sub(1, Ordering::Relaxed);
        self.metrics.children_alive.dec();
        self.metrics
            .child_exits
            .get_or_create(&Cause {
                cause: cause.as_str(),
            })
            .inc();
    }
}
