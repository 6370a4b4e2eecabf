//! Logging to stderr with tracing: an `RUST_LOG`-style filter, text or JSON lines. Never stdout,
//! which carries the protocol in stdio mode.
//!
//! Owns: the log subscriber. Must not touch: anything else.

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Logs to stderr; with `tracer`, spans are exported too (OpenTelemetry).
pub fn init(
    filter: &str,
    format: LogFormat,
    tracer: Option<opentelemetry_sdk::trace::Tracer>,
) -> anyhow::Result<()> {
    // warp logs every client that disconnects mid-stream at error level; that is routine for
    // SSE. rmcp logs every session's handshake at info, which with in-process sessions means a
    // line per client. Keep both quiet unless the operator names them in the filter.
    let mut filter = filter.to_string();
    if !filter.contains("warp") {
        filter.push_str(",warp::server=off");
    }
    if !filter.contains("rmcp") {
        filter.push_str(",rmcp=warn");
    }
    // With --otel the request spans (made in `telemetry`) are needed whatever the log level
    // (`--log-level warn` keeps the log quiet, not the traces), so the filter lets them through
    // unless it names them itself. One global filter, not one per layer: per-layer filters make
    // every enabled callsite ask each layer, on every request.
    if tracer.is_some() && !filter.contains("telemetry") {
        filter.push_str(",aareguru_mcp::telemetry=info");
    }
    let filter = filter.as_str();
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid log filter {filter:?}: {e}"))?;
    // The stderr layer (one per subscriber type below).
    macro_rules! stderr_layer {
        () => {
            fmt::layer()
                .with_writer(std::io::stderr)
                // When whoever reads our stderr goes away (a dead supervisor, `| head`),
                // writes fail. The default reports that with eprintln!, which panics on a
                // broken stderr and takes down whatever task was logging: the signal handler,
                // a session's cleanup. Logs are best effort; the service is not.
                .log_internal_errors(false)
                .with_target(true)
        };
    }
    let otel = tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    match format {
        LogFormat::Text => registry.with(stderr_layer!().with_ansi(false)).try_init(),
        LogFormat::Json => {
            let format = json::WithTrace(fmt::format().json().flatten_event(true));
            let layer = stderr_layer!().json().flatten_event(true);
            registry.with(layer.event_format(format)).try_init()
        }
    }
    .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

mod json {
    //! JSON log lines that name the trace they belong to: inside a request's span (`--otel`),
    //! a line gets that span's `trace_id` and `span_id` as fields of its own.

    use std::fmt;

    use serde_json::{Map, Value};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::{
        fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, format::Writer},
        registry::LookupSpan,
    };

    pub struct WithTrace<F>(pub F);

    impl<S, N, F> FormatEvent<S, N> for WithTrace<F>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
        F: FormatEvent<S, N>,
    {
        fn format_event(
            &self,
            ctx: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            let ids = ctx.event_scope().and_then(|scope| {
                scope.into_iter().find_map(|span| {
                    let extensions = span.extensions();
                    let fields = extensions.get::<FormattedFields<N>>()?;
                    let v: Map<String, Value> = serde_json::from_str(&fields.fields).ok()?;
                    Some((v.get("trace_id")?.clone(), v.get("span_id")?.clone()))
                })
            });
            let Some((trace_id, span_id)) = ids else {
                return self.0.format_event(ctx, writer, event);
            };
            let mut line = String::new();
            self.0.format_event(ctx, Writer::new(&mut line), event)?;
            match serde_json::from_str::<Map<String, Value>>(line.trim_end()) {
                Ok(mut v) => {
                    v.insert("trace_id".into(), trace_id);
                    v.insert("span_id".into(), span_id);
                    writeln!(writer, "{}", Value::Object(v))
                }
                Err(_) => writer.write_str(&line),
            }
        }
    }
}
