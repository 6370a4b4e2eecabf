//! The duration metrics of OpenTelemetry's MCP semantic conventions: `mcp.server.operation.duration`
//! for the requests this program serves, `mcp.client.operation.duration` for the ones it sends
//! on (the `--connect` bridge, forwarding to another replica), in seconds, exported over OTLP
//! with the spans (`OTEL_METRIC_EXPORT_INTERVAL`, default 60 s).
//!
//! Owns: the instruments. Must not touch: transports or backends.

use std::sync::OnceLock;

use opentelemetry::{
    KeyValue,
    metrics::{Histogram, Meter},
};

/// The boundaries the conventions advise for MCP operation durations.
const BOUNDARIES: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

static SERVER: OnceLock<Histogram<f64>> = OnceLock::new();
static CLIENT: OnceLock<Histogram<f64>> = OnceLock::new();

/// Makes the two histograms on `meter` (once, at start with `--otel`).
pub fn install(meter: &Meter) {
    let histogram = |name: &'static str, what: &'static str| {
        meter
            .f64_histogram(name)
            .with_unit("s")
            .with_description(what)
            .with_boundaries(BOUNDARIES.to_vec())
            .build()
    };
    let _ = SERVER.set(histogram(
        "mcp.server.operation.duration",
        "MCP request duration as observed on the receiver",
    ));
    let _ = CLIENT.set(histogram(
        "mcp.client.operation.duration",
        "MCP request duration as observed on the sender",
    ));
}

/// Records one request's `seconds` (`client`: one this program sent on) with `attributes`;
/// nothing before [`install`].
pub fn record(client: bool, seconds: f64, attributes: &[KeyValue]) {
    let histogram = match client {
        true => CLIENT.get(),
        false => SERVER.get(),
    };
    if let Some(h) = histogram {
        h.record(seconds, attributes);
    }
}
