//! The HTTP gateway (`--sse`): remote MCP clients over HTTP+SSE, each session relayed to its own
//! stdio MCP child. HTTP lives here; [`session`] relays JSON-RPC lines; [`child`] owns processes.
//!
//! - `GET /sse` opens a session; the first event is `endpoint` with the POST URI.
//! - `POST /messages?session_id=<uuid>` (or `sessionId`) takes one message (or a batch): 202,
//!   and the reply arrives on the session's stream as `event: message`.
//! - `GET /health` (JSON; 503 while shutting down) and `GET /metrics` (Prometheus text).

pub mod backend;
pub mod metrics;
pub mod security;
pub mod session;
pub mod streamable;

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt, stream};
use serde_json::{json, value::RawValue};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use warp::{
    Filter,
    http::{HeaderMap, HeaderValue, Method, StatusCode},
    reply::Response,
    sse::Event,
};

use self::{
    metrics::Metrics,
    security::{Guard, Refusal},
    session::{CloseCause, ForwardError, Sessions},
};
use crate::{
    config::GatewayConfig,
    mcp::jsonrpc::{self, Kind},
};

/// Shared state of one running gateway.
struct Gateway {
    config: Arc<GatewayConfig>,
    sessions: Arc<Sessions>,
    guard: Guard,
    metrics: Arc<Metrics>,
    /// Set when shutdown begins: /health turns 503 and new sessions are refused.
    shutting_down: AtomicBool,
    /// Path part of --public-url, also accepted as a prefix on incoming paths.
    base_path: String,
    /// Streamable HTTP sessions (`/mcp`).
    mcp: streamable::Registry,
}

/// Binds the listening socket with TCP_NODELAY (accepted sockets inherit it; without it a
/// kept-alive loopback request waits ~40 ms on delayed ACKs).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Serves until `shutdown` is cancelled, then ends every stream, terminates every child within
/// the grace period, and returns.
pub async fn run(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    raise_fd_limit();
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let backend = backend::build(config.clone(), metrics.clone())?;
    backend.clone().start()?;
    let sessions = Sessions::new(config.clone(), metrics.clone(), backend);
    let base_path = base_path(&config.public_url);
    let gateway = Arc::new(Gateway {
        guard: Guard::new(&config),
        config: config.clone(),
        sessions: sessions.clone(),
        metrics,
        shutting_down: AtomicBool::new(false),
        base_path,
        mcp: streamable::Registry::default(),
    });
    let local = listener.local_addr()?;
    tracing::info!(
        address = %local,
        sse = %if config.serve_sse { format!("http://{local}/sse") } else { "off".into() },
        mcp = %if config.serve_mcp { format!("http://{local}/mcp") } else { "off".into() },
        backend = config.backend.as_str(),
        children = if config.backend == crate::config::Backend::Shared { config.children } else { 0 },
        child = %if config.backend == crate::config::Backend::InProcess { "(in-process)" } else { config.child.program.as_str() },
        builtin_child = config.builtin_child,
        auth = gateway.guard.auth_enabled(),
        "gateway listening"
    );

    tokio::spawn(housekeeping(gateway.clone(), shutdown.clone()));

    let gw = gateway.clone();
    let routes = warp::method()
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
                let gw = gw.clone();
                async move {
                    let client = remote.map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
                    gw.handle(method, path.as_str(), &query, headers, client, body)
                        .await
                }
            },
        );

    let server_stop = CancellationToken::new();
    let server = warp::serve(routes)
        .incoming(listener)
        .graceful(server_stop.clone().cancelled_owned())
        .run();
    let server = tokio::spawn(server);

    shutdown.cancelled().await;
    tracing::info!("shutting down: refusing new sessions, ending streams, stopping children");
    // Keep answering while children stop, so load balancers see /health turn 503 and drain.
    gateway.shutting_down.store(true, Ordering::SeqCst);
    let grace = config.shutdown_grace;
    // Children get `grace` after stdin closes and again after SIGTERM; SIGKILL ends the rest.
    if tokio::time::timeout(
        grace * 2 + Duration::from_secs(3),
        sessions.close_all(grace),
    )
    .await
    .is_err()
    {
        tracing::warn!("some children did not stop in time");
    }
    // Streams have ended; stop listening and let idle keep-alive connections close.
    server_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after shutdown; leaving them");
    }
    tracing::info!("gateway stopped");
    Ok(())
}

