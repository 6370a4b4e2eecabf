//! What one request of protocol revision 2026-07-28 allows a server to ask and to say: the
//! client capability each question (`sampling/createMessage`, `elicitation/create`,
//! `roots/list`) needs, the answers a request already carries (`inputResponses`), the log
//! level it opted in to, and the filter of a `subscriptions/listen` stream.
//!
//! Owns: those rules over single messages. Must not touch: transports, calls, parking.

use serde_json::{Map, Value, json};

/// `_meta` key of the log level a request opts in to (absent: no log messages at all).
pub const LOG_LEVEL_KEY: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key naming the `subscriptions/listen` request a notification belongs to.
pub const SUBSCRIPTION_ID_KEY: &str = "io.modelcontextprotocol/subscriptionId";

/// Syslog severities, least severe first.
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The name a server gave its question in the question's request id (a string id up to its
/// first `#`: `"user_name#7"` names `user_name`), which becomes its input request key; `None`
/// when `id` (the decoded id) names nothing.
pub fn question_name(id: &str) -> Option<&str> {
    id.split_once('#')
        .map(|(name, _)| name)
        .filter(|name| !name.is_empty())
}

/// The capability (as `ClientCapabilities`, e.g. `{"sampling": {}}`) a server's question
/// `method` with `params` needs and `declared` (the request's client capabilities) lacks;
/// `None` when the client declared it. A URL-mode elicitation needs `elicitation.url`.
pub fn undeclared(method: &str, params: Option<&Value>, declared: &Value) -> Option<Value> {
    let cap = match method {
        "sampling/createMessage" => "sampling",
        "elicitation/create" => "elicitation",
        "roots/list" => "roots",
        _ => return None,
    };
    let Some(have) = declared.get(cap) else {
        return Some(json!({cap: {}}));
    };
    let url_mode = cap == "elicitation"
        && params.and_then(|p| p.get("mode")).and_then(Value::as_str) == Some("url");
    (url_mode && have.get("url").is_none()).then(|| json!({"elicitation": {"url": {}}}))
}

/// The answers a request carries (`inputResponses`: key → the client's result): empty when
/// absent; an error naming the fault when it is not an object of result objects.
pub fn input_responses(params: &Value) -> Result<Map<String, Value>, String> {
    match params.get("inputResponses") {
        None => Ok(Map::new()),
        Some(Value::Object(answers)) => match answers.iter().find(|(_, v)| !v.is_object()) {
            Some((key, _)) => Err(format!(
                "inputResponses[{key:?}] must be the result object of the request it answers"
            )),
            None => Ok(answers.clone()),
        },
        Some(_) => Err("inputResponses must be an object (input request key → result)".into()),
    }
}

/// Whether a `notifications/message` with `params` reaches a request that asked for `wanted`
/// (its `_meta` log level): never without one, else at that severity or above. An unknown
/// level on either side lets the message through rather than guess.
pub fn log_passes(wanted: Option<&str>, params: Option<&Value>) -> bool {
    let Some(wanted) = wanted else {
        return false;
    };
    let rank = |l: &str| LEVELS.iter().position(|x| *x == l);
    let level = params.and_then(|p| p.get("level")).and_then(Value::as_str);
    match (rank(wanted), level.and_then(rank)) {
        (Some(w), Some(l)) => l >= w,
        _ => true,
    }
}

/// What a `subscriptions/listen` stream asked for and was granted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
    /// URIs whose `notifications/resources/updated` the stream wants.
    pub uris: Vec<String>,
}

