//! The server span of one MCP request, with the attribute names of OpenTelemetry's MCP semantic
//! conventions, its parent taken from the request ([`super::context`]), and the request as it
//! goes on carrying the span as its `traceparent`.
//!
//! Owns: naming a request's span. Must not touch: transports or backends.

use std::{
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use memchr::memmem;

use bytes::Bytes;
use opentelemetry::{
    Context, KeyValue,
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
};
use parking_lot::Mutex;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::context::{TraceParent, incoming, inject};
use super::sampler;
use crate::mcp::jsonrpc::{Called, Envelope, Kind, classify};

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
) -> (Open, Bytes) {
    let heard = Heard {
        id,
        method,
        session,
        version,
        header_parent,
        header_state,
    };
    begin(line, "server", None, heard)
}

/// The client span of request `line` (`id`, `method`) that the `--connect` bridge sends to
/// the remote at `address`, child of the context the host put in its `_meta`; and the line to
/// send on, carrying the span instead (the remote's spans join the host's trace through it).
pub fn outgoing(line: Bytes, id: &str, method: &str, address: &str) -> (Open, Bytes) {
    let heard = Heard {
        id,
        method,
        ..Heard::default()
    };
    begin(line, "client", Some(address), heard)
}

/// What a request's span is made of besides its line.
#[derive(Default)]
struct Heard<'a> {
    id: &'a str,
    method: &'a str,
    session: Option<&'a str>,
    version: Option<&'a str>,
    header_parent: Option<&'a str>,
    header_state: Option<&'a str>,
}

fn begin(
    line: Bytes,
    kind: &'static str,
    address: Option<&str>,
    heard: Heard<'_>,
) -> (Open, Bytes) {
    let Heard {
        id,
        method,
        session,
        version,
        header_parent,
        header_state,
    } = heard;
    // The context comes in `_meta` only if the bytes name it: most requests are not parsed.
    static TRACEPARENT: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"traceparent"));
    let params = TRACEPARENT
        .find(&line)
        .is_some()
        .then(|| Envelope::parse(&line).and_then(|e| e.params()))
        .flatten();
    let meta = params.as_ref().and_then(|p| p.get("_meta"));
    let parent = incoming(meta, header_parent, header_state);
    let target = match method {
        "tools/call" | "prompts/get" | "resources/read" => {
            Some(Called::<serde::de::IgnoredAny>::parse(&line).target(method))
                .filter(|t| !t.is_empty())
        }
        _ => None,
    };
    let tool = target.as_deref().filter(|_| method == "tools/call");
    // The duration metric counts every request; the span only the sampled ones.
    let mut open = Open {
        span: tracing::Span::none(),
        started: Instant::now(),
        client: kind == "client",
        metric: true,
        attributes: super::attributes::of(method, tool, version),
        error: None,
    };
    if !sampler::sampled(parent.as_ref().map(|(p, _)| p.sampled())) {
        return (open, line);
    }
    let name = match &target {
        Some(t) => format!("{method} {t}"),
        None => method.to_string(),
    };
    let span = tracing::info_span!(
        "mcp.request",
        otel.name = %name,
        otel.kind = kind,
        mcp.method.name = %method,
        mcp.session.id = session,
        mcp.protocol.version = version,
        jsonrpc.request.id = %id.trim_matches('"'),
        gen_ai.tool.name = tool,
        gen_ai.operation.name = (method == "tools/call").then_some("execute_tool"),
        server.address = address,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let state = match parent {
        Some((parent, state)) => {
            let _ = span.set_parent(remote(&parent, state.as_deref()));
            state
        }
        None => None,
    };
    open.span = span.clone();
    let ours = span.context().span().span_context().clone();
    if !ours.is_valid() {
        return (open, line);
    }
    // Log lines inside the span carry its ids (the JSON format's `span` object).
    span.record("trace_id", tracing::field::display(ours.trace_id()));
    span.record("span_id", tracing::field::display(ours.span_id()));
    let parent = TraceParent {
        trace_id: ours.trace_id().to_bytes(),
        span_id: ours.span_id().to_bytes(),
        flags: ours.trace_flags().to_u8(),
    };
    if kind == "server" {
        super::earlier::record_under(&span);
    }
    span.in_scope(|| tracing::debug!(method, "request received"));
    let line = inject(&line, &parent, state.as_deref())
        .map(Bytes::from)
        .unwrap_or(line);
    (open, line)
}

