//! Every metric of the gateway, registered once, and the text exposition.

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use super::labels::*;

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    /// The console's live numbers (kept only with `--console`).
    pub live: super::live::Live,
    pub sessions_active: Gauge,
    pub sessions_total: Counter,
    pub messages: Family<Direction, Counter>,
    /// The two series of `messages`, resolved once (they are counted on every message).
    to_server: Counter,
    to_client: Counter,
    pub post_duration: Histogram,
    pub child_spawns: Counter,
    pub child_spawn_duration: Histogram,
    pub children_alive: Gauge,
    /// Tasks alive on the gateway's runtime, read when scraped (a leak shows as growth).
    pub runtime_tasks: Gauge,
    pub child_exits: Family<Cause, Counter>,
    pub child_restarts: Counter,
    pub shared_children_ready: Gauge,
    pub backend: Family<BackendLabel, Gauge>,
    pub errors: Family<Kind, Counter>,
    pub rejected: Family<Reason, Counter>,
    /// Cluster: this replica's id (value 1).
    pub cluster_replica: Family<Replica, Gauge>,
    pub cluster_peers: Gauge,
    pub cluster_forwarded: Counter,
    pub cluster_forward_failures: Counter,
    pub cluster_forward_duration: Histogram,
    pub cluster_roamed: Counter,
    pub redis_up: Gauge,
    pub redis_errors: Counter,
    pub audit_lines: Counter,
    pub audit_dropped: Counter,
    /// Per server (`server` label): the same as the totals above, for each served server.
    pub server_sessions_active: Family<Server, Gauge>,
    pub server_sessions: Family<Server, Counter>,
    pub server_messages: Family<ServerDirection, Counter>,
    pub server_children_alive: Family<Server, Gauge>,
    pub server_child_exits: Family<ServerCause, Counter>,
    pub server_errors: Family<ServerKind, Counter>,
    pub server_tool_calls_denied: Family<Server, Counter>,
    pub policy_denials: Family<ServerRule, Counter>,
    pub policy_rule_failures: Family<ServerRule, Counter>,
    pub policy_limited: Family<ServerRule, Counter>,
    pub config_reloads: Family<Reason, Counter>,
    pub pool_ready: Family<Server, Gauge>,
    pub pool_hits: Family<Server, Counter>,
    pub pool_misses: Family<Server, Counter>,
    pub stateless_requests: Family<ServerOutcome, Counter>,
    pub tool_searches: Family<ServerOutcome, Counter>,
    pub tool_search_indexes: Family<Server, Counter>,
    pub member_up: Family<ServerMember, Gauge>,
    pub member_requests: Family<ServerMemberOutcome, Counter>,
    pub member_request_duration: Family<ServerMember, Histogram, fn() -> Histogram>,
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
        let runtime_tasks = Gauge::default();
        registry.register(
            "runtime_tasks",
            "Tasks alive on the gateway's async runtime",
            runtime_tasks.clone(),
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
        let cluster_replica = Family::<Replica, Gauge>::default();
        registry.register(
            "cluster_replica",
            "This replica's id in the cluster (value 1)",
            cluster_replica.clone(),
        );
        let cluster_peers = Gauge::default();
        registry.register(
            "cluster_peers",
            "Live replicas seen in the cluster, this one included",
            cluster_peers.clone(),
        );
        let cluster_forwarded = Counter::default();
        registry.register(
            "cluster_forwarded",
            "Requests forwarded to the replica holding their session",
            cluster_forwarded.clone(),
        );
        let cluster_forward_failures = Counter::default();
        registry.register(
            "cluster_forward_failures",
            "Forwarded requests whose replica could not be reached",
            cluster_forward_failures.clone(),
        );
        let cluster_forward_duration = Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        registry.register(
            "cluster_forward_duration_seconds",
            "Time for a forwarded request to get its answer's head from the other replica",
            cluster_forward_duration.clone(),
        );
        let cluster_roamed = Counter::default();
        registry.register(
            "cluster_roamed",
            "Sessions restored here from the directory (they roamed from another replica)",
            cluster_roamed.clone(),
        );
        let redis_up = Gauge::default();
        registry.register(
            "redis_up",
            "Whether Redis answers (1) or not (0)",
            redis_up.clone(),
        );
        let redis_errors = Counter::default();
        registry.register(
            "redis_errors",
            "Redis calls that failed or timed out",
            redis_errors.clone(),
        );
        let audit_lines = Counter::default();
        registry.register(
            "audit_lines",
            "Lines written to the audit log",
            audit_lines.clone(),
        );
        let audit_dropped = Counter::default();
        registry.register(
            "audit_dropped_lines",
            "Audit log lines dropped (the writer's queue was full, or the log was closed)",
            audit_dropped.clone(),
        );
        let server_sessions_active = Family::<Server, Gauge>::default();
        registry.register(
            "server_sessions_active",
            "Open sessions, per server",
            server_sessions_active.clone(),
        );
        let server_sessions = Family::<Server, Counter>::default();
        registry.register(
            "server_sessions",
            "Sessions opened, per server",
            server_sessions.clone(),
        );
        let server_messages = Family::<ServerDirection, Counter>::default();
        registry.register(
            "server_messages",
            "JSON-RPC messages relayed, per server",
            server_messages.clone(),
        );
        let server_children_alive = Family::<Server, Gauge>::default();
        registry.register(
            "server_children_alive",
            "Child processes running, per server",
            server_children_alive.clone(),
        );
        let server_child_exits = Family::<ServerCause, Counter>::default();
        registry.register(
            "server_child_exits",
            "Child processes ended, per server and cause",
            server_child_exits.clone(),
        );
        let server_errors = Family::<ServerKind, Counter>::default();
        registry.register(
            "server_errors",
            "Errors, per server and kind",
            server_errors.clone(),
        );
        let server_tool_calls_denied = Family::<Server, Counter>::default();
        registry.register(
            "server_tool_calls_denied",
            "tools/call refused by the server's tool filter",
            server_tool_calls_denied.clone(),
        );
        let policy_denials = Family::<ServerRule, Counter>::default();
        registry.register(
            "policy_denials",
            "Requests the rules refused before any server saw them, per server and deciding rule",
            policy_denials.clone(),
        );
        let policy_rule_failures = Family::<ServerRule, Counter>::default();
        registry.register(
            "policy_rule_failures",
            "Evaluations of a rule that failed at run time (a call it judged was denied)",
            policy_rule_failures.clone(),
        );
        let policy_limited = Family::<ServerRule, Counter>::default();
        registry.register(
            "policy_limited",
            "Calls a limit refused (answered 429 / JSON-RPC -32029), per server and limit (label rule)",
            policy_limited.clone(),
        );
        let config_reloads = Family::<Reason, Counter>::default();
        registry.register(
            "config_reloads",
            "Reloads of the servers file, by result (applied, rejected)",
            config_reloads.clone(),
        );
        let pool_ready = Family::<Server, Gauge>::default();
        registry.register(
            "pool_ready",
            "Children of the warm pool started and waiting for a session (--prespawn)",
            pool_ready.clone(),
        );
        let pool_hits = Family::<Server, Counter>::default();
        registry.register(
            "pool_hits",
            "Sessions that took a child from the warm pool",
            pool_hits.clone(),
        );
        let pool_misses = Family::<Server, Counter>::default();
        registry.register(
            "pool_misses",
            "Sessions that found the warm pool empty and waited for a child to start",
            pool_misses.clone(),
        );
        let stateless_requests = Family::<ServerOutcome, Counter>::default();
        registry.register(
            "stateless_requests",
            "Requests of protocol revision 2026-07-28 (no session), by outcome: answered, input_required (the client is asked and retries), failed (the gateway answered with an error)",
            stateless_requests.clone(),
        );
        let tool_searches = Family::<ServerOutcome, Counter>::default();
        registry.register(
            "tool_searches",
            "Calls of tool search's search tool, by outcome: found (at least one tool), none, refused (bad arguments), failed (the tool list could not be fetched)",
            tool_searches.clone(),
        );
        let tool_search_indexes = Family::<Server, Counter>::default();
        registry.register(
            "tool_search_indexes",
            "Tool-search indexes built (a list no live index had: a first search, or a list that changed)",
            tool_search_indexes.clone(),
        );
        let member_up = Family::<ServerMember, Gauge>::default();
        registry.register(
            "group_member_up",
            "Sessions of a group (server) in which the member is up",
            member_up.clone(),
        );
        let member_requests = Family::<ServerMemberOutcome, Counter>::default();
        registry.register(
            "group_member_requests",
            "Client requests a group (server) relayed to a member, by outcome: ok, error (the member answered with one, or stopped), unavailable (not up within memberTimeout)",
            member_requests.clone(),
        );
        let member_request_duration =
            Family::<ServerMember, Histogram>::new_with_constructor(member_buckets as fn() -> _);
        registry.register(
            "group_member_request_duration_seconds",
            "Time from relaying a client's request to a member until its answer",
            member_request_duration.clone(),
        );
        registry.register(
            "otel_spans",
            "Spans of --otel by what became of them: exported, failed (the collector refused them or could not be reached), dropped (the queue was full)",
            crate::telemetry::spans().clone(),
        );
        let to_server = messages
            .get_or_create(&Direction {
                direction: "client_to_server",
            })
            .clone();
        let to_client = messages
            .get_or_create(&Direction {
                direction: "server_to_client",
            })
            .clone();
        Self {
            to_server,
            to_client,
            stateless_requests,
            tool_searches,
            tool_search_indexes,
            member_up,
            member_requests,
            member_request_duration,
            pool_ready,
            pool_hits,
            pool_misses,
            server_sessions_active,
            server_sessions,
            server_messages,
            server_children_alive,
            server_child_exits,
            server_errors,
            server_tool_calls_denied,
            policy_denials,
            policy_rule_failures,
            policy_limited,
            config_reloads,
            cluster_replica,
            cluster_peers,
            cluster_forwarded,
            cluster_forward_failures,
            cluster_forward_duration,
            cluster_roamed,
            redis_up,
            redis_errors,
            audit_lines,
            audit_dropped,
            registry,
            sessions_active,
            sessions_total,
            messages,
            post_duration,
            child_spawns,
            child_spawn_duration,
            children_alive,
            runtime_tasks,
            child_exits,
            child_restarts,
            shared_children_ready,
            backend,
            errors,
            rejected,
            live: Default::default(),
        }
    }

    pub fn message(&self, direction: &'static str) {
        if direction == "client_to_server" {
            self.to_server.inc();
        } else {
            self.to_client.inc();
        }
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

/// Buckets of a member's request duration: 100 µs to ~13 s.
fn member_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}
