//! The servers file (`--config FILE`): the `mcpServers` object exactly as Claude Desktop, Cursor
//! and VS Code write it (`command`, `args`, `env`, `cwd`, `disabled`; VS Code's `servers` key too),
//! plus optional gateway settings of our own under `"gateway"`, per server and as top-level
//! defaults:
//!
//! ```json
//! {"gateway": {"backend": "shared"},
//!  "mcpServers": {
//!    "time": {"command": "uvx", "args": ["mcp-server-time"],
//!             "gateway": {"tools": {"deny": ["convert_*"]}}},
//!    "github": {"command": "github-mcp", "args": ["stdio"],
//!               "gateway": {"backend": "per-session",
//!                           "envFromHeaders": {"X-GitHub-Token": {"env": "GITHUB_TOKEN", "required": true}}}}}}
//! ```
//!
//! Keys hosts use that the gateway cannot honour (`url` servers, `timeout`, `envFile`, …) are
//! reported once, never an error; a file with errors is refused as a whole with the path of the
//! first one.
//!
//! Owns: reading that format into [`ServerConfig`]s. Must not touch: serving them.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

use super::{
    duration::parse_duration,
    groups::{self, Tools, check_name, trimmed},
    remotes, rules, sandbox,
};
use crate::config::{Backend, ChildCommand, HeaderEnv, PolicyConfig, ServerConfig};