/// Periodic work: reap idle sessions and forget rate-limit state of departed clients.
async fn housekeeping(gateway: Arc<Gateway>, shutdown: CancellationToken) {
    let every = (gateway.config.session_idle_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut tick = tokio::time::interval(every);
    let mut last_forget = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        gateway.sessions.reap_idle();
        if last_forget.elapsed() > security::FORGET_INTERVAL {
            gateway.guard.forget_idle_clients();
            last_forget = Instant::now();
        }
    }
}

fn base_path(public_url: &str) -> String {
    let path = match public_url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => public_url,
    };
    path.trim_end_matches('/').to_string()
}

/// A plain response with this body and status.
fn reply(status: StatusCode, body: String) -> Response {
    let mut r = warp::reply::Reply::into_response(body);
    *r.status_mut() = status;
    r
}

/// A JSON body with a status.
fn json_reply(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = reply(status, body.to_string());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn error_reply(status: StatusCode, message: &str) -> Response {
    json_reply(status, json!({"error": message}))
}

/// A JSON-RPC error as an HTTP error body (for messages that never reach a session).
fn rpc_error_reply(status: StatusCode, code: i64, message: &str) -> Response {
    rpc_error_reply_for(status, None, code, message)
}

/// Like [`rpc_error_reply`], answering the request with raw id `id`.
fn rpc_error_reply_for(status: StatusCode, id: Option<&str>, code: i64, message: &str) -> Response {
    let mut r = reply(
        status,
        jsonrpc::error_response(id.unwrap_or("null"), code, message),
    );
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

impl Gateway {
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
        let mut response = match (&method, path) {
            (&Method::GET, "/health") => self.health(),
            (&Method::GET, "/metrics") => self.metrics_reply(&headers),
            (&Method::GET, "/sse") if self.config.serve_sse => match self.admit(&headers, client) {
                Ok(()) => self.open_stream(client),
                Err(r) => *r,
            },
            (&Method::POST, "/messages" | "/message") if self.config.serve_sse => {
                match self.admit(&headers, client) {
                    Ok(()) => self.post(query, &headers, body).await,
                    Err(r) => *r,
                }
            }
            (&Method::POST, "/mcp") if self.config.serve_mcp => {
                match self.admit(&headers, client) {
                    Ok(()) => {
                        let started = Instant::now();
                        let r = self.mcp_post(&headers, client, body).await;
                        self.metrics
                            .post_duration
                            .observe(started.elapsed().as_secs_f64());
                        r
                    }
                    Err(r) => *r,
                }
            }
            (&Method::GET, "/mcp") if self.config.serve_mcp => match self.admit(&headers, client) {
                Ok(()) => self.mcp_get(&headers),
                Err(r) => *r,
            },
            (&Method::DELETE, "/mcp") if self.config.serve_mcp => {
                match self.admit(&headers, client) {
                    Ok(()) => self.mcp_delete(&headers),
                    Err(r) => *r,
                }
            }
            (&Method::OPTIONS, _) => self.preflight(&headers),
            (_, "/health" | "/metrics") => self.method_not_allowed("GET"),
            (_, "/sse") if self.config.serve_sse => self.method_not_allowed("GET"),
            (_, "/messages" | "/message") if self.config.serve_sse => {
                self.method_not_allowed("POST")
            }
            (_, "/mcp") if self.config.serve_mcp => self.method_not_allowed("GET, POST, DELETE"),
            _ => error_reply(StatusCode::NOT_FOUND, self.not_found_hint()),
        };
        if let Some(origin) = self.guard.cors_allow(&headers) {
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

    fn not_found_hint(&self) -> &'static str {
        match (self.config.serve_mcp, self.config.serve_sse) {
            (true, true) => {
                "not found; MCP clients connect to /mcp (Streamable HTTP) or /sse (HTTP+SSE)"
            }
            (true, false) => "not found; MCP clients connect to /mcp (Streamable HTTP)",
            (false, _) => "not found; MCP clients connect to /sse (HTTP+SSE)",
        }
    }

    /// The HTTP answer when a message could not be handed to the session's server.
    fn forward_refused(&self, e: ForwardError) -> Response {
        match e {
            ForwardError::Closed => error_reply(StatusCode::NOT_FOUND, "the session has ended"),
            ForwardError::Busy => {
                self.metrics.error("child_busy");
                let mut r = error_reply(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from(1u32));
                r
            }
        }
    }

    fn method_not_allowed(&self, allow: &'static str) -> Response {
        let mut r = error_reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert("allow", HeaderValue::from_static(allow));
        r
    }

    /// Host, Origin, API key and rate limit, in that order.
    fn admit(&self, headers: &HeaderMap, client: IpAddr) -> Result<(), Box<Response>> {
        let checks = self
            .guard
            .check_origin_and_host(headers)
            .and_then(|()| self.guard.check_key(headers))
            .and_then(|()| self.guard.check_rate(client));
        checks.map_err(|refusal| Box::new(self.refuse(refusal, client)))
    }

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

    /// 200 when sessions can be served; 503 while shutting down or when no shared child is
    /// ready (all restarting). "degraded" when some shared children are restarting.
    fn health(&self) -> Response {
        let shutting_down = self.shutting_down.load(Ordering::SeqCst);
        let backend = self.sessions.backend_status();
        let shared = backend.slots;
        let ready = backend.ready;
        let status = if shutting_down {
            "shutting_down"
        } else {
            match ready {
                Some(0) => "unavailable",
                Some(n) if n < shared.len() => "degraded",
                _ => "ok",
            }
        };
        let mut body = json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "backend": self.config.backend.as_str(),
            "sessions": self.sessions.len(),
            "max_sessions": self.config.max_sessions,
            "children_alive": backend.children_alive,
        });
        if !shared.is_empty() {
            body["shared_children"] = serde_json::Value::Array(shared);
        }
        json_reply(
            if matches!(status, "shutting_down" | "unavailable") {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            },
            body,
        )
    }

    fn metrics_reply(&self, headers: &HeaderMap) -> Response {
        let check = self.guard.check_origin_and_host(headers).and_then(|()| {
            if self.config.protect_metrics {
                self.guard.check_key(headers)
            } else {
                Ok(())
            }
        });
        if let Err(refusal) = check {
            return self.refuse(refusal, IpAddr::from([0, 0, 0, 0]));
        }
        if let Some(ready) = self.sessions.backend_status().ready {
            self.metrics.shared_children_ready.set(ready as i64);
        }
        let mut r = reply(StatusCode::OK, self.metrics.encode());
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        r
    }

    fn preflight(&self, headers: &HeaderMap) -> Response {
        let Some(origin) = self.guard.cors_allow(headers) else {
            return error_reply(StatusCode::FORBIDDEN, "CORS is not enabled for this origin");
        };
        let mut r = reply(StatusCode::NO_CONTENT, String::new());
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

    fn open_stream(self: &Arc<Self>, client: IpAddr) -> Response {
        if self.shutting_down.load(Ordering::SeqCst) {
            self.metrics.reject("shutting_down");
            return error_reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        }
        let (session, rx) = match self.sessions.open(client) {
            Ok(s) => s,
            Err(e) => return self.open_refused(e),
        };
        let endpoint = format!(
            "{}/messages?session_id={}",
            self.config.public_url, session.id_str
        );
        let first = stream::once(async move {
            Ok::<_, Infallible>(Event::default().event("endpoint").data(endpoint))
        });
        let on_drop = CloseOnDrop {
            sessions: self.sessions.clone(),
            id: session.id,
        };
        let messages = stream::unfold(
            (rx, on_drop, session),
            |(mut rx, guard, session)| async move {
                let message = rx.recv().await?;
                session.delivered(message.len());
                let event = Event::default().event("message").data(message);
                Some((Ok(event), (rx, guard, session)))
            },
        );
        let events = first.chain(messages);
        let keep_alive = warp::sse::keep_alive()
            .interval(self.config.keepalive)
            .text("ping")
            .stream(events);
        let mut r = warp::reply::Reply::into_response(warp::sse::reply(keep_alive));
        let h = r.headers_mut();
        h.insert("cache-control", HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        r
    }

    async fn post(
        self: &Arc<Self>,
        query: &str,
        headers: &HeaderMap,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
    ) -> Response {
        let started = Instant::now();
        let response = self.post_inner(query, headers, body).await;
        self.metrics
            .post_duration
            .observe(started.elapsed().as_secs_f64());
        response
    }

    async fn post_inner(
        self: &Arc<Self>,
        query: &str,
        headers: &HeaderMap,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
    ) -> Response {
        let Some(raw_id) = session_param(query) else {
            self.metrics.reject("missing_session");
            return error_reply(
                StatusCode::BAD_REQUEST,
                "missing session_id query parameter",
            );
        };
        let Ok(id) = Uuid::parse_str(&raw_id) else {
            self.metrics.reject("invalid_session");
            return error_reply(StatusCode::BAD_REQUEST, "invalid session_id");
        };
        let Some(session) = self.sessions.get(&id) else {
            self.metrics.reject("unknown_session");
            return error_reply(
                StatusCode::NOT_FOUND,
                "unknown or ended session; open a new one with GET /sse",
            );
        };
        let messages = match self.read_messages(headers, body).await {
            Ok(parsed) => parsed.messages,
            Err(r) => return *r,
        };
        for (part, kind) in messages {
            if let Kind::Request { id, method } = &kind
                && method == "server/discover"
            {
                // The 2026-07-28 probe: answer at once so the client falls back to initialize.
                self.sessions.answer(
                    &session,
                    jsonrpc::error_response(
                        id,
                        jsonrpc::METHOD_NOT_FOUND,
                        "server/discover is not supported on the HTTP+SSE transport; use initialize",
                    ),
                );
                continue;
            }
            if let Err(e) = self.sessions.forward(&session, part, &kind).await {
                return self.forward_refused(e);
            }
        }
        reply(StatusCode::ACCEPTED, "Accepted".into())
    }
}

/// The JSON-RPC messages of one POST body, checked and ready to relay.
pub(crate) struct Parsed {
    pub messages: Vec<(Bytes, Kind)>,
    /// The body was a JSON array.
    pub batch: bool,
}

impl Gateway {
    /// Content type, size limit, JSON, JSON-RPC shape: every message of a body is checked
    /// before any is relayed. A batch becomes its individual messages.
    pub(crate) async fn read_messages(
        &self,
        headers: &HeaderMap,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
    ) -> Result<Parsed, Box<Response>> {
        let refuse = |reason: &'static str, r: Response| {
            self.metrics.reject(reason);
            Err(Box::new(r))
        };
        if let Some(ct) = headers.get("content-type") {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            if !ct.starts_with("application/json") {
                return refuse(
                    "content_type",
                    error_reply(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "Content-Type must be application/json",
                    ),
                );
            }
        }
        let body = match read_body(headers, body, self.config.max_body_bytes).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                let msg = format!("body over {} bytes", self.config.max_body_bytes);
                return refuse(
                    "body_too_large",
                    error_reply(StatusCode::PAYLOAD_TOO_LARGE, &msg),
                );
            }
            Err(BodyError::Read) => {
                self.metrics.error("body_read");
                return Err(Box::new(error_reply(
                    StatusCode::BAD_REQUEST,
                    "could not read the request body",
                )));
            }
        };
        let trimmed = body.trim_ascii();
        if trimmed.is_empty() {
            return refuse(
                "empty_body",
                rpc_error_reply(StatusCode::BAD_REQUEST, -32700, "empty body"),
            );
        }
        let batch = trimmed[0] == b'[';
        let parts: Vec<Bytes> = if batch {
            match serde_json::from_slice::<Vec<&RawValue>>(trimmed) {
                Ok(items) if !items.is_empty() => items
                    .into_iter()
                    .map(|r| Bytes::copy_from_slice(r.get().as_bytes()))
                    .collect(),
                Ok(_) => {
                    return refuse(
                        "invalid_message",
                        rpc_error_reply(StatusCode::BAD_REQUEST, -32600, "empty batch"),
                    );
                }
                Err(e) => {
                    let msg = format!("invalid JSON: {e}");
                    return refuse(
                        "invalid_json",
                        rpc_error_reply(StatusCode::BAD_REQUEST, -32700, &msg),
                    );
                }
            }
        } else {
            vec![body.slice_ref(trimmed)]
        };
        let mut messages = Vec::with_capacity(parts.len());
        for part in parts {
            match jsonrpc::classify(&part) {
                Ok(kind) => messages.push((one_line(part), kind)),
                Err(reason) => {
                    let code = if reason.starts_with("invalid JSON") {
                        -32700
                    } else {
                        -32600
                    };
                    return refuse(
                        "invalid_message",
                        rpc_error_reply(StatusCode::BAD_REQUEST, code, &reason),
                    );
                }
            }
        }
        Ok(Parsed { messages, batch })
    }
}

