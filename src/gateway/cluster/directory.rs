//! The directory in Redis: one key per session (`{prefix}:session:{id}`, JSON [`Entry`], with a
//! TTL its holders refresh), one key per live replica (`{prefix}:replica:{id}`, JSON [`Peer`],
//! a heartbeat with a short TTL), and the cluster's shared secret (`{prefix}:secret`).
//!
//! Every call fails fast (a response timeout) rather than hang a request when Redis is slow or
//! down; the connection manager reconnects on its own.
//!
//! Owns: the Redis key space. Must not touch: HTTP or sessions.

use std::time::Duration;

use redis::{
    AsyncCommands, Client, RedisResult,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use super::entry::{Entry, Peer};

/// How long one Redis call may take before it counts as a failure.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Directory {
    conn: ConnectionManager,
    prefix: String,
}

impl Directory {
    /// A directory on the Redis at `url`; connects lazily, so a gateway starts (degraded) even
    /// when Redis is down.
    pub fn new(url: &str, prefix: &str) -> anyhow::Result<Directory> {
        let client = Client::open(url).map_err(|e| anyhow::anyhow!("invalid --redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("cannot set up the Redis connection: {e}"))?;
        Ok(Directory {
            conn,
            prefix: prefix.to_string(),
        })
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}:session:{id}", self.prefix)
    }

    fn replica_key(&self, id: &str) -> String {
        format!("{}:replica:{id}", self.prefix)
    }

    /// Writes a session's entry with its TTL.
    pub async fn put(&self, id: &str, entry: &Entry, ttl: Duration) -> RedisResult<()> {
        let json = serde_json::to_string(entry).unwrap_or_default();
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(self.session_key(id))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut c)
            .await
    }

    /// Writes a session's entry unless one exists; true when written.
    pub async fn put_if_absent(&self, id: &str, entry: &Entry, ttl: Duration) -> RedisResult<bool> {
        let json = serde_json::to_string(entry).unwrap_or_default();
        let mut c = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.session_key(id))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .arg("NX")
            .query_async(&mut c)
            .await?;
        Ok(set.is_some())
    }

    /// A session's entry; `None` when there is none (or it is unreadable).
    pub async fn get(&self, id: &str) -> RedisResult<Option<Entry>> {
        let mut c = self.conn.clone();
        let raw: Option<String> = c.get(self.session_key(id)).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// Several entries at once (`None` for missing ones), in the order asked.
    pub async fn get_many(&self, ids: &[String]) -> RedisResult<Vec<Option<Entry>>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let keys: Vec<String> = ids.iter().map(|id| self.session_key(id)).collect();
        let mut c = self.conn.clone();
        let raw: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(&mut c).await?;
        Ok(raw
            .into_iter()
            .map(|r| r.and_then(|r| serde_json::from_str(&r).ok()))
            .collect())
    }

    /// Extends the TTL of these sessions' entries (those that still exist).
    pub async fn refresh(&self, ids: &[String], ttl: Duration) -> RedisResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("PEXPIRE")
                .arg(self.session_key(id))
                .arg(ttl.as_millis() as u64)
                .ignore();
        }
        let mut c = self.conn.clone();
        pipe.query_async(&mut c).await
    }

    pub async fn remove(&self, ids: &[String]) -> RedisResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.session_key(id)).collect();
        let mut c = self.conn.clone();
        c.del(keys).await
    }

    /// Announces this replica for `ttl`. True when its previous announcement had already
    /// expired (the others may have presumed it dead).
    pub async fn heartbeat(&self, me: &Peer, ttl: Duration) -> RedisResult<bool> {
        let json = serde_json::to_string(me).unwrap_or_default();
        let mut c = self.conn.clone();
        let old: Option<String> = redis::cmd("SET")
            .arg(self.replica_key(&me.replica))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .arg("GET")
            .query_async(&mut c)
            .await?;
        let old: Option<Peer> = old.and_then(|o| serde_json::from_str(&o).ok());
        Ok(old.is_none_or(|o| o.incarnation != me.incarnation))
    }

    /// Withdraws this replica's announcement (if it is still this incarnation's).
    pub async fn leave(&self, me: &Peer) -> RedisResult<()> {
        let script = redis::Script::new(
            r"local v = redis.call('GET', KEYS[1])
              if v and string.find(v, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end
              return 0",
        );
        let mut c = self.conn.clone();
        script
            .key(self.replica_key(&me.replica))
            .arg(format!("\"incarnation\":\"{}\"", me.incarnation))
            .invoke_async::<i64>(&mut c)
            .await
            .map(|_| ())
    }

    /// One replica's announcement, if it is alive.
    pub async fn peer(&self, replica: &str) -> RedisResult<Option<Peer>> {
        let mut c = self.conn.clone();
        let raw: Option<String> = c.get(self.replica_key(replica)).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// Every live replica.
    pub async fn peers(&self) -> RedisResult<Vec<Peer>> {
        let mut c = self.conn.clone();
        let pattern = format!("{}:replica:*", self.prefix);
        let mut cursor: u64 = 0;
        let mut keys: Vec<String> = vec![];
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(200)
                .query_async(&mut c)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let raw: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(&mut c).await?;
        Ok(raw
            .into_iter()
            .flatten()
            .filter_map(|r| serde_json::from_str(&r).ok())
            .collect())
    }

    /// The directory's epoch: set once when Redis is first used and lost with its data, so a
    /// replica can tell "missing because Redis lost it" from "missing because it was removed".
    pub async fn epoch(&self, candidate: &str) -> RedisResult<String> {
        self.set_once("epoch", candidate).await
    }

    /// Marks the directory as being refilled for `window` (Redis lost its data; the replicas
    /// are putting back what they hold): a session missing meanwhile may yet come back.
    pub async fn mark_recovering(&self, window: Duration) -> RedisResult<()> {
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(format!("{}:recovering", self.prefix))
            .arg(1)
            .arg("PX")
            .arg(window.as_millis() as u64)
            .query_async(&mut c)
            .await
    }

    /// The epoch as it is now (`None`: Redis has lost it and nobody set it again yet), and
    /// whether the directory is being refilled (see [`Self::mark_recovering`]).
    pub async fn epoch_state(&self) -> RedisResult<(Option<String>, bool)> {
        let mut c = self.conn.clone();
        redis::pipe()
            .get(format!("{}:epoch", self.prefix))
            .exists(format!("{}:recovering", self.prefix))
            .query_async(&mut c)
            .await
    }

    /// The cluster's shared secret: `candidate` if none was set yet, else the one already set.
    pub async fn shared_secret(&self, candidate: &str) -> RedisResult<String> {
        self.set_once("secret", candidate).await
    }

    /// `{prefix}:{name}`: `candidate` if it had no value, else its value.
    async fn set_once(&self, name: &str, candidate: &str) -> RedisResult<String> {
        let key = format!("{}:{name}", self.prefix);
        let mut c = self.conn.clone();
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(candidate)
            .arg("NX")
            .query_async(&mut c)
            .await?;
        let value: Option<String> = c.get(&key).await?;
        Ok(value.unwrap_or_else(|| candidate.to_string()))
    }
}
