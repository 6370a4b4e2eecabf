//! Properties of what parses untrusted input here: classification and raw ids of any message,
//! and line framing of any byte stream cut into any reads.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{
    jsonrpc::{self, Envelope, Kind},
    lines::{Frame, LineFramer},
};

/// Ids a client may use: integers, strings with anything in them (quotes, escapes, unicode).
fn id() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".*".prop_map(Value::from),
        "[0-9\"\\\\ ]{0,6}".prop_map(Value::from),
    ]
}

/// Text that looks like JSON-RPC often enough to reach the deep branches.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\"jsonrpc\":\"2.0\"".to_string()),
        Just("\"id\":".to_string()),
        Just("\"method\":".to_string()),
        Just("\"params\":".to_string()),
        Just(",".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("null".to_string()),
        "-?[0-9]{1,25}(\\.[0-9]+)?(e[0-9]+)?",
        "\"[^\"]{0,8}\"",
        ".{0,4}",
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn nothing_panics_on_any_input(
        bytes in prop_oneof![proptest::collection::vec(any::<u8>(), 0..200), jsonish()]
    ) {
        let kind = jsonrpc::classify(&bytes);
        let _ = jsonrpc::cancelled_request_id(&bytes);
        let _ = jsonrpc::id_from_prefix(&bytes);
        if let Some(env) = Envelope::parse(&bytes) {
            let out = env.render(&[("id", "7")]);
            // Whatever parsed as an object renders as one.
            prop_assert!(serde_json::from_slice::<Value>(&out).is_ok());
        }
        // A message that classifies has an id that is a string or a number, kept raw.
        if let Ok(Kind::Request { id, .. } | Kind::Response { id }) = kind {
            let v: Value = serde_json::from_str(&id).unwrap();
            prop_assert!(v.is_string() || v.is_number(), "id {}", id);
        }
    }

    #[test]
    fn raw_ids_survive_classification_rendering_and_errors(
        id in id(),
        method in "[a-z/_]{1,20}",
        arg in ".*",
        notification in any::<bool>(),
    ) {
        let msg = if notification {
            json!({"jsonrpc": "2.0", "method": method, "params": {"arg": arg}})
        } else {
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"arg": arg}})
        };
        let line = msg.to_string();
        let kind = jsonrpc::classify(line.as_bytes()).unwrap();
        let raw = match kind {
            Kind::Notification { method: m } => {
                prop_assert_eq!(m, method);
                return Ok(());
            }
            Kind::Request { id: raw, method: m } => {
                prop_assert_eq!(m, method);
                raw
            }
            Kind::Response { .. } => return Err(TestCaseError::fail("a request became a response")),
        };
        prop_assert_eq!(serde_json::from_str::<Value>(&raw).unwrap(), id.clone());
        // An error for it carries the same id, whatever the message says.
        let err: Value = serde_json::from_str(&jsonrpc::error_response(&raw, -32603, &arg)).unwrap();
        prop_assert_eq!(&err["id"], &id);
        prop_assert_eq!(&err["error"]["message"], &Value::from(arg.clone()));
        // Replacing the id keeps every other field byte for byte.
        let env = Envelope::parse(line.as_bytes()).unwrap();
        let out: Value = serde_json::from_slice(&env.render(&[("id", "17")])).unwrap();
        prop_assert_eq!(&out["id"], &json!(17));
        prop_assert_eq!(&out["params"], &msg["params"]);
        // A cancellation of it names the same raw id.
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                            "params": {"requestId": id}});
        prop_assert_eq!(jsonrpc::cancelled_request_id(cancel.to_string().as_bytes()), Some(raw.clone()));
        // The id is found in the first bytes of an over-long response (numbers, plain strings).
        let response = format!(r#"{{"jsonrpc":"2.0","id":{raw},"result":{{"text":"{}"}}}}"#, "x".repeat(50));
        let plain = !raw.contains('\\') && !raw.contains('.') && !raw.contains('e');
        if plain {
            let cut = (r#"{"jsonrpc":"2.0","id":"#.len() + raw.len() + 1).min(response.len());
            prop_assert_eq!(jsonrpc::id_from_prefix(&response.as_bytes()[..cut]), Some(raw));
        }
    }

    #[test]
    fn framing_does_not_depend_on_how_reads_are_cut(
        lines in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..420),
             any::<bool>()),
            0..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        // Above the 256-byte prefix kept of an over-long line, as every real limit is.
        const MAX: usize = 300;
        let mut stream = vec![];
        let mut expected = vec![];
        for (line, crlf) in &lines {
            let mut l = line.clone();
            if *crlf {
                l.push(b'\r');
            }
            stream.extend_from_slice(&l);
            stream.push(b'\n');
            if l.len() > MAX {
                expected.push(Frame::TooLong { prefix: l[..l.len().min(256)].to_vec().into(), len: l.len() });
            } else {
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                if !l.iter().all(u8::is_ascii_whitespace) {
                    expected.push(Frame::Line(l.into()));
                }
            }
        }
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        at.sort_unstable();
        let mut framer = LineFramer::new(MAX);
        let mut frames = vec![];
        let mut from = 0;
        for cut in at.into_iter().chain([stream.len()]) {
            frames.extend(framer.push(&stream[from..cut]));
            from = cut;
        }
        prop_assert_eq!(frames, expected);
    }
}
