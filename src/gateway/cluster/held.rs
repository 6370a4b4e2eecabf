//! The sessions this replica holds, as the directory should know them: registered when
//! opened (or restored), checked before they are served, and forgotten when they end.
//!
//! Owns: the held half of [`Cluster`]. Must not touch: requests for sessions held elsewhere.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use tokio_util::sync::CancellationToken;

use super::{
    CHECK_EVERY, Cluster, Local, Release, Verdict,
    entry::{Entry, RoamState, Transport},
    placement,
};

impl Cluster {
    /// A session opened here: into the directory before its first answer leaves, so the
    /// client's next request finds it wherever it lands. `ended` is the session's own: a session
    /// that ends before or while it is registered leaves no entry behind.
    pub async fn register(
        &self,
        id: &str,
        transport: Transport,
        server: Option<&str>,
        roam: Option<RoamState>,
        ended: &CancellationToken,
    ) {
        let entry = Entry {
            owner: self.me.replica.clone(),
            incarnation: self.me.incarnation.clone(),
            transport,
            server: server.map(str::to_string),
            roam,
        };
        // Held here first, then put: a session that closes while the put is on its way finds
        // its entry here (and the put below sees it gone), so no directory entry outlives it.
        self.local.lock().insert(
            id.to_string(),
            Local {
                entry: entry.clone(),
                registered: false,
                checked: Instant::now(),
            },
        );
        if ended.is_cancelled() {
            // Closed before it was held here (its `closed` found nothing to release).
            self.local.lock().remove(id);
            return;
        }
        // While Redis is known to be away, do not make the client wait for it: the resync
        // registers the session when it is back.
        if self.redis_down() {
            return;
        }
        let put = self.directory.put(id, &entry, self.session_ttl).await;
        if let Err(e) = &put {
            // A put that timed out may still land: the resync settles a session still held.
            self.redis_failed(e);
        }
        let still_held = {
            let mut local = self.local.lock();
            if ended.is_cancelled() {
                local.remove(id);
                false
            } else if let Some(l) = local.get_mut(id) {
                l.registered = put.is_ok();
                true
            } else {
                false
            }
        };
        if !still_held {
            // Closed during the put: take back what was just written.
            tracing::debug!(session = id, "closed while registering; entry removed");
            if let Err(e) = self.directory.remove(&[id.to_string()]).await {
                self.redis_failed(&e);
            }
        }
    }

    /// A roaming session restored here from its entry.
    pub fn adopted(&self, id: &str, server: Option<&str>, state: RoamState) {
        self.roamed.fetch_add(1, Ordering::Relaxed);
        self.metrics.cluster_roamed.inc();
        let entry = Entry {
            owner: self.me.replica.clone(),
            incarnation: self.me.incarnation.clone(),
            transport: Transport::Mcp,
            server: server.map(str::to_string),
            roam: Some(state),
        };
        self.local.lock().insert(
            id.to_string(),
            Local {
                entry,
                registered: true,
                checked: Instant::now(),
            },
        );
    }

    /// A roaming session's subscriptions changed: the directory keeps the new ones.
    pub async fn update_subscriptions(&self, id: &str, subscriptions: Vec<String>) {
        self.update_roam(id, |roam| roam.subscriptions = subscriptions)
            .await
    }

    /// A roaming session's active tools changed (tool search): the directory keeps them.
    pub async fn update_active(&self, id: &str, active: Vec<String>) {
        self.update_roam(id, |roam| roam.active = active).await
    }

    async fn update_roam(&self, id: &str, change: impl FnOnce(&mut super::entry::RoamState)) {
        let entry = {
            let mut local = self.local.lock();
            let Some(l) = local.get_mut(id) else {
                return;
            };
            let Some(roam) = l.entry.roam.as_mut() else {
                return;
            };
            change(roam);
            l.entry.clone()
        };
        if let Err(e) = self.directory.put(id, &entry, self.session_ttl).await {
            self.redis_failed(&e);
        }
    }

    /// Whether a session held here may still be served here (asks the directory at most once
    /// a second per session; serves on trust while Redis is unreachable).
    pub async fn check(&self, id: &str) -> Verdict {
        if self.redis_down() {
            return Verdict::Serve;
        }
        let registered = {
            let mut local = self.local.lock();
            let Some(l) = local.get_mut(id) else {
                return Verdict::Serve;
            };
            if l.checked.elapsed() < CHECK_EVERY {
                return Verdict::Serve;
            }
            l.checked = Instant::now();
            l.registered
        };
        match self.directory.get(id).await {
            Ok(entry) if placement::still_ours(entry.as_ref(), self.me()) => Verdict::Serve,
            // Opened while Redis was away and not yet registered: the resync will do it. Or
            // Redis lost its data: the resync puts it back.
            Ok(None) if !registered || self.directory_lost_data().await => Verdict::Serve,
            Ok(_) => Verdict::Gone,
            Err(e) => {
                self.redis_failed(&e);
                Verdict::Serve
            }
        }
    }

    /// A session held here has closed.
    pub fn closed(self: &Arc<Self>, id: &str, release: Release) {
        let Some(local) = self.local.lock().remove(id) else {
            return;
        };
        if self.leaving.load(Ordering::SeqCst) {
            return;
        }
        let remove = match release {
            Release::Ended => true,
            Release::LocalCopy => local.entry.roam.is_none(),
            Release::NotOurs => false,
        };
        if remove && local.registered {
            let cluster = self.clone();
            let id = id.to_string();
            tokio::spawn(async move {
                if let Err(e) = cluster.directory.remove(&[id]).await {
                    cluster.redis_failed(&e);
                }
            });
        }
    }
}
