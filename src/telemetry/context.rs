//! W3C Trace Context as MCP carries it (SEP-414): `traceparent` and `tracestate` in a request's
//! `params._meta`, or the HTTP headers of the same names; the `_meta` pair wins when both are
//! present, and a malformed `traceparent` is ignored (never an error). Going on toward a child or
//! a remote member, the gateway's own span becomes the `traceparent` in `params._meta`, every
//! other `_meta` key untouched.
//!
//! Owns: reading and writing the context. Must not touch: spans, exporters, transports — it is
//! pure.

use serde_json::{Map, Value};

use crate::mcp::jsonrpc::Envelope;

/// A `traceparent` (version 00, or a later version read as 00 allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl TraceParent {
    /// `00-<trace id>-<span id>-<flags>` in lower-case hex; `None` for anything else the
    /// specification says to ignore (all-zero ids, version `ff`, upper case, wrong lengths).
    pub fn parse(s: &str) -> Option<TraceParent> {
        let s = s.trim();
        let version = hex::<1>(s.get(..2)?)?[0];
        if version == 0xff || (version == 0 && s.len() != 55) {
            return None;
        }
        // A later version may append fields after a '-'.
        if s.len() > 55 && s.as_bytes()[55] != b'-' {
            return None;
        }
        let mut parts = s.get(..55)?.split('-');
        let (_, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let trace_id = hex::<16>(trace)?;
        let span_id = hex::<8>(span)?;
        let flags = hex::<1>(flags)?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The `traceparent` value (version 00).
    pub fn header(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        for b in self.trace_id {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('-');
        for b in self.span_id {
            s.push_str(&format!("{b:02x}"));
        }
        s.push_str(&format!("-{:02x}", self.flags));
        s
    }
}

/// A request's incoming context: its `_meta` pair if that `traceparent` is good, else the
/// headers' pair if that one is; a `tracestate` only with the `traceparent` it came with.
pub fn incoming(
    meta: Option<&Value>,
    header_parent: Option<&str>,
    header_state: Option<&str>,
) -> Option<(TraceParent, Option<String>)> {
    let from_meta = meta.and_then(|m| {
        let parent = TraceParent::parse(m.get("traceparent")?.as_str()?)?;
        let state = m
            .get("tracestate")
            .and_then(Value::as_str)
            .map(str::to_string);
        Some((parent, state))
    });
    from_meta.or_else(|| {
        let parent = TraceParent::parse(header_parent?)?;
        Some((parent, header_state.map(str::to_string)))
    })
}

/// The request `line` with `parent` (and `state`, when given) as its `params._meta`
/// `traceparent` (and `tracestate`); every other key as it was. `None` when `line` is not an
/// object with an object (or no) `params`.
pub fn inject(line: &[u8], parent: &TraceParent, state: Option<&str>) -> Option<Vec<u8>> {
    let env = Envelope::parse(line)?;
    let mut params = match env.params() {
        Some(Value::Object(p)) => p,
        Some(_) => return None,
        None => Map::new(),
    };
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let meta = meta.as_object_mut()?;
    meta.insert("traceparent".into(), Value::String(parent.header()));
    match state {
        Some(s) => {
            meta.insert("tracestate".into(), Value::String(s.to_string()));
        }
        None => {
            meta.remove("tracestate");
        }
    }
    Some(env.render(&[("params", &Value::Object(params).to_string())]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_is_read_as_the_specification_says() {
        let tp = TraceParent::parse(GOOD).unwrap();
        assert!(tp.sampled());
        assert_eq!(tp.header(), GOOD);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // A later version may carry more after a dash.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        assert!(!TraceParent::parse(later).unwrap().sampled());
    }

    #[test]
    fn meta_wins_over_the_header_and_bad_ones_are_passed_over() {
        let other = "00-11111111111111111111111111111111-2222222222222222-01";
        let meta = json!({"traceparent": GOOD, "tracestate": "a=1"});
        let (tp, state) = incoming(Some(&meta), Some(other), Some("b=2")).unwrap();
        assert_eq!(
            (tp.header().as_str(), state.as_deref()),
            (GOOD, Some("a=1"))
        );
        let broken = json!({"traceparent": "garbage", "tracestate": "a=1"});
        let (tp, state) = incoming(Some(&broken), Some(other), Some("b=2")).unwrap();
        assert_eq!(
            (tp.header().as_str(), state.as_deref()),
            (other, Some("b=2"))
        );
        assert_eq!(incoming(Some(&broken), Some("nope"), None), None);
        assert_eq!(incoming(None, None, None), None);
    }

    #[test]
    fn injecting_keeps_every_other_key() {
        let tp = TraceParent::parse(GOOD).unwrap();
        let line = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":3,"traceparent":"old","tracestate":"old=1"}}}"#;
        let out: Value = serde_json::from_slice(&inject(line, &tp, None).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "x", "_meta": {"progressToken": 3, "traceparent": GOOD}}})
        );
        let bare = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let out: Value = serde_json::from_slice(&inject(bare, &tp, Some("s=1")).unwrap()).unwrap();
        assert_eq!(
            out["params"]["_meta"],
            json!({"traceparent": GOOD, "tracestate": "s=1"})
        );
        assert_eq!(
            inject(
                br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#,
                &tp,
                None
            ),
            None
        );
    }
}
