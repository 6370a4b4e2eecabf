//! Reloading the servers file: on SIGHUP and when the file changes (checked every second), the
//! new set replaces the old all at once — or not at all, when the file has an error.
//!
//! Owns: when to reload and how a new set is applied. Must not touch: how servers are served.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use serde_json::{Value, json};

use super::Registry;
use crate::{
    cli::{keys, servers_file},
    config::ServerConfig,
    gateway::{metrics::Reason, policy::keys::Source},
};

/// The API keys file as last read.
#[derive(Default)]
pub struct KeysFile {
    pub loaded: Option<jiff::Timestamp>,
    pub error: Option<String>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Registry {
    /// Reads the servers file again and applies it; `Err` (with the reason) leaves the running
    /// set untouched.
    pub async fn reload(&self) -> Result<Changes, String> {
        let Some(path) = self.gateway.servers_file.clone() else {
            return Err("no servers file (--config) to reload".into());
        };
        let _one = self.reloading.lock().await;
        let loaded = match servers_file::load(&path, &self.gateway.server) {
            Ok(l) => l,
            Err(e) => return Err(self.refused(format!("{e:#}"))),
        };
        if let Some(d) = &self.gateway.default_server
            && !loaded.servers.iter().any(|s| s.name == *d)
        {
            return Err(self.refused(format!(
                "the default server {d:?} (--default-server) is not in the file any more"
            )));
        }
        // The rules change in place: open sessions are judged by the new ones from now on.
        if let Err(e) = self.book.replace(&loaded.policy) {
            return Err(self.refused(e));
        }
        let file_keys = loaded.policy.keys.as_deref().unwrap_or_default();
        self.keys.replace(Source::ServersFile, file_keys);
        self.limits.replace(&loaded.policy.limits);
        // Build what is new before anything changes, then swap it in.
        let current: Vec<(String, Arc<ServerConfig>)> = self
            .inner
            .read()
            .by_name
            .iter()
            .map(|(n, s)| (n.clone(), s.config.clone()))
            .collect();
        let mut changes = Changes::default();
        let (groups, plain): (Vec<_>, Vec<_>) =
            loaded.servers.iter().partition(|s| s.group.is_some());
        // Servers first, then the groups, built on the servers' current generations: a group
        // whose members changed is a new generation too, and its open sessions (of every
        // generation) take the new members (see `federation::Roster`).
        let fresh = self.fresh(&plain, &current, &mut changes, |_| false);
        self.swap(fresh);
        let touched: BTreeSet<String> = changes
            .added
            .iter()
            .chain(&changes.changed)
            .cloned()
            .collect();
        let fresh = self.fresh(&groups, &current, &mut changes, |config| {
            config
                .group
                .as_ref()
                .is_some_and(|g| g.members.iter().any(|m| touched.contains(m)))
        });
        self.swap(fresh);
        let keep: BTreeSet<&str> = loaded.servers.iter().map(|s| s.name.as_str()).collect();
        {
            let mut inner = self.inner.write();
            let gone: Vec<String> = inner
                .by_name
                .keys()
                .filter(|n| !keep.contains(n.as_str()))
                .cloned()
                .collect();
            for name in gone {
                if let Some(old) = inner.by_name.remove(&name) {
                    old.draining.store(true, Ordering::Relaxed);
                    inner.draining.push(old);
                    changes.removed.push(name);
                }
            }
        }
        {
            let mut f = self.file.lock();
            f.loaded = Some(jiff::Timestamp::now());
            f.error = None;
            f.notes = loaded.notes.clone();
        }
        self.metrics
            .config_reloads
            .get_or_create(&Reason { reason: "applied" })
            .inc();
        for note in &loaded.notes {
            tracing::warn!(file = %path.display(), "{note}");
        }
        tracing::info!(
            file = %path.display(),
            added = ?changes.added,
            removed = ?changes.removed,
            changed = ?changes.changed,
            "servers file reloaded"
        );
        // Servers with no session left stop now rather than at the next upkeep.
        self.reap_idle();
        Ok(changes)
    }

    /// New generations of the `configs` that are new or changed (or `also` asks for).
    fn fresh(
        &self,
        configs: &[&ServerConfig],
        current: &[(String, Arc<ServerConfig>)],
        changes: &mut Changes,
        also: impl Fn(&ServerConfig) -> bool,
    ) -> Vec<Arc<super::Served>> {
        let mut fresh = vec![];
        for config in configs {
            match current.iter().find(|(n, _)| *n == config.name) {
                Some((_, old)) if **old == **config && !also(config) => {}
                Some(_) => {
                    changes.changed.push(config.name.clone());
                    fresh.push(self.build(Arc::new((*config).clone()), true));
                }
                None => {
                    changes.added.push(config.name.clone());
                    fresh.push(self.build(Arc::new((*config).clone()), true));
                }
            }
        }
        fresh
    }

    /// Puts `fresh` generations in place; the ones they replace drain.
    fn swap(&self, fresh: Vec<Arc<super::Served>>) {
        let mut inner = self.inner.write();
        for served in fresh {
            if let Some(old) = inner.by_name.insert(served.name().to_string(), served) {
                old.draining.store(true, Ordering::Relaxed);
                inner.draining.push(old);
            }
        }
    }

    fn refused(&self, error: String) -> String {
        tracing::error!(%error, "servers file not reloaded; the running servers are unchanged");
        self.metrics
            .config_reloads
            .get_or_create(&Reason { reason: "rejected" })
            .inc();
        self.file.lock().error = Some(error.clone());
        error
    }
}

impl Registry {
    /// Reads the API keys file again; a file with errors leaves the keys in force.
    pub fn reload_keys(&self) -> Result<usize, String> {
        let Some(path) = &self.gateway.api_keys_file else {
            return Err("no API keys file (--api-keys-file) to reload".into());
        };
        let mut state = self.keys_file.lock();
        match keys::load(path) {
            Ok(list) => {
                self.keys.replace(Source::KeysFile, &list);
                state.loaded = Some(jiff::Timestamp::now());
                state.error = None;
                tracing::info!(file = %path.display(), keys = list.len(), "API keys reloaded");
                Ok(list.len())
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(%error, "API keys file not reloaded; the keys in force are unchanged");
                state.error = Some(error.clone());
                Err(error)
            }
        }
    }

