//! OpenTelemetry for every mode (work in progress on this branch, see issue 23): W3C trace
//! context in MCP's `_meta` ([`context`]).
//!
//! Owns: trace context and (to come) the exporter. Must not touch: transports or backends.

pub mod context;
pub mod spans;

use std::sync::LazyLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};

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
        let exporter = Counted(
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .build()?,
        );
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

/// Spans by what became of them: `exported`, `failed` (the collector refused them or could not
/// be reached; they are dropped, never retried into a growing queue).
pub fn spans() -> &'static Family<Outcome, Counter> {
    &SPANS
}

/// The label of [`spans`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

static SPANS: LazyLock<Family<Outcome, Counter>> = LazyLock::new(Family::default);

/// The exporter, counting what it sends and what it loses.
#[derive(Debug)]
struct Counted<E>(E);

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Counted<E>
{
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.0.export(batch).await;
        let outcome = if result.is_ok() { "exported" } else { "failed" };
        SPANS.get_or_create(&Outcome { outcome }).inc_by(n);
        result
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource)
    }
}
