//! The contract between the session table and the backends: a [`Backend`] opens a [`Link`] per
//! session and talks back through the [`Client`] the session hands it.
//!
//! Owns: the words both sides use. Must not touch: any backend's workings or the session table.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::{config::Backend as BackendKind, gateway::caller::Caller, mcp::jsonrpc::Kind};

/// Why a session ended (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    ClientGone,
    IdleTimeout,
    ChildExited,
    ChildStartTimeout,
    SlowClient,
    Shutdown,
    /// The cluster's directory no longer lists the session as this replica's.
    Superseded,
    /// An operator ended it (the console).
    Ended,
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
            CloseCause::Superseded => "no longer this replica's (cluster directory)",
            CloseCause::Ended => "ended by an operator",
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
    #[error("a session with this id is already open")]
    Duplicate,
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
    /// Who sends this session's requests (the latest request's caller), for the policy layer;
    /// `None` for sessions the gateway opens itself.
    fn caller(&self) -> Option<Arc<Caller>> {
        None
    }
    /// A layer refused request `id` (raw JSON) by `rule` and is about to answer it: layers
    /// that keep a record (the audit log) note why. Layers pass it on outward.
    fn refused(&self, id: &str, rule: &str) {
        let _ = (id, rule);
    }
    /// The session lives for one request only (the 2026-07-28 revision): nothing kept for
    /// later requests reaches it.
    fn stateless(&self) -> bool {
        false
    }
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
    /// The warm pool (`--prespawn`), if any.
    pub pool: Option<serde_json::Value>,
    /// A group's members and naming (federated backends only).
    pub members: Option<serde_json::Value>,
}

/// Something that serves sessions.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;
    /// Starts what runs before any session (the shared children). Fails when the command cannot
    /// be started at all, so a wrong command is reported at startup rather than per session.
    fn start(self: Arc<Self>) -> anyhow::Result<()>;
    /// Connects a new session to its server; `env` is extra environment for a child of its
    /// own (per-session backends only).
    fn open(
        &self,
        client: Arc<dyn Client>,
        env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError>;
    fn status(&self) -> Status;
    /// Stops every server and waits for the children released so far (each within the grace
    /// it was given, plus the kill).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// The gateway-wide limits every backend applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_line_bytes: usize,
    /// Bytes that may wait for a server's input before a sender is refused.
    pub input_bytes: usize,
    pub start_timeout: Duration,
    pub shutdown_grace: Duration,
}
