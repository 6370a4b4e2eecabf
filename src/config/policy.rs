//! Who may call what, and the record of it: the settings of the rules, named keys, limits per
//! caller and the audit log (plain data, like the rest of [`crate::config`]).
//!
//! Owns: the shape of those settings. Must not touch: anything outside `config`.

use std::{collections::BTreeMap, time::Duration};

/// Where and how the audit log is written (`file`: `None` for stderr; rotated past
/// `max_bytes`, `keep` files kept; `arguments` redacted by the normalized `redact` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    pub file: Option<std::path::PathBuf>,
    pub max_bytes: u64,
    pub keep: usize,
    pub arguments: bool,
    pub redact: Vec<String>,
}

/// The web console (`--console`): the scope a credential needs to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    pub scope: String,
    /// `--console-client-id`: log in through the authorization server with PKCE.
    pub client_id: Option<String>,
}

/// A limit of the servers file's `gateway.limits`: per subject (or API key name), on the calls
/// to servers and tools matching its globs (none: all), a rate (`burst` calls, refilled at one
/// per `period`) and/or a number of calls at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSource {
    pub name: String,
    pub per_key: bool,
    pub servers: Vec<String>,
    pub tools: Vec<String>,
    pub rate: Option<(u32, Duration)>,
    pub concurrent: Option<u32>,
}

/// A rule's verdict when its expression is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One rule of a servers file (`rules`): a CEL expression over the caller and the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSource {
    /// The rule's name in logs, errors and metrics.
    pub name: String,
    pub effect: Effect,
    pub expr: String,
}

/// How a call the rules deny is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeniedAs {
    /// As if the tool, prompt or resource did not exist (the caller learns nothing).
    #[default]
    Unknown,
    /// A clear error naming the rule.
    Error,
}

/// The servers file's rules: gateway-wide, and per server or group (by name). They change with
/// the file without restarting anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    pub gateway: Vec<RuleSource>,
    pub servers: BTreeMap<String, Vec<RuleSource>>,
    /// Request headers the rules may read (`request.headers`), in lower case.
    pub headers: Vec<String>,
    pub denied: DeniedAs,
    /// The servers file's `gateway.apiKeys` (`None`: it has none).
    pub keys: Option<Vec<KeySource>>,
    pub limits: Vec<LimitSource>,
}

/// A named API key as a keys file (or the servers file) declares it: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    pub name: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    pub scopes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Seconds since the epoch from which it is refused.
    pub expires: Option<i64>,
}
