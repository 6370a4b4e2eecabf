//! Steps that run before their request's span can exist — authorization, which decides whether
//! the request is read at all — timed while they run and recorded as children of the request's
//! span once it begins (in the same task).
//!
//! Owns: carrying such a step's times to its request's span. Must not touch: what the step
//! does, or what the request's span says.

use std::{
    cell::Cell,
    future::Future,
    sync::OnceLock,
    time::{Instant, SystemTime},
};

use opentelemetry::{
    KeyValue,
    trace::{Span as _, SpanKind, Tracer as _},
};
use opentelemetry_sdk::trace::Tracer;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static TRACER: OnceLock<Tracer> = OnceLock::new();

tokio::task_local! {
    static EARLIER: Cell<Option<Earlier>>;
}

/// The tracer steps recorded afterwards are made with (the one the spans layer exports with).
pub fn keep_tracer(tracer: Tracer) {
    let _ = TRACER.set(tracer);
}

/// A step being timed.
pub struct Timer {
    name: &'static str,
    start: SystemTime,
    started: Instant,
}

/// A step that has run: its name, when, and what it found.
pub struct Earlier {
    name: &'static str,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
}

impl Timer {
    /// Times step `name`: `None` while spans are off (no tracer kept).
    pub fn start(name: &'static str) -> Option<Timer> {
        TRACER.get().is_some().then(|| Timer {
            name,
            start: SystemTime::now(),
            started: Instant::now(),
        })
    }

    /// The step has ended, having found `attributes`.
    pub fn done(self, attributes: &[(&'static str, String)]) -> Earlier {
        Earlier {
            name: self.name,
            start: self.start,
            // The monotonic clock measures; the wall clock only places it.
            end: self.start + self.started.elapsed(),
            attributes: attributes
                .iter()
                .map(|(k, v)| KeyValue::new(*k, v.clone()))
                .collect(),
        }
    }
}

/// Runs `work` (which begins the request's span) with `earlier` waiting to be recorded under
/// the first request span it begins.
pub async fn within<F: Future>(earlier: Option<Earlier>, work: F) -> F::Output {
    match earlier {
        Some(e) => EARLIER.scope(Cell::new(Some(e)), work).await,
        None => work.await,
    }
}

/// Records the step this task timed before `parent` began, if any, as its child.
pub(super) fn record_under(parent: &tracing::Span) {
    let Ok(Some(e)) = EARLIER.try_with(Cell::take) else {
        return;
    };
    let Some(tracer) = TRACER.get() else {
        return;
    };
    let cx = parent.context();
    let mut span = tracer
        .span_builder(e.name)
        .with_kind(SpanKind::Internal)
        .with_start_time(e.start)
        .with_attributes(e.attributes)
        .start_with_context(tracer, &cx);
    span.end_with_timestamp(e.end);
}
