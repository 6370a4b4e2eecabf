//! Tool search (`toolSearch`) as a layer around a server's or group's backend, inside the calls
//! layer (which so limits and records its calls) and outside the rules:
//! `tools/list` shows a small surface — a search tool, a call tool, the `alwaysList` tools and,
//! in `activate` mode, the tools the session found — instead of every tool; the search answers
//! from an index of the tools the layers inside list *for this caller* (its tool filter and
//! rules already applied, its `toolScopes` checked here), and the call tool becomes the
//! `tools/call` of the tool it names, judged inside by the rules like any other call.
//!
//! Each session fetches the list it may see (every page) on its first search, keeps it until
//! the server says its list changed or the caller differs, and shares the index with every
//! session that sees the same list (keyed by its SHA-256). A stateless request (2026-07-28)
//! searches but activates nothing: there is no session to keep it.
//!
//! Owns: the surface and its answers. Must not touch: HTTP, the ranking
//! ([`crate::gateway::federation::search`]).

mod surface;

use parking_lot::Mutex;
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use uuid::Uuid;

pub(super) use self::surface::called;
pub use self::surface::{ACTIVATE, ACTIVE_META, CALL, SEARCH, active_of};
use self::surface::{activate, call_tool, search_tool, summary, tool_error};
use super::{
    layer::{Opens, layer},
    tools::glob,
};
use crate::{
    config::ToolSearchConfig,
    gateway::{
        backend::{Backend, Client, CloseCause, ForwardError, Link, OpenError},
        caller::Caller,
        federation::search::Index,
        metrics::ServerMetrics,
    },
    mcp::{
        jsonrpc::{self, Envelope, Kind},
        splice,
    },
};

/// How long a page of the list may take.
const PAGE_WAIT: Duration = Duration::from_secs(30);
/// Pages of one list at most (a server whose cursors never end).
const MAX_PAGES: usize = 1000;

/// `backend` with its tools behind a search (or `backend` itself without `config`).
pub(super) fn searched(
    backend: Arc<dyn Backend>,
    config: Option<ToolSearchConfig>,
    tool_scopes: Vec<(String, Vec<String>)>,
    metrics: ServerMetrics,
) -> Arc<dyn Backend> {
    let Some(config) = config else {
        return backend;
    };
    layer(
        backend,
        Searched {
            shared: Arc::new(Shared {
                config,
                tool_scopes,
                indexes: Mutex::default(),
                metrics,
            }),
        },
    )
}

/// What a server's sessions share: the settings and the indexes built so far.
struct Shared {
    config: ToolSearchConfig,
    tool_scopes: Vec<(String, Vec<String>)>,
    indexes: Mutex<HashMap<[u8; 32], Weak<Index>>>,
    metrics: ServerMetrics,
}

impl Shared {
    /// The index of `tools`: one already built for the same list, else a new one.
    fn index(&self, tools: Vec<Value>) -> Arc<Index> {
        let digest: [u8; 32] =
            Sha256::digest(serde_json::to_vec(&tools).unwrap_or_default()).into();
        let mut indexes = self.indexes.lock();
        if let Some(index) = indexes.get(&digest).and_then(Weak::upgrade) {
            return index;
        }
        indexes.retain(|_, w| w.strong_count() > 0);
        self.metrics.tool_search_index();
        let index = Arc::new(Index::build(tools));
        indexes.insert(digest, Arc::downgrade(&index));
        index
    }

    /// Whether `caller` holds the scopes `toolScopes` asks for tool `name` (a caller without a
    /// token or key is not asked: the HTTP layer asks only those).
    fn scoped(&self, caller: Option<&Caller>, name: &str) -> bool {
        let Some(caller) = caller.filter(|c| !c.claims.is_null() || c.key.is_some()) else {
            return true;
        };
        self.tool_scopes
            .iter()
            .filter(|(g, _)| glob(g, name))
            .all(|(_, scopes)| scopes.iter().all(|s| caller.scopes.contains(s)))
    }

    fn listed_always(&self, name: &str) -> bool {
        self.config.always_list.iter().any(|g| glob(g, name))
    }
}

struct Searched {
    shared: Arc<Shared>,
}

