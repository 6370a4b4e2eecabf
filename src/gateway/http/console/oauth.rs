//! The console's login through the authorization server the gateway trusts (the first
//! `--oauth-issuer`), with PKCE (RFC 7636), as the public client `--console-client-id`:
//! `oauth/start` sends the browser there with a fresh `state` and code challenge, kept in a
//! short-lived HttpOnly cookie; `oauth/callback` checks the `state`, exchanges the code (with the
//! verifier) for an access token, checks that token for the console's scope exactly as a pasted
//! one, and keeps it in the console's cookie. The token never reaches the page's script or a URL.
//!
//! Owns: the browser login flow. Must not touch: how tokens are verified (the resource server's).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warp::{
    http::{HeaderMap, HeaderValue, StatusCode},
    reply::Response,
};

use super::{LOGIN_SECONDS, set_cookie};
use crate::gateway::http::{
    reply::{error_reply, json_reply},
    state::{Http, ResourceServer},
};

/// The cookie that carries `state` and the verifier from `start` to `callback`.
const FLOW_COOKIE: &str = "aareguru_console_flow";
/// How long a login at the authorization server may take.
const FLOW_SECONDS: u32 = 600;

/// The client, the resource server, where the browser comes back, and the resource asked for.
struct Flow<'a> {
    client_id: &'a str,
    rs: &'a ResourceServer,
    redirect: String,
    resource: String,
}

impl Http {
    /// `GET /console/oauth`: whether the login page offers the authorization server.
    pub(super) fn login_options(&self) -> Response {
        let issuer = self
            .oauth_login()
            .and(self.oauth.as_ref())
            .and_then(|rs| rs.verifier.issuers().first().map(|i| i.to_string()));
        json_reply(StatusCode::OK, json!({ "oauth": issuer }))
    }

    /// The client id when the login through the authorization server is on.
    fn oauth_login(&self) -> Option<&str> {
        self.config.console.as_ref()?.client_id.as_deref()
    }

    /// What the flow needs, when the login through the authorization server is on.
    fn flow(&self) -> Option<Flow<'_>> {
        let rs = self.oauth.as_ref()?;
        Some(Flow {
            client_id: self.oauth_login()?,
            rs,
            redirect: format!("{}/console/oauth/callback", rs.base),
            resource: format!("{}/mcp", rs.base),
        })
    }

    /// `GET /console/oauth/start`: to the authorization server.
    pub(super) async fn oauth_start(&self) -> Response {
        let Some(flow) = self.flow() else {
            return no_flow();
        };
        let endpoint = match flow.rs.verifier.login_endpoints().await {
            Ok((authorize, _)) => authorize,
            Err(e) => {
                tracing::warn!(error = %e, "console login: the authorization server's metadata");
                return back_to_login("unavailable");
            }
        };
        let state = random_token();
        let verifier = random_token();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let Ok(mut url) = reqwest::Url::parse(&endpoint) else {
            return back_to_login("unavailable");
        };
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", flow.client_id)
            .append_pair("redirect_uri", &flow.redirect)
            .append_pair("scope", &self.login_scopes())
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &flow.resource);
        let mut r = super::redirect(StatusCode::FOUND, url.as_str());
        set_cookie(
            &mut r,
            &self.flow_cookie(&format!("{state}.{verifier}"), FLOW_SECONDS),
        );
        r
    }

    /// The scopes asked for: the console's and those every token needs.
    fn login_scopes(&self) -> String {
        let mut scopes: Vec<&str> = self
            .config
            .console
            .iter()
            .map(|c| c.scope.as_str())
            .collect();
        if let Some(rs) = &self.oauth {
            for s in &rs.verifier.scopes {
                if !scopes.contains(&s.as_str()) {
                    scopes.push(s);
                }
            }
        }
        scopes.join(" ")
    }

    /// `GET /console/oauth/callback?code=…&state=…`: the token, checked, into the cookie.
    pub(super) async fn oauth_callback(
        &self,
        query: &str,
        headers: &HeaderMap,
        client: std::net::IpAddr,
    ) -> Response {
        let Some(flow) = self.flow() else {
            return no_flow();
        };
        let params: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x/?{query}"))
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default();
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let started = flow_cookie(headers);
        let Some((state, verifier)) = started.as_deref().and_then(|f| f.split_once('.')) else {
            return self.flow_ended(back_to_login("expired"));
        };
        if param("state") != Some(state) {
            tracing::info!(%client, "console login: the state does not match (a forged or stale callback)");
            return self.flow_ended(back_to_login("state"));
        }
        if let Some(e) = param("error") {
            tracing::info!(%client, error = e, "console login: the authorization server refused");
            return self.flow_ended(back_to_login("refused"));
        }
        let Some(code) = param("code") else {
            return self.flow_ended(back_to_login("refused"));
        };
        let token = match exchange(&flow, code, verifier).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(%client, error = %e, "console login: the code exchange failed");
                return self.flow_ended(back_to_login("token"));
            }
        };
        let value = super::cookie_value(&token);
        if value.len() > super::COOKIE_MAX {
            tracing::warn!(%client, bytes = value.len(), "console login: the access token is too large for a cookie");
            return self.flow_ended(back_to_login("large"));
        }
        match self.check(&token, client).await {
            Ok(subject) => {
                tracing::info!(%subject, %client, "console login through the authorization server");
                let mut r = self.flow_ended(page_to("../"));
                set_cookie(&mut r, &self.cookie(&value, LOGIN_SECONDS));
                r
            }
            Err(refused) => {
                let why = match refused.status() {
                    StatusCode::FORBIDDEN => "scope",
                    StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                    _ => "token",
                };
                tracing::info!(%client, status = refused.status().as_u16(), "console login refused");
                self.flow_ended(back_to_login(why))
            }
        }
    }

    fn flow_cookie(&self, value: &str, max_age: u32) -> String {
        // Lax, not Strict: it must come back with the authorization server's redirect.
        format!(
            "{FLOW_COOKIE}={value}; Path={}/console/oauth; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
            self.base_path,
            self.secure_attribute()
        )
    }

    fn flow_ended(&self, mut r: Response) -> Response {
        set_cookie(&mut r, &self.flow_cookie("", 0));
        r
    }
}

