//! Command-line flags and environment variables (clap, with env fallbacks), checked and turned
//! into a [`Config`]. Each mode's flags are validated by a function of their own.
//!
//! Owns: flag names, environment variable names, defaults and the checks on them. Must not
//! touch: the modes themselves — the result is plain data ([`crate::config`]).

use std::time::Duration;

use anyhow::bail;
use clap::{ArgGroup, Parser};

mod audit;
mod bridge;
mod cluster;
mod console;
mod duration;
mod gateway;
mod groups;
pub mod keys;
mod limits;
mod oauth;
mod remotes;
mod rules;
mod sandbox;
mod search;
pub mod servers_file;

pub use self::{bridge::BridgeArgs, duration::parse_duration, gateway::GatewayArgs};
use self::{
    bridge::bridge_config,
    gateway::{ChildSettings, gateway_config},
};
use crate::config::{Config, LogFormat, Mode, UpstreamConfig};

/// The version `--version` prints: the package's, and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("AAREGURU_GIT_REV"),
    ")"
);

/// Aareguru MCP server: Aare river temperature, flow, weather and forecasts for Swiss bathing
/// spots, over the Model Context Protocol.
///
/// Data: Aareguru (https://aare.guru) with measurements from BAFU (https://www.hydrodaten.admin.ch).
#[derive(Debug, Parser)]
#[command(name = "aareguru-mcp", version = VERSION, about, long_about)]
#[command(group(ArgGroup::new("mode").required(true).args(["stdio", "sse", "connect", "completions", "man_page", "healthcheck"])))]
pub struct Cli {
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell) and
    /// exit.
    #[arg(long, value_name = "SHELL")]
    pub completions: Option<clap_complete::Shell>,

    /// Print the manual page (roff) and exit: `aareguru-mcp --man-page > aareguru-mcp.1`.
    #[arg(long)]
    pub man_page: bool,

    /// Ask the gateway on this machine (at --host/--port, loopback for 0.0.0.0 or ::) whether
    /// it is ready: exit 0 when `GET /health` answers 200 within 3 s, else 1 with the reason on
    /// stderr. For a container's HEALTHCHECK; needs no curl.
    #[arg(long)]
    pub healthcheck: bool,

    /// Run the MCP server on stdin/stdout (for Claude Desktop and other MCP hosts).
    #[arg(long)]
    pub stdio: bool,

    /// Run the HTTP gateway: remote MCP clients over SSE, each session served by a stdio MCP
    /// child (this server by default, or COMMAND after `--`).
    #[arg(long)]
    pub sse: bool,

    /// Run a stdio MCP server that forwards everything to the remote MCP server at URL
    /// (Streamable HTTP or HTTP+SSE), for hosts that only start local servers.
    #[arg(long, value_name = "URL")]
    pub connect: Option<String>,

    #[command(flatten)]
    pub gateway: GatewayArgs,

    #[command(flatten)]
    pub bridge: BridgeArgs,

    /// A stdio MCP server to wrap instead of the built-in one (gateway mode), e.g.
    /// `-- npx -y @modelcontextprotocol/server-everything`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,

    /// Base URL of the Aareguru API (without /v2018).
    #[arg(
        long,
        env = "AAREGURU_BASE_URL",
        default_value = "https://aareguru.existenz.ch"
    )]
    pub base_url: String,

    /// Application name sent upstream as `app=` (the API asks every client to identify itself).
    #[arg(long, env = "AAREGURU_APP", default_value = "aareguru-mcp")]
    pub app: String,

    /// Application version sent upstream as `version=`.
    #[arg(long, env = "AAREGURU_APP_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    pub app_version: String,

    /// Timeout for one upstream request (e.g. 10s, 500ms, 1m).
    #[arg(long, env = "AAREGURU_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// How long upstream responses are cached and shared (e.g. 120s; 0 disables the cache).
    #[arg(long, env = "AAREGURU_CACHE_TTL", default_value = "120s", value_parser = parse_duration)]
    pub cache_ttl: Duration,

    /// Largest JSON-RPC message, in bytes: on stdin (--stdio; longer lines are discarded) and
    /// from a child (--sse; a longer reply becomes a JSON-RPC error).
    #[arg(long, env = "AAREGURU_MAX_LINE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_line_bytes: usize,

    /// Log filter, in RUST_LOG syntax (e.g. info, debug, aareguru_mcp=debug,warn). Logs go to stderr.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_level: String,

    /// Log format on stderr.
    #[arg(long, env = "AAREGURU_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Export traces over OTLP, configured by the standard OTEL_* variables
    /// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, ...).
    #[arg(long, env = "AAREGURU_OTEL")]
    pub otel: bool,
}

