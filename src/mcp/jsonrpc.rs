//! Just enough JSON-RPC to relay messages: classify a message without building a tree, and
//! write error responses. Ids are kept as their raw JSON text, so `1` and `"1"` stay distinct.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The fields a relay looks at.
#[derive(Deserialize)]
pub struct Probe<'a> {
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub jsonrpc: Option<std::borrow::Cow<'a, str>>,
}

/// What a message is.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// Has a method and an id: expects a response.
    Request { id: String, method: String },
    /// Has a method, no id.
    Notification { method: String },
    /// Has an id, no method.
    Response { id: String },
}

/// Parses and classifies one message; `Err` says why it is not a JSON-RPC 2.0 message.
pub fn classify(bytes: &[u8]) -> Result<Kind, String> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    if probe.jsonrpc.as_deref() != Some("2.0") {
        return Err("not a JSON-RPC 2.0 message (\"jsonrpc\": \"2.0\" missing)".into());
    }
    let id = probe
        .id
        .map(|r| r.get().to_string())
        .filter(|id| id != "null");
    // Ids are strings or numbers; anything else cannot be routed back.
    if let Some(id) = &id
        && !matches!(id.as_bytes()[0], b'"' | b'-' | b'0'..=b'9')
    {
        return Err("a JSON-RPC id must be a string or a number".into());
    }
    Ok(match (probe.method, id) {
        (Some(method), Some(id)) => Kind::Request {
            id,
            method: method.into_owned(),
        },
        (Some(method), None) => Kind::Notification {
            method: method.into_owned(),
        },
        (None, Some(id)) => Kind::Response { id },
        (None, None) => return Err("a message needs a method or an id".into()),
    })
}

/// The raw `params.requestId` of a `notifications/cancelled`.
pub fn cancelled_request_id(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "requestId")]
        request_id: &'a RawValue,
    }
    #[derive(Deserialize)]
    struct Cancelled<'a> {
        #[serde(borrow)]
        params: Params<'a>,
    }
    serde_json::from_slice::<Cancelled>(bytes)
        .ok()
        .map(|c| c.params.request_id.get().to_string())
}

/// What a `tools/call`, `prompts/get` or `resources/read` asks for, read with one borrowing
/// parse: its name or URI, and its arguments as `A` (`&RawValue` unparsed, `IgnoredAny`
/// skipped, or a `Value` in the same pass). Empty where the message has none.
pub struct Called<'a, A> {
    pub name: Option<std::borrow::Cow<'a, str>>,
    pub uri: Option<std::borrow::Cow<'a, str>>,
    pub arguments: Option<A>,
}

impl<'a, A: Deserialize<'a>> Called<'a, A> {
    pub fn parse(bytes: &'a [u8]) -> Called<'a, A> {
        #[derive(Deserialize)]
        struct Params<'a, A> {
            #[serde(borrow, default)]
            name: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow, default)]
            uri: Option<std::borrow::Cow<'a, str>>,
            #[serde(default = "none")]
            arguments: Option<A>,
        }
        fn none<A>() -> Option<A> {
            None
        }
        #[derive(Deserialize)]
        struct Message<'a, A> {
            #[serde(borrow)]
            params: Option<Params<'a, A>>,
        }
        match serde_json::from_slice::<Message<A>>(bytes) {
            Ok(Message { params: Some(p) }) => Called {
                name: p.name,
                uri: p.uri,
                arguments: p.arguments,
            },
            _ => Called {
                name: None,
                uri: None,
                arguments: None,
            },
        }
    }
    /// The name, or for `resources/read` the URI.
    pub fn target(self, method: &str) -> std::borrow::Cow<'a, str> {
        match method {
            "resources/read" => self.uri,
            _ => self.name,
        }
        .unwrap_or_default()
    }
}

/// `{"jsonrpc":"2.0","id":<raw id>,"error":{"code":..,"message":..}}`.
pub fn error_response(raw_id: &str, code: i64, message: &str) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{raw_id},\"error\":{{\"code\":{code},\"message\":{}}}}}",
        serde_json::Value::String(message.to_string())
    )
}

