//! The gateway's flags (`--sse`) and their checks.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, bail};

use super::{
    audit::AuditArgs,
    cluster::{ClusterArgs, cluster_config},
    console::ConsoleArgs,
    duration::parse_duration,
    oauth::oauth_config,
    servers_file,
};
use crate::config::{
    Backend, ChildCommand, GatewayConfig, LogFormat, ServerConfig, ToolFilter, UpstreamConfig,
};

/// Gateway flags (`--sse`).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Gateway (--sse)")]
pub struct GatewayArgs {
    /// Address to listen on. Loopback by default; binding another address exposes the gateway,
    /// so add --allowed-host for the names clients use and consider --api-key.
    #[arg(long, env = "AAREGURU_MCP_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one; the chosen address is logged).
    #[arg(long, env = "AAREGURU_MCP_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Public base URL or path prefix under which clients reach the gateway, when behind a
    /// reverse proxy (e.g. https://example.com/aare or /aare). The `endpoint` event carries it.
    #[arg(long, env = "AAREGURU_MCP_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Largest POST body accepted, in bytes (larger: 413).
    #[arg(long, env = "AAREGURU_MCP_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// How sessions are served: `per-session` (a child process each; the default for a
    /// wrapped COMMAND), `shared` (one child, or --children K, multiplexed for all sessions),
    /// `in-process` (the built-in server inside the gateway, no processes; its default).
    #[arg(long, env = "AAREGURU_MCP_BACKEND", value_enum)]
    pub backend: Option<Backend>,

    /// With --backend per-session: keep this many children started and waiting, so a new
    /// session takes one that is ready (each child still serves one session only).
    #[arg(long, env = "AAREGURU_MCP_PRESPAWN", default_value_t = 0)]
    pub prespawn: usize,

    /// With --backend shared: how many children to run; each session is pinned to one.
    #[arg(long, env = "AAREGURU_MCP_CHILDREN", default_value_t = 1)]
    pub children: usize,

    /// Threads that run sessions (default: one per CPU). On a small machine shared with its
    /// children, 1 gives one session lower latency; more give many sessions more throughput.
    #[arg(long, env = "AAREGURU_MCP_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Do not serve HTTP+SSE (`/sse` and `/messages`).
    #[arg(long, env = "AAREGURU_MCP_NO_SSE")]
    pub no_sse: bool,

    /// Do not serve Streamable HTTP (`/mcp`).
    #[arg(long, env = "AAREGURU_MCP_NO_STREAMABLE_HTTP")]
    pub no_streamable_http: bool,

    /// Most concurrent sessions (more: 503). Default 1024 with per-session children, 16384
    /// otherwise.
    #[arg(long, env = "AAREGURU_MCP_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,

    /// A session with no messages either way for this long is closed (e.g. 30m, 1h).
    #[arg(long, env = "AAREGURU_MCP_SESSION_IDLE_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub session_idle_timeout: Duration,

    /// With protocol revision 2026-07-28, how long a request translated for a handshake-era
    /// server waits for the client's retry after asking it something (`input_required`) before
    /// it is cancelled on the server (e.g. 5m).
    #[arg(long, env = "AAREGURU_MCP_INPUT_WAIT_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub input_wait_timeout: Duration,

    /// How long a new child may take to answer its first request before the session fails.
    #[arg(long, env = "AAREGURU_MCP_CHILD_START_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub child_start_timeout: Duration,

    /// Interval of SSE keep-alive comments, which keep proxies from cutting idle streams.
    #[arg(long, env = "AAREGURU_MCP_KEEPALIVE", default_value = "15s", value_parser = parse_duration)]
    pub keepalive: Duration,

    /// Bytes of messages that may wait for a client that does not read its stream; past this
    /// the session is closed.
    #[arg(long, env = "AAREGURU_MCP_SESSION_BUFFER_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub session_buffer_bytes: usize,

    /// Extra Host names accepted (repeatable; loopback names are always accepted; `*` accepts
    /// any Host, which disables DNS-rebinding protection).
    #[arg(
        long = "allowed-host",
        env = "AAREGURU_MCP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// Extra browser Origins accepted (repeatable, e.g. https://app.example.com; loopback
    /// origins are always accepted; requests without Origin are not browser requests).
    #[arg(
        long = "allowed-origin",
        env = "AAREGURU_MCP_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// API key clients must send as `X-API-Key` or `Authorization: Bearer` (repeatable). Off
    /// when none is given. With --connect: the key sent to the remote (the first one).
    #[arg(
        long = "api-key",
        env = "AAREGURU_MCP_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,

