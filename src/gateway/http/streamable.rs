//! Streamable HTTP (`/mcp`, revisions 2025-03-26, 2025-06-18, 2025-11-25) over the same
//! sessions and backends as HTTP+SSE: POST carries messages (answered with JSON or an SSE
//! stream), GET opens the listen stream or resumes a lost one (`Last-Event-ID`), DELETE ends the
//! session. Which stream a message goes on is decided in [`streams`](super::streams).
//!
//! A POST whose first routed message is the response to its single request is answered with
//! `application/json`; if the server sends anything related first (progress, a sampling
//! request…), the answer becomes an SSE stream carrying those messages and then the response.
//!
//! Owns: this transport's wire rules (headers, statuses, versions). Must not touch: backends.

use std::{convert::Infallible, net::IpAddr, sync::Arc};

use bytes::Buf;
use futures::{Stream, StreamExt, stream};
use serde_json::json;
use tokio::sync::mpsc;
use uuid::Uuid;
use warp::{
    http::{HeaderMap, HeaderValue, StatusCode},
    reply::Response,
    sse::Event,
};

use super::{
    headers::{accepts, event_position, header},
    modern,
    reply::{error_reply, json_answer, json_reply, reply, rpc_error_reply_for, sse_response},
    state::Http,
    streams::{LISTEN, McpSession, Reader},
};
use crate::{
    config::Backend as BackendKind,
    gateway::{
        cluster::entry::{RoamState, Transport},
        oauth::Principal,
        session::CloseCause,
    },
    mcp::{
        jsonrpc::{self, Kind},
        version,
    },
};

impl Http {
    /// `MCP-Protocol-Version`, when sent, must be one this transport serves; the refusal
    /// carries the request's raw `id` when there is one.
    fn check_version(
        &self,
        headers: &HeaderMap,
        id: Option<&str>,
    ) -> Result<Option<String>, Box<Response>> {
        match header(headers, "mcp-protocol-version") {
            None => Ok(None),
            Some(v) if version::STREAMABLE_HTTP.contains(&v) => Ok(Some(v.to_string())),
            Some(v) => {
                self.metrics.reject("protocol_version");
                let mut rejection = crate::mcp::modern::unsupported(v);
                rejection.message = format!(
                    "unsupported MCP-Protocol-Version {v:?}; this server speaks {} over Streamable HTTP (initialize to negotiate) and {} per request",
                    version::STREAMABLE_HTTP.join(", "),
                    version::MODERN.join(", ")
                );
                let mut r = reply(
                    StatusCode::BAD_REQUEST,
                    rejection.response(id.unwrap_or("null")),
                );
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
                Err(Box::new(r))
            }
        }
    }

    /// The session named by `Mcp-Session-Id` on the server at this path: 400 when missing, 404
    /// when unknown, ended, or another server's.
    fn mcp_session(
        &self,
        headers: &HeaderMap,
        server: Option<&str>,
    ) -> Result<Arc<McpSession>, Box<Response>> {
        let wanted = self.registry.name_at(server);
        let Some(raw) = header(headers, "mcp-session-id") else {
            self.metrics.reject("missing_session");
            return Err(Box::new(error_reply(
                StatusCode::BAD_REQUEST,
                "missing Mcp-Session-Id header; send initialize first",
            )));
        };
        let found = Uuid::parse_str(raw.trim())
            .ok()
            .and_then(|id| self.mcp.get(&id))
            .filter(|s| !s.session.closed.is_cancelled())
            .filter(|s| *s.server == *wanted);
        found.ok_or_else(|| {
            self.metrics.reject("unknown_session");
            Box::new(error_reply(
                StatusCode::NOT_FOUND,
                "unknown or expired session; initialize a new one",
            ))
        })
    }

