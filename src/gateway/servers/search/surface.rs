//! Tool search's surface: the search and call tools as listed, what a search answers of a
//! tool, the call a call-tool call becomes, and a session's active tools — pure.
//!
//! Owns: those shapes. Must not touch: sessions, the index.

use std::collections::VecDeque;

use serde_json::{Value, json};

/// The search tool's name.
pub const SEARCH: &str = "search_tools";
/// The call tool's name.
pub const CALL: &str = "call_tool";

/// Where a `list_changed` of this layer names the session's active tools, oldest first (the
/// session's record of them, for a roaming session's directory entry).
pub const ACTIVE_META: &str = "io.github.aareguru-mcp/active";

/// A client notification that sets the session's active tools (`params.names`): what a
/// replica replays when it restores a roaming session. Names the caller may not see are never
/// listed, whoever sends it.
pub const ACTIVATE: &str = "notifications/io.github.aareguru-mcp/activate";

/// The active tools a layer's `list_changed` (raw) names, if it names them.
pub fn active_of(message: &str) -> Option<Vec<String>> {
    let v: Value = serde_json::from_str(message).ok()?;
    names(&v["params"]["_meta"][ACTIVE_META])
}

/// A JSON array of strings.
pub(super) fn names(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|n| n.as_str().map(str::to_string))
        .collect()
}

/// An `initialize` answer (raw) that says the tool list changes (`tools.listChanged`), so hosts
/// listen for the activations; unchanged when it is not a successful answer.
pub(super) fn announcing(message: String) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(&message) else {
        return message;
    };
    let Some(capabilities) = v
        .pointer_mut("/result/capabilities")
        .and_then(Value::as_object_mut)
    else {
        return message;
    };
    let tools = capabilities.entry("tools").or_insert_with(|| json!({}));
    match tools.as_object_mut() {
        Some(t) => {
            t.insert("listChanged".into(), Value::Bool(true));
        }
        None => return message,
    }
    v.to_string()
}

/// `names` into `active` (moved to the back when already there), the front dropped past `cap`.
pub(super) fn activate(active: &mut VecDeque<String>, names: &[String], cap: usize) -> bool {
    let before: Vec<String> = active.iter().cloned().collect();
    for name in names.iter().rev() {
        active.retain(|a| a != name);
        active.push_back(name.clone());
    }
    while active.len() > cap {
        active.pop_front();
    }
    active.iter().ne(before.iter())
}

pub(super) fn tool_error(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}

/// What a search answers of a tool.
pub(super) fn summary(tool: &Value) -> Value {
    let mut out = json!({"name": tool["name"], "inputSchema": tool.get("inputSchema").cloned().unwrap_or(json!({"type": "object"}))});
    for key in ["title", "description"] {
        if let Some(v) = tool.get(key).filter(|v| v.is_string()) {
            out[key] = v.clone();
        }
    }
    out
}

pub(super) fn search_tool(limit: usize) -> Value {
    json!({
        "name": SEARCH,
        "title": "Search tools",
        "description": format!("Finds the tools of this server that fit a task, best first (the {limit} best unless a limit is given). Describe the task in a few English words; the answer gives each tool's name, description and input schema. Call a found tool with {CALL}."),
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What you want to do, in a few words (e.g. \"read a file\")"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "How many tools to return at most"}
            },
            "required": ["query"]
        },
        "outputSchema": {
            "type": "object",
            "properties": {
                "tools": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "title": {"type": "string"},
                        "description": {"type": "string"},
                        "inputSchema": {"type": "object"}
                    },
                    "required": ["name", "inputSchema"]
                }}
            },
            "required": ["tools"]
        },
        "annotations": {"readOnlyHint": true, "openWorldHint": false}
    })
}

pub(super) fn call_tool() -> Value {
    json!({
        "name": CALL,
        "title": "Call a tool",
        "description": format!("Calls a tool that {SEARCH} found, by its name, with its arguments (as its input schema describes them), and answers what the tool answers."),
        "inputSchema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "The tool's name, as search_tools gave it"},
                "arguments": {"type": "object", "description": "The tool's arguments"}
            },
            "required": ["name"]
        }
    })
}

/// The params of the call the call tool's `params` ask for: the named tool with the given
/// arguments (the call's other params, `_meta` among them, kept).
pub(in crate::gateway::servers) fn called(mut params: Value) -> Result<Value, &'static str> {
    let mut arguments = params
        .get_mut("arguments")
        .map(Value::take)
        .unwrap_or_default();
    let Some(name) = arguments.get("name").and_then(Value::as_str) else {
        return Err("call_tool needs the \"name\" of the tool to call (a string)");
    };
    let Some(out) = params.as_object_mut() else {
        return Err("call_tool's params are an object");
    };
    out.insert("name".into(), Value::String(name.to_string()));
    out.remove("arguments");
    match arguments.get_mut("arguments").map(Value::take) {
        None | Some(Value::Null) => {}
        Some(a @ Value::Object(_)) => {
            out.insert("arguments".into(), a);
        }
        Some(_) => return Err("call_tool's \"arguments\" are an object"),
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_keeps_the_newest_up_to_the_cap() {
        let mut active = VecDeque::new();
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(activate(&mut active, &n(&["a", "b"]), 3));
        assert_eq!(active, ["b", "a"]);
        assert!(activate(&mut active, &n(&["c", "d"]), 3));
        assert_eq!(active, ["a", "d", "c"]);
        // The same found again in the same order changes nothing.
        assert!(!activate(&mut active, &n(&["c"]), 3));
        assert!(activate(&mut active, &n(&["a"]), 3));
        assert_eq!(active, ["d", "c", "a"]);
    }

    #[test]
    fn the_call_tool_becomes_the_named_call() {
        let p = called(json!({"name": CALL, "arguments": {"name": "echo", "arguments": {"message": "hi"}}, "_meta": {"progressToken": 3}})).unwrap();
        assert_eq!(
            p,
            json!({"name": "echo", "arguments": {"message": "hi"}, "_meta": {"progressToken": 3}})
        );
        assert_eq!(
            called(json!({"arguments": {"name": "x"}})).unwrap(),
            json!({"name": "x"})
        );
        assert!(called(json!({"arguments": {}})).is_err());
        assert!(called(json!({"arguments": {"name": "x", "arguments": [1]}})).is_err());
        assert!(called(json!({})).is_err());
    }

    #[test]
    fn the_active_tools_are_read_from_the_layers_own_notification_only() {
        let note = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{{"_meta":{{"{ACTIVE_META}":["a","b"]}}}}}}"#
        );
        assert_eq!(active_of(&note), Some(vec!["a".into(), "b".into()]));
        assert_eq!(
            active_of(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#),
            None
        );
        assert_eq!(names(&json!(["a", 1])), None);
        assert_eq!(active_of("not json"), None);
    }

    #[test]
    fn an_initialize_answer_announces_list_changes() {
        let out = announcing(
            r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"prompts":{}}}}"#.into(),
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["result"]["capabilities"]["tools"]["listChanged"], true);
        assert!(v["result"]["capabilities"]["prompts"].is_object());
        let error = r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32600,"message":"no"}}"#;
        assert_eq!(announcing(error.into()), error);
    }
}
