//! The per-session backend: every session gets a child process of its own, relayed line for
//! line ([`OwnLink`]) and terminated (with its process group) when the session ends.
//!
//! Owns: when to spawn. Must not touch: how a process is spawned or signalled ([`process`]).
//!
//! [`process`]: super::process

use std::{sync::Arc, time::Instant};

use futures::future::BoxFuture;
use tokio_util::task::TaskTracker;

use super::{
    api::{Backend, Client, Limits, Link, OpenError, Status},
    children::Children,
    own::{OwnLink, RelaySettings},
    process::ChildProcess,
};
use crate::config::{Backend as BackendKind, ServerConfig};

pub struct PerSession {
    config: Arc<ServerConfig>,
    limits: Limits,
    children: Arc<Children>,
    relay: RelaySettings,
}

impl PerSession {
    pub fn new(config: Arc<ServerConfig>, limits: Limits, children: Arc<Children>) -> Self {
        let relay = RelaySettings {
            metrics: children.metrics.clone(),
            input_limit: limits.input_bytes,
            max_line_bytes: limits.max_line_bytes,
            start_timeout: limits.start_timeout,
            terminations: TaskTracker::new(),
            children: Some(children.clone()),
        };
        PerSession {
            config,
            limits,
            children,
            relay,
        }
    }
}

impl Backend for PerSession {
    fn kind(&self) -> BackendKind {
        BackendKind::PerSession
    }

    fn start(self: Arc<Self>) -> anyhow::Result<()> {
        Ok(())
    }

    fn open(
        &self,
        client: Arc<dyn Client>,
        env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError> {
        let started_at = Instant::now();
        let (child, events) = ChildProcess::spawn(
            &self.config.child,
            client.name(),
            self.limits.max_line_bytes,
            env,
        )
        .map_err(OpenError::Spawn)?;
        self.children.started();
        let input = child.stdin();
        Ok(Box::new(OwnLink::start(
            client,
            input,
            child,
            events,
            self.relay.clone(),
            started_at,
        )))
    }

    fn status(&self) -> Status {
        Status {
            children_alive: self.children.alive(),
            ..Default::default()
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.relay.terminations.close();
            self.relay.terminations.wait().await;
        })
    }
}