impl Cli {
    /// `--completions SHELL` and `--man-page`: what they print, if one was asked for.
    pub fn extra_output(&self) -> anyhow::Result<Option<Vec<u8>>> {
        use clap::CommandFactory;
        let mut out = vec![];
        if let Some(shell) = self.completions {
            clap_complete::generate(shell, &mut Cli::command(), "aareguru-mcp", &mut out);
        } else if self.man_page {
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
        } else {
            return Ok(None);
        }
        Ok(Some(out))
    }

    pub fn into_config(self) -> anyhow::Result<Config> {
        let upstream = self.upstream_config()?;
        if self.max_line_bytes < 1024 {
            bail!("--max-line-bytes / AAREGURU_MAX_LINE_BYTES must be at least 1024");
        }
        if !self.sse && !self.command.is_empty() {
            bail!("a COMMAND after `--` is only for --sse (the gateway wraps it)");
        }
        let mode = if let Some(url) = &self.connect {
            Mode::Connect(Box::new(bridge_config(
                url,
                &self.bridge,
                bridge::Shared {
                    api_keys: &self.gateway.api_keys,
                    client_id: self.gateway.oauth_client_id.as_ref(),
                    client_secret: self.gateway.oauth_client_secret.as_ref(),
                    scopes: &self.gateway.oauth_scopes,
                },
                self.max_line_bytes,
            )?))
        } else if self.stdio {
            Mode::Stdio
        } else if self.sse {
            let child = ChildSettings {
                upstream: &upstream,
                max_line_bytes: self.max_line_bytes,
                log_level: &self.log_level,
                log_format: self.log_format,
            };
            Mode::Sse(Box::new(gateway_config(self.gateway, self.command, child)?))
        } else {
            bail!("choose a mode: --stdio, --sse or --connect URL");
        };
        Ok(Config {
            mode,
            upstream,
            max_line_bytes: self.max_line_bytes,
            log_level: self.log_level,
            log_format: self.log_format,
            otel: self.otel,
        })
    }