    /// Named API keys (name, SHA-256 of the key, scopes, labels, expiry) from this JSON file,
    /// reloaded when it changes or on SIGHUP; the rules see a key's name and labels.
    #[arg(
        long = "api-keys-file",
        env = "AAREGURU_MCP_API_KEYS_FILE",
        value_name = "FILE"
    )]
    pub api_keys_file: Option<std::path::PathBuf>,

    /// Accept OAuth 2.1 access tokens from this authorization server (its issuer URL; repeatable
    /// or comma-separated for several). Turns the gateway into an OAuth resource server: JWT
    /// access tokens are checked against the issuer's signing keys, audience and scopes; API keys
    /// keep working beside them.
    #[arg(
        long = "oauth-issuer",
        env = "AAREGURU_MCP_OAUTH_ISSUER",
        value_delimiter = ','
    )]
    pub oauth_issuers: Vec<String>,

    /// The audience access tokens must name: this server's canonical URL (repeatable). Default:
    /// the URL of the endpoint called, under --public-url (else the listening address).
    #[arg(
        long = "oauth-audience",
        env = "AAREGURU_MCP_OAUTH_AUDIENCE",
        value_delimiter = ','
    )]
    pub oauth_audiences: Vec<String>,

    /// A scope every token must carry (repeatable); advertised in the protected-resource
    /// metadata. Servers of the --config file can require more (`scopes`).
    #[arg(
        long = "oauth-scope",
        env = "AAREGURU_MCP_OAUTH_SCOPES",
        value_delimiter = ','
    )]
    pub oauth_scopes: Vec<String>,

    /// Client id for token introspection (RFC 7662), for issuers whose access tokens are not
    /// JWTs. With --oauth-client-secret.
    #[arg(long, env = "AAREGURU_MCP_OAUTH_CLIENT_ID")]
    pub oauth_client_id: Option<String>,

    /// Client secret for token introspection.
    #[arg(long, env = "AAREGURU_MCP_OAUTH_CLIENT_SECRET", hide_env_values = true)]
    pub oauth_client_secret: Option<String>,

    /// Require an API key on /metrics too (/health stays open).
    #[arg(long, env = "AAREGURU_MCP_PROTECT_METRICS")]
    pub protect_metrics: bool,

    /// Answer CORS requests from these origins (repeatable; `*` for any). Off by default.
    #[arg(
        long = "cors-origin",
        env = "AAREGURU_MCP_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Requests per second allowed per client address (0: no limit). Excess gets 429 with
    /// Retry-After.
    #[arg(long, env = "AAREGURU_MCP_RATE_LIMIT", default_value_t = 0)]
    pub rate_limit: u32,

    /// Burst allowed above --rate-limit (default: twice the rate).
    #[arg(long, env = "AAREGURU_MCP_RATE_BURST")]
    pub rate_burst: Option<u32>,

    /// Variables of the gateway's environment that child servers inherit (repeatable or
    /// comma-separated; names, or globs such as `LC_*`). Children get only HOME, LOGNAME, PATH,
    /// SHELL, TERM and USER otherwise, never the gateway's settings and secrets; no glob
    /// matches the gateway's own `AAREGURU_*` variables (name one exactly to pass it).
    #[arg(
        long = "child-env",
        env = "AAREGURU_MCP_CHILD_ENV",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub child_env: Vec<String>,

    /// The walls the command's children run in: `node`, `python`, `none`, or a servers file's
    /// `sandbox` object as JSON (Linux: Landlock, seccomp, rlimits).
    #[arg(long, env = "AAREGURU_MCP_SANDBOX", value_name = "PRESET|JSON")]
    pub sandbox: Option<String>,

    /// On SIGINT/SIGTERM, how long children get to exit before they are killed.
    #[arg(long, env = "AAREGURU_MCP_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// On SIGTERM, how long the replica keeps serving (readiness 503, every answer closing its
    /// connection) before it stops accepting connections; SIGINT or a second signal skips it.
    #[arg(long, env = "AAREGURU_MCP_DRAIN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub drain_delay: Duration,

    /// Serve every stdio server of this file too — the `mcpServers` format of Claude Desktop,
    /// Cursor and VS Code — each at /servers/<name>/mcp and /servers/<name>/sse; reloaded on
    /// SIGHUP and when the file changes.
    #[arg(long = "config", env = "AAREGURU_MCP_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// With --config: the file's server that /mcp and /sse serve (default: the command line's).
    #[arg(
        long,
        env = "AAREGURU_MCP_DEFAULT_SERVER",
        value_name = "NAME",
        requires = "config"
    )]
    pub default_server: Option<String>,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub audit: AuditArgs,

    #[command(flatten)]
    pub console: ConsoleArgs,
}

