//! The outermost layer around every server's backend: it sees each `tools/call`, `prompts/get`
//! and `resources/read` on its way in and its answer on its way out — on every transport and
//! revision, federated or not, tool search's own calls included (a call of its call tool is
//! counted and recorded under the name of the tool it calls). A call first meets the limits (see
//! [`super::limits`]; one over a limit is answered here, JSON-RPC error -32029 with the seconds
//! to wait, which the HTTP front turns into 429 + `Retry-After`); it holds its slot in the
//! limits that count calls at once until it ends. When it ends — answered, refused by a layer
//! inside (the rules, the tool filter), limited, cancelled by the client, or cut short by the
//! session's end — the audit log (see [`crate::gateway::audit`]) gets its line.
//!
//! A call reaching a member through a group ([`Caller::via`]) is counted and recorded once, by
//! the group (its line names the member), not again by the member.
//!
//! Owns: when a call begins and ends. Must not touch: HTTP, what a line says, how limits
//! count.

use parking_lot::Mutex;
use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{
        Arc, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{Value, value::RawValue};
use uuid::Uuid;

use super::{
    judging::Subject,
    layer::{Opens, layer},
    limits::{Limits, Refusal, Ticket},
    search,
};
use crate::{
    gateway::{
        audit::{self, Audit, ClientInfo, Entry, Outcome},
        backend::{Backend, Client, CloseCause, ForwardError, Link, OpenError},
        caller::Caller,
        metrics::ServerMetrics,
    },
    mcp::{
        jsonrpc::{self, Called, Envelope, Kind},
        splice::Reply,
    },
};

/// The methods recorded.
const AUDITED: [&str; 3] = ["tools/call", "prompts/get", "resources/read"];

/// `backend` with every call of its sessions counted against `limits` and recorded in
/// `audit`.
pub fn counted(
    backend: Arc<dyn Backend>,
    subject: Subject,
    audit: Option<Arc<Audit>>,
    limits: Arc<Limits>,
    metrics: ServerMetrics,
    searched: bool,
) -> Arc<dyn Backend> {
    let shared = Arc::new(Shared {
        server: Arc::from(subject.name.as_str()),
        subject,
        audit,
        limits,
        metrics,
        searched,
    });
    layer(backend, Counted { shared })
}

struct Shared {
    subject: Subject,
    /// The server's name, as every line of it shares it.
    server: Arc<str>,
    audit: Option<Arc<Audit>>,
    limits: Arc<Limits>,
    metrics: ServerMetrics,
    /// Tool search is on inside: a call of its call tool is the call of the tool it names.
    searched: bool,
}

struct Counted {
    shared: Arc<Shared>,
}

impl Opens for Counted {
    fn open(
        &self,
        inner: &dyn Backend,
        client: Arc<dyn Client>,
        env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError> {
        let view = Arc::new(CountedClient {
            session: Arc::from(client.name()),
            inner: client,
            shared: self.shared.clone(),
            calls: Mutex::default(),
            open_calls: AtomicUsize::new(0),
            client_info: Mutex::default(),
        });
        let link = inner.open(view.clone(), env)?;
        Ok(Box::new(CountedLink {
            inner: link,
            client: Arc::downgrade(&view),
        }))
    }
}

/// A call on its way, until it ends.
struct Open {
    started: Instant,
    entry: Entry,
    /// Set when a layer inside refused it.
    denied: Option<String>,
    /// Its slots in the limits (given back when it ends).
    _ticket: Option<Ticket>,
}

/// The session as the server sees it: answers end the calls they answer.
struct CountedClient {
    inner: Arc<dyn Client>,
    /// The session's name, as every line of it shares it.
    session: Arc<str>,
    shared: Arc<Shared>,
    /// Calls awaiting their answer, by raw id.
    calls: Mutex<HashMap<String, Open>>,
    open_calls: AtomicUsize,
    /// The client's name and version, from its `initialize`.
    client_info: Mutex<Option<Arc<ClientInfo>>>,
}

impl CountedClient {
    /// Counts the call against the limits and keeps it until it ends; the limit that refused
    /// it, if one did (the call is then ended, limited).
    fn begin(
        &self,
        id: &str,
        method: &'static str,
        line: &[u8],
        caller: Option<Arc<Caller>>,
    ) -> Result<(), Refusal> {
        // One borrowing pass: the name, and the arguments' text (read again only with the
        // log: for its hash, and for the line where the operator shows them).
        let (name, arguments) = read_call(line, method, self.shared.searched);
        let arguments = arguments.filter(|a| a != "null");
        let member = self
            .shared
            .subject
            .split(&name)
            .map(|(member, _)| member.to_string());
        let limits = self.shared.limits.current();
        let admitted = match limits.is_empty() {
            true => Ok(None),
            false => limits.admit(&self.shared.subject.name, &name, caller.as_deref()),
        };
        let entry = Entry {
            caller,
            client: self.client_info.lock().clone(),
            session: self.session.clone(),
            server: self.shared.server.clone(),
            member,
            method,
            name,
            bytes_in: line.len(),
            ..Entry::default()
        };
        let entry = match &self.shared.audit {
            Some(audit) => Entry {
                arguments_sha256: arguments.as_deref().and_then(audit::canonical_sha256_of),
                arguments: arguments
                    .filter(|_| audit.with_arguments())
                    .and_then(|a| serde_json::from_str::<Value>(&a).ok())
                    .map(|a| audit.redacted(&a)),
                ..entry
            },
            None => entry,
        };
        let started = Instant::now();
        let ticket = match admitted {
            Ok(ticket) => ticket,
            Err(refusal) => {
                let outcome = Outcome::Limited {
                    limit: refusal.limit.clone(),
                };
                let answer = limited_answer(id, &refusal);
                if let Some(audit) = &self.shared.audit {
                    let entry = Entry {
                        duration: started.elapsed(),
                        bytes_out: answer.len(),
                        ..entry
                    };
                    audit.record(&entry, &outcome);
                }
                self.shared.metrics.limited(&refusal.limit);
                self.shared.metrics.call_ended(false, started.elapsed());
                self.inner.send_unbounded(answer);
                return Err(refusal);
            }
        };
        let open = Open {
            started,
            entry,
            denied: None,
            _ticket: ticket,
        };
        if self.calls.lock().insert(id.to_string(), open).is_none() {
            self.open_calls.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// The call `id` ended: its line.
    fn end_call(&self, id: &str, outcome: impl FnOnce(&Open) -> Outcome, bytes_out: usize) {
        let Some(open) = self.calls.lock().remove(id) else {
            return;
        };
        self.open_calls.fetch_sub(1, Ordering::AcqRel);
        let live = self.shared.metrics.live_on();
        if self.shared.audit.is_none() && !live {
            return;
        }
        let outcome = outcome(&open);
        let duration = open.started.elapsed();
        if live {
            self.shared
                .metrics
                .call_ended(matches!(outcome, Outcome::Ok), duration);
        }
        let Some(audit) = &self.shared.audit else {
            return;
        };
        let entry = Entry {
            duration,
            bytes_out,
            ..open.entry
        };
        audit.record(&entry, &outcome);
    }

    /// The message on its way to the client: if it answers a call, the call's line.
    fn seen(&self, message: &str) {
        if self.open_calls.load(Ordering::Acquire) == 0 {
            return;
        }
        let Some(reply) = Reply::parse(message.as_bytes()) else {
            return;
        };
        self.end_call(
            reply.raw_id,
            |open| match &open.denied {
                Some(rule) => Outcome::Denied { rule: rule.clone() },
                None => answer_outcome(&reply),
            },
            message.len(),
        );
    }

    /// Every call still open ends with the session.
    fn end_all(&self, outcome: Outcome) {
        let ids: Vec<String> = self.calls.lock().keys().cloned().collect();
        for id in ids {
            self.end_call(&id, |_| outcome.clone(), 0);
        }
    }
}

/// The name a call is counted and recorded under, and its arguments' text. Read in one
/// borrowing pass; what that pass does not take (a repeated key, a name that is no string) and
/// a call of the search's call tool (`searched`) are read as the layers inside read them (of
/// repeated keys the last), the call tool's call under the name of the tool it calls.
fn read_call<'a>(line: &'a [u8], method: &str, searched: bool) -> (String, Option<Cow<'a, str>>) {
    let called = Called::<&RawValue>::parse(line);
    let read = called.name.is_some() || called.uri.is_some();
    if read && !(searched && called.name.as_deref() == Some(search::CALL)) {
        let arguments = called.arguments.map(|a| Cow::Borrowed(a.get()));
        return (called.target(method).into_owned(), arguments);
    }
    let params = Envelope::parse(line)
        .and_then(|e| e.params())
        .unwrap_or_default();
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    if method == "resources/read" {
        return (text(&params, "uri"), None);
    }
    // The call tool's call: the call the search makes of it, if it makes one.
    let through = searched && method == "tools/call" && params["name"] == search::CALL;
    let params = match through {
        true => search::called(params.clone()).unwrap_or(params),
        false => params,
    };
    let arguments = params.get("arguments").map(|a| Cow::Owned(a.to_string()));
    (text(&params, "name"), arguments)
}

/// The answer to a call a limit refused: when to retry, in the message and in `data`.
fn limited_answer(id: &str, refusal: &Refusal) -> String {
    let seconds = refusal.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let message = format!(
        "too many calls: limit {:?} ({}) is reached for this caller; retry in {seconds} s",
        refusal.limit, refusal.what
    );
    let error = serde_json::json!({
        "code": jsonrpc::LIMITED,
        "message": message,
        "data": {"limit": refusal.limit, "retryAfter": seconds},
    });
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#)
}

/// How an answer ended its call: its error, or its result's `isError` (the result is parsed
/// only when it says `isError` somewhere).
fn answer_outcome(reply: &Reply) -> Outcome {
    if let Some(error) = reply.error {
        #[derive(serde::Deserialize)]
        struct Error<'a> {
            #[serde(borrow, default)]
            code: Option<&'a serde_json::value::RawValue>,
            #[serde(borrow, default)]
            message: Option<&'a serde_json::value::RawValue>,
        }
        let e = serde_json::from_str::<Error>(error.get()).ok();
        let code = e
            .as_ref()
            .and_then(|e| e.code)
            .and_then(|c| c.get().parse().ok());
        let message = e
            .and_then(|e| e.message)
            .and_then(|m| serde_json::from_str::<String>(m.get()).ok());
        return Outcome::of_error(code.unwrap_or(0), message.unwrap_or_default());
    }
    #[derive(serde::Deserialize)]
    struct Flag {
        #[serde(rename = "isError", default)]
        is_error: Option<bool>,
    }
    let flagged = reply.result.filter(|r| r.get().contains("\"isError\""));
    match flagged.and_then(|r| serde_json::from_str::<Flag>(r.get()).ok()) {
        Some(Flag {
            is_error: Some(true),
        }) => Outcome::ToolError,
        _ => Outcome::Ok,
    }
}

impl Client for CountedClient {
    fn id(&self) -> Uuid {
        self.inner.id()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn send(&self, message: String) -> bool {
        self.seen(&message);
        self.inner.send(message)
    }

    fn send_unbounded(&self, message: String) {
        self.seen(&message);
        self.inner.send_unbounded(message)
    }

    fn end(&self, cause: CloseCause) {
        self.end_all(Outcome::Unanswered {
            reason: format!("the session ended before the answer: {}", cause.as_str()),
        });
        self.inner.end(cause)
    }

    fn caller(&self) -> Option<Arc<Caller>> {
        self.inner.caller()
    }

    fn refused(&self, id: &str, rule: &str) {
        if let Some(open) = self.calls.lock().get_mut(id) {
            open.denied = Some(rule.to_string());
        }
        self.inner.refused(id, rule)
    }
}

/// The session's link: calls begin here, a cancellation ends one. It holds its client weakly
/// (the backend holds it for the session's life): the session holds the link, and the client
/// holds the session.
struct CountedLink {
    inner: Box<dyn Link>,
    client: Weak<CountedClient>,
}

impl Link for CountedLink {
    fn forward<'a>(
        &'a self,
        line: Bytes,
        kind: &'a Kind,
    ) -> BoxFuture<'a, Result<(), ForwardError>> {
        let Some(client) = self.client.upgrade() else {
            return self.inner.forward(line, kind);
        };
        let mut began = None;
        match kind {
            Kind::Request { id, method } if AUDITED.contains(&method.as_str()) => {
                let method = AUDITED
                    .into_iter()
                    .find(|m| m == method)
                    .unwrap_or_default();
                let shared = &client.shared;
                let counted = shared.audit.is_some() || shared.metrics.live_on() || {
                    let limits = shared.limits.current();
                    !limits.is_empty() && limits.covers(&shared.subject.name)
                };
                let caller = counted.then(|| client.inner.caller()).flatten();
                // A member reached through a group: the group's layer counted the call.
                if counted && caller.as_ref().is_none_or(|c| c.via.is_none()) {
                    if client.begin(id, method, &line, caller).is_err() {
                        return Box::pin(async { Ok(()) });
                    }
                    began = Some(id.clone());
                }
            }
            Kind::Request { method, .. } if method == "initialize" => {
                let params = Envelope::parse(&line).and_then(|e| e.params());
                let info = params.as_ref().map(|p| &p["clientInfo"]);
                if let Some(info) = info.filter(|i| i.is_object()) {
                    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                    *client.client_info.lock() = Some(Arc::new(ClientInfo {
                        name: text(&info["name"]),
                        version: text(&info["version"]),
                    }));
                }
            }
            Kind::Notification { method } if method == "notifications/cancelled" => {
                if let Some(id) = jsonrpc::cancelled_request_id(&line) {
                    client.end_call(&id, |_| Outcome::Cancelled, 0);
                }
            }
            _ => {}
        }
        let forwarded = self.inner.forward(line, kind);
        let Some(id) = began else {
            return forwarded;
        };
        Box::pin(async move {
            let result = forwarded.await;
            if let Err(e) = &result {
                client.end_call(
                    &id,
                    |_| Outcome::Unanswered {
                        reason: format!("not forwarded: {e}"),
                    },
                    0,
                );
            }
            result
        })
    }

    fn release(&self, grace: Duration) {
        if let Some(client) = self.client.upgrade() {
            client.end_all(Outcome::Cancelled);
        }
        self.inner.release(grace)
    }

    fn serving(&self) -> Option<&str> {
        self.inner.serving()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Backend as BackendKind, gateway::backend::Status};
    use std::sync::OnceLock;

    /// A backend that holds each session's client until the session is released.
    struct Holding;

    struct HeldLink(Mutex<Option<Arc<dyn Client>>>);

    impl Link for HeldLink {
        fn forward<'a>(&'a self, _: Bytes, _: &'a Kind) -> BoxFuture<'a, Result<(), ForwardError>> {
            Box::pin(async { Ok(()) })
        }
        fn release(&self, _: Duration) {
            self.0.lock().take();
        }
    }

    impl Backend for Holding {
        fn kind(&self) -> BackendKind {
            BackendKind::PerSession
        }
        fn start(self: Arc<Self>) -> anyhow::Result<()> {
            Ok(())
        }
        fn open(
            &self,
            client: Arc<dyn Client>,
            _: &[(String, String)],
        ) -> Result<Box<dyn Link>, OpenError> {
            Ok(Box::new(HeldLink(Mutex::new(Some(client)))))
        }
        fn status(&self) -> Status {
            Status::default()
        }
        fn shutdown(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    /// A session: it holds its link, as the session table's sessions do.
    struct Session {
        id: Uuid,
        link: OnceLock<Box<dyn Link>>,
    }

    impl Client for Session {
        fn id(&self) -> Uuid {
            self.id
        }
        fn name(&self) -> &str {
            "s"
        }
        fn send(&self, _: String) -> bool {
            true
        }
        fn send_unbounded(&self, _: String) {}
        fn end(&self, _: CloseCause) {}
    }

    /// What a call is counted and recorded as: the name (or URI) and arguments the layers
    /// inside act on, whatever the message repeats, and through the search's call tool the
    /// tool it calls.
    #[test]
    fn a_call_is_read_as_the_layers_inside_read_it() {
        let read = |line: &str, method, searched| {
            let (name, arguments) = read_call(line.as_bytes(), method, searched);
            (name, arguments.map(Cow::into_owned))
        };
        let call = |params: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#)
        };
        let some = |s: &str| Some(s.to_string());
        let echo = call(r#"{"name":"echo","arguments":{"p":1}}"#);
        assert_eq!(
            read(&echo, "tools/call", true),
            ("echo".into(), some(r#"{"p":1}"#))
        );
        // A repeated name: the last one, as the rules and the server read it.
        let repeated = call(r#"{"name":"a","name":"echo","arguments":{"p":1}}"#);
        assert_eq!(
            read(&repeated, "tools/call", false),
            ("echo".into(), some(r#"{"p":1}"#))
        );
        let escaped = call(r#"{"name":"\u0065cho"}"#);
        assert_eq!(read(&escaped, "tools/call", false), ("echo".into(), None));
        // The call tool: the tool it calls when tool search is on, itself otherwise.
        let through =
            call(r#"{"name":"call_tool","arguments":{"name":"echo","arguments":{"p":2}}}"#);
        assert_eq!(
            read(&through, "tools/call", true),
            ("echo".into(), some(r#"{"p":2}"#))
        );
        assert_eq!(
            read(&through, "tools/call", false),
            (
                "call_tool".into(),
                some(r#"{"name":"echo","arguments":{"p":2}}"#)
            )
        );
        let repeated = call(r#"{"name":"call_tool","arguments":{"name":"x","name":"echo"}}"#);
        assert_eq!(read(&repeated, "tools/call", true), ("echo".into(), None));
        let nameless = call(r#"{"name":"call_tool","arguments":{"arguments":{}}}"#);
        assert_eq!(
            read(&nameless, "tools/call", true),
            ("call_tool".into(), some(r#"{"arguments":{}}"#))
        );
        let uri = r#"{"id":1,"method":"resources/read","params":{"uri":"a://b","uri":"a://c"}}"#;
        assert_eq!(read(uri, "resources/read", false), ("a://c".into(), None));
        assert_eq!(
            read(r#"{"id":1}"#, "tools/call", true),
            (String::new(), None)
        );
    }

    #[test]
    fn outcomes_are_told_from_answers() {
        let o = |m: &str| answer_outcome(&Reply::parse(m.as_bytes()).unwrap());
        assert_eq!(
            o(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#),
            Outcome::Ok
        );
        assert_eq!(
            o(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#),
            Outcome::ToolError
        );
        // Only the result's own flag counts, not one in its content.
        assert_eq!(
            o(
                r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"isError":true}],"isError":false}}"#
            ),
            Outcome::Ok
        );
        assert_eq!(
            o(
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: \u0078"}}"#
            ),
            Outcome::Error {
                code: -32602,
                message: "Unknown tool: x".into()
            }
        );
        assert_eq!(
            o(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"timed out"}}"#),
            Outcome::TimedOut
        );
        assert_eq!(
            o(r#"{"jsonrpc":"2.0","id":1,"error":{"code":"odd"}}"#),
            Outcome::Error {
                code: 0,
                message: String::new()
            }
        );
    }

    /// The layer's link must not keep its session alive (the session holds the link): every
    /// session leaked before it held its client weakly.
    #[test]
    fn a_released_session_is_freed() {
        let metrics = ServerMetrics::new(Arc::default(), "s");
        let limits = Arc::new(Limits::new(&[]));
        let layered = counted(
            Arc::new(Holding),
            Subject::of("s", None),
            None,
            limits,
            metrics,
            false,
        );
        let session = Arc::new(Session {
            id: Uuid::new_v4(),
            link: OnceLock::new(),
        });
        let link = layered.open(session.clone(), &[]).unwrap();
        let _ = session.link.set(link);
        session.link.get().unwrap().release(Duration::ZERO);
        let gone = Arc::downgrade(&session);
        drop(session);
        assert!(gone.upgrade().is_none(), "the session outlived its release");
    }
}