/// What a servers file yields.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The servers to serve, in name order.
    pub servers: Vec<ServerConfig>,
    /// Things the file asks for that the gateway does not do, one line each.
    pub notes: Vec<String>,
    /// Its rules (who may call what).
    pub policy: PolicyConfig,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GatewaySettings {
    backend: Option<Backend>,
    children: Option<usize>,
    max_sessions: Option<usize>,
    prespawn: Option<usize>,
    /// OAuth scopes a token needs for this server (beside `--oauth-scope`).
    scopes: Option<Vec<String>>,
    /// OAuth scopes a token needs to call the tools matching each glob.
    tool_scopes: Option<BTreeMap<String, Vec<String>>>,
    tools: Option<Tools>,
    #[serde(default)]
    env_from_headers: BTreeMap<String, HeaderSpec>,
    /// Variables of the gateway's environment the server's children inherit (names or `*`
    /// globs), beside the default list; added to `--child-env` and the file's defaults.
    #[serde(default)]
    inherit_env: Vec<String>,
    /// A remote server's OAuth client credentials.
    oauth: Option<remotes::OAuthSpec>,
    /// The walls its children run in (see [`sandbox`]).
    sandbox: Option<Value>,
    /// Who may call what (see [`rules`]): gateway-wide at the top, else the server's own.
    rules: Option<Vec<rules::RuleSpec>>,
    /// Top level only: request headers the rules may read.
    rule_headers: Option<Vec<String>>,
    /// Top level only: how a denied call is answered (`unknown` or `error`).
    denied: Option<String>,
    /// Top level only: named API keys (see [`super::keys`]).
    api_keys: Option<Value>,
    /// Top level only: limits per caller (see [`super::limits`]).
    limits: Option<Vec<super::limits::LimitSpec>>,
    /// Tools behind a search tool (see [`super::search`]).
    tool_search: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderSpec {
    Env(String),
    Full {
        env: String,
        #[serde(default)]
        required: bool,
    },
}

#[derive(Deserialize)]
struct Entry {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, Value>,
    cwd: Option<String>,
    #[serde(default)]
    disabled: bool,
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    gateway: Option<GatewaySettings>,
    /// Beside the entry's other keys as well as in its `gateway`.
    sandbox: Option<Value>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct File {
    #[serde(rename = "mcpServers")]
    mcp_servers: Option<BTreeMap<String, Value>>,
    /// VS Code's `.vscode/mcp.json` calls it `servers`.
    servers: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    gateway: Option<GatewaySettings>,
    /// Groups of the file's servers, each served as one endpoint.
    #[serde(default)]
    groups: BTreeMap<String, Value>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Reads and checks the servers file at `path`. `base` is the command line's server: its
/// upstream settings are what an entry for this program's own `--stdio` server starts from.
pub fn load(path: &Path, base: &ServerConfig) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the servers file {}", path.display()))?;
    parse(&text, base).with_context(|| format!("in the servers file {}", path.display()))
}

/// Checks a servers file's text (see [`load`]).
pub fn parse(text: &str, base: &ServerConfig) -> anyhow::Result<Loaded> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let file: File = serde_path_to_error::deserialize(de)
        .map_err(|e| anyhow::anyhow!("at {}: {}", e.path(), e.inner()))?;
    let mut notes = vec![];
    for key in file.other.keys() {
        notes.push(format!("top-level key {key:?} is not used by the gateway"));
    }
    let entries = match (file.mcp_servers, file.servers) {
        (Some(a), Some(b)) => a.into_iter().chain(b).collect(),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => {
            bail!("no \"mcpServers\" object (the format of claude_desktop_config.json)")
        }
    };
    let mut defaults = file.gateway.unwrap_or_default();
    if !defaults.env_from_headers.is_empty() {
        bail!("at gateway.envFromHeaders: set it per server, where its header belongs");
    }
    let mut policy = PolicyConfig {
        gateway: rules::sources("gateway", defaults.rules.take().unwrap_or_default())
            .context("at gateway")?,
        headers: rules::headers(defaults.rule_headers.take().unwrap_or_default())
            .context("at gateway")?,
        denied: rules::denied_as(defaults.denied.take().as_deref()).context("at gateway")?,
        keys: match defaults.api_keys.take() {
            Some(list) => Some(super::keys::parse(list).context("at gateway")?),
            None => None,
        },
        limits: super::limits::sources(defaults.limits.take().unwrap_or_default())
            .context("at gateway")?,
        ..PolicyConfig::default()
    };
    let mut servers = vec![];
    for (name, raw) in entries {
        check_name(&name)?;
        let mut entry: Entry = serde_path_to_error::deserialize(raw)
            .map_err(|e| anyhow::anyhow!("at mcpServers.{name}.{}: {}", e.path(), e.inner()))?;
        let own = entry
            .gateway
            .as_mut()
            .map(|g| server_rules(&name, g))
            .transpose();
        let own = own.with_context(|| format!("at mcpServers.{name}.gateway"))?;
        if let Some(server) = server(&name, entry, &defaults, base, &mut notes)
            .with_context(|| format!("at mcpServers.{name}"))?
        {
            if let Some(own) = own.filter(|r| !r.is_empty()) {
                policy.servers.insert(name.clone(), own);
            }
            servers.push(server);
        }
    }
    let mut groups = vec![];
    for (name, raw) in file.groups {
        check_name(&name)?;
        let (group, own) = groups::group(&name, raw, &servers, base)?;
        if !own.is_empty() {
            policy.servers.insert(name.clone(), own);
        }
        groups.push(group);
    }
    // Groups come last: the registry starts their members first.
    servers.extend(groups);
    Ok(Loaded {
        servers,
        notes,
        policy,
    })
}

/// A server's own rules; `ruleHeaders` and `denied` belong to the whole gateway.
fn server_rules(
    name: &str,
    settings: &mut GatewaySettings,
) -> anyhow::Result<Vec<crate::config::RuleSource>> {
    if settings.rule_headers.is_some()
        || settings.denied.is_some()
        || settings.api_keys.is_some()
        || settings.limits.is_some()
    {
        bail!(
            "ruleHeaders, denied, apiKeys and limits are gateway-wide: set them in the top-level \"gateway\" (a limit names its servers)"
        );
    }
    rules::sources(name, settings.rules.take().unwrap_or_default())
}

/// One entry; `None` when it is disabled or not something the gateway serves.
fn server(
    name: &str,
    e: Entry,
    defaults: &GatewaySettings,
    base: &ServerConfig,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<ServerConfig>> {
    if e.disabled {
        notes.push(format!("{name}: disabled, not served"));
        return Ok(None);
    }
    for key in e.other.keys() {
        notes.push(format!("{name}: {key:?} is not used by the gateway"));
    }
    let mut settings = e.gateway.unwrap_or_default();
    let remote = if e.url.is_some() || e.kind.as_deref().is_some_and(|k| k != "stdio") {
        if settings.backend.is_some()
            || settings.prespawn.is_some()
            || settings.children.is_some()
            || !settings.env_from_headers.is_empty()
            || !settings.inherit_env.is_empty()
            || settings.sandbox.is_some()
            || e.sandbox.is_some()
        {
            bail!(
                "backend, children, prespawn, envFromHeaders, inheritEnv and sandbox are for stdio servers; this one is remote"
            );
        }
        let env = |name: &str| std::env::var(name).ok();
        Some(remotes::remote(
            e.kind.as_deref(),
            e.url.as_deref(),
            &e.headers,
            settings.oauth.take(),
            &env,
        )?)
    } else {
        if settings.oauth.is_some() {
            bail!("gateway.oauth is for remote servers (the gateway's credentials there)");
        }
        None
    };
    let command = match (&remote, e.command.filter(|c| !c.trim().is_empty())) {
        (Some(_), _) => String::new(),
        (None, Some(c)) => c,
        (None, None) => bail!("\"command\" is missing"),
    };
    let mut env = vec![];
    for (k, v) in e.env {
        let v = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => bail!("env.{k}: expected a string, got {other}"),
        };
        env.push((k, v));
    }
    let mut inherit_env = base.child.inherit_env.clone();
    for pattern in defaults.inherit_env.iter().chain(&settings.inherit_env) {
        let pattern = pattern.trim();
        if !crate::gateway::backend::sandbox::valid_pattern(pattern) {
            bail!("inheritEnv: {pattern:?} is not a variable name or a glob with '*'");
        }
        if !inherit_env.iter().any(|p| p == pattern) {
            inherit_env.push(pattern.to_string());
        }
    }
    let builtin = is_this_program(&command) && e.args.iter().any(|a| a == "--stdio");
    // This program's own server runs in process unless its entry says otherwise; the file's
    // default backend is for the others.
    let backend = match (settings.backend, builtin) {
        _ if remote.is_some() => Backend::Remote,
        (Some(b), _) => b,
        (None, true) => Backend::InProcess,
        (None, false) => defaults.backend.unwrap_or(Backend::PerSession),
    };
    if backend == Backend::InProcess && !builtin {
        bail!("backend \"in-process\" serves this program's own --stdio server only");
    }
    let children = match remote {
        Some(_) => 1,
        None => settings.children.or(defaults.children).unwrap_or(1),
    };
    if children == 0 || children > 256 {
        bail!("children must be between 1 and 256");
    }
    if children > 1 && backend != Backend::Shared {
        bail!("children applies to backend \"shared\" only");
    }
    let max_sessions = settings
        .max_sessions
        .or(defaults.max_sessions)
        .unwrap_or(match backend {
            Backend::PerSession => 1024,
            Backend::Shared | Backend::InProcess | Backend::Federated | Backend::Remote => 16384,
        });
    if max_sessions == 0 {
        bail!("maxSessions must be at least 1");
    }
    let tools = settings
        .tools
        .or(defaults.tools.clone())
        .unwrap_or_default()
        .filter()?;
    let mut env_from_headers = vec![];
    for (header, spec) in settings.env_from_headers {
        let (var, required) = match spec {
            HeaderSpec::Env(v) => (v, false),
            HeaderSpec::Full { env, required } => (env, required),
        };
        if warp::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            bail!("envFromHeaders: {header:?} is not a header name");
        }
        let valid_var = var
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if var.is_empty() || !valid_var {
            bail!("envFromHeaders.{header}: {var:?} is not an environment variable name");
        }
        env_from_headers.push(HeaderEnv {
            header: header.to_ascii_lowercase(),
            env: var,
            required,
        });
    }
    if !env_from_headers.is_empty() && backend != Backend::PerSession {
        bail!(
            "envFromHeaders gives each session's child its own environment: it needs backend \"per-session\", not {:?}",
            backend.as_str()
        );
    }
    let default_sandbox = (defaults.sandbox.as_ref())
        .map(sandbox::setting)
        .transpose()
        .context("at gateway.sandbox")?;
    let own_sandbox = match (e.sandbox, settings.sandbox) {
        (Some(_), Some(_)) => {
            bail!("sandbox is set twice: beside the entry's keys and in its gateway")
        }
        (Some(v), None) | (None, Some(v)) => Some(sandbox::setting(&v).context("sandbox")?),
        (None, None) => None,
    };
    let sandbox = match backend {
        Backend::InProcess | Backend::Remote => {
            if own_sandbox.is_some() {
                bail!(
                    "sandbox: this server runs in the gateway's own process, with no child to wall in; give it backend \"per-session\" or \"shared\""
                );
            }
            None
        }
        _ => sandbox::resolve(default_sandbox.as_ref(), own_sandbox.as_ref()).context("sandbox")?,
    };
    for path in sandbox
        .iter()
        .flat_map(|s| s.read_only.iter().chain(&s.read_write))
    {
        if !path.exists() {
            notes.push(format!(
                "{name}: sandbox path {} does not exist (yet): the child cannot reach it",
                path.display()
            ));
        }
    }
    let mut upstream = base.upstream.clone();
    if builtin {
        own_upstream_settings(&e.args, &env, &mut upstream)?;
    }
    let server = ServerConfig {
        name: name.to_string(),
        child: ChildCommand {
            program: command,
            arg0: None,
            args: e.args,
            env,
            inherit_env,
            cwd: e.cwd.map(Into::into),
            sandbox,
        },
        builtin,
        backend,
        children,
        max_sessions,
        upstream,
        tools,
        env_from_headers,
        scopes: trimmed(
            settings
                .scopes
                .or(defaults.scopes.clone())
                .unwrap_or_default(),
        ),
        tool_scopes: settings
            .tool_scopes
            .or(defaults.tool_scopes.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|(glob, scopes)| (glob, trimmed(scopes)))
            .collect(),
        group: None,
        remote,
        tool_search: super::search::optional(
            (settings.tool_search.as_ref()).or(defaults.tool_search.as_ref()),
        )?,
        // The file's default applies to the per-session servers; an entry's own is checked.
        prespawn: settings
            .prespawn
            .or(defaults.prespawn.filter(|_| backend == Backend::PerSession))
            .unwrap_or(0),
    };
    check_prespawn(&server)?;
    Ok(Some(server))
}