/// Best effort: the raw id of a message from its first bytes (for over-long lines).
pub fn id_from_prefix(prefix: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(prefix)
        .or_else(|e| std::str::from_utf8(&prefix[..e.valid_up_to()]))
        .ok()?;
    let at = text.find("\"id\"")? + 4;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    if let Some(s) = rest.strip_prefix('"') {
        let end = s.find('"')?;
        Some(format!("\"{}\"", &s[..end]))
    } else {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '-'))
            .unwrap_or(rest.len());
        (end > 0).then(|| rest[..end].to_string())
    }
}

/// A message's top-level fields, kept as raw JSON so a relay can replace a few (the id, the
/// params) and copy the rest byte for byte.
pub struct Envelope<'a> {
    fields: BTreeMap<String, &'a RawValue>,
}

impl<'a> Envelope<'a> {
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(bytes)
            .ok()
            .map(|fields| Envelope { fields })
    }

    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.get(key).copied()
    }

    /// What the message is, as [`classify`] says it (`None` where it would refuse it): one
    /// parse for a relay that needs both.
    pub fn kind(&self) -> Option<Kind> {
        if self.get("jsonrpc").map(RawValue::get) != Some("\"2.0\"") {
            return None;
        }
        let id = self
            .get("id")
            .map(|r| r.get().to_string())
            .filter(|id| id != "null" && matches!(id.as_bytes()[0], b'"' | b'-' | b'0'..=b'9'));
        let method = match self.get("method") {
            Some(m) => Some(serde_json::from_str::<String>(m.get()).ok()?),
            None => None,
        };
        Some(match (method, id) {
            (Some(method), Some(id)) => Kind::Request { id, method },
            (Some(method), None) => Kind::Notification { method },
            (None, Some(id)) => Kind::Response { id },
            (None, None) => return None,
        })
    }

    /// `params` parsed, when present and an object or array.
    pub fn params(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.get("params")?.get()).ok()
    }

    /// The message again, with `replace` (key, raw JSON) overriding or adding fields. A `Vec`,
    /// so it becomes `Bytes` or a `String` without another copy.
    pub fn render(&self, replace: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.fields
                .values()
                .map(|v| v.get().len() + 16)
                .sum::<usize>()
                + 32,
        );
        out.push(b'{');
        let mut first = true;
        let mut field = |out: &mut Vec<u8>, key: &str, raw: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            out.extend_from_slice(raw.as_bytes());
        };
        for (key, value) in &self.fields {
            let raw = replace
                .iter()
                .find(|(k, _)| k == key)
                .map_or(value.get(), |(_, v)| *v);
            field(&mut out, key, raw);
        }
        for (key, raw) in replace {
            if !self.fields.contains_key(*key) {
                field(&mut out, key, raw);
            }
        }
        out.push(b'}');
        out
    }
}

/// A request or notification line, `params` omitted when `None`.
pub fn message(id: Option<&str>, method: &str, params: Option<&serde_json::Value>) -> Bytes {
    let mut v = serde_json::json!({"jsonrpc": "2.0", "method": method});
    if let Some(id) = id {
        v["id"] = serde_json::from_str(id).unwrap_or(serde_json::Value::Null);
    }
    if let Some(p) = params {
        v["params"] = p.clone();
    }
    Bytes::from(v.to_string())
}

/// `{"jsonrpc":"2.0","id":<raw id>,"result":<raw result>}`.
pub fn result_response(raw_id: &str, raw_result: &str) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{raw_id},\"result\":{raw_result}}}")
}

pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// A limit refused the call: `error.data.retryAfter` says in how many seconds to retry.
pub const LIMITED: i64 = -32029;