    pub(super) async fn mcp_post(
        self: &Arc<Self>,
        headers: &HeaderMap,
        server: Option<&str>,
        client: IpAddr,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
        who: Option<&Principal>,
    ) -> Response {
        if modern::by_header(headers) {
            return self.modern_post(headers, server, client, body, who).await;
        }
        if !(accepts(headers, "application/json") && accepts(headers, "text/event-stream")) {
            self.metrics.reject("accept");
            return error_reply(
                StatusCode::NOT_ACCEPTABLE,
                "Accept must list both application/json and text/event-stream",
            );
        }
        let mut parsed = match self.read_messages(headers, body).await {
            Ok(p) => p,
            Err(r) => return *r,
        };
        let single_id = match parsed.messages.as_slice() {
            [(_, Kind::Request { id, .. })] if !parsed.batch => Some(id.as_str()),
            _ => None,
        };
        let version = match self.check_version(headers, single_id) {
            Ok(v) => v,
            Err(r) => return *r,
        };
        let init = parsed.messages.iter().find_map(|(line, kind)| match kind {
            Kind::Request { id, method } if method == "initialize" => Some((id.clone(), line)),
            _ => None,
        });
        let init_params = init.as_ref().and_then(|(_, line)| {
            serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .map(|v| v["params"].clone())
        });
        let init = init.map(|(id, _)| id);
        if let Err(r) = self.check_tool_scopes(server, "/mcp", who, &parsed.messages) {
            return *r;
        }
        if modern::by_body(headers, &parsed) {
            // A stateless request whose header is missing or wrong: its checks answer it.
            return self
                .modern_serve(headers, server, client, parsed, who)
                .await;
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
        let mut opened = super::traced::opening(headers, &mut parsed.messages);
        let (mcp, created) = match init {
            Some(id) => {
                let _in = opened.as_ref().map(|(_, open)| open.span().enter());
                match self.mcp_open(client, server, headers, &id, who) {
                    Ok(s) => (s, true),
                    Err(r) => return *r,
                }
            }
            None => match self.mcp_session(headers, server) {
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
        mcp.session.set_caller(self.caller(who, headers, client));
        // Dropped on any way out below: no stream is left waiting for answers nobody reads.
        let stream = (!requests.is_empty()).then(|| mcp.open_stream(&requests, &parsed.messages));
        // With --otel: a server span per request, open until its answer is on its way.
        for (line, kind) in parsed.messages {
            let version = mcp.version();
            let (current, line) = super::traced::traced(
                &mcp.session,
                version.as_deref(),
                headers,
                line,
                &kind,
                &mut opened,
            );
            if mcp.restored
                && matches!(&kind, Kind::Notification { method } if method == "notifications/initialized")
            {
                continue;
            }
            self.cancel_elsewhere(server, headers, client, &line, &kind);
            let forwarded = mcp.sessions.forward(&mcp.session, line, &kind);
            if let Err(e) = tracing::Instrument::instrument(forwarded, current).await {
                return self.forward_refused(e);
            }
        }
        let Some(mut stream) = stream else {
            self.sync_subscriptions(&mcp).await;
            let mut r = reply(StatusCode::ACCEPTED, String::new());
            if let Ok(v) = HeaderValue::from_str(&mcp.session.id_str) {
                r.headers_mut().insert("mcp-session-id", v);
            }
            return r;
        };
        stream.forwarded();
        let mut response = self.answer_stream(&mcp, stream, requests.len()).await;
        if created {
            // A failed handshake leaves no session behind.
            if response.status() != StatusCode::OK {
                mcp.sessions.close(&mcp.session.id, CloseCause::ClientGone);
            } else if let Some(cluster) = &self.cluster {
                // In the directory before the client can send its next request anywhere.
                let in_process = self
                    .registry
                    .serving(server)
                    .is_some_and(|s| s.config.backend == BackendKind::InProcess);
                let roam = in_process.then(|| RoamState {
                    initialize: init_params.unwrap_or_else(|| json!({})),
                    version: mcp.version(),
                    subscriptions: vec![],
                    active: vec![],
                    owner: who.map(|p| p.subject.clone()),
                });
                cluster
                    .register(
                        &mcp.session.id_str,
                        Transport::Mcp,
                        server,
                        roam,
                        &mcp.session.closed,
                    )
                    .await;
            }
        }
        self.sync_subscriptions(&mcp).await;
        // Every answer names its session, for load balancers that stick on it.
        if let Ok(v) = HeaderValue::from_str(&mcp.session.id_str) {
            response.headers_mut().insert("mcp-session-id", v);
        }
        response
    }

    /// A roaming session's subscriptions or active tools changed: the directory keeps them.
    async fn sync_subscriptions(&self, mcp: &McpSession) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if let Some(subscriptions) = mcp.subscriptions_changed() {
            cluster
                .update_subscriptions(&mcp.session.id_str, subscriptions)
                .await;
        }
        if let Some(active) = mcp.active_changed() {
            cluster.update_active(&mcp.session.id_str, active).await;
        }
    }

    /// Opens a session for an `initialize` request.
    fn mcp_open(
        self: &Arc<Self>,
        client: IpAddr,
        server: Option<&str>,
        headers: &HeaderMap,
        init_id: &str,
        who: Option<&Principal>,
    ) -> Result<Arc<McpSession>, Box<Response>> {
        if self.is_shutting_down() {
            self.metrics.reject("shutting_down");
            return Err(Box::new(error_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down",
            )));
        }
        let served = self.serving(server)?;
        let env = self.session_env(&served, headers)?;
        let (session, rx) = match served.open(client, &env) {
            Ok(s) => s,
            Err(e) => return Err(Box::new(self.open_refused(e, &served))),
        };
        if let Some(p) = who {
            session.bind_owner(&p.subject);
        }
        let mcp = McpSession::new(session, served.sessions.clone(), served.name(), init_id);
        self.attach(mcp.clone(), rx);
        Ok(mcp)
    }

    /// Makes `mcp` reachable and routes its server's messages to its streams.
    fn attach(self: &Arc<Self>, mcp: Arc<McpSession>, rx: mpsc::UnboundedReceiver<String>) {
        self.mcp.insert(mcp.clone());
        // Messages from the server are routed as they are delivered, on the delivering task.
        let limit = self.config.session_buffer_bytes;
        let router = Arc::downgrade(&mcp);
        mcp.session.redirect(
            rx,
            Box::new(move |text| router.upgrade().is_none_or(|m| m.route(text, limit))),
        );
        // When the session ends, its streams end after what they hold.
        let (gateway, watched) = (self.clone(), mcp);
        tokio::spawn(async move {
            watched.session.closed.cancelled().await;
            watched.end();
            gateway.mcp.remove(&watched.session.id);
        });
    }

    /// Restores a roaming session here from its directory entry: a fresh in-process server
    /// gets the client's handshake again (its answers go to no stream) and its subscriptions.
    pub(super) async fn mcp_restore(
        self: &Arc<Self>,
        id: Uuid,
        server: Option<&str>,
        state: RoamState,
        client: IpAddr,
    ) -> Result<(), Box<Response>> {
        let _one_at_a_time = self.restoring.lock().await;
        if self.mcp.get(&id).is_some() {
            return Ok(());
        }
        let served = self.serving(server)?;
        if served.config.backend != BackendKind::InProcess {
            // Only the in-process backend roams; a mixed cluster cannot restore this one here.
            return Err(Box::new(error_reply(
                StatusCode::NOT_FOUND,
                "unknown or expired session; initialize a new one",
            )));
        }
        if self.is_shutting_down() {
            self.metrics.reject("shutting_down");
            return Err(Box::new(error_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down",
            )));
        }
        let (session, rx) = served
            .sessions
            .open_with_id(id, client, &[])
            .map_err(|e| Box::new(self.open_refused(e, &served)))?;
        if let Some(owner) = &state.owner {
            session.bind_owner(owner);
        }
        let mcp = McpSession::restored(
            session,
            served.sessions.clone(),
            served.name(),
            state.version.clone(),
            &state.subscriptions,
        );
        self.attach(mcp.clone(), rx);
        let replay = super::replicas::replay(&state);
        for line in replay {
            let Ok(kind) = jsonrpc::classify(&line) else {
                continue;
            };
            if let Err(e) = served.sessions.forward(&mcp.session, line, &kind).await {
                served.sessions.close(&id, CloseCause::ChildExited);
                return Err(Box::new(self.forward_refused(e)));
            }
        }
        if let Some(cluster) = &self.cluster {
            cluster.adopted(&mcp.session.id_str, server, state);
        }
        tracing::info!(session = %mcp.session.id_str, "roaming session restored here");
        Ok(())
    }

