//! Rewriting a message in place: a relay that only changes a message's id (and a call's
//! `params.name`) finds where they stand in its bytes with one borrowing parse — no map of its
//! fields, no copy of each — and writes the message again with those spans replaced.
//! Anything the fast parse does not take (a duplicate key, an id that is neither string nor
//! number) returns `None`, and the caller takes its general path.
//!
//! Owns: finding and replacing spans. Must not touch: what the new values mean.

use std::{borrow::Cow, ops::Range};

use serde::Deserialize;
use serde_json::value::RawValue;

/// Where `part` (a slice of `whole`, as serde's borrowed `RawValue`s are) stands in `whole`.
fn span(whole: &[u8], part: &RawValue) -> Option<Range<usize>> {
    let start = (part.get().as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start + part.get().len();
    (end <= whole.len()).then_some(start..end)
}

/// `bytes` with each span replaced by its text (spans must not overlap).
fn replaced(bytes: &[u8], mut edits: Vec<(Range<usize>, &str)>) -> Vec<u8> {
    edits.sort_by_key(|(r, _)| r.start);
    let extra: usize = edits.iter().map(|(_, t)| t.len()).sum();
    let mut out = Vec::with_capacity(bytes.len() + extra);
    let mut at = 0;
    for (r, text) in edits {
        out.extend_from_slice(&bytes[at..r.start]);
        out.extend_from_slice(text.as_bytes());
        at = r.end;
    }
    out.extend_from_slice(&bytes[at..]);
    out
}

fn is_id(raw: &str) -> bool {
    matches!(raw.as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
}

/// A request that names something in `params.name` (`tools/call`, `prompts/get`).
pub struct Named<'a> {
    bytes: &'a [u8],
    id: Range<usize>,
    name_at: Range<usize>,
    /// `params.name`, unescaped.
    pub name: Cow<'a, str>,
}

impl<'a> Named<'a> {
    pub fn parse(bytes: &'a [u8]) -> Option<Named<'a>> {
        #[derive(Deserialize)]
        struct Params<'a> {
            #[serde(borrow)]
            name: &'a RawValue,
        }
        #[derive(Deserialize)]
        struct Request<'a> {
            #[serde(borrow)]
            id: &'a RawValue,
            #[serde(borrow)]
            params: Params<'a>,
        }
        let r: Request = serde_json::from_slice(bytes).ok()?;
        if !is_id(r.id.get()) {
            return None;
        }
        let raw = r.params.name.get();
        let name = match serde_json::from_str::<&str>(raw) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => Cow::Owned(serde_json::from_str::<String>(raw).ok()?),
        };
        Some(Named {
            bytes,
            id: span(bytes, r.id)?,
            name_at: span(bytes, r.params.name)?,
            name,
        })
    }

    /// The request again with raw JSON `id` and the name `name`.
    pub fn with(&self, id: &str, name: &str) -> Vec<u8> {
        let name = serde_json::Value::String(name.to_string()).to_string();
        replaced(
            self.bytes,
            vec![(self.id.clone(), id), (self.name_at.clone(), &name)],
        )
    }
}

/// A response (an id, no method): where its id stands, and whether it carries a result.
pub struct Reply<'a> {
    bytes: &'a [u8],
    id: Range<usize>,
    /// The raw id it carries.
    pub raw_id: &'a str,
    /// It has a `result` (not an `error`).
    pub ok: bool,
    /// Its `result`, unparsed.
    pub result: Option<&'a RawValue>,
    /// Its `error`, unparsed.
    pub error: Option<&'a RawValue>,
}

impl<'a> Reply<'a> {
    /// `None` when `bytes` is not a response this fast parse takes (requests, notifications).
    pub fn parse(bytes: &'a [u8]) -> Option<Reply<'a>> {
        #[derive(Deserialize)]
        struct Response<'a> {
            #[serde(borrow)]
            jsonrpc: &'a RawValue,
            #[serde(borrow)]
            id: &'a RawValue,
            #[serde(borrow, default)]
            method: Option<&'a RawValue>,
            #[serde(borrow, default)]
            result: Option<&'a RawValue>,
            #[serde(borrow, default)]
            error: Option<&'a RawValue>,
        }
        let r: Response = serde_json::from_slice(bytes).ok()?;
        if r.jsonrpc.get() != "\"2.0\"" || r.method.is_some() || !is_id(r.id.get()) {
            return None;
        }
        Some(Reply {
            bytes,
            id: span(bytes, r.id)?,
            raw_id: r.id.get(),
            ok: r.result.is_some(),
            result: r.result,
            error: r.error,
        })
    }

    /// The response again, carrying raw JSON `id`.
    pub fn with_id(&self, id: &str) -> Vec<u8> {
        replaced(self.bytes, vec![(self.id.clone(), id)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calls_id_and_name_are_replaced_in_place_and_the_rest_kept_byte_for_byte() {
        let m = br#"{"params": {"arguments": {"name": "x"}, "name": "a__echo"}, "id": "c-1", "jsonrpc": "2.0", "method": "tools/call"}"#;
        let n = Named::parse(m).unwrap();
        assert_eq!(n.name, "a__echo");
        assert_eq!(
            String::from_utf8(n.with("17", "echo")).unwrap(),
            r#"{"params": {"arguments": {"name": "x"}, "name": "echo"}, "id": 17, "jsonrpc": "2.0", "method": "tools/call"}"#
        );
        // Escapes in the name are read; a duplicate key or an odd id is left to the general path.
        let n = Named::parse(br#"{"id":1,"params":{"name":"a\u005f_x"}}"#).unwrap();
        assert_eq!(n.name, "a__x");
        assert!(Named::parse(br#"{"id":1,"id":2,"params":{"name":"a"}}"#).is_none());
        assert!(Named::parse(br#"{"id":{},"params":{"name":"a"}}"#).is_none());
        assert!(Named::parse(br#"{"id":1,"params":{}}"#).is_none());
    }

    #[test]
    fn a_responses_id_is_replaced_and_requests_are_not_taken() {
        let m = br#"{"jsonrpc":"2.0","id":17,"result":{"content":[{"id":17}]}}"#;
        let r = Reply::parse(m).unwrap();
        assert!(r.ok);
        assert_eq!(r.raw_id, "17");
        assert_eq!(
            String::from_utf8(r.with_id("\"client\"")).unwrap(),
            r#"{"jsonrpc":"2.0","id":"client","result":{"content":[{"id":17}]}}"#
        );
        let e = Reply::parse(br#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"m"}}"#);
        assert!(!e.unwrap().ok);
        assert!(Reply::parse(br#"{"jsonrpc":"2.0","id":3,"method":"roots/list"}"#).is_none());
        assert!(Reply::parse(br#"{"jsonrpc":"2.0","method":"notifications/x"}"#).is_none());
        assert!(Reply::parse(br#"{"jsonrpc":"1.0","id":3,"result":{}}"#).is_none());
    }
}
