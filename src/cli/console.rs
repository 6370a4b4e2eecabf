//! The console's flags (`--console`, `--console-scope`, `--console-client-id`).

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

    /// Log in to the console through the (first) --oauth-issuer with PKCE, as this public
    /// client (registered there with the redirect URI <public URL>/console/oauth/callback and
    /// no secret). Without it, an OAuth access token is pasted like a key.
    #[arg(long, env = "AAREGURU_MCP_CONSOLE_CLIENT_ID", value_name = "ID")]
    pub console_client_id: Option<String>,
}

impl ConsoleArgs {
    /// The console's settings; `None` when it is off. `credentials`: whether any API key or
    /// OAuth issuer is configured (without one nobody could log in); `oauth`: whether an
    /// issuer is.
    pub fn config(self, credentials: bool, oauth: bool) -> anyhow::Result<Option<ConsoleConfig>> {
        if !self.console {
            if self.console_client_id.is_some() {
                anyhow::bail!("--console-client-id is for the console: add --console");
            }
            return Ok(None);
        }
        let client_id = self.console_client_id.map(|c| c.trim().to_string());
        if client_id.is_some() && !oauth {
            anyhow::bail!(
                "--console-client-id logs in through the authorization server: add --oauth-issuer"
            );
        }
        if client_id.as_ref().is_some_and(String::is_empty) {
            anyhow::bail!("--console-client-id is empty");
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
        Ok(Some(ConsoleConfig { scope, client_id }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(console: bool, client_id: Option<&str>) -> ConsoleArgs {
        ConsoleArgs {
            console,
            console_scope: "admin".into(),
            console_client_id: client_id.map(str::to_string),
        }
    }

    #[test]
    fn the_login_through_an_authorization_server_needs_one() {
        let e = args(true, Some("console")).config(true, false).unwrap_err();
        assert!(e.to_string().contains("--oauth-issuer"), "{e}");
        let e = args(false, Some("console")).config(true, true).unwrap_err();
        assert!(e.to_string().contains("add --console"), "{e}");
        let c = args(true, Some(" console "))
            .config(true, true)
            .unwrap()
            .unwrap();
        assert_eq!(c.client_id.as_deref(), Some("console"));
        assert!(args(true, None).config(false, false).is_err());
        assert_eq!(args(false, None).config(false, false).unwrap(), None);
    }
}
