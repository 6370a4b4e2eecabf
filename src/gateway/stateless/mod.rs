//! The 2026-07-28 revision on every backend: each request is served on its own, with no session.
//!
//! - In-process: the built-in server speaks the revision natively; every request gets its own
//!   instance (they share the upstream cache), which answers it and ends.
//! - Child processes: a *lane* of shared children (multiplexed like the `shared` backend, so ids
//!   never collide) is started on the first stateless request and asked `server/discover`.
//!   - A child that answers speaks the revision: requests are passed through.
//!   - A handshake-era child is translated: the lane initializes it once (the first request's
//!     capabilities, every later one answered from the cache), `server/discover` is answered
//!     from its `initialize` result, the revision's `_meta` keys are taken off requests and
//!     results are tagged `complete`. A request the child answers with a question (sampling,
//!     elicitation, roots) is *parked*: the client gets `input_required` with the question and
//!     an opaque `requestState`; its retry carrying that state and the answers hands the answers
//!     to the child and carries on the same call. Parked calls give up after a while (the child
//!     is told the request was cancelled); anything that cannot be translated is answered with
//!     an error at once, never a hang.
//!
//! Owns: serving one stateless request. Must not touch: HTTP.

mod budget;
mod call;
mod listen;
mod questions;
mod steps;
mod tools;

use parking_lot::Mutex;
use std::{collections::HashMap, sync::Arc, time::Duration};

use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use self::budget::{Reply, ReplyStream};
use self::{
    budget::Replies,
    call::{Call, Heard},
    listen::Listen,
    questions::{Asked, Sorted},
    steps::{
        CALL_ID, Era, final_answer, handshake, keep, list_tools, not_reading, probe, relay_ok,
        send, with_id,
    },
    tools::Tools,
};
use super::{
    backend::{Backend, CloseCause},
    metrics::ServerMetrics,
};
use crate::mcp::{
    asks,
    jsonrpc::{self, Kind},
    modern::{self, Envelope},
};

/// Most parked calls per server; more questions are answered with an error.
const MAX_PARKED: usize = 10_000;

/// Methods of the handshake era with no place in the stateless revision.
const NOT_IN_REVISION: [&str; 5] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// One stateless request.
pub struct Request {
    /// The client's raw id.
    pub id: String,
    pub method: String,
    /// The whole request as sent.
    pub body: Value,
    pub envelope: Envelope,
    /// What this replica's `requestState`s start with (its cluster tag and a dot; empty
    /// without a cluster), so a retry that reaches another replica is sent here.
    pub state_prefix: String,
    /// The request's `Mcp-Param-*` headers: lowercase name and value, each time one was sent.
    pub param_headers: Vec<(String, String)>,
    /// Who sent it (the rules judge by it).
    pub caller: Option<Arc<crate::gateway::caller::Caller>>,
}

/// How a request ended, for the metrics.
enum Outcome {
    Answered,
    Asked,
    /// Refused for a capability its client did not declare.
    Refused,
}

type MakeBackend = Box<dyn Fn() -> anyhow::Result<Arc<dyn Backend>> + Send + Sync>;

enum Lane {
    /// The built-in server, through the sessions' own backend.
    Native(Arc<dyn Backend>),
    /// Children of the lane's own, started on first use.
    Children {
        make: MakeBackend,
        started: OnceCell<(Arc<dyn Backend>, Era)>,
    },
    /// Served only with sessions, for this reason.
    Refused(String),
}

/// A call waiting for the client's answers.
struct Parked {
    call: Call,
    method: String,
    /// The questions the client was asked (again if a retry lacks an answer).
    asked: Vec<Asked>,
}

/// The stateless side of one server.
pub struct Stateless {
    lane: Lane,
    settings: Settings,
    parked: Arc<Mutex<HashMap<String, Parked>>>,
    /// What the lane's child declares of its tools' headers.
    tools: Tools,
    /// Ends the lane's own member.
    stop: CancellationToken,
}

/// What every lane is told.
pub struct Settings {
    /// How long a released call's own server gets to stop.
    pub grace: Duration,
    /// How long a parked call waits for the client's retry.
    pub input_wait: Duration,
    /// Bytes that may wait for a reader (a parked call, a client not reading its stream).
    pub buffer_bytes: usize,
    pub metrics: ServerMetrics,
}

