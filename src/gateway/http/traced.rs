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
use crate::{gateway::session::Session, mcp::jsonrpc::Kind, telemetry::spans};

/// The span of `line` (a request of `session` at protocol revision `version`) and the line to
/// send on; `Span::none()` and `line` itself for anything else, or while spans are off.
pub(super) fn traced(
    session: &Session,
    version: Option<&str>,
    headers: &HeaderMap,
    line: Bytes,
    kind: &Kind,
) -> (Span, Bytes) {
    match kind {
        Kind::Request { id, method } if spans::on() => {
            let (span, line) = spans::request(
                line,
                id,
                method,
                Some(&session.id_str),
                version,
                header(headers, "traceparent"),
                header(headers, "tracestate"),
            );
            session.hold_span(id.clone(), span.clone());
            (span, line)
        }
        _ => (Span::none(), line),
    }
}
