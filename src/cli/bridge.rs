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

    /// The command that opens the authorization URL when the remote asks for OAuth (its last
    /// argument; default: xdg-open or open). The URL is printed to stderr either way.
    #[arg(long, env = "AAREGURU_MCP_OAUTH_BROWSER")]
    pub oauth_browser: Option<String>,

    /// A Client ID Metadata Document URL (https) to use as the OAuth client id with
    /// authorization servers that accept them, instead of registering.
    #[arg(long, env = "AAREGURU_MCP_OAUTH_CLIENT_METADATA_URL")]
    pub oauth_client_metadata_url: Option<String>,

    /// Use the client-credentials grant (a machine, with --oauth-client-id and
    /// --oauth-client-secret or --oauth-private-key) instead of the browser.
    #[arg(long, env = "AAREGURU_MCP_OAUTH_CLIENT_CREDENTIALS")]
    pub oauth_client_credentials: bool,

    /// A PEM private key (EC, Ed25519 or RSA) of the pre-registered --oauth-client-id: the
    /// bridge authenticates to the token endpoint with a JWT it signs (private_key_jwt, RFC
    /// 7523) instead of a client secret.
    #[arg(long, env = "AAREGURU_MCP_OAUTH_PRIVATE_KEY", value_name = "FILE")]
    pub oauth_private_key: Option<std::path::PathBuf>,

    /// The JWT algorithm for --oauth-private-key (ES256, ES384, EdDSA, RS256, PS256, …;
    /// default: the one the key's kind takes).
    #[arg(long, env = "AAREGURU_MCP_OAUTH_SIGNING_ALG")]
    pub oauth_signing_alg: Option<String>,

    /// Cross-app access (enterprise-managed authorization): a file holding the user's ID token
    /// from the company's identity provider, read at every authorization. The bridge trades it
    /// at the IdP (--oauth-idp-issuer) for an identity assertion grant and that for an access
    /// token as the pre-registered --oauth-client-id, instead of opening a browser.
    #[arg(long, env = "AAREGURU_MCP_OAUTH_ID_TOKEN_FILE", value_name = "FILE")]
    pub oauth_id_token_file: Option<std::path::PathBuf>,

    /// The identity provider (issuer URL) for --oauth-id-token-file.
    #[arg(long, env = "AAREGURU_MCP_OAUTH_IDP_ISSUER", value_name = "URL")]
    pub oauth_idp_issuer: Option<String>,

    /// This app's client id at the identity provider (for the token exchange).
    #[arg(long, env = "AAREGURU_MCP_OAUTH_IDP_CLIENT_ID")]
    pub oauth_idp_client_id: Option<String>,

    /// This app's client secret at the identity provider.
    #[arg(
        long,
        env = "AAREGURU_MCP_OAUTH_IDP_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub oauth_idp_client_secret: Option<String>,

    /// Port of the loopback listener for the authorization redirect (default: any free one).
    #[arg(long, env = "AAREGURU_MCP_OAUTH_REDIRECT_PORT", default_value_t = 0)]
    pub oauth_redirect_port: u16,

    /// How long the user has to authorize in the browser.
    #[arg(long, env = "AAREGURU_MCP_OAUTH_TIMEOUT", default_value = "5m", value_parser = super::duration::parse_duration)]
    pub oauth_timeout: std::time::Duration,

    /// Where OAuth tokens are kept, one 0600 file per remote (default:
    /// $XDG_CONFIG_HOME/aareguru-mcp/oauth).
    #[arg(long, env = "AAREGURU_MCP_OAUTH_TOKEN_DIR")]
    pub oauth_token_dir: Option<std::path::PathBuf>,
}

/// What the bridge takes from the flags it shares with the gateway.
pub(super) struct Shared<'a> {
    pub api_keys: &'a [String],
    pub client_id: Option<&'a String>,
    pub client_secret: Option<&'a String>,
    pub scopes: &'a [String],
}

pub(super) fn bridge_config(
    url: &str,
    args: &BridgeArgs,
    shared: Shared<'_>,
    max_line_bytes: usize,
) -> anyhow::Result<BridgeConfig> {
    let api_keys = shared.api_keys;
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
    let private_key = match &args.oauth_private_key {
        Some(path) => {
            if shared.client_id.is_none() {
                bail!(
                    "--oauth-private-key needs --oauth-client-id (the client the key belongs to)"
                );
            }
            let pem = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read --oauth-private-key {}: {e}", path.display())
            })?;
            Some(pem)
        }
        None => None,
    };
    if args.oauth_client_credentials
        && (shared.client_id.is_none() || (shared.client_secret.is_none() && private_key.is_none()))
    {
        bail!(
            "--oauth-client-credentials needs --oauth-client-id and --oauth-client-secret or --oauth-private-key"
        );
    }
    if args.oauth_id_token_file.is_some() {
        if args.oauth_idp_issuer.is_none() || shared.client_id.is_none() {
            bail!(
                "--oauth-id-token-file needs --oauth-idp-issuer and --oauth-client-id (the client pre-registered at the MCP server's authorization server)"
            );
        }
        if args.oauth_client_credentials {
            bail!(
                "--oauth-id-token-file and --oauth-client-credentials are two different grants; pick one"
            );
        }
    }
    if args.oauth_timeout.is_zero() {
        bail!("--oauth-timeout must be greater than zero");
    }
    let oauth = crate::config::BridgeOAuth {
        client_id: shared.client_id.cloned(),
        client_secret: shared.client_secret.cloned(),
        client_metadata_url: args.oauth_client_metadata_url.clone(),
        client_credentials: args.oauth_client_credentials,
        private_key,
        signing_alg: args.oauth_signing_alg.clone(),
        id_token_file: args.oauth_id_token_file.clone(),
        idp_issuer: args.oauth_idp_issuer.clone(),
        idp_client_id: args.oauth_idp_client_id.clone(),
        idp_client_secret: args.oauth_idp_client_secret.clone(),
        scopes: shared
            .scopes
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        browser: args.oauth_browser.clone().filter(|b| !b.trim().is_empty()),
        redirect_port: args.oauth_redirect_port,
        timeout: args.oauth_timeout,
        token_dir: args.oauth_token_dir.clone(),
        unattended: false,
    };
    Ok(BridgeConfig {
        url,
        transport: args.transport,
        headers,
        max_line_bytes,
        oauth,
    })
}