/// A request's span while it is open, and what its duration metric needs: ending it (drop)
/// records `mcp.server.operation.duration` (or `.client.` for one sent on).
pub struct Open {
    span: tracing::Span,
    started: Instant,
    client: bool,
    /// Its duration is recorded when it ends.
    metric: bool,
    attributes: Arc<[KeyValue]>,
    /// How it failed (`error.type`), if it did.
    error: Option<String>,
}

impl Open {
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records that the request failed (`error`: a JSON-RPC error's code, or `tool_error`) on
    /// the span (with an error status) and the metric.
    fn failed(&mut self, error: String) {
        self.span.record("error.type", error.as_str());
        self.span.record("otel.status_code", "ERROR");
        self.error = Some(error);
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if !self.metric {
            return;
        }
        let seconds = self.started.elapsed().as_secs_f64();
        match self.error.take() {
            None => super::metrics::record(self.client, seconds, &self.attributes),
            Some(error) => {
                let mut attributes = self.attributes.to_vec();
                attributes.push(KeyValue::new("error.type", error));
                super::metrics::record(self.client, seconds, &attributes);
            }
        }
    }
}

/// The client span of forwarding request `body` to the replica at `peer` (child of the
/// context its `_meta` or the HTTP headers carry), the body carrying the span instead, and the
/// span as a `traceparent` header value: `None` for anything but one JSON-RPC request, or
/// while spans are off.
pub fn forwarded(
    body: &Bytes,
    header_parent: Option<&str>,
    header_state: Option<&str>,
    peer: &str,
) -> Option<(tracing::Span, Bytes, String)> {
    if !on() {
        return None;
    }
    let Ok(Kind::Request { id, method }) = classify(body) else {
        return None;
    };
    let heard = Heard {
        id: &id,
        method: &method,
        header_parent,
        header_state,
        ..Heard::default()
    };
    let (mut open, body) = begin(body.clone(), "client", Some(peer), heard);
    // The owner's server span and metric time the request; this one is the hop.
    open.metric = false;
    // Not sampled: the body goes on as it came, and the owner decides for itself.
    if open.span.is_none() {
        return None;
    }
    let span = open.span.clone();
    span.record(
        "otel.name",
        tracing::field::display(format!("forward {method}")),
    );
    let ours = span.context().span().span_context().clone();
    let header = TraceParent {
        trace_id: ours.trace_id().to_bytes(),
        span_id: ours.span_id().to_bytes(),
        flags: ours.trace_flags().to_u8(),
    }
    .header();
    Some((span, body, header))
}

/// A context whose span is the remote `parent` (with `tracestate` `state`).
fn remote(parent: &TraceParent, state: Option<&str>) -> Context {
    let trace_state = state
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        TraceFlags::new(parent.flags),
        true,
        trace_state,
    );
    Context::new().with_remote_span_context(remote)
}

/// Request spans awaiting their answers (by raw id): a session's, or the bridge's.
#[derive(Default)]
pub struct Held(Mutex<Vec<(String, Open)>>);

impl Held {
    /// Keeps request `id`'s span open until [`Held::answered`] sees its answer.
    pub fn hold(&self, id: String, open: Open) {
        self.0.lock().push((id, open));
    }

    /// Ends the span of the request `message` answers (raw), if one is held: one branch while
    /// nothing is, and otherwise one borrowing pass over the message (no tree of it).
    pub fn answered(&self, message: &str) {
        if on() && !self.0.lock().is_empty() {
            self.settle(message);
        }
    }

    fn settle(&self, message: &str) {
        let Ok(answer) = serde_json::from_str::<Answer>(message) else {
            return;
        };
        let (Some(id), None) = (answer.id, answer.method) else {
            return;
        };
        let open = {
            let mut held = self.0.lock();
            let at = held.iter().position(|(held, _)| held == id.get());
            at.map(|at| held.swap_remove(at).1)
        };
        if let Some(mut open) = open {
            let error = match (answer.error, answer.result) {
                (Some(Code { code: Some(code) }), _) => Some(code.to_string()),
                (Some(_), _) => Some("error".to_string()),
                (
                    None,
                    Some(Outcome {
                        is_error: Some(true),
                    }),
                ) => Some("tool_error".to_string()),
                _ => None,
            };
            if let Some(error) = error {
                open.failed(error);
            }
        }
    }
}

impl Drop for Held {
    /// Requests never answered (their session or the bridge ended first) end as failed.
    fn drop(&mut self) {
        for (_, mut open) in self.0.get_mut().drain(..) {
            open.failed("no_answer".into());
        }
    }
}

