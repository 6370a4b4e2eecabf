//! Federation: a group of servers served as one endpoint. A [`Federation`] is itself a
//! [`Backend`]; each of its sessions holds one session per member, opened through that member's
//! own backend (its child, shared child, pool or in-process server), and the member never
//! learns it is federated.
//!
//! - [`catalog`]: names (prefix modes, the separator, collisions) and merged lists — pure.
//! - [`session`]: a federated session — what the client sends, routed to members by name, URI
//!   or id; what members send, with ids the client cannot confuse.
//! - [`slot`]: a member's state within a session.
//! - [`routes`]: which member a request by name or URI goes to.
//! - [`roster`]: the members over time: a reload's changes reach the open sessions.
//! - [`member`]: one member within a session: opened on first use, initialized with the
//!   client's own capabilities, left out while down and reopened (with backoff) after.
//! - [`lists`]: `initialize` and the lists, fanned out to members in parallel with a deadline
//!   each, cached per member until it says its list changed.
//!
//! Owns: groups and their sessions. Must not touch: HTTP, the registry, any backend's workings
//! (only the [`Backend`] traits).

pub mod catalog;
mod lists;
mod member;
mod roster;
mod routes;
pub mod search;
mod session;
mod slot;

pub use roster::Roster;

use parking_lot::Mutex;
use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;
use serde_json::{Value, json};

use self::catalog::Naming;
use crate::{
    config::{Backend as BackendKind, GroupConfig, PrefixMode},
    gateway::backend::{Backend, Client, Link, OpenError, Status},
    gateway::metrics::MemberMetrics,
};

/// How a group session's environment names member `member`'s variable `var` (from the
/// member's `envFromHeaders`). `scoped(member, "")` is the member's marker: present when the
/// session was opened with headers, its value empty — or why the member is left out (a required
/// header was missing).
pub fn scoped(member: &str, var: &str) -> String {
    format!("{member}/{var}")
}

/// One member of a group: a server of the file, with the backend that serves it.
pub struct Member {
    pub name: String,
    pub backend: Arc<dyn Backend>,
    pub required: bool,
    /// It takes settings from each session's headers (`envFromHeaders`).
    pub per_session_env: bool,
    pub metrics: MemberMetrics,
    /// Sessions of the group in which this member is up (for `/health`).
    up: AtomicUsize,
}

impl Member {
    pub fn new(
        name: String,
        backend: Arc<dyn Backend>,
        required: bool,
        per_session_env: bool,
        metrics: MemberMetrics,
    ) -> Member {
        Member {
            name,
            backend,
            required,
            per_session_env,
            metrics,
            up: AtomicUsize::new(0),
        }
    }

    /// It came up (`1`) or went down (`-1`) in one session.
    pub(crate) fn count_up(&self, delta: i64) {
        if delta > 0 {
            self.up.fetch_add(1, Ordering::Relaxed);
        } else {
            self.up.fetch_sub(1, Ordering::Relaxed);
        }
        self.metrics.up(delta);
    }
}

/// A group and what its sessions share.
pub struct Group {
    pub name: String,
    /// Its members, shared with its other generations (see [`Roster`]).
    pub roster: Arc<Roster>,
    prefix: PrefixMode,
    separator: String,
    /// How long a member may take to answer before it is left out of an answer.
    pub timeout: Duration,
    /// Items per page of its lists (`0`: all in one page).
    pub page_size: usize,
    /// Grace a member's server gets when a session ends.
    pub grace: Duration,
    /// Items left out of merged lists (collisions, names too long), each reported once.
    problems: Mutex<BTreeSet<String>>,
}

impl Group {
    /// How names are made while the group has `members` members.
    pub fn naming(&self, members: usize) -> Naming {
        Naming {
            prefix: self.prefix,
            separator: self.separator.clone(),
            members,
        }
    }

    fn report(&self, problems: &[String]) {
        for p in problems {
            if self.problems.lock().insert(p.clone()) {
                tracing::warn!(group = %self.name, "{p}");
            }
        }
    }
}

/// A group as a backend.
pub struct Federation {
    group: Arc<Group>,
}

impl Federation {
    /// A generation of group `name` with `members`. `roster` is the one of its earlier
    /// generations (or a new one): their open sessions take the new members too.
    pub fn new(
        name: &str,
        config: &GroupConfig,
        members: Vec<Member>,
        grace: Duration,
        roster: Arc<Roster>,
    ) -> Arc<Federation> {
        roster.set(members);
        Arc::new(Federation {
            group: Arc::new(Group {
                name: name.to_string(),
                roster,
                prefix: config.prefix,
                separator: config.separator.clone(),
                timeout: config.member_timeout,
                page_size: config.page_size,
                grace,
                problems: Mutex::default(),
            }),
        })
    }
}

impl Backend for Federation {
    fn kind(&self) -> BackendKind {
        BackendKind::Federated
    }

    /// The members are started by their own servers.
    fn start(self: Arc<Self>) -> anyhow::Result<()> {
        Ok(())
    }

    fn open(
        &self,
        client: Arc<dyn Client>,
        env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError> {
        Ok(session::open(self.group.clone(), client, env))
    }

    fn status(&self) -> Status {
        let members = self
            .group
            .roster
            .members()
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "required": m.required,
                    "sessions_up": m.up.load(Ordering::Relaxed),
                })
            })
            .collect();
        Status {
            members: Some(json!({
                "members": Value::Array(members),
                "prefix": format!("{:?}", self.group.prefix).to_lowercase(),
                "separator": self.group.separator,
                "left_out": self.group.problems.lock().iter().collect::<Vec<_>>(),
            })),
            ..Status::default()
        }
    }

    /// The members' servers are stopped by their own servers.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