impl Opens for Searched {
    fn open(
        &self,
        inner: &dyn Backend,
        client: Arc<dyn Client>,
        env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError> {
        let view = Arc::new(SearchClient {
            inner: client,
            waiting: Mutex::default(),
            version: AtomicU64::new(0),
            initializing: Mutex::default(),
        });
        let link: Arc<dyn Link> = Arc::from(inner.open(view.clone(), env)?);
        Ok(Box::new(SearchLink {
            session: Arc::new(Session {
                shared: self.shared.clone(),
                client: view,
                link,
                next: AtomicU64::new(1),
                cached: Mutex::default(),
                fetching: tokio::sync::Mutex::new(()),
                active: Mutex::default(),
            }),
        }))
    }
}

/// The session as the server sees it: answers to the layer's own requests stop here.
struct SearchClient {
    inner: Arc<dyn Client>,
    /// The layer's own requests (raw id) awaiting their answer.
    waiting: Mutex<HashMap<String, oneshot::Sender<String>>>,
    /// Bumped when the server says its tool list changed.
    version: AtomicU64,
    /// In activate mode, the raw id of the session's `initialize`: its answer says the tool
    /// list changes (the layer announces activations).
    initializing: Mutex<Option<String>>,
}

impl SearchClient {
    /// The message for the client, or `None` when it answered the layer (taken here).
    fn sort(&self, message: String) -> Option<String> {
        match jsonrpc::classify(message.as_bytes()) {
            Ok(Kind::Response { id }) => {
                let waiting = self.waiting.lock().remove(&id);
                if let Some(tx) = waiting {
                    let _ = tx.send(message);
                    return None;
                }
                let mut initializing = self.initializing.lock();
                if initializing.as_deref() == Some(id.as_str()) {
                    *initializing = None;
                    return Some(surface::announcing(message));
                }
                Some(message)
            }
            Ok(Kind::Notification { method }) if method == "notifications/tools/list_changed" => {
                self.version.fetch_add(1, Ordering::AcqRel);
                Some(message)
            }
            _ => Some(message),
        }
    }
}

impl Client for SearchClient {
    fn id(&self) -> Uuid {
        self.inner.id()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn send(&self, message: String) -> bool {
        self.sort(message).is_none_or(|m| self.inner.send(m))
    }

    fn send_unbounded(&self, message: String) {
        if let Some(m) = self.sort(message) {
            self.inner.send_unbounded(m)
        }
    }

    fn end(&self, cause: CloseCause) {
        self.inner.end(cause)
    }

    fn caller(&self) -> Option<Arc<Caller>> {
        self.inner.caller()
    }

    fn refused(&self, id: &str, rule: &str) {
        self.inner.refused(id, rule)
    }

    fn stateless(&self) -> bool {
        self.inner.stateless()
    }
}

/// A fetched list: the list version it was fetched at, for whom, and its index.
type Fetched = (u64, Option<Arc<Caller>>, Arc<Index>);

/// One session's search state.
struct Session {
    shared: Arc<Shared>,
    client: Arc<SearchClient>,
    link: Arc<dyn Link>,
    next: AtomicU64,
    /// The list this session may see, as last fetched.
    cached: Mutex<Option<Fetched>>,
    /// One fetch of the list at a time.
    fetching: tokio::sync::Mutex<()>,
    /// Tools found and activated, oldest first (`activate` mode).
    active: Mutex<VecDeque<String>>,
}

impl Session {
    /// The index of the tools this session's caller may see, fetched when stale.
    async fn index(&self, meta: Option<&Value>) -> Result<Arc<Index>, String> {
        let _one = self.fetching.lock().await;
        let caller = self.client.caller();
        let version = self.client.version.load(Ordering::Acquire);
        if let Some((v, c, index)) = &*self.cached.lock()
            && *v == version
            && *c == caller
        {
            return Ok(index.clone());
        }
        let mut tools = Vec::new();
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let mut params = json!({});
            if let Some(c) = cursor.take() {
                params["cursor"] = c;
            }
            if let Some(meta) = meta {
                params["_meta"] = meta.clone();
            }
            let result = self.ask("tools/list", params).await?;
            if let Some(items) = result.get("tools").and_then(Value::as_array) {
                tools.extend(items.iter().cloned());
            }
            match result.get("nextCursor") {
                Some(c) if c.is_string() => cursor = Some(c.clone()),
                _ => break,
            }
        }
        let index = self.shared.index(tools);
        *self.cached.lock() = Some((version, caller, index.clone()));
        Ok(index)
    }

