//! With `--otel`: the server span of a request that reaches a session (Streamable HTTP,
//! HTTP+SSE), held by the session until the answer is on its way, and the request as it goes
//! on, carrying the span in `_meta`.
//!
//! Owns: where a session's request spans begin. Must not touch: what a span says
//! ([`crate::telemetry::spans`]).

use bytes::Bytes;
use tracing::Span;
use warp::http::HeaderMap;

use super::headers::header;
use crate::{
    gateway::session::Session,
    mcp::jsonrpc::Kind,
    telemetry::spans::{self, Open},
};

/// The span of `line` (a request of `session` at protocol revision `version`) and the line to
/// send on; `Span::none()` and `line` itself for anything else, or while spans are off. The
/// span [`opening`] began for the same request is taken instead of a new one.
pub(super) fn traced(
    session: &Session,
    version: Option<&str>,
    headers: &HeaderMap,
    line: Bytes,
    kind: &Kind,
    opened: &mut Option<(String, Open)>,
) -> (Span, Bytes) {
    match kind {
        Kind::Request { id, .. } if opened.as_ref().is_some_and(|(o, _)| o == id) => {
            let Some((_, open)) = opened.take() else {
                return (Span::none(), line);
            };
            let span = open.span().clone();
            span.record("mcp.session.id", session.id_str.as_str());
            session.hold_span(id.clone(), open);
            (span, line)
        }
        Kind::Request { id, method } if spans::on() => {
            let (open, line) = spans::request(
                line,
                id,
                method,
                Some(&session.id_str),
                version,
                header(headers, "traceparent"),
                header(headers, "tracestate"),
            );
            let span = open.span().clone();
            session.hold_span(id.clone(), open);
            (span, line)
        }
        _ => (Span::none(), line),
    }
}

/// With `--otel`: the span of the `initialize` request among `messages`, begun before its
/// session opens (the child it starts is a step of it) — its line then carries the span; to
/// be handed to [`traced`] with the session. `None` while spans are off.
pub(super) fn opening(
    headers: &HeaderMap,
    messages: &mut [(Bytes, Kind)],
) -> Option<(String, Open)> {
    if !spans::on() {
        return None;
    }
    let (line, Kind::Request { id, method }) = messages
        .iter_mut()
        .find(|(_, k)| matches!(k, Kind::Request { method, .. } if method == "initialize"))?
    else {
        return None;
    };
    let (open, traced) = spans::request(
        line.clone(),
        id,
        method,
        None,
        None,
        header(headers, "traceparent"),
        header(headers, "tracestate"),
    );
    *line = traced;
    Some((id.clone(), open))
}
