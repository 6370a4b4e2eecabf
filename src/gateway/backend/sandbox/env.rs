//! What a child inherits of the gateway's environment.
//!
//! A child does not inherit the gateway's environment, which holds the gateway's own settings
//! and secrets (`AAREGURU_MCP_API_KEYS`, `AAREGURU_MCP_OAUTH_CLIENT_SECRET`, …). Like the MCP
//! SDKs' stdio clients (and the hosts built on them), it gets a short default list — `HOME`,
//! `LOGNAME`, `PATH`, `SHELL`, `TERM`, `USER` — plus what the operator allows by name or glob
//! (`--child-env`, the servers file's `inheritEnv`), then the entry's own `env` and the
//! session's `envFromHeaders` on top.
//!
//! A glob (`LC_*`, `NODE_*`, `*`) never matches the gateway's own settings (`AAREGURU_*`):
//! those reach a child only when named exactly, so `*` means "the rest of my environment".
//!
//! Owns: what a child is given before it runs. Must not touch: spawning or reaping it.

use std::ffi::{OsStr, OsString};

/// What every child gets from the gateway's environment, as the MCP SDKs' stdio clients give
/// on Unix.
pub const DEFAULT_INHERITED: [&str; 6] = ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"];

/// Prefix of the gateway's own settings, which no glob passes on.
const OWN_PREFIX: &str = "AAREGURU_";

/// The variables of `parent` (the gateway's environment) a child inherits, given the operator's
/// `allow` list of names and `*` globs.
pub fn inherited<I>(parent: I, allow: &[String]) -> Vec<(OsString, OsString)>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    parent
        .into_iter()
        .filter(|(name, _)| passes(name, allow))
        .collect()
}

/// Whether the variable `name` reaches a child.
fn passes(name: &OsStr, allow: &[String]) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    if DEFAULT_INHERITED.contains(&name) {
        return true;
    }
    allow.iter().any(|pattern| {
        if pattern.contains('*') {
            !name.starts_with(OWN_PREFIX) && glob(pattern.as_bytes(), name.as_bytes())
        } else {
            pattern == name
        }
    })
}

/// Whether `name` is a valid allow-list entry: a variable name, optionally with `*` globs.
pub fn valid_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern
            .bytes()
            .all(|b| b == b'_' || b == b'*' || b.is_ascii_alphanumeric())
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[&str]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|k| (OsString::from(k), OsString::from("v")))
            .collect()
    }

    fn names(allow: &[&str]) -> Vec<String> {
        let parent = env(&[
            "HOME",
            "PATH",
            "USER",
            "LANG",
            "LC_ALL",
            "NODE_OPTIONS",
            "AAREGURU_MCP_API_KEYS",
            "AAREGURU_MCP_OAUTH_CLIENT_SECRET",
            "AAREGURU_BASE_URL",
            "AWS_SECRET_ACCESS_KEY",
            "RUST_LOG",
        ]);
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        inherited(parent, &allow)
            .into_iter()
            .map(|(k, _)| k.into_string().unwrap())
            .collect()
    }

    #[test]
    fn by_default_only_the_sdks_short_list() {
        assert_eq!(names(&[]), ["HOME", "PATH", "USER"]);
    }

    #[test]
    fn allowed_names_and_globs_add_to_it() {
        assert_eq!(
            names(&["LANG", "LC_*", "NODE_*"]),
            ["HOME", "PATH", "USER", "LANG", "LC_ALL", "NODE_OPTIONS"]
        );
    }

    #[test]
    fn no_glob_passes_the_gateways_own_settings() {
        let all = names(&["*"]);
        assert!(all.contains(&"AWS_SECRET_ACCESS_KEY".to_string()));
        assert!(all.contains(&"RUST_LOG".to_string()));
        assert!(!all.iter().any(|n| n.starts_with("AAREGURU_")), "{all:?}");
        assert!(
            !names(&["AAREGURU_*"])
                .iter()
                .any(|n| n.starts_with("AAREGURU_"))
        );
        // Named exactly, the operator asked for it.
        assert!(names(&["AAREGURU_BASE_URL"]).contains(&"AAREGURU_BASE_URL".to_string()));
    }

    #[test]
    fn patterns() {
        assert!(glob(b"LC_*", b"LC_ALL"));
        assert!(glob(b"*_KEY", b"API_KEY"));
        assert!(glob(b"A*B*C", b"AxxBxxC"));
        assert!(!glob(b"LC_*", b"XLC_ALL"));
        assert!(!glob(b"PATH", b"PATHS"));
        assert!(valid_pattern("NODE_*"));
        assert!(!valid_pattern(""));
        assert!(!valid_pattern("A=B"));
        assert!(!valid_pattern("A B"));
    }
}
