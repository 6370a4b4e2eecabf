//! Command-line flags and environment variables (clap, with env fallbacks), validated into a
//! [`Config`]. The rest of the program only sees `Config`.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgGroup, Parser, ValueEnum};

use crate::upstream::UpstreamConfig;

/// Aareguru MCP server: Aare river temperature, flow, weather and forecasts for Swiss bathing
/// spots, over the Model Context Protocol.
///
/// Data: Aareguru (https://aare.guru) with measurements from BAFU (https://www.hydrodaten.admin.ch).
#[derive(Debug, Parser)]
#[command(name = "aareguru-mcp", version, about, long_about)]
#[command(group(ArgGroup::new("mode").required(true).args(["stdio"])))]
pub struct Cli {
    /// Run the MCP server on stdin/stdout (for Claude Desktop and other MCP hosts).
    #[arg(long)]
    pub stdio: bool,

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

    /// Largest JSON-RPC message accepted on stdin, in bytes; longer lines are discarded.
    #[arg(long, env = "AAREGURU_MAX_LINE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_line_bytes: usize,

    /// Log filter, in RUST_LOG syntax (e.g. info, debug, aareguru_mcp=debug,warn). Logs go to stderr.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_level: String,

    /// Log format on stderr.
    #[arg(long, env = "AAREGURU_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What the program does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Stdio,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub upstream: UpstreamConfig,
    pub max_line_bytes: usize,
    pub log_level: String,
    pub log_format: LogFormat,
}

impl Cli {
    pub fn into_config(self) -> anyhow::Result<Config> {
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
        if self.max_line_bytes < 1024 {
            bail!("--max-line-bytes / AAREGURU_MAX_LINE_BYTES must be at least 1024");
        }
        if self.app.trim().is_empty() {
            bail!("--app / AAREGURU_APP must not be empty");
        }
        let mode = if self.stdio {
            Mode::Stdio
        } else {
            bail!("choose a mode: --stdio");
        };
        Ok(Config {
            mode,
            upstream: UpstreamConfig {
                base_url: base,
                app: self.app.trim().to_string(),
                version: self.app_version.trim().to_string(),
                timeout: self.upstream_timeout,
                cache_ttl: self.cache_ttl,
            },
            max_line_bytes: self.max_line_bytes,
            log_level: self.log_level,
            log_format: self.log_format,
        })
    }
}

/// "10s", "500ms", "2m", "1h 30m" (jiff's friendly format) or bare seconds ("10").
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
        bail!("a duration cannot be negative");
    }
    let d: jiff::SignedDuration = s
        .parse()
        .with_context(|| format!("{s:?} is not a duration; use e.g. 10s, 500ms or 2m"))?;
    Duration::try_from(d).map_err(|_| anyhow::anyhow!("a duration cannot be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }

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
}
