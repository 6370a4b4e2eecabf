//! `private_key_jwt` client authentication (RFC 7523, OpenID Connect Core §9): instead of a
//! secret, the client proves who it is with a short-lived JWT signed by its private key
//! (`--oauth-private-key`), whose public half the authorization server holds.
//!
//! Owns: the client's assertions. Must not touch: HTTP.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// The `client_assertion_type` of a JWT assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long an assertion is valid.
const LIFETIME: u64 = 300;

/// A private key that signs client assertions.
pub struct Signer {
    key: EncodingKey,
    alg: Algorithm,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("alg", &self.alg).finish()
    }
}

impl Signer {
    /// The key in `pem` (PKCS#8, or SEC1 EC / PKCS#1 RSA), signing with `alg` or, without it,
    /// the algorithm its kind takes (EC P-256 ES256, P-384 ES384, RSA RS256, Ed25519 EdDSA).
    /// Fails, saying why, when the key cannot sign that way.
    pub fn new(pem: &str, alg: Option<&str>) -> Result<Signer, String> {
        let pem = pem.as_bytes();
        let (key, candidates) = if let Ok(k) = EncodingKey::from_ec_pem(pem) {
            (k, vec![Algorithm::ES256, Algorithm::ES384])
        } else if let Ok(k) = EncodingKey::from_ed_pem(pem) {
            (k, vec![Algorithm::EdDSA])
        } else if let Ok(k) = EncodingKey::from_rsa_pem(pem) {
            let rsa = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];
            let pss = [Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];
            (k, rsa.into_iter().chain(pss).collect())
        } else {
            return Err(
                "the OAuth private key is not a PEM EC, Ed25519 or RSA private key".to_string(),
            );
        };
        let candidates = match alg {
            Some(name) => {
                let wanted: Algorithm = name
                    .trim()
                    .parse()
                    .map_err(|_| format!("unknown signing algorithm {name:?}"))?;
                vec![wanted]
            }
            None => candidates,
        };
        let mut last = String::new();
        for alg in candidates {
            let signer = Signer {
                key: key.clone(),
                alg,
            };
            match signer.assertion("probe", "https://probe.invalid") {
                Ok(_) => return Ok(signer),
                Err(e) => last = e,
            }
        }
        Err(format!("the OAuth private key cannot sign: {last}"))
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// A fresh assertion that `client_id` is asking `audience` (the authorization server's
    /// issuer): `iss` and `sub` the client, a unique `jti`, valid for five minutes.
    pub fn assertion(&self, client_id: &str, audience: &str) -> Result<String, String> {
        let now = super::now();
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "exp": now + LIFETIME,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        jsonwebtoken::encode(&Header::new(self.alg), &claims, &self.key)
            .map_err(|e| format!("signing the client assertion failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    // A P-256 key pair made for this test with `openssl genpkey -algorithm EC -pkeyopt
    // ec_paramgen_curve:P-256` (PKCS#8) and its public half.
    const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgi+hppa5GgUI2dR89
M8ljLVgWtC4UhJeLLRi6bug3xpOhRANCAARk+FVT8ORYPq+0mwxdp0mDwjjlgFlW
uq8U1QDnsfHW+65jEhH8PzYXase3mQBZL4SzJeb16JMJPiwpvicEXlb9
-----END PRIVATE KEY-----
";
    const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZPhVU/DkWD6vtJsMXadJg8I45YBZ
VrqvFNUA57Hx1vuuYxIR/D82F2rHt5kAWS+EsyXm9eiTCT4sKb4nBF5W/Q==
-----END PUBLIC KEY-----
";

    #[test]
    fn an_ec_key_signs_es256_assertions_naming_the_client() {
        let signer = Signer::new(EC_KEY, None).unwrap();
        assert_eq!(signer.alg(), Algorithm::ES256);
        let jwt = signer.assertion("machine-1", "https://as.example").unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["https://as.example"]);
        v.set_issuer(&["machine-1"]);
        let key = DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap();
        let claims = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &v)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "machine-1");
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
        let again = signer.assertion("machine-1", "https://as.example").unwrap();
        assert_ne!(jwt, again, "each assertion is new (jti)");
    }

    #[test]
    fn keys_that_cannot_sign_are_refused_with_a_reason() {
        let e = Signer::new("not a key", None).unwrap_err();
        assert!(e.contains("PEM"), "{e}");
        let e = Signer::new(EC_KEY, Some("RS256")).unwrap_err();
        assert!(e.contains("cannot sign"), "{e}");
        let e = Signer::new(EC_KEY, Some("XS999")).unwrap_err();
        assert!(e.contains("unknown signing algorithm"), "{e}");
    }
}
