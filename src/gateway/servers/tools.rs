//! A server's tool filter (`tools.allow` / `tools.deny`, names with `*` globs, and
//! `tools.rename`), as a layer around its backend: `tools/list` answers lose the tools a client
//! may not see and carry the new names of renamed ones, a `tools/call` by a new name reaches the
//! server under its own, and a call of a tool the client may not see is answered with a
//! JSON-RPC error naming it — the server never sees it.
//! It works the same on every backend, since it only wraps the [`Backend`] traits.
//!
//! Owns: the filter's rules and where they apply. Must not touch: HTTP or sessions.

use parking_lot::Mutex;
use std::{
    collections::HashSet,
    sync::{Arc, Weak},
    time::Duration,
};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::Value;
use uuid::Uuid;

use super::layer::{Opens, layer};
use crate::{
    config::ToolFilter,
    gateway::{
        backend::{Backend, Client, CloseCause, ForwardError, Link, OpenError},
        metrics::ServerMetrics,
    },
    mcp::jsonrpc::{self, Envelope, Kind},
};

/// Whether `name` matches `pattern` (`*` matches any run of characters, including none).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ni;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether `filter` lets clients see and call tool `name`.
pub fn allowed(filter: &ToolFilter, name: &str) -> bool {
    let listed = filter.allow.is_empty() || filter.allow.iter().any(|p| glob(p, name));
    listed && !filter.deny.iter().any(|p| glob(p, name))
}

/// The server's own name of the tool clients call `name`; `None` when no tool is called so to
/// clients (its own name was renamed away).
pub fn own_name<'a>(filter: &'a ToolFilter, name: &'a str) -> Option<&'a str> {
    if let Some((own, _)) = filter.rename.iter().find(|(_, new)| new == name) {
        return Some(own);
    }
    (!filter.rename.iter().any(|(own, _)| own == name)).then_some(name)
}

/// `tools` (a `tools/list` page) as clients may see it: filtered by their own names, renamed;
/// a tool whose name a renamed one takes is left out.
pub fn visible(filter: &ToolFilter, tools: &mut Vec<Value>) {
    tools.retain(|t| {
        t.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| allowed(filter, n))
    });
    if filter.rename.is_empty() {
        return;
    }
    let mut renamed = vec![false; tools.len()];
    for (t, renamed) in tools.iter_mut().zip(&mut renamed) {
        let own = t.get("name").and_then(Value::as_str).unwrap_or_default();
        if let Some((_, new)) = filter.rename.iter().find(|(o, _)| o == own) {
            t["name"] = Value::String(new.clone());
            *renamed = true;
        }
    }
    let taken: HashSet<String> = tools
        .iter()
        .zip(&renamed)
        .filter(|(_, r)| **r)
        .filter_map(|(t, _)| t["name"].as_str().map(str::to_string))
        .collect();
    let mut flags = renamed.into_iter();
    tools.retain(|t| {
        flags.next().unwrap_or(false) || !t["name"].as_str().is_some_and(|n| taken.contains(n))
    });
}

/// `backend` with `filter` applied to every session it serves (or `backend` itself when the
/// filter lets everything through).
pub fn filtered(
    backend: Arc<dyn Backend>,
    filter: ToolFilter,
    metrics: ServerMetrics,
) -> Arc<dyn Backend> {
    if filter.allow.is_empty() && filter.deny.is_empty() && filter.rename.is_empty() {
        return backend;
    }
    layer(
        backend,
        Filtered {
            filter: Arc::new(filter),
            metrics,
        },
    )
}

struct Filtered {
    filter: Arc<ToolFilter>,
    metrics: ServerMetrics,
}

impl Opens for Filtered {
    fn open(
        &self,
        inner: &dyn Backend,
        client: Arc<dyn Client>,
        env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError> {
        let view = Arc::new(FilteredClient {
            inner: client,
            filter: self.filter.clone(),
            listing: Mutex::default(),
        });
        let link = inner.open(view.clone(), env)?;
        Ok(Box::new(FilteredLink {
            inner: link,
            client: Arc::downgrade(&view),
            filter: self.filter.clone(),
            metrics: self.metrics.clone(),
        }))
    }
}

/// The session as the server sees it: `tools/list` answers are filtered on their way back.
struct FilteredClient {
    inner: Arc<dyn Client>,
    filter: Arc<ToolFilter>,
    /// Raw ids of this session's `tools/list` requests awaiting their answer.
    listing: Mutex<HashSet<String>>,
}

impl FilteredClient {
    /// The message with the tools the client may not see removed, if it answers a listing.
    fn filter(&self, message: String) -> String {
        if self.listing.lock().is_empty() {
            return message;
        }
        let Ok(Kind::Response { id }) = jsonrpc::classify(message.as_bytes()) else {
            return message;
        };
        if !self.listing.lock().remove(&id) {
            return message;
        }
        let Some(env) = Envelope::parse(message.as_bytes()) else {
            return message;
        };
        let Some(mut result) = env
            .get("result")
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        else {
            return message;
        };
        if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
            visible(&self.filter, tools);
        }
        String::from_utf8(env.render(&[("result", &result.to_string())])).unwrap_or(message)
    }
}

