//! The client half of MCP over HTTP: a connection to a remote MCP server that the `--connect`
//! bridge (stdio hosts) and the gateway's remote servers both drive, each as its "host".
//!
//! - Transport: Streamable HTTP or HTTP+SSE, forced with `--transport` or detected: a URL ending
//!   in `/sse` is SSE; otherwise the host's `initialize` is POSTed (Streamable HTTP) and a 4xx
//!   answer makes the client fall back to SSE (the spec's backwards-compatibility procedure).
//! - Every host request is remembered until its response arrives. When the remote goes away
//!   (connection refused, stream ended, session expired) the requests in flight get a JSON-RPC
//!   error at once, and the client reconnects with backoff, replaying the host's handshake
//!   (`initialize` + `initialized`, answers swallowed) on a new session. Requests sent while it
//!   reconnects are refused with an error rather than left waiting.
//! - Streamable HTTP answers may be JSON or SSE; an SSE answer cut short is resumed with
//!   `Last-Event-ID`. A GET listen stream carries the remote's unrelated messages.
//!
//! This file is the host's side and the choice of transport; [`streamable`] and [`sse`] are the
//! two HTTP clients, [`modern`] the 2026-07-28 revision, [`reconnect`] the recovery, [`events`]
//! SSE parsing, [`oauth`] the OAuth client; [`connection`] is the handle its users hold.
//!
//! Owns: the client half of MCP over HTTP. Must not touch: the gateway or stdio (it shares only
//! [`crate::mcp`] with them).

use parking_lot::Mutex;
use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub mod connection;
mod events;
mod modern;
mod oauth;
mod reconnect;
mod sse;
mod streamable;

use crate::config::{BridgeConfig, TransportChoice};
use crate::mcp::jsonrpc::{self, Kind};

const INTERNAL: &str = "aareguru-bridge-";

/// Whether `pem` is a private key the OAuth client can sign its assertions with
/// (`private_key_jwt`); the reason when not.
pub fn check_private_key(pem: &str) -> Result<(), String> {
    oauth::assertion::Signer::new(pem, None).map(|_| ())
}

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
    /// Stateless (2026-07-28) requests in flight, by raw id: cancelling one closes its POST.
    stateless: Mutex<std::collections::HashMap<String, CancellationToken>>,
    /// The `Mcp-Param-*` headers the remote's tools declare (from the host's stateless
    /// listings), sent with its stateless calls.
    tool_headers: Mutex<std::collections::HashMap<String, crate::mcp::params::ParamHeaders>>,
    /// Raw ids of stateless `tools/list` requests in flight (their answers are read).
    listing: Mutex<HashSet<String>>,
    /// OAuth, when the remote asks for it.
    oauth: Arc<oauth::OAuthClient>,
    /// The last `retry:` an SSE stream asked for (the wait before reconnecting it).
    sse_retry: Mutex<Option<Duration>>,
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
    /// The remote wants (another) OAuth token: 401, or 403 `insufficient_scope`.
    Auth {
        status: u16,
        challenge: Option<String>,
        /// The token the refused request carried.
        sent: Option<String>,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(e) => f.write_str(e),
            Failure::SessionLost => f.write_str("session lost"),
            Failure::Status(status, body) => write!(f, "HTTP {status}: {body}"),
            Failure::Auth { status, .. } => write!(f, "HTTP {status}: authorization required"),
        }
    }
}

impl Bridge {
    pub(super) fn new(
        config: BridgeConfig,
        oauth: Option<Arc<oauth::OAuthClient>>,
        out: mpsc::UnboundedSender<String>,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Bridge>> {
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
        let oauth = match oauth {
            Some(shared) => shared,
            None => Arc::new(
                oauth::OAuthClient::new(config.oauth.clone(), &config.url)
                    .map_err(|e| anyhow::anyhow!("--oauth-private-key: {e}"))?,
            ),
        };
        Ok(Arc::new(Bridge {
            oauth,
            config,
            http,
            out,
            remote: Mutex::default(),
            pending: Mutex::default(),
            handshake: Mutex::default(),
            internal: Mutex::default(),
            next_internal: AtomicU64::new(1),
            stateless: Mutex::default(),
            tool_headers: Mutex::default(),
            listing: Mutex::default(),
            sse_retry: Mutex::default(),
            reconnecting: AtomicBool::new(false),
            stop,
        }))
    }
}

impl Bridge {
    /// A message for the host; responses settle pending requests, internal ones are swallowed.
    fn to_host(&self, text: String) {
        if let Ok(Kind::Response { id }) = jsonrpc::classify(text.as_bytes()) {
            // Ours only when we issued exactly this id: a host may use any id it likes.
            let ours = self.internal.lock().remove(&id);
            if let Some(tx) = ours {
                let _ = tx.send(serde_json::from_str(&text).unwrap_or(Value::Null));
                return;
            }
            let host_asked = self.pending.lock().remove(&id);
            if !host_asked && id.starts_with(&format!("\"{INTERNAL}")) {
                // A late answer to a request of ours that gave up waiting.
                return;
            }
            if self.listing.lock().remove(&id) {
                self.learn_tools(&text);
            }
        }
        let _ = self.out.send(text);
    }

    fn fail(&self, id: &str, message: &str) {
        self.pending.lock().remove(id);
        let _ = self.out.send(jsonrpc::error_response(
            id,
            jsonrpc::INTERNAL_ERROR,
            message,
        ));
    }