    /// Sends a request of the layer's own to the server and waits for its result.
    async fn ask(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = format!(
            "\"aareguru-search-{}\"",
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        self.client.waiting.lock().insert(id.clone(), tx);
        let line = jsonrpc::message(Some(&id), method, Some(&params));
        let kind = Kind::Request {
            id: id.clone(),
            method: method.to_string(),
        };
        if let Err(e) = self.link.forward(line, &kind).await {
            self.client.waiting.lock().remove(&id);
            return Err(format!("cannot list the tools: {e}"));
        }
        let answer = match tokio::time::timeout(PAGE_WAIT, rx).await {
            Ok(Ok(answer)) => answer,
            _ => {
                self.client.waiting.lock().remove(&id);
                return Err(format!(
                    "cannot list the tools: no answer within {}s",
                    PAGE_WAIT.as_secs()
                ));
            }
        };
        let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        if let Some(result) = answer.get("result") {
            return Ok(result.clone());
        }
        let why = answer["error"]["message"].as_str().unwrap_or("no result");
        Err(format!("cannot list the tools: {why}"))
    }

    /// Answers `tools/list` with the surface.
    async fn list(self: Arc<Self>, id: String, meta: Option<Value>) {
        let mut tools = vec![search_tool(self.shared.config.limit), call_tool()];
        let active: Vec<String> = self.active.lock().iter().cloned().collect();
        if !self.shared.config.always_list.is_empty() || !active.is_empty() {
            let index = match self.index(meta.as_ref()).await {
                Ok(index) => index,
                Err(e) => return self.answer_error(&id, &e),
            };
            let caller = self.client.caller();
            tools.extend(
                index
                    .tools()
                    .iter()
                    .filter(|t| {
                        let name = t["name"].as_str().unwrap_or_default();
                        (self.shared.listed_always(name) || active.iter().any(|a| a == name))
                            && self.shared.scoped(caller.as_deref(), name)
                    })
                    .cloned(),
            );
        }
        let result = json!({ "tools": tools });
        self.client
            .inner
            .send_unbounded(jsonrpc::result_response(&id, &result.to_string()));
    }

    /// Answers a call of the search tool.
    async fn search(self: Arc<Self>, id: String, arguments: Value, meta: Option<Value>) {
        let metrics = &self.shared.metrics;
        let Some(query) = arguments.get("query").and_then(Value::as_str) else {
            metrics.tool_search("refused");
            let why = tool_error("search_tools needs a \"query\" (a string)");
            return self.answer(&id, &why);
        };
        let limit = match arguments.get("limit") {
            None | Some(Value::Null) => self.shared.config.limit,
            Some(l) => match l.as_u64() {
                Some(n @ 1..=50) => n as usize,
                _ => {
                    metrics.tool_search("refused");
                    let why = tool_error("\"limit\" is a whole number from 1 to 50");
                    return self.answer(&id, &why);
                }
            },
        };
        let index = match self.index(meta.as_ref()).await {
            Ok(index) => index,
            Err(e) => {
                metrics.tool_search("failed");
                return self.answer_error(&id, &e);
            }
        };
        let caller = self.client.caller();
        let hits = index.search(query, limit, |t| {
            let name = t["name"].as_str().unwrap_or_default();
            name != SEARCH && name != CALL && self.shared.scoped(caller.as_deref(), name)
        });
        let found: Vec<Value> = hits
            .iter()
            .map(|h| summary(&index.tools()[h.place]))
            .collect();
        let names: Vec<String> = found
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect();
        metrics.tool_search(if found.is_empty() { "none" } else { "found" });
        let structured = json!({ "tools": found });
        let result = json!({
            "content": [{"type": "text", "text": structured.to_string()}],
            "structuredContent": structured,
            "isError": false,
        });
        // Activated before the answer leaves: a client that lists its tools as soon as the
        // search answers must see what it found.
        let (on, cap) = (self.shared.config.activate, self.shared.config.max_active);
        let changed =
            on && !self.client.stateless() && activate(&mut self.active.lock(), &names, cap);
        self.answer(&id, &result);
        if changed {
            let active: Vec<String> = self.active.lock().iter().cloned().collect();
            let note = jsonrpc::message(
                None,
                "notifications/tools/list_changed",
                Some(&json!({"_meta": {ACTIVE_META: active}})),
            );
            self.client
                .inner
                .send_unbounded(String::from_utf8_lossy(&note).into_owned());
        }
    }

    fn answer(&self, id: &str, result: &Value) {
        self.client
            .inner
            .send_unbounded(jsonrpc::result_response(id, &result.to_string()));
    }

    fn answer_error(&self, id: &str, message: &str) {
        self.client.inner.send_unbounded(jsonrpc::error_response(
            id,
            jsonrpc::INTERNAL_ERROR,
            message,
        ));
    }
}

/// The session's link: the surface answered here, everything else passed on.
struct SearchLink {
    session: Arc<Session>,
}

impl Link for SearchLink {
    fn forward<'a>(
        &'a self,
        line: Bytes,
        kind: &'a Kind,
    ) -> BoxFuture<'a, Result<(), ForwardError>> {
        let link = &self.session.link;
        if let Kind::Notification { method } = kind
            && method == ACTIVATE
        {
            let params = Envelope::parse(&line).and_then(|e| e.params());
            if let Some(names) = params.and_then(|p| surface::names(&p["names"])) {
                // Oldest first as sent; activation takes the newest last.
                let newest_first: Vec<String> = names.into_iter().rev().collect();
                let mut active = self.session.active.lock();
                active.clear();
                activate(
                    &mut active,
                    &newest_first,
                    self.session.shared.config.max_active,
                );
            }
            return Box::pin(async { Ok(()) });
        }
        let Kind::Request { id, method } = kind else {
            return link.forward(line, kind);
        };
        if method == "initialize" && self.session.shared.config.activate {
            *self.session.client.initializing.lock() = Some(id.clone());
        }
        if method != "tools/list" && method != "tools/call" {
            return link.forward(line, kind);
        }
        // Any other tool's call goes on untouched, told by the rules layer's borrowing parse
        // (no tree of its params); what that parse does not take goes the general way.
        if method == "tools/call"
            && splice::Named::parse(&line).is_some_and(|n| n.name != SEARCH && n.name != CALL)
        {
            return link.forward(line, kind);
        }
        let Some(env) = Envelope::parse(&line) else {
            return link.forward(line, kind);
        };
        let params = env.params().unwrap_or_default();
        let meta = params.get("_meta").map(|m| {
            let mut m = m.clone();
            if let Some(o) = m.as_object_mut() {
                o.remove("progressToken");
            }
            m
        });
        let session = self.session.clone();
        if method == "tools/list" {
            tokio::spawn(session.list(id.clone(), meta));
            return Box::pin(async { Ok(()) });
        }
        match params.get("name").and_then(Value::as_str) {
            Some(SEARCH) => {
                let arguments = params.get("arguments").cloned().unwrap_or_default();
                tokio::spawn(session.search(id.clone(), arguments, meta));
                Box::pin(async { Ok(()) })
            }
            Some(CALL) => match called(params) {
                Ok(params) => {
                    let line = Bytes::from(env.render(&[("params", &params.to_string())]));
                    Box::pin(async move { self.session.link.forward(line, kind).await })
                }
                Err(why) => {
                    session.answer(id, &tool_error(why));
                    Box::pin(async { Ok(()) })
                }
            },
            _ => link.forward(line, kind),
        }
    }

