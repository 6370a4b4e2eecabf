//! The web console (`--console`), at `/console`: a login page, then an app in the browser that
//! reads JSON views of the gateway. Nothing but the login page and its two assets is served
//! without an admin credential (an API key or OAuth token with the console's scope), and that
//! credential lives only in an HttpOnly, SameSite=Strict cookie (Secure behind HTTPS), never in
//! a URL or in the page's script. Every state-changing request also carries a CSRF token that
//! only a same-origin page can read (`/console/api/me`); every answer carries a strict
//! Content-Security-Policy (no inline script, nothing from another origin).
//!
//! Owns: the console's HTTP side — login, the cookie, CSRF, its headers and assets. Must not
//! touch: backends or sessions directly (it reads the views the registry gives `/health`).

use std::{net::IpAddr, sync::Arc};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Buf;
use futures::Stream;
use rust_embed::RustEmbed;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warp::{
    http::{HeaderMap, HeaderValue, Method, StatusCode},
    reply::Response,
};

use super::{
    headers::header,
    reply::{self, error_reply, json_reply},
    state::Http,
};
use crate::gateway::oauth::ALL_SCOPES;

mod oauth;
mod sessions;

/// The cookie that holds the credential.
const COOKIE: &str = "aareguru_console";
/// The longest cookie value kept (browsers keep about 4096 bytes per cookie, name included).
const COOKIE_MAX: usize = 3900;
/// The header a state-changing request carries its CSRF token in.
const CSRF_HEADER: &str = "x-csrf-token";
/// How long a login lasts (the credential's own expiry ends it sooner).
const LOGIN_SECONDS: u32 = 12 * 3600;
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(RustEmbed)]
#[folder = "src/gateway/http/console/assets/"]
struct Assets;

/// What the login page needs: served to anyone.
const PUBLIC: [&str; 3] = ["login.html", "login.js", "console.css"];

/// Who is logged in.
struct Admin {
    subject: String,
    credential: String,
}

impl Http {
    /// A request for `/console` + `sub`.
    pub(super) async fn console(
        self: &Arc<Self>,
        method: &Method,
        sub: &str,
        query: &str,
        headers: &HeaderMap,
        client: IpAddr,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
    ) -> Response {
        if self.config.console.is_none() {
            return error_reply(StatusCode::NOT_FOUND, "not found");
        }
        let r = self.serve(method, sub, query, headers, client, body).await;
        secured(r.unwrap_or_else(|refused| refused))
    }

