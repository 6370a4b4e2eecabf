//! The steps of a stateless call that are the same for every call: probing a lane's child,
//! the handshake on a client's behalf, and rewriting messages between the two generations.
//!
//! Owns: single messages of a call. Must not touch: HTTP, parking.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::call::{Call, Heard};
use crate::{
    gateway::backend::Backend,
    mcp::{
        asks,
        jsonrpc::{self, Kind},
        modern::{self, Envelope},
        version,
    },
};

/// What the lane's own calls (probe, keeper, tool listing), read at once, may hold unread.
const HOUSEKEEPING_BYTES: usize = 64 << 20;
/// How long the lane's child gets to answer the `server/discover` probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Our ids on a call (each call is its own member of the child, so they never collide).
const INIT_ID: &str = "0";
pub(super) const CALL_ID: &str = "1";

/// How a lane's child speaks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Era {
    /// The revision itself: pass requests through.
    Stateless,
    /// `initialize` and sessions: translate.
    Handshake,
}

/// The gateway's own envelope, for what it asks a lane child itself: the newest revision, no
/// capabilities.
fn own_envelope() -> Envelope {
    Envelope {
        version: version::MODERN[version::MODERN.len() - 1].to_string(),
        capabilities: json!({}),
        client_info: Some(
            json!({"name": "aareguru-mcp-gateway", "version": env!("CARGO_PKG_VERSION")}),
        ),
        progress: false,
        log_level: None,
    }
}

/// Asks a fresh lane child `server/discover`: an answer naming a stateless revision means it
/// speaks it; an error, silence or anything else means the handshake era.
pub(super) async fn probe(backend: &Arc<dyn Backend>, grace: Duration) -> Era {
    let Ok(mut call) = Call::open(backend, grace, HOUSEKEEPING_BYTES, None) else {
        return Era::Handshake;
    };
    let params = json!({"_meta": own_envelope().meta()});
    let line = jsonrpc::message(Some(CALL_ID), "server/discover", Some(&params));
    if call.send(line).await.is_err() {
        return Era::Handshake;
    }
    let answer = tokio::time::timeout(PROBE_TIMEOUT, call.answer_to(CALL_ID)).await;
    let speaks = answer.ok().flatten().is_some_and(|(text, _)| {
        serde_json::from_str::<Value>(&text).is_ok_and(|v| {
            v["result"]["supportedVersions"]
                .as_array()
                .is_some_and(|vs| vs.iter().any(|x| x.as_str().is_some_and(modern::is_modern)))
        })
    });
    let era = if speaks {
        Era::Stateless
    } else {
        Era::Handshake
    };
    tracing::info!(
        passthrough = speaks,
        "stateless lane: the MCP server {}",
        if speaks {
            "speaks protocol revision 2026-07-28; requests are passed through"
        } else {
            "speaks an earlier revision; 2026-07-28 requests are translated"
        }
    );
    era
}

/// The lane's own member of a handshake-era child: it makes the child's one handshake and is
/// alone with the child for [`SETTLE`] after it, so what servers ask right after their handshake
/// (server-everything asks for roots 350 ms later) lands on no client's call. It stays until
/// `stop`, declaring no capabilities (so the child's questions with no call in flight are
/// refused, and a server that caches what it asked, like roots, asks again later, during a
/// call) and answering anything else that reaches it with an error.
pub(super) async fn keep(backend: &Arc<dyn Backend>, grace: Duration, stop: CancellationToken) {
    let Ok(mut call) = Call::open(backend, grace, HOUSEKEEPING_BYTES, None) else {
        return;
    };
    if let Err((_, e)) = handshake(&mut call, &own_envelope(), false).await {
        tracing::warn!(error = %e, "stateless lane: the MCP server's handshake failed; each request retries it");
        return;
    }
    tokio::spawn(async move {
        loop {
            let heard = tokio::select! {
                h = call.next() => h,
                _ = stop.cancelled() => return,
            };
            let Some(Heard::Message(text)) = heard else {
                return;
            };
            let line = match jsonrpc::classify(text.as_bytes()) {
                Ok(Kind::Request { id, .. }) => jsonrpc::error_response(
                    &id,
                    jsonrpc::METHOD_NOT_FOUND,
                    "no client request is waiting on this; ask while answering one",
                ),
                _ => continue,
            };
            let _ = call.send(line.into()).await;
        }
    });
    tokio::time::sleep(SETTLE).await;
}

/// How long a handshake-era lane child is left alone after its handshake.
const SETTLE: Duration = Duration::from_millis(600);

