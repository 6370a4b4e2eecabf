//! The heartbeat loop of a replica: announce it, learn the peers, refresh the entries of the
//! sessions held here, and after an outage (or a lapse of the announcement) register what was
//! opened meanwhile and give up what the directory no longer lists as this replica's.
//!
//! Owns: the periodic side of [`Cluster`]. Must not touch: requests.

use std::{sync::Arc, time::Instant};

use super::{CHECK_EVERY, Cluster, HEARTBEAT_EVERY, REPLICA_TTL, entry::Entry, placement};

/// Heartbeats that may time out in a row (Redis still answering others) before it counts as
/// down.
const LATE_BEATS: u32 = 2;

impl Cluster {
    /// The heartbeat loop: announce, learn the peers, refresh entries, resync after an outage.
    pub(super) async fn heartbeats(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_refresh = Instant::now();
        // Heartbeats in a row that timed out while Redis was up.
        let mut late = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.stop.cancelled() => return,
            }
            let lapsed = match self.directory.heartbeat(&self.me, REPLICA_TTL).await {
                Ok(lapsed) => {
                    late = 0;
                    lapsed
                }
                // One late answer on a busy machine is not an outage (it would refuse every
                // session not seen lately until the next beat): three in a row are. A refused
                // connection is one at once.
                Err(e) if e.is_timeout() && self.redis_up() && late < LATE_BEATS => {
                    late += 1;
                    self.redis_failed(&e);
                    continue;
                }
                Err(e) => {
                    self.redis_unreachable(&e);
                    continue;
                }
            };
            let (recovered, first) = {
                let mut h = self.redis.lock();
                let recovered = !h.up && h.tried;
                let first = !h.tried;
                h.up = true;
                h.tried = true;
                h.error = None;
                (recovered, first)
            };
            self.metrics.redis_up.set(1);
            // A Redis that lost its data (restarted without persistence, flushed) has a new
            // epoch: then what is missing from it was lost, not given up.
            let wiped = match self.directory.epoch(&random_secret()).await {
                Ok(epoch) => {
                    let wiped = self.epoch.read().as_ref().is_some_and(|k| *k != epoch);
                    // Until every holder has had its heartbeat to put its sessions back, a
                    // session missing from the directory is not "no such session" (set before
                    // this replica takes the new epoch as known: no lookup here sees neither).
                    if wiped && let Err(e) = self.directory.mark_recovering(REPLICA_TTL).await {
                        self.redis_failed(&e);
                        continue;
                    }
                    *self.epoch.write() = Some(epoch);
                    wiped
                }
                Err(e) => {
                    self.redis_failed(&e);
                    continue;
                }
            };
            // The shared secret, unless configured: kept in Redis (and put back with the one
            // every replica already knows, should Redis have lost it).
            if !self.secret_configured && (recovered || wiped || self.secret.read().is_none()) {
                let known = self.secret.read().clone();
                match self
                    .directory
                    .shared_secret(&known.unwrap_or_else(random_secret))
                    .await
                {
                    Ok(s) => *self.secret.write() = Some(s),
                    Err(e) => self.redis_failed(&e),
                }
            }
            if recovered || wiped {
                tracing::info!(
                    wiped,
                    "Redis reachable again; registering the sessions held here"
                );
                self.resync(Resync::Restore).await;
            } else if lapsed && !first {
                tracing::warn!(
                    "this replica's announcement had lapsed; giving up the sessions the directory no longer lists as its own"
                );
                self.resync(Resync::GiveUp).await;
            }
            match self.directory.peers().await {
                Ok(peers) => {
                    self.metrics.cluster_peers.set(peers.len() as i64);
                    let now = Instant::now();
                    let mut seen = self.seen.lock();
                    for p in &peers {
                        seen.insert(p.replica.clone(), (p.clone(), now));
                    }
                    seen.retain(|_, (_, at)| now.duration_since(*at) <= REPLICA_TTL);
                    drop(seen);
                    *self.peers.write() =
                        peers.into_iter().map(|p| (p.replica.clone(), p)).collect();
                }
                Err(e) => self.redis_failed(&e),
            }
            if last_refresh.elapsed() > self.session_ttl / 3 {
                last_refresh = Instant::now();
                let ids: Vec<String> = self.local.lock().keys().cloned().collect();
                if let Err(e) = self.directory.refresh(&ids, self.session_ttl).await {
                    self.redis_failed(&e);
                }
            }
        }
    }

    /// After an outage: register what was opened meanwhile and what Redis lost. After a lapse
    /// of the announcement (this process stalled while Redis stayed up): give up sessions the
    /// others have given up.
    async fn resync(&self, how: Resync) {
        let held: Vec<(String, Entry, bool)> = self
            .local
            .lock()
            .iter()
            .map(|(id, l)| (id.clone(), l.entry.clone(), l.registered))
            .collect();
        let ids: Vec<String> = held.iter().map(|(id, _, _)| id.clone()).collect();
        let Ok(entries) = self.directory.get_many(&ids).await else {
            return;
        };
        for ((id, entry, registered), found) in held.into_iter().zip(entries) {
            let lost = found.is_none() && (how == Resync::Restore || !registered);
            if lost {
                if self
                    .directory
                    .put_if_absent(&id, &entry, self.session_ttl)
                    .await
                    .is_ok()
                    && let Some(l) = self.local.lock().get_mut(&id)
                {
                    l.registered = true;
                }
            } else if !placement::still_ours(found.as_ref(), self.me()) {
                // Checked again on its next request, which then gets 404.
                if let Some(l) = self.local.lock().get_mut(&id) {
                    l.registered = true;
                    l.checked = Instant::now() - CHECK_EVERY * 2;
                }
            } else if let Some(l) = self.local.lock().get_mut(&id) {
                l.registered = true;
            }
        }
    }
}

/// What a resync does with a session missing from the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resync {
    /// Redis was away or lost its data: put it back.
    Restore,
    /// This replica was presumed dead: it was given up.
    GiveUp,
}

/// 64 random hex characters.
pub(super) fn random_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string() + &uuid::Uuid::new_v4().simple().to_string()
}
