//! One trusted authorization server: its metadata (RFC 8414, else OpenID discovery) and its
//! signing keys (`jwks_uri`), fetched on first use, cached, and fetched again when a token names
//! a key id not seen yet — at most once per [`REFRESH_EVERY`] (once per [`RETRY_FAILED`] after a
//! failed fetch), so a flood of forged key ids cannot make the gateway hammer the issuer.
//!
//! Owns: what the gateway knows of an issuer. Must not touch: HTTP requests to the gateway.

use parking_lot::Mutex;
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, jwk::JwkSet};
use serde_json::Value;

use super::error::TokenError;

/// Least time between two fetches of an issuer's keys.
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// Least time between a failed fetch of an issuer's keys and the next try (until then every
/// token of that issuer is answered 503).
const RETRY_FAILED: Duration = Duration::from_secs(1);
/// Keys are fetched again after this long even when every key id is known.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);

/// What the issuer's discovery document says.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// The issuer identifier, as the tokens must carry it.
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub introspection_endpoint: Option<String>,
    /// Where a browser logs in (the console's login with PKCE).
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
}

/// A signing key and the algorithm it may be used with.
struct Key {
    key: DecodingKey,
    alg: Option<Algorithm>,
    family: Family,
}

/// The kind of key, which decides which algorithms may use it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    Rsa,
    Ec,
    Okp,
    Other,
}

impl Family {
    fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Family::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Family::Ec => matches!(alg, ES256 | ES384),
            Family::Okp => matches!(alg, EdDSA),
            Family::Other => false,
        }
    }
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, std::sync::Arc<Key>>,
    /// Keys without a `kid` (tried in turn).
    anonymous: Vec<std::sync::Arc<Key>>,
    fetched: Option<Instant>,
    /// Why the last fetch failed, if it did: an unknown key is then not the token's fault.
    failed: Option<String>,
}

pub struct Issuer {
    /// As configured (no trailing slash).
    pub url: String,
    metadata: tokio::sync::OnceCell<Metadata>,
    keys: Mutex<Keys>,
    /// Serializes key fetches.
    fetching: tokio::sync::Mutex<()>,
}

impl Issuer {
    pub fn new(url: String) -> Issuer {
        Issuer {
            url,
            metadata: tokio::sync::OnceCell::new(),
            keys: Mutex::default(),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The discovery document, fetched once (a failure is retried on the next token).
    pub async fn metadata(&self, http: &reqwest::Client) -> Result<&Metadata, String> {
        self.metadata
            .get_or_try_init(|| discover(http, &self.url))
            .await
    }

    /// The key `kid` (any key when `None`) for `alg`, fetching the keys when it is not known.
    pub async fn key(
        &self,
        http: &reqwest::Client,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKeyRef, TokenError> {
        if let Some(k) = self.cached(kid, alg)? {
            return Ok(k);
        }
        let _one = self.fetching.lock().await;
        // Someone else may have fetched meanwhile.
        if let Some(k) = self.cached(kid, alg)? {
            return Ok(k);
        }
        let unknown = |failed: Option<String>| match failed {
            Some(why) => TokenError::Unavailable(format!(
                "the issuer's signing keys cannot be fetched: {why}"
            )),
            None => TokenError::Invalid(format!(
                "unknown signing key {:?} for this issuer",
                kid.unwrap_or("")
            )),
        };
        {
            let keys = self.keys.lock();
            let wait = if keys.failed.is_some() {
                RETRY_FAILED
            } else {
                REFRESH_EVERY
            };
            if keys.fetched.is_some_and(|t| t.elapsed() < wait) {
                return Err(unknown(keys.failed.clone()));
            }
        }
        let metadata = self.metadata(http).await.map_err(TokenError::Unavailable)?;
        let uri = metadata.jwks_uri.as_deref().ok_or(TokenError::Unavailable(
            "the issuer publishes no jwks_uri".into(),
        ))?;
        let fetched = fetch_keys(http, uri).await;
        let mut keys = self.keys.lock();
        keys.fetched = Some(Instant::now());
        match fetched {
            Ok(new) => {
                keys.by_kid = new.by_kid;
                keys.anonymous = new.anonymous;
                keys.failed = None;
            }
            Err(e) => {
                tracing::warn!(issuer = %self.url, error = %e, "cannot fetch the issuer's signing keys");
                keys.failed = Some(e);
            }
        }
        let failed = keys.failed.clone();
        drop(keys);
        self.cached(kid, alg)?.ok_or_else(|| unknown(failed))
    }

    fn cached(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Option<DecodingKeyRef>, TokenError> {
        let keys = self.keys.lock();
        if keys.fetched.is_some_and(|t| t.elapsed() > KEYS_MAX_AGE) {
            return Ok(None);
        }
        let candidates: Vec<&std::sync::Arc<Key>> = match kid {
            Some(k) => keys.by_kid.get(k).into_iter().collect(),
            None => keys.by_kid.values().chain(keys.anonymous.iter()).collect(),
        };
        if candidates.is_empty() {
            return Ok(None);
        }
        candidates
            .into_iter()
            .find(|k| k.family.allows(alg) && k.alg.is_none_or(|a| a == alg))
            .map(|k| Some(DecodingKeyRef(k.clone())))
            .ok_or_else(|| TokenError::Invalid(format!("the signing key does not allow {alg:?}")))
    }
}

/// A cached key, cheap to hand out.
pub struct DecodingKeyRef(std::sync::Arc<Key>);

impl DecodingKeyRef {
    pub fn key(&self) -> &DecodingKey {
        &self.0.key
    }
}

/// RFC 8414 metadata (`/.well-known/oauth-authorization-server`, inserted before the issuer's
/// path), else OpenID Connect discovery (`/.well-known/openid-configuration`, both placements).
async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Metadata, String> {
    let (origin, path) = split_origin(issuer);
    let candidates = [
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}/.well-known/openid-configuration{path}"),
        format!("{issuer}/.well-known/openid-configuration"),
    ];
    let mut last = String::new();
    for url in candidates {
        match get_json(http, &url).await {
            Ok(doc) => {
                let named = doc["issuer"].as_str().unwrap_or("").trim_end_matches('/');
                if named != issuer {
                    return Err(format!(
                        "{url} names issuer {named:?}, not the configured {issuer:?}"
                    ));
                }
                let s = |k: &str| doc[k].as_str().map(str::to_string);
                return Ok(Metadata {
                    issuer: doc["issuer"].as_str().unwrap_or(issuer).to_string(),
                    jwks_uri: s("jwks_uri"),
                    introspection_endpoint: s("introspection_endpoint"),
                    authorization_endpoint: s("authorization_endpoint"),
                    token_endpoint: s("token_endpoint"),
                });
            }
            Err(e) => last = e,
        }
    }
    Err(format!(
        "no authorization server metadata for {issuer}: {last}"
    ))
}

/// `https://as.example.com/tenant` → (`https://as.example.com`, `/tenant`).
fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, ""),
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let r = crate::resend::send(
        http.get(url).header("accept", "application/json"),
        "an authorization server request",
    )
    .await
    .map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{url}: HTTP {}", r.status().as_u16()));
    }
    r.json().await.map_err(|e| format!("{url}: {e}"))
}

