//! Streamable HTTP for protocol revision 2026-07-28 on `/mcp`: one POST, one JSON-RPC request,
//! one answer, no session. The request's envelope and headers are checked here (the revision's
//! errors, with its HTTP statuses); the answer is `application/json` when the server answers
//! before saying anything else, else an SSE stream of the related notifications and then the
//! answer. A notification is acknowledged with 202 and dropped (the revision defines none a
//! client sends over HTTP; a client cancels by closing its request).
//!
//! Owns: this revision's wire rules. Must not touch: backends.

use std::{convert::Infallible, net::IpAddr, sync::Arc};

use bytes::{Buf, Bytes};
use futures::{Stream, stream};
use serde_json::Value;
use warp::{
    http::{HeaderMap, HeaderValue, Method, StatusCode},
    reply::Response,
    sse::Event,
};

use super::{
    forward,
    headers::{accepts, header},
    reply::{Parsed, error_reply, json_answer, reply, rpc_error_reply_for, sse_response},
    state::Http,
};
use crate::{
    gateway::{
        oauth::Principal,
        stateless::{Reply, ReplyStream, Request},
    },
    mcp::{
        jsonrpc::{self, Kind},
        modern, params,
    },
};

/// Whether a POST speaks the stateless revision by its header.
pub(super) fn by_header(headers: &HeaderMap) -> bool {
    header(headers, "mcp-protocol-version").is_some_and(modern::is_modern)
}

/// Whether a POST without a session speaks it by its body: one request whose envelope names a
/// revision (its headers are then checked against it).
pub(super) fn by_body(headers: &HeaderMap, parsed: &Parsed) -> bool {
    if header(headers, "mcp-session-id").is_some() || parsed.batch {
        return false;
    }
    match parsed.messages.as_slice() {
        [(line, Kind::Request { method, .. })] => {
            method == "server/discover"
                || serde_json::from_slice::<Value>(line).is_ok_and(|v| {
                    v["params"]["_meta"]
                        .get(modern::PROTOCOL_VERSION_KEY)
                        .is_some()
                })
        }
        _ => false,
    }
}

/// GET and DELETE of the stateless revision: it has no streams or sessions to open or end.
pub(super) fn no_stream() -> Response {
    let mut r = error_reply(
        StatusCode::METHOD_NOT_ALLOWED,
        "protocol revision 2026-07-28 has no sessions or listen streams: POST each request",
    );
    r.headers_mut()
        .insert("allow", HeaderValue::from_static("POST"));
    r
}

/// A header the revision routes by, sent more than once.
fn duplicated(headers: &HeaderMap) -> Option<&'static str> {
    ["mcp-protocol-version", "mcp-method", "mcp-name"]
        .into_iter()
        .find(|h| headers.get_all(*h).iter().count() > 1)
}

/// The `Mcp-Param-*` headers: lowercase name and value, each time one was sent.
fn param_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with(params::PREFIX))
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_string(), value)
        })
        .collect()
}

fn json_response(status: u16, text: String) -> Response {
    json_answer(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), text)
}

impl Http {
    /// A POST whose header names the stateless revision.
    pub(super) async fn modern_post(
        self: &Arc<Self>,
        headers: &HeaderMap,
        server: Option<&str>,
        client: IpAddr,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin + Send,
        who: Option<&Principal>,
    ) -> Response {
        if !accepts(headers, "application/json") {
            self.metrics.reject("accept");
            return error_reply(
                StatusCode::NOT_ACCEPTABLE,
                "Accept must list application/json",
            );
        }
        let parsed = match self.read_messages(headers, body).await {
            Ok(parsed) => parsed,
            Err(r) => return *r,
        };
        if let Err(r) = self.check_tool_scopes(server, "/mcp", who, &parsed.messages) {
            return *r;
        }
        self.modern_serve(headers, server, client, parsed, who)
            .await
    }

