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

pub use super::judging::Subject;
use super::{
    judging::{JUDGED, Judge, LISTS, Memo, call_request, refusal},
    layer::{Opens, layer},
};
use crate::{
    gateway::{
        backend::{Backend, Client, CloseCause, ForwardError, Link, OpenError},
        caller::Caller,
        metrics::ServerMetrics,
        policy::{
            Arguments, Decision, Mode, Prepared, Request,
            book::{Book, Compiled},
        },
    },
    mcp::{
        jsonrpc::{self, Envelope, Kind},
        splice, strict,
    },
};

/// `backend` with the rules applied to every session it serves.
pub fn guarded(
    backend: Arc<dyn Backend>,
    subject: Subject,
    book: Arc<Book>,
    metrics: ServerMetrics,
) -> Arc<dyn Backend> {
    let judge = Arc::new(Judge {
        subject,
        book,
        metrics,
    });
    layer(backend, Guarded { judge })
}

struct Guarded {
    judge: Arc<Judge>,
}

impl Opens for Guarded {
    fn open(
        &self,
        inner: &dyn Backend,
        client: Arc<dyn Client>,
        env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError> {
        let view = Arc::new(GuardedClient {
            inner: client,
            judge: self.judge.clone(),
            listing: Mutex::default(),
            pending_lists: AtomicUsize::new(0),
            prepared: Mutex::default(),
            memo: Mutex::default(),
        });
        let link = inner.open(view.clone(), env)?;
        Ok(Box::new(GuardedLink {
            inner: link,
            client: Arc::downgrade(&view),
        }))
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
    memo: Mutex<Memo>,
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
                .decide(&book, &caller, &prepared, request, Mode::List, &self.memo)
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

    fn refused(&self, id: &str, rule: &str) {
        self.inner.refused(id, rule)
    }
}

/// The session's link: a denied call is answered here, a listing remembered.
struct GuardedLink {
    inner: Box<dyn Link>,
    client: Weak<GuardedClient>,
}

impl GuardedLink {
    /// A judged call: `Some(line)` to send on (the judged form), `None` when it was refused
    /// and answered here.
    #[allow(clippy::too_many_arguments)]
    fn judged(
        &self,
        client: &GuardedClient,
        book: &Arc<Compiled>,
        caller: &Arc<Caller>,
        prepared: &Prepared,
        id: &str,
        method: &str,
        line: Bytes,
    ) -> Option<Bytes> {
        let decide = |request: Request<'_>, mode: Mode| {
            client
                .judge
                .decide(book, caller, prepared, request, mode, &client.memo)
        };
        let reads = book.reads_arguments;
        // A call whose arguments some rule reads, read once without building them: its name,
        // and its arguments' text, which the rules read what they need of. If every parser
        // reads it alike it goes on as it came.
        if method == "tools/call"
            && reads
            && let Some(call) = strict::unambiguous_call(&line)
        {
            let arguments = match call.arguments {
                Some(text) => Arguments::Text(text),
                None => Arguments::Value(&Value::Null),
            };
            let request = Request {
                method,
                tool: &call.name,
                arguments: Some(arguments),
                ..Request::default()
            };
            if let Decision::Deny(rule) = decide(request, Mode::Call) {
                let params = serde_json::json!({ "name": call.name });
                self.refuse(client, book, caller, id, method, &params, &rule);
                return None;
            }
            return Some(line);
        }
        // By its name alone when the name stands once in the bytes and no rule in the way
        // must read the arguments (what the server reads is then what was judged, and the
        // message goes on untouched).
        if matches!(method, "tools/call" | "prompts/get")
            && let Some(named) = splice::Named::parse(&line)
        {
            let name: &str = &named.name;
            let request = match method {
                "tools/call" => Request {
                    method,
                    tool: name,
                    ..Request::default()
                },
                _ => Request {
                    method,
                    prompt: name,
                    ..Request::default()
                },
            };
            let mode = match reads {
                true => Mode::Name,
                false => Mode::Call,
            };
            match decide(request, mode) {
                Decision::Allow => return Some(line.clone()),
                Decision::Deny(rule) => {
                    let params = serde_json::json!({ "name": name });
                    self.refuse(client, book, caller, id, method, &params, &rule);
                    return None;
                }
                Decision::NeedsArguments => {}
            }
        }
        // A message every parser reads alike goes on as it came (one parse, no writing it
        // again, numbers beyond 64 bits kept as sent); any other is judged as serde_json
        // reads it and sent on written again from that reading.
        if let Some(params) = strict::unambiguous_params(&line) {
            if let Decision::Deny(rule) = decide(call_request(method, &params), Mode::Call) {
                self.refuse(client, book, caller, id, method, &params, &rule);
                return None;
            }
            return Some(line);
        }
        let envelope = Envelope::parse(&line);
        let params = envelope
            .as_ref()
            .and_then(|e| e.params())
            .unwrap_or_default();
        if let Decision::Deny(rule) = decide(call_request(method, &params), Mode::Call) {
            self.refuse(client, book, caller, id, method, &params, &rule);
            return None;
        }
        // The server gets exactly what was judged: no duplicate key or escape a parser of its
        // own could read differently.
        Some(match envelope {
            Some(env) => Bytes::from(env.render(&[("params", &params.to_string())])),
            None => line,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &self,
        client: &GuardedClient,
        book: &Compiled,
        caller: &Caller,
        id: &str,
        method: &str,
        params: &Value,
        rule: &str,
    ) {
        client.judge.metrics.policy_denied(rule);
        tracing::info!(
            server = %client.judge.subject.name,
            subject = %caller.subject,
            %method,
            rule = %rule,
            "the rules deny a call"
        );
        let answer = refusal(id, method, params, rule, book.denied);
        client.inner.refused(id, rule);
        client.inner.send_unbounded(answer);
    }
}

impl Link for GuardedLink {
    fn forward<'a>(
        &'a self,
        line: Bytes,
        kind: &'a Kind,
    ) -> BoxFuture<'a, Result<(), ForwardError>> {
        if let (Kind::Request { id, method }, Some(client)) = (kind, self.client.upgrade()) {
            let book = client.judge.book.current();
            let own = book.servers.contains_key(&client.judge.subject.name);
            // Without rules for this server there is nothing to judge: not even who calls.
            let caller = match own || !book.gateway.is_empty() {
                true => client.caller(),
                false => None,
            };
            if let Some((caller, prepared)) = caller
                && (own || caller.via.is_none())
            {
                if let Some(list) = LISTS.iter().find(|m| **m == method.as_str()) {
                    client.listing.lock().insert(id.clone(), list);
                    client.pending_lists.fetch_add(1, Ordering::AcqRel);
                } else if JUDGED.contains(&method.as_str()) {
                    // With --otel: the judgement is a step of the request's span.
                    let step = crate::telemetry::spans::step("policy", "internal");
                    let judged = step.in_scope(|| {
                        self.judged(&client, &book, &caller, &prepared, id, method, line)
                    });
                    step.record("gateway.server", client.judge.subject.name.as_str());
                    step.record(
                        "gateway.outcome",
                        judged.as_ref().map_or("deny", |_| "allow"),
                    );
                    return match judged {
                        Some(line) => self.inner.forward(line, kind),
                        None => Box::pin(async { Ok(()) }),
                    };
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