impl Stateless {
    /// Served by the built-in server natively.
    pub fn native(backend: Arc<dyn Backend>, settings: Settings) -> Self {
        Self::with(Lane::Native(backend), settings)
    }

    /// Served by children `make` starts on first use.
    pub fn children(make: MakeBackend, settings: Settings) -> Self {
        Self::with(
            Lane::Children {
                make,
                started: OnceCell::new(),
            },
            settings,
        )
    }

    /// Not served statelessly (the reason goes to clients that try).
    pub fn refused(reason: String, settings: Settings) -> Self {
        Self::with(Lane::Refused(reason), settings)
    }

    fn with(lane: Lane, settings: Settings) -> Self {
        Stateless {
            lane,
            settings,
            parked: Arc::default(),
            tools: Tools::default(),
            stop: CancellationToken::new(),
        }
    }

    /// Serves `req`: zero or more related notifications, then exactly one final response.
    /// Dropping the receiver abandons the request (the server is told it was cancelled).
    pub fn serve(self: &Arc<Self>, req: Request) -> ReplyStream {
        let (tx, rx) = budget::replies(self.settings.buffer_bytes);
        let me = self.clone();
        tokio::spawn(async move {
            let client_id = req.id.clone();
            let done = tokio::select! {
                r = me.run(req, &tx) => r,
                _ = tx.closed() => return,
            };
            me.settings.metrics.stateless(match &done {
                Ok(Outcome::Answered) => "answered",
                Ok(Outcome::Asked) => "input_required",
                Ok(Outcome::Refused) | Err(_) => "failed",
            });
            if let Err((code, message)) = done {
                tx.answer(
                    jsonrpc::error_response(&client_id, code, &message),
                    Some(code),
                );
            }
        });
        rx
    }

    async fn run(&self, req: Request, tx: &Replies) -> Result<Outcome, (i64, String)> {
        let params = req.body.get("params").cloned().unwrap_or_else(|| json!({}));
        if req.method == "tools/call" {
            self.check_param_headers(&req, &params).await?;
        }
        let early = asks::input_responses(&params).map_err(|m| (jsonrpc::INVALID_PARAMS, m))?;
        if let Some((state, _)) = modern::retry_of(&params)
            && let Some(parked) = self.unpark(&state, &req.method)
        {
            return self.resume(parked, early, &req, tx).await;
        }
        if NOT_IN_REVISION.contains(&req.method.as_str()) {
            return Err((
                jsonrpc::METHOD_NOT_FOUND,
                format!("{} is not part of protocol revision 2026-07-28", req.method),
            ));
        }
        let (backend, era) = match &self.lane {
            Lane::Refused(reason) => return Err((jsonrpc::METHOD_NOT_FOUND, reason.clone())),
            Lane::Native(b) => (b.clone(), Era::Stateless),
            Lane::Children { .. } => self.started().await?,
        };
        let mut call = Call::open(
            &backend,
            self.settings.grace,
            self.settings.buffer_bytes,
            req.caller.clone(),
        )
        .map_err(|e| {
            (
                jsonrpc::INTERNAL_ERROR,
                format!("cannot reach the MCP server: {e}"),
            )
        })?;
        let listen = Listen {
            id: &req.id,
            body: &req.body,
        };
        if era == Era::Stateless {
            if req.method == "subscriptions/listen" {
                listen::passthrough(call, listen, tx, &self.stop).await?;
                return Ok(Outcome::Answered);
            }
            // Passed through; only the id is ours.
            let line = with_id(&req.body, CALL_ID);
            send(&call, line).await?;
            return self.pump(call, era, &req, early, tx).await;
        }
        if modern::retry_of(&params).is_some() {
            return Err((
                jsonrpc::INVALID_PARAMS,
                "unknown, expired or altered requestState; send the request again without it"
                    .into(),
            ));
        }
        let init = handshake(&mut call, &req.envelope, true).await?;
        if req.method == "server/discover" {
            let result = modern::discover_from_initialize(&init);
            let text = jsonrpc::result_response(&req.id, &result.to_string());
            tx.answer(text, None);
            return Ok(Outcome::Answered);
        }
        if req.method == "subscriptions/listen" {
            listen::translated(call, &init, listen, tx, &self.stop).await?;
            return Ok(Outcome::Answered);
        }
        let forwarded = jsonrpc::message(
            Some(CALL_ID),
            &req.method,
            Some(&modern::strip_params(&params)),
        );
        send(&call, forwarded).await?;
        self.pump(call, era, &req, early, tx).await
    }

