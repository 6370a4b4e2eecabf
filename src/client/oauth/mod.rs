//! The bridge as an OAuth 2.1 client (MCP authorization): when the remote answers 401, find
//! its authorization server ([`discovery`]), get a client (pre-registered with
//! `--oauth-client-id`, a Client ID Metadata Document with `--oauth-client-metadata-url`, or
//! dynamic registration), then a token — the authorization code flow with PKCE and the
//! `resource` parameter through a loopback redirect listener and the user's browser
//! (`--oauth-browser`; the URL is printed to stderr too), the client-credentials grant for
//! machines (with a secret, or a key: [`assertion`]), or the enterprise IdP's cross-app access
//! ([`enterprise`]) — keep it per remote ([`store`]), refresh it before it expires, and step up
//! on `insufficient_scope`. The host never sees any of this: its request waits, or fails with a
//! JSON-RPC error saying why.
//!
//! Owns: the bridge's tokens. Must not touch: MCP messages.

pub mod assertion;
pub mod discovery;
mod enterprise;
mod flow;
pub mod store;

use parking_lot::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use self::{
    discovery::{Challenge, Discovered},
    store::{Saved, Store},
};
use crate::config::BridgeOAuth;

/// A token this close to its expiry is refreshed before use.
const REFRESH_AHEAD: u64 = 30;
/// How many times one request may lead to a new authorization (step-up included).
pub const MAX_ATTEMPTS: usize = 3;