    /// The answer to a POST with requests: JSON when the response comes first and alone, else
    /// an SSE stream of everything routed to `stream` up to the last response.
    async fn answer_stream(
        &self,
        mcp: &Arc<McpSession>,
        reader: Reader,
        requests: usize,
    ) -> Response {
        let stream = reader.stream;
        let first = loop {
            let changed = mcp.changed().notified();
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
            return json_answer(StatusCode::OK, first[0].2.to_string());
        }
        self.sse_reply(mcp.clone(), reader, 0)
    }

    fn event_id(&self, stream: u64, seq: u64) -> String {
        format!("{}{stream}-{seq}", self.event_tag())
    }

    /// An SSE response carrying `stream`'s events after `cursor`.
    fn sse_reply(&self, mcp: Arc<McpSession>, reader: Reader, cursor: u64) -> Response {
        let stream = reader.stream;
        let priming = mcp.priming(stream);
        let prime = (priming && cursor == 0)
            .then(|| Ok::<_, Infallible>(Event::default().id(self.event_id(stream, 0)).data("")));
        let tag = self.event_tag();
        let (in_flight, end) = self.drain.stream(stream == LISTEN);
        let events = stream::unfold(
            (mcp, cursor, (reader, in_flight), false),
            move |(mcp, cursor, reader, finished)| {
                let (tag, end) = (tag.clone(), end.clone());
                async move {
                    if finished {
                        return None;
                    }
                    loop {
                        let waiter = mcp.clone();
                        let changed = waiter.changed().notified();
                        tokio::pin!(changed);
                        changed.as_mut().enable();
                        let (events, done) = mcp.after(stream, cursor);
                        if let Some(last) = events.last() {
                            let next = last.0;
                            let batch: Vec<Result<Event, Infallible>> = events
                                .into_iter()
                                .map(|(seq, _, text)| {
                                    Ok(Event::default()
                                        .id(format!("{tag}{stream}-{seq}"))
                                        .event("message")
                                        .data(text.as_ref()))
                                })
                                .collect();
                            if stream == LISTEN {
                                mcp.listen_sent(next);
                            }
                            return Some((stream::iter(batch), (mcp, next, reader, done)));
                        }
                        if done {
                            return None;
                        }
                        if !super::drain::Drain::waited(end.as_ref(), changed).await {
                            return None;
                        }
                    }
                }
            },
        )
        .flatten();
        sse_response(self.config.keepalive, stream::iter(prime).chain(events))
    }

