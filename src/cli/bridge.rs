//! The bridge's flags (`--connect`) and their checks.

use anyhow::bail;

use crate::config::{BridgeConfig, TransportChoice};

/// Bridge flags (`--connect`).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Bridge (--connect)")]
pub struct BridgeArgs {
    /// How to reach the remote: `auto` (a URL ending in /sse is HTTP+SSE; otherwise Streamable
    /// HTTP, falling back to HTTP+SSE when the remote refuses), `streamable-http` or `sse`.
    #[arg(long, env = "AAREGURU_CONNECT_TRANSPORT", value_enum, default_value_t = TransportChoice::Auto)]
    pub transport: TransportChoice,

    /// Extra HTTP header for the remote, as "Name: value" (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
}

pub(super) fn bridge_config(
    url: &str,
    args: &BridgeArgs,
    api_keys: &[String],
    max_line_bytes: usize,
) -> anyhow::Result<BridgeConfig> {
    let url = url.trim().to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--connect needs an http:// or https:// URL, got {url:?}");
    }
    let mut headers = vec![];
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("--header must look like \"Name: value\", got {h:?}");
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    if let Some(key) = api_keys.iter().map(|k| k.trim()).find(|k| !k.is_empty()) {
        headers.push(("authorization".into(), format!("Bearer {key}")));
    }
    Ok(BridgeConfig {
        url,
        transport: args.transport,
        headers,
        max_line_bytes,
    })
}
