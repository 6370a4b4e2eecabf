//! OpenTelemetry for every mode (work in progress on this branch, see issue 23): W3C trace
//! context in MCP's `_meta` ([`context`]).
//!
//! Owns: trace context and (to come) the exporter. Must not touch: transports or backends.

pub mod context;
pub mod spans;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};

/// The OTLP trace exporter, configured as every OpenTelemetry SDK is: `OTEL_EXPORTER_OTLP_*`
/// (endpoint, headers, timeout; `_PROTOCOL` `http/protobuf` — `grpc` is not built in yet),
/// `OTEL_SERVICE_NAME` (default `aareguru-mcp`) and `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_TRACES_SAMPLER` and `_ARG`. Spans are batched on a thread of the SDK's own, in a
/// bounded queue: a collector that is down or slow never holds a call up.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    pub fn from_env() -> anyhow::Result<Exporter> {
        let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|_| "http/protobuf".into());
        if protocol != "http/protobuf" {
            anyhow::bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={protocol:?}: only \"http/protobuf\" is built in"
            );
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("aareguru-mcp");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Exporter { provider })
    }

    /// The tracer spans are made with.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::Tracer {
        self.provider.tracer("aareguru-mcp")
    }

    /// Sends what is queued (at shutdown).
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}