    pub(super) fn mcp_get(&self, headers: &HeaderMap, server: Option<&str>) -> Response {
        if modern::by_header(headers) {
            return modern::no_stream();
        }
        if !accepts(headers, "text/event-stream") {
            self.metrics.reject("accept");
            return error_reply(
                StatusCode::NOT_ACCEPTABLE,
                "Accept must list text/event-stream",
            );
        }
        if let Err(r) = self.check_version(headers, None) {
            return *r;
        }
        let mcp = match self.mcp_session(headers, server) {
            Ok(s) => s,
            Err(r) => return *r,
        };
        // Resumption: the stream and position are in the event id.
        let resume = header(headers, "last-event-id").and_then(event_position);
        if let Some((stream, seq)) = resume
            && let Some(reader) = mcp.resume(stream)
        {
            tracing::debug!(session = %mcp.session.id_str, stream, seq, "stream resumed");
            return self.sse_reply(mcp, reader, seq);
        }
        // Resuming the listen stream, or picking up what waited for a listener.
        let last_seq = resume.and_then(|(stream, seq)| (stream == LISTEN).then_some(seq));
        let Some((cursor, reader)) = mcp.listen(last_seq) else {
            self.metrics.reject("second_listen_stream");
            return error_reply(
                StatusCode::CONFLICT,
                "this session already has a GET stream open",
            );
        };
        self.sse_reply(mcp, reader, cursor)
    }

    pub(super) fn mcp_delete(&self, headers: &HeaderMap, server: Option<&str>) -> Response {
        if modern::by_header(headers) {
            return modern::no_stream();
        }
        if let Err(r) = self.check_version(headers, None) {
            return *r;
        }
        match self.mcp_session(headers, server) {
            Ok(mcp) => {
                mcp.sessions.close(&mcp.session.id, CloseCause::ClientGone);
                json_reply(StatusCode::OK, json!({"ended": mcp.session.id_str}))
            }
            Err(r) => *r,
        }
    }
}