    /// Each arm says what it needs: nothing (the login), an admin, or an admin and the CSRF
    /// token (every state change); `Err` is the refusal.
    async fn serve(
        self: &Arc<Self>,
        method: &Method,
        sub: &str,
        query: &str,
        headers: &HeaderMap,
        client: IpAddr,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
    ) -> Result<Response, Response> {
        match (method, sub) {
            // The pages' relative links need the trailing slash.
            (&Method::GET, "") => Ok(redirect(
                StatusCode::MOVED_PERMANENTLY,
                &format!("{}/console/", self.base_path),
            )),
            (&Method::GET, "/") => Ok(match self.admin(headers, client).await {
                Ok(_) => asset("index.html"),
                // The credential may be good: its issuer cannot be asked now. The login page
                // says so (once: the page it moves to shows the login whatever happens).
                Err(r)
                    if r.status() == StatusCode::SERVICE_UNAVAILABLE
                        && !query.split('&').any(|p| p.starts_with("login_error=")) =>
                {
                    redirect(StatusCode::SEE_OTHER, "./?login_error=unavailable")
                }
                Err(_) => asset("login.html"),
            }),
            (&Method::GET, p) if p.starts_with("/assets/") => {
                let name = &p["/assets/".len()..];
                if !PUBLIC.contains(&name) {
                    self.as_admin(headers, client, false).await?;
                }
                Ok(asset(name))
            }
            // The playground's MCP client: the endpoint of a server, as the admin.
            (_, p) if p == "/mcp" || p.starts_with("/mcp/") => {
                let admin = self.as_admin(headers, client, true).await?;
                let path = match p.strip_prefix("/mcp/") {
                    Some(name) => format!("/servers/{name}/mcp"),
                    None => "/mcp".to_string(),
                };
                let mut headers = headers.clone();
                headers.remove("cookie");
                headers.remove("x-api-key");
                headers.remove(CSRF_HEADER);
                if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", admin.credential)) {
                    headers.insert("authorization", v);
                }
                // Through the front again: placement, authorization, rules and limits apply
                // as to any client.
                let again =
                    self.clone()
                        .handle(method.clone(), &path, query, headers, client, body);
                Ok(Box::pin(again).await)
            }
            (&Method::POST, "/login") => Ok(self.login(headers, client, body).await),
            (&Method::GET, "/oauth") => Ok(self.login_options()),
            (&Method::GET, "/oauth/start") => Ok(self.oauth_start().await),
            (&Method::GET, "/oauth/callback") => {
                Ok(self.oauth_callback(query, headers, client).await)
            }
            (&Method::POST, "/logout") => {
                self.as_admin(headers, client, true).await?;
                let mut r = json_reply(StatusCode::OK, json!({"ok": true}));
                set_cookie(&mut r, &self.cookie("", 0));
                Ok(r)
            }
            (&Method::GET, "/api/me") => {
                let admin = self.as_admin(headers, client, false).await?;
                let me = json!({"subject": admin.subject, "csrf": csrf_of(&admin.credential)});
                Ok(json_reply(StatusCode::OK, me))
            }
            (&Method::GET, "/api/overview") => {
                self.as_admin(headers, client, false).await?;
                Ok(json_reply(StatusCode::OK, self.overview()))
            }
            (&Method::GET, "/api/live") => {
                self.as_admin(headers, client, false).await?;
                Ok(self.live_stream())
            }
            (&Method::GET, "/api/calls") => {
                let admin = self.as_admin(headers, client, false).await?;
                Ok(self.calls_reply(headers, &admin).await)
            }
            (&Method::GET, "/api/sessions") => {
                let admin = self.as_admin(headers, client, false).await?;
                Ok(self.sessions_reply(headers, &admin).await)
            }
            (&Method::DELETE, p) if p.starts_with("/api/sessions/") => {
                let admin = self.as_admin(headers, client, true).await?;
                let id = &p["/api/sessions/".len()..];
                Ok(self.end_session_reply(id, headers, &admin).await)
            }
            (
                _,
                "" | "/" | "/api/me" | "/api/overview" | "/api/sessions" | "/api/live"
                | "/api/calls",
            ) => Ok(reply::method_not_allowed("GET")),
            (_, "/login" | "/logout") => Ok(reply::method_not_allowed("POST")),
            (_, "/oauth" | "/oauth/start" | "/oauth/callback") => {
                Ok(reply::method_not_allowed("GET"))
            }
            _ => Ok(error_reply(StatusCode::NOT_FOUND, "not found")),
        }
    }

    /// The logged-in admin (with the CSRF token when `csrf`), or the answer that refuses.
    async fn as_admin(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
        csrf: bool,
    ) -> Result<Admin, Response> {
        let admin = self.admin(headers, client).await?;
        if csrf && !csrf_ok(headers, &admin) {
            return Err(csrf_refused());
        }
        Ok(admin)
    }

    /// The logged-in admin, or the answer that says why not (401 without or with a bad
    /// credential, 403 without the console's scope).
    async fn admin(&self, headers: &HeaderMap, client: IpAddr) -> Result<Admin, Response> {
        let Some(credential) = cookie_credential(headers) else {
            return Err(error_reply(StatusCode::UNAUTHORIZED, "log in first"));
        };
        self.check(&credential, client).await.map(|subject| Admin {
            subject,
            credential,
        })
    }

    /// Checks `credential` as the MCP endpoints do (a named or the single API key, or an
    /// OAuth token) and for the console's scope; the subject it speaks for.
    async fn check(&self, credential: &str, client: IpAddr) -> Result<String, Response> {
        let scope = self
            .config
            .console
            .as_ref()
            .map_or("admin", |c| c.scope.as_str());
        let mut presented = HeaderMap::new();
        let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {credential}")) else {
            return Err(error_reply(StatusCode::UNAUTHORIZED, "not a credential"));
        };
        presented.insert("authorization", bearer);
        match self.authorize(&presented, None, "/mcp", client).await {
            Ok(Some(p)) if p.scopes.iter().any(|s| s == scope || s == ALL_SCOPES) => Ok(p.subject),
            Ok(Some(_)) => Err(error_reply(
                StatusCode::FORBIDDEN,
                &format!("this credential does not have the console's scope ({scope})"),
            )),
            // Not checked now (its issuer unreachable): a good token stays good.
            Err(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => Err(*r),
            // Without any credential configured (refused at start), or a refusal: the same
            // answer for every wrong credential.
            Ok(None) | Err(_) => Err(error_reply(
                StatusCode::UNAUTHORIZED,
                "unknown, expired or revoked credential",
            )),
        }
    }

    /// `POST /console/login` with `{"credential": "…"}` (JSON only: a cross-site form cannot
    /// send it without asking first).
    async fn login(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
    ) -> Response {
        let json = header(headers, "content-type")
            .is_some_and(|c| c.split(';').next() == Some("application/json"));
        if !json {
            return error_reply(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send {\"credential\": \"…\"} as application/json",
            );
        }
        let Ok(body) = reply::read_body(headers, body, 64 * 1024).await else {
            return error_reply(StatusCode::PAYLOAD_TOO_LARGE, "body over 64 KiB");
        };
        let credential = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["credential"].as_str().map(|c| c.trim().to_string()))
            .filter(|c| !c.is_empty());
        let Some(credential) = credential else {
            return error_reply(StatusCode::BAD_REQUEST, "send {\"credential\": \"…\"}");
        };
        let value = cookie_value(&credential);
        if value.len() > COOKIE_MAX {
            return error_reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "this credential is too long to keep in a cookie ({} bytes encoded, at most {COOKIE_MAX})",
                    value.len()
                ),
            );
        }
        match self.check(&credential, client).await {
            Ok(subject) => {
                tracing::info!(%subject, %client, "console login");
                let mut r = json_reply(
                    StatusCode::OK,
                    json!({"subject": subject, "csrf": csrf_of(&credential)}),
                );
                set_cookie(&mut r, &self.cookie(&value, LOGIN_SECONDS));
                r
            }
            Err(r) => {
                tracing::info!(%client, status = r.status().as_u16(), "console login refused");
                r
            }
        }
    }

    /// The cookie's `Set-Cookie` value (`max_age` 0: forget it).
    fn cookie(&self, value: &str, max_age: u32) -> String {
        format!(
            "{COOKIE}={value}; Path={}/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
            self.base_path,
            self.secure_attribute()
        )
    }

    /// `; Secure` behind HTTPS (the browser would not send the cookie over plain HTTP).
    fn secure_attribute(&self) -> &'static str {
        if self.config.public_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        }
    }

    /// Starts keeping the live numbers: a sample each second until `stop`.
    pub fn keep_live(self: &std::sync::Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        self.metrics.live.turn_on();
        let http = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let sample = http.metrics.live.tick(http.metrics.sessions_active.get());
                // The servers' states and the event's text only while a page watches.
                if http.live.receiver_count() == 0 {
                    continue;
                }
                let mut data = serde_json::to_value(&sample).unwrap_or_default();
                data["servers"] = http.registry.status().0;
                http.live.send_replace(Some(data.to_string().into()));
            }
        });
    }

    /// `GET /console/api/live`: an SSE stream — `history` (the last 15 minutes' samples), then
    /// a `sample` each second with the servers' states. Ends when the gateway stops.
    fn live_stream(&self) -> Response {
        let history = serde_json::to_string(&self.metrics.live.history()).unwrap_or_default();
        let mut rx = self.live.subscribe();
        rx.mark_unchanged();
        let (_, end) = self.drain.stream(true);
        let first = futures::stream::once(async move {
            Ok(warp::sse::Event::default().event("history").data(history))
        });
        let next = futures::stream::unfold((rx, end), |(mut rx, end)| async move {
            let changed = async {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            if !super::drain::Drain::waited(end.as_ref(), changed).await {
                return None;
            }
            let data = rx.borrow_and_update().clone()?;
            let event = warp::sse::Event::default().event("sample").data(&*data);
            Some((Ok(event), (rx, end)))
        });
        reply::sse_response(
            self.config.keepalive,
            futures::StreamExt::chain(first, next),
        )
    }

    /// The overview: what `/health` says (status, version, uptime, the cluster and Redis), with
    /// every server (also without a servers file).
    fn overview(&self) -> Value {
        let (_, mut view) = self.health_view();
        let (servers, failed) = self.registry.status();
        view["servers"] = servers;
        view["failed"] = failed.into();
        view["draining"] = self.is_draining().into();
        view
    }
}

