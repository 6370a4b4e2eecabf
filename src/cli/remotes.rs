//! Remote servers in the servers file, as Claude Code, VS Code and Cursor write them:
//! `{"type": "http" | "sse", "url": …, "headers": {…}}` (Cursor leaves `type` out). `${VAR}`,
//! `${env:VAR}` and `${VAR:-default}` in the URL and the headers are taken from the gateway's
//! environment when the file is read (a variable that is not set is an error naming it; values
//! are never logged). `"gateway": {"oauth": {"clientId", "clientSecret" | "privateKey",
//! "scopes"}}` lets the gateway get its own token from the remote's authorization server
//! (client credentials; with `privateKey`, a PEM file, it authenticates with JWTs it signs:
//! `private_key_jwt`).
//!
//! Owns: reading a remote entry into a [`RemoteConfig`]. Must not touch: serving it.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Deserialize;

use crate::config::{RemoteConfig, TransportChoice};

/// `gateway.oauth` of a remote entry.
#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct OAuthSpec {
    client_id: String,
    client_secret: Option<String>,
    /// A PEM file with the client's private key (`private_key_jwt`).
    private_key: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// The remote entry `kind` (its `type`) at `url` with `headers`.
pub(super) fn remote(
    kind: Option<&str>,
    url: Option<&str>,
    headers: &BTreeMap<String, String>,
    oauth: Option<OAuthSpec>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<RemoteConfig> {
    let transport = match kind {
        None => TransportChoice::Auto,
        Some("http" | "streamable-http" | "streamableHttp") => TransportChoice::StreamableHttp,
        Some("sse") => TransportChoice::Sse,
        Some(other) => {
            bail!("type {other:?}: the gateway serves \"stdio\", \"http\" and \"sse\" servers")
        }
    };
    let Some(url) = url else {
        bail!(
            "\"url\" is missing (a {:?} server)",
            kind.unwrap_or("remote")
        );
    };
    let url = expand(url, env).map_err(|e| anyhow::anyhow!("url: {e}"))?;
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => bail!("url: {url:?} is not an http(s) URL"),
    }
    let mut expanded = vec![];
    for (k, v) in headers {
        if warp::http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            bail!("headers: {k:?} is not a header name");
        }
        let v = expand(v, env).map_err(|e| anyhow::anyhow!("headers.{k}: {e}"))?;
        if warp::http::HeaderValue::from_str(&v).is_err() {
            bail!("headers.{k}: the value is not a valid header value");
        }
        expanded.push((k.clone(), v));
    }
    let (client_id, client_secret, private_key, scopes) = match oauth {
        Some(o) => {
            let secret = match &o.client_secret {
                Some(s) => Some(
                    expand(s, env)
                        .map_err(|e| anyhow::anyhow!("gateway.oauth.clientSecret: {e}"))?,
                ),
                None => None,
            };
            let key = match &o.private_key {
                Some(path) => Some(private_key(path, env)?),
                None => None,
            };
            if secret.is_some() && key.is_some() {
                bail!("gateway.oauth: give clientSecret or privateKey, not both");
            }
            (Some(o.client_id), secret, key, o.scopes)
        }
        None => (None, None, None, vec![]),
    };
    Ok(RemoteConfig {
        url,
        transport,
        headers: expanded,
        client_id,
        client_secret,
        private_key,
        scopes,
    })
}

/// The PEM at `path` (`${VAR}` taken from the environment), checked to be a key that signs.
fn private_key(path: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let path = expand(path, env).map_err(|e| anyhow::anyhow!("gateway.oauth.privateKey: {e}"))?;
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("gateway.oauth.privateKey: cannot read {path:?}: {e}"))?;
    crate::client::check_private_key(&pem)
        .map_err(|e| anyhow::anyhow!("gateway.oauth.privateKey: {path:?}: {e}"))?;
    Ok(pem)
}

/// `text` with `${VAR}`, `${env:VAR}` and `${VAR:-default}` replaced from `env`.
fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            return Err("an unclosed \"${\"".into());
        };
        let inner = &rest[start + 2..start + len];
        let inner = inner.strip_prefix("env:").unwrap_or(inner);
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (env(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "the variable {name} is not set in the gateway's environment"
                ));
            }
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "HOST" => Some("mcp.example.com".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_are_taken_from_the_environment() {
        assert_eq!(expand("Bearer ${TOKEN}", &env).unwrap(), "Bearer s3cret");
        assert_eq!(
            expand("${env:TOKEN}-${X:-dflt}", &env).unwrap(),
            "s3cret-dflt"
        );
        assert_eq!(expand("plain", &env).unwrap(), "plain");
        let e = expand("Bearer ${NOPE}", &env).unwrap_err();
        assert!(e.contains("NOPE") && !e.contains("s3cret"), "{e}");
        assert!(expand("${TOKEN", &env).is_err());
    }

    #[test]
    fn entries_as_hosts_write_them() {
        let headers =
            BTreeMap::from([("Authorization".to_string(), "Bearer ${TOKEN}".to_string())]);
        let r = remote(
            Some("http"),
            Some("https://${HOST}/mcp"),
            &headers,
            None,
            &env,
        )
        .unwrap();
        assert_eq!(r.url, "https://mcp.example.com/mcp");
        assert_eq!(r.transport, TransportChoice::StreamableHttp);
        assert_eq!(
            r.headers,
            [("Authorization".into(), "Bearer s3cret".into())]
        );
        // Secrets stay out of logs.
        assert!(!format!("{r:?}").contains("s3cret"));
        let r = remote(
            None,
            Some("http://127.0.0.1:9/sse"),
            &BTreeMap::new(),
            None,
            &env,
        )
        .unwrap();
        assert_eq!(r.transport, TransportChoice::Auto);
        assert!(remote(Some("ws"), Some("http://x"), &BTreeMap::new(), None, &env).is_err());
        assert!(remote(Some("http"), None, &BTreeMap::new(), None, &env).is_err());
        assert!(remote(Some("http"), Some("ftp://x"), &BTreeMap::new(), None, &env).is_err());
    }
}
