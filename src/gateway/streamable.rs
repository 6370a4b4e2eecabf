//! Streamable HTTP (`/mcp`, revisions 2025-03-26, 2025-06-18, 2025-11-25) over the same
//! sessions and backends as HTTP+SSE.
//!
//! A session has logical *streams*: one per POST that carries requests (it ends when their
//! responses are sent) and the listen stream (id 0) for messages unrelated to any request,
//! opened by GET. A dispatcher task routes every message from the session's server to exactly
//! one stream — a response to the stream of its request, a progress notification to the stream
//! of the request that asked for it, anything else to the newest stream still waiting for a
//! response, or else to the listen stream. Each stream keeps a bounded buffer of its events with
//! ids `<stream>-<seq>`; an HTTP connection is just a cursor into that buffer, so a client that
//! lost its connection resumes with `Last-Event-ID` on a GET and gets what it missed.
//!
//! A POST whose first routed message is the response to its single request is answered with
//! `application/json`; if the server sends anything related first (progress, a sampling
//! request…), the answer becomes an SSE stream carrying those messages and then the response.

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    net::IpAddr,
    sync::{Arc, Mutex, RwLock},
};

use bytes::Buf;
use futures::{Stream, StreamExt, stream};
use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;
use warp::{
    http::{HeaderMap, HeaderValue, StatusCode},
    reply::Response,
    sse::Event,
};

use super::{
    Gateway, error_reply, json_reply, rpc_error_reply_for,
    session::{CloseCause, OpenError, Session},
};
use crate::mcp::{
    jsonrpc::{self, Kind},
    version,
};

/// Events a stream keeps for resumption.
const REPLAY_EVENTS: usize = 1024;
/// Finished POST streams kept for resumption.
const RETIRED_STREAMS: usize = 32;
const LISTEN: u64 = 0;

/// One buffered event.
struct Buffered {
    seq: u64,
    response: bool,
    text: Arc<str>,
}

#[derive(Default)]
struct StreamBuf {
    events: VecDeque<Buffered>,
    next_seq: u64,
    /// Responses still expected (POST streams).
    awaiting: usize,
    /// The client's requested/negotiated version says it takes a priming event.
    priming: bool,
}

impl StreamBuf {
    fn done(&self, id: u64) -> bool {
        id != LISTEN && self.awaiting == 0
    }
}

#[derive(Default)]
struct Routes {
    next_stream: u64,
    streams: HashMap<u64, StreamBuf>,
    /// Raw request id → stream waiting for its response.
    waiting: HashMap<String, u64>,
    /// Raw progress token → stream of the request that asked for progress.
    tokens: HashMap<String, u64>,
    retired: VecDeque<u64>,
    /// Listen-stream events not yet sent on any connection.
    listen_cursor: u64,
    /// Set once the session has ended: streams end after what they hold.
    ended: bool,
    /// The raw id of the `initialize` request, to learn the negotiated version.
    init_id: Option<String>,
    version: Option<String>,
    bytes: usize,
}

/// A Streamable HTTP session: the transport state around a gateway [`Session`].
pub struct McpSession {
    session: Arc<Session>,
    routes: Mutex<Routes>,
    changed: Notify,
    /// A GET listen connection is open (a second one is refused with 409).
    listening: std::sync::atomic::AtomicBool,
}

/// Every Streamable HTTP session of the gateway.
#[derive(Default)]
pub struct Registry {
    map: RwLock<HashMap<Uuid, Arc<McpSession>>>,
}

