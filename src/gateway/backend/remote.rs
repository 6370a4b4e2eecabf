//! A remote MCP server as a backend: each session gets a session of its own with the remote
//! (Streamable HTTP, or HTTP+SSE), through the bridge's client — with its reconnection, SSE
//! resumption and OAuth client (client credentials only: no one is there to open a browser).
//!
//! The caller's credentials never reach the remote: the remote gets the headers its entry
//! configures and the gateway's own OAuth token, nothing from the request (the spec forbids
//! passing a client's token through).
//!
//! Owns: sessions with one remote server. Must not touch: HTTP serving, the session table.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Backend, Client, CloseCause, ForwardError, Link, OpenError, Status};
use crate::{
    client::connection::{Connection, Credentials},
    config::{Backend as BackendKind, RemoteConfig},
    mcp::jsonrpc::Kind,
};

pub struct Remote {
    config: RemoteConfig,
    max_line_bytes: usize,
    /// The gateway's OAuth client there: one token for every session.
    credentials: parking_lot::Mutex<Option<Credentials>>,
    /// Sessions with the remote now open.
    open: Arc<AtomicUsize>,
}

impl Remote {
    pub fn new(config: RemoteConfig, max_line_bytes: usize) -> Remote {
        Remote {
            config,
            max_line_bytes,
            credentials: parking_lot::Mutex::new(None),
            open: Arc::default(),
        }
    }
}

impl Backend for Remote {
    fn kind(&self) -> BackendKind {
        BackendKind::Remote
    }

    fn start(self: Arc<Self>) -> anyhow::Result<()> {
        // Headers and the OAuth settings are checked once, so a bad entry fails at startup.
        let config = self.config.bridge(self.max_line_bytes);
        let credentials = Credentials::new(&config)?;
        let (out, _) = mpsc::unbounded_channel();
        Connection::open(config, &credentials, out)?;
        *self.credentials.lock() = Some(credentials);
        Ok(())
    }

    fn open(
        &self,
        client: Arc<dyn Client>,
        _env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError> {
        let (out, mut rx) = mpsc::unbounded_channel::<String>();
        let refused = |e: anyhow::Error| OpenError::Spawn(std::io::Error::other(format!("{e:#}")));
        let config = self.config.bridge(self.max_line_bytes);
        let credentials = match self.credentials.lock().clone() {
            Some(c) => c,
            None => Credentials::new(&config).map_err(refused)?,
        };
        let connection = Connection::open(config, &credentials, out).map_err(refused)?;
        let stop = CancellationToken::new();
        let open = self.open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        // The client is held until the session releases the link (as every backend does).
        let ended = stop.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    m = rx.recv() => m,
                    _ = ended.cancelled() => None,
                };
                let Some(message) = message else { break };
                if !client.send(message) {
                    client.end(CloseCause::SlowClient);
                    break;
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(Box::new(RemoteLink {
            connection: Arc::new(connection),
            stop,
            address: crate::telemetry::spans::host_of(&self.config.url).to_string(),
        }))
    }

    fn status(&self) -> Status {
        Status {
            members: Some(serde_json::json!({
                "url": self.config.url,
                "remote_sessions": self.open.load(Ordering::Relaxed),
            })),
            ..Status::default()
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

struct RemoteLink {
    connection: Arc<Connection>,
    stop: CancellationToken,
    /// The remote's host (`server.address` of the spans of what is sent to it).
    address: String,
}

impl Link for RemoteLink {
    fn forward<'a>(
        &'a self,
        line: Bytes,
        kind: &'a Kind,
    ) -> BoxFuture<'a, Result<(), ForwardError>> {
        Box::pin(async move {
            if self.stop.is_cancelled() {
                return Err(ForwardError::Closed);
            }
            match kind {
                // With --otel: sending a request to the remote is a client step of its span.
                Kind::Request { method, .. } if crate::telemetry::spans::on() => {
                    let step = crate::telemetry::spans::step(&format!("remote {method}"), "client");
                    step.record("server.address", self.address.as_str());
                    let sent = self.connection.send(line);
                    tracing::Instrument::instrument(sent, step).await
                }
                _ => self.connection.send(line).await,
            }
            Ok(())
        })
    }

    fn release(&self, _grace: Duration) {
        if self.stop.is_cancelled() {
            return;
        }
        self.stop.cancel();
        let connection = self.connection.clone();
        tokio::spawn(async move { connection.close().await });
    }
}
