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

mod console;
pub mod drain;
mod forward;
pub mod guard;
mod headers;
mod health;
mod modern;
mod oauth;
mod replicas;
mod reply;
mod served;
mod sse;
mod state;
pub mod streamable;
mod streams;
mod traced;

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
    forward::ForwardFailure,
    guard::{Policy, Refusal},
    replicas::{Bearer, Place},
    reply::error_reply,
};
use crate::{
    config::GatewayConfig,
    gateway::cluster::entry::Peer,
    telemetry::earlier::{self, Timer},
};

/// Where a request not placed here goes.
enum Forwarding<'a> {
    /// The replica holding its session, presenting the cluster secret.
    Holder(&'a Peer, &'a str),
    /// Each of these in turn, until one holds its session (the directory could not say).
    Ask(&'a [Peer], &'a str),
}

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
    /// `/.well-known/oauth-protected-resource[/…]` (with OAuth on).
    ProtectedResource,
    /// `/console` and below (`--console`).
    Console,
    /// A known path with the wrong method; the value is the `Allow` header.
    WrongMethod(&'static str),
    NotFound,
}

impl Route {
    fn of(method: &Method, path: &str, config: &GatewayConfig) -> Route {
        let (sse, mcp) = (config.serve_sse, config.serve_mcp);
        match (method, path) {
            (&Method::GET, "/health") => Route::Health,
            (&Method::GET, p)
                if config.oauth.is_some()
                    && (p == oauth::METADATA_PATH
                        || p.starts_with(&format!("{}/", oauth::METADATA_PATH))) =>
            {
                Route::ProtectedResource
            }
            (&Method::GET, "/metrics") => Route::Metrics,
            (&Method::GET, "/sse") if sse => Route::SseOpen,
            (&Method::POST, "/messages" | "/message") if sse => Route::SsePost,
            (&Method::POST, "/mcp") if mcp => Route::McpPost,
            (&Method::GET, "/mcp") if mcp => Route::McpGet,
            (&Method::DELETE, "/mcp") if mcp => Route::McpDelete,
            (_, p)
                if config.console.is_some() && (p == "/console" || p.starts_with("/console/")) =>
            {
                Route::Console
            }
            (&Method::OPTIONS, _) => Route::Preflight,
            (_, "/health" | "/metrics") => Route::WrongMethod("GET"),
            (_, "/sse") if sse => Route::WrongMethod("GET"),
            (_, "/messages" | "/message") if sse => Route::WrongMethod("POST"),
            (_, "/mcp") if mcp => Route::WrongMethod("GET, POST, DELETE"),
            _ => Route::NotFound,
        }
    }

    /// The kind of session-bearing request (placed in the cluster before it is handled).
    fn bearer(&self) -> Option<Bearer> {
        match self {
            Route::SsePost => Some(Bearer::SsePost),
            Route::McpPost => Some(Bearer::McpPost),
            Route::McpGet => Some(Bearer::McpGet),
            Route::McpDelete => Some(Bearer::McpDelete),
            _ => None,
        }
    }