/// What [`Held::answered`] reads of a message: an answer's id, and how it failed.
#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    id: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    method: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    error: Option<Code>,
    #[serde(default)]
    result: Option<Outcome>,
}

#[derive(serde::Deserialize)]
struct Code {
    #[serde(default)]
    code: Option<serde_json::Number>,
}

#[derive(serde::Deserialize)]
struct Outcome {
    #[serde(default, rename = "isError")]
    is_error: Option<bool>,
}

/// A span of something this gateway does for the current request (`name`: `policy`,
/// `spawn`, `forward to replica` …), of `kind` `internal` or `client`: `Span::none()` while
/// spans are off or no request's span is current. Fields to record on it: `gateway.server`, `gateway.member`,
/// `gateway.outcome`, `server.address`, `process.pid`, `error.type`.
pub fn step(name: &str, kind: &'static str) -> tracing::Span {
    // Only as a child: outside a request (a pool's refill, a reload) it would be a trace of
    // its own.
    if !on() || tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "gateway.step",
        otel.name = %name,
        otel.kind = kind,
        gateway.server = tracing::field::Empty,
        gateway.child = tracing::field::Empty,
        gateway.member = tracing::field::Empty,
        gateway.outcome = tracing::field::Empty,
        server.address = tracing::field::Empty,
        process.pid = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// The span of this program's own server running tool `tool` for a request whose `_meta`
/// carried `traceparent` / `tracestate` (in process behind the gateway, or as a `--stdio`
/// child): `Span::none()` while spans are off.
pub fn tool(tool: &str, traceparent: Option<&str>, tracestate: Option<&str>) -> tracing::Span {
    let parent = if on() {
        incoming(None, traceparent, tracestate)
    } else {
        return tracing::Span::none();
    };
    if !sampler::sampled(parent.as_ref().map(|(p, _)| p.sampled())) {
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
    if let Some((parent, state)) = parent {
        let _ = span.set_parent(remote(&parent, state.as_deref()));
    }
    span
}

/// The span of one upstream HTTP request (HTTP client conventions): `Span::none()` while
/// spans are off or outside a tool's span. Its status code is recorded by [`http_status`].
pub fn upstream_get(url: &str, host: &str) -> tracing::Span {
    // Only inside a tool's span: a request that was not sampled has none.
    if !on() || tracing::Span::current().is_none() {
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

/// The host part of `url` (a span's `server.address`).
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host_port.split(':').next().unwrap_or(host_port),
    }
}

#[cfg(test)]
mod tests {
    use super::{Held, Open, host_of};

    fn open() -> Open {
        Open {
            span: tracing::Span::none(),
            started: std::time::Instant::now(),
            client: false,
            metric: false,
            attributes: std::sync::Arc::new([]),
            error: None,
        }
    }

    #[test]
    fn an_answer_ends_its_own_request_and_says_how_it_failed() {
        let held = Held::default();
        held.hold("7".into(), open());
        held.hold("\"a\"".into(), open());
        held.hold("8".into(), open());
        // A request or a notification with the same id ends nothing.
        held.settle(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#);
        held.settle(r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#);
        assert_eq!(held.0.lock().len(), 3);
        held.settle(r#"{"jsonrpc":"2.0", "id": 7, "error":{"code":-32602,"message":"no"}}"#);
        held.settle(r#"{"jsonrpc":"2.0","result":{"content":[],"isError":true},"id":"a"}"#);
        let left: Vec<String> = held.0.lock().iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(left, ["8"]);
        held.settle(r#"{"jsonrpc":"2.0","id":8,"result":{"content":[{"type":"text","text":"\"isError\":true"}]}}"#);
        assert!(held.0.lock().is_empty());
    }

    #[test]
    fn the_error_type_goes_on_the_metric() {
        let mut o = open();
        o.failed("-32602".into());
        assert_eq!(o.error.as_deref(), Some("-32602"));
    }

    #[test]
    fn the_host_of_a_url() {
        assert_eq!(host_of("http://127.0.0.1:8080/mcp"), "127.0.0.1");
        assert_eq!(
            host_of("https://user:pw@gw.example:443/sse?x"),
            "gw.example"
        );
        assert_eq!(host_of("http://[::1]:3000/mcp"), "::1");
        assert_eq!(host_of("http://[::1]/mcp"), "::1");
        assert_eq!(host_of("https://gw.example"), "gw.example");
    }
}
