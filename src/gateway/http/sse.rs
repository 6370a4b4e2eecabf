//! HTTP+SSE (2024-11-05): `GET /sse` opens a session whose first event names the POST endpoint;
//! `POST /messages?session_id=…` takes one message (or a batch) and answers 202, the reply
//! travelling on the stream.
//!
//! Owns: this transport's wire rules. Must not touch: backends.

use std::{convert::Infallible, net::IpAddr, sync::Arc};

use bytes::Buf;
use futures::{Stream, StreamExt, stream};
use uuid::Uuid;
use warp::{
    http::{HeaderMap, HeaderValue, StatusCode},
    reply::Response,
    sse::Event,
};

use super::{
    headers::session_param,
    reply::{error_reply, reply, sse_response},
    served::prefix,
    state::Http,
};
use crate::{
    gateway::oauth::Principal,
    gateway::{
        cluster::entry::Transport,
        session::{CloseCause, Sessions},
    },
    mcp::jsonrpc::{self, Kind},
};

impl Http {
    pub(super) async fn open_stream(
        self: &Arc<Self>,
        client: IpAddr,
        server: Option<&str>,
        headers: &HeaderMap,
        who: Option<&Principal>,
    ) -> Response {
        if self.is_shutting_down() {
            self.metrics.reject("shutting_down");
            return error_reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        }
        let served = match self.serving(server) {
            Ok(s) => s,
            Err(r) => return *r,
        };
        let env = match self.session_env(&served, headers) {
            Ok(e) => e,
            Err(r) => return *r,
        };
        let (session, rx) = match served.open(client, &env) {
            Ok(s) => s,
            Err(e) => return self.open_refused(e, &served),
        };
        if let Some(p) = who {
            session.bind_owner(&p.subject);
        }
        if let Some(cluster) = &self.cluster {
            // Pinned to this replica (its stream is here); others forward its POSTs here.
            cluster
                .register(
                    &session.id_str,
                    Transport::Sse,
                    server,
                    None,
                    &session.closed,
                )
                .await;
        }
        let id_header = HeaderValue::from_str(&session.id_str).ok();
        let endpoint = format!(
            "{}{}/messages?session_id={}",
            self.config.public_url,
            prefix(server),
            session.id_str
        );
        let first = stream::once(async move {
            Ok::<_, Infallible>(Event::default().event("endpoint").data(endpoint))
        });
        let on_drop = CloseOnDrop {
            sessions: served.sessions.clone(),
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
        let mut r = sse_response(self.config.keepalive, first.chain(messages));
        let h = r.headers_mut();
        // The session id, for load balancers that stick on it (HAProxy stick tables).
        if let Some(v) = id_header {
            h.insert("mcp-session-id", v);
        }
        r
    }

    /// `POST /messages`: every message of the body to the session, then 202.
    pub(super) async fn post(
        self: &Arc<Self>,
        query: &str,
        server: Option<&str>,
        headers: &HeaderMap,
        client: std::net::IpAddr,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
        who: Option<&Principal>,
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
        let Some((served, session)) = self.registry.holding(server, &id) else {
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
        if let Err(r) = self.check_tool_scopes(server, "/sse", who, &messages) {
            return *r;
        }
        session.set_caller(self.caller(who, headers, client));
        for (part, kind) in messages {
            if let Kind::Request { id, method } = &kind
                && method == "server/discover"
            {
                // The 2026-07-28 probe: answer at once so the client falls back to initialize.
                served.sessions.answer(
                    &session,
                    jsonrpc::error_response(
                        id,
                        jsonrpc::METHOD_NOT_FOUND,
                        "server/discover is not supported on the HTTP+SSE transport; use initialize",
                    ),
                );
                continue;
            }
            // With --otel: a server span per request, open until its answer is on its way.
            let (current, part) =
                super::traced::traced(&session, None, headers, part, &kind, &mut None);
            let forwarded = served.sessions.forward(&session, part, &kind);
            if let Err(e) = tracing::Instrument::instrument(forwarded, current).await {
                return self.forward_refused(e);
            }
        }
        reply(StatusCode::ACCEPTED, "Accepted".into())
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
