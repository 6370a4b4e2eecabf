//! `Mcp-Param-*` headers of protocol revision 2026-07-28. A tool's `inputSchema` may mark
//! properties with `"x-mcp-header": "Token"`; a client then repeats those arguments of a
//! `tools/call` as `Mcp-Param-Token` headers (so balancers and gateways can route on them), and
//! the server rejects a call whose headers and body disagree with -32020.
//!
//! The rules follow the revision and the official SDKs: an annotation counts only on a property
//! reached from the root through `properties` alone, names an RFC 9110 token, sits on a
//! `string`, `integer` or `boolean` property and is unique (ignoring case) in the schema;
//! a schema breaking any of them declares nothing (clients drop such tools). An argument and its
//! header are present together and equal (after the base64 sentinel is decoded; integers compare
//! as numbers), or absent together (`null` counts as absent).

use serde_json::{Map, Value};

use super::modern::{decode_header_value, encode_header_value};

/// The schema keyword that declares a header.
pub const X_MCP_HEADER: &str = "x-mcp-header";
/// What every such header's name starts with, lowercase.
pub const PREFIX: &str = "mcp-param-";

/// Keywords whose value is one subschema (off the `properties` chain).
const SINGLE: [&str; 11] = [
    "items",
    "contains",
    "unevaluatedItems",
    "additionalProperties",
    "propertyNames",
    "unevaluatedProperties",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
];
/// Keywords whose value is a list of subschemas.
const LIST: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const MAP: [&str; 4] = [
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];

/// One declared header: the argument's path, the header's token and the property's type.
#[derive(Debug, Clone, PartialEq)]
struct Declared {
    path: Vec<String>,
    token: String,
    integer: bool,
}

/// The `Mcp-Param-*` headers one tool declares (none for most tools).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamHeaders(Vec<Declared>);

/// A property path from the schema's root (`None` off the `properties` chain).
type Path = Option<Vec<String>>;

/// Every schema position in `root` with its `properties` path (`None` once another keyword
/// was crossed). `$ref` is not followed and instance data (`default`, `enum`…) is not entered,
/// so this ends on any JSON value; an explicit stack keeps deep schemas off the call stack.
fn positions(root: &Value) -> Vec<(Path, &Map<String, Value>)> {
    let mut out = Vec::new();
    let mut stack: Vec<(Path, &Value)> = vec![(Some(Vec::new()), root)];
    while let Some((path, node)) = stack.pop() {
        let Some(schema) = node.as_object() else {
            continue;
        };
        for (kw, val) in schema {
            let kw = kw.as_str();
            if kw == "properties"
                && let Some(props) = val.as_object()
            {
                for (name, sub) in props {
                    let sub_path = path.as_ref().map(|p| {
                        let mut p = p.clone();
                        p.push(name.clone());
                        p
                    });
                    stack.push((sub_path, sub));
                }
            } else if SINGLE.contains(&kw) {
                stack.push((None, val));
            } else if LIST.contains(&kw)
                && let Some(list) = val.as_array()
            {
                stack.extend(list.iter().map(|s| (None, s)));
            } else if MAP.contains(&kw)
                && let Some(map) = val.as_object()
            {
                stack.extend(map.values().map(|s| (None, s)));
            }
        }
        out.push((path, schema));
    }
    out
}

/// RFC 9110 `token`: the characters a header name may have.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The headers `schema` (a tool's `inputSchema`) declares, or why its declarations are invalid.
pub fn declared(schema: &Value) -> Result<ParamHeaders, String> {
    let mut found: Vec<Declared> = Vec::new();
    for (path, position) in positions(schema) {
        let Some(header) = position.get(X_MCP_HEADER) else {
            continue;
        };
        let path = match path {
            Some(p) if !p.is_empty() => p,
            _ => {
                return Err(format!(
                    "{X_MCP_HEADER} at a place not reached through `properties` alone"
                ));
            }
        };
        let at = path.join(".");
        let Some(token) = header.as_str() else {
            return Err(format!("property {at:?}: {X_MCP_HEADER} must be a string"));
        };
        if !is_token(token) {
            return Err(format!(
                "property {at:?}: {X_MCP_HEADER} {token:?} is not an RFC 9110 token"
            ));
        }
        let ty = position.get("type").and_then(Value::as_str);
        if !matches!(ty, Some("string" | "integer" | "boolean")) {
            return Err(format!(
                "property {at:?}: {X_MCP_HEADER} is only allowed on string, integer and boolean properties"
            ));
        }
        if let Some(twin) = found.iter().find(|d| d.token.eq_ignore_ascii_case(token)) {
            return Err(format!(
                "{X_MCP_HEADER} {token:?} on property {at:?} repeats property {:?}",
                twin.path.join(".")
            ));
        }
        found.push(Declared {
            path,
            token: token.to_string(),
            integer: ty == Some("integer"),
        });
    }
    Ok(ParamHeaders(found))
}