impl McpSession {
    /// Routes one message from the server to its stream.
    fn route(&self, text: String, limit: usize) -> bool {
        let kind = jsonrpc::classify(text.as_bytes()).ok();
        let mut r = self.routes.lock().unwrap();
        let (stream, response) = match &kind {
            Some(Kind::Response { id }) => {
                if r.init_id.as_deref() == Some(id.as_str()) {
                    r.init_id = None;
                    r.version = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v["result"]["protocolVersion"].as_str().map(str::to_string));
                }
                match r.waiting.remove(id) {
                    Some(s) => (s, true),
                    None => {
                        tracing::debug!(session = %self.session.id_str, id, "response for no waiting request; dropped");
                        return true;
                    }
                }
            }
            Some(Kind::Notification { method }) if method == "notifications/progress" => {
                let token = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .map(|v| v["params"]["progressToken"].to_string());
                match token.and_then(|t| r.tokens.get(&t).copied()) {
                    Some(s) if r.streams.contains_key(&s) => (s, false),
                    _ => (related(&r), false),
                }
            }
            _ => (related(&r), false),
        };
        let len = text.len();
        r.bytes += len;
        let buf = r.streams.entry(stream).or_default();
        buf.next_seq += 1;
        let seq = buf.next_seq;
        buf.events.push_back(Buffered {
            seq,
            response,
            text: text.into(),
        });
        if response {
            buf.awaiting = buf.awaiting.saturating_sub(1);
        }
        let mut trimmed = 0;
        while buf.events.len() > REPLAY_EVENTS {
            if let Some(old) = buf.events.pop_front() {
                trimmed += old.text.len();
            }
        }
        if buf.done(stream) && stream != LISTEN {
            r.tokens.retain(|_, s| *s != stream);
            r.retired.push_back(stream);
            while r.retired.len() > RETIRED_STREAMS {
                if let Some(old) = r.retired.pop_front()
                    && let Some(gone) = r.streams.remove(&old)
                {
                    trimmed += gone.events.iter().map(|e| e.text.len()).sum::<usize>();
                }
            }
        }
        r.bytes -= trimmed;
        let within = r.bytes <= limit;
        drop(r);
        self.changed.notify_waiters();
        within
    }

    /// Events of `stream` after `cursor`, and whether the stream is finished after them.
    fn after(&self, stream: u64, cursor: u64) -> (Vec<(u64, bool, Arc<str>)>, bool) {
        let r = self.routes.lock().unwrap();
        let Some(buf) = r.streams.get(&stream) else {
            return (vec![], true);
        };
        let events: Vec<_> = buf
            .events
            .iter()
            .filter(|e| e.seq > cursor)
            .map(|e| (e.seq, e.response, e.text.clone()))
            .collect();
        let done = r.ended || buf.done(stream);
        (events, done)
    }
}

/// The stream for a message that names no request: the newest stream still waiting for a
/// response (the request that most likely caused it), else the listen stream.
fn related(r: &Routes) -> u64 {
    r.streams
        .iter()
        .filter(|(id, b)| **id != LISTEN && b.awaiting > 0)
        .map(|(id, _)| *id)
        .max()
        .unwrap_or(LISTEN)
}

