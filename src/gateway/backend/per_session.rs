//! The per-session backend: every session gets a child process of its own, relayed line for
//! line ([`OwnLink`]) and terminated (with its process group) when the session ends.
//!
//! With `--prespawn N` a [`Pool`] keeps N children started ahead of sessions.
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
    pool::Pool,
    process::ChildProcess,
};
use crate::{
    config::{Backend as BackendKind, ServerConfig},
    mcp::queue::Input,
};

pub struct PerSession {
    config: Arc<ServerConfig>,
    limits: Limits,
    children: Arc<Children>,
    relay: RelaySettings,
    /// Children started ahead of sessions (`--prespawn`).
    pool: Option<Arc<Pool>>,
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
        let pool = (config.prespawn > 0).then(|| {
            Pool::new(
                config.prespawn,
                config.child.clone(),
                limits.max_line_bytes,
                children.clone(),
            )
        });
        PerSession {
            config,
            limits,
            children,
            relay,
            pool,
        }
    }
}

impl Backend for PerSession {
    fn kind(&self) -> BackendKind {
        BackendKind::PerSession
    }

    fn start(self: Arc<Self>) -> anyhow::Result<()> {
        if let Some(pool) = &self.pool {
            pool.start();
        }
        Ok(())
    }

    fn open(
        &self,
        client: Arc<dyn Client>,
        env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError> {
        let started_at = Instant::now();
        // With --otel: a step of the request that opens the session (its initialize).
        let step = crate::telemetry::spans::step("open child", "internal");
        let _entered = step.enter();
        // A session with environment of its own needs a child started for it.
        let warm = match &self.pool {
            Some(pool) if env.is_empty() => pool.take(),
            _ => None,
        };
        let outcome = match (&warm, &self.pool) {
            (Some(_), _) => "pool_hit",
            (None, Some(_)) => "pool_miss",
            (None, None) => "spawned",
        };
        step.record("gateway.outcome", outcome);
        step.record("gateway.server", self.config.name.as_str());
        let (child, output) = match warm {
            Some((child, output)) => {
                child.relabel(client.name());
                (child, output)
            }
            None => {
                let spawned = ChildProcess::spawn(
                    &self.config.child,
                    client.name(),
                    self.limits.max_line_bytes,
                    env,
                    Input::Direct,
                )
                .map_err(OpenError::Spawn)?;
                self.children.started();
                spawned
            }
        };
        let input = child.stdin();
        Ok(Box::new(OwnLink::start(
            client,
            input,
            child,
            output,
            self.relay.clone(),
            started_at,
        )))
    }

    fn status(&self) -> Status {
        Status {
            children_alive: self.children.alive(),
            pool: self.pool.as_ref().map(|p| p.status()),
            ..Default::default()
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(pool) = &self.pool {
                pool.drain(&self.relay.terminations, self.limits.shutdown_grace)
                    .await;
            }
            self.relay.terminations.close();
            self.relay.terminations.wait().await;
        })
    }
}
