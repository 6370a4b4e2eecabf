//! The validated configuration: plain data, built by [`crate::cli`] from flags and environment
//! variables. Every mode reads its own part (`Mode::Sse` → [`GatewayConfig`], `Mode::Connect` →
//! [`BridgeConfig`], the server → [`UpstreamConfig`]).
//!
//! Owns: the shape of the settings. Must not touch: any mode's code — this file imports nothing
//! from the rest of the crate, so every room can depend on it and it on none.

mod policy;

pub use policy::*;

use std::{net::SocketAddr, time::Duration};

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub upstream: UpstreamConfig,
    pub max_line_bytes: usize,
    pub log_level: String,
    pub log_format: LogFormat,
    /// `--otel`: traces exported over OTLP (the `OTEL_*` variables say where and how).
    pub otel: bool,
}

/// What the program does.
#[derive(Debug, Clone)]
pub enum Mode {
    Stdio,
    Sse(Box<GatewayConfig>),
    Connect(Box<BridgeConfig>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of the Aareguru API client.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Base URL without the `/v2018` path, e.g. `https://aareguru.existenz.ch`.
    pub base_url: String,
    /// Sent as `app=` on every request (the API asks clients to identify themselves).
    pub app: String,
    /// Sent as `version=` on every request.
    pub version: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// How long a successful body is reused; zero disables the cache.
    pub cache_ttl: Duration,
}

/// How the bridge reaches the remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportChoice {
    /// `/sse` URLs use HTTP+SSE; others try Streamable HTTP and fall back to SSE on a 4xx.
    Auto,
    StreamableHttp,
    Sse,
}

/// Settings of the bridge (`--connect`).
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub url: String,
    pub transport: TransportChoice,
    /// Extra headers on every request (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    pub max_line_bytes: usize,
    pub oauth: BridgeOAuth,
}

/// The bridge as an OAuth client of the remote.
#[derive(Clone, Default)]
pub struct BridgeOAuth {
    /// A pre-registered client (`--oauth-client-id`).
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// `--oauth-client-metadata-url`: a Client ID Metadata Document URL used as the client id.
    pub client_metadata_url: Option<String>,
    /// The client-credentials grant (machines) instead of the authorization code flow.
    pub client_credentials: bool,
    /// `--oauth-private-key`: a PEM private key; the pre-registered client then authenticates
    /// with signed JWTs (`private_key_jwt`) instead of a secret.
    pub private_key: Option<String>,
    /// `--oauth-signing-alg`: the JWT algorithm for that key (default: the key's own).
    pub signing_alg: Option<String>,
    /// Cross-app access: the user's ID token from the IdP (`--oauth-id-token-file`), the IdP
    /// (`--oauth-idp-issuer`) and this app's client there.
    pub id_token_file: Option<std::path::PathBuf>,
    pub idp_issuer: Option<String>,
    pub idp_client_id: Option<String>,
    pub idp_client_secret: Option<String>,
    /// Scopes to ask for when the remote does not say.
    pub scopes: Vec<String>,
    /// The command that opens the authorization URL (`--oauth-browser`).
    pub browser: Option<String>,
    /// Port of the loopback redirect listener (0: any).
    pub redirect_port: u16,
    /// How long the user has to authorize.
    pub timeout: std::time::Duration,
    /// Where tokens are kept (default: the user's config directory).
    pub token_dir: Option<std::path::PathBuf>,
    /// No one is there to authorize in a browser (a gateway's remote member): only the
    /// client-credentials grant is tried; otherwise a 401 is an error.
    pub unattended: bool,
}

impl std::fmt::Debug for BridgeOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeOAuth")
            .field("client_id", &self.client_id)
            .field("client_metadata_url", &self.client_metadata_url)
            .field("client_credentials", &self.client_credentials)
            .field("scopes", &self.scopes)
            .field("browser", &self.browser)
            .finish_non_exhaustive()
    }
}

/// How the gateway serves sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// One child process per session (the safe default for wrapped servers).
    PerSession,
    /// One child (or a small pool) multiplexed for every session.
    Shared,
    /// The built-in Aareguru server inside the gateway, over in-memory pipes.
    InProcess,
    /// A group of the servers file's servers, served as one (its members have backends of
    /// their own). Not a choice for `--backend` or a server's `backend`.
    #[value(skip)]
    #[serde(skip)]
    Federated,
    /// A remote MCP server (Streamable HTTP or HTTP+SSE), one remote session per session.
    #[value(skip)]
    #[serde(skip)]
    Remote,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::PerSession => "per-session",
            Backend::Shared => "shared",
            Backend::InProcess => "in-process",
            Backend::Federated => "federated",
            Backend::Remote => "remote",
        }
    }
}