/// Whether an Accept header admits `mime` (`*/*` and `type/*` count).
fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    let Some(accept) = headers.get("accept").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let major = mime.split('/').next().unwrap_or("");
    accept.split(',').any(|part| {
        let t = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        t == mime || t == "*/*" || t == format!("{major}/*")
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Gateway {
    /// `MCP-Protocol-Version`, when sent, must be one this transport serves.
    fn check_version(&self, headers: &HeaderMap) -> Result<Option<String>, Box<Response>> {
        match header(headers, "mcp-protocol-version") {
            None => Ok(None),
            Some(v) if version::STREAMABLE_HTTP.contains(&v) => Ok(Some(v.to_string())),
            Some(v) => {
                self.metrics.reject("protocol_version");
                let msg = format!(
                    "unsupported MCP-Protocol-Version {v:?}; this server speaks {} over Streamable HTTP (initialize to negotiate)",
                    version::STREAMABLE_HTTP.join(", ")
                );
                Err(Box::new(rpc_error_reply_for(
                    StatusCode::BAD_REQUEST,
                    None,
                    jsonrpc::INVALID_REQUEST,
                    &msg,
                )))
            }
        }
    }

    /// The session named by `Mcp-Session-Id`: 400 when missing, 404 when unknown or ended.
    fn mcp_session(&self, headers: &HeaderMap) -> Result<Arc<McpSession>, Box<Response>> {
        let Some(raw) = header(headers, "mcp-session-id") else {
            self.metrics.reject("missing_session");
            return Err(Box::new(error_reply(
                StatusCode::BAD_REQUEST,
                "missing Mcp-Session-Id header; send initialize first",
            )));
        };
        let found = Uuid::parse_str(raw.trim())
            .ok()
            .and_then(|id| self.mcp.map.read().unwrap().get(&id).cloned())
            .filter(|s| !s.session.closed.is_cancelled());
        found.ok_or_else(|| {
            self.metrics.reject("unknown_session");
            Box::new(error_reply(
                StatusCode::NOT_FOUND,
                "unknown or expired session; initialize a new one",
            ))
        })
    }

    pub(crate) async fn mcp_post(
        self: &Arc<Self>,
        headers: &HeaderMap,
        client: IpAddr,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
    ) -> Response {
        if !(accepts(headers, "application/json") && accepts(headers, "text/event-stream")) {
            self.metrics.reject("accept");
            return error_reply(
                StatusCode::NOT_ACCEPTABLE,
                "Accept must list both application/json and text/event-stream",
            );
        }
        let version = match self.check_version(headers) {
            Ok(v) => v,
            Err(r) => return *r,
        };
        let parsed = match self.read_messages(headers, body).await {
            Ok(p) => p,
            Err(r) => return *r,
        };
        let init = parsed.messages.iter().find_map(|(line, kind)| match kind {
            Kind::Request { id, method } if method == "initialize" => Some((id.clone(), line)),
            _ => None,
        });
        if let Some((id, _)) = parsed.messages.iter().find_map(|(_, k)| match k {
            Kind::Request { id, method } if method == "server/discover" => Some((id, ())),
            _ => None,
        }) {
            // The 2026-07-28 probe: a fast 400 lets the client fall back to initialize.
            self.metrics.reject("protocol_version");
            return rpc_error_reply_for(
                StatusCode::BAD_REQUEST,
                Some(id),
                jsonrpc::METHOD_NOT_FOUND,
                "server/discover (2026-07-28) is not supported here; initialize with 2025-11-25 or earlier",
            );
        }
        // Batches exist only in 2025-03-26 (the version assumed when the header is absent).
        if parsed.batch && (init.is_some() || version.as_deref().is_some_and(|v| v != "2025-03-26"))
        {
            self.metrics.reject("batch");
            return rpc_error_reply_for(
                StatusCode::BAD_REQUEST,
                None,
                jsonrpc::INVALID_REQUEST,
                "JSON-RPC batches are only allowed in protocol version 2025-03-26, and never for initialize",
            );
        }
        let (mcp, created) = match init {
            Some((id, _)) => match self.mcp_open(client, &id) {
                Ok(s) => (s, true),
                Err(r) => return *r,
            },
            None => match self.mcp_session(headers) {
                Ok(s) => (s, false),
                Err(r) => return *r,
            },
        };
        let requests: Vec<String> = parsed
            .messages
            .iter()
            .filter_map(|(_, k)| match k {
                Kind::Request { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect();
        let stream = (!requests.is_empty()).then(|| {
            let mut r = mcp.routes.lock().unwrap();
            r.next_stream += 1;
            let id = r.next_stream;
            for req in &requests {
                r.waiting.insert(req.clone(), id);
            }
            for (line, _) in &parsed.messages {
                if let Some(token) = progress_token(line) {
                    r.tokens.insert(token, id);
                }
            }
            let version = r.version.clone().or_else(|| init_version(&parsed.messages));
            r.streams.insert(
                id,
                StreamBuf {
                    awaiting: requests.len(),
                    priming: version.is_some_and(|v| v.as_str() >= version::PRIMING_FROM),
                    ..Default::default()
                },
            );
            id
        });
        for (line, kind) in parsed.messages {
            if let Err(e) = self.sessions.forward(&mcp.session, line, &kind).await {
                return self.forward_refused(e);
            }
        }
        let Some(stream) = stream else {
            return super::reply(StatusCode::ACCEPTED, String::new());
        };
        let mut response = self.answer_stream(&mcp, stream, requests.len()).await;
        if created {
            if let Ok(v) = HeaderValue::from_str(&mcp.session.id_str) {
                response.headers_mut().insert("mcp-session-id", v);
            }
            // A failed handshake leaves no session behind.
            if response.status() != StatusCode::OK {
                self.sessions.close(&mcp.session.id, CloseCause::ClientGone);
            }
        }
        response
    }

    /// Opens a session for an `initialize` request.
    fn mcp_open(
        self: &Arc<Self>,
        client: IpAddr,
        init_id: &str,
    ) -> Result<Arc<McpSession>, Box<Response>> {
        if self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            self.metrics.reject("shutting_down");
            return Err(Box::new(error_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down",
            )));
        }
        let (session, rx) = match self.sessions.open(client) {
            Ok(s) => s,
            Err(e) => return Err(Box::new(self.open_refused(e))),
        };
        let mcp = Arc::new(McpSession {
            session,
            routes: Mutex::new(Routes {
                init_id: Some(init_id.to_string()),
                ..Default::default()
            }),
            changed: Notify::new(),
            listening: Default::default(),
        });
        self.mcp
            .map
            .write()
            .unwrap()
            .insert(mcp.session.id, mcp.clone());
        // Messages from the server are routed as they are delivered, on the delivering task.
        let limit = self.config.session_buffer_bytes;
        let router = Arc::downgrade(&mcp);
        mcp.session.redirect(
            rx,
            Box::new(move |text| router.upgrade().is_none_or(|m| m.route(text, limit))),
        );
        // When the session ends, its streams end after what they hold.
        let (gateway, watched) = (self.clone(), mcp.clone());
        tokio::spawn(async move {
            watched.session.closed.cancelled().await;
            watched.routes.lock().unwrap().ended = true;
            watched.changed.notify_waiters();
            gateway.mcp.map.write().unwrap().remove(&watched.session.id);
        });
        Ok(mcp)
    }

    /// The answer to a POST with requests: JSON when the response comes first and alone, else
    /// an SSE stream of everything routed to `stream` up to the last response.
    async fn answer_stream(&self, mcp: &Arc<McpSession>, stream: u64, requests: usize) -> Response {
        let first = loop {
            let changed = mcp.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (events, done) = mcp.after(stream, 0);
            if !events.is_empty() {
                break events;
            }
            if done {
                return error_reply(StatusCode::NOT_FOUND, "the session has ended");
            }
            changed.await;
        };
        if requests == 1 && first[0].1 {
            let mut r = super::reply(StatusCode::OK, first[0].2.to_string());
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            return r;
        }
        self.sse_reply(mcp.clone(), stream, 0, None)
    }

    /// An SSE response carrying `stream`'s events after `cursor`.
    fn sse_reply(
        &self,
        mcp: Arc<McpSession>,
        stream: u64,
        cursor: u64,
        on_drop: Option<ListenGuard>,
    ) -> Response {
        let priming = {
            let r = mcp.routes.lock().unwrap();
            r.streams.get(&stream).is_some_and(|b| b.priming)
                || r.version
                    .as_deref()
                    .is_some_and(|v| v >= version::PRIMING_FROM)
        };
        let prime = (priming && cursor == 0)
            .then(|| Ok::<_, Infallible>(Event::default().id(format!("{stream}-0")).data("")));
        let events = stream::unfold(
            (mcp, cursor, on_drop, false),
            move |(mcp, cursor, guard, finished)| async move {
                if finished {
                    return None;
                }
                loop {
                    let waiter = mcp.clone();
                    let changed = waiter.changed.notified();
                    tokio::pin!(changed);
                    changed.as_mut().enable();
                    let (events, done) = mcp.after(stream, cursor);
                    if let Some(last) = events.last() {
                        let next = last.0;
                        let batch: Vec<Result<Event, Infallible>> = events
                            .into_iter()
                            .map(|(seq, _, text)| {
                                Ok(Event::default()
                                    .id(format!("{stream}-{seq}"))
                                    .event("message")
                                    .data(text.as_ref()))
                            })
                            .collect();
                        if stream == LISTEN {
                            let mut r = mcp.routes.lock().unwrap();
                            r.listen_cursor = r.listen_cursor.max(next);
                        }
                        return Some((stream::iter(batch), (mcp, next, guard, done)));
                    }
                    if done {
                        return None;
                    }
                    changed.await;
                }
            },
        )
        .flatten();
        let all = stream::iter(prime).chain(events);
        let keep_alive = warp::sse::keep_alive()
            .interval(self.config.keepalive)
            .text("ping")
            .stream(all);
        let mut r = warp::reply::Reply::into_response(warp::sse::reply(keep_alive));
        let h = r.headers_mut();
        h.insert("cache-control", HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        r
    }

    pub(crate) fn mcp_get(&self, headers: &HeaderMap) -> Response {
        if !accepts(headers, "text/event-stream") {
            self.metrics.reject("accept");
            return error_reply(
                StatusCode::NOT_ACCEPTABLE,
                "Accept must list text/event-stream",
            );
        }
        if let Err(r) = self.check_version(headers) {
            return *r;
        }
        let mcp = match self.mcp_session(headers) {
            Ok(s) => s,
            Err(r) => return *r,
        };
        // Resumption: the stream and position are in the event id.
        if let Some((stream, seq)) = header(headers, "last-event-id").and_then(|v| {
            let (s, n) = v.trim().split_once('-')?;
            Some((s.parse::<u64>().ok()?, n.parse::<u64>().ok()?))
        }) && stream != LISTEN
            && mcp.routes.lock().unwrap().streams.contains_key(&stream)
        {
            tracing::debug!(session = %mcp.session.id_str, stream, seq, "stream resumed");
            return self.sse_reply(mcp, stream, seq, None);
        }
        use std::sync::atomic::Ordering;
        if mcp.listening.swap(true, Ordering::SeqCst) {
            self.metrics.reject("second_listen_stream");
            return error_reply(
                StatusCode::CONFLICT,
                "this session already has a GET stream open",
            );
        }
        let cursor = {
            let mut r = mcp.routes.lock().unwrap();
            r.streams.entry(LISTEN).or_default();
            // Resuming the listen stream, or picking up what waited for a listener.
            header(headers, "last-event-id")
                .and_then(|v| v.trim().strip_prefix("0-")?.parse::<u64>().ok())
                .unwrap_or(r.listen_cursor)
        };
        let guard = ListenGuard(mcp.clone());
        self.sse_reply(mcp, LISTEN, cursor, Some(guard))
    }

    pub(crate) fn mcp_delete(&self, headers: &HeaderMap) -> Response {
        if let Err(r) = self.check_version(headers) {
            return *r;
        }
        match self.mcp_session(headers) {
            Ok(mcp) => {
                self.sessions.close(&mcp.session.id, CloseCause::ClientGone);
                json_reply(StatusCode::OK, json!({"ended": mcp.session.id_str}))
            }
            Err(r) => *r,
        }
    }

    pub(crate) fn open_refused(&self, e: OpenError) -> Response {
        match e {
            OpenError::Full(max) => {
                self.metrics.reject("max_sessions");
                let mut r = error_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("too many sessions (limit {max}); try again later"),
                );
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from(5u32));
                r
            }
            e @ OpenError::Spawn(_) => {
                self.metrics.error("spawn");
                tracing::error!(error = %e, program = %self.config.child.program, "cannot start child");
                error_reply(StatusCode::BAD_GATEWAY, &e.to_string())
            }
        }
    }
}

/// Frees the session's GET slot when the listen connection goes away.
struct ListenGuard(Arc<McpSession>);

impl Drop for ListenGuard {
    fn drop(&mut self) {
        self.0
            .listening
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The raw `params._meta.progressToken` of a request line.
fn progress_token(line: &[u8]) -> Option<String> {
    if !line.windows(13).any(|w| w == b"progressToken") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let t = &v["params"]["_meta"]["progressToken"];
    (!t.is_null()).then(|| t.to_string())
}

/// The version an `initialize` among `messages` asks for.
fn init_version(messages: &[(bytes::Bytes, Kind)]) -> Option<String> {
    messages.iter().find_map(|(line, kind)| match kind {
        Kind::Request { method, .. } if method == "initialize" => {
            let v: serde_json::Value = serde_json::from_slice(line).ok()?;
            v["params"]["protocolVersion"].as_str().map(str::to_string)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        let mut h = HeaderMap::new();
        assert!(!accepts(&h, "application/json"));
        h.insert(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream;q=0.9"),
        );
        assert!(accepts(&h, "application/json") && accepts(&h, "text/event-stream"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        assert!(accepts(&h, "text/event-stream"));
        h.insert("accept", HeaderValue::from_static("text/*"));
        assert!(accepts(&h, "text/event-stream") && !accepts(&h, "application/json"));
    }

    #[test]
    fn progress_tokens() {
        let line = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":"t"}}}"#;
        assert_eq!(progress_token(line).as_deref(), Some("\"t\""));
        assert_eq!(progress_token(br#"{"id":1}"#), None);
    }
}