/// What the cookie holds for `credential`.
fn cookie_value(credential: &str) -> String {
    URL_SAFE_NO_PAD.encode(credential.as_bytes())
}

/// A redirect to `to`.
fn redirect(status: StatusCode, to: &str) -> Response {
    let mut r = error_reply(status, "redirected");
    if let Ok(to) = HeaderValue::from_str(to) {
        r.headers_mut().insert("location", to);
    }
    r
}

/// The credential the cookie holds, if it holds one.
fn cookie_credential(headers: &HeaderMap) -> Option<String> {
    cookie_named(headers, COOKIE)
        .and_then(|value| URL_SAFE_NO_PAD.decode(value).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .filter(|c| !c.is_empty())
}

/// The value of cookie `name` (in any `Cookie` header), if the request carries it.
fn cookie_named<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// The CSRF token of a login: derived from its credential, so every replica knows it and a
/// page on another origin cannot (it cannot read `/console/api/me`).
fn csrf_of(credential: &str) -> String {
    let digest = Sha256::digest(format!("aareguru-console-csrf\0{credential}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn csrf_ok(headers: &HeaderMap, admin: &Admin) -> bool {
    let want = csrf_of(&admin.credential);
    header(headers, CSRF_HEADER)
        .is_some_and(|got| subtle::ConstantTimeEq::ct_eq(got.as_bytes(), want.as_bytes()).into())
}

fn csrf_refused() -> Response {
    error_reply(
        StatusCode::FORBIDDEN,
        "missing or wrong CSRF token (x-csrf-token)",
    )
}

fn set_cookie(r: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().append("set-cookie", v);
    }
}

/// An embedded asset, with its type.
fn asset(name: &str) -> Response {
    let Some(file) = Assets::get(name) else {
        return error_reply(StatusCode::NOT_FOUND, "not found");
    };
    let kind = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    let mut r = Response::new(file.data.into_owned().into());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(kind));
    r
}

/// The headers every console answer carries.
fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_holds_the_credential_and_nothing_else() {
        let mut h = HeaderMap::new();
        let v = URL_SAFE_NO_PAD.encode("k; ey=1");
        h.insert(
            "cookie",
            HeaderValue::from_str(&format!("other=1; {COOKIE}={v}; x=2")).unwrap(),
        );
        assert_eq!(cookie_credential(&h).as_deref(), Some("k; ey=1"));
        h.insert("cookie", HeaderValue::from_static("aareguru_console=%%%"));
        assert_eq!(cookie_credential(&h), None);
    }

    #[test]
    fn the_csrf_token_depends_on_the_credential() {
        assert_eq!(csrf_of("a"), csrf_of("a"));
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a").len(), 32);
    }
}