pub struct OAuthClient {
    config: BridgeOAuth,
    /// Signs client assertions (`--oauth-private-key`).
    signer: Option<assertion::Signer>,
    server_url: String,
    http: reqwest::Client,
    store: Store,
    saved: Mutex<Saved>,
    /// What discovery found (kept for refreshes).
    found: Mutex<Option<Discovered>>,
    /// Scopes asked for last (grown by step-ups).
    scopes: Mutex<Option<String>>,
    /// One authorization at a time.
    flow: tokio::sync::Mutex<()>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl OAuthClient {
    /// Fails when `--oauth-private-key` cannot sign.
    pub fn new(config: BridgeOAuth, server_url: &str) -> Result<OAuthClient, String> {
        let signer = config
            .private_key
            .as_deref()
            .map(|pem| assertion::Signer::new(pem, config.signing_alg.as_deref()))
            .transpose()?;
        if let (Some(s), Some(id)) = (&signer, &config.client_id) {
            tracing::info!(client_id = %id, alg = ?s.alg(), "the OAuth client authenticates with signed JWTs (private_key_jwt)");
        }
        // Unattended (a gateway's remote member): tokens live in memory, shared by its sessions.
        let store = if config.unattended {
            Store::in_memory()
        } else {
            Store::new(config.token_dir.clone(), server_url)
        };
        let saved = store.load();
        Ok(OAuthClient {
            signer,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            server_url: server_url.to_string(),
            store,
            saved: Mutex::new(saved),
            found: Mutex::new(None),
            scopes: Mutex::new(None),
            flow: tokio::sync::Mutex::new(()),
            config,
        })
    }

    /// The access token as it is now (no refresh).
    pub fn current(&self) -> Option<String> {
        self.saved
            .lock()
            .tokens
            .as_ref()
            .map(|t| t.access_token.clone())
    }

    /// The access token to send, refreshed first when it is about to expire.
    pub async fn token(&self) -> Option<String> {
        let tokens = self.saved.lock().tokens.clone()?;
        let expiring = tokens
            .expires_at
            .is_some_and(|e| e <= now() + REFRESH_AHEAD);
        if expiring && tokens.refresh_token.is_some() {
            let _one = self.flow.lock().await;
            // Someone may have refreshed it meanwhile.
            let current = self.saved.lock().tokens.clone()?;
            if current.access_token != tokens.access_token {
                return Some(current.access_token);
            }
            match self.refresh().await {
                Ok(()) => {}
                Err(e) => {
                    tracing::info!(error = %e, "refreshing the access token failed; the next 401 starts over")
                }
            }
        }
        self.current()
    }

    /// The remote refused with `status` and this `WWW-Authenticate`: get a (better) token.
    /// `sent` is the token the refused request carried (another request may have replaced it
    /// already, then nothing is done).
    pub async fn authorize(
        &self,
        status: u16,
        www_authenticate: Option<&str>,
        sent: Option<&str>,
    ) -> Result<(), String> {
        let challenge = www_authenticate
            .map(discovery::parse_challenge)
            .unwrap_or_default();
        let _one = self.flow.lock().await;
        let current = self.saved.lock().tokens.clone();
        if current.as_ref().map(|t| t.access_token.as_str()) != sent {
            return Ok(());
        }
        if status == 403 && challenge.error.as_deref() != Some("insufficient_scope") {
            return Err("the remote refused the request (403)".into());
        }
        // An expired or revoked token with a refresh token: try that first (not for a step-up).
        if status == 401
            && current.as_ref().is_some_and(|t| t.refresh_token.is_some())
            && self.refresh().await.is_ok()
        {
            return Ok(());
        }
        let found = discovery::discover(&self.http, &self.server_url, &challenge).await?;
        let mut scope = self.scope_for(&challenge, &found, status == 403);
        // A refresh token where the authorization server offers them (for the browser flow).
        if !self.config.client_credentials
            && self.config.id_token_file.is_none()
            && found
                .server
                .scopes_supported
                .iter()
                .any(|s| s == "offline_access")
            && let Some(s) = scope.as_mut()
            && !s.split_whitespace().any(|x| x == "offline_access")
        {
            s.push_str(" offline_access");
        }
        *self.found.lock() = Some(found.clone());
        *self.scopes.lock() = scope.clone();
        let tokens = if self.config.client_credentials {
            self.client_credentials(&found, scope.as_deref()).await?
        } else if self.config.unattended {
            return Err(
                "the remote asks for OAuth and no one is here to authorize in a browser: give the gateway client credentials for it (its entry's gateway.oauth)"
                    .into(),
            );
        } else if self.config.id_token_file.is_some() {
            self.cross_app(&found, scope.as_deref()).await?
        } else {
            self.authorization_code(&found, scope.as_deref()).await?
        };
        let mut saved = self.saved.lock();
        saved.tokens = Some(tokens);
        self.store.save(&saved);
        Ok(())
    }

    /// The scopes to ask for: the challenge's, else `--oauth-scope`, else what the resource
    /// lists (none when nothing says). A step-up asks for what it had plus what is needed.
    fn scope_for(&self, c: &Challenge, found: &Discovered, step_up: bool) -> Option<String> {
        let mut scope = c
            .scope
            .clone()
            .or_else(|| (!self.config.scopes.is_empty()).then(|| self.config.scopes.join(" ")))
            .or_else(|| {
                (!found.scopes_supported.is_empty()).then(|| found.scopes_supported.join(" "))
            });
        if step_up && let Some(previous) = self.scopes.lock().clone() {
            let mut all: Vec<String> = previous.split_whitespace().map(str::to_string).collect();
            for s in scope.iter().flat_map(|s| s.split_whitespace()) {
                if !all.iter().any(|a| a == s) {
                    all.push(s.to_string());
                }
            }
            scope = Some(all.join(" "));
        }
        scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(scopes: &[&str]) -> OAuthClient {
        let dir = std::env::temp_dir().join(format!("aareguru-oauth-unit-{}", std::process::id()));
        OAuthClient::new(
            BridgeOAuth {
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                token_dir: Some(dir),
                ..BridgeOAuth::default()
            },
            "http://h/mcp",
        )
        .unwrap()
    }

    #[test]
    fn scopes_come_from_the_challenge_then_the_flags_then_the_metadata() {
        let found = Discovered {
            resource: "http://h/mcp".into(),
            scopes_supported: vec!["a".into(), "b".into()],
            server: discovery::Server::default(),
        };
        let c = client(&[]);
        let challenge = Challenge {
            scope: Some("x".into()),
            ..Challenge::default()
        };
        assert_eq!(c.scope_for(&challenge, &found, false).as_deref(), Some("x"));
        assert_eq!(
            c.scope_for(&Challenge::default(), &found, false).as_deref(),
            Some("a b")
        );
        let none = Discovered {
            scopes_supported: vec![],
            ..found.clone()
        };
        assert_eq!(c.scope_for(&Challenge::default(), &none, false), None);
        assert_eq!(
            client(&["f"])
                .scope_for(&Challenge::default(), &found, false)
                .as_deref(),
            Some("f")
        );
        *c.scopes.lock() = Some("a".into());
        let more = Challenge {
            scope: Some("a c".into()),
            ..Challenge::default()
        };
        assert_eq!(c.scope_for(&more, &found, true).as_deref(), Some("a c"));
    }
}