/// `--prespawn` (or a file's `prespawn`) fits the server's backend and limits.
pub(super) fn check_prespawn(s: &ServerConfig) -> anyhow::Result<()> {
    if s.prespawn == 0 {
        return Ok(());
    }
    if s.backend != Backend::PerSession {
        bail!(
            "prespawn keeps children of the per-session backend ready; {:?} has backend {:?}",
            s.name,
            s.backend.as_str()
        );
    }
    if s.prespawn > s.max_sessions {
        bail!(
            "prespawn {} is above max sessions {} for {:?}",
            s.prespawn,
            s.max_sessions,
            s.name
        );
    }
    if !s.env_from_headers.is_empty() {
        bail!(
            "prespawn and envFromHeaders do not mix for {:?}: a waiting child starts before the session's headers are known",
            s.name
        );
    }
    Ok(())
}

/// Whether `command` starts this program (what install.sh tells hosts to put there).
fn is_this_program(command: &str) -> bool {
    let path = Path::new(command);
    if path.file_name().is_some_and(|n| n == "aareguru-mcp") {
        return true;
    }
    match (std::fs::canonicalize(path), std::env::current_exe()) {
        (Ok(a), Ok(b)) => std::fs::canonicalize(b).is_ok_and(|b| a == b),
        _ => false,
    }
}