    fn fail_pending(&self, message: &str) {
        let ids: Vec<String> = self.pending.lock().drain().collect();
        for id in ids {
            let _ = self.out.send(jsonrpc::error_response(
                &id,
                jsonrpc::INTERNAL_ERROR,
                message,
            ));
        }
    }

    fn mode(&self) -> Mode {
        let decided = self.remote.lock().mode;
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
            Kind::Request { id, .. }
                if line
                    .windows(crate::mcp::modern::PROTOCOL_VERSION_KEY.len())
                    .any(|w| w == crate::mcp::modern::PROTOCOL_VERSION_KEY.as_bytes()) =>
            {
                // Stateless requests need no session: they go out even while reconnecting.
                let body: Value = serde_json::from_slice(&line).unwrap_or_default();
                if let Some(version) = modern::revision_of(&body) {
                    self.pending.lock().insert(id.clone());
                    tokio::spawn(self.send_stateless(body, id.clone(), version));
                    return;
                }
                self.from_host_session(line, kind).await;
            }
            _ => self.from_host_session(line, kind).await,
        }
    }

    /// A host message of the handshake-era revisions, over the session.
    async fn from_host_session(self: Arc<Self>, line: Bytes, kind: Kind) {
        match &kind {
            Kind::Request { id, method } => {
                if method == "initialize" {
                    let params = serde_json::from_slice::<Value>(&line)
                        .map(|v| v["params"].clone())
                        .unwrap_or(Value::Null);
                    *self.handshake.lock() = Some(params);
                }
                if self.reconnecting.load(Ordering::SeqCst) {
                    let msg = "the remote MCP server is unreachable; the bridge is reconnecting, try again shortly";
                    let _ =
                        self.out
                            .send(jsonrpc::error_response(id, jsonrpc::INTERNAL_ERROR, msg));
                    return;
                }
                self.pending.lock().insert(id.clone());
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
                if matches!(&kind, Kind::Notification { method } if method == "notifications/cancelled")
                    && self.cancel_stateless(&line)
                {
                    return;
                }
                if self.reconnecting.load(Ordering::SeqCst) {
                    return;
                }
                match self.post_authorized(&line, false).await {
                    // The handshake is done: the session's listen stream carries what the
                    // server sends outside any request (its own requests, notifications).
                    Ok(())
                        if matches!(&kind, Kind::Notification { method } if method == "notifications/initialized")
                            && self.mode() == Mode::Streamable =>
                    {
                        self.start_listening();
                    }
                    Ok(()) => {}
                    Err(f) => {
                        self.describe(&f, "a notification");
                        if matches!(f, Failure::Unreachable(_) | Failure::SessionLost) {
                            self.clone().start_reconnect();
                        }
                    }
                }
            }
        }
    }

    fn describe(&self, f: &Failure, what: &str) {
        tracing::warn!(error = %f, "cannot deliver {what} to the remote MCP server");
    }

    async fn send_request(self: Arc<Self>, line: Bytes, id: String, method: String) {
        let mut result = self.post_authorized(&line, true).await;
        if matches!(result, Err(Failure::SessionLost)) && method != "initialize" {
            // The remote restarted or expired our session: a new session, then once more.
            if self.clone().reconnect_now().await {
                self.pending.lock().insert(id.clone());
                result = self.post_authorized(&line, true).await;
            }
        }
        match result {
            Ok(()) => {}
            Err(Failure::Status(0, message)) => {
                // Authorization could not be obtained.
                self.fail(&id, &message);
            }
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
                self.pending.lock().remove(&id);
                let _ = self.out.send(jsonrpc::error_response(&id, code, &message));
            }
            Err(Failure::Auth { status, .. }) => {
                self.fail(
                    &id,
                    &format!("the remote MCP server refused the authorization (HTTP {status}) even after a new token"),
                );
            }
            Err(f @ (Failure::Unreachable(_) | Failure::SessionLost)) => {
                self.describe(&f, "a request");
                self.fail(
                    &id,
                    &format!("the remote MCP server could not be reached ({f}); the bridge is reconnecting"),
                );
                if method != "initialize" || self.handshake.lock().is_some() {
                    self.clone().start_reconnect();
                }
            }
        }
    }

    /// [`Bridge::post`], getting an OAuth token when the remote asks for one (a few times at
    /// most, for step-ups); a failed authorization is `Status(0, why)`.
    async fn post_authorized(
        self: &Arc<Self>,
        line: &[u8],
        is_request: bool,
    ) -> Result<(), Failure> {
        let mut attempt = 0;
        loop {
            match self.post(line, is_request).await {
                Err(Failure::Auth {
                    status,
                    challenge,
                    sent,
                }) if attempt < oauth::MAX_ATTEMPTS => {
                    attempt += 1;
                    tracing::info!(
                        status,
                        attempt,
                        "the remote MCP server asks for OAuth authorization"
                    );
                    if let Err(e) = self
                        .oauth
                        .authorize(status, challenge.as_deref(), sent.as_deref())
                        .await
                    {
                        tracing::warn!(error = %e, "OAuth authorization failed");
                        return Err(Failure::Status(
                            0,
                            format!(
                                "the remote MCP server answered HTTP {status} (authorization required) and OAuth authorization failed: {e}; pass --api-key or --header if it takes a static credential"
                            ),
                        ));
                    }
                }
                other => return other,
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
                        self.remote.lock().mode = Some(Mode::Sse);
                        self.post_sse(line).await
                    }
                    other => {
                        if is_init && other.is_ok() {
                            self.remote.lock().mode = Some(Mode::Streamable);
                        }
                        other
                    }
                }
            }
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
