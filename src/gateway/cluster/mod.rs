//! Several gateways behind one load balancer, sharing a Redis: the session directory, the
//! replicas' heartbeats, and the answer to "serve here or forward there" for any request.
//!
//! - Every session is in the directory with its owner (replica id and incarnation). Sessions
//!   served by the built-in server in process *roam*: their entry also holds the client's
//!   handshake, so any replica restores and serves them. The others are *pinned* to the replica
//!   holding their child process (or their HTTP+SSE stream); other replicas forward to it.
//! - Each replica announces itself every second with a 5 s TTL; a replica whose announcement
//!   lapsed is dead, and its pinned sessions are gone (404, the client starts a new one).
//! - Redis down or slow: sessions held here keep being served, requests that cannot be placed
//!   get 503, `/health` says `degraded`, and everything is re-registered when Redis returns.
//!
//! Owns: the directory's contents and this replica's place in the cluster. Must not touch: HTTP
//! (the router asks [`Cluster::place`] and does the forwarding), sessions or backends.

pub mod directory;
pub mod entry;
mod heartbeat;
mod held;
pub mod placement;

use parking_lot::{Mutex, RwLock};
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use self::{
    directory::Directory,
    entry::{Entry, Peer, tag_of},
    placement::{Me, Placement},
};
use super::metrics::Metrics;
use crate::config::ClusterConfig;

/// How often a replica announces itself.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long an announcement lives: a replica silent for this long is dead.
pub const REPLICA_TTL: Duration = Duration::from_secs(5);
/// How long a session held here is served on trust before the directory is asked again
/// whether it is still this replica's.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Entries remembered for placing requests while Redis is unreachable.
const PLACEMENT_CACHE: u64 = 100_000;

/// Whether a session held here may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Serve,
    /// The directory no longer lists it as this replica's: close it here, answer 404.
    Gone,
}

/// How a session held here ended, for what the directory should forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The session is over (the client ended it, its server died): remove its entry.
    Ended,
    /// This replica let go of its copy (idle, shutdown); a roaming session lives on elsewhere.
    LocalCopy,
    /// The directory had already given it away: leave the entry alone.
    NotOurs,
}

/// A session held here.
struct Local {
    entry: Entry,
    /// Whether the directory has it (false while Redis is unreachable).
    registered: bool,
    checked: Instant,
}

#[derive(Default)]
struct RedisHealth {
    up: bool,
    error: Option<String>,
    /// Whether the first heartbeat has been attempted.
    tried: bool,
}

/// This replica's view of the cluster.
pub struct Cluster {
    me: Peer,
    directory: Directory,
    metrics: Arc<Metrics>,
    /// TTL of session entries; holders refresh them at a third of it.
    session_ttl: Duration,
    local: Mutex<HashMap<String, Local>>,
    peers: RwLock<HashMap<String, Peer>>,
    /// Every replica announced within `REPLICA_TTL` of the last heartbeat that read the
    /// announcements (not forgotten while Redis is away or refilling), with when: the replicas
    /// asked whether they hold a session the directory cannot place.
    seen: Mutex<HashMap<String, (Peer, Instant)>>,
    /// Entries seen lately, to place requests while Redis is unreachable.
    recent: moka::sync::Cache<String, Entry>,
    secret: RwLock<Option<String>>,
    /// The secret came from `--cluster-secret` (never from Redis).
    secret_configured: bool,
    /// The directory's epoch as last seen (it changes when Redis loses its data).
    epoch: RwLock<Option<String>>,
    redis: Mutex<RedisHealth>,
    /// Set once this replica leaves: nothing more is written for it.
    leaving: AtomicBool,
    forwarded: AtomicU64,
    /// Time forwarded requests waited for their answer's head, in all.
    forward_micros: AtomicU64,
    redis_errors: AtomicU64,
    roamed: AtomicU64,
    stop: CancellationToken,
}

impl Cluster {
    /// Joins the cluster of `config` as the replica reached at `advertise_url`.
    pub fn new(
        config: &ClusterConfig,
        advertise_url: &str,
        session_idle_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let replica = config.replica_id.clone().unwrap_or_else(|| {
            advertise_url
                .split_once("://")
                .map_or(advertise_url, |(_, rest)| rest)
                .trim_end_matches('/')
                .to_string()
        });
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let me = Peer {
            replica,
            incarnation: uuid::Uuid::new_v4().simple().to_string(),
            url: advertise_url.trim_end_matches('/').to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started,
        };
        let session_ttl =
            (session_idle_timeout + Duration::from_secs(60)).max(Duration::from_secs(90));
        metrics
            .cluster_replica
            .get_or_create(&super::metrics::Replica {
                replica: me.replica.clone(),
            })
            .set(1);
        Ok(Arc::new(Cluster {
            directory: Directory::new(&config.redis_url, &config.prefix)?,
            me,
            metrics,
            session_ttl,
            local: Mutex::default(),
            peers: RwLock::default(),
            seen: Mutex::default(),
            recent: moka::sync::Cache::builder()
                .max_capacity(PLACEMENT_CACHE)
                .time_to_live(session_ttl)
                .build(),
            secret: RwLock::new(config.secret.clone()),
            secret_configured: config.secret.is_some(),
            epoch: RwLock::default(),
            redis: Mutex::default(),
            leaving: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
            forward_micros: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
            roamed: AtomicU64::new(0),
            stop: CancellationToken::new(),
        }))
    }

