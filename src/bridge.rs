//! `--connect URL`: a stdio MCP server on this side, a remote MCP server over HTTP on the other,
//! for hosts that only start local stdio servers.
//!
//! - Transport: Streamable HTTP or HTTP+SSE, forced with `--transport` or detected: a URL ending
//!   in `/sse` is SSE; otherwise the host's `initialize` is POSTed (Streamable HTTP) and a 4xx
//!   answer makes the bridge fall back to SSE (the spec's backwards-compatibility procedure).
//! - Every host request is remembered until its response arrives. When the remote goes away
//!   (connection refused, stream ended, session expired) the requests in flight get a JSON-RPC
//!   error at once, and the bridge reconnects with backoff, replaying the host's handshake
//!   (`initialize` + `initialized`, answers swallowed) on a new session. Requests sent while it
//!   reconnects are refused with an error rather than left waiting.
//! - Streamable HTTP answers may be JSON or SSE; an SSE answer cut short is resumed with
//!   `Last-Event-ID`. A GET listen stream carries the remote's unrelated messages.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::{
    io::AsyncWriteExt,
    sync::{mpsc, oneshot},
};
use tokio_util::sync::CancellationToken;

use crate::config::{BridgeConfig, TransportChoice};
use crate::mcp::{
    jsonrpc::{self, Kind},
    lines::{self, Frame},
    version,
};

const INTERNAL: &str = "aareguru-bridge-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Undecided,
    Streamable,
    Sse,
}

#[derive(Default)]
struct Remote {
    mode: Option<Mode>,
    /// Streamable HTTP session id.
    session: Option<String>,
    /// Negotiated protocol version (sent as MCP-Protocol-Version from 2025-06-18 on).
    version: Option<String>,
    /// HTTP+SSE POST endpoint.
    endpoint: Option<String>,
    /// Stops the current listen stream / SSE reader.
    streams: Option<CancellationToken>,
}

struct Bridge {
    config: BridgeConfig,
    http: reqwest::Client,
    out: mpsc::UnboundedSender<String>,
    remote: Mutex<Remote>,
    /// Raw ids of host requests waiting for a response.
    pending: Mutex<HashSet<String>>,
    /// The host's `initialize` params, replayed on every new session.
    handshake: Mutex<Option<Value>>,
    /// Internal requests (replayed handshakes) waiting for their answer.
    internal: Mutex<std::collections::HashMap<String, oneshot::Sender<Value>>>,
    next_internal: AtomicU64,
    reconnecting: AtomicBool,
    stop: CancellationToken,
}

/// Why a message could not be delivered.
#[derive(Debug)]
enum Failure {
    /// Could not reach the remote at all.
    Unreachable(String),
    /// The remote no longer knows our session (or the SSE stream is gone).
    SessionLost,
    /// The remote answered with an HTTP error.
    Status(u16, String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(e) => f.write_str(e),
            Failure::SessionLost => f.write_str("session lost"),
            Failure::Status(status, body) => write!(f, "HTTP {status}: {body}"),
        }
    }
}

pub async fn run(config: BridgeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &config.headers {
        headers.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| anyhow::anyhow!("invalid header name {k:?}: {e}"))?,
            reqwest::header::HeaderValue::from_str(v)
                .map_err(|e| anyhow::anyhow!("invalid value for header {k:?}: {e}"))?,
        );
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .build()?;
    let (out, out_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_stdout(out_rx));
    let bridge = Arc::new(Bridge {
        config,
        http,
        out,
        remote: Mutex::default(),
        pending: Mutex::default(),
        handshake: Mutex::default(),
        internal: Mutex::default(),
        next_internal: AtomicU64::new(1),
        reconnecting: AtomicBool::new(false),
        stop: shutdown.clone(),
    });
    tracing::info!(url = %bridge.config.url, transport = ?bridge.config.transport, "bridging stdio to a remote MCP server");
    let (events_tx, mut events) = mpsc::channel(256);
    let max = bridge.config.max_line_bytes;
    tokio::spawn(async move {
        lines::read_lines(tokio::io::stdin(), max, &events_tx, "stdin").await;
    });
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = shutdown.cancelled() => None,
        };
        match event {
            Some(Frame::Line(line)) => bridge.clone().from_host(line).await,
            Some(Frame::TooLong { prefix, len }) => {
                if let Some(id) = jsonrpc::id_from_prefix(&prefix) {
                    let msg = format!("message of {len} bytes is over the limit of {max} bytes");
                    bridge.to_host(jsonrpc::error_response(&id, jsonrpc::INVALID_REQUEST, &msg));
                }
            }
            None => break,
        }
    }
    bridge.stop.cancel();
    bridge.end_session().await;
    drop(bridge);
    let _ = writer.await;
    tracing::info!("stdin closed; bridge stopped");
    Ok(())
}