    /// The lane's children, started (and probed) on first use.
    async fn started(&self) -> Result<(Arc<dyn Backend>, Era), (i64, String)> {
        let Lane::Children { make, started } = &self.lane else {
            return Err((jsonrpc::INTERNAL_ERROR, "no children in this lane".into()));
        };
        started
            .get_or_try_init(|| async {
                let backend = make()?;
                let era = probe(&backend, self.settings.grace).await;
                if era == Era::Handshake {
                    keep(&backend, self.settings.grace, self.stop.clone()).await;
                }
                Ok::<_, anyhow::Error>((backend, era))
            })
            .await
            .map_err(|e| {
                (
                    jsonrpc::INTERNAL_ERROR,
                    format!("cannot start the MCP server: {e:#}"),
                )
            })
            .cloned()
    }

    /// A `tools/call`'s `Mcp-Param-*` headers against its arguments, as the tool declares them
    /// (-32020 when they disagree). A child behind stdio cannot check them itself; the built-in
    /// server declares none.
    async fn check_param_headers(
        &self,
        req: &Request,
        params: &Value,
    ) -> Result<(), (i64, String)> {
        let none = json!({});
        let args = match params.get("arguments") {
            None | Some(Value::Null) => &none,
            Some(a) if a.is_object() => a,
            // Not arguments at all: the server says so.
            Some(_) => return Ok(()),
        };
        let quiet = args.as_object().is_none_or(Map::is_empty) && req.param_headers.is_empty();
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Ok(());
        };
        if quiet || !matches!(self.lane, Lane::Children { .. }) {
            return Ok(());
        }
        let (backend, era) = self.started().await?;
        let grace = self.settings.grace;
        let list = || list_tools(&backend, era, &req.envelope, grace);
        match self.tools.declared(name, list).await {
            Some(declared) => declared
                .check(args, &req.param_headers)
                .map_err(|m| (modern::HEADER_MISMATCH, m)),
            None => Ok(()),
        }
    }

    /// Relays what the server says until the answer (or a question, which parks the call).
    /// `early`: answers the client sent before it was asked (`inputResponses`), by key.
    async fn pump(
        &self,
        mut call: Call,
        era: Era,
        req: &Request,
        mut early: Map<String, Value>,
        tx: &Replies,
    ) -> Result<Outcome, (i64, String)> {
        loop {
            let text = match call.next().await {
                Some(Heard::Message(t)) => t,
                Some(Heard::Ended(CloseCause::SlowClient)) => return Err(not_reading()),
                Some(Heard::Ended(cause)) => {
                    return Err((
                        jsonrpc::INTERNAL_ERROR,
                        format!(
                            "the MCP server stopped before answering ({})",
                            cause.as_str()
                        ),
                    ));
                }
                None => {
                    return Err((
                        jsonrpc::INTERNAL_ERROR,
                        "the MCP server stopped before answering".into(),
                    ));
                }
            };
            match jsonrpc::classify(text.as_bytes()) {
                Ok(Kind::Response { id }) if id == CALL_ID => {
                    let params = &req.body["params"];
                    let (text, code) = final_answer(&text, &req.id, (&req.method, params), era);
                    tx.answer(text, code);
                    return Ok(Outcome::Answered);
                }
                Ok(Kind::Notification { method }) => {
                    if !relay_ok(&method, &text, &req.envelope) {
                        continue;
                    }
                    if !tx.related(text) {
                        return Err(not_reading());
                    }
                }
                Ok(Kind::Request { id, method })
                    if era == Era::Handshake && modern::is_input_method(&method) =>
                {
                    let first = (id, method, text);
                    match questions::sort(&mut call, first, &req.envelope, &mut early, tx).await? {
                        Sorted::Ask(asked) => return self.park(call, req, asked, tx),
                        Sorted::Refuse(missing) => {
                            // Dropping the call cancels the request on the server.
                            let code = modern::MISSING_REQUIRED_CLIENT_CAPABILITY;
                            tx.answer(questions::refusal(&req.id, missing), Some(code));
                            return Ok(Outcome::Refused);
                        }
                        Sorted::Answered => {}
                    }
                }
                Ok(Kind::Request { id, method }) => {
                    let msg =
                        format!("{method} cannot reach a client of protocol revision 2026-07-28");
                    let line = jsonrpc::error_response(&id, jsonrpc::METHOD_NOT_FOUND, &msg);
                    send(&call, line.into()).await?;
                }
                _ => {}
            }
        }
    }

    fn park(
        &self,
        call: Call,
        req: &Request,
        asked: Vec<Asked>,
        tx: &Replies,
    ) -> Result<Outcome, (i64, String)> {
        let state = format!("{}{}", req.state_prefix, Uuid::new_v4().simple());
        let asks = questions::input_requests(&asked);
        {
            let mut parked = self.parked.lock();
            if parked.len() >= MAX_PARKED {
                return Err((
                    jsonrpc::INTERNAL_ERROR,
                    "too many requests are waiting for their clients' answers".into(),
                ));
            }
            parked.insert(
                state.clone(),
                Parked {
                    call,
                    method: req.method.clone(),
                    asked,
                },
            );
        }
        let (table, key, wait) = (
            Arc::downgrade(&self.parked),
            state.clone(),
            self.settings.input_wait,
        );
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let gone = table.upgrade().and_then(|t| t.lock().remove(&key));
            if gone.is_some() {
                // Dropping the call cancels the request on the server.
                tracing::info!(
                    ?wait,
                    "a request waiting for its client's answer gave up; cancelled on the server"
                );
            }
        });
        let result = modern::input_required(asks, &state);
        let text = jsonrpc::result_response(&req.id, &result.to_string());
        tx.answer(text, None);
        Ok(Outcome::Asked)
    }

    fn unpark(&self, state: &str, method: &str) -> Option<Parked> {
        let mut parked = self.parked.lock();
        // A retry must repeat the request it continues.
        if parked.get(state)?.method != method {
            return None;
        }
        parked.remove(state)
    }

    /// The client's answers go to the child's questions and the call carries on; questions the
    /// retry left unanswered are asked again (with a new `requestState`).
    async fn resume(
        &self,
        mut parked: Parked,
        mut answers: Map<String, Value>,
        req: &Request,
        tx: &Replies,
    ) -> Result<Outcome, (i64, String)> {
        let mut again = Vec::new();
        for asked in std::mem::take(&mut parked.asked) {
            match answers.remove(&asked.key) {
                Some(result) => {
                    let line = jsonrpc::result_response(&asked.id, &result.to_string());
                    send(&parked.call, line.into()).await?;
                }
                None => again.push(asked),
            }
        }
        if !again.is_empty() {
            return self.park(parked.call, req, again, tx);
        }
        // Answers to questions not asked yet are kept for when they are.
        self.pump(parked.call, Era::Handshake, req, answers, tx)
            .await
    }

    /// For `/health`.
    pub fn status(&self) -> Value {
        let mode = match &self.lane {
            Lane::Native(_) => "native",
            Lane::Refused(_) => "refused",
            Lane::Children { started, .. } => match started.get() {
                None => "not started",
                Some((_, Era::Stateless)) => "passthrough",
                Some((_, Era::Handshake)) => "translated",
            },
        };
        let mut v = json!({"mode": mode, "waiting_for_clients": self.parked.lock().len()});
        if let Lane::Children { started: s, .. } = &self.lane
            && let Some((backend, _)) = s.get()
        {
            v["children_alive"] = backend.status().children_alive.into();
        }
        v
    }

    /// Ends parked calls and stops the lane's children.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let parked: Vec<Parked> = self.parked.lock().drain().map(|(_, p)| p).collect();
        drop(parked);
        if let Lane::Children { started, .. } = &self.lane
            && let Some((backend, _)) = started.get()
        {
            backend.shutdown().await;
        }
    }
}