impl Client for FilteredClient {
    fn id(&self) -> Uuid {
        self.inner.id()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn send(&self, message: String) -> bool {
        self.inner.send(self.filter(message))
    }

    fn send_unbounded(&self, message: String) {
        self.inner.send_unbounded(message)
    }

    fn caller(&self) -> Option<Arc<crate::gateway::caller::Caller>> {
        self.inner.caller()
    }

    fn end(&self, cause: CloseCause) {
        self.inner.end(cause)
    }

    fn refused(&self, id: &str, rule: &str) {
        self.inner.refused(id, rule)
    }
}

/// The session's link: a denied `tools/call` is answered here, a `tools/list` remembered.
struct FilteredLink {
    inner: Box<dyn Link>,
    client: Weak<FilteredClient>,
    filter: Arc<ToolFilter>,
    metrics: ServerMetrics,
}

impl Link for FilteredLink {
    fn forward<'a>(
        &'a self,
        line: Bytes,
        kind: &'a Kind,
    ) -> BoxFuture<'a, Result<(), ForwardError>> {
        if let Kind::Request { id, method } = kind {
            match method.as_str() {
                "tools/list" => {
                    if let Some(c) = self.client.upgrade() {
                        c.listing.lock().insert(id.clone());
                    }
                }
                "tools/call" => {
                    let env = Envelope::parse(&line);
                    let mut params = env.as_ref().and_then(|e| e.params()).unwrap_or_default();
                    let name = params
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let own = own_name(&self.filter, &name);
                    if !own.is_some_and(|own| allowed(&self.filter, own)) {
                        self.metrics.tool_call_denied();
                        if let Some(c) = self.client.upgrade() {
                            let message = format!(
                                "tool {name:?} is not available on this server (the gateway's tool filter denies it)"
                            );
                            c.refused(id, "tools");
                            c.send_unbounded(jsonrpc::error_response(
                                id,
                                jsonrpc::INVALID_PARAMS,
                                &message,
                            ));
                        }
                        return Box::pin(async { Ok(()) });
                    }
                    if let (Some(own), Some(env)) = (own, &env)
                        && own != name
                    {
                        params["name"] = Value::String(own.to_string());
                        let line = Bytes::from(env.render(&[("params", &params.to_string())]));
                        return self.inner.forward(line, kind);
                    }
                }
                _ => {}
            }
        }
        self.inner.forward(line, kind)
    }

    fn release(&self, grace: Duration) {
        self.inner.release(grace)
    }

    fn serving(&self) -> Option<&str> {
        self.inner.serving()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("get_*", "get_forecast"));
        assert!(glob("*", ""));
        assert!(glob("*_cities", "compare_cities"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("get_*", "list_cities"));
        assert!(!glob("echo", "echo2"));
        assert!(glob("echo", "echo"));
        assert!(!glob("a*c", "ab"));
    }

    #[test]
    fn renamed_tools_are_listed_and_called_by_their_new_names_only() {
        let f = ToolFilter {
            allow: vec![],
            deny: vec!["crash".into()],
            rename: vec![
                ("get_current_temperature".into(), "temperature".into()),
                ("echo".into(), "say".into()),
            ],
        };
        let mut tools: Vec<Value> = ["get_current_temperature", "echo", "say", "crash", "env"]
            .iter()
            .map(|n| serde_json::json!({"name": n}))
            .collect();
        visible(&f, &mut tools);
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        // `say` of its own is shadowed by the renamed `echo`.
        assert_eq!(names, ["temperature", "say", "env"]);
        assert_eq!(own_name(&f, "temperature"), Some("get_current_temperature"));
        assert_eq!(own_name(&f, "say"), Some("echo"));
        assert_eq!(own_name(&f, "env"), Some("env"));
        assert_eq!(own_name(&f, "get_current_temperature"), None);
    }

    #[test]
    fn deny_wins_over_allow_and_empty_allow_allows_all() {
        let f = ToolFilter {
            allow: vec![],
            deny: vec!["crash".into(), "big*".into()],
            rename: vec![],
        };
        assert!(allowed(&f, "echo") && !allowed(&f, "crash") && !allowed(&f, "bigger"));
        let f = ToolFilter {
            allow: vec!["get_*".into(), "list_cities".into()],
            deny: vec!["get_historical_data".into()],
            rename: vec![],
        };
        assert!(allowed(&f, "get_forecast") && allowed(&f, "list_cities"));
        assert!(!allowed(&f, "get_historical_data") && !allowed(&f, "compare_cities"));
    }
}
