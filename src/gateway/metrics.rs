//! Prometheus metrics of the gateway (text exposition on `/metrics`).

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Direction {
    /// `client_to_server` or `server_to_client`.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Cause {
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    pub backend: &'static str,
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    pub sessions_active: Gauge,
    pub sessions_total: Counter,
    pub messages: Family<Direction, Counter>,
    pub post_duration: Histogram,
    pub child_spawns: Counter,
    pub child_spawn_duration: Histogram,
    pub children_alive: Gauge,
    pub child_exits: Family<Cause, Counter>,
    pub child_restarts: Counter,
    pub shared_children_ready: Gauge,
    pub backend: Family<BackendLabel, Gauge>,
    pub errors: Family<Kind, Counter>,
    pub rejected: Family<Reason, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("aareguru_gateway");
        let sessions_active = Gauge::default();
        registry.register("sessions_active", "Open sessions", sessions_active.clone());
        let sessions_total = Counter::default();
        registry.register("sessions", "Sessions opened", sessions_total.clone());
        let messages = Family::<Direction, Counter>::default();
        registry.register("messages", "JSON-RPC messages relayed", messages.clone());
        let post_duration = Histogram::new(exponential_buckets(0.000_025, 2.0, 18));
        registry.register(
            "post_duration_seconds",
            "Time to accept a POSTed message",
            post_duration.clone(),
        );
        let child_spawns = Counter::default();
        registry.register(
            "child_spawns",
            "Child processes started",
            child_spawns.clone(),
        );
        let child_spawn_duration = Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        registry.register(
            "child_spawn_duration_seconds",
            "Time from a session's start to its server's first answer",
            child_spawn_duration.clone(),
        );
        let children_alive = Gauge::default();
        registry.register(
            "children_alive",
            "Child processes running",
            children_alive.clone(),
        );
        let child_exits = Family::<Cause, Counter>::default();
        registry.register(
            "child_exits",
            "Child processes ended, by cause",
            child_exits.clone(),
        );
        let child_restarts = Counter::default();
        registry.register(
            "child_restarts",
            "Shared children restarted after they ended",
            child_restarts.clone(),
        );
        let shared_children_ready = Gauge::default();
        registry.register(
            "shared_children_ready",
            "Shared children running and initialized (ready for sessions)",
            shared_children_ready.clone(),
        );
        let backend = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "backend",
            "The backend serving sessions (value 1)",
            backend.clone(),
        );
        let errors = Family::<Kind, Counter>::default();
        registry.register("errors", "Errors, by kind", errors.clone());
        let rejected = Family::<Reason, Counter>::default();
        registry.register(
            "rejected_requests",
            "HTTP requests refused, by reason",
            rejected.clone(),
        );
        Self {
            registry,
            sessions_active,
            sessions_total,
            messages,
            post_duration,
            child_spawns,
            child_spawn_duration,
            children_alive,
            child_exits,
            child_restarts,
            shared_children_ready,
            backend,
            errors,
            rejected,
        }
    }

    pub fn message(&self, direction: &'static str) {
        self.messages.get_or_create(&Direction { direction }).inc();
    }

    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&Kind { kind }).inc();
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&Reason { reason }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
