//! Opaque access tokens: asked about at the issuer's introspection endpoint (RFC 7662) with the
//! gateway's client credentials. An active answer must name this server as audience, the
//! issuer (when it says) and a future expiry; it is cached until the token expires or for
//! [`CACHE_FOR`], whichever comes first.
//!
//! Owns: introspection. Must not touch: JWTs (the verifier checks those itself).

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use super::{LEEWAY, Principal, TokenError, Verifier, principal};

/// Longest time an introspection answer is trusted without asking again.
const CACHE_FOR: Duration = Duration::from_secs(60);
/// Most answers cached; the cache is emptied when full.
const CACHE_MAX: usize = 10_000;

#[derive(Default)]
pub(super) struct Cache {
    answers: HashMap<String, (Principal, Vec<String>, Instant)>,
}

impl Verifier {
    pub(super) async fn introspect(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Principal, TokenError> {
        let Some((id, secret)) = &self.introspection else {
            return Err(TokenError::invalid("not a JWT access token"));
        };
        if let Some(p) = self.cached(token, audiences) {
            return Ok(p);
        }
        let mut last = "no issuer offers token introspection".to_string();
        // An issuer that could not be asked may be the token's: then nobody said it is bad.
        let mut unavailable = None;
        for issuer in &self.issuers {
            let metadata = match issuer.metadata(&self.http).await {
                Ok(m) => m,
                Err(e) => {
                    unavailable = Some(e);
                    continue;
                }
            };
            let Some(endpoint) = &metadata.introspection_endpoint else {
                continue;
            };
            let answer = crate::resend::send(
                self.http
                    .post(endpoint)
                    .basic_auth(id, Some(secret))
                    .form(&[("token", token), ("token_type_hint", "access_token")]),
                "a token introspection",
            )
            .await;
            let answer: Value = match answer {
                Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
                Ok(r) => {
                    unavailable = Some(format!(
                        "introspection answered HTTP {}",
                        r.status().as_u16()
                    ));
                    continue;
                }
                Err(e) => {
                    unavailable = Some(format!("introspection failed: {e}"));
                    continue;
                }
            };
            if answer["active"] != true {
                last = "the token is not active".into();
                continue;
            }
            if let Some(iss) = answer["iss"].as_str()
                && iss.trim_end_matches('/') != metadata.issuer.trim_end_matches('/')
            {
                last = "the token's issuer does not match".into();
                continue;
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let exp = answer["exp"].as_u64();
            if exp.is_some_and(|e| e + LEEWAY < now) {
                return Err(TokenError::invalid("the token has expired"));
            }
            let aud: Vec<String> = match &answer["aud"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => vec![],
            };
            if !aud.iter().any(|a| audiences.contains(a)) {
                return Err(TokenError::invalid(
                    "the token is not meant for this server (aud)",
                ));
            }
            let p = principal(&answer).map_err(TokenError::Invalid)?;
            let ttl = exp.map_or(CACHE_FOR, |e| {
                Duration::from_secs(e.saturating_sub(now)).min(CACHE_FOR)
            });
            let mut cache = self.introspected.lock();
            if cache.answers.len() >= CACHE_MAX {
                cache.answers.clear();
            }
            cache
                .answers
                .insert(token.to_string(), (p.clone(), aud, Instant::now() + ttl));
            return Ok(p);
        }
        Err(match unavailable {
            Some(why) => TokenError::Unavailable(why),
            None => TokenError::Invalid(last),
        })
    }

    fn cached(&self, token: &str, audiences: &[String]) -> Option<Principal> {
        let cache = self.introspected.lock();
        let (p, aud, until) = cache.answers.get(token)?;
        (Instant::now() < *until && aud.iter().any(|a| audiences.contains(a))).then(|| p.clone())
    }
}
