//! The duration metric's attributes of a request (`mcp.method.name`, `gen_ai.tool.name`,
//! `mcp.protocol.version`, `network.transport`), made once per thread for each method, tool and
//! revision seen: a request that is not sampled costs a lookup here, not a handful of
//! allocations (which, on a busy gateway, are most of what export at 1 % costs).
//!
//! Owns: interning the attributes. Must not touch: what a request's span says.

use std::{cell::RefCell, collections::HashMap, fmt::Write, sync::Arc};

use opentelemetry::{KeyValue, StringValue};

/// Most attribute sets a thread keeps (tool names come from clients: unbounded otherwise).
const MOST: usize = 512;

/// The methods MCP names, as static strings (no allocation for their attribute).
const METHODS: [&str; 22] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "server/discover",
    "subscriptions/listen",
];

/// The key being looked up (reused), and the sets made so far.
type Seen = (String, HashMap<Box<str>, Arc<[KeyValue]>>);

thread_local! {
    static SEEN: RefCell<Seen> = RefCell::default();
}

/// The attributes of a request for `method` (of `tool`, at revision `version`).
pub(super) fn of(method: &str, tool: Option<&str>, version: Option<&str>) -> Arc<[KeyValue]> {
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        let (key, sets) = &mut *seen;
        // Lengths first: no two different triples make the same key.
        key.clear();
        let part = |key: &mut String, s: Option<&str>| match s {
            Some(s) => {
                let _ = write!(key, "{}:{s}", s.len());
            }
            None => key.push('-'),
        };
        part(key, Some(method));
        part(key, tool);
        part(key, version);
        if let Some(set) = sets.get(key.as_str()) {
            return set.clone();
        }
        let set = made(method, tool, version);
        if sets.len() < MOST {
            sets.insert(key.as_str().into(), set.clone());
        }
        set
    })
}

fn made(method: &str, tool: Option<&str>, version: Option<&str>) -> Arc<[KeyValue]> {
    let method = match METHODS.iter().find(|m| **m == method) {
        Some(m) => StringValue::from(*m),
        None => StringValue::from(method.to_string()),
    };
    let mut set = vec![
        KeyValue::new("mcp.method.name", method),
        KeyValue::new("network.transport", "tcp"),
    ];
    if let Some(tool) = tool {
        set.push(KeyValue::new("gen_ai.tool.name", tool.to_string()));
    }
    if let Some(version) = version {
        set.push(KeyValue::new("mcp.protocol.version", version.to_string()));
    }
    set.into()
}

#[cfg(test)]
mod tests {
    use super::of;

    #[test]
    fn one_set_per_method_tool_and_revision() {
        let a = of("tools/call", Some("echo"), Some("2025-06-18"));
        let b = of("tools/call", Some("echo"), Some("2025-06-18"));
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!(a.len(), 4);
        // Lengths keep different parts apart.
        let c = of("tools/call", Some("echo:1"), None);
        let d = of("tools/call", Some("echo"), Some("1"));
        assert!(!std::sync::Arc::ptr_eq(&c, &d));
        assert_eq!(c[2].value.as_str(), "echo:1");
        assert_eq!(of("x/y", None, None)[0].value.as_str(), "x/y");
    }
}
