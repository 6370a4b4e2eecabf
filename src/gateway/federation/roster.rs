//! A group's members as its open sessions see them. The roster is shared by every generation of
//! a group, so a reload that adds, removes or replaces a member reaches the sessions already
//! open: a new member gets a place in each (opened at once, announced with `list_changed` when
//! it is up), a member that left is closed in each (what waited on it fails naming it, and its
//! lists are announced as changed), and the members that stayed are not touched.
//!
//! A session's places are only ever appended, so the number a member has in a session (used in
//! its routes and pending ids) never means another member later.
//!
//! Owns: membership over time. Must not touch: how a member is opened (see [`super::member`]).

use parking_lot::{Mutex, RwLock};
use std::sync::{Arc, Weak};

use super::{
    Member,
    member::changed_lists,
    session::FedSession,
    slot::{Slot, capabilities},
};

/// The members of a group and the sessions that use them.
#[derive(Default)]
pub struct Roster {
    members: RwLock<Arc<[Arc<Member>]>>,
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    all: Vec<Weak<FedSession>>,
    /// How many were alive at the last sweep (the list is swept when it doubles).
    live: usize,
}

impl Roster {
    /// The members, in the group's order.
    pub fn members(&self) -> Arc<[Arc<Member>]> {
        self.members.read().clone()
    }

    /// Makes `members` the group's, keeping the [`Member`] of each server generation that stays
    /// (a member is the same while its backend is), and tells every open session.
    pub fn set(&self, members: Vec<Member>) {
        let next: Arc<[Arc<Member>]> = {
            let mut current = self.members.write();
            let next: Arc<[Arc<Member>]> = members
                .into_iter()
                .map(|m| {
                    current
                        .iter()
                        .find(|c| Arc::ptr_eq(&c.backend, &m.backend) && c.required == m.required)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(m))
                })
                .collect();
            *current = next.clone();
            next
        };
        let open: Vec<Arc<FedSession>> = {
            let mut s = self.sessions.lock();
            s.all.retain(|w| w.strong_count() > 0);
            s.live = s.all.len();
            s.all.iter().filter_map(Weak::upgrade).collect()
        };
        for session in open {
            session.adopt(&next);
        }
    }

    /// Remembers an open session (to tell it of later changes).
    pub(super) fn join(&self, session: &Arc<FedSession>) {
        let mut s = self.sessions.lock();
        if s.all.len() >= 2 * s.live.max(16) {
            s.all.retain(|w| w.strong_count() > 0);
            s.live = s.all.len();
        }
        s.all.push(Arc::downgrade(session));
    }
}

impl FedSession {
    /// The group's members changed: places for the new ones, the ones that left closed.
    pub fn adopt(&self, members: &[Arc<Member>]) {
        if self.closed.is_cancelled() {
            return;
        }
        let (left, added, before) = {
            let mut places = self.places.write();
            let before = places.active.len();
            let mut active = Vec::with_capacity(members.len());
            let mut added = vec![];
            for m in members {
                let found = places
                    .active
                    .iter()
                    .copied()
                    .find(|&i| Arc::ptr_eq(&places.all[i].member, m));
                let index = found.unwrap_or_else(|| {
                    places.all.push(Arc::new(Slot::new(m.clone())));
                    added.push(places.all.len() - 1);
                    places.all.len() - 1
                });
                active.push(index);
            }
            let left: Vec<usize> = places
                .active
                .iter()
                .copied()
                .filter(|i| !active.contains(i))
                .collect();
            places.active = active;
            (left, added, before)
        };
        if left.is_empty() && added.is_empty() {
            return;
        }
        let renamed =
            self.group.naming(before).prefixed() != self.group.naming(members.len()).prefixed();
        {
            let mut r = self.routing.lock();
            if renamed {
                r.routes.clear();
            } else {
                for routes in r.routes.values_mut() {
                    routes.retain(|_, (i, _)| !left.contains(i));
                }
            }
        }
        let mut changed = vec![];
        for index in left {
            let slot = self.slot(index);
            tracing::info!(group = %self.group.name, member = %slot.member.name, "member left the group (reload)");
            let why = format!(
                "member {:?} was removed from group {:?}",
                slot.member.name, self.group.name
            );
            if let Some(info) = slot.close(self.group.grace, &why) {
                changed.extend(changed_lists(capabilities(&info)));
            }
            self.fail_pending(index, &why);
        }
        if renamed {
            changed.extend([
                "notifications/tools/list_changed",
                "notifications/prompts/list_changed",
            ]);
        }
        changed.sort_unstable();
        changed.dedup();
        self.announce(&changed);
        // New members start now; each is announced with `list_changed` once it is up.
        if self.init.lock().is_some() {
            for index in added {
                let Some(me) = self.me.upgrade() else { return };
                tokio::spawn(async move {
                    let _ = me.ensure_up(index).await;
                });
            }
        }
    }
}
