//! One server's view of the gateway's metrics.

use std::time::Duration;

use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};

use super::{
    all::Metrics,
    labels::{
        Cause, Server, ServerCause, ServerDirection, ServerKind, ServerMember, ServerMemberOutcome,
        ServerOutcome, ServerRule,
    },
};

/// One server's view of the metrics: every count goes to the gateway-wide total and to the
/// server's own series (label `server`). Cheap to clone.
#[derive(Clone)]
pub struct ServerMetrics {
    pub all: std::sync::Arc<Metrics>,
    name: String,
    sessions_active: Gauge,
    sessions_total: Counter,
    children_alive: Gauge,
    to_server: Counter,
    to_client: Counter,
}

impl ServerMetrics {
    pub fn new(all: std::sync::Arc<Metrics>, server: &str) -> ServerMetrics {
        let label = Server {
            server: server.to_string(),
        };
        let direction = |direction| ServerDirection {
            server: server.to_string(),
            direction,
        };
        // One statement each: a family's guard lives to the end of its statement, and the next
        // `get_or_create` may need the write lock.
        let sessions_active = all.server_sessions_active.get_or_create(&label).clone();
        let sessions_total = all.server_sessions.get_or_create(&label).clone();
        let children_alive = all.server_children_alive.get_or_create(&label).clone();
        let to_server = all
            .server_messages
            .get_or_create(&direction("client_to_server"))
            .clone();
        let to_client = all
            .server_messages
            .get_or_create(&direction("server_to_client"))
            .clone();
        ServerMetrics {
            sessions_active,
            sessions_total,
            children_alive,
            to_server,
            to_client,
            name: server.to_string(),
            all: all.clone(),
        }
    }

    /// Whether the console's live numbers are kept (`--console`).
    pub fn live_on(&self) -> bool {
        self.all.live.is_on()
    }

    /// A call ended (the console's live numbers).
    pub fn call_ended(&self, ok: bool, took: Duration) {
        self.all.live.record(ok, took);
    }

    pub fn session_opened(&self) {
        self.all.sessions_total.inc();
        self.all.sessions_active.inc();
        self.sessions_total.inc();
        self.sessions_active.inc();
    }

    /// A session slot taken before it is counted as opened (or undone when it fails).
    pub fn session_active(&self, delta: i64) {
        self.all.sessions_active.inc_by(delta);
        self.sessions_active.inc_by(delta);
    }

    pub fn session_counted(&self) {
        self.all.sessions_total.inc();
        self.sessions_total.inc();
    }

    pub fn message(&self, direction: &'static str) {
        self.all.message(direction);
        if direction == "client_to_server" {
            self.to_server.inc();
        } else {
            self.to_client.inc();
        }
    }

    pub fn error(&self, kind: &'static str) {
        self.all.error(kind);
        self.all
            .server_errors
            .get_or_create(&ServerKind {
                server: self.name.clone(),
                kind,
            })
            .inc();
    }

    pub fn child_started(&self) {
        self.all.child_spawns.inc();
        self.all.children_alive.inc();
        self.children_alive.inc();
    }

    pub fn child_ended(&self, cause: &'static str) {
        self.all.children_alive.dec();
        self.children_alive.dec();
        self.all.child_exits.get_or_create(&Cause { cause }).inc();
        self.all
            .server_child_exits
            .get_or_create(&ServerCause {
                server: self.name.clone(),
                cause,
            })
            .inc();
    }

    fn label(&self) -> Server {
        Server {
            server: self.name.clone(),
        }
    }

    pub fn pool_ready(&self, n: usize) {
        self.all
            .pool_ready
            .get_or_create(&self.label())
            .set(n as i64);
    }

    /// The pool's series exist (at zero) from its start, so rates work from the first take.
    pub fn pool_started(&self) {
        let label = self.label();
        drop(self.all.pool_hits.get_or_create(&label));
        drop(self.all.pool_misses.get_or_create(&label));
        self.pool_ready(0);
    }

    pub fn pool_hit(&self) {
        self.all.pool_hits.get_or_create(&self.label()).inc();
    }

    pub fn pool_miss(&self) {
        self.all.pool_misses.get_or_create(&self.label()).inc();
    }

    /// A stateless request ended with `outcome`.
    pub fn stateless(&self, outcome: &'static str) {
        self.all
            .stateless_requests
            .get_or_create(&ServerOutcome {
                server: self.name.clone(),
                outcome,
            })
            .inc();
    }

    /// A call of tool search's search tool, by outcome.
    pub fn tool_search(&self, outcome: &'static str) {
        self.all
            .tool_searches
            .get_or_create(&ServerOutcome {
                server: self.name.clone(),
                outcome,
            })
            .inc();
    }

    /// Tool search built an index.
    pub fn tool_search_index(&self) {
        self.all
            .tool_search_indexes
            .get_or_create(&Server {
                server: self.name.clone(),
            })
            .inc();
    }

    /// A request the rules refused, by the rule that decided.
    pub fn policy_denied(&self, rule: &str) {
        let label = ServerRule {
            server: self.name.clone(),
            rule: rule.to_string(),
        };
        self.all.policy_denials.get_or_create(&label).inc();
    }

    /// A call a limit refused, by the limit.
    pub fn limited(&self, limit: &str) {
        let label = ServerRule {
            server: self.name.clone(),
            rule: limit.to_string(),
        };
        self.all.policy_limited.get_or_create(&label).inc();
    }

    /// A rule that failed at run time.
    pub fn rule_failed(&self, rule: &str) {
        let label = ServerRule {
            server: self.name.clone(),
            rule: rule.to_string(),
        };
        self.all.policy_rule_failures.get_or_create(&label).inc();
    }

    pub fn tool_call_denied(&self) {
        self.all
            .server_tool_calls_denied
            .get_or_create(&Server {
                server: self.name.clone(),
            })
            .inc();
    }
}

/// A group member's series (labels `server` — the group — and `member`).
#[derive(Clone)]
pub struct MemberMetrics {
    up: Gauge,
    ok: Counter,
    error: Counter,
    unavailable: Counter,
    duration: Histogram,
}

impl ServerMetrics {
    /// The series of member `member` of this group.
    pub fn member(&self, member: &str) -> MemberMetrics {
        let label = ServerMember {
            server: self.name.clone(),
            member: member.to_string(),
        };
        let outcome = |outcome| ServerMemberOutcome {
            server: self.name.clone(),
            member: member.to_string(),
            outcome,
        };
        let up = self.all.member_up.get_or_create(&label).clone();
        let ok = self
            .all
            .member_requests
            .get_or_create(&outcome("ok"))
            .clone();
        let error = self
            .all
            .member_requests
            .get_or_create(&outcome("error"))
            .clone();
        let unavailable = self
            .all
            .member_requests
            .get_or_create(&outcome("unavailable"))
            .clone();
        let duration = self
            .all
            .member_request_duration
            .get_or_create(&label)
            .clone();
        MemberMetrics {
            up,
            ok,
            error,
            unavailable,
            duration,
        }
    }
}

impl MemberMetrics {
    /// The member came up (`1`) or went down (`-1`) in one session.
    pub fn up(&self, delta: i64) {
        self.up.inc_by(delta);
    }

    /// A relayed request was answered (`ok`: not with an error) after `took`.
    pub fn answered(&self, ok: bool, took: Duration) {
        if ok { &self.ok } else { &self.error }.inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// A request for the member found it down or late.
    pub fn unavailable(&self) {
        self.unavailable.inc();
    }
}
