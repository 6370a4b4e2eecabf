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
    let filter = filter.as_str();
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid log filter {filter:?}: {e}"))?;
    let fmt = fmt::layer()
        .with_writer(std::io::stderr)
        // When whoever reads our stderr goes away (a dead supervisor, `| head`), writes fail.
        // The default reports that with eprintln!, which panics on a broken stderr and takes
        // down whatever task was logging: the signal handler, a session's cleanup. Logs are
        // best effort; the service is not.
        .log_internal_errors(false)
        .with_target(true);
    let otel = tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match format {
        LogFormat::Text => registry.with(fmt.with_ansi(false)).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
