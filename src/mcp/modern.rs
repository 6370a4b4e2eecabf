//! The 2026-07-28 revision's wire rules: the per-request envelope (`_meta` keys and the HTTP
//! headers that must agree with it), its error codes and their HTTP statuses, and the pieces a
//! gateway needs to speak it for a handshake-era server: the `server/discover` answer built
//! from an `initialize` result, results tagged `complete`, and the multi-round-trip form
//! (`input_required`) that replaces server→client requests.
//!
//! Owns: what a 2026-07-28 message must look like. Must not touch: transports, sessions.

use serde_json::{Map, Value, json};

use super::version;

/// `_meta` key of the revision a request speaks.
pub const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client's capabilities.
pub const CLIENT_CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the client's name and version (optional).
pub const CLIENT_INFO_KEY: &str = "io.modelcontextprotocol/clientInfo";
/// Result `_meta` key of the server's name and version (`server/discover`).
pub const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";
/// The prefix of every key the revision reserves in `_meta`.
const RESERVED_PREFIX: &str = "io.modelcontextprotocol/";

/// A header disagrees with the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// The request needs a client capability the client did not declare.
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
/// The envelope names a revision this server does not speak.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// Methods whose name or URI the `Mcp-Name` header repeats, with the params key it repeats.
const NAME_BEARING: [(&str, &str); 3] = [
    ("tools/call", "name"),
    ("prompts/get", "name"),
    ("resources/read", "uri"),
];

/// Results the revision lets clients cache (they carry `ttlMs` and `cacheScope`).
const CACHEABLE: [&str; 6] = [
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Whether `v` is a revision of the stateless generation.
pub fn is_modern(v: &str) -> bool {
    version::MODERN.contains(&v)
}

/// The HTTP status a JSON-RPC error code is answered with on Streamable HTTP (200 for codes the
/// revision gives no status, and for results).
pub fn status_for(code: Option<i64>) -> u16 {
    match code {
        Some(-32700 | -32600 | -32602) => 400,
        Some(
            HEADER_MISMATCH | MISSING_REQUIRED_CLIENT_CAPABILITY | UNSUPPORTED_PROTOCOL_VERSION,
        ) => 400,
        Some(-32601) => 404,
        _ => 200,
    }
}

/// A request refused before it reaches a server.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl Rejection {
    /// `-32602` with this message.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(-32602, message)
    }

    fn new(code: i64, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The JSON-RPC error response answering raw id `id`.
    pub fn response(&self, id: &str) -> String {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            error["data"] = d.clone();
        }
        let id: Value = serde_json::from_str(id).unwrap_or(Value::Null);
        json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string()
    }
}

/// `-32022` naming what is served and what was asked.
pub fn unsupported(requested: &str) -> Rejection {
    let mut r = Rejection::new(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version");
    r.data = Some(json!({"supported": supported_versions(), "requested": requested}));
    r
}

/// Every revision a gateway endpoint serves: the handshake ones through `initialize`, the
/// stateless ones per request.
pub fn supported_versions() -> Vec<&'static str> {
    version::HANDSHAKE
        .iter()
        .chain(version::MODERN.iter())
        .copied()
        .collect()
}

/// An HTTP request's headers by lowercase name.
pub type Headers<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What a request's envelope says about its sender.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub version: String,
    pub capabilities: Value,
    pub client_info: Option<Value>,
    /// `_meta.progressToken`, when the client asked for progress.
    pub progress: bool,
    /// `_meta`'s log level: the request's opt-in to log messages.
    pub log_level: Option<String>,
}

impl Envelope {
    /// The envelope as a request's `params._meta` (version, capabilities, client info).
    pub fn meta(&self) -> Value {
        let mut meta = json!({
            PROTOCOL_VERSION_KEY: self.version,
            CLIENT_CAPABILITIES_KEY: self.capabilities,
        });
        if let Some(info) = &self.client_info {
            meta[CLIENT_INFO_KEY] = info.clone();
        }
        meta
    }
}