async fn fetch_keys(http: &reqwest::Client, uri: &str) -> Result<Keys, String> {
    let doc = get_json(http, uri).await?;
    let set: JwkSet = serde_json::from_value(doc).map_err(|e| format!("{uri}: {e}"))?;
    let mut keys = Keys::default();
    for jwk in &set.keys {
        use jsonwebtoken::jwk::{AlgorithmParameters, KeyAlgorithm, PublicKeyUse};
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(_) => Family::Ec,
            AlgorithmParameters::OctetKeyPair(_) => Family::Okp,
            // Symmetric keys are never published for verification by anyone else.
            _ => Family::Other,
        };
        if family == Family::Other {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let alg = jwk.common.key_algorithm.and_then(|a| match a {
            KeyAlgorithm::RS256 => Some(Algorithm::RS256),
            KeyAlgorithm::RS384 => Some(Algorithm::RS384),
            KeyAlgorithm::RS512 => Some(Algorithm::RS512),
            KeyAlgorithm::PS256 => Some(Algorithm::PS256),
            KeyAlgorithm::PS384 => Some(Algorithm::PS384),
            KeyAlgorithm::PS512 => Some(Algorithm::PS512),
            KeyAlgorithm::ES256 => Some(Algorithm::ES256),
            KeyAlgorithm::ES384 => Some(Algorithm::ES384),
            KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
            _ => None,
        });
        let key = std::sync::Arc::new(Key { key, alg, family });
        match &jwk.common.key_id {
            Some(kid) => {
                keys.by_kid.insert(kid.clone(), key);
            }
            None => keys.anonymous.push(key),
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_on_a_connection_the_issuer_just_closed_is_sent_again() {
        let (base, server) = crate::test_support::hangs_up_on_reuse(r#"{"keys":[]}"#).await;
        let url = format!("{base}/jwks");
        let http = reqwest::Client::new();
        assert_eq!(
            get_json(&http, &url).await.unwrap()["keys"],
            serde_json::json!([])
        );
        assert_eq!(
            get_json(&http, &url).await.unwrap()["keys"],
            serde_json::json!([])
        );
        server.await.unwrap();
    }

    #[test]
    fn well_known_paths_go_before_the_issuers_path() {
        assert_eq!(
            split_origin("https://as.example.com/tenant/a"),
            ("https://as.example.com", "/tenant/a")
        );
        assert_eq!(
            split_origin("http://127.0.0.1:9000"),
            ("http://127.0.0.1:9000", "")
        );
    }

    #[test]
    fn key_families_allow_their_algorithms_only() {
        assert!(Family::Rsa.allows(Algorithm::RS256));
        assert!(!Family::Rsa.allows(Algorithm::HS256));
        assert!(!Family::Rsa.allows(Algorithm::ES256));
        assert!(Family::Ec.allows(Algorithm::ES256));
        assert!(Family::Okp.allows(Algorithm::EdDSA));
        assert!(!Family::Other.allows(Algorithm::HS256));
    }
}