/// The command a gateway session runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildCommand {
    pub program: String,
    /// What the child sees as its name (`argv[0]`), when it differs from `program`.
    pub arg0: Option<String>,
    pub args: Vec<String>,
    /// Extra environment for the child.
    pub env: Vec<(String, String)>,
    /// Variables of the gateway's environment the child inherits beyond the default list
    /// (names, or globs with `*`).
    pub inherit_env: Vec<String>,
    /// Working directory of the child (`None`: the gateway's).
    pub cwd: Option<std::path::PathBuf>,
    /// The walls it runs in (`None`: none).
    pub sandbox: Option<SandboxSpec>,
}

/// The walls a server's children run in: `sandbox` in the servers file, `--sandbox`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The interpreter's files and package caches, read-only.
    pub preset: Option<Preset>,
    /// Paths the child may read (and execute) beneath, beside the system's and the preset's.
    pub read_only: Vec<std::path::PathBuf>,
    /// Paths the child may read and write beneath.
    pub read_write: Vec<std::path::PathBuf>,
    pub network: Network,
    pub limits: Limits,
    /// Run the child as this user (a name or a number), with its group.
    pub run_as: Option<String>,
    /// Start the server without the walls the kernel lacks (with a warning) instead of refusing.
    pub allow_unsandboxed: bool,
}

/// The interpreter a sandbox is shaped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Node,
    Python,
}

/// What network a sandboxed child reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Network {
    /// No socket at all (pipes and socket pairs still work).
    #[default]
    None,
    /// TCP connections to these ports only (any host), UDP as it likes, no listening.
    Tcp(Vec<u16>),
    All,
}

/// Resource limits of one sandboxed child; `None` leaves the gateway's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of private writable memory (`RLIMIT_DATA`: what malloc and the JS heap take).
    pub memory: Option<u64>,
    /// Seconds of CPU time over the child's life (`RLIMIT_CPU`).
    pub cpu_seconds: Option<u64>,
    /// Processes and threads of the child's user (`RLIMIT_NPROC`).
    pub processes: Option<u64>,
    pub open_files: Option<u64>,
    /// Bytes of the largest file it may write (`RLIMIT_FSIZE`).
    pub file_size: Option<u64>,
}

/// Which tools of a server clients may see and call: names with `*` globs. Empty `allow`
/// allows every tool; `deny` wins over `allow`. Both match the server's own names; `rename`
/// then gives some of them the names clients see (own → new).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolFilter {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub rename: Vec<(String, String)>,
}

/// A request header passed to a per-session child as an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEnv {
    /// Header name, lowercase.
    pub header: String,
    pub env: String,
    /// Without the header, a new session is refused (400) instead of starting without the
    /// variable.
    pub required: bool,
}

/// One server the gateway serves, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Its name in `/servers/<name>/...` (the command line's server is `default`).
    pub name: String,
    pub child: ChildCommand,
    /// Whether the child is this program's own server (`--stdio`).
    pub builtin: bool,
    pub backend: Backend,
    /// Children of the shared backend.
    pub children: usize,
    pub max_sessions: usize,
    /// For the in-process backend.
    pub upstream: UpstreamConfig,
    pub tools: ToolFilter,
    pub env_from_headers: Vec<HeaderEnv>,
    /// Children of the per-session backend kept started ahead of sessions (`--prespawn`).
    pub prespawn: usize,
    /// OAuth scopes a token needs for this server (beside `--oauth-scope`).
    pub scopes: Vec<String>,
    /// OAuth scopes a token needs to call the tools matching each glob (servers file
    /// `toolScopes`).
    pub tool_scopes: Vec<(String, Vec<String>)>,
    /// Set for a group of servers served as one endpoint (then `child` is unused).
    pub group: Option<GroupConfig>,
    /// Set for a remote MCP server (then `child` is unused).
    pub remote: Option<RemoteConfig>,
    /// Tools behind a search tool (servers file `toolSearch`); `None`: listed as they are.
    pub tool_search: Option<ToolSearchConfig>,
}

/// A server's or group's tools behind a search tool and a call tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSearchConfig {
    /// The tools a session found join its own `tools/list` (`activate` mode).
    pub activate: bool,
    /// Tools still listed directly (globs on the names clients see).
    pub always_list: Vec<String>,
    /// Most tools a session keeps activated; the oldest found leaves first.
    pub max_active: usize,
    /// Results when the search names no limit.
    pub limit: usize,
}

/// A remote MCP server the gateway serves (servers file entries with `"type": "http"` or
/// `"sse"` and a `url`, as hosts write them).
#[derive(Clone, PartialEq)]
pub struct RemoteConfig {
    pub url: String,
    pub transport: TransportChoice,
    /// Sent with every request, `${VAR}` already taken from the gateway's environment.
    pub headers: Vec<(String, String)>,
    /// The gateway as an OAuth client of the remote (client credentials), if it asks.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// PEM of the key the gateway signs its client assertions with (`private_key_jwt`).
    pub private_key: Option<String>,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("transport", &self.transport)
            .field("headers", &headers)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl RemoteConfig {
    /// The bridge's settings for one session with the remote.
    pub fn bridge(&self, max_line_bytes: usize) -> BridgeConfig {
        BridgeConfig {
            url: self.url.clone(),
            transport: self.transport,
            headers: self.headers.clone(),
            max_line_bytes,
            oauth: BridgeOAuth {
                client_id: self.client_id.clone(),
                client_secret: self.client_secret.clone(),
                private_key: self.private_key.clone(),
                client_credentials: self.client_id.is_some(),
                scopes: self.scopes.clone(),
                timeout: Duration::from_secs(30),
                unattended: true,
                ..BridgeOAuth::default()
            },
        }
    }
}

/// When a group's tool and prompt names carry their member's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrefixMode {
    /// Always `<member><separator><name>`: a member's names never change as members come and go.
    Always,
    /// Only when the group has more than one member.
    Multiple,
    /// Never: names are the members' own; a name two members share is served by the first
    /// member listed and reported.
    Never,
}