/// What the built-in child inherits from the gateway's own settings.
pub(super) struct ChildSettings<'a> {
    pub upstream: &'a UpstreamConfig,
    pub max_line_bytes: usize,
    pub log_level: &'a str,
    pub log_format: LogFormat,
}

pub(super) fn gateway_config(
    mut g: GatewayArgs,
    command: Vec<String>,
    settings: ChildSettings,
) -> anyhow::Result<GatewayConfig> {
    let bind = SocketAddr::new(listen_ip(&g.host)?, g.port);
    let builtin_child = command.is_empty();
    let inherit_env = super::sandbox::child_env(std::mem::take(&mut g.child_env))?;
    let child = if builtin_child {
        // It needs nothing of the environment, but a servers file's children start from the
        // command line's server's list: --child-env must reach them too.
        ChildCommand {
            inherit_env: inherit_env.clone(),
            ..builtin_command(&settings)?
        }
    } else {
        ChildCommand {
            program: command[0].clone(),
            arg0: None,
            args: command[1..].to_vec(),
            env: vec![],
            inherit_env: inherit_env.clone(),
            cwd: None,
            sandbox: None,
        }
    };
    if g.max_body_bytes < 1024 {
        bail!("--max-body-bytes must be at least 1024");
    }
    let (backend, max_sessions) = backend_choice(&g, builtin_child)?;
    let child = ChildCommand {
        sandbox: super::sandbox::from_flag(g.sandbox.as_deref(), backend)?,
        ..child
    };
    if g.no_sse && g.no_streamable_http {
        bail!("--no-sse and --no-streamable-http together leave nothing to serve");
    }
    if g.keepalive.is_zero()
        || g.session_idle_timeout.is_zero()
        || g.child_start_timeout.is_zero()
        || g.input_wait_timeout.is_zero()
    {
        bail!(
            "--keepalive, --session-idle-timeout, --child-start-timeout and --input-wait-timeout must be greater than zero"
        );
    }
    if g.session_buffer_bytes < 64 * 1024 {
        bail!("--session-buffer-bytes must be at least 65536");
    }
    if g.worker_threads == Some(0) {
        bail!("--worker-threads must be at least 1");
    }
    let cluster = cluster_config(g.cluster, bind)?;
    let server = ServerConfig {
        name: "default".into(),
        child,
        builtin: builtin_child,
        backend,
        children: g.children,
        max_sessions,
        upstream: settings.upstream.clone(),
        tools: ToolFilter::default(),
        env_from_headers: vec![],
        prespawn: g.prespawn,
        scopes: vec![],
        tool_scopes: vec![],
        group: None,
        remote: None,
        tool_search: None,
    };
    servers_file::check_prespawn(&server)?;
    let (servers, servers_notes, policy) = match &g.config {
        Some(path) => {
            let loaded = servers_file::load(path, &server)?;
            if let Some(d) = &g.default_server
                && !loaded.servers.iter().any(|s| s.name == *d)
            {
                bail!(
                    "--default-server {d:?} is not a served server of {}",
                    path.display()
                );
            }
            (loaded.servers, loaded.notes, loaded.policy)
        }
        None => (vec![], vec![], Default::default()),
    };
    let rate_limit = (g.rate_limit > 0).then(|| {
        let burst = g
            .rate_burst
            .unwrap_or(g.rate_limit.saturating_mul(2))
            .max(1);
        (g.rate_limit, burst)
    });
    let console = g.console;
    let mut config = GatewayConfig {
        bind,
        public_url: g
            .public_url
            .unwrap_or_default()
            .trim()
            .trim_end_matches('/')
            .to_string(),
        server,
        servers_file: g.config,
        servers,
        servers_notes,
        policy,
        default_server: g.default_server,
        serve_sse: !g.no_sse,
        serve_mcp: !g.no_streamable_http,
        worker_threads: g.worker_threads,
        max_body_bytes: g.max_body_bytes,
        max_line_bytes: settings.max_line_bytes,
        session_idle_timeout: g.session_idle_timeout,
        input_wait_timeout: g.input_wait_timeout,
        child_start_timeout: g.child_start_timeout,
        keepalive: g.keepalive,
        session_buffer_bytes: g.session_buffer_bytes,
        allowed_hosts: clean_names(g.allowed_hosts),
        allowed_origins: clean_names(g.allowed_origins),
        api_keys: g
            .api_keys
            .into_iter()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect(),
        named_keys: match &g.api_keys_file {
            Some(path) => super::keys::load(path)?,
            None => vec![],
        },
        api_keys_file: g.api_keys_file,
        protect_metrics: g.protect_metrics,
        oauth: oauth_config(
            g.oauth_issuers,
            g.oauth_audiences,
            g.oauth_scopes,
            g.oauth_client_id,
            g.oauth_client_secret,
        )?,
        cors_origins: clean_names(g.cors_origins),
        rate_limit,
        shutdown_grace: g.shutdown_grace,
        drain_delay: g.drain_delay,
        cluster,
        audit: g.audit.config()?,
        console: None,
    };
    // A keys file may be empty now and filled later: it counts as a way to log in.
    let credentials = !config.api_keys.is_empty()
        || config.api_keys_file.is_some()
        || config.policy.keys.is_some()
        || config.oauth.is_some();
    config.console = console.config(credentials, config.oauth.is_some())?;
    Ok(config)
}