    /// Serves one message of the stateless revision.
    pub(super) async fn modern_serve(
        self: &Arc<Self>,
        headers: &HeaderMap,
        server: Option<&str>,
        client: IpAddr,
        parsed: Parsed,
        who: Option<&Principal>,
    ) -> Response {
        let single = if parsed.batch {
            None
        } else {
            parsed.messages.into_iter().next()
        };
        let (line, id, method) = match single {
            Some((line, Kind::Request { id, method })) => (line, id, method),
            Some((_, Kind::Notification { method })) => {
                let version = header(headers, "mcp-protocol-version").unwrap_or("");
                if !modern::is_modern(version) {
                    return self.refuse_stateless(None, &modern::unsupported(version));
                }
                tracing::debug!(%method, "stateless notification acknowledged and dropped");
                return reply(StatusCode::ACCEPTED, String::new());
            }
            _ => {
                self.metrics.reject("invalid_message");
                return rpc_error_reply_for(
                    StatusCode::BAD_REQUEST,
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "with protocol revision 2026-07-28 a body is one JSON-RPC request or notification",
                );
            }
        };
        // With --otel: the request's server span, open until its answer is written (or its
        // stream begins); the request goes on carrying it.
        let (_open, line) = if crate::telemetry::spans::on() {
            let (open, line) = crate::telemetry::spans::request(
                line,
                &id,
                &method,
                None,
                header(headers, "mcp-protocol-version"),
                header(headers, "traceparent"),
                header(headers, "tracestate"),
            );
            (Some(open), line)
        } else {
            (None, line)
        };
        if let Some(h) = duplicated(headers) {
            return self.refuse_stateless(
                Some(&id),
                &modern::Rejection {
                    code: modern::HEADER_MISMATCH,
                    message: format!("{h} header appears more than once"),
                    data: None,
                },
            );
        }
        let body: Value = serde_json::from_slice(&line).unwrap_or_default();
        let lookup = |name: &str| header(headers, name).map(str::to_string);
        let envelope = match modern::check(&body, Some(&lookup)) {
            Ok(e) => e,
            Err(rejection) => return self.refuse_stateless(Some(&id), &rejection),
        };
        let streams = accepts(headers, "text/event-stream");
        if method == "subscriptions/listen" && !streams {
            self.metrics.reject("accept");
            return rpc_error_reply_for(
                StatusCode::NOT_ACCEPTABLE,
                Some(&id),
                jsonrpc::INVALID_REQUEST,
                "subscriptions/listen answers with a stream: Accept must list text/event-stream",
            );
        }
        if self.is_shutting_down() {
            self.metrics.reject("shutting_down");
            return error_reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        }
        if let Some(r) = self
            .retry_elsewhere(headers, server, client, &body, &line)
            .await
        {
            return r;
        }
        let served = match self.serving(server) {
            Ok(s) => s,
            Err(r) => return *r,
        };
        let state_prefix = self
            .cluster
            .as_ref()
            .map_or_else(String::new, |c| format!("{}.", c.tag()));
        let mut rx = served.stateless.serve(Request {
            id,
            method,
            body,
            envelope,
            state_prefix,
            param_headers: param_headers(headers),
            caller: Some(Arc::new(self.caller(who, headers, client))),
        });
        let Some(first) = rx.recv().await else {
            return error_reply(StatusCode::BAD_GATEWAY, "the MCP server gave no answer");
        };
        match first {
            Reply::Final(text, code) => json_response(modern::status_for(code), text),
            Reply::Related(note) if streams => self.modern_stream(note, rx),
            Reply::Related(_) => {
                // No stream to carry notifications: the answer alone.
                loop {
                    match rx.recv().await {
                        Some(Reply::Final(text, code)) => {
                            return json_response(modern::status_for(code), text);
                        }
                        Some(Reply::Related(_)) => {}
                        None => {
                            return error_reply(
                                StatusCode::BAD_GATEWAY,
                                "the MCP server gave no answer",
                            );
                        }
                    }
                }
            }
        }
    }

    /// In a cluster, a retry whose `requestState` another replica issued goes to that replica
    /// (its call waits there); the answer comes back unchanged.
    async fn retry_elsewhere(
        &self,
        headers: &HeaderMap,
        server: Option<&str>,
        client: IpAddr,
        body: &Value,
        line: &Bytes,
    ) -> Option<Response> {
        let cluster = self.cluster.as_ref()?;
        if headers.contains_key(forward::PEER_HEADER) {
            return None;
        }
        let (tag, _) = body["params"]["requestState"].as_str()?.split_once('.')?;
        if tag == cluster.tag() {
            return None;
        }
        let peer = cluster.peer_by_tag(tag)?;
        let secret = cluster.secret()?;
        let path = match server {
            Some(name) => format!("/servers/{name}/mcp"),
            None => "/mcp".to_string(),
        };
        let request = forward::Request {
            method: &Method::POST,
            path: &path,
            query: "",
            headers,
            body: line.clone(),
            client,
        };
        Some(
            match self
                .forwarder
                .forward(cluster, &peer, &secret, request)
                .await
            {
                Ok(r) => r,
                Err(f) => {
                    tracing::info!(replica = %peer.replica, failure = ?f, "the replica waiting for this retry cannot be asked");
                    json_response(
                    400,
                    modern::Rejection::invalid_params(
                        "the gateway replica that issued this requestState is gone; send the request again without it",
                    )
                    .response(&serde_json::to_string(&body["id"]).unwrap_or_default()),
                )
                }
            },
        )
    }

    /// The revision's error for a request refused before any server saw it.
    fn refuse_stateless(&self, id: Option<&str>, r: &modern::Rejection) -> Response {
        self.metrics.reject("stateless_envelope");
        json_response(
            modern::status_for(Some(r.code)),
            r.response(id.unwrap_or("null")),
        )
    }

    /// An SSE answer: `first`, what follows, and the final response last.
    fn modern_stream(&self, first: String, rx: ReplyStream) -> Response {
        let rest = stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await? {
                Reply::Related(text) => Some((text, Some(rx))),
                Reply::Final(text, _) => Some((text, None)),
            }
        });
        let events = futures::StreamExt::map(
            futures::StreamExt::chain(stream::iter([first]), rest),
            |text| Ok::<_, Infallible>(Event::default().event("message").data(text)),
        );
        sse_response(self.config.keepalive, events)
    }
}