/// The upstream settings an entry for this program's own server gives in its arguments or
/// environment, as `--stdio` would read them.
fn own_upstream_settings(
    args: &[String],
    env: &[(String, String)],
    upstream: &mut crate::config::UpstreamConfig,
) -> anyhow::Result<()> {
    let from_env = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let from_args = |flag: &str| {
        args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix(&format!("{flag}="))
                .map(str::to_string)
                .or_else(|| (a == flag).then(|| args.get(i + 1).cloned()).flatten())
        })
    };
    let get = |flag: &str, var: &str| from_args(flag).or_else(|| from_env(var));
    if let Some(url) = get("--base-url", "AAREGURU_BASE_URL") {
        upstream.base_url = url.trim().trim_end_matches('/').to_string();
    }
    if let Some(app) = get("--app", "AAREGURU_APP") {
        upstream.app = app;
    }
    if let Some(v) = get("--app-version", "AAREGURU_APP_VERSION") {
        upstream.version = v;
    }
    if let Some(t) = get("--upstream-timeout", "AAREGURU_TIMEOUT") {
        upstream.timeout = parse_duration(&t)?;
    }
    if let Some(t) = get("--cache-ttl", "AAREGURU_CACHE_TTL") {
        upstream.cache_ttl = parse_duration(&t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{PrefixMode, UpstreamConfig};

    fn base() -> ServerConfig {
        ServerConfig {
            name: "default".into(),
            child: ChildCommand {
                program: "x".into(),
                arg0: None,
                args: vec![],
                env: vec![],
                inherit_env: vec!["LANG".into()],
                cwd: None,
                sandbox: None,
            },
            builtin: true,
            backend: Backend::InProcess,
            children: 1,
            max_sessions: 16384,
            upstream: UpstreamConfig {
                base_url: "https://aareguru.existenz.ch".into(),
                app: "aareguru-mcp".into(),
                version: "0.1.0".into(),
                timeout: Duration::from_secs(10),
                cache_ttl: Duration::from_secs(120),
            },
            tools: crate::config::ToolFilter::default(),
            env_from_headers: vec![],
            prespawn: 0,
            scopes: vec![],
            tool_scopes: vec![],
            group: None,
            remote: None,
            tool_search: None,
        }
    }

    #[test]
    fn a_claude_desktop_file_is_served_as_is() {
        let loaded = parse(
            r#"{"mcpServers": {
                "aareguru": {"command": "/home/you/.local/bin/aareguru-mcp", "args": ["--stdio"]},
                "everything": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"],
                               "env": {"DEBUG": "1", "PORT": 3}},
                "off": {"command": "nope", "disabled": true},
                "remote": {"type": "sse", "url": "https://example.com/sse"}
            }, "globalShortcut": "Ctrl+Space"}"#,
            &base(),
        )
        .unwrap();
        let names: Vec<&str> = loaded.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["aareguru", "everything", "remote"]);
        let remote = &loaded.servers[2];
        assert_eq!(remote.backend, Backend::Remote);
        let r = remote.remote.as_ref().unwrap();
        assert_eq!(
            (r.url.as_str(), r.transport),
            (
                "https://example.com/sse",
                crate::config::TransportChoice::Sse
            )
        );
        let own = &loaded.servers[0];
        assert!(own.builtin);
        assert_eq!(own.backend, Backend::InProcess);
        let e = &loaded.servers[1];
        assert_eq!((e.backend, e.max_sessions), (Backend::PerSession, 1024));
        assert!(e.child.env.contains(&("PORT".into(), "3".into())));
        let notes = loaded.notes.join("\n");
        assert!(notes.contains("off: disabled"), "{notes}");
        assert!(!notes.contains("remote"), "{notes}");
        assert!(notes.contains("globalShortcut"), "{notes}");
    }

    #[test]
    fn gateway_settings_per_server_and_as_defaults() {
        let loaded = parse(
            r#"{"gateway": {"backend": "shared", "tools": {"deny": ["rm_*"]}},
                "servers": {
                  "a": {"command": "a"},
                  "b": {"command": "b", "gateway": {"backend": "per-session", "maxSessions": 7,
                        "tools": {"allow": ["get_*"]},
                        "envFromHeaders": {"X-Token": "TOKEN", "X-Org": {"env": "ORG", "required": true}}}},
                  "own": {"command": "aareguru-mcp", "args": ["--stdio", "--base-url", "http://127.0.0.1:9/"],
                          "env": {"AAREGURU_CACHE_TTL": "5s"}}
                }}"#,
            &base(),
        )
        .unwrap();
        let s = &loaded.servers;
        assert_eq!(
            (s[0].backend, s[0].tools.deny.clone()),
            (Backend::Shared, vec!["rm_*".to_string()])
        );
        assert_eq!((s[1].backend, s[1].max_sessions), (Backend::PerSession, 7));
        assert_eq!(s[1].tools.allow, ["get_*"]);
        assert_eq!(
            s[1].env_from_headers,
            [
                HeaderEnv {
                    header: "x-org".into(),
                    env: "ORG".into(),
                    required: true
                },
                HeaderEnv {
                    header: "x-token".into(),
                    env: "TOKEN".into(),
                    required: false
                },
            ]
        );
        // This program's own server: in process (the file's default backend is for the others),
        // with the upstream its arguments and environment give.
        assert_eq!(s[2].backend, Backend::InProcess);
        assert_eq!(s[2].upstream.base_url, "http://127.0.0.1:9");
        assert_eq!(s[2].upstream.cache_ttl, Duration::from_secs(5));
    }

    #[test]
    fn inherited_environment_adds_up() {
        let loaded = parse(
            r#"{"gateway": {"inheritEnv": ["NODE_*"]},
                "mcpServers": {
                  "a": {"command": "a"},
                  "b": {"command": "b", "gateway": {"inheritEnv": ["LC_*", "LANG"]}}
                }}"#,
            &base(),
        )
        .unwrap();
        let s = &loaded.servers;
        // The command line's (--child-env) first, then the file's defaults, then the entry's.
        assert_eq!(s[0].child.inherit_env, ["LANG", "NODE_*"]);
        assert_eq!(s[1].child.inherit_env, ["LANG", "NODE_*", "LC_*"]);
        let e = format!(
            "{:#}",
            parse(
                r#"{"mcpServers": {"a": {"command": "x", "gateway": {"inheritEnv": ["A=B"]}}}}"#,
                &base()
            )
            .unwrap_err()
        );
        assert!(e.contains("inheritEnv") && e.contains("A=B"), "{e}");
    }

    #[test]
    fn errors_name_where_they_are() {
        let err = |text: &str| format!("{:#}", parse(text, &base()).unwrap_err());
        assert!(err("{}").contains("mcpServers"));
        assert!(err("[1").contains("at"));
        assert!(err(r#"{"mcpServers": {"a b": {"command": "x"}}}"#).contains("/servers/a b/"));
        assert!(err(r#"{"mcpServers": {"a": {"args": []}}}"#).contains("command"));
        let e = err(r#"{"mcpServers": {"a": {"command": "x", "gateway": {"backend": "pooled"}}}}"#);
        assert!(e.contains("mcpServers.a"), "{e}");
        let e =
            err(r#"{"mcpServers": {"a": {"command": "x", "gateway": {"backend": "in-process"}}}}"#);
        assert!(e.contains("own --stdio"), "{e}");
        let e = err(
            r#"{"mcpServers": {"a": {"command": "x", "gateway": {"backend": "shared", "envFromHeaders": {"X-T": "T"}}}}}"#,
        );
        assert!(e.contains("per-session"), "{e}");
        let e = err(
            r#"{"mcpServers": {"a": {"command": "x", "gateway": {"envFromHeaders": {"X-T": "1T"}}}}}"#,
        );
        assert!(e.contains("environment variable"), "{e}");
        let e = err(r#"{"mcpServers": {"a": {"command": "x", "gateway": {"colour": "red"}}}}"#);
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn groups_federate_the_files_servers() {
        let loaded = parse(
            r#"{"mcpServers": {"a": {"command": "a"}, "b": {"command": "b"},
                               "off": {"command": "o", "disabled": true}},
                "groups": {"all": {"members": "*"},
                           "pair": {"members": ["b", "a"], "prefix": "never", "separator": ".",
                                    "required": ["a"], "memberTimeout": "2s",
                                    "tools": {"deny": ["*crash"]}, "toolScopes": {"*": ["x "]}}}}"#,
            &base(),
        )
        .unwrap();
        let names: Vec<&str> = loaded.servers.iter().map(|s| s.name.as_str()).collect();
        // Groups after the servers (their members start first).
        assert_eq!(names, ["a", "b", "all", "pair"]);
        let all = loaded.servers[2].group.as_ref().unwrap();
        assert_eq!(all.members, ["a", "b"]);
        assert_eq!(
            (all.prefix, all.separator.as_str()),
            (PrefixMode::Always, "__")
        );
        assert_eq!(all.member_timeout, Duration::from_secs(5));
        let pair = &loaded.servers[3];
        assert_eq!(pair.backend, Backend::Federated);
        let g = pair.group.as_ref().unwrap();
        assert_eq!(g.members, ["b", "a"]);
        assert_eq!((g.prefix, g.separator.as_str()), (PrefixMode::Never, "."));
        assert_eq!(
            (g.required.clone(), g.member_timeout),
            (vec!["a".to_string()], Duration::from_secs(2))
        );
        assert_eq!(pair.tools.deny, ["*crash"]);
        assert_eq!(pair.tool_scopes, [("*".to_string(), vec!["x".to_string()])]);
    }

    #[test]
    fn group_errors_name_where_they_are() {
        let err = |groups: &str| {
            let text = format!(
                r#"{{"mcpServers": {{"a": {{"command": "a"}}, "off": {{"command": "o", "disabled": true}}}}, "groups": {groups}}}"#
            );
            format!("{:#}", parse(&text, &base()).unwrap_err())
        };
        for (groups, expect) in [
            (r#"{"g": {"members": ["x"]}}"#, "\"x\" is not a server"),
            (r#"{"g": {"members": ["off"]}}"#, "disabled"),
            (r#"{"g": {"members": ["a", "a"]}}"#, "twice"),
            (r#"{"g": {"members": []}}"#, "at least one"),
            (r#"{"g": {"members": "all"}}"#, "\"*\""),
            (
                r#"{"g": {"members": ["a"], "required": ["b"]}}"#,
                "not a member",
            ),
            (
                r#"{"g": {"members": ["a"], "separator": "::"}}"#,
                "separator",
            ),
            (
                r#"{"g": {"members": ["a"], "prefix": "sometimes"}}"#,
                "prefix",
            ),
            (
                r#"{"g": {"members": ["a"], "memberTimeout": "0s"}}"#,
                "above zero",
            ),
            (r#"{"a": {"members": ["a"]}}"#, "already a server"),
            (r#"{"g": {"members": ["a"], "colour": 1}}"#, "colour"),
            (r#"{"g h": {"members": ["a"]}}"#, "/servers/g h/"),
        ] {
            let e = err(groups);
            assert!(e.contains(expect), "{groups}: {e}");
            assert!(
                e.contains("groups.") || e.contains("/servers/"),
                "{groups}: {e}"
            );
        }
    }
}