    fn release(&self, grace: Duration) {
        self.session.link.release(grace)
    }

    fn serving(&self) -> Option<&str> {
        self.session.link.serving()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_asked_of_callers_with_a_token_or_key() {
        let shared = Shared {
            config: ToolSearchConfig {
                activate: false,
                always_list: vec!["time__*".into()],
                max_active: 4,
                limit: 5,
            },
            tool_scopes: vec![("fs__write*".into(), vec!["write".into()])],
            indexes: Mutex::default(),
            metrics: ServerMetrics::new(Arc::default(), "s"),
        };
        let token = Caller {
            claims: Arc::new(json!({"sub": "u"})),
            scopes: vec!["read".into()],
            ..Caller::default()
        };
        assert!(!shared.scoped(Some(&token), "fs__write_file"));
        assert!(shared.scoped(Some(&token), "fs__read_file"));
        let writer = Caller {
            scopes: vec!["write".into()],
            ..token.clone()
        };
        assert!(shared.scoped(Some(&writer), "fs__write_file"));
        assert!(shared.scoped(None, "fs__write_file"));
        assert!(shared.listed_always("time__now") && !shared.listed_always("fs__x"));
        let a = shared.index(vec![json!({"name": "x"})]);
        let b = shared.index(vec![json!({"name": "x"})]);
        assert!(Arc::ptr_eq(&a, &b));
    }
}