/// The argument at `path`, `None` when a step is missing, not an object, or `null`.
fn value_at<'a>(args: &'a Value, path: &[String]) -> Option<&'a Value> {
    let v = path.iter().try_fold(args, |node, key| node.get(key))?;
    (!v.is_null()).then_some(v)
}

/// An argument as a client writes it into its header; `None` when it has no such form.
fn render(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(b.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether `sent` (decoded) names the integer `value`: `42` matches `42.0` when the header is a
/// plain decimal, compared exactly (no float round trip). `None` when this is not a question of
/// numbers (the value is not integral, or the header is not a plain decimal): compare the text.
fn same_integer(value: &Value, sent: &str) -> Option<bool> {
    let wanted: i128 = match (value.as_i64(), value.as_u64(), value.as_f64()) {
        (Some(i), _, _) => i.into(),
        (_, Some(u), _) => u.into(),
        (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e36 => f as i128,
        _ => return None,
    };
    let (whole, fraction) = sent.split_once('.').unwrap_or((sent, ""));
    let digits = whole.strip_prefix('-').unwrap_or(whole);
    let decimal = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (!sent.contains('.')
            || (!fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit())));
    if !decimal {
        return None;
    }
    if fraction.bytes().any(|b| b != b'0') {
        return Some(false);
    }
    Some(whole.parse::<i128>().is_ok_and(|w| w == wanted))
}

impl ParamHeaders {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The headers a client sends with a call carrying `args`: name and (encoded) value.
    pub fn headers_for(&self, args: &Value) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|d| {
                let rendered = render(value_at(args, &d.path)?)?;
                Some((
                    format!("Mcp-Param-{}", d.token),
                    encode_header_value(&rendered),
                ))
            })
            .collect()
    }

    /// Checks a call's `Mcp-Param-*` headers (`sent`: lowercase name and raw value, each time
    /// one was sent) against its arguments; the first disagreement, for a -32020.
    pub fn check(&self, args: &Value, sent: &[(String, String)]) -> Result<(), String> {
        for d in &self.0 {
            let name = format!("Mcp-Param-{}", d.token);
            let lower = name.to_ascii_lowercase();
            let mut copies = sent.iter().filter(|(n, _)| *n == lower).map(|(_, v)| v);
            let raw = copies.next();
            if raw.is_some() && copies.next().is_some() {
                return Err(format!("{name} header appears more than once"));
            }
            let arg = d.path.join(".");
            let rendered = value_at(args, &d.path).map(|v| (v, render(v)));
            let (value, rendered) = match (rendered, raw) {
                (None, None) | (Some((_, None)), None) => continue,
                (None, Some(_)) => {
                    return Err(format!(
                        "{name} header is present but the request body's {arg:?} argument is absent"
                    ));
                }
                (Some((_, None)), Some(_)) => {
                    return Err(format!(
                        "{name} header does not match the request body's {arg:?} argument"
                    ));
                }
                (Some((_, Some(_))), None) => {
                    return Err(format!(
                        "{name} header is missing but the request body's {arg:?} argument is present"
                    ));
                }
                (Some((v, Some(r))), Some(_)) => (v, r),
            };
            let Some(decoded) = raw.and_then(|r| decode_header_value(r)) else {
                return Err(format!(
                    "{name} header carries a malformed base64 sentinel value"
                ));
            };
            let agrees = if d.integer && !value.is_boolean() {
                same_integer(value, &decoded).unwrap_or(decoded == rendered)
            } else {
                decoded == rendered
            };
            if !agrees {
                return Err(format!(
                    "{name} header does not match the request body's {arg:?} argument"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "count": {"type": "integer", "x-mcp-header": "Count"},
            "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"},
            "target": {"type": "object", "properties": {
                "zone": {"type": "string", "x-mcp-header": "Zone"}}},
            "note": {"type": "string"}
        }})
    }

    fn sent(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect()
    }

    #[test]
    fn valid_annotations_are_found_on_properties_paths() {
        let d = declared(&schema()).unwrap();
        let mut tokens: Vec<_> = d.0.iter().map(|d| d.token.as_str()).collect();
        tokens.sort();
        assert_eq!(tokens, ["Count", "Dry-Run", "Region", "Zone"]);
        assert!(declared(&json!({"type": "object"})).unwrap().is_empty());
        assert!(declared(&Value::Null).unwrap().is_empty());
    }

    #[test]
    fn invalid_annotations_void_the_schema() {
        let bad = [
            // Off the properties chain.
            json!({"type": "object", "items": {"type": "string", "x-mcp-header": "A"}}),
            json!({"type": "string", "x-mcp-header": "Root"}),
            json!({"anyOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}),
            // Not a token, not a string, a type that cannot carry it, a repeat.
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A B"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": 7}}}),
            json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"type": ["string", "null"], "x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A"},
                                  "b": {"type": "string", "x-mcp-header": "a"}}}),
        ];
        for s in bad {
            assert!(declared(&s).is_err(), "{s}");
        }
        // Instance data is not a schema position.
        let fine = json!({"properties": {"a": {"type": "string", "default": {"x-mcp-header": 1}}}});
        assert!(declared(&fine).unwrap().is_empty());
    }

    #[test]
    fn clients_write_present_scalars_and_encode_odd_values() {
        let d = declared(&schema()).unwrap();
        let mut h = d.headers_for(&json!({"region": "Bärn", "count": 3, "dry": false,
                                          "target": {"zone": "a"}, "note": "x"}));
        h.sort();
        assert_eq!(
            h,
            [
                ("Mcp-Param-Count".to_string(), "3".to_string()),
                ("Mcp-Param-Dry-Run".into(), "false".into()),
                ("Mcp-Param-Region".into(), encode_header_value("Bärn")),
                ("Mcp-Param-Zone".into(), "a".into()),
            ]
        );
        assert!(d.headers_for(&json!({"region": null})).is_empty());
        assert!(d.headers_for(&Value::Null).is_empty());
    }

    #[test]
    fn headers_and_arguments_must_agree() {
        let d = declared(&schema()).unwrap();
        let args = json!({"region": "Bärn", "count": 42, "dry": true, "target": {"zone": "z"}});
        let good: Vec<(String, String)> = d
            .headers_for(&args)
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        assert_eq!(d.check(&args, &good), Ok(()));
        // Header names are case-insensitive; integers compare as numbers.
        let region = encode_header_value("Bärn");
        let ok = sent(&[
            ("MCP-PARAM-REGION", &region),
            ("mcp-param-count", "42.00"),
            ("mcp-param-dry-run", "true"),
            ("mcp-param-zone", "z"),
        ]);
        assert_eq!(d.check(&args, &ok), Ok(()));
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[], "missing"),
            (&[("mcp-param-count", "42.5")], "does not match"),
            (&[("mcp-param-count", "4.2e1")], "does not match"),
            (
                &[("mcp-param-count", "42"), ("mcp-param-count", "42")],
                "more than once",
            ),
            (&[("mcp-param-count", "=?base64?!!?=")], "malformed"),
        ];
        for (headers, why) in cases {
            let e = d.check(&json!({"count": 42}), &sent(headers)).unwrap_err();
            assert!(e.contains(why), "{headers:?}: {e}");
        }
        // Booleans are written `true`/`false`, nothing else.
        let e = d
            .check(
                &json!({"dry": true}),
                &sent(&[("mcp-param-dry-run", "True")]),
            )
            .unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        // A header whose argument is absent (or null) is refused; absent both is fine.
        let e = d
            .check(
                &json!({"region": null}),
                &sent(&[("mcp-param-region", "x")]),
            )
            .unwrap_err();
        assert!(e.contains("absent"), "{e}");
        assert_eq!(d.check(&json!({}), &[]), Ok(()));
        // An argument with no header form (an object) cannot be claimed by one.
        let e = d
            .check(
                &json!({"region": {"a": 1}}),
                &sent(&[("mcp-param-region", "x")]),
            )
            .unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        assert_eq!(d.check(&json!({"region": [1]}), &[]), Ok(()));
        // Headers nobody declared are not this check's business.
        assert_eq!(
            d.check(&json!({}), &sent(&[("mcp-param-other", "1")])),
            Ok(())
        );
    }
}
