//! The OAuth resource-server flags (`--oauth-issuer`, `--oauth-audience`, `--oauth-scope`,
//! `--oauth-client-id`/`--oauth-client-secret`), checked into an [`OAuthConfig`].
//!
//! Owns: those flags' checks. Must not touch: verifying tokens.

use anyhow::bail;

use crate::config::OAuthConfig;

pub(super) fn oauth_config(
    issuers: Vec<String>,
    audiences: Vec<String>,
    scopes: Vec<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> anyhow::Result<Option<OAuthConfig>> {
    let clean = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let issuers = clean(issuers);
    if issuers.is_empty() {
        if !audiences.is_empty() || !scopes.is_empty() || client_id.is_some() {
            bail!("--oauth-audience, --oauth-scope and --oauth-client-id need --oauth-issuer");
        }
        return Ok(None);
    }
    for i in &issuers {
        if !(i.starts_with("https://") || i.starts_with("http://")) {
            bail!("--oauth-issuer must be an http(s) URL, got {i:?}");
        }
    }
    let introspection = match (client_id, client_secret) {
        (Some(id), Some(secret)) => Some((id, secret)),
        (None, None) => None,
        _ => bail!("--oauth-client-id and --oauth-client-secret go together"),
    };
    Ok(Some(OAuthConfig {
        issuers,
        audiences: clean(audiences),
        scopes: scopes
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        introspection,
    }))
}