/// The call's `initialize`, on the client's behalf (answered from the lane's cache after the
/// first); the child's result. With `asks`, the call declares every capability the gateway
/// can ask a client for (so a shared child's questions come to this call, whose request's own
/// capabilities are checked when they arrive); without, none.
pub(super) async fn handshake(
    call: &mut Call,
    envelope: &Envelope,
    asks: bool,
) -> Result<Value, (i64, String)> {
    let capabilities = if asks {
        json!({"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {}})
    } else {
        json!({})
    };
    let params = json!({
        "protocolVersion": version::NEWEST_HANDSHAKE,
        "capabilities": capabilities,
        "clientInfo": envelope.client_info.clone().unwrap_or_else(|| json!({"name": "stateless client", "version": "0"})),
    });
    send(
        call,
        jsonrpc::message(Some(INIT_ID), "initialize", Some(&params)),
    )
    .await?;
    let Some((text, _)) = call.answer_to(INIT_ID).await else {
        return Err((
            jsonrpc::INTERNAL_ERROR,
            "the MCP server stopped during its handshake".into(),
        ));
    };
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    if let Some(e) = v.get("error") {
        return Err((
            jsonrpc::INTERNAL_ERROR,
            format!("the MCP server refused the handshake: {}", e["message"]),
        ));
    }
    send(
        call,
        jsonrpc::message(None, "notifications/initialized", None),
    )
    .await?;
    Ok(v["result"].clone())
}

pub(super) async fn send(call: &Call, line: Bytes) -> Result<(), (i64, String)> {
    call.send(line)
        .await
        .map_err(|e| (jsonrpc::INTERNAL_ERROR, e.to_string()))
}

/// `body` with its id replaced.
pub(super) fn with_id(body: &Value, id: &str) -> Bytes {
    let mut body = body.clone();
    body["id"] = serde_json::from_str(id).unwrap_or(Value::Null);
    Bytes::from(body.to_string())
}

/// Whether a notification the server sent during a request reaches the request's client:
/// progress always, a log message only at the level the request opted in to
/// (`_meta`'s log level; none asked, none sent), nothing else.
pub(super) fn relay_ok(method: &str, text: &str, envelope: &Envelope) -> bool {
    match method {
        "notifications/progress" => true,
        "notifications/message" => {
            let v: Value = serde_json::from_str(text).unwrap_or_default();
            asks::log_passes(envelope.log_level.as_deref(), v.get("params"))
        }
        _ => false,
    }
}

/// A request whose client did not read what it was sent (its answer stream, or what the
/// server said while the request waited for the client's retry) ends as a slow client would.
pub(super) fn not_reading() -> (i64, String) {
    (
        jsonrpc::INTERNAL_ERROR,
        "the request was ended: more was waiting for the client than --session-buffer-bytes allows (a stream not read, or a server that kept talking while the request waited for the client's retry)".into(),
    )
}

/// The input request key for a question with raw id `id`: a string id up to its first `#`
/// (so a server can name its question and still keep ids unique: `"user_name#7"` is asked as
/// `user_name`), else the id as written.
pub(super) fn key_of(id: &str) -> String {
    match serde_json::from_str::<String>(id) {
        Ok(s) => asks::question_name(&s).map_or_else(|| s.clone(), str::to_string),
        Err(_) => id.to_string(),
    }
}

/// A child's request as an input request: its method and params.
pub(super) fn question(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_default();
    let mut q = json!({"method": v["method"]});
    if let Some(p) = v.get("params") {
        q["params"] = p.clone();
    }
    q
}

/// The child's answer, for the client: its id, and for a translated child the revision's tags
/// and error codes (a resource not found, `-32002` before, is `-32602` naming the URI in its
/// data).
pub(super) fn final_answer(
    text: &str,
    client_id: &str,
    req: (&str, &Value),
    era: Era,
) -> (String, Option<i64>) {
    let (method, params) = req;
    let mut v: Value = serde_json::from_str(text).unwrap_or_default();
    v["id"] = serde_json::from_str(client_id).unwrap_or(Value::Null);
    if era == Era::Handshake
        && method == "resources/read"
        && matches!(
            v["error"]["code"].as_i64(),
            Some(RESOURCE_NOT_FOUND | jsonrpc::INVALID_PARAMS)
        )
    {
        v["error"]["code"] = jsonrpc::INVALID_PARAMS.into();
        if !v["error"]["data"].is_object() {
            v["error"]["data"] = json!({});
        }
        if v["error"]["data"].get("uri").is_none() {
            v["error"]["data"]["uri"] = params["uri"].clone();
        }
    }
    if method == "server/discover"
        && let Some(result) = v.get_mut("result").and_then(Value::as_object_mut)
    {
        // This endpoint serves every revision the gateway speaks, whatever the server's own.
        result.insert(
            "supportedVersions".into(),
            json!(modern::supported_versions()),
        );
    }
    let code = v["error"]["code"].as_i64();
    if era == Era::Handshake
        && let Some(result) = v.get_mut("result").and_then(Value::as_object_mut)
    {
        modern::complete(method, result);
    }
    (v.to_string(), code)
}

/// The handshake era's "resource not found" error code.
const RESOURCE_NOT_FOUND: i64 = -32002;

/// Most pages of a child's tool listing read.
const MAX_PAGES: usize = 100;

/// Every tool the lane's child lists (all pages), asked on a call of the gateway's own with the
/// client's envelope (for a translated child, after the handshake on its behalf).
pub(super) async fn list_tools(
    backend: &Arc<dyn Backend>,
    era: Era,
    envelope: &Envelope,
    grace: Duration,
) -> Result<Vec<Value>, String> {
    let mut call =
        Call::open(backend, grace, HOUSEKEEPING_BYTES, None).map_err(|e| e.to_string())?;
    if era == Era::Handshake {
        handshake(&mut call, envelope, false)
            .await
            .map_err(|(_, m)| m)?;
    }
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut params = json!({});
        if era == Era::Stateless {
            params["_meta"] = envelope.meta();
        }
        if let Some(c) = cursor.take() {
            params["cursor"] = c.into();
        }
        let line = jsonrpc::message(Some(CALL_ID), "tools/list", Some(&params));
        send(&call, line).await.map_err(|(_, m)| m)?;
        let answer = tokio::time::timeout(PROBE_TIMEOUT, call.answer_to(CALL_ID)).await;
        let Some((text, _)) = answer.ok().flatten() else {
            return Err("no answer to tools/list".into());
        };
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(e) = v.get("error") {
            return Err(format!("tools/list failed: {}", e["message"]));
        }
        if let Some(page) = v["result"]["tools"].as_array() {
            tools.extend(page.iter().cloned());
        }
        match v["result"]["nextCursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
            _ => return Ok(tools),
        }
    }
    Ok(tools)
}