/// The revision's checks on one request, first failure wins: the envelope in `params._meta`
/// (-32602), then — with `header` (an HTTP request's headers by lowercase name) —
/// `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` against the body (-32020), then the
/// revision itself (-32022).
pub fn check(body: &Value, header: Option<Headers<'_>>) -> Result<Envelope, Rejection> {
    let meta = body
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
        .ok_or_else(|| {
            Rejection::new(
                -32602,
                format!(
                    "params._meta must be an object carrying {PROTOCOL_VERSION_KEY:?} and {CLIENT_CAPABILITIES_KEY:?}"
                ),
            )
        })?;
    let missing: Vec<&str> = [PROTOCOL_VERSION_KEY, CLIENT_CAPABILITIES_KEY]
        .into_iter()
        .filter(|k| !meta.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(Rejection::new(
            -32602,
            format!(
                "params._meta is missing the required key(s): {}",
                missing.join(", ")
            ),
        ));
    }
    let version = &meta[PROTOCOL_VERSION_KEY];
    let method = body.get("method").and_then(Value::as_str).unwrap_or("");
    if let Some(header) = header {
        if header("mcp-protocol-version").as_deref() != version.as_str() {
            return Err(Rejection::new(
                HEADER_MISMATCH,
                "MCP-Protocol-Version header does not match the request's protocol version",
            ));
        }
        if header("mcp-method").as_deref() != Some(method) {
            return Err(Rejection::new(
                HEADER_MISMATCH,
                "Mcp-Method header does not match the request body's method",
            ));
        }
        if let Some((_, key)) = NAME_BEARING.iter().find(|(m, _)| *m == method)
            && let Some(value) = body["params"].get(*key).and_then(Value::as_str)
            && header("mcp-name")
                .and_then(|h| decode_header_value(&h))
                .as_deref()
                != Some(value)
        {
            return Err(Rejection::new(
                HEADER_MISMATCH,
                format!("Mcp-Name header does not match the request body's {key:?}"),
            ));
        }
    }
    let Some(version) = version.as_str() else {
        return Err(Rejection::new(
            -32602,
            "the protocol version in params._meta must be a string",
        ));
    };
    if !is_modern(version) {
        return Err(unsupported(version));
    }
    Ok(Envelope {
        version: version.to_string(),
        capabilities: meta[CLIENT_CAPABILITIES_KEY].clone(),
        client_info: meta.get(CLIENT_INFO_KEY).cloned(),
        progress: meta.contains_key("progressToken"),
        log_level: meta
            .get(super::asks::LOG_LEVEL_KEY)
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// The request's name or URI that `Mcp-Name` repeats, for the methods that have one.
pub fn name_param<'a>(method: &str, params: &'a Value) -> Option<&'a str> {
    let (_, key) = NAME_BEARING.iter().find(|(m, _)| *m == method)?;
    params.get(*key)?.as_str()
}

/// A header value as the revision writes it: verbatim when it is plain visible ASCII without
/// edge spaces, else `=?base64?…?=` (the inverse of [`decode_header_value`]).
pub fn encode_header_value(v: &str) -> String {
    use base64::Engine;
    let plain = v.bytes().all(|b| (0x20..0x7f).contains(&b))
        && v.trim() == v
        && !(v.starts_with("=?base64?") && v.ends_with("?="));
    if plain {
        v.to_string()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
    }
}

/// A header value as sent: verbatim, or the UTF-8 inside `=?base64?…?=`. `None` for a
/// malformed sentinel, so a corrupt header never matches a body value.
pub fn decode_header_value(v: &str) -> Option<String> {
    use base64::Engine;
    let Some(payload) = v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    else {
        return Some(v.to_string());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// `params` for a handshake-era server: the revision's `_meta` keys, `inputResponses` and
/// `requestState` removed (an emptied `_meta` goes too); everything else kept.
pub fn strip_params(params: &Value) -> Value {
    let mut params = params.clone();
    if let Some(p) = params.as_object_mut() {
        p.remove("inputResponses");
        p.remove("requestState");
        if let Some(Value::Object(meta)) = p.get_mut("_meta") {
            meta.retain(|k, _| !k.starts_with(RESERVED_PREFIX));
            if meta.is_empty() {
                p.remove("_meta");
            }
        }
    }
    params
}

/// A handshake-era result as the revision writes it: tagged `complete`, and with the caching
/// fields on the results that have them (never cached, private).
pub fn complete(method: &str, result: &mut Map<String, Value>) {
    result
        .entry("resultType")
        .or_insert_with(|| json!("complete"));
    if CACHEABLE.contains(&method) {
        result.entry("ttlMs").or_insert_with(|| json!(0));
        result
            .entry("cacheScope")
            .or_insert_with(|| json!("private"));
    }
}

/// The `server/discover` answer for a server known by its `initialize` result.
pub fn discover_from_initialize(init: &Value) -> Value {
    let mut result = Map::new();
    result.insert("supportedVersions".into(), json!(supported_versions()));
    result.insert(
        "capabilities".into(),
        init.get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({})),
    );
    if let Some(i) = init.get("instructions").filter(|i| i.is_string()) {
        result.insert("instructions".into(), i.clone());
    }
    if let Some(info) = init.get("serverInfo") {
        result.insert("_meta".into(), json!({ SERVER_INFO_KEY: info }));
    }
    complete("server/discover", &mut result);
    Value::Object(result)
}

/// Server→client requests the revision carries as input requests.
pub fn is_input_method(method: &str) -> bool {
    matches!(
        method,
        "sampling/createMessage" | "elicitation/create" | "roots/list"
    )
}

/// The `input_required` result asking the client `asks` (key → `{method, params}`), to be
/// retried with `state`.
pub fn input_required(asks: Map<String, Value>, state: &str) -> Value {
    json!({"resultType": "input_required", "inputRequests": asks, "requestState": state})
}

/// A retried request's `requestState` and `inputResponses` (key → result), if it is a retry.
pub fn retry_of(params: &Value) -> Option<(String, Map<String, Value>)> {
    let state = params.get("requestState")?.as_str()?.to_string();
    let answers = params
        .get("inputResponses")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Some((state, answers))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn req(method: &str, params: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    }

    fn envelope() -> Value {
        json!({PROTOCOL_VERSION_KEY: "2026-07-28", CLIENT_CAPABILITIES_KEY: {"sampling": {}},
               CLIENT_INFO_KEY: {"name": "t", "version": "1"}, "progressToken": 5})
    }

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_ladder_checks_envelope_then_headers_then_version() {
        let body = req("tools/call", json!({"name": "echo", "_meta": envelope()}));
        let ok = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ]);
        let e = check(&body, Some(&ok)).unwrap();
        assert_eq!(e.version, "2026-07-28");
        assert_eq!(e.capabilities, json!({"sampling": {}}));
        assert!(e.progress);

        let no_meta = req("tools/list", json!({}));
        assert_eq!(check(&no_meta, Some(&ok)).unwrap_err().code, -32602);
        let half = req(
            "tools/list",
            json!({"_meta": {PROTOCOL_VERSION_KEY: "2026-07-28"}}),
        );
        let r = check(&half, None).unwrap_err();
        assert!(r.message.contains(CLIENT_CAPABILITIES_KEY), "{r:?}");

        let wrong_method = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
            ("mcp-name", "echo"),
        ]);
        assert_eq!(
            check(&body, Some(&wrong_method)).unwrap_err().code,
            HEADER_MISMATCH
        );
        let wrong_name = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "other"),
        ]);
        assert_eq!(
            check(&body, Some(&wrong_name)).unwrap_err().code,
            HEADER_MISMATCH
        );
        let b64 = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?ZWNobw==?="),
        ]);
        assert!(check(&body, Some(&b64)).is_ok());
        let no_version_header = headers(&[("mcp-method", "tools/call"), ("mcp-name", "echo")]);
        assert_eq!(
            check(&body, Some(&no_version_header)).unwrap_err().code,
            HEADER_MISMATCH
        );

        let mut future = envelope();
        future[PROTOCOL_VERSION_KEY] = json!("2099-01-01");
        let body = req("tools/list", json!({"_meta": future}));
        let r = check(&body, None).unwrap_err();
        assert_eq!(r.code, UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(r.data.as_ref().unwrap()["requested"], "2099-01-01");
        assert!(
            r.data.as_ref().unwrap()["supported"]
                .as_array()
                .unwrap()
                .contains(&json!("2026-07-28"))
        );
        let mut numeric = envelope();
        numeric[PROTOCOL_VERSION_KEY] = json!(2026);
        assert_eq!(
            check(&req("tools/list", json!({"_meta": numeric})), None)
                .unwrap_err()
                .code,
            -32602
        );
    }

    #[test]
    fn statuses_follow_the_revision_table() {
        assert_eq!(status_for(None), 200);
        assert_eq!(status_for(Some(-32601)), 404);
        for c in [-32700, -32600, -32602, -32020, -32021, -32022] {
            assert_eq!(status_for(Some(c)), 400, "{c}");
        }
        assert_eq!(status_for(Some(-32603)), 200);
        assert_eq!(status_for(Some(-1)), 200);
    }

    #[test]
    fn stripping_keeps_what_is_not_the_revisions() {
        let p = json!({"name": "x", "arguments": {"a": 1}, "_meta": envelope(),
                       "inputResponses": {"1": {}}, "requestState": "s"});
        assert_eq!(
            strip_params(&p),
            json!({"name": "x", "arguments": {"a": 1}, "_meta": {"progressToken": 5}})
        );
        let p = json!({"_meta": {PROTOCOL_VERSION_KEY: "2026-07-28"}});
        assert_eq!(strip_params(&p), json!({}));
    }

    #[test]
    fn results_are_tagged_and_cacheable_ones_carry_cache_fields() {
        let mut r = Map::new();
        complete("tools/call", &mut r);
        assert_eq!(Value::Object(r), json!({"resultType": "complete"}));
        let mut r = json!({"tools": [], "resultType": "complete"})
            .as_object()
            .unwrap()
            .clone();
        complete("tools/list", &mut r);
        assert_eq!(
            Value::Object(r),
            json!({"tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"})
        );
    }

    #[test]
    fn discover_is_built_from_the_handshake() {
        let init = json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                          "serverInfo": {"name": "s", "version": "2"}, "instructions": "hi"});
        let d = discover_from_initialize(&init);
        assert_eq!(d["capabilities"], json!({"tools": {}}));
        assert_eq!(d["instructions"], "hi");
        assert_eq!(d["_meta"][SERVER_INFO_KEY]["name"], "s");
        assert_eq!(d["resultType"], "complete");
        assert_eq!(d["cacheScope"], "private");
        assert!(
            d["supportedVersions"]
                .as_array()
                .unwrap()
                .contains(&json!("2026-07-28"))
        );
    }

    #[test]
    fn retries_carry_state_and_answers() {
        assert_eq!(retry_of(&json!({"name": "x"})), None);
        let (state, answers) = retry_of(
            &json!({"requestState": "abc", "inputResponses": {"7": {"action": "accept"}}}),
        )
        .unwrap();
        assert_eq!(state, "abc");
        assert_eq!(answers["7"], json!({"action": "accept"}));
        let asks = json!({"7": {"method": "elicitation/create", "params": {}}});
        let r = input_required(asks.as_object().unwrap().clone(), "abc");
        assert_eq!(r["resultType"], "input_required");
        assert_eq!(r["requestState"], "abc");
    }
}