/// Closes its session when the SSE stream is dropped (the client went away).
struct CloseOnDrop {
    sessions: Arc<Sessions>,
    id: Uuid,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.sessions.close(&self.id, CloseCause::ClientGone);
    }
}

/// `session_id` or `sessionId` from a query string.
fn session_param(query: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        matches!(k, "session_id" | "sessionId").then(|| v.to_string())
    })
}

enum BodyError {
    TooLarge,
    Read,
}

async fn read_body(
    headers: &HeaderMap,
    mut body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| BodyError::Read)?;
        if buf.len() + chunk.remaining() > limit {
            return Err(BodyError::TooLarge);
        }
        while chunk.has_remaining() {
            let c = chunk.chunk();
            let n = c.len();
            buf.extend_from_slice(c);
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

/// JSON may be pretty-printed; raw newlines can only be whitespace there (never inside
/// strings), so they become spaces and the message fits on one line.
fn one_line(message: Bytes) -> Bytes {
    if !message.iter().any(|&b| b == b'\n' || b == b'\r') {
        return message;
    }
    let mut v = message.to_vec();
    for b in &mut v {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
    Bytes::from(v)
}

/// Many sessions mean many pipes and sockets: lift the soft file limit to the hard one.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                tracing::debug!(limit = lim.rlim_max, "raised the open-file limit");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_params() {
        let id = "5e1b7a8e-0000-4000-8000-000000000000";
        assert_eq!(
            session_param(&format!("session_id={id}")).as_deref(),
            Some(id)
        );
        assert_eq!(
            session_param(&format!("x=1&sessionId={id}")).as_deref(),
            Some(id)
        );
        assert_eq!(session_param("x=1"), None);
    }

    #[test]
    fn base_paths() {
        assert_eq!(base_path(""), "");
        assert_eq!(base_path("/aare/"), "/aare");
        assert_eq!(base_path("https://example.com/aare"), "/aare");
        assert_eq!(base_path("https://example.com"), "");
    }

    #[test]
    fn newlines_become_spaces() {
        let b = one_line(Bytes::from_static(b"{\n  \"a\": \"x\\ny\"\r\n}"));
        assert_eq!(&b[..], b"{   \"a\": \"x\\ny\"  }");
        serde_json::from_slice::<serde_json::Value>(&b).unwrap();
    }
}
