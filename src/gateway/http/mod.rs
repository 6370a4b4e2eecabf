//! The HTTP front of the gateway: which path is which endpoint, the policies every endpoint is
//! put through (composed here once), and one file per transport.
//!
//! - [`guard`]: Host/Origin (DNS rebinding), API keys, rate limits, CORS.
//! - [`sse`]: HTTP+SSE (`GET /sse`, `POST /messages`).
//! - [`streamable`]: Streamable HTTP (`/mcp`), with [`streams`] holding each session's streams.
//! - [`health`]: `/health` and `/metrics`.
//! - [`reply`]: responses and request bodies shared by the transports.
//!
//! Owns: HTTP. Must not touch: processes or backends — a transport hands messages to the
//! session table and reads what comes back from a session.

pub mod guard;
mod health;
mod reply;
mod sse;
mod state;
pub mod streamable;
mod streams;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Instant,
};

use bytes::Buf;
use futures::Stream;
use warp::{
    Filter,
    http::{HeaderMap, HeaderValue, Method, StatusCode},
    reply::Response,
};

pub use self::state::Http;
use self::{
    guard::{Policy, Refusal},
    reply::error_reply,
};
use crate::config::GatewayConfig;

/// Which endpoint a request is for.
enum Route {
    Health,
    Metrics,
    SseOpen,
    SsePost,
    McpPost,
    McpGet,
    McpDelete,
    Preflight,
    /// A known path with the wrong method; the value is the `Allow` header.
    WrongMethod(&'static str),
    NotFound,
}

impl Route {
    fn of(method: &Method, path: &str, config: &GatewayConfig) -> Route {
        let (sse, mcp) = (config.serve_sse, config.serve_mcp);
        match (method, path) {
            (&Method::GET, "/health") => Route::Health,
            (&Method::GET, "/metrics") => Route::Metrics,
            (&Method::GET, "/sse") if sse => Route::SseOpen,
            (&Method::POST, "/messages" | "/message") if sse => Route::SsePost,
            (&Method::POST, "/mcp") if mcp => Route::McpPost,
            (&Method::GET, "/mcp") if mcp => Route::McpGet,
            (&Method::DELETE, "/mcp") if mcp => Route::McpDelete,
            (&Method::OPTIONS, _) => Route::Preflight,
            (_, "/health" | "/metrics") => Route::WrongMethod("GET"),
            (_, "/sse") if sse => Route::WrongMethod("GET"),
            (_, "/messages" | "/message") if sse => Route::WrongMethod("POST"),
            (_, "/mcp") if mcp => Route::WrongMethod("GET, POST, DELETE"),
            _ => Route::NotFound,
        }
    }

    fn policy(&self) -> Policy {
        match self {
            Route::Health | Route::Preflight | Route::WrongMethod(_) | Route::NotFound => {
                Policy::Open
            }
            Route::Metrics => Policy::Metrics,
            Route::SseOpen | Route::SsePost | Route::McpPost | Route::McpGet | Route::McpDelete => {
                Policy::Client
            }
        }
    }
}

/// The warp filter serving every endpoint.
pub fn routes(
    http: Arc<Http>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  remote: Option<SocketAddr>,
                  body| {
                let http = http.clone();
                async move {
                    let client = remote.map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
                    http.handle(method, path.as_str(), &query, headers, client, body)
                        .await
                }
            },
        )
}

impl Http {
    async fn handle(
        self: Arc<Self>,
        method: Method,
        path: &str,
        query: &str,
        headers: HeaderMap,
        client: IpAddr,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
    ) -> Response {
        let path = if !self.base_path.is_empty() {
            path.strip_prefix(self.base_path.as_str())
                .filter(|p| p.starts_with('/'))
                .unwrap_or(path)
        } else {
            path
        };
        let route = Route::of(&method, path, &self.config);
        let response = match self.guard.admit(route.policy(), &headers, client) {
            Err(refusal) => self.refuse(refusal, client),
            Ok(()) => self.dispatch(route, query, &headers, client, body).await,
        };
        self.with_cors(&headers, response)
    }

