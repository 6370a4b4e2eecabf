//! The servers file's rules (see [`crate::gateway::policy`]) as a layer around every server's
//! backend, on every transport and revision: a call the rules deny (`tools/call`, `prompts/get`,
//! `resources/read`, `resources/subscribe`, `completion/complete`) is answered here and never
//! reaches the server; the answers to `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` lose the items the caller may not use.
//!
//! The rules are read from the [`Book`] on every request, so a reload reaches open sessions at
//! once. A request judged here was judged by the gateway's rules and the server's own; one
//! that reaches a member through a group ([`Caller::via`]) was judged by the gateway's and the
//! group's rules already, and meets the member's own rules only.
//!
//! Owns: where the rules apply. Must not touch: HTTP, what the rules mean.

use parking_lot::Mutex;
use std::{
    collections::HashMap,
    sync::{
        Arc, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    config::{Backend as BackendKind, DeniedAs, GroupConfig},
    gateway::{
        backend::{Backend, Client, CloseCause, ForwardError, Link, OpenError, Status},
        caller::Caller,
        federation::catalog::Naming,
        metrics::ServerMetrics,
        policy::{
            self, Decision, Mode, Prepared, Request, RuleSet,
            book::{Book, Compiled},
        },
    },
    mcp::jsonrpc::{self, Envelope, Kind},
};

/// What a layer needs to know of the server it wraps.
#[derive(Clone)]
pub struct Subject {
    pub name: String,
    /// A group's naming and members, to tell `mcp.member` from a namespaced name.
    pub group: Option<(Naming, Vec<String>)>,
}

impl Subject {
    pub fn of(name: &str, group: Option<&GroupConfig>) -> Subject {
        Subject {
            name: name.to_string(),
            group: group.map(|g| {
                let naming = Naming {
                    prefix: g.prefix,
                    separator: g.separator.clone(),
                    members: g.members.len(),
                };
                (naming, g.members.clone())
            }),
        }
    }

    /// The member a group's name (of a tool or prompt) belongs to, when names carry it, and
    /// the name the member knows it by.
    fn split(&self, name: &str) -> Option<(&str, String)> {
        let (naming, members) = self.group.as_ref()?;
        let all = members.iter().enumerate().map(|(i, m)| (i, m.as_str()));
        let (i, rest) = naming.split(all, name)?;
        Some((members[i].as_str(), rest))
    }
}

/// `backend` with the rules applied to every session it serves.
pub fn guarded(
    backend: Arc<dyn Backend>,
    subject: Subject,
    book: Arc<Book>,
    metrics: ServerMetrics,
) -> Arc<dyn Backend> {
    Arc::new(Guarded {
        inner: backend,
        judge: Arc::new(Judge {
            subject,
            book,
            metrics,
        }),
    })
}

struct Guarded {
    inner: Arc<dyn Backend>,
    judge: Arc<Judge>,
}

struct Judge {
    subject: Subject,
    book: Arc<Book>,
    metrics: ServerMetrics,
}

impl Backend for Guarded {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn start(self: Arc<Self>) -> anyhow::Result<()> {
        self.inner.clone().start()
    }

    fn open(
        &self,
        client: Arc<dyn Client>,
        env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError> {
        let view = Arc::new(GuardedClient {
            inner: client,
            judge: self.judge.clone(),
            listing: Mutex::default(),
            pending_lists: AtomicUsize::new(0),
            prepared: Mutex::default(),
        });
        let link = self.inner.open(view.clone(), env)?;
        Ok(Box::new(GuardedLink {
            inner: link,
            client: Arc::downgrade(&view),
        }))
    }

    fn status(&self) -> Status {
        self.inner.status()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.inner.shutdown()
    }
}

/// The session as the server sees it: list answers are trimmed on their way back.
struct GuardedClient {
    inner: Arc<dyn Client>,
    judge: Arc<Judge>,
    /// Raw ids of this session's list requests awaiting their answer, with their method.
    listing: Mutex<HashMap<String, &'static str>>,
    pending_lists: AtomicUsize,
    /// The caller's variables, converted once per caller.
    prepared: Mutex<Option<(Arc<Caller>, Arc<Prepared>)>>,
}

impl GuardedClient {
    /// The caller of the latest request and its variables; `None` for the gateway's own
    /// requests (a stateless server's housekeeping), which no rule judges.
    fn caller(&self) -> Option<(Arc<Caller>, Arc<Prepared>)> {
        let caller = self.inner.caller()?;
        let mut slot = self.prepared.lock();
        if let Some((c, p)) = &*slot
            && (Arc::ptr_eq(c, &caller) || **c == *caller)
        {
            return Some((c.clone(), p.clone()));
        }
        let prepared = Arc::new(Prepared::of(&caller));
        *slot = Some((caller.clone(), prepared.clone()));
        Some((caller, prepared))
    }

    /// The message with the items the caller may not use removed, if it answers a listing.
    fn trimmed(&self, message: String) -> String {
        if self.pending_lists.load(Ordering::Acquire) == 0 {
            return message;
        }
        let Ok(Kind::Response { id }) = jsonrpc::classify(message.as_bytes()) else {
            return message;
        };
        let Some(method) = self.listing.lock().remove(&id) else {
            return message;
        };
        self.pending_lists.fetch_sub(1, Ordering::AcqRel);
        let Some(env) = Envelope::parse(message.as_bytes()) else {
            return message;
        };
        let Some(mut result) = env
            .get("result")
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        else {
            return message;
        };
        let (field, item_method) = match method {
            "tools/list" => ("tools", "tools/call"),
            "prompts/list" => ("prompts", "prompts/get"),
            "resources/list" => ("resources", "resources/read"),
            _ => ("resourceTemplates", "resources/read"),
        };
        let Some(items) = result.get_mut(field).and_then(Value::as_array_mut) else {
            return message;
        };
        let Some((caller, prepared)) = self.caller() else {
            return message;
        };
        let book = self.judge.book.current();
        let before = items.len();
        items.retain(|item| {
            let name = item["name"].as_str().unwrap_or_default();
            let uri = item["uri"].as_str().unwrap_or_default();
            let request = match field {
                "tools" => Request {
                    tool: name,
                    ..Request::default()
                },
                "prompts" => Request {
                    prompt: name,
                    ..Request::default()
                },
                _ => Request {
                    uri,
                    ..Request::default()
                },
            };
            let request = Request {
                method: item_method,
                ..request
            };
            self.judge
                .decide(&book, &caller, &prepared, request, Mode::List)
                == Decision::Allow
        });
        if items.len() == before {
            return message;
        }
        String::from_utf8(env.render(&[("result", &result.to_string())])).unwrap_or(message)
    }
}

impl Client for GuardedClient {
    fn id(&self) -> Uuid {
        self.inner.id()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn send(&self, message: String) -> bool {
        self.inner.send(self.trimmed(message))
    }

    fn send_unbounded(&self, message: String) {
        self.inner.send_unbounded(self.trimmed(message))
    }

    fn end(&self, cause: CloseCause) {
        self.inner.end(cause)
    }

    fn caller(&self) -> Option<Arc<Caller>> {
        self.inner.caller()
    }
}

impl Judge {
    /// The levels that judge here and their verdict; failures counted and logged. Through a
    /// group whose names tell the member, the member's own rules judge too (on the member's
    /// own name), so a refusal names what the client asked for.
    fn decide(
        &self,
        book: &Compiled,
        caller: &Caller,
        prepared: &Prepared,
        request: Request<'_>,
        mode: Mode,
    ) -> Decision {
        let named = if request.tool.is_empty() {
            request.prompt
        } else {
            request.tool
        };
        let split = self.subject.split(named);
        let request = Request {
            server: &self.subject.name,
            member: split.as_ref().map_or("", |(m, _)| m),
            ..request
        };
        let mut levels: Vec<&RuleSet> = Vec::with_capacity(2);
        if caller.via.is_none() {
            levels.push(&book.gateway);
        }
        if let Some(own) = book.servers.get(&self.subject.name) {
            levels.push(own);
        }
        let decision = self.verdict(&levels, prepared, &request, mode);
        let Some((member, rest)) = &split else {
            return decision;
        };
        match (decision, book.servers.get(*member)) {
            (Decision::Allow, Some(rules)) => {
                let inner = Request {
                    server: member,
                    member: "",
                    tool: if request.tool.is_empty() { "" } else { rest },
                    prompt: if request.prompt.is_empty() { "" } else { rest },
                    ..request
                };
                self.verdict(&[rules], prepared, &inner, mode)
            }
            (decision, _) => decision,
        }
    }

    fn verdict(
        &self,
        levels: &[&RuleSet],
        prepared: &Prepared,
        request: &Request<'_>,
        mode: Mode,
    ) -> Decision {
        let (decision, failures) = policy::judge(levels, prepared, request, mode);
        if mode == Mode::Call {
            for f in failures {
                self.metrics.rule_failed(&f.rule.name);
                if f.rule.first_failure() {
                    tracing::warn!(
                        server = %self.subject.name,
                        rule = %f.rule.name,
                        error = %f.error,
                        "a rule failed to evaluate; the call it judged is denied (logged once per rule)"
                    );
                }
            }
        }
        decision
    }
}

/// The session's link: a denied call is answered here, a listing remembered.
struct GuardedLink {
    inner: Box<dyn Link>,
    client: Weak<GuardedClient>,
}

/// The parts of a call the rules judge, from its params.
fn call_request<'a>(method: &'a str, params: &'a Value) -> Request<'a> {
    let name = params["name"].as_str().unwrap_or_default();
    match method {
        "tools/call" => Request {
            method,
            tool: name,
            arguments: Some(params.get("arguments").unwrap_or(&Value::Null)),
            ..Request::default()
        },
        "prompts/get" => Request {
            method,
            prompt: name,
            ..Request::default()
        },
        "completion/complete" => {
            let r = &params["ref"];
            Request {
                method,
                prompt: r["name"].as_str().unwrap_or_default(),
                uri: r["uri"].as_str().unwrap_or_default(),
                ..Request::default()
            }
        }
        _ => Request {
            method,
            uri: params["uri"].as_str().unwrap_or_default(),
            ..Request::default()
        },
    }
}

/// The answer to a denied call: as if what it names did not exist, or a clear refusal.
fn refusal(id: &str, method: &str, params: &Value, rule: &str, denied: DeniedAs) -> String {
    if denied == DeniedAs::Error {
        let message = format!("denied by the gateway's rule {rule:?}");
        return jsonrpc::error_response(id, DENIED, &message);
    }
    let name = params["name"].as_str().unwrap_or_default();
    match method {
        "tools/call" => jsonrpc::error_response(
            id,
            jsonrpc::INVALID_PARAMS,
            &format!("Unknown tool: {name}"),
        ),
        "prompts/get" => jsonrpc::error_response(
            id,
            jsonrpc::INVALID_PARAMS,
            &format!("Unknown prompt: {name}"),
        ),
        "completion/complete" => {
            jsonrpc::error_response(id, jsonrpc::INVALID_PARAMS, "Unknown reference")
        }
        _ => {
            let uri = params["uri"].as_str().unwrap_or_default();
            jsonrpc::error_response(
                id,
                RESOURCE_NOT_FOUND,
                &format!("Resource not found: {uri}"),
            )
        }
    }
}

/// The MCP error for a resource that does not exist.
const RESOURCE_NOT_FOUND: i64 = -32002;
/// The gateway's error for a call its rules deny (with `denied: "error"`).
pub const DENIED: i64 = -32003;

const JUDGED: &[&str] = &[
    "tools/call",
    "prompts/get",
    "resources/read",
    "resources/subscribe",
    "completion/complete",
];
const LISTS: &[&str] = &[
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
];

impl Link for GuardedLink {
    fn forward<'a>(
        &'a self,
        line: Bytes,
        kind: &'a Kind,
    ) -> BoxFuture<'a, Result<(), ForwardError>> {
        if let (Kind::Request { id, method }, Some(client)) = (kind, self.client.upgrade())
            && let Some((caller, prepared)) = client.caller()
        {
            let book = client.judge.book.current();
            let own = book.servers.contains_key(&client.judge.subject.name);
            let applies = own || (caller.via.is_none() && !book.gateway.is_empty());
            if applies {
                if let Some(list) = LISTS.iter().find(|m| **m == method.as_str()) {
                    client.listing.lock().insert(id.clone(), list);
                    client.pending_lists.fetch_add(1, Ordering::AcqRel);
                } else if JUDGED.contains(&method.as_str()) {
                    let envelope = Envelope::parse(&line);
                    let params = envelope
                        .as_ref()
                        .and_then(|e| e.params())
                        .unwrap_or_default();
                    let request = call_request(method, &params);
                    let decision =
                        client
                            .judge
                            .decide(&book, &caller, &prepared, request, Mode::Call);
                    if let Decision::Deny(rule) = decision {
                        client.judge.metrics.policy_denied(&rule);
                        tracing::info!(
                            server = %client.judge.subject.name,
                            subject = %caller.subject,
                            %method,
                            rule = %rule,
                            "the rules deny a call"
                        );
                        client.inner.send_unbounded(refusal(
                            id,
                            method,
                            &params,
                            &rule,
                            book.denied,
                        ));
                        return Box::pin(async { Ok(()) });
                    }
                    // The server gets exactly what was judged: no duplicate key or escape a
                    // parser of its own could read differently.
                    if let Some(env) = envelope {
                        let line = Bytes::from(env.render(&[("params", &params.to_string())]));
                        return self.inner.forward(line, kind);
                    }
                }
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