/// Stdout is the bridge's protocol side, as for `--stdio`.
#[allow(clippy::disallowed_methods)]
async fn write_stdout(mut rx: mpsc::UnboundedReceiver<String>) {
    let mut out = tokio::io::stdout();
    while let Some(line) = rx.recv().await {
        let mut buf = line.into_bytes();
        buf.push(b'\n');
        while let Ok(more) = rx.try_recv() {
            buf.extend_from_slice(more.as_bytes());
            buf.push(b'\n');
        }
        if out.write_all(&buf).await.is_err() || out.flush().await.is_err() {
            return;
        }
    }
}

impl Bridge {
    /// A message for the host; responses settle pending requests, internal ones are swallowed.
    fn to_host(&self, text: String) {
        if let Ok(Kind::Response { id }) = jsonrpc::classify(text.as_bytes()) {
            if id.contains(INTERNAL) {
                if let Some(tx) = self.internal.lock().unwrap().remove(&id) {
                    let _ = tx.send(serde_json::from_str(&text).unwrap_or(Value::Null));
                }
                return;
            }
            self.pending.lock().unwrap().remove(&id);
        }
        let _ = self.out.send(text);
    }

    fn fail(&self, id: &str, message: &str) {
        self.pending.lock().unwrap().remove(id);
        let _ = self.out.send(jsonrpc::error_response(
            id,
            jsonrpc::INTERNAL_ERROR,
            message,
        ));
    }

    fn fail_pending(&self, message: &str) {
        let ids: Vec<String> = self.pending.lock().unwrap().drain().collect();
        for id in ids {
            let _ = self.out.send(jsonrpc::error_response(
                &id,
                jsonrpc::INTERNAL_ERROR,
                message,
            ));
        }
    }

    fn mode(&self) -> Mode {
        let decided = self.remote.lock().unwrap().mode;
        decided.unwrap_or(match self.config.transport {
            TransportChoice::StreamableHttp => Mode::Streamable,
            TransportChoice::Sse => Mode::Sse,
            TransportChoice::Auto if self.config.url.trim_end_matches('/').ends_with("/sse") => {
                Mode::Sse
            }
            TransportChoice::Auto => Mode::Undecided,
        })
    }

    async fn from_host(self: Arc<Self>, line: Bytes) {
        let kind = match jsonrpc::classify(&line) {
            Ok(k) => k,
            Err(reason) => {
                tracing::warn!(%reason, "host sent an invalid message; skipped");
                return;
            }
        };
        match &kind {
            Kind::Request { id, method } => {
                if method == "initialize" {
                    let params = serde_json::from_slice::<Value>(&line)
                        .map(|v| v["params"].clone())
                        .unwrap_or(Value::Null);
                    *self.handshake.lock().unwrap() = Some(params);
                }
                if self.reconnecting.load(Ordering::SeqCst) {
                    let msg = "the remote MCP server is unreachable; the bridge is reconnecting, try again shortly";
                    let _ =
                        self.out
                            .send(jsonrpc::error_response(id, jsonrpc::INTERNAL_ERROR, msg));
                    return;
                }
                self.pending.lock().unwrap().insert(id.clone());
                if method == "initialize" || self.mode() == Mode::Sse {
                    // The handshake (and everything on SSE, where POSTs return at once) is sent
                    // in order.
                    self.send_request(line, id.clone(), method.clone()).await;
                } else {
                    let (id, method) = (id.clone(), method.clone());
                    tokio::spawn(async move { self.send_request(line, id, method).await });
                }
            }
            _ => {
                if self.reconnecting.load(Ordering::SeqCst) {
                    return;
                }
                if let Err(f) = self.post(&line, false).await {
                    self.describe(&f, "a notification");
                    if matches!(f, Failure::Unreachable(_) | Failure::SessionLost) {
                        self.clone().start_reconnect();
                    }
                }
            }
        }
    }

