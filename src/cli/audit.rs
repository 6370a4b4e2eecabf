//! The audit log's flags (`--audit-log PATH|-`) and their checks.

use anyhow::bail;

use crate::config::AuditConfig;

/// Audit log flags: one JSON line per `tools/call`, `prompts/get` and `resources/read`.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Audit log (--sse)")]
pub struct AuditArgs {
    /// Write one JSON line per tools/call, prompts/get and resources/read (who, what, outcome,
    /// duration, bytes, a SHA-256 of the arguments) to this file, rotated by size, or `-` for
    /// standard error. Writing never holds a call up (lines beyond a full queue are dropped and
    /// counted in /metrics).
    #[arg(
        long = "audit-log",
        env = "AAREGURU_MCP_AUDIT_LOG",
        value_name = "PATH|-"
    )]
    pub audit_log: Option<String>,

    /// Rotate the audit log file once it holds more than this many bytes.
    #[arg(
        long,
        env = "AAREGURU_MCP_AUDIT_LOG_MAX_BYTES",
        value_name = "BYTES",
        default_value_t = 100 * 1024 * 1024
    )]
    pub audit_log_max_bytes: u64,

    /// Rotated audit log files to keep (FILE.0 the newest).
    #[arg(long, env = "AAREGURU_MCP_AUDIT_LOG_KEEP", default_value_t = 5)]
    pub audit_log_keep: usize,

    /// Also record each call's arguments (values of --audit-redact keys replaced).
    #[arg(long, env = "AAREGURU_MCP_AUDIT_ARGUMENTS")]
    pub audit_arguments: bool,

    /// Argument keys whose values the audit log never shows, comma-separated; a key matches
    /// when it contains one, case and `_`/`-` ignored (`access_token` matches `token`).
    #[arg(
        long,
        env = "AAREGURU_MCP_AUDIT_REDACT",
        value_delimiter = ',',
        default_value = "password,passwd,secret,token,apikey,authorization,cookie,credential,privatekey"
    )]
    pub audit_redact: Vec<String>,
}

impl AuditArgs {
    pub fn config(self) -> anyhow::Result<Option<AuditConfig>> {
        let Some(target) = self.audit_log.map(|t| t.trim().to_string()) else {
            return Ok(None);
        };
        if target.is_empty() {
            bail!("--audit-log needs a file, or - for standard error");
        }
        if self.audit_log_max_bytes < 4096 {
            bail!("--audit-log-max-bytes must be at least 4096");
        }
        Ok(Some(AuditConfig {
            file: (target != "-").then(|| target.into()),
            max_bytes: self.audit_log_max_bytes,
            keep: self.audit_log_keep.max(1),
            arguments: self.audit_arguments,
            redact: self
                .audit_redact
                .iter()
                .map(|k| crate::gateway::audit::normalized_key(k))
                .filter(|k| !k.is_empty())
                .collect(),
        }))
    }
}
