//! A member's place in one federated session: its phase (idle, starting, up, down until a
//! time), the generation of its current opening, its link and `initialize` result, and its
//! lists until it says they changed; and a session's places, one per member it ever had.
//!
//! Owns: that state and the few things done with it under its lock. Must not touch: opening or
//! routing (see [`super::member`] and [`super::session`]).

use parking_lot::Mutex;
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::Notify;

use super::{Member, catalog::ListKind};
use crate::{
    gateway::backend::Link,
    mcp::jsonrpc::{self, Kind},
};

#[derive(Default)]
pub(super) enum Phase {
    #[default]
    Idle,
    Starting,
    Up,
    Down {
        until: Instant,
        why: String,
    },
}

#[derive(Default)]
pub(super) struct State {
    pub phase: Phase,
    pub generation: u64,
    pub link: Option<Arc<dyn Link>>,
    /// The member's `initialize` result.
    pub info: Value,
    pub failures: u32,
    /// Its lists, until it says they changed.
    pub lists: HashMap<ListKind, Vec<Value>>,
    /// Bumped when a list is forgotten (a fetch begun before then is not kept).
    pub version: u64,
}

/// A member's generation, lists' version and whether it is up: what a merged list was made of.
pub(super) type Stamp = (u64, u64, bool);

/// Each current member's place and stamp: what a merged list was made of.
pub(super) type Stamps = Vec<(usize, Stamp)>;

/// A member's place in one session.
pub(super) struct Slot {
    pub member: Arc<Member>,
    pub state: Mutex<State>,
    pub changed: Notify,
    /// `notifications/initialized` was sent to the current generation.
    pub told: AtomicBool,
}

pub(super) fn capabilities(info: &Value) -> &Value {
    info.get("capabilities").unwrap_or(&Value::Null)
}

impl Slot {
    pub fn new(member: Arc<Member>) -> Slot {
        Slot {
            member,
            state: Mutex::default(),
            changed: Notify::new(),
            told: AtomicBool::new(false),
        }
    }

    pub fn is(&self, generation: u64) -> bool {
        self.state.lock().generation == generation
    }

    /// What a merged list depends on: the opening, the lists' version, whether it is up.
    pub fn stamp(&self) -> Stamp {
        let s = self.state.lock();
        (s.generation, s.version, matches!(s.phase, Phase::Up))
    }

    /// The member's link, when it is up.
    pub fn link_if_up(&self) -> Option<Arc<dyn Link>> {
        let s = self.state.lock();
        matches!(s.phase, Phase::Up)
            .then(|| s.link.clone())
            .flatten()
    }

    /// Whether the member is up and has `kind`.
    pub fn has(&self, kind: ListKind) -> bool {
        let s = self.state.lock();
        matches!(s.phase, Phase::Up) && capabilities(&s.info).get(kind.capability()).is_some()
    }

    /// The member's `initialize` result, when it is up.
    pub fn info(&self) -> Option<Value> {
        let s = self.state.lock();
        matches!(s.phase, Phase::Up).then(|| s.info.clone())
    }

    pub fn cached(&self, kind: ListKind) -> (Option<Vec<Value>>, u64) {
        let s = self.state.lock();
        (s.lists.get(&kind).cloned(), s.version)
    }

    pub fn store(&self, kind: ListKind, version: u64, items: Vec<Value>) {
        let mut s = self.state.lock();
        if s.version == version && matches!(s.phase, Phase::Up) {
            s.lists.insert(kind, items);
        }
    }

    /// The member said a list changed (`notifications/<x>/list_changed`).
    pub fn forget(&self, method: &str) {
        let mut s = self.state.lock();
        s.lists.retain(|k, _| k.changed() != method);
        s.version += 1;
    }

    /// Hands a message to the member if it is up (else it is dropped: the member is gone).
    pub async fn send(&self, line: Bytes, kind: &Kind) {
        let link = self.state.lock().link.clone();
        if let Some(link) = link {
            let _ = link.forward(line, kind).await;
        }
    }

    /// Sends `notifications/initialized` once per generation, when the member is up.
    pub async fn tell_initialized(&self) {
        let link = {
            let s = self.state.lock();
            if !matches!(s.phase, Phase::Up) {
                return;
            }
            s.link.clone()
        };
        if self.told.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(link) = link {
            let method = "notifications/initialized";
            let kind = Kind::Notification {
                method: method.into(),
            };
            let _ = link
                .forward(jsonrpc::message(None, method, None), &kind)
                .await;
        }
    }

    /// The session ended (or the member left the group): the member's server is released and
    /// nothing of it is taken later. Its `initialize` result, if it was up.
    pub fn close(&self, grace: Duration, why: &str) -> Option<Value> {
        let (link, info) = {
            let mut s = self.state.lock();
            let info = matches!(s.phase, Phase::Up).then(|| std::mem::take(&mut s.info));
            if info.is_some() {
                self.member.count_up(-1);
            }
            s.generation += 1;
            s.phase = Phase::Down {
                until: Instant::now() + Duration::from_secs(86_400 * 365),
                why: why.to_string(),
            };
            s.lists.clear();
            s.version += 1;
            (s.link.take(), info)
        };
        self.changed.notify_waiters();
        if let Some(link) = link {
            link.release(grace);
        }
        info
    }
}

/// A session's places, one per member it ever had; `active` are the current members' places,
/// in the group's order.
pub(super) struct Places {
    pub all: Vec<Arc<Slot>>,
    pub active: Vec<usize>,
}

impl Places {
    pub fn new(members: &[Arc<Member>]) -> Places {
        Places {
            all: members
                .iter()
                .map(|m| Arc::new(Slot::new(m.clone())))
                .collect(),
            active: (0..members.len()).collect(),
        }
    }
}
