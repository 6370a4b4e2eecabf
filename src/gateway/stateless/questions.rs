//! What a translated call does with the questions its handshake-era server asks
//! (`sampling/createMessage`, `elicitation/create`, `roots/list`): each is answered from what
//! the request already carries (`inputResponses` under the question's key), refused when the
//! request's client did not declare the capability it needs (the server hears an error; if
//! nothing is left to ask, the client gets `-32021` naming what is missing), or asked of the
//! client with `input_required`.
//!
//! Owns: sorting one batch of questions. Must not touch: HTTP, parking.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{
    budget::Replies,
    call::{Call, Heard},
    steps::{key_of, not_reading, question, relay_ok, send},
};
use crate::mcp::{
    asks, jsonrpc,
    jsonrpc::Kind,
    modern::{self, Envelope},
};

/// How long after a question the next one still belongs to the same batch.
const GATHER: Duration = Duration::from_millis(30);

/// A question put to the client: its input request key, the server's raw id for it, and the
/// question as the client gets it (`{method, params}`).
pub(super) struct Asked {
    pub key: String,
    pub id: String,
    pub question: Value,
}

/// The `inputRequests` of an `input_required` result asking `asked`.
pub(super) fn input_requests(asked: &[Asked]) -> Map<String, Value> {
    asked
        .iter()
        .map(|a| (a.key.clone(), a.question.clone()))
        .collect()
}

/// What to do after a batch of questions.
pub(super) enum Sorted {
    /// Ask the client these.
    Ask(Vec<Asked>),
    /// Nothing is left to ask and some capability was missing: the request fails with it.
    Refuse(Value),
    /// Every question was answered already: the call carries on.
    Answered,
}

/// Sorts the server's question `first` (raw id, method, whole message) and those sent with it
/// (each within [`GATHER`] of the one before; a notification ends the gathering and is
/// relayed).
pub(super) async fn sort(
    call: &mut Call,
    first: (String, String, String),
    envelope: &Envelope,
    early: &mut Map<String, Value>,
    tx: &Replies,
) -> Result<Sorted, (i64, String)> {
    let mut batch = vec![first];
    // A handshake-era server asks questions it needs together one after the other: what
    // follows within GATHER of the last one is asked together.
    loop {
        let more = match tokio::time::timeout(GATHER, call.next()).await {
            Ok(Some(Heard::Message(more))) => more,
            Ok(Some(other)) => {
                call.unread(other);
                break;
            }
            Ok(None) | Err(_) => break,
        };
        match jsonrpc::classify(more.as_bytes()) {
            Ok(Kind::Request { id, method }) if modern::is_input_method(&method) => {
                batch.push((id, method, more));
            }
            Ok(Kind::Notification { method }) => {
                if relay_ok(&method, &more, envelope) && !tx.related(more) {
                    return Err(not_reading());
                }
                break;
            }
            // Anything else is for whoever reads the call next.
            _ => {
                call.unread(Heard::Message(more));
                break;
            }
        }
    }
    let mut ask: Vec<Asked> = Vec::new();
    let mut missing = Map::new();
    for (id, method, text) in batch {
        let key = key_of(&id);
        if let Some(answer) = early.remove(&key) {
            send(
                call,
                jsonrpc::result_response(&id, &answer.to_string()).into(),
            )
            .await?;
            continue;
        }
        let q = question(&text);
        if let Some(cap) = asks::undeclared(&method, q.get("params"), &envelope.capabilities) {
            let msg = format!("the client did not declare the capability {method} needs ({cap})");
            let line =
                jsonrpc::error_response(&id, modern::MISSING_REQUIRED_CLIENT_CAPABILITY, &msg);
            send(call, line.into()).await?;
            if let Value::Object(cap) = cap {
                missing.extend(cap);
            }
            continue;
        }
        // Two questions of one batch under one name: the later one goes by its whole id.
        let key = if ask.iter().any(|a| a.key == key) {
            serde_json::from_str::<String>(&id).unwrap_or_else(|_| id.clone())
        } else {
            key
        };
        ask.push(Asked {
            key,
            id,
            question: q,
        });
    }
    Ok(if !ask.is_empty() {
        Sorted::Ask(ask)
    } else if !missing.is_empty() {
        Sorted::Refuse(Value::Object(missing))
    } else {
        Sorted::Answered
    })
}

/// The `-32021` answer to request `id` whose server needed `missing` (`ClientCapabilities`).
pub(super) fn refusal(id: &str, missing: Value) -> String {
    modern::Rejection {
        code: modern::MISSING_REQUIRED_CLIENT_CAPABILITY,
        message: format!(
            "the MCP server needs a client capability this request did not declare: {missing}"
        ),
        data: Some(json!({"requiredCapabilities": missing})),
    }
    .response(id)
}
