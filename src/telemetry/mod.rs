//! OpenTelemetry for every mode (`--otel`): W3C trace context in MCP's `_meta` ([`context`]),
//! the spans of requests and of what the gateway does for them ([`spans`]), the conventions'
//! duration metrics ([`metrics`]), and their OTLP export.
//!
//! Owns: trace context, spans, metrics and the exporter. Must not touch: transports or backends.

mod attributes;
pub mod context;
pub mod earlier;
pub mod metrics;
pub mod sampler;
pub mod spans;

use std::sync::{
    LazyLock,
    atomic::{AtomicUsize, Ordering},
};

use opentelemetry::{metrics::MeterProvider as _, trace::TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{Resource, metrics::SdkMeterProvider, trace::SdkTracerProvider};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};

/// The OTLP trace exporter, configured as every OpenTelemetry SDK is: `OTEL_EXPORTER_OTLP_*`
/// (endpoint, headers, timeout; `_PROTOCOL` `http/protobuf`, the default, or `grpc`),
/// `OTEL_SERVICE_NAME` (default `aareguru-mcp`) and `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_TRACES_SAMPLER` and `_ARG`; with the spans, the conventions' duration metrics
/// ([`metrics`]; `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_METRICS_EXPORTER=none`). Spans are batched on a thread of the SDK's own, in a
/// bounded queue: a collector that is down or slow never holds a call up.
pub struct Exporter {
    provider: SdkTracerProvider,
    meters: Option<SdkMeterProvider>,
    /// gRPC's runtime, while gRPC is used.
    _runtime: Option<tokio::runtime::Runtime>,
}

/// How OTLP goes to the collector (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Clone, Copy)]
enum Wire {
    Http,
    Grpc,
}

impl Wire {
    fn of(protocol: &str) -> anyhow::Result<Wire> {
        match protocol {
            "http/protobuf" => Ok(Wire::Http),
            "grpc" => Ok(Wire::Grpc),
            other => anyhow::bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other:?}: \"http/protobuf\" or \"grpc\" (http/json is not built in)"
            ),
        }
    }
}

/// An OTLP exporter from `builder` (spans' or metrics': the same calls on different types)
/// over `wire`.
macro_rules! otlp {
    ($builder:expr, $wire:expr) => {
        match $wire {
            Wire::Http => $builder
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .build()?,
            Wire::Grpc => $builder.with_tonic().build()?,
        }
    };
}

impl Exporter {
    pub fn from_env() -> anyhow::Result<Exporter> {
        let protocol = |signal: &str| {
            std::env::var(format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"))
                .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
                .unwrap_or_else(|_| "http/protobuf".into())
        };
        let (traces, metrics) = (
            Wire::of(&protocol("TRACES"))?,
            Wire::of(&protocol("METRICS"))?,
        );
        // gRPC's channel lives on a runtime: one small runtime of its own, so that export
        // never competes with the gateway's requests (and exists before the gateway's does).
        let runtime = match (traces, metrics) {
            (Wire::Http, Wire::Http) => None,
            _ => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("otlp-grpc")
                    .enable_all()
                    .build()?,
            ),
        };
        let _in = runtime.as_ref().map(|r| r.enter());
        let spans = otlp!(opentelemetry_otlp::SpanExporter::builder(), traces);
        let exporter = Counted(spans);
        // The SDK's batch queue (OTEL_BSP_MAX_QUEUE_SIZE, default 2048) behind a gate of the
        // same size that counts what it turns away: the queue itself drops silently.
        let capacity = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(2048);
        let batch = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).build();
        let gate = Gate {
            inner: batch,
            capacity,
        };
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("aareguru-mcp");
        }
        let resource = resource.build();
        // The head decision is made before a span exists (sampler.rs); the SDK keeps what it
        // is given.
        let head = sampler::Head::of(
            std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
            std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        sampler::install(head);
        let provider = SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
            .with_span_processor(gate)
            .with_resource(resource.clone())
            .build();
        // The conventions' duration metrics, unless OTEL_METRICS_EXPORTER=none.
        let meters = match std::env::var("OTEL_METRICS_EXPORTER").as_deref() {
            Ok("none") => None,
            _ => {
                let exporter = otlp!(opentelemetry_otlp::MetricExporter::builder(), metrics);
                let meters = SdkMeterProvider::builder()
                    .with_periodic_exporter(exporter)
                    .with_resource(resource)
                    .build();
                metrics::install(&meters.meter("aareguru-mcp"));
                Some(meters)
            }
        };
        drop(_in);
        Ok(Exporter {
            provider,
            meters,
            _runtime: runtime,
        })
    }

    /// The tracer spans are made with.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::Tracer {
        self.provider.tracer("aareguru-mcp")
    }

    /// Sends what is queued (at shutdown).
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
        if let Some(meters) = &self.meters {
            let _ = meters.shutdown();
        }
    }
}

/// Spans by what became of them: `exported`, `failed` (the collector refused them or could not
/// be reached; they are dropped, never retried into a growing queue), `dropped` (the queue was
/// full: the collector is slower than the spans come).
pub fn spans() -> &'static Family<Outcome, Counter> {
    &SPANS
}

/// The label of [`spans`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

static SPANS: LazyLock<Family<Outcome, Counter>> = LazyLock::new(Family::default);

/// Spans handed to the batch processor and not yet through the exporter.
static QUEUED: AtomicUsize = AtomicUsize::new(0);

/// The batch processor behind a gate: at most `capacity` spans queued or being exported, the
/// rest turned away and counted (`dropped`), so the SDK's own queue never fills.
#[derive(Debug)]
struct Gate<P> {
    inner: P,
    capacity: usize,
}

impl<P: opentelemetry_sdk::trace::SpanProcessor> opentelemetry_sdk::trace::SpanProcessor
    for Gate<P>
{
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx)
    }

    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        if QUEUED.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            QUEUED.fetch_sub(1, Ordering::AcqRel);
            SPANS.get_or_create(&Outcome { outcome: "dropped" }).inc();
            return;
        }
        self.inner.on_end(span)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

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
        QUEUED.fetch_sub(n as usize, Ordering::AcqRel);
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