    fn upstream_config(&self) -> anyhow::Result<UpstreamConfig> {
        let base = self.base_url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() < 10 {
            bail!(
                "--base-url / AAREGURU_BASE_URL must be an http:// or https:// URL, got {:?}",
                self.base_url
            );
        }
        if self.upstream_timeout.is_zero() {
            bail!("--upstream-timeout / AAREGURU_TIMEOUT must be greater than zero");
        }
        if self.app.trim().is_empty() {
            bail!("--app / AAREGURU_APP must not be empty");
        }
        Ok(UpstreamConfig {
            base_url: base,
            app: self.app.trim().to_string(),
            version: self.app_version.trim().to_string(),
            timeout: self.upstream_timeout,
            cache_ttl: self.cache_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Backend, GatewayConfig, TransportChoice};

    #[test]
    fn mode_is_required_and_urls_are_checked() {
        assert!(Cli::try_parse_from(["aareguru-mcp"]).is_err());
        let cfg = Cli::try_parse_from([
            "aareguru-mcp",
            "--stdio",
            "--base-url",
            "http://127.0.0.1:9/",
        ])
        .unwrap()
        .into_config()
        .unwrap();
        assert_eq!(cfg.upstream.base_url, "http://127.0.0.1:9");
        let bad = Cli::try_parse_from(["aareguru-mcp", "--stdio", "--base-url", "ftp://x"])
            .unwrap()
            .into_config();
        assert!(bad.is_err());
    }

    /// `--child-env` reaches every child: the command line's (built-in or not) and, through it,
    /// a servers file's (which start from the command line's list).
    #[test]
    fn child_env_reaches_the_builtin_and_a_wrapped_server() {
        let g = gateway(&["--child-env", "NODE_EXTRA_CA_CERTS, SSL_*"]).unwrap();
        assert_eq!(g.server.child.inherit_env, ["NODE_EXTRA_CA_CERTS", "SSL_*"]);
        let g = gateway(&["--child-env", "A", "--", "npx", "x"]).unwrap();
        assert_eq!(g.server.child.inherit_env, ["A"]);
    }

    fn gateway(args: &[&str]) -> anyhow::Result<GatewayConfig> {
        let mut all = vec!["aareguru-mcp", "--sse"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.into_config()?.mode {
            Mode::Sse(g) => Ok(*g),
            Mode::Stdio | Mode::Connect(_) => unreachable!(),
        }
    }

    #[test]
    fn backend_defaults_and_checks() {
        let builtin = gateway(&[]).unwrap();
        assert_eq!(
            (builtin.server.backend, builtin.server.max_sessions),
            (Backend::InProcess, 16384)
        );
        let wrapped = gateway(&["--", "server"]).unwrap();
        assert_eq!(
            (wrapped.server.backend, wrapped.server.max_sessions),
            (Backend::PerSession, 1024)
        );
        let shared = gateway(&["--backend", "shared", "--children", "3", "--", "s"]).unwrap();
        assert_eq!(
            (shared.server.backend, shared.server.children),
            (Backend::Shared, 3)
        );
        let err = |args: &[&str]| gateway(args).unwrap_err().to_string();
        assert!(err(&["--backend", "in-process", "--", "s"]).contains("built-in"));
        assert!(err(&["--children", "2"]).contains("--backend shared"));
        assert!(err(&["--backend", "shared", "--children", "0"]).contains("between 1 and 256"));
        assert!(Cli::try_parse_from(["aareguru-mcp", "--sse", "--backend", "pooled"]).is_err());
    }

    #[test]
    fn worker_threads() {
        assert_eq!(gateway(&[]).unwrap().worker_threads, None);
        assert_eq!(
            gateway(&["--worker-threads", "1"]).unwrap().worker_threads,
            Some(1)
        );
        let zero = gateway(&["--worker-threads", "0"]).unwrap_err().to_string();
        assert!(zero.contains("at least 1"), "{zero}");
    }

    #[test]
    fn connect_mode_takes_a_url_headers_and_a_key() {
        let cfg = Cli::try_parse_from([
            "aareguru-mcp",
            "--connect",
            "https://example.com/mcp",
            "--header",
            "X-Team: aare",
            "--api-key",
            "k1",
        ])
        .unwrap()
        .into_config()
        .unwrap();
        let Mode::Connect(b) = cfg.mode else {
            panic!("not connect mode")
        };
        assert_eq!(b.transport, TransportChoice::Auto);
        assert!(b.headers.contains(&("X-Team".into(), "aare".into())));
        assert!(
            b.headers
                .contains(&("authorization".into(), "Bearer k1".into()))
        );
        let bad = |args: &[&str]| {
            let mut all = vec!["aareguru-mcp"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
                .map_err(|e| e.to_string())
                .and_then(|c| c.into_config().map(|_| ()).map_err(|e| e.to_string()))
        };
        assert!(bad(&["--connect", "ftp://x"]).is_err());
        assert!(bad(&["--connect", "http://x/mcp", "--header", "nocolon"]).is_err());
        assert!(bad(&["--connect", "http://x/mcp", "--stdio"]).is_err());
    }

    #[test]
    fn the_bridges_oauth_grants_need_their_pieces() {
        let config = |args: &[&str]| {
            let mut all = vec!["aareguru-mcp", "--connect", "http://x/mcp"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
                .map_err(|e| e.to_string())
                .and_then(|c| c.into_config().map_err(|e| e.to_string()))
        };
        let err = |args: &[&str]| config(args).unwrap_err();
        assert!(err(&["--oauth-client-credentials"]).contains("--oauth-client-id"));
        assert!(
            err(&["--oauth-private-key", "/nonexistent.pem"]).contains("needs --oauth-client-id")
        );
        assert!(
            err(&[
                "--oauth-client-id",
                "c",
                "--oauth-private-key",
                "/nonexistent.pem"
            ])
            .contains("cannot read")
        );
        let xaa = ["--oauth-id-token-file", "/t", "--oauth-client-id", "c"];
        assert!(err(&xaa).contains("--oauth-idp-issuer"));
        let both = [
            &xaa[..],
            &[
                "--oauth-idp-issuer",
                "http://idp",
                "--oauth-client-credentials",
                "--oauth-client-secret",
                "s",
            ],
        ]
        .concat();
        assert!(err(&both).contains("pick one"));
        let ok = config(&[&xaa[..], &["--oauth-idp-issuer", "http://idp"]].concat()).unwrap();
        let Mode::Connect(b) = ok.mode else {
            panic!("not connect mode")
        };
        assert_eq!(b.oauth.idp_issuer.as_deref(), Some("http://idp"));
        assert!(
            config(&[
                "--oauth-client-credentials",
                "--oauth-client-id",
                "c",
                "--oauth-client-secret",
                "s"
            ])
            .is_ok()
        );
    }
}