    async fn dispatch(
        self: &Arc<Self>,
        route: Route,
        query: &str,
        headers: &HeaderMap,
        client: IpAddr,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
    ) -> Response {
        match route {
            Route::Health => self.health(),
            Route::Metrics => self.metrics_reply(),
            Route::SseOpen => self.open_stream(client),
            Route::SsePost => {
                let started = Instant::now();
                let r = self.post(query, headers, body).await;
                self.metrics
                    .post_duration
                    .observe(started.elapsed().as_secs_f64());
                r
            }
            Route::McpPost => {
                let started = Instant::now();
                let r = self.mcp_post(headers, client, body).await;
                self.metrics
                    .post_duration
                    .observe(started.elapsed().as_secs_f64());
                r
            }
            Route::McpGet => self.mcp_get(headers),
            Route::McpDelete => self.mcp_delete(headers),
            Route::Preflight => self.preflight(headers),
            Route::WrongMethod(allow) => reply::method_not_allowed(allow),
            Route::NotFound => error_reply(StatusCode::NOT_FOUND, self.not_found_hint()),
        }
    }

    /// CORS headers on every answer to an allowed origin.
    fn with_cors(&self, headers: &HeaderMap, mut response: Response) -> Response {
        if let Some(origin) = self.guard.cors_allow(headers) {
            let h = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&origin) {
                h.insert("access-control-allow-origin", v);
                h.insert("vary", HeaderValue::from_static("Origin"));
                h.insert(
                    "access-control-expose-headers",
                    HeaderValue::from_static("mcp-session-id"),
                );
            }
        }
        response
    }

    /// The answer to a refused request.
    fn refuse(&self, refusal: Refusal, client: IpAddr) -> Response {
        self.metrics.reject(refusal.reason());
        tracing::debug!(%client, reason = refusal.reason(), "request refused");
        match refusal {
            Refusal::Host => error_reply(
                StatusCode::MISDIRECTED_REQUEST,
                "Host not allowed; add it with --allowed-host",
            ),
            Refusal::Origin => error_reply(
                StatusCode::FORBIDDEN,
                "Origin not allowed; add it with --allowed-origin",
            ),
            Refusal::Auth => {
                let mut r = error_reply(
                    StatusCode::UNAUTHORIZED,
                    "missing or invalid API key; send X-API-Key or Authorization: Bearer",
                );
                r.headers_mut()
                    .insert("www-authenticate", HeaderValue::from_static("Bearer"));
                r
            }
            Refusal::RateLimited(secs) => {
                let mut r = error_reply(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from(secs));
                r
            }
        }
    }

    fn not_found_hint(&self) -> &'static str {
        match (self.config.serve_mcp, self.config.serve_sse) {
            (true, true) => {
                "not found; MCP clients connect to /mcp (Streamable HTTP) or /sse (HTTP+SSE)"
            }
            (true, false) => "not found; MCP clients connect to /mcp (Streamable HTTP)",
            (false, _) => "not found; MCP clients connect to /sse (HTTP+SSE)",
        }
    }

    fn preflight(&self, headers: &HeaderMap) -> Response {
        let Some(origin) = self.guard.cors_allow(headers) else {
            return error_reply(StatusCode::FORBIDDEN, "CORS is not enabled for this origin");
        };
        let mut r = reply::reply(StatusCode::NO_CONTENT, String::new());
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&origin) {
            h.insert("access-control-allow-origin", v);
        }
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        h.insert(
            "access-control-allow-headers",
            HeaderValue::from_static(
                "content-type, accept, authorization, x-api-key, last-event-id, mcp-session-id, mcp-protocol-version",
            ),
        );
        h.insert("access-control-max-age", HeaderValue::from_static("600"));
        r
    }
}
