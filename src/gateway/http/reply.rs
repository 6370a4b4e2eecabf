//! Responses and request bodies the transports share: JSON and JSON-RPC error replies, reading a
//! POST body under the size limit, and turning it into checked JSON-RPC messages.
//!
//! Owns: the shape of HTTP answers. Must not touch: routing or sessions.

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::{json, value::RawValue};
use warp::{
    http::{HeaderMap, HeaderValue, StatusCode},
    reply::Response,
};

use super::state::Http;
use crate::{
    gateway::{
        servers::Served,
        session::{ForwardError, OpenError},
    },
    mcp::jsonrpc::{self, Kind},
};

/// A plain response with this body and status.
pub(super) fn reply(status: StatusCode, body: String) -> Response {
    let mut r = warp::reply::Reply::into_response(body);
    *r.status_mut() = status;
    r
}

/// A JSON body with a status.
pub(super) fn json_reply(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = reply(status, body.to_string());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// A JSON-RPC answer as a POST's body; one that a limit refused gets 429 and `Retry-After`.
pub(super) fn json_answer(status: StatusCode, text: String) -> Response {
    let limited = jsonrpc::limited_retry_after(text.as_bytes());
    let status = limited.map_or(status, |_| StatusCode::TOO_MANY_REQUESTS);
    let mut r = reply(status, text);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(seconds) = limited {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
    }
    r
}

pub(super) fn error_reply(status: StatusCode, message: &str) -> Response {
    json_reply(status, json!({"error": message}))
}

/// A JSON-RPC error as an HTTP error body (for messages that never reach a session).
pub(super) fn rpc_error_reply(status: StatusCode, code: i64, message: &str) -> Response {
    rpc_error_reply_for(status, None, code, message)
}

/// Like [`rpc_error_reply`], answering the request with raw id `id`.
pub(super) fn rpc_error_reply_for(
    status: StatusCode,
    id: Option<&str>,
    code: i64,
    message: &str,
) -> Response {
    let mut r = reply(
        status,
        jsonrpc::error_response(id.unwrap_or("null"), code, message),
    );
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// An SSE response of `events`, with keep-alive comments every `keepalive` and the headers
/// that keep proxies from buffering it.
pub(super) fn sse_response<S>(keepalive: std::time::Duration, events: S) -> Response
where
    S: futures::Stream<Item = Result<warp::sse::Event, std::convert::Infallible>>
        + Send
        + Sync
        + 'static,
{
    let keep_alive = warp::sse::keep_alive()
        .interval(keepalive)
        .text("ping")
        .stream(events);
    let mut r = warp::reply::Reply::into_response(warp::sse::reply(keep_alive));
    let h = r.headers_mut();
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

pub(super) fn method_not_allowed(allow: &'static str) -> Response {
    let mut r = error_reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert("allow", HeaderValue::from_static(allow));
    r
}

/// The JSON-RPC messages of one POST body, checked and ready to relay.
pub(super) struct Parsed {
    pub messages: Vec<(Bytes, Kind)>,
    /// The body was a JSON array.
    pub batch: bool,
}

impl Http {
    /// Content type, size limit, JSON, JSON-RPC shape: every message of a body is checked
    /// before any is relayed. A batch becomes its individual messages.
    pub(super) async fn read_messages(
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

impl Http {
    /// The HTTP answer when a message could not be handed to the session's server.
    pub(super) fn forward_refused(&self, e: ForwardError) -> Response {
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

    pub(super) fn open_refused(&self, e: OpenError, served: &Served) -> Response {
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
                tracing::error!(error = %e, server = %served.name(), program = %served.config.child.program, "cannot start child");
                error_reply(StatusCode::BAD_GATEWAY, &e.to_string())
            }
            e @ OpenError::Duplicate => error_reply(StatusCode::CONFLICT, &e.to_string()),
        }
    }
}

pub(super) enum BodyError {
    TooLarge,
    Read,
}

pub(super) async fn read_body(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_become_spaces() {
        let b = one_line(Bytes::from_static(b"{\n  \"a\": \"x\\ny\"\r\n}"));
        assert_eq!(&b[..], b"{   \"a\": \"x\\ny\"  }");
        serde_json::from_slice::<serde_json::Value>(&b).unwrap();
    }
}