fn listen_ip(host: &str) -> anyhow::Result<std::net::IpAddr> {
    if host == "localhost" {
        return Ok(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    host.trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| {
            anyhow::anyhow!(
                "--host must be an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1), got {host:?}"
            )
        })
}

/// This program's own server as the child: `--stdio` with the gateway's upstream settings.
fn builtin_command(s: &ChildSettings) -> anyhow::Result<ChildCommand> {
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let exe = exe.to_string_lossy().into_owned();
    // On Linux, exec the running binary itself: it still works after an upgrade replaced
    // or removed the file on disk, and children always match the gateway's version.
    let (program, arg0) = if std::path::Path::new("/proc/self/exe").exists() {
        ("/proc/self/exe".to_string(), Some(exe))
    } else {
        (exe, None)
    };
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let upstream = s.upstream;
    Ok(ChildCommand {
        program,
        arg0,
        args: vec![
            "--stdio".into(),
            "--base-url".into(),
            upstream.base_url.clone(),
            "--app".into(),
            upstream.app.clone(),
            "--app-version".into(),
            upstream.version.clone(),
            "--upstream-timeout".into(),
            ms(upstream.timeout),
            "--cache-ttl".into(),
            ms(upstream.cache_ttl),
            "--max-line-bytes".into(),
            s.max_line_bytes.to_string(),
            "--log-format".into(),
            match s.log_format {
                LogFormat::Text => "text".into(),
                LogFormat::Json => "json".into(),
            },
        ],
        // Per-session lifecycle chatter from hundreds of children drowns the gateway's own
        // log; children report warnings and errors unless the operator asks for more.
        cwd: None,
        sandbox: None,
        // Everything it needs is in its arguments.
        inherit_env: vec![],
        env: vec![(
            "RUST_LOG".into(),
            if s.log_level == "info" {
                "warn".to_string()
            } else {
                s.log_level.to_string()
            },
        )],
    })
}

/// The backend (with its default) and the session limit that goes with it.
fn backend_choice(g: &GatewayArgs, builtin_child: bool) -> anyhow::Result<(Backend, usize)> {
    let backend = g.backend.unwrap_or(if builtin_child {
        Backend::InProcess
    } else {
        Backend::PerSession
    });
    if backend == Backend::InProcess && !builtin_child {
        bail!(
            "--backend in-process serves the built-in Aareguru server only; a wrapped COMMAND runs with --backend per-session or shared"
        );
    }
    if g.children == 0 || g.children > 256 {
        bail!("--children must be between 1 and 256");
    }
    if g.children > 1 && backend != Backend::Shared {
        bail!("--children applies to --backend shared only");
    }
    let max_sessions = g.max_sessions.unwrap_or(match backend {
        Backend::PerSession => 1024,
        Backend::Shared | Backend::InProcess | Backend::Federated | Backend::Remote => 16384,
    });
    if max_sessions == 0 {
        bail!("--max-sessions must be at least 1");
    }
    Ok((backend, max_sessions))
}

/// Host names and origins compare lowercase, without a trailing slash.
fn clean_names(v: Vec<String>) -> Vec<String> {
    v.into_iter()
        .map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}
