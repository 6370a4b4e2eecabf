//! `subscriptions/listen`: a stream of the change notifications a client opted in to, open
//! until the client leaves or the gateway shuts down (then closed with its result).
//!
//! - A handshake-era server is translated: the call is a member like any session of the
//!   child (list changes reach every member; `resources/subscribe` is sent for each URI the
//!   filter names), the acknowledgement states what the server's capabilities can honour, and
//!   each notification that passes the filter is tagged with the stream's id.
//! - A server of the revision gets the request as sent; its stream is relayed, retagged with
//!   the client's id.
//!
//! Owns: one listen stream. Must not touch: HTTP, parking.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{
    budget::Replies,
    call::{Call, Heard},
    steps::{CALL_ID, not_reading, send, with_id},
};
use crate::{
    gateway::backend::CloseCause,
    mcp::{
        asks::{self, Filter},
        jsonrpc::{self, Kind},
    },
};

/// The listen request: the client's raw id and the whole request as sent.
pub(super) struct Listen<'a> {
    pub id: &'a str,
    pub body: &'a Value,
}

/// Listens on a handshake-era server whose `initialize` result is `init`; returns when the
/// stream was closed with its result.
pub(super) async fn translated(
    mut call: Call,
    init: &Value,
    req: Listen<'_>,
    tx: &Replies,
    stop: &CancellationToken,
) -> Result<(), (i64, String)> {
    let asked = Filter::asked(req.body.get("params").unwrap_or(&Value::Null));
    let granted = asked.granted(&init["capabilities"]);
    let ack = asks::acknowledged(req.id, &granted).to_string();
    if !tx.related(ack) {
        return Err(not_reading());
    }
    for (i, uri) in granted.uris.iter().enumerate() {
        let id = json!(format!("listen-{i}")).to_string();
        let line = jsonrpc::message(Some(&id), "resources/subscribe", Some(&json!({"uri": uri})));
        send(&call, line).await?;
    }
    loop {
        let Some(text) = next(&mut call, &req, tx, stop).await? else {
            return Ok(());
        };
        match jsonrpc::classify(text.as_bytes()) {
            Ok(Kind::Notification { method }) => {
                let v: Value = serde_json::from_str(&text).unwrap_or_default();
                if granted.passes(&method, v.get("params"))
                    && !tx.related(asks::tagged(&v, req.id).to_string())
                {
                    return Err(not_reading());
                }
            }
            Ok(Kind::Request { id, method }) => refuse_question(&call, &id, &method).await?,
            // The answers to the stream's own subscriptions.
            _ => {}
        }
    }
}

/// Passes the listen request to a server of the revision and relays its stream.
pub(super) async fn passthrough(
    mut call: Call,
    req: Listen<'_>,
    tx: &Replies,
    stop: &CancellationToken,
) -> Result<(), (i64, String)> {
    send(&call, with_id(req.body, CALL_ID)).await?;
    loop {
        let Some(text) = next(&mut call, &req, tx, stop).await? else {
            return Ok(());
        };
        match jsonrpc::classify(text.as_bytes()) {
            Ok(Kind::Response { id }) if id == CALL_ID => {
                let mut v: Value = serde_json::from_str(&text).unwrap_or_default();
                v["id"] = serde_json::from_str(req.id).unwrap_or(Value::Null);
                let code = v["error"]["code"].as_i64();
                if v["result"]["_meta"]
                    .get(asks::SUBSCRIPTION_ID_KEY)
                    .is_some()
                {
                    v["result"]["_meta"][asks::SUBSCRIPTION_ID_KEY] = v["id"].clone();
                }
                tx.answer(v.to_string(), code);
                return Ok(());
            }
            Ok(Kind::Notification { .. }) => {
                let v: Value = serde_json::from_str(&text).unwrap_or_default();
                let tag = v["params"]["_meta"].get(asks::SUBSCRIPTION_ID_KEY);
                let ours =
                    tag.is_some() && serde_json::from_str::<Value>(CALL_ID).ok().as_ref() == tag;
                if ours && !tx.related(asks::tagged(&v, req.id).to_string()) {
                    return Err(not_reading());
                }
            }
            Ok(Kind::Request { id, method }) => refuse_question(&call, &id, &method).await?,
            _ => {}
        }
    }
}

/// What the server says next; `None` once the gateway shuts down (the stream was then closed
/// with its result).
async fn next(
    call: &mut Call,
    req: &Listen<'_>,
    tx: &Replies,
    stop: &CancellationToken,
) -> Result<Option<String>, (i64, String)> {
    tokio::select! {
        heard = call.next() => heard_text(heard).map(Some),
        _ = stop.cancelled() => {
            close(req, tx);
            Ok(None)
        }
    }
}

/// What the server said, or why the stream ends.
fn heard_text(heard: Option<Heard>) -> Result<String, (i64, String)> {
    match heard {
        Some(Heard::Message(text)) => Ok(text),
        Some(Heard::Ended(CloseCause::SlowClient)) => Err(not_reading()),
        Some(Heard::Ended(cause)) => Err((
            jsonrpc::INTERNAL_ERROR,
            format!(
                "the MCP server stopped ({}); listen again to go on receiving notifications",
                cause.as_str()
            ),
        )),
        None => Err((
            jsonrpc::INTERNAL_ERROR,
            "the MCP server stopped; listen again to go on receiving notifications".into(),
        )),
    }
}

/// A listen stream has no client to ask: the server's question is answered with an error.
async fn refuse_question(call: &Call, id: &str, method: &str) -> Result<(), (i64, String)> {
    let msg = format!("{method} cannot be asked on a subscriptions/listen stream");
    let line = jsonrpc::error_response(id, jsonrpc::METHOD_NOT_FOUND, &msg);
    send(call, line.into()).await
}

/// The gateway is shutting down: the stream ends with its result.
fn close(req: &Listen<'_>, tx: &Replies) {
    let result = asks::closed(req.id).to_string();
    tx.answer(jsonrpc::result_response(req.id, &result), None);
}
