//! The heartbeat loop of a replica: announce it, learn the peers, refresh the entries of the
//! sessions held here, and after an outage (or a lapse of the announcement) register what was
//! opened meanwhile and give up what the directory no longer lists as this replica's.
//!
//! Owns: the periodic side of [`Cluster`]. Must not touch: requests.

use std::{sync::Arc, time::Instant};

use super::{CHECK_EVERY, Cluster, HEARTBEAT_EVERY, REPLICA_TTL, entry::Entry, placement};

impl Cluster {
    /// The heartbeat loop: announce, learn the peers, refresh entries, resync after an outage.
    pub(super) async fn heartbeats(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_refresh = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.stop.cancelled() => return,
            }
            let lapsed = match self.directory.heartbeat(&self.me, REPLICA_TTL).await {
                Ok(lapsed) => lapsed,
                Err(e) => {
                    self.redis_failed(&e);
                    continue;
                }
            };
            let (recovered, first) = {
                let mut h = self.redis.lock().unwrap();
                let recovered = !h.up && h.tried;
                let first = !h.tried;
                h.up = true;
                h.tried = true;
                h.error = None;
                (recovered, first)
            };
            self.metrics.redis_up.set(1);
            if recovered {
                tracing::info!("Redis reachable again; re-registering the sessions held here");
            }
            if self.secret.read().unwrap().is_none() {
                let candidate = uuid::Uuid::new_v4().simple().to_string()
                    + &uuid::Uuid::new_v4().simple().to_string();
                match self.directory.shared_secret(&candidate).await {
                    Ok(s) => *self.secret.write().unwrap() = Some(s),
                    Err(e) => self.redis_failed(&e),
                }
            }
            if recovered || (lapsed && !first) {
                if lapsed && !first {
                    tracing::warn!(
                        "this replica's announcement had lapsed; checking which sessions are still its own"
                    );
                }
                self.resync().await;
            }
            match self.directory.peers().await {
                Ok(peers) => {
                    self.metrics.cluster_peers.set(peers.len() as i64);
                    *self.peers.write().unwrap() =
                        peers.into_iter().map(|p| (p.replica.clone(), p)).collect();
                }
                Err(e) => self.redis_failed(&e),
            }
            if last_refresh.elapsed() > self.session_ttl / 3 {
                last_refresh = Instant::now();
                let ids: Vec<String> = self.local.lock().unwrap().keys().cloned().collect();
                if let Err(e) = self.directory.refresh(&ids, self.session_ttl).await {
                    self.redis_failed(&e);
                }
            }
        }
    }

    /// After an outage (or a lapse): register what was opened meanwhile, and give up sessions
    /// the directory no longer lists as this replica's.
    async fn resync(&self) {
        let held: Vec<(String, Entry, bool)> = self
            .local
            .lock()
            .unwrap()
            .iter()
            .map(|(id, l)| (id.clone(), l.entry.clone(), l.registered))
            .collect();
        let ids: Vec<String> = held.iter().map(|(id, _, _)| id.clone()).collect();
        let Ok(entries) = self.directory.get_many(&ids).await else {
            return;
        };
        for ((id, entry, registered), found) in held.into_iter().zip(entries) {
            if !registered {
                let result = if entry.roam.is_some() {
                    self.directory
                        .put_if_absent(&id, &entry, self.session_ttl)
                        .await
                        .map(|_| ())
                } else {
                    self.directory.put(&id, &entry, self.session_ttl).await
                };
                if result.is_ok()
                    && let Some(l) = self.local.lock().unwrap().get_mut(&id)
                {
                    l.registered = true;
                }
            } else if !placement::still_ours(found.as_ref(), self.me()) {
                // Checked on its next request (which then gets 404).
                if let Some(l) = self.local.lock().unwrap().get_mut(&id) {
                    l.checked = Instant::now() - CHECK_EVERY * 2;
                }
            }
        }
    }
}
