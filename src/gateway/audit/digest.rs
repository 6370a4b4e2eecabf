//! The arguments' digest: SHA-256 of their canonical form, written as hex.
//!
//! Owns: the canonical form and the digest. Must not touch: the rest of a line.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A SHA-256 digest, written as hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Its 64 hex digits.
    fn hex(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        out
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&self.hex()).unwrap_or_default())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Whole: `collect_str` would escape it digit by digit.
        s.serialize_str(std::str::from_utf8(&self.hex()).unwrap_or_default())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_written_as_lowercase_hex_whole() {
        let d = Sha256Digest(std::array::from_fn(|i| (i * 37 + 5) as u8));
        let expected: String = d.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(d.to_string(), expected);
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            format!("\"{expected}\"")
        );
        // The empty object's canonical form is `{}`.
        assert_eq!(
            canonical_sha256(&serde_json::json!({})).to_string(),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