    fn policy(&self) -> Policy {
        match self {
            Route::Health
            | Route::Preflight
            | Route::ProtectedResource
            | Route::WrongMethod(_)
            | Route::NotFound => Policy::Open,
            Route::Metrics => Policy::Metrics,
            Route::Console => Policy::Console,
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
                    let _in_flight = http.drain.enter();
                    let client = remote.map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
                    let response = http
                        .clone()
                        .handle(method, path.as_str(), &query, headers, client, body)
                        .await;
                    http.drain.mark(response)
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
        let (server, endpoint) = served::split_server(path);
        let route = match Route::of(&method, endpoint, &self.config) {
            // Below /servers/<name>/ are the MCP endpoints only.
            Route::Health | Route::Metrics if server.is_some() => Route::NotFound,
            r => r,
        };
        // A request another replica forwarded is trusted only with the cluster's secret.
        let forwarded = match headers.get(forward::PEER_HEADER) {
            None => false,
            Some(v)
                if self
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.verify_peer(v.as_bytes())) =>
            {
                true
            }
            Some(_) => {
                self.metrics.reject("cluster_secret");
                tracing::warn!(%client, "a request presented a wrong cluster secret; refused");
                let r = error_reply(StatusCode::FORBIDDEN, "wrong cluster credentials");
                return self.with_cors(&headers, r);
            }
        };
        let policy = match route.policy() {
            Policy::Client if forwarded => Policy::Peer,
            p => p,
        };
        if let Err(refusal) = self.guard.admit(policy, &headers, client) {
            let r = self.refuse(refusal, client);
            return self.with_cors(&headers, r);
        }
        if matches!(route, Route::Console) {
            // Same-origin only: no CORS headers.
            let sub = &endpoint["/console".len()..];
            if server.is_some() {
                return error_reply(StatusCode::NOT_FOUND, "not found");
            }
            return self
                .console(&method, sub, query, &headers, client, body)
                .await;
        }
        if matches!(route, Route::ProtectedResource) {
            let suffix = path.strip_prefix(oauth::METADATA_PATH).unwrap_or("");
            let r = self.protected_resource(suffix);
            return self.with_cors(&headers, r);
        }
        // With --otel, a credential's check is a step of the request it lets in.
        let mut authorized = None;
        let who = if matches!(policy, Policy::Client | Policy::Peer) {
            let timer = Timer::start("authorization");
            match self.authorize(&headers, server, endpoint, client).await {
                Ok(p) => {
                    authorized = timer
                        .zip(p.as_ref())
                        .map(|(t, p)| t.done(&oauth::described(p)));
                    p
                }
                Err(r) => return self.with_cors(&headers, *r),
            }
        } else {
            None
        };

        if let Some(bearer) = route.bearer() {
            match self
                .place(bearer, server, query, &headers, client, forwarded)
                .await
            {
                Place::Here => {}
                Place::Answered(r) => return self.with_cors(&headers, r),
                Place::Forward(peer, secret) => {
                    let to = Forwarding::Holder(&peer, &secret);
                    let r = self
                        .forward_request(to, &method, path, query, &headers, client, body)
                        .await;
                    return self.with_cors(&headers, r);
                }
                Place::AskPeers(peers, secret) => {
                    let to = Forwarding::Ask(&peers, &secret);
                    let r = self
                        .forward_request(to, &method, path, query, &headers, client, body)
                        .await;
                    return self.with_cors(&headers, r);
                }
            }
        }
        // After placing: a roaming session restored here is bound to its owner by now.
        if let (Some(p), Some(bearer)) = (&who, route.bearer())
            && let Err(r) = self.check_owner(bearer, server, query, &headers, p)
        {
            return self.with_cors(&headers, *r);
        }
        let sticky = matches!(route, Route::McpGet | Route::McpDelete);
        let dispatched = self.dispatch(route, server, query, &headers, client, body, who.as_ref());
        let mut response = earlier::within(authorized, dispatched).await;
        // Every successful /mcp answer names its session, for balancers that stick on it.
        if sticky
            && response.status().is_success()
            && !response.headers().contains_key("mcp-session-id")
            && let Some(id) = headers.get("mcp-session-id")
        {
            response.headers_mut().insert("mcp-session-id", id.clone());
        }
        self.with_cors(&headers, response)
    }

