//! Named API keys (`--api-keys-file FILE`, or `"apiKeys"` in the servers file's `"gateway"`):
//!
//! ```json
//! {"apiKeys": [{"name": "ci", "sha256": "<hex SHA-256 of the key>", "scopes": ["mcp:tools"],
//!               "labels": {"team": "infra"}, "expires": "2027-01-01T00:00:00Z"}]}
//! ```
//!
//! The file holds digests, never keys: an entry with the key itself is refused.
//!
//! Owns: reading named keys into [`KeySource`]s. Must not touch: checking presented keys.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::config::KeySource;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySpec {
    name: String,
    sha256: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    expires: Option<String>,
}

/// Reads a keys file: `{"apiKeys": [...]}` or the list alone.
pub fn load(path: &Path) -> anyhow::Result<Vec<KeySource>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the API keys file {}", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("the API keys file {} is not JSON", path.display()))?;
    let list = match value {
        Value::Object(mut o) if o.contains_key("apiKeys") && o.len() == 1 => {
            o.remove("apiKeys").unwrap_or_default()
        }
        v @ Value::Array(_) => v,
        _ => bail!(
            "the API keys file {} must hold {{\"apiKeys\": [...]}}",
            path.display()
        ),
    };
    parse(list).with_context(|| format!("in the API keys file {}", path.display()))
}

/// A list of key entries, checked.
pub fn parse(list: Value) -> anyhow::Result<Vec<KeySource>> {
    let Value::Array(items) = list else {
        bail!("apiKeys must be a list");
    };
    let mut out: Vec<KeySource> = vec![];
    for (i, item) in items.into_iter().enumerate() {
        if item.get("key").is_some() {
            bail!(
                "apiKeys[{i}]: store the key's SHA-256 (\"sha256\": printf %s \"$KEY\" | sha256sum), never the key"
            );
        }
        let spec: KeySpec = serde_path_to_error::deserialize(item)
            .map_err(|e| anyhow::anyhow!("apiKeys[{i}].{}: {}", e.path(), e.inner()))?;
        let entry = checked(spec).with_context(|| format!("apiKeys[{i}]"))?;
        if out.iter().any(|k| k.name == entry.name) {
            bail!("apiKeys[{i}]: two keys named {:?}", entry.name);
        }
        if out.iter().any(|k| k.sha256 == entry.sha256) {
            bail!(
                "apiKeys[{i}] ({}): the same key as another entry",
                entry.name
            );
        }
        out.push(entry);
    }
    Ok(out)
}

fn checked(spec: KeySpec) -> anyhow::Result<KeySource> {
    let name = spec.name.trim().to_string();
    if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
        bail!("name: 1 to 64 printable characters");
    }
    let hex = spec.sha256.trim().trim_start_matches("sha256:");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("sha256: 64 hex digits (the SHA-256 of the key)");
    }
    let mut sha256 = [0u8; 32];
    for (i, byte) in sha256.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    let expires = match spec.expires {
        None => None,
        Some(t) => {
            let at: jiff::Timestamp = t.trim().parse().with_context(|| {
                format!("expires: {t:?} is not an RFC 3339 time (2027-01-01T00:00:00Z)")
            })?;
            Some(at.as_second())
        }
    };
    Ok(KeySource {
        name,
        sha256,
        scopes: super::groups::trimmed(spec.scopes),
        labels: spec.labels,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn entries_are_checked_and_keys_themselves_refused() {
        let sha = crate::gateway::policy::keys::digest_hex("k");
        let keys = parse(json!([{"name": "ci", "sha256": sha, "scopes": ["a "],
            "labels": {"team": "x"}, "expires": "2027-01-01T00:00:00Z"}]))
        .unwrap();
        assert_eq!(keys[0].scopes, ["a"]);
        assert_eq!(keys[0].expires, Some(1_798_761_600));
        let e = parse(json!([{"name": "ci", "key": "plain"}])).unwrap_err();
        assert!(e.to_string().contains("never the key"), "{e}");
        let e = parse(json!([{"name": "ci", "sha256": "abc"}])).unwrap_err();
        assert!(format!("{e:#}").contains("64 hex digits"), "{e:#}");
        let e =
            parse(json!([{"name": "a", "sha256": sha}, {"name": "b", "sha256": sha}])).unwrap_err();
        assert!(e.to_string().contains("same key"), "{e}");
        let e = parse(json!([{"name": "a", "sha256": sha, "expires": "soon"}])).unwrap_err();
        assert!(format!("{e:#}").contains("RFC 3339"), "{e:#}");
    }
}
