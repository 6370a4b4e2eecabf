//! Tokens and client registrations per remote, in the user's config directory
//! (`$XDG_CONFIG_HOME/aareguru-mcp/oauth/`, else `~/.config/…`; `--oauth-token-dir` overrides),
//! one file per remote URL (named by its letters and digits and a digest of the whole URL),
//! readable by the user only (0600, in a 0700 directory).
//!
//! Owns: what survives a restart of the bridge. Must not touch: the network.

use std::{
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A registered (or pre-registered) client.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClientInfo {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    pub auth_method: String,
    /// The authorization server it was registered at.
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}

/// Tokens for one remote.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Tokens {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Saved {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
}

pub struct Store {
    file: Option<PathBuf>,
}

impl Store {
    /// A store that keeps nothing on disk.
    pub fn in_memory() -> Store {
        Store { file: None }
    }

    /// The store for `remote` under `dir` (else the config directory); none without a home.
    pub fn new(dir: Option<PathBuf>, remote: &str) -> Store {
        let dir = dir.or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .map(|c| c.join("aareguru-mcp").join("oauth"))
        });
        // Readable, and unique: the URL's letters and digits, then a digest of the whole URL.
        let readable: String = remote
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(100)
            .collect();
        let digest = Sha256::digest(remote.as_bytes());
        let name = format!(
            "{readable}-{}",
            digest[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Store {
            file: dir.map(|d| d.join(format!("{name}.json"))),
        }
    }

    pub fn load(&self) -> Saved {
        self.file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, saved: &Saved) {
        let Some(file) = &self.file else {
            return;
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = file.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            let tmp = file.with_extension("tmp");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(saved).unwrap_or_default())?;
            f.sync_all()?;
            std::fs::rename(&tmp, file)
        };
        if let Err(e) = write() {
            tracing::warn!(file = %file.display(), error = %e, "cannot store the OAuth tokens");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_differing_in_punctuation_get_their_own_files() {
        let dir = Some(PathBuf::from("/tmp/x"));
        let a = Store::new(dir.clone(), "http://h/a-b/mcp").file.unwrap();
        let b = Store::new(dir.clone(), "http://h/a_b/mcp").file.unwrap();
        assert_ne!(a, b);
        assert_eq!(a, Store::new(dir, "http://h/a-b/mcp").file.unwrap());
        assert!(a.to_string_lossy().contains("http___h_a_b_mcp-"), "{a:?}");
    }
}