impl Filter {
    /// The filter a `subscriptions/listen` request's params ask for.
    pub fn asked(params: &Value) -> Filter {
        let n = &params["notifications"];
        let on = |k: &str| n[k].as_bool() == Some(true);
        Filter {
            tools: on("toolsListChanged"),
            prompts: on("promptsListChanged"),
            resources: on("resourcesListChanged"),
            uris: n["resourceSubscriptions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The part of this filter a server with `capabilities` (an `initialize` or
    /// `server/discover` result's) can honour.
    pub fn granted(&self, capabilities: &Value) -> Filter {
        let flag = |area: &str, key: &str| capabilities[area][key].as_bool() == Some(true);
        Filter {
            tools: self.tools && flag("tools", "listChanged"),
            prompts: self.prompts && flag("prompts", "listChanged"),
            resources: self.resources && flag("resources", "listChanged"),
            uris: if flag("resources", "subscribe") {
                self.uris.clone()
            } else {
                Vec::new()
            },
        }
    }

    /// Whether anything can arrive on the stream at all.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// The filter as the acknowledgement states it (only what is granted).
    pub fn to_value(&self) -> Value {
        let mut v = Map::new();
        for (on, key) in [
            (self.tools, "toolsListChanged"),
            (self.prompts, "promptsListChanged"),
            (self.resources, "resourcesListChanged"),
        ] {
            if on {
                v.insert(key.into(), true.into());
            }
        }
        if !self.uris.is_empty() {
            v.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Value::Object(v)
    }

    /// Whether a server notification `method` with `params` belongs on the stream.
    pub fn passes(&self, method: &str, params: Option<&Value>) -> bool {
        match method {
            "notifications/tools/list_changed" => self.tools,
            "notifications/prompts/list_changed" => self.prompts,
            "notifications/resources/list_changed" => self.resources,
            "notifications/resources/updated" => params
                .and_then(|p| p["uri"].as_str())
                .is_some_and(|u| self.uris.iter().any(|x| x == u)),
            _ => false,
        }
    }
}

/// `notification` (a whole JSON-RPC message) tagged as delivered on the stream that
/// `subscriptions/listen` request `id` (raw JSON) opened.
pub fn tagged(notification: &Value, id: &str) -> Value {
    let mut n = notification.clone();
    let id: Value = serde_json::from_str(id).unwrap_or(Value::Null);
    if !n["params"].is_object() {
        n["params"] = json!({});
    }
    if !n["params"]["_meta"].is_object() {
        n["params"]["_meta"] = json!({});
    }
    n["params"]["_meta"][SUBSCRIPTION_ID_KEY] = id;
    n
}

/// The acknowledgement that opens listen stream `id` with what it was `granted`.
pub fn acknowledged(id: &str, granted: &Filter) -> Value {
    let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
        "params": {"notifications": granted.to_value()}});
    tagged(&ack, id)
}

/// The result that closes listen stream `id` gracefully.
pub fn closed(id: &str) -> Value {
    let id_value: Value = serde_json::from_str(id).unwrap_or(Value::Null);
    json!({"resultType": "complete", "_meta": {SUBSCRIPTION_ID_KEY: id_value}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_needs_the_capability_the_request_declared() {
        let none = json!({});
        assert_eq!(
            undeclared("sampling/createMessage", None, &none),
            Some(json!({"sampling": {}}))
        );
        assert_eq!(undeclared("roots/list", None, &json!({"roots": {}})), None);
        let form_only = json!({"elicitation": {}});
        assert_eq!(undeclared("elicitation/create", None, &form_only), None);
        assert_eq!(
            undeclared(
                "elicitation/create",
                Some(&json!({"mode": "url"})),
                &form_only
            ),
            Some(json!({"elicitation": {"url": {}}}))
        );
        assert_eq!(undeclared("tools/list", None, &none), None);
    }

    #[test]
    fn a_question_is_named_by_its_id_up_to_the_first_hash() {
        assert_eq!(question_name("user_name#7"), Some("user_name"));
        assert_eq!(question_name("a#b#c"), Some("a"));
        assert_eq!(question_name("#7"), None);
        assert_eq!(question_name("plain"), None);
    }

    #[test]
    fn input_responses_must_be_objects_of_results() {
        assert!(input_responses(&json!({})).unwrap().is_empty());
        let ok = input_responses(&json!({"inputResponses": {"a": {"action": "accept"}}})).unwrap();
        assert_eq!(ok["a"]["action"], "accept");
        assert!(input_responses(&json!({"inputResponses": null})).is_err());
        assert!(input_responses(&json!({"inputResponses": {"a": 12345}})).is_err());
    }

    #[test]
    fn log_messages_need_an_opt_in_and_a_severity_at_least_as_high() {
        let warning = json!({"level": "warning", "data": "x"});
        assert!(!log_passes(None, Some(&warning)));
        assert!(log_passes(Some("info"), Some(&warning)));
        assert!(log_passes(Some("warning"), Some(&warning)));
        assert!(!log_passes(Some("error"), Some(&warning)));
    }

    #[test]
    fn a_listen_filter_grants_what_the_server_can_say_and_passes_only_that() {
        let asked = Filter::asked(&json!({"notifications": {
            "toolsListChanged": true, "promptsListChanged": true,
            "resourceSubscriptions": ["test://a"]}}));
        let granted = asked.granted(&json!({"tools": {"listChanged": true},
            "resources": {"subscribe": true}}));
        assert_eq!(
            granted.to_value(),
            json!({"toolsListChanged": true, "resourceSubscriptions": ["test://a"]})
        );
        assert!(granted.passes("notifications/tools/list_changed", None));
        assert!(!granted.passes("notifications/prompts/list_changed", None));
        assert!(granted.passes(
            "notifications/resources/updated",
            Some(&json!({"uri": "test://a"}))
        ));
        assert!(!granted.passes(
            "notifications/resources/updated",
            Some(&json!({"uri": "test://b"}))
        ));
        assert!(!granted.passes("notifications/message", None));
        let ack = acknowledged("7", &granted);
        assert_eq!(ack["params"]["_meta"][SUBSCRIPTION_ID_KEY], 7);
        let n = tagged(
            &json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
            "\"s\"",
        );
        assert_eq!(n["params"]["_meta"][SUBSCRIPTION_ID_KEY], "s");
        assert_eq!(closed("7")["_meta"][SUBSCRIPTION_ID_KEY], 7);
    }
}