    /// The API keys file's state for `/health` (never a key or a digest).
    pub fn keys_status(&self) -> Option<Value> {
        if !self.keys.declared() && self.keys.is_empty() {
            return None;
        }
        let state = self.keys_file.lock();
        Some(json!({
            "file": self.gateway.api_keys_file.as_ref().map(|p| p.display().to_string()),
            "keys": self.keys.len(),
            "loaded": state.loaded.map(|t| t.to_string()),
            "last_error": state.error,
        }))
    }
}

/// Reloads on SIGHUP and whenever a file's content changes (the servers file, the API keys
/// file), until `shutdown`.
pub async fn watch(registry: Arc<Registry>, shutdown: CancellationToken) {
    let servers = registry.gateway.servers_file.clone();
    let keys = registry.gateway.api_keys_file.clone();
    if servers.is_none() && keys.is_none() {
        return;
    }
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the files are still watched");
            None
        }
    };
    let mut seen_servers = servers.as_ref().and_then(fingerprint);
    let mut seen_keys = keys.as_ref().and_then(fingerprint);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let signalled = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => false,
            _ = async { match hangup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
        };
        if signalled {
            tracing::info!("SIGHUP: reloading the servers and API keys files");
        }
        if let Some(path) = &keys {
            let now = fingerprint(path);
            if signalled || now != seen_keys {
                seen_keys = now;
                let _ = registry.reload_keys();
            }
        }
        if let Some(path) = &servers {
            let now = fingerprint(path);
            if signalled || now != seen_servers {
                seen_servers = now;
                let _ = registry.reload().await;
            }
        }
    }
}

/// What tells a changed file: its content (editors replace files; mtimes can stay put).
fn fingerprint(path: &PathBuf) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(Path::new(path)).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}
