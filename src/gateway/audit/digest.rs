//! The arguments' digest: SHA-256 of their canonical form, written as hex.
//!
//! Owns: the canonical form and the digest. Must not touch: the rest of a line.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A SHA-256 digest, written as hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sha256Digest(pub [u8; 32]);

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// SHA-256 (hex) of `value` in canonical form: object keys sorted at every depth, no
/// whitespace, serde_json's forms of strings and numbers. Equal arguments hash equal whatever
/// order or spacing the client sent them in.
pub fn canonical_sha256(value: &Value) -> Sha256Digest {
    let mut text = Vec::with_capacity(256);
    canonical(value, &mut text);
    Sha256Digest(Sha256::digest(&text).into())
}

pub(super) fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Writing a string or a scalar into a `Vec` cannot fail.
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(v, out);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(out, other);
        }
    }
}
