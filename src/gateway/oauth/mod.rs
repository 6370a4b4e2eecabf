//! The gateway as an OAuth 2.1 resource server: which access tokens it accepts.
//!
//! - A JWT access token is accepted when it is signed (RS/PS/ES/EdDSA — never `none` or HMAC,
//!   whose "key" would be public) by a key its issuer publishes, its issuer is one of
//!   `--oauth-issuer`, it has not expired (and is already valid: `nbf`), with [`LEEWAY`] for
//!   clock skew, and its audience names this server (RFC 8707).
//! - Any other token is introspected (RFC 7662) at its issuer when client credentials for that
//!   are configured; active answers are cached briefly.
//! - What is accepted becomes a [`Principal`]: the subject and the scopes.
//!
//! Owns: deciding whether a token is good. Must not touch: HTTP requests or sessions.

mod error;
mod introspect;
mod issuer;

use parking_lot::Mutex;

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde_json::Value;

pub use self::error::TokenError;
use self::issuer::Issuer;
use crate::config::OAuthConfig;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY: u64 = 60;

/// The scope of a principal allowed everything (an API key's).
pub const ALL_SCOPES: &str = "*";

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// `sub`, else the client id.
    pub subject: String,
    pub scopes: Vec<String>,
    /// The verified token's claims (`Null` for an API key), for the rules.
    pub claims: std::sync::Arc<Value>,
    /// The named API key presented instead of a token.
    pub key: Option<std::sync::Arc<crate::gateway::caller::KeyInfo>>,
}

impl Principal {
    /// The scopes of `required` this principal lacks (none for [`ALL_SCOPES`]).
    pub fn missing<'a>(&self, required: &'a [String]) -> Vec<&'a str> {
        if self.scopes.iter().any(|s| s == ALL_SCOPES) {
            return vec![];
        }
        required
            .iter()
            .filter(|s| !self.scopes.contains(s))
            .map(String::as_str)
            .collect()
    }
}

pub struct Verifier {
    issuers: Vec<Issuer>,
    /// `--oauth-audience` (empty: the caller says which audiences).
    pub audiences: Vec<String>,
    /// Scopes every token needs.
    pub scopes: Vec<String>,
    http: reqwest::Client,
    introspection: Option<(String, String)>,
    introspected: Mutex<introspect::Cache>,
}

impl Verifier {
    pub fn new(config: &OAuthConfig) -> Verifier {
        Verifier {
            issuers: config.issuers.iter().cloned().map(Issuer::new).collect(),
            audiences: config.audiences.clone(),
            scopes: config.scopes.clone(),
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            introspection: config.introspection.clone(),
            introspected: Mutex::default(),
        }
    }

    /// The first trusted issuer's authorization and token endpoints (the console's login).
    pub async fn login_endpoints(&self) -> Result<(String, String), String> {
        let issuer = self.issuers.first().ok_or("no issuer configured")?;
        let m = issuer.metadata(&self.http).await?;
        match (&m.authorization_endpoint, &m.token_endpoint) {
            (Some(a), Some(t)) => Ok((a.clone(), t.clone())),
            _ => Err(format!(
                "{} names no authorization_endpoint or token_endpoint",
                issuer.url
            )),
        }
    }

    /// The client the gateway reaches its issuers with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The trusted issuers, as configured.
    pub fn issuers(&self) -> Vec<&str> {
        self.issuers.iter().map(|i| i.url.as_str()).collect()
    }

    /// The token's principal if it is good for one of `audiences`; else why not (for the
    /// client: says nothing about keys or the gateway's configuration beyond what it sent).
    pub async fn verify(&self, token: &str, audiences: &[String]) -> Result<Principal, TokenError> {
        let token = token.trim();
        if token.split('.').count() != 3 {
            return self.introspect(token, audiences).await;
        }
        let header = decode_header(token).map_err(|_| {
            TokenError::invalid("malformed or unsigned token (alg \"none\" is refused)")
        })?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(TokenError::invalid("HMAC-signed tokens are refused"));
        }
        let claims =
            unverified_claims(token).ok_or(TokenError::invalid("malformed token payload"))?;
        let iss = claims["iss"].as_str().unwrap_or("").trim_end_matches('/');
        let issuer = self.issuers.iter().find(|i| i.url == iss).ok_or_else(|| {
            TokenError::invalid("token from an issuer this server does not trust")
        })?;
        let metadata = issuer
            .metadata(&self.http)
            .await
            .map_err(TokenError::Unavailable)?;
        let key = issuer
            .key(&self.http, header.kid.as_deref(), header.alg)
            .await?;
        let mut v = Validation::new(header.alg);
        v.leeway = LEEWAY;
        v.validate_nbf = true;
        v.set_issuer(&[&metadata.issuer]);
        v.set_audience(audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data =
            decode::<Value>(token, key.key(), &v).map_err(|e| TokenError::Invalid(describe(&e)))?;
        principal(&data.claims).map_err(TokenError::Invalid)
    }
}

/// A token's claims before its signature is checked (only to pick the issuer).
fn unverified_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind::*;
    match e.kind() {
        ExpiredSignature => "the token has expired".into(),
        ImmatureSignature => "the token is not valid yet (nbf)".into(),
        InvalidAudience => "the token is not meant for this server (aud)".into(),
        InvalidIssuer => "the token's issuer does not match".into(),
        InvalidSignature => "the token's signature does not verify".into(),
        MissingRequiredClaim(c) => format!("the token has no {c:?} claim"),
        InvalidAlgorithm => "the token's algorithm does not match its key".into(),
        _ => "the token cannot be verified".into(),
    }
}

/// Subject and scopes from verified claims (`scope` as a space-separated string, or `scp`).
fn principal(claims: &Value) -> Result<Principal, String> {
    let subject = claims["sub"]
        .as_str()
        .or_else(|| claims["client_id"].as_str())
        .ok_or("the token names no subject")?
        .to_string();
    let scopes = match (&claims["scope"], &claims["scp"]) {
        (Value::String(s), _) => s.split_whitespace().map(str::to_string).collect(),
        (_, Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        (_, Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => vec![],
    };
    Ok(Principal {
        subject,
        scopes,
        claims: std::sync::Arc::new(claims.clone()),
        key: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn subject_and_scopes_come_from_the_usual_claims() {
        let p = principal(&json!({"sub": "alice", "scope": "mcp:tools  mcp:admin"})).unwrap();
        assert_eq!(p.subject, "alice");
        assert_eq!(p.scopes, ["mcp:tools", "mcp:admin"]);
        let p = principal(&json!({"client_id": "machine", "scp": ["a", "b"]})).unwrap();
        assert_eq!((p.subject.as_str(), p.scopes.len()), ("machine", 2));
        assert!(principal(&json!({"scope": "a"})).is_err());
        let required = vec!["a".to_string(), "c".to_string()];
        assert_eq!(p.missing(&required), ["c"]);
    }

    #[test]
    fn the_issuer_is_read_before_the_signature_is_checked() {
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let token = format!(
            "{}.{}.sig",
            b64(&json!({"alg": "RS256"})),
            b64(&json!({"iss": "https://as.example"}))
        );
        assert_eq!(
            unverified_claims(&token).unwrap()["iss"],
            "https://as.example"
        );
        assert_eq!(unverified_claims("a.!!!.c"), None);
    }
}