    /// Forwards the request to its session's holder, or asks `peers` in turn which holds it.
    #[allow(clippy::too_many_arguments)]
    async fn forward_request(
        &self,
        to: Forwarding<'_>,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        client: IpAddr,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
    ) -> Response {
        let body = match reply::read_body(headers, body, self.config.max_body_bytes).await {
            Ok(b) => b,
            Err(reply::BodyError::TooLarge) => {
                self.metrics.reject("body_too_large");
                let msg = format!("body over {} bytes", self.config.max_body_bytes);
                return error_reply(StatusCode::PAYLOAD_TOO_LARGE, &msg);
            }
            Err(reply::BodyError::Read) => {
                return error_reply(StatusCode::BAD_REQUEST, "could not read the request body");
            }
        };
        let session = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map_or_else(
                || headers::session_param(query).unwrap_or_default(),
                str::to_string,
            );
        let Some(cluster) = &self.cluster else {
            return error_reply(StatusCode::NOT_FOUND, "unknown or ended session");
        };
        let (peers, secret, asking) = match to {
            Forwarding::Holder(peer, secret) => (std::slice::from_ref(peer), secret, false),
            Forwarding::Ask(peers, secret) => (peers, secret, true),
        };
        let mut asked = headers.clone();
        if asking {
            asked.insert(replicas::IF_HELD, HeaderValue::from_static("1"));
        }
        for peer in peers {
            let request = forward::Request {
                method,
                path,
                query,
                headers: &asked,
                body: body.clone(),
                client,
            };
            match self.forwarder.forward(cluster, peer, secret, request).await {
                Ok(r) if asking && r.headers().contains_key(replicas::NOT_HELD) => {}
                Ok(r) => return r,
                // A peer that cannot be asked does not hold it either.
                Err(_) if asking => {}
                Err(f) => return self.forward_failed(&session, peer, f),
            }
        }
        tracing::info!(
            session,
            asked = peers.len(),
            "no replica could place the session"
        );
        replicas::unplaceable()
    }

    /// The answer when a peer could not be asked.
    fn forward_failed(&self, session: &str, peer: &Peer, f: ForwardFailure) -> Response {
        match f {
            ForwardFailure::Unreachable(detail) => {
                tracing::info!(session, replica = %peer.replica, %detail, "the session's replica cannot be reached; the session is gone");
                error_reply(
                    StatusCode::NOT_FOUND,
                    "unknown or ended session (its gateway replica is gone); start a new one",
                )
            }
            ForwardFailure::Broken(detail) => {
                tracing::warn!(session, replica = %peer.replica, %detail, "the session's replica went away while answering");
                error_reply(
                    StatusCode::BAD_GATEWAY,
                    "the gateway replica holding this session went away while answering",
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        self: &Arc<Self>,
        route: Route,
        server: Option<&str>,
        query: &str,
        headers: &HeaderMap,
        client: IpAddr,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
        who: Option<&crate::gateway::oauth::Principal>,
    ) -> Response {
        match route {
            Route::Health => self.health(),
            Route::Metrics => self.metrics_reply(),
            Route::SseOpen => self.open_stream(client, server, headers, who).await,
            Route::SsePost => {
                let started = Instant::now();
                let r = self.post(query, server, headers, client, body, who).await;
                self.metrics
                    .post_duration
                    .observe(started.elapsed().as_secs_f64());
                r
            }
            Route::McpPost => {
                let started = Instant::now();
                let r = self.mcp_post(headers, server, client, body, who).await;
                self.metrics
                    .post_duration
                    .observe(started.elapsed().as_secs_f64());
                r
            }
            Route::McpGet => self.mcp_get(headers, server),
            Route::McpDelete => self.mcp_delete(headers, server),
            Route::Preflight => self.preflight(headers),
            // Answered before dispatch (it needs the whole path).
            Route::ProtectedResource => error_reply(StatusCode::NOT_FOUND, "not found"),
            Route::WrongMethod(allow) => reply::method_not_allowed(allow),
            // Answered before the MCP endpoints' authorization (it checks its own).
            Route::Console => error_reply(StatusCode::NOT_FOUND, "not found"),
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
    pub(super) fn refuse(&self, refusal: Refusal, client: IpAddr) -> Response {
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
            Refusal::KeyExpired => {
                let mut r = error_reply(StatusCode::UNAUTHORIZED, "this API key has expired");
                r.headers_mut().insert(
                    "www-authenticate",
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
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