/// The seconds to wait that a [`LIMITED`] answer carries; `None` for any other message.
pub fn limited_retry_after(message: &[u8]) -> Option<u64> {
    // Most answers are not refusals: look before parsing.
    if !message.windows(6).any(|w| w == b"-32029") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(message).ok()?;
    if v["error"]["code"].as_i64()? != LIMITED {
        return None;
    }
    Some(v["error"]["data"]["retryAfter"].as_u64().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calls_name_and_arguments_are_read_in_one_pass_as_asked() {
        let m = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"b":[1,{"c":null}],"a":"x"},"name":"e\u0063ho"}}"#;
        let called = Called::<serde_json::Value>::parse(m);
        assert_eq!(called.name.as_deref(), Some("echo"));
        assert_eq!(
            called.arguments,
            Some(serde_json::json!({"a": "x", "b": [1, {"c": null}]}))
        );
        let raw = Called::<&RawValue>::parse(m);
        assert_eq!(
            raw.arguments.unwrap().get(),
            r#"{"b":[1,{"c":null}],"a":"x"}"#
        );
        use serde::de::IgnoredAny;
        let read = Called::<IgnoredAny>::parse(br#"{"params":{"uri":"x://y"}}"#);
        assert_eq!(read.target("resources/read"), "x://y");
        // Arguments no `Value` holds: nothing as a value, the name when they are skipped.
        let huge = br#"{"params":{"name":"n","arguments":{"x":1e400}}}"#;
        assert!(Called::<serde_json::Value>::parse(huge).name.is_none());
        assert_eq!(Called::<IgnoredAny>::parse(huge).target("tools/call"), "n");
    }

    #[test]
    fn an_envelopes_kind_is_what_classify_says() {
        for m in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":"a","result":{}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/x"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"n"}"#,
            r#"{"jsonrpc":"2.0","id":{},"result":1}"#,
            r#"{"jsonrpc":"1.0","id":1,"result":1}"#,
            r#"{"jsonrpc":"2.0"}"#,
            r#"{"id":1,"result":1}"#,
        ] {
            let env = Envelope::parse(m.as_bytes()).unwrap();
            assert_eq!(env.kind(), classify(m.as_bytes()).ok(), "{m}");
        }
    }

    #[test]
    fn classification_keeps_id_types_apart() {
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap(),
            Kind::Request {
                id: "1".into(),
                method: "ping".into()
            }
        );
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","id":"1","method":"ping"}"#).unwrap(),
            Kind::Request {
                id: "\"1\"".into(),
                method: "ping".into()
            }
        );
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap(),
            Kind::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#).unwrap(),
            Kind::Response { id: "3".into() }
        );
        assert!(classify(b"{nope").is_err());
        assert!(classify(br#"{"id":1,"method":"x"}"#).is_err());
        assert!(classify(br#"{"jsonrpc":"2.0"}"#).is_err());
        assert!(classify(b"[1,2]").is_err());
        assert!(classify(br#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#).is_err());
        assert!(classify(br#"{"jsonrpc":"2.0","id":true,"method":"x"}"#).is_err());
        assert!(classify(br#"{"jsonrpc":"2.0","id":-1,"method":"x"}"#).is_ok());
    }

    #[test]
    fn error_responses_are_valid_json() {
        let e = error_response("\"a\\\"b\"", -32603, "child \"x\" died");
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["id"], "a\"b");
        assert_eq!(v["error"]["message"], "child \"x\" died");
    }

    #[test]
    fn cancelled_ids() {
        let n = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"7","reason":"x"}}"#;
        assert_eq!(cancelled_request_id(n).as_deref(), Some("\"7\""));
        assert_eq!(cancelled_request_id(br#"{"params":{}}"#), None);
    }

    #[test]
    fn envelopes_replace_fields_and_keep_the_rest() {
        let line = r#"{"jsonrpc":"2.0","id":"1","method":"tools/call","params":{"name":"x","arguments":{"s":"ä\n"}}}"#;
        let env = Envelope::parse(line.as_bytes()).unwrap();
        assert_eq!(env.get("id").unwrap().get(), r#""1""#);
        let out = env.render(&[("id", "17")]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], 17);
        assert_eq!(v["params"]["arguments"]["s"], "ä\n");
        let added = env.render(&[("extra", "[1]")]);
        let v: serde_json::Value = serde_json::from_slice(&added).unwrap();
        assert_eq!(v["extra"][0], 1);
        assert!(Envelope::parse(b"[1]").is_none());
    }

    #[test]
    fn ids_from_prefixes() {
        assert_eq!(
            id_from_prefix(br#"{"jsonrpc":"2.0","id": 42,"result":{"#).as_deref(),
            Some("42")
        );
        assert_eq!(
            id_from_prefix(br#"{"id":"abc","res"#).as_deref(),
            Some("\"abc\"")
        );
        assert_eq!(id_from_prefix(br#"{"jsonrpc":"2.0","result":"#), None);
    }
}