/// A group of servers served as one endpoint (servers file `groups`).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// The servers of the file it federates, in the order names are resolved.
    pub members: Vec<String>,
    /// Members without which a session is refused (the others are left out while down).
    pub required: Vec<String>,
    pub prefix: PrefixMode,
    pub separator: String,
    /// How long a member may take to answer a list or `initialize` before it is left out.
    pub member_timeout: Duration,
    /// Items per page of the group's lists (`0`: every item in one page).
    pub page_size: usize,
}

/// The gateway as an OAuth 2.1 resource server.
#[derive(Clone)]
pub struct OAuthConfig {
    /// Trusted issuers (no trailing slash).
    pub issuers: Vec<String>,
    /// Audiences tokens may name; empty: the called endpoint's URL under the public URL.
    pub audiences: Vec<String>,
    /// Scopes every token must carry.
    pub scopes: Vec<String>,
    /// Client credentials for token introspection (RFC 7662).
    pub introspection: Option<(String, String)>,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("scopes", &self.scopes)
            .field(
                "introspection",
                &self.introspection.as_ref().map(|(id, _)| id),
            )
            .finish()
    }
}

/// Validated gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub bind: SocketAddr,
    /// Prefix for the `endpoint` URI, without trailing slash ("" for none).
    pub public_url: String,
    /// The server of the command line.
    pub server: ServerConfig,
    /// `--config FILE`: servers in the `mcpServers` format hosts use, at `/servers/<name>/`,
    /// reloaded when it changes.
    pub servers_file: Option<std::path::PathBuf>,
    /// The file's servers as read at startup.
    pub servers: Vec<ServerConfig>,
    /// What the file asks for that the gateway does not do (reported once at startup).
    pub servers_notes: Vec<String>,
    /// `--default-server NAME`: the file's server `/mcp` and `/sse` serve (else the command
    /// line's).
    pub default_server: Option<String>,
    /// Serve HTTP+SSE (`/sse`, `/messages`).
    pub serve_sse: bool,
    /// Serve Streamable HTTP (`/mcp`).
    pub serve_mcp: bool,
    /// Runtime threads (`--worker-threads`; `None`: one per CPU).
    pub worker_threads: Option<usize>,
    pub max_body_bytes: usize,
    pub max_line_bytes: usize,
    pub session_idle_timeout: Duration,
    /// How long a stateless request waits for its client's retry after `input_required`.
    pub input_wait_timeout: Duration,
    pub child_start_timeout: Duration,
    pub keepalive: Duration,
    pub session_buffer_bytes: usize,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub api_keys: Vec<String>,
    /// `--api-keys-file`: named keys, watched and reloaded like the servers file.
    pub api_keys_file: Option<std::path::PathBuf>,
    /// The named keys that file held at startup.
    pub named_keys: Vec<KeySource>,
    pub protect_metrics: bool,
    /// `--oauth-issuer`: the gateway as an OAuth resource server.
    pub oauth: Option<OAuthConfig>,
    pub cors_origins: Vec<String>,
    /// (requests per second, burst) per client address.
    pub rate_limit: Option<(u32, u32)>,
    pub shutdown_grace: Duration,
    /// On SIGTERM, how long to keep serving before no longer accepting connections.
    pub drain_delay: Duration,
    /// Several replicas sharing a Redis (`--redis`); `None` for a lone gateway.
    pub cluster: Option<ClusterConfig>,
    /// The servers file's rules (who may call what), as read at startup.
    pub policy: PolicyConfig,
    /// `--audit-log`: a JSON line per call, prompt and resource read; `None`: no audit log.
    pub audit: Option<AuditConfig>,
    /// `--console`: the web console; `None`: not served.
    pub console: Option<ConsoleConfig>,
}

/// Settings of a gateway that is one replica among several.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port/db` (or `rediss://`, `redis+unix://`).
    pub redis_url: String,
    /// Prefix of every key this cluster writes, so clusters can share a Redis.
    pub prefix: String,
    /// How the other replicas reach this one; `None`: the bound address.
    pub advertise_url: Option<String>,
    /// This replica's name in the directory; `None`: the advertise address (host:port).
    pub replica_id: Option<String>,
    /// What replicas present to each other when forwarding; `None`: one kept in Redis.
    pub secret: Option<String>,
}