    fn describe(&self, f: &Failure, what: &str) {
        tracing::warn!(error = %f, "cannot deliver {what} to the remote MCP server");
    }

    async fn send_request(self: Arc<Self>, line: Bytes, id: String, method: String) {
        let mut result = self.post(&line, true).await;
        if matches!(result, Err(Failure::SessionLost)) && method != "initialize" {
            // The remote restarted or expired our session: a new session, then once more.
            if self.clone().reconnect_now().await {
                self.pending.lock().unwrap().insert(id.clone());
                result = self.post(&line, true).await;
            }
        }
        match result {
            Ok(()) => {}
            Err(Failure::Status(status, body)) => {
                // The remote's own JSON-RPC error, if it sent one, else the HTTP status.
                let message = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| {
                        format!(
                            "the remote MCP server answered HTTP {status}: {}",
                            body.trim()
                        )
                    });
                let code = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_i64())
                    .unwrap_or(jsonrpc::INTERNAL_ERROR);
                self.pending.lock().unwrap().remove(&id);
                let _ = self.out.send(jsonrpc::error_response(&id, code, &message));
            }
            Err(f @ (Failure::Unreachable(_) | Failure::SessionLost)) => {
                self.describe(&f, "a request");
                self.fail(
                    &id,
                    &format!("the remote MCP server could not be reached ({f}); the bridge is reconnecting"),
                );
                if method != "initialize" || self.handshake.lock().unwrap().is_some() {
                    self.clone().start_reconnect();
                }
            }
        }
    }

    /// Sends one message over the current transport (deciding it on the first `initialize`).
    async fn post(self: &Arc<Self>, line: &[u8], is_request: bool) -> Result<(), Failure> {
        match self.mode() {
            Mode::Sse => self.post_sse(line).await,
            Mode::Streamable => self.post_streamable(line, is_request).await,
            Mode::Undecided => {
                let is_init = matches!(jsonrpc::classify(line), Ok(Kind::Request { ref method, .. }) if method == "initialize");
                match self.post_streamable(line, is_request).await {
                    Err(Failure::Status(status, body))
                        if is_init
                            && (400..500).contains(&status)
                            && status != 401
                            && status != 403 =>
                    {
                        tracing::info!(status, %body, "Streamable HTTP refused; trying HTTP+SSE");
                        self.remote.lock().unwrap().mode = Some(Mode::Sse);
                        self.post_sse(line).await
                    }
                    other => {
                        if is_init && other.is_ok() {
                            self.remote.lock().unwrap().mode = Some(Mode::Streamable);
                        }
                        other
                    }
                }
            }
        }
    }

    fn streamable_request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let (session, version) = {
            let r = self.remote.lock().unwrap();
            (r.session.clone(), r.version.clone())
        };
        let mut req = self.http.request(method, &self.config.url);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = version.filter(|v| v.as_str() >= version::PROTOCOL_HEADER_FROM) {
            req = req.header("mcp-protocol-version", v);
        }
        req
    }

    async fn post_streamable(
        self: &Arc<Self>,
        line: &[u8],
        is_request: bool,
    ) -> Result<(), Failure> {
        let has_session = self.remote.lock().unwrap().session.is_some();
        let resp = self
            .streamable_request(reqwest::Method::POST)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(line.to_vec())
            .send()
            .await
            .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
        let status = resp.status().as_u16();
        if status == 404 && has_session {
            return Err(Failure::SessionLost);
        }
        if !resp.status().is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(Failure::Status(status, body));
        }
        if let Some(session) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.remote.lock().unwrap().session = Some(session.to_string());
        }
        if status == 202 || !is_request {
            return Ok(());
        }
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if is_sse {
            let request_id = jsonrpc::classify(line).ok().and_then(|k| match k {
                Kind::Request { id, .. } => Some(id),
                _ => None,
            });
            self.read_post_stream(resp, request_id).await
        } else {
            let body = resp
                .text()
                .await
                .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
            self.deliver_json(&body);
            Ok(())
        }
    }

    /// A JSON body: one message or an array of them.
    fn deliver_json(&self, body: &str) {
        match serde_json::from_str::<Value>(body) {
            Ok(Value::Array(items)) => {
                for item in items {
                    self.observe(&item);
                    self.to_host(item.to_string());
                }
            }
            Ok(v) => {
                self.observe(&v);
                self.to_host(body.trim().to_string());
            }
            Err(e) => tracing::warn!(error = %e, "remote sent a body that is not JSON; dropped"),
        }
    }

    /// Learns the negotiated version from an initialize result.
    fn observe(&self, message: &Value) {
        if let Some(v) = message["result"]["protocolVersion"].as_str()
            && message["result"]["serverInfo"].is_object()
        {
            self.remote.lock().unwrap().version = Some(v.to_string());
        }
    }

    /// Reads an SSE answer to a POST until its response; resumes with Last-Event-ID if the
    /// stream ends early.
    async fn read_post_stream(
        self: &Arc<Self>,
        resp: reqwest::Response,
        request_id: Option<String>,
    ) -> Result<(), Failure> {
        let mut resp = resp;
        let mut last_id: Option<String> = None;
        for attempt in 0..5 {
            let done = self
                .pump_sse(
                    resp,
                    request_id.as_deref(),
                    &mut last_id,
                    &CancellationToken::new(),
                )
                .await;
            if done || request_id.is_none() {
                return Ok(());
            }
            let Some(last) = last_id.clone() else {
                return Err(Failure::SessionLost);
            };
            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
            resp = self
                .streamable_request(reqwest::Method::GET)
                .header("accept", "text/event-stream")
                .header("last-event-id", last)
                .send()
                .await
                .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
            if resp.status().as_u16() == 404 {
                return Err(Failure::SessionLost);
            }
            if !resp.status().is_success() {
                return Err(Failure::Status(resp.status().as_u16(), String::new()));
            }
        }
        Err(Failure::SessionLost)
    }

    /// Delivers an SSE body's messages to the host; true once the response to `until` (if any)
    /// has been seen.
    async fn pump_sse(
        &self,
        resp: reqwest::Response,
        until: Option<&str>,
        last_id: &mut Option<String>,
        stop: &CancellationToken,
    ) -> bool {
        let mut body = resp.bytes_stream();
        let mut parser = SseParser::default();
        loop {
            let chunk = tokio::select! {
                c = body.next() => c,
                _ = stop.cancelled() => return false,
                _ = self.stop.cancelled() => return false,
            };
            let Some(Ok(chunk)) = chunk else {
                return false;
            };
            for event in parser.push(&chunk) {
                if let Some(id) = event.id {
                    *last_id = Some(id);
                }
                if event.data.trim().is_empty()
                    || event.event.as_deref().is_some_and(|e| e != "message")
                {
                    continue;
                }
                let finished = until.is_some_and(|want| {
                    matches!(jsonrpc::classify(event.data.as_bytes()), Ok(Kind::Response { ref id }) if id == want)
                });
                // Only an initialize result is worth parsing here.
                if event.data.contains("\"serverInfo\"")
                    && let Ok(v) = serde_json::from_str::<Value>(&event.data)
                {
                    self.observe(&v);
                }
                self.to_host(event.data);
                if finished {
                    return true;
                }
            }
        }
    }

    /// Opens the GET listen stream of a Streamable HTTP session (if the remote offers one).
    fn start_listening(self: &Arc<Self>) {
        let stop = CancellationToken::new();
        if let Some(old) = self.remote.lock().unwrap().streams.replace(stop.clone()) {
            old.cancel();
        }
        let bridge = self.clone();
        tokio::spawn(async move {
            let mut last_id: Option<String> = None;
            let mut failures = 0u32;
            while !stop.is_cancelled() && !bridge.stop.is_cancelled() {
                let mut req = bridge
                    .streamable_request(reqwest::Method::GET)
                    .header("accept", "text/event-stream");
                if let Some(id) = &last_id {
                    req = req.header("last-event-id", id);
                }
                match req.send().await {
                    Ok(resp) if resp.status().is_success() => {
                        failures = 0;
                        bridge.pump_sse(resp, None, &mut last_id, &stop).await;
                    }
                    // 405: no listen stream offered; 404: the session is gone (a request will
                    // notice and reconnect); 409: someone else is listening.
                    Ok(resp) if matches!(resp.status().as_u16(), 404 | 405 | 409) => return,
                    _ => failures += 1,
                }
                if failures > 3 {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500 * u64::from(failures.max(1)))) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }

    /// HTTP+SSE: connects (GET, endpoint event) if needed, then POSTs.
    async fn post_sse(self: &Arc<Self>, line: &[u8]) -> Result<(), Failure> {
        let endpoint = self.remote.lock().unwrap().endpoint.clone();
        let endpoint = match endpoint {
            Some(e) => e,
            None => self.connect_sse().await?,
        };
        let resp = self
            .http
            .post(&endpoint)
            .header("content-type", "application/json")
            .body(line.to_vec())
            .send()
            .await
            .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(Failure::SessionLost),
            s => Err(Failure::Status(s, resp.text().await.unwrap_or_default())),
        }
    }

    async fn connect_sse(self: &Arc<Self>) -> Result<String, Failure> {
        // Also for the auto fallback: the spec's procedure GETs the same URL.
        let url = self.config.url.clone();
        let resp = self
            .http
            .get(&url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
        if !resp.status().is_success() {
            let s = resp.status().as_u16();
            return Err(Failure::Status(s, resp.text().await.unwrap_or_default()));
        }
        let mut body = resp.bytes_stream();
        let mut parser = SseParser::default();
        let mut queued = vec![];
        let endpoint = 'found: loop {
            let Some(Ok(chunk)) = body.next().await else {
                return Err(Failure::Unreachable(
                    "the SSE stream ended before its endpoint event".into(),
                ));
            };
            for event in parser.push(&chunk) {
                if event.event.as_deref() == Some("endpoint") {
                    break 'found event.data;
                }
                queued.push(event);
            }
        };
        let endpoint = resolve(&url, &endpoint);
        let stop = CancellationToken::new();
        {
            let mut r = self.remote.lock().unwrap();
            r.mode = Some(Mode::Sse);
            r.endpoint = Some(endpoint.clone());
            if let Some(old) = r.streams.replace(stop.clone()) {
                old.cancel();
            }
        }
        tracing::info!(%endpoint, "connected over HTTP+SSE");
        let bridge = self.clone();
        tokio::spawn(async move {
            for event in queued {
                if event.event.as_deref().is_none_or(|e| e == "message") && !event.data.is_empty() {
                    bridge.to_host(event.data);
                }
            }
            loop {
                let chunk = tokio::select! {
                    c = body.next() => c,
                    _ = stop.cancelled() => return,
                    _ = bridge.stop.cancelled() => return,
                };
                let Some(Ok(chunk)) = chunk else { break };
                for event in parser.push(&chunk) {
                    if event.event.as_deref().is_none_or(|e| e == "message")
                        && !event.data.is_empty()
                    {
                        bridge.to_host(event.data);
                    }
                }
            }
            // The stream is gone: so is the session.
            tracing::warn!("the remote closed the SSE stream");
            bridge.remote.lock().unwrap().endpoint = None;
            bridge.start_reconnect();
        });
        Ok(endpoint)
    }

    fn start_reconnect(self: Arc<Self>) {
        if self.stop.is_cancelled() || self.reconnecting.load(Ordering::SeqCst) {
            return;
        }
        tokio::spawn(async move {
            self.reconnect_now().await;
        });
    }

    /// Drops the session, fails what is in flight, and (if the host has initialized) replays
    /// the handshake on a new session, retrying with backoff. True once reconnected.
    async fn reconnect_now(self: Arc<Self>) -> bool {
        if self.reconnecting.swap(true, Ordering::SeqCst) {
            // Someone else is at it; wait for them.
            while self.reconnecting.load(Ordering::SeqCst) && !self.stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return self.remote.lock().unwrap().session.is_some()
                || self.remote.lock().unwrap().endpoint.is_some();
        }
        {
            let mut r = self.remote.lock().unwrap();
            r.session = None;
            r.endpoint = None;
            if let Some(s) = r.streams.take() {
                s.cancel();
            }
        }
        self.fail_pending(
            "the connection to the remote MCP server was lost; the bridge is reconnecting",
        );
        let Some(params) = self.handshake.lock().unwrap().clone() else {
            self.reconnecting.store(false, Ordering::SeqCst);
            return false;
        };
        let mut delay = Duration::from_millis(250);
        let ok = loop {
            if self.stop.is_cancelled() {
                break false;
            }
            match self.replay_handshake(&params).await {
                Ok(()) => break true,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "reconnect failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.stop.cancelled() => break false,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        self.reconnecting.store(false, Ordering::SeqCst);
        if ok {
            tracing::info!("reconnected to the remote MCP server");
        }
        ok
    }

    async fn replay_handshake(self: &Arc<Self>, params: &Value) -> Result<(), String> {
        let id = format!(
            "\"{INTERNAL}{}\"",
            self.next_internal.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        self.internal.lock().unwrap().insert(id.clone(), tx);
        let line = jsonrpc::message(Some(&id), "initialize", Some(params));
        let answer = match self.post(&line, true).await {
            Ok(()) => tokio::time::timeout(Duration::from_secs(30), rx)
                .await
                .ok()
                .and_then(Result::ok),
            Err(f) => {
                self.internal.lock().unwrap().remove(&id);
                return Err(f.to_string());
            }
        };
        let Some(answer) = answer else {
            self.internal.lock().unwrap().remove(&id);
            return Err("no answer to initialize".into());
        };
        if answer.get("error").is_some() {
            return Err(format!("initialize refused: {}", answer["error"]));
        }
        let initialized = jsonrpc::message(None, "notifications/initialized", None);
        self.post(&initialized, false)
            .await
            .map_err(|_| "could not send initialized".to_string())?;
        if self.mode() == Mode::Streamable {
            self.start_listening();
        }
        Ok(())
    }

    /// Ends the Streamable HTTP session politely (DELETE) when the host goes away.
    async fn end_session(&self) {
        let has = self.remote.lock().unwrap().session.is_some();
        if has && self.mode() == Mode::Streamable {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                self.streamable_request(reqwest::Method::DELETE).send(),
            )
            .await;
        }
    }
}

/// The error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// `endpoint` (absolute, or relative to the SSE URL) as an absolute URL.
fn resolve(sse_url: &str, endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        return endpoint.to_string();
    }
    let origin_end = sse_url
        .find("://")
        .and_then(|i| sse_url[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(sse_url.len());
    if endpoint.starts_with('/') {
        format!("{}{endpoint}", &sse_url[..origin_end])
    } else {
        let base = &sse_url[..sse_url
            .rfind('/')
            .filter(|i| *i >= origin_end)
            .unwrap_or(sse_url.len())];
        format!("{base}/{endpoint}")
    }
}

#[derive(Debug, Default, PartialEq)]
struct SseEvent {
    event: Option<String>,
    id: Option<String>,
    data: String,
}

/// An incremental `text/event-stream` parser.
#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut events = vec![];
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if self.has_data || self.current.id.is_some() || self.current.event.is_some() {
                    events.push(std::mem::take(&mut self.current));
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
                None => (line.clone(), String::new()),
            };
            match field.as_str() {
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(&value);
                    self.has_data = true;
                }
                "event" => self.current.event = Some(value),
                "id" => self.current.id = Some(value),
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parsing_across_chunks() {
        let mut p = SseParser::default();
        assert!(
            p.push(b"event: endpoint\ndata: /messages?session_id=1")
                .is_empty()
        );
        let e = p.push(b"\n\n: ping\n\nid: 1-0\ndata:\n\nid: 1-1\nevent: message\ndata: {\"a\":\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].event.as_deref(), Some("endpoint"));
        assert_eq!(e[0].data, "/messages?session_id=1");
        assert_eq!((e[1].id.as_deref(), e[1].data.as_str()), (Some("1-0"), ""));
        let e = p.push(b"data: 1}\r\n\r\n");
        assert_eq!(e[0].data, "{\"a\":\n1}");
        assert_eq!(e[0].id.as_deref(), Some("1-1"));
    }

    #[test]
    fn endpoints_resolve_against_the_sse_url() {
        assert_eq!(
            resolve("http://h:1/sse", "/messages?session_id=x"),
            "http://h:1/messages?session_id=x"
        );
        assert_eq!(
            resolve("https://h/aare/sse", "messages?s=1"),
            "https://h/aare/messages?s=1"
        );
        assert_eq!(resolve("http://h/sse", "http://o/m"), "http://o/m");
    }
}
