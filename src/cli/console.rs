//! The console's flags (`--console`, `--console-scope`).

use crate::config::ConsoleConfig;

/// The web console (--sse).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Console (--sse)")]
pub struct ConsoleArgs {
    /// Serve the web console at /console: servers, sessions, live charts and a playground. It
    /// needs an admin credential: an API key or OAuth token with --console-scope (the single
    /// --api-key has every scope), so one of those must be configured.
    #[arg(long, env = "AAREGURU_MCP_CONSOLE")]
    pub console: bool,

    /// The scope a credential needs to use the console.
    #[arg(
        long,
        env = "AAREGURU_MCP_CONSOLE_SCOPE",
        value_name = "SCOPE",
        default_value = "admin"
    )]
    pub console_scope: String,
}

impl ConsoleArgs {
    /// The console's settings; `None` when it is off. `credentials`: whether any API key or
    /// OAuth issuer is configured (without one nobody could log in).
    pub fn config(self, credentials: bool) -> anyhow::Result<Option<ConsoleConfig>> {
        if !self.console {
            return Ok(None);
        }
        if !credentials {
            anyhow::bail!(
                "--console needs a way to log in: --api-key, --api-keys-file (or apiKeys in the servers file) or --oauth-issuer"
            );
        }
        let scope = self.console_scope.trim().to_string();
        if scope.is_empty() || scope.contains(char::is_whitespace) {
            anyhow::bail!(
                "--console-scope must be one scope, got {:?}",
                self.console_scope
            );
        }
        Ok(Some(ConsoleConfig { scope }))
    }
}