/// The authorization code, for an access token (public client: the verifier proves it).
async fn exchange(flow: &Flow<'_>, code: &str, verifier: &str) -> Result<String, String> {
    let (_, endpoint) = flow.rs.verifier.login_endpoints().await?;
    let request = flow
        .rs
        .verifier
        .http()
        .post(&endpoint)
        .header("accept", "application/json")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &flow.redirect),
            ("client_id", flow.client_id),
            ("code_verifier", verifier),
            ("resource", &flow.resource),
        ]);
    let r = crate::resend::send(request, "the console's code exchange")
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let status = r.status();
    let body: Value = r.json().await.map_err(|e| format!("{endpoint}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{endpoint}: HTTP {} {}",
            status.as_u16(),
            body["error"].as_str().unwrap_or("")
        ));
    }
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{endpoint}: no access_token in the answer"))
}

fn no_flow() -> Response {
    error_reply(
        StatusCode::NOT_FOUND,
        "no login through an authorization server here",
    )
}

/// 32 bytes from the system's random source (two v4 UUIDs: 244 random bits), base64url.
fn random_token() -> String {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    URL_SAFE_NO_PAD.encode([a.as_bytes().as_slice(), b.as_bytes()].concat())
}

fn flow_cookie(headers: &HeaderMap) -> Option<String> {
    super::cookie_named(headers, FLOW_COOKIE)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Back to the login page, which says what went wrong (a code, never text from the URL).
fn back_to_login(why: &str) -> Response {
    page_to(&format!("../?login_error={why}"))
}

/// A page that moves on to `to` (relative to `/console/oauth/`) at once: a navigation this
/// site starts, so the browser sends the SameSite=Strict cookie with it (a redirect from the
/// authorization server's answer would not).
fn page_to(to: &str) -> Response {
    let html = format!(
        "<!doctype html><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0; url={to}\">\
         <title>aareguru-mcp console</title><p><a href=\"{to}\">Continue to the console</a></p>"
    );
    let mut r = warp::reply::Response::new(html.into());
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_cookie_is_read_back() {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            HeaderValue::from_static("a=b; aareguru_console_flow=st.ver; c=d"),
        );
        assert_eq!(flow_cookie(&h).as_deref(), Some("st.ver"));
        h.insert("cookie", HeaderValue::from_static("aareguru_console_flow="));
        assert_eq!(flow_cookie(&h), None);
    }

    #[test]
    fn random_tokens_differ_and_fit_pkce() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        // RFC 7636: a verifier of 43 to 128 unreserved characters.
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
