//! The server span of one MCP request, with the attribute names of OpenTelemetry's MCP semantic
//! conventions, its parent taken from the request ([`super::context`]), and the request as it
//! goes on carrying the span as its `traceparent`.
//!
//! Owns: naming a request's span. Must not touch: transports or backends.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use opentelemetry::{
    Context,
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
};
use serde_json::Value;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::context::{TraceParent, incoming, inject};
use crate::mcp::jsonrpc::Envelope;

static ON: AtomicBool = AtomicBool::new(false);

/// Spans are exported from now on (`--otel`).
pub fn turn_on() {
    ON.store(true, Ordering::Relaxed);
}

/// Whether spans are exported: off, a request costs this branch and nothing else.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The span of request `line` (`id`, `method`) of session `session` (none at 2026-07-28) at
/// protocol revision `version`, child of the context the
/// request or its HTTP headers carry; and the line to send on, carrying the span instead.
pub fn request(
    line: Bytes,
    id: &str,
    method: &str,
    session: Option<&str>,
    version: Option<&str>,
    header_parent: Option<&str>,
    header_state: Option<&str>,
) -> (tracing::Span, Bytes) {
    let params = Envelope::parse(&line).and_then(|e| e.params());
    let target = params.as_ref().and_then(|p| {
        p.get("name")
            .or_else(|| p.get("uri"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let name = match &target {
        Some(t) => format!("{method} {t}"),
        None => method.to_string(),
    };
    let tool = (method == "tools/call").then(|| target.clone()).flatten();
    let span = tracing::info_span!(
        "mcp.request",
        otel.name = %name,
        otel.kind = "server",
        mcp.method.name = %method,
        mcp.session.id = session,
        mcp.protocol.version = version,
        jsonrpc.request.id = %id.trim_matches('"'),
        gen_ai.tool.name = tool.as_deref(),
        gen_ai.operation.name = (method == "tools/call").then_some("execute_tool"),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let meta = params.as_ref().and_then(|p| p.get("_meta"));
    let state = match incoming(meta, header_parent, header_state) {
        Some((parent, state)) => {
            let trace_state = state
                .as_deref()
                .and_then(|s| s.parse::<TraceState>().ok())
                .unwrap_or_default();
            let remote = SpanContext::new(
                TraceId::from_bytes(parent.trace_id),
                SpanId::from_bytes(parent.span_id),
                TraceFlags::new(parent.flags),
                true,
                trace_state,
            );
            let _ = span.set_parent(Context::new().with_remote_span_context(remote));
            state
        }
        None => None,
    };
    let ours = span.context().span().span_context().clone();
    if !ours.is_valid() {
        return (span, line);
    }
    // Log lines inside the span carry its ids (the JSON format's `span` object).
    span.record("trace_id", tracing::field::display(ours.trace_id()));
    span.record("span_id", tracing::field::display(ours.span_id()));
    let parent = TraceParent {
        trace_id: ours.trace_id().to_bytes(),
        span_id: ours.span_id().to_bytes(),
        flags: ours.trace_flags().to_u8(),
    };
    span.in_scope(|| tracing::debug!(method, "request received"));
    let line = inject(&line, &parent, state.as_deref())
        .map(Bytes::from)
        .unwrap_or(line);
    (span, line)
}

/// Records on `span` how its request was answered (`message`, raw): a JSON-RPC error as
/// `error.type` (its code) and an error status; a tool's own error (`isError`) as
/// `error.type` `tool_error`.
pub fn answered(span: &tracing::Span, message: &str) {
    let Ok(v) = serde_json::from_str::<Value>(message) else {
        return;
    };
    if let Some(code) = v.pointer("/error/code") {
        span.record("error.type", tracing::field::display(code));
        span.record("otel.status_code", "ERROR");
    } else if v.pointer("/result/isError") == Some(&Value::Bool(true)) {
        span.record("error.type", "tool_error");
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of this program's own server running tool `tool` for a request whose `_meta`
/// carried `traceparent` / `tracestate` (in process behind the gateway, or as a `--stdio`
/// child): `Span::none()` while spans are off.
pub fn tool(tool: &str, traceparent: Option<&str>, tracestate: Option<&str>) -> tracing::Span {
    if !on() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "execute_tool",
        otel.name = %format!("execute_tool {tool}"),
        otel.kind = "internal",
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = %tool,
        error.type = tracing::field::Empty,
    );
    if let Some((parent, state)) = incoming(None, traceparent, tracestate) {
        let trace_state = state
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.span_id),
            TraceFlags::new(parent.flags),
            true,
            trace_state,
        );
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
    span
}

/// The span of one upstream HTTP request (HTTP client conventions): `Span::none()` while
/// spans are off. Its status code is recorded by [`http_status`].
pub fn upstream_get(url: &str, host: &str) -> tracing::Span {
    if !on() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "GET",
        otel.name = "GET",
        otel.kind = "client",
        http.request.method = "GET",
        url.full = %url,
        server.address = %host,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// Records an upstream answer's status (and an error type from 400 up) on `span`.
pub fn http_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", i64::from(status));
    if status >= 400 {
        span.record("error.type", i64::from(status));
    }
}
