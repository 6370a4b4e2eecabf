//! Named API keys: each with a name, the SHA-256 of the key (never the key), scopes, labels and
//! an optional expiry — from `--api-keys FILE` or the servers file's `gateway.apiKeys`, replaced
//! whole when either changes. A presented key is found by its digest.
//!
//! Owns: which named key a presented key is. Must not touch: where keys are presented (HTTP).

use parking_lot::RwLock;
use std::{collections::HashMap, sync::Arc};

use sha2::{Digest, Sha256};

use crate::{config::KeySource, gateway::caller::KeyInfo};

/// One named key, as the gateway keeps it.
#[derive(Debug)]
pub struct NamedKey {
    pub info: Arc<KeyInfo>,
    pub scopes: Vec<String>,
    /// Seconds since the epoch after which the key is refused.
    pub expires: Option<i64>,
}

/// What a presented key is.
#[derive(Debug)]
pub enum Found<'a> {
    Key(&'a Arc<NamedKey>),
    /// A key of this name, past its expiry.
    Expired(&'a str),
    Unknown,
}

/// The named keys in force: the servers file's and the keys file's, each replaced whole.
#[derive(Default)]
pub struct Keys {
    /// Whether named keys are configured at all (a file, or `apiKeys` in the servers file):
    /// then the endpoints need a key even while the list is empty.
    declared: bool,
    from_servers_file: RwLock<Arc<HashMap<[u8; 32], Arc<NamedKey>>>>,
    from_keys_file: RwLock<Arc<HashMap<[u8; 32], Arc<NamedKey>>>>,
}

/// Which of the two sources a list of keys comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    ServersFile,
    KeysFile,
}

impl Keys {
    pub fn new(declared: bool) -> Keys {
        Keys {
            declared,
            ..Keys::default()
        }
    }

    pub fn declared(&self) -> bool {
        self.declared
    }

    /// How many keys are in force.
    pub fn len(&self) -> usize {
        self.from_servers_file.read().len() + self.from_keys_file.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts `keys` in force for `source`, replacing what it had.
    pub fn replace(&self, source: Source, keys: &[KeySource]) {
        let map: HashMap<[u8; 32], Arc<NamedKey>> = keys
            .iter()
            .map(|k| {
                let key = NamedKey {
                    info: Arc::new(KeyInfo {
                        name: k.name.clone(),
                        labels: k.labels.clone(),
                    }),
                    scopes: k.scopes.clone(),
                    expires: k.expires,
                };
                (k.sha256, Arc::new(key))
            })
            .collect();
        let slot = match source {
            Source::ServersFile => &self.from_servers_file,
            Source::KeysFile => &self.from_keys_file,
        };
        *slot.write() = Arc::new(map);
    }

    /// The named key `presented` is, at `now` (seconds since the epoch).
    pub fn find(&self, presented: &str, now: i64) -> Option<Result<Arc<NamedKey>, String>> {
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        for slot in [&self.from_keys_file, &self.from_servers_file] {
            let map = slot.read().clone();
            match lookup(&map, &digest, now) {
                Found::Key(k) => return Some(Ok(k.clone())),
                Found::Expired(name) => return Some(Err(name.to_string())),
                Found::Unknown => {}
            }
        }
        None
    }
}

fn lookup<'a>(map: &'a HashMap<[u8; 32], Arc<NamedKey>>, digest: &[u8; 32], now: i64) -> Found<'a> {
    match map.get(digest) {
        Some(k) if k.expires.is_some_and(|e| now >= e) => Found::Expired(&k.info.name),
        Some(k) => Found::Key(k),
        None => Found::Unknown,
    }
}

/// The hex SHA-256 of `key`, as a keys file stores it.
pub fn digest_hex(key: &str) -> String {
    Sha256::digest(key.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, key: &str, expires: Option<i64>) -> KeySource {
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&Sha256::digest(key.as_bytes()));
        KeySource {
            name: name.into(),
            sha256,
            scopes: vec!["mcp:tools".into()],
            labels: [("team".to_string(), "infra".to_string())].into(),
            expires,
        }
    }

    #[test]
    fn keys_are_found_by_digest_refused_when_expired_and_replaced_whole() {
        let keys = Keys::new(true);
        keys.replace(
            Source::KeysFile,
            &[
                source("ci", "k-ci", None),
                source("old", "k-old", Some(100)),
            ],
        );
        let ci = keys.find("k-ci", 50).unwrap().unwrap();
        assert_eq!(ci.info.name, "ci");
        assert_eq!(ci.info.labels["team"], "infra");
        assert!(keys.find("k-old", 99).unwrap().is_ok());
        assert_eq!(keys.find("k-old", 100).unwrap().unwrap_err(), "old");
        assert!(keys.find("k-nobody", 0).is_none());
        // Each source replaced whole; the other kept.
        keys.replace(Source::ServersFile, &[source("file", "k-file", None)]);
        keys.replace(Source::KeysFile, &[]);
        assert!(keys.find("k-ci", 50).is_none());
        assert!(keys.find("k-file", 50).unwrap().is_ok());
        assert_eq!(keys.len(), 1);
        assert_eq!(digest_hex("abc").len(), 64);
    }
}
