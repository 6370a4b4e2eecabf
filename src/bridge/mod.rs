//! `--connect URL`: a stdio MCP server on this side, a remote MCP server over HTTP on the other,
//! for hosts that only start local stdio servers. The remote side is a [`client`] connection;
//! this is the stdio side: lines from stdin to it, its messages to stdout.
//!
//! Owns: the bridge's stdio. Must not touch: the gateway, or how the client speaks HTTP.

use std::sync::Arc;

use bytes::Bytes;
use tokio::{io::AsyncWriteExt, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    client::connection::{Connection, Credentials},
    config::BridgeConfig,
    mcp::{
        jsonrpc,
        lines::{self, Frame},
    },
    telemetry::spans::{self, Held},
};

pub async fn run(config: BridgeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (out, out_rx) = mpsc::unbounded_channel();
    let credentials =
        Credentials::new(&config).map_err(|e| anyhow::anyhow!("--oauth-private-key: {e:#}"))?;
    let max = config.max_line_bytes;
    tracing::info!(url = %config.url, transport = ?config.transport, "bridging stdio to a remote MCP server");
    // With --otel: a client span per request of the host, open until its answer is written;
    // the request goes on carrying it, so the remote's spans join the host's trace.
    let held = Arc::new(Held::default());
    let address = spans::host_of(&config.url).to_string();
    let connection = Connection::open(config, &credentials, out.clone())?;
    let writer = tokio::spawn(write_stdout(out_rx, held.clone()));
    let (events_tx, mut events) = mpsc::channel(256);
    tokio::spawn(async move {
        lines::read_lines(tokio::io::stdin(), max, &events_tx, "stdin").await;
    });
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = shutdown.cancelled() => None,
        };
        match event {
            Some(Frame::Line(line)) if spans::on() => {
                let (span, line) = traced(&held, line, &address);
                connection.send(line).instrument(span).await
            }
            Some(Frame::Line(line)) => connection.send(line).await,
            Some(Frame::TooLong { prefix, len }) => {
                if let Some(id) = jsonrpc::id_from_prefix(&prefix) {
                    let msg = format!("message of {len} bytes is over the limit of {max} bytes");
                    let _ = out.send(jsonrpc::error_response(&id, jsonrpc::INVALID_REQUEST, &msg));
                }
            }
            None => break,
        }
    }
    connection.close().await;
    drop(connection);
    drop(out);
    let _ = writer.await;
    tracing::info!("stdin closed; bridge stopped");
    Ok(())
}

/// The client span of the host's request `line` (held until its answer) and the line carrying
/// it; `Span::none()` and the line itself for anything else.
fn traced(held: &Held, line: Bytes, address: &str) -> (tracing::Span, Bytes) {
    match jsonrpc::classify(&line) {
        Ok(jsonrpc::Kind::Request { id, method }) => {
            let (open, line) = spans::outgoing(line, &id, &method, address);
            let span = open.span().clone();
            held.hold(id, open);
            (span, line)
        }
        _ => (tracing::Span::none(), line),
    }
}

/// Stdout is the bridge's protocol side, as for `--stdio`.
#[allow(clippy::disallowed_methods)]
async fn write_stdout(mut rx: mpsc::UnboundedReceiver<String>, held: Arc<Held>) {
    let mut out = tokio::io::stdout();
    while let Some(line) = rx.recv().await {
        held.answered(&line);
        let mut buf = line.into_bytes();
        buf.push(b'\n');
        while let Ok(more) = rx.try_recv() {
            held.answered(&more);
            buf.extend_from_slice(more.as_bytes());
            buf.push(b'\n');
        }
        if out.write_all(&buf).await.is_err() || out.flush().await.is_err() {
            return;
        }
    }
}
