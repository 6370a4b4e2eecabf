//! The servers file's `groups`: servers of the file served as one endpoint (federation).
//!
//! ```json
//! {"mcpServers": {...},
//!  "groups": {"team": {"members": ["time", "github"], "prefix": "always", "separator": "__",
//!                      "required": ["github"], "memberTimeout": "5s", "pageSize": 100},
//!             "everything": {"members": "*"}}}
//! ```
//!
//! Owns: reading a group into its [`ServerConfig`]. Must not touch: serving it.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

use super::duration::parse_duration;
use crate::{
    config::{Backend, GroupConfig, PrefixMode, ServerConfig, ToolFilter},
    mcp::names::{tool_name_byte, valid_tool_name},
};

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
/// Allow/deny globs on tool names.
pub(super) struct Tools {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    /// A tool's own name → the name clients see.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
}

impl Tools {
    /// The filter, checked: no empty glob, renames to valid tool names, no two to one name.
    pub fn filter(self) -> anyhow::Result<ToolFilter> {
        for pattern in self.allow.iter().chain(&self.deny) {
            if pattern.trim().is_empty() {
                bail!("an empty tool name in tools.allow or tools.deny");
            }
        }
        let mut targets = std::collections::BTreeSet::new();
        for (own, new) in &self.rename {
            if !valid_tool_name(own) || !valid_tool_name(new) {
                bail!(
                    "tools.rename: {own:?} → {new:?}: tool names are 1 to 128 of letters, digits, '_', '-', '.' or '/'"
                );
            }
            if !targets.insert(new.as_str()) {
                bail!("tools.rename: two tools renamed to {new:?}");
            }
        }
        Ok(ToolFilter {
            allow: self.allow,
            deny: self.deny,
            rename: self.rename.into_iter().collect(),
        })
    }
}

/// A group: `{"members": ["a", "b"] | "*", "prefix": "always", "separator": "__", ...}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GroupSpec {
    members: Members,
    #[serde(default)]
    required: Vec<String>,
    prefix: Option<PrefixMode>,
    separator: Option<String>,
    member_timeout: Option<String>,
    /// Items per page of the group's lists (default: all in one page).
    page_size: Option<usize>,
    max_sessions: Option<usize>,
    scopes: Option<Vec<String>>,
    tool_scopes: Option<BTreeMap<String, Vec<String>>>,
    /// Allow/deny globs on the group's own (namespaced) tool names.
    tools: Option<Tools>,
    /// Who may call what through the group (see [`super::rules`]).
    rules: Option<Vec<super::rules::RuleSpec>>,
    /// Tools behind a search tool (see [`super::search`]).
    tool_search: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Members {
    /// `"*"`: every server the file serves.
    All(String),
    List(Vec<String>),
}

/// The default separator between a member's name and its tool's (as Envoy AI Gateway and
/// Claude Code write `server__tool`).
pub const SEPARATOR: &str = "__";

/// One group of the file's `servers`.
pub(super) fn group(
    name: &str,
    raw: Value,
    servers: &[ServerConfig],
    base: &ServerConfig,
) -> anyhow::Result<(ServerConfig, Vec<crate::config::RuleSource>)> {
    let mut spec: GroupSpec = serde_path_to_error::deserialize(raw)
        .map_err(|e| anyhow::anyhow!("at groups.{name}.{}: {}", e.path(), e.inner()))?;
    let rules = super::rules::sources(name, spec.rules.take().unwrap_or_default())
        .with_context(|| format!("at groups.{name}"))?;
    let config = checked(name, spec, servers, base).with_context(|| format!("at groups.{name}"))?;
    Ok((config, rules))
}

fn checked(
    name: &str,
    spec: GroupSpec,
    servers: &[ServerConfig],
    base: &ServerConfig,
) -> anyhow::Result<ServerConfig> {
    if servers.iter().any(|s| s.name == name) {
        bail!("{name:?} is already a server's name; a group needs a name of its own");
    }
    let members: Vec<String> = match spec.members {
        Members::All(s) if s == "*" => servers.iter().map(|s| s.name.clone()).collect(),
        Members::All(s) => bail!("members: {s:?} — list the servers, or \"*\" for all of them"),
        Members::List(list) => list,
    };
    if members.is_empty() {
        bail!("members: a group needs at least one server");
    }
    for (i, m) in members.iter().enumerate() {
        if !servers.iter().any(|s| s.name == *m) {
            bail!(
                "members: {m:?} is not a server this file serves (disabled and remote servers are not)"
            );
        }
        if members[..i].contains(m) {
            bail!("members: {m:?} is listed twice");
        }
    }
    for r in &spec.required {
        if !members.contains(r) {
            bail!("required: {r:?} is not a member");
        }
    }
    let separator = spec.separator.unwrap_or_else(|| SEPARATOR.to_string());
    if separator.is_empty() || separator.len() > 8 || !separator.bytes().all(tool_name_byte) {
        bail!(
            "separator {separator:?}: 1 to 8 of letters, digits, '_', '-', '.' or '/' (tool names allow no others)"
        );
    }
    let member_timeout = match &spec.member_timeout {
        Some(t) => parse_duration(t).context("memberTimeout")?,
        None => std::time::Duration::from_secs(5),
    };
    if member_timeout.is_zero() {
        bail!("memberTimeout must be above zero");
    }
    let tools = spec.tools.unwrap_or_default().filter()?;
    let tool_search = super::search::optional(spec.tool_search.as_ref())?;
    let max_sessions = spec.max_sessions.unwrap_or(1024);
    if max_sessions == 0 {
        bail!("maxSessions must be at least 1");
    }
    Ok(ServerConfig {
        name: name.to_string(),
        child: base.child.clone(),
        builtin: false,
        backend: Backend::Federated,
        children: 1,
        max_sessions,
        upstream: base.upstream.clone(),
        tools,
        env_from_headers: vec![],
        prespawn: 0,
        scopes: trimmed(spec.scopes.unwrap_or_default()),
        tool_scopes: spec
            .tool_scopes
            .unwrap_or_default()
            .into_iter()
            .map(|(glob, scopes)| (glob, trimmed(scopes)))
            .collect(),
        group: Some(GroupConfig {
            members,
            required: spec.required,
            prefix: spec.prefix.unwrap_or(PrefixMode::Always),
            separator,
            member_timeout,
            page_size: spec.page_size.unwrap_or(0),
        }),
        remote: None,
        tool_search,
    })
}

pub(super) fn trimmed(scopes: Vec<String>) -> Vec<String> {
    scopes
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A server's or group's name: it becomes a path.
pub(super) fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != "..";
    if !ok {
        bail!(
            "server name {name:?}: use letters, digits, '-', '_' or '.' (it becomes the path /servers/{name}/)"
        );
    }
    Ok(())
}
