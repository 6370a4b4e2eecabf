//! The arguments' digest: SHA-256 of their canonical form, written as hex.
//!
//! Owns: the canonical form and the digest. Must not touch: the rest of a line.

use std::{borrow::Cow, fmt};

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::mcp::strict::Text;

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

/// The same digest read straight from the arguments' JSON text (no `Value` built): `None`
/// when it is no JSON a `Value` could hold (as `canonical_sha256` would never see it).
pub fn canonical_sha256_of(json: &str) -> Option<Sha256Digest> {
    let mut text = Vec::with_capacity(json.len() + 16);
    canonical_of(json, &mut text)?;
    Some(Sha256Digest(Sha256::digest(&text).into()))
}

/// The canonical form of the JSON text `json`, written as it is read; an object's members are
/// put in order (the last of repeated keys kept, as a parse into a `Value` keeps it) only when
/// they did not come in order.
pub(super) fn canonical_of(json: &str, out: &mut Vec<u8>) -> Option<()> {
    let mut de = serde_json::Deserializer::from_str(json);
    Canon(out).deserialize(&mut de).ok()?;
    de.end().ok()
}

/// Writes the value it reads in canonical form.
struct Canon<'o>(&'o mut Vec<u8>);

/// A value or key in serde_json's form (writing into a `Vec` cannot fail).
pub(super) fn scalar<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(out, v);
}

impl<'de> DeserializeSeed<'de> for Canon<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Canon<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        scalar(self.0, &v);
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        scalar(self.0, &v);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        scalar(self.0, &v);
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        scalar(self.0, &v);
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        scalar(self.0, v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.0;
        out.push(b'[');
        let open = out.len();
        loop {
            let mark = out.len();
            if mark > open {
                out.push(b',');
            }
            if seq.next_element_seed(Canon(&mut *out))?.is_none() {
                out.truncate(mark);
                break;
            }
        }
        out.push(b']');
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.0;
        out.push(b'{');
        let open = out.len();
        // Each member's `"key":value`, where it stands in `out` (without its comma).
        let mut members: Vec<(Cow<'de, str>, std::ops::Range<usize>)> = Vec::new();
        while let Some(Text(key)) = map.next_key()? {
            if !members.is_empty() {
                out.push(b',');
            }
            let from = out.len();
            scalar(out, key.as_ref());
            out.push(b':');
            map.next_value_seed(Canon(&mut *out))?;
            members.push((key, from..out.len()));
        }
        if !members.windows(2).all(|w| w[0].0 < w[1].0) {
            let text = out.split_off(open);
            // Stable: of repeated keys the last comes last, and is the one kept.
            members.sort_by(|a, b| a.0.cmp(&b.0));
            let kept = members
                .iter()
                .enumerate()
                .filter(|(i, (key, _))| members.get(i + 1).is_none_or(|next| next.0 != *key));
            for (n, (_, (_, range))) in kept.enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&text[range.start - open..range.end - open]);
            }
        }
        out.push(b'}');
        Ok(())
    }
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
    use proptest::prelude::*;

    /// A JSON string's text, with the escapes and characters clients send.
    fn string_text(pieces: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(pieces), 0..4)
            .prop_map(|p| format!("\"{}\"", p.concat()))
    }

    /// JSON text of any shape: keys repeated (also under another escape), out of order,
    /// numbers in every form, spacing.
    fn json_text() -> impl Strategy<Value = String> {
        const CHARS: &[&str] = &[
            "a",
            "Z",
            "é",
            "😀",
            "\\u00e9",
            "\\/",
            "\\\"",
            "\\n",
            "\\u0001",
            "\\ud83d\\ude00",
        ];
        const KEYS: &[&str] = &["a", "b", "\\u0061", "é", "\\u00e9", "\\u0001", "A", ""];
        const NUMBERS: &[&str] = &[
            "0",
            "-0",
            "7",
            "-17",
            "1.0",
            "1.50",
            "1e2",
            "1E-2",
            "-2.5e+3",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "1e400",
        ];
        let leaf = prop_oneof![
            prop::sample::select(&["null", "true", "false"][..]).prop_map(String::from),
            prop::sample::select(NUMBERS).prop_map(String::from),
            string_text(CHARS),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|items| format!("[ {} ]", items.join(" ,"))),
                prop::collection::vec((string_text(KEYS), inner), 0..5).prop_map(|members| {
                    let members: Vec<String> =
                        members.iter().map(|(k, v)| format!("{k} : {v}")).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest! {
        /// Read straight from the text, the canonical form is the one of the text parsed into
        /// a `Value` — and where no `Value` holds the text, there is none.
        #[test]
        fn the_text_read_as_it_comes_has_the_canonical_form_of_its_value(text in json_text()) {
            let mut streamed = vec![];
            let streamed = canonical_of(&text, &mut streamed).map(|()| streamed);
            let parsed = serde_json::from_str::<Value>(&text).ok().map(|v| {
                let mut out = vec![];
                canonical(&v, &mut out);
                out
            });
            prop_assert_eq!(streamed, parsed);
        }
    }

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