    /// Starts announcing this replica and keeping the directory up to date.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(self.clone().heartbeats());
    }

    pub fn replica(&self) -> &str {
        &self.me.replica
    }

    pub fn advertise_url(&self) -> &str {
        &self.me.url
    }

    fn me(&self) -> Me<'_> {
        Me {
            replica: &self.me.replica,
            incarnation: &self.me.incarnation,
        }
    }

    /// The tag this replica puts in its event ids.
    pub fn tag(&self) -> &str {
        tag_of(&self.me.incarnation)
    }

    /// The live replica whose event ids carry `tag`.
    pub fn peer_by_tag(&self, tag: &str) -> Option<Peer> {
        self.peers
            .read()
            .values()
            .find(|p| p.tag() == tag && p.incarnation != self.me.incarnation)
            .cloned()
    }

    /// Every other replica seen lately (see `seen`).
    pub fn others(&self) -> Vec<Peer> {
        self.seen
            .lock()
            .values()
            .map(|(p, _)| p)
            .filter(|p| p.incarnation != self.me.incarnation)
            .cloned()
            .collect()
    }

    /// The secret peers present when they forward a request; `None` until Redis was reached
    /// (when it is not configured).
    pub fn secret(&self) -> Option<String> {
        self.secret.read().clone()
    }

    /// Whether `presented` is the cluster's secret (compared in constant time).
    pub fn verify_peer(&self, presented: &[u8]) -> bool {
        match &*self.secret.read() {
            Some(secret) => bool::from(presented.ct_eq(secret.as_bytes())),
            None => false,
        }
    }

    pub fn redis_up(&self) -> bool {
        self.redis.lock().up
    }

    /// Whether Redis was found unreachable (and has not answered since).
    fn redis_down(&self) -> bool {
        let h = self.redis.lock();
        h.tried && !h.up
    }

    /// A Redis call failed. A call that only timed out while Redis is up does not take it down:
    /// on a busy machine one answer can miss its deadline while Redis is fine, and taking it
    /// down would refuse every session not seen lately until the next heartbeat. The
    /// heartbeat's own failures, timeouts included, decide that ([`Cluster::redis_unreachable`]).
    fn redis_failed(&self, e: &redis::RedisError) {
        if e.is_timeout() && self.redis_up() {
            self.metrics.redis_errors.inc();
            self.redis_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "a Redis call timed out");
            return;
        }
        self.redis_unreachable(e);
    }

    /// Redis counts as down until a heartbeat reaches it again.
    fn redis_unreachable(&self, e: &redis::RedisError) {
        self.metrics.redis_errors.inc();
        self.redis_errors.fetch_add(1, Ordering::Relaxed);
        self.metrics.redis_up.set(0);
        let mut h = self.redis.lock();
        if h.up || h.error.is_none() {
            tracing::warn!(error = %e, "Redis unreachable; serving the sessions held here, refusing what cannot be placed");
        }
        h.up = false;
        h.tried = true;
        h.error = Some(e.to_string());
    }

    /// How many times a directory lookup that timed out is asked before the request is refused
    /// (each waits up to the directory's 500 ms response timeout).
    const LOOKUP_TRIES: u32 = 4;

    /// Where a request for session `id` at `server`, not held here, goes.
    pub async fn place(&self, id: &str, server: Option<&str>, forwarded: bool) -> Placement {
        let asked = if self.redis_down() {
            // Known to be away (the heartbeat notices its return): no wait for a timeout.
            Err(None)
        } else {
            let mut asked = self.directory.get(id).await;
            let mut tries = 1;
            // Late (a busy machine, Redis still up): ask again, up to LOOKUP_TRIES in all,
            // before refusing the request — waiting a little beats a 503.
            while let Err(e) = &asked
                && e.is_timeout()
                && tries < Self::LOOKUP_TRIES
                && self.recent.get(id).is_none()
            {
                self.redis_failed(e);
                if self.redis_down() {
                    break;
                }
                tries += 1;
                asked = self.directory.get(id).await;
            }
            asked.map_err(Some)
        };
        let entry = match asked {
            Ok(entry) => {
                match &entry {
                    Some(e) => self.recent.insert(id.to_string(), e.clone()),
                    None => self.recent.invalidate(id),
                }
                entry
            }
            Err(e) => {
                if let Some(e) = e {
                    self.redis_failed(&e);
                }
                // Place what was seen lately; refuse the rest.
                match self.recent.get(id) {
                    Some(e) => Some(e),
                    None => return Placement::Unknown,
                }
            }
        };
        if entry.is_none() && self.directory_lost_data().await {
            // Its holder will put it back within a heartbeat: try again, do not start over.
            return Placement::Unknown;
        }
        let owner = match &entry {
            Some(e) if e.roam.is_none() && e.owner != self.me.replica => {
                self.live_peer(&e.owner).await
            }
            _ => None,
        };
        let placed = placement::place(entry.as_ref(), server, owner.as_ref(), self.me(), forwarded);
        if let (Placement::Gone(reason), Some(e)) = (&placed, &entry)
            && !forwarded
            && e.roam.is_none()
            && e.server.as_deref() == server
            && owner
                .as_ref()
                .is_none_or(|o| o.incarnation != e.incarnation)
            && self.redis_up()
        {
            // Its replica is gone: so is the session, for everyone.
            tracing::info!(session = id, owner = %e.owner, reason, "session's replica is gone; forgetting it");
            self.recent.invalidate(id);
            if let Err(err) = self.directory.remove(&[id.to_string()]).await {
                self.redis_failed(&err);
            }
        }
        placed
    }

    /// Whether a session missing from the directory may have been lost by Redis rather than
    /// ended: Redis has no epoch (it lost its data and no replica has noticed yet), another
    /// epoch than this replica knows, or is being refilled (a replica noticed within the last
    /// `REPLICA_TTL`: every live holder has had its heartbeat to put its sessions back after
    /// that). Asked only when a lookup finds nothing; a failed ask counts as "may have".
    async fn directory_lost_data(&self) -> bool {
        let known = self.epoch.read().clone();
        match self.directory.epoch_state().await {
            Ok((now, recovering)) => recovering || now.is_none() || now != known,
            Err(e) => {
                self.redis_failed(&e);
                true
            }
        }
    }

    /// The live announcement of `replica`, from the table or (for a replica that just started)
    /// from Redis.
    async fn live_peer(&self, replica: &str) -> Option<Peer> {
        if let Some(p) = self.peers.read().get(replica) {
            return Some(p.clone());
        }
        match self.directory.peer(replica).await {
            Ok(p) => p,
            Err(e) => {
                self.redis_failed(&e);
                None
            }
        }
    }

    /// A request was forwarded to a peer.
    pub fn counted_forward(&self, took: Duration) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        self.forward_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.metrics.cluster_forwarded.inc();
    }

    /// Ends a session not held here (a `DELETE` for a roaming session): removes its entry.
    pub async fn forget(&self, id: &str) -> bool {
        self.recent.invalidate(id);
        match self.directory.remove(&[id.to_string()]).await {
            Ok(()) => true,
            Err(e) => {
                self.redis_failed(&e);
                false
            }
        }
    }

    /// Leaves the cluster (shutdown): pinned sessions held here are removed from the directory
    /// (they end with this process), roaming ones stay for the others, and the announcement is
    /// withdrawn so peers stop forwarding here at once.
    pub async fn leave(&self) {
        self.leaving.store(true, Ordering::SeqCst);
        self.stop.cancel();
        let pinned: Vec<String> = self
            .local
            .lock()
            .iter()
            .filter(|(_, l)| l.entry.roam.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.directory.remove(&pinned).await;
            let _ = self.directory.leave(&self.me).await;
        })
        .await;
        tracing::info!(replica = %self.me.replica, released = pinned.len(), "left the cluster");
    }

    /// The cluster part of `/health`, and whether it degrades the gateway (and why).
    pub fn status(&self) -> (Value, Option<String>) {
        let h = self.redis.lock();
        let peers: Vec<Value> = self
            .peers
            .read()
            .values()
            .map(|p| json!({"replica": p.replica, "url": p.url, "incarnation": p.incarnation, "version": p.version}))
            .collect();
        let reason = (!h.up).then(|| {
            format!(
                "Redis unreachable: {}",
                h.error.as_deref().unwrap_or("not connected yet")
            )
        });
        let forwarded = self.forwarded.load(Ordering::Relaxed);
        let status = json!({
            "replica": self.me.replica,
            "incarnation": self.me.incarnation,
            "advertise_url": self.me.url,
            "redis": if h.up { "ok" } else { "unreachable" },
            "redis_error": h.error,
            "peers": peers,
            "sessions_held": self.local.lock().len(),
            "forwarded": forwarded,
            "forward_mean_ms": (forwarded > 0).then(|| {
                (self.forward_micros.load(Ordering::Relaxed) as f64 / forwarded as f64 / 10.0)
                    .round()
                    / 100.0
            }),
            "roamed": self.roamed.load(Ordering::Relaxed),
            "redis_errors": self.redis_errors.load(Ordering::Relaxed),
        });
        (status, reason)
    }
}
