//! Backends: what serves a session's MCP traffic. The session layer talks to the [`Backend`] and
//! [`Link`] traits only; a backend talks back through [`Client`], the session as it sees it.
//!
//! - [`per_session`]: a child process of the session's own ([`process`]).
//! - [`inprocess`]: the built-in Aareguru server inside the gateway, over an in-memory pipe.
//! - [`shared`]: one child (or a few) for every session, through the multiplexer [`mux`].
//! - [`remote`]: a remote MCP server over HTTP, a remote session per session.
//! - [`sandbox`]: what a child is given before it runs (its environment).
//! - [`own`]: the relay both "own server" backends use (line for line, with in-flight tracking).
//! - [`api`]: the traits between the session table and the backends; [`children`]: what a
//!   server's owner hears from it, and the count of child processes.
//!
//! Owns: processes, pipes and routing between sessions and servers. Must not touch: HTTP, the
//! session table, names of servers — a backend only knows sessions by [`Client`].

pub mod api;
pub mod children;
mod deliveries;
pub mod inprocess;
pub mod mux;
pub mod own;
pub mod per_session;
pub mod pool;
pub mod process;
pub mod remote;
pub mod sandbox;
pub mod shared;

use std::sync::Arc;

pub use self::api::{Backend, Client, CloseCause, ForwardError, Limits, Link, OpenError, Status};
use self::children::Children;
use super::metrics::{BackendLabel, ServerMetrics};
use crate::{
    config::{Backend as BackendKind, ServerConfig},
    server::AareguruServer,
    upstream::Upstream,
};

/// The backend `server` asks for.
pub fn build(
    server: Arc<ServerConfig>,
    limits: Limits,
    metrics: ServerMetrics,
) -> anyhow::Result<Arc<dyn Backend>> {
    metrics
        .all
        .backend
        .get_or_create(&BackendLabel {
            backend: server.backend.as_str(),
        })
        .set(1);
    let children = Arc::new(Children::new(metrics.clone()));
    Ok(match server.backend {
        BackendKind::PerSession => Arc::new(per_session::PerSession::new(server, limits, children)),
        BackendKind::InProcess => {
            let aareguru = AareguruServer::new(Upstream::new(server.upstream.clone())?);
            Arc::new(inprocess::InProcessBackend::new(limits, metrics, aareguru))
        }
        BackendKind::Shared => Arc::new(shared::Shared::new(server, limits, children)),
        BackendKind::Remote => match &server.remote {
            Some(remote) => Arc::new(remote::Remote::new(remote.clone(), limits.max_line_bytes)),
            None => anyhow::bail!("a remote server needs a url"),
        },
        BackendKind::Federated => {
            anyhow::bail!("a group is served by its members' backends (the registry builds it)")
        }
    })
}

/// Children for `server`'s stateless requests: shared children (at least one), multiplexed.
pub fn lane(server: Arc<ServerConfig>, limits: Limits, metrics: ServerMetrics) -> Arc<dyn Backend> {
    let mut config = (*server).clone();
    config.children = config.children.max(1);
    config.prespawn = 0;
    let children = Arc::new(Children::new(metrics));
    Arc::new(shared::Shared::new(Arc::new(config), limits, children))
}
