//! Runs the Aareguru server over stdin/stdout, one JSON-RPC message per line, until stdin closes
//! or a signal arrives.
//!
//! Owns: the `--stdio` mode. Must not touch: the gateway or the bridge.

use rmcp::{service::serve_server_with_ct, transport::async_rw::AsyncRwTransport};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config, server::AareguruServer, signals::cancel_on_signal, upstream::Upstream,
};

pub async fn run(config: &Config) -> anyhow::Result<()> {
    let upstream = Upstream::new(config.upstream.clone())?;
    let server = AareguruServer::new(upstream);
    let (read, write) = rmcp::transport::stdio_pipes();
    let transport =
        AsyncRwTransport::new_server(read, write).with_max_line_length(config.max_line_bytes);
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    tracing::info!(
        base_url = %config.upstream.base_url,
        cache_ttl_s = config.upstream.cache_ttl.as_secs_f64(),
        "aareguru-mcp serving MCP on stdio"
    );
    match serve_server_with_ct(server, transport, shutdown.clone()).await {
        Ok(running) => {
            let reason = running.waiting().await?;
            tracing::info!(?reason, "stdio session ended");
        }
        // A host that closes stdin before the handshake (or a signal) is a normal end.
        Err(e) => tracing::info!(reason = %e, "stdio session ended before initialization"),
    }
    Ok(())
}
