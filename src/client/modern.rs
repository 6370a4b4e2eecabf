//! Protocol revision 2026-07-28 through the bridge: when the host speaks it (a `server/discover`
//! probe, or a request whose `_meta` carries the revision), each request is POSTed on its own,
//! with no session and the revision's headers (`MCP-Protocol-Version`, `Mcp-Method`,
//! `Mcp-Name`), and the answer — JSON, or an SSE stream of related notifications ending with the
//! response — goes back to the host as it came, errors included (a host whose probe is refused
//! falls back to `initialize`, which takes the usual path). A host's `notifications/cancelled`
//! for such a request closes its HTTP request, which is how the revision cancels.
//!
//! Owns: the bridge's stateless requests. Must not touch: sessions (the rest of the bridge).

use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Bridge, Mode, error_chain};
use crate::mcp::{jsonrpc, modern, params};

/// The revision a host request speaks, if it is a stateless one.
pub(super) fn revision_of(body: &Value) -> Option<String> {
    let v = body["params"]["_meta"][modern::PROTOCOL_VERSION_KEY].as_str()?;
    modern::is_modern(v).then(|| v.to_string())
}

impl Bridge {
    /// Sends one stateless request and hands the host its answer.
    pub(super) async fn send_stateless(self: Arc<Self>, body: Value, id: String, version: String) {
        let stop = CancellationToken::new();
        if body["method"] == "tools/list" {
            self.listing.lock().insert(id.clone());
        }
        self.stateless.lock().insert(id.clone(), stop.clone());
        let sent = tokio::select! {
            r = self.post_stateless(&body, &id, &version) => r,
            _ = stop.cancelled() => Ok(()),
        };
        self.stateless.lock().remove(&id);
        self.listing.lock().remove(&id);
        if stop.is_cancelled() {
            // The host cancelled: it expects no answer.
            self.pending.lock().remove(&id);
            return;
        }
        if let Err(message) = sent {
            self.fail(&id, &message);
        }
    }

    async fn post_stateless(
        self: &Arc<Self>,
        body: &Value,
        id: &str,
        version: &str,
    ) -> Result<(), String> {
        if self.mode() == Mode::Sse {
            self.pending.lock().remove(id);
            let _ = self.out.send(jsonrpc::error_response(
                id,
                jsonrpc::METHOD_NOT_FOUND,
                "the remote is reached over HTTP+SSE, which has no 2026-07-28; initialize instead",
            ));
            return Ok(());
        }
        let method = body["method"].as_str().unwrap_or("");
        let mut attempt = 0;
        let resp = loop {
            let sent = self.oauth.token().await;
            let resp = self
                .stateless_request(body, method, version, sent.as_deref())
                .await?;
            match super::streamable::auth_failure(&resp, sent) {
                Some(super::Failure::Auth {
                    status,
                    challenge,
                    sent,
                }) if attempt < super::oauth::MAX_ATTEMPTS => {
                    attempt += 1;
                    self.oauth
                        .authorize(status, challenge.as_deref(), sent.as_deref())
                        .await
                        .map_err(|e| {
                            format!("authorization with the remote MCP server failed: {e}")
                        })?;
                }
                _ => break resp,
            }
        };
        self.deliver_stateless(resp, id, version).await
    }

    async fn stateless_request(
        &self,
        body: &Value,
        method: &str,
        version: &str,
        token: Option<&str>,
    ) -> Result<reqwest::Response, String> {
        let mut req = self
            .http
            .post(&self.config.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", version)
            .header("mcp-method", method);
        if let Some(name) = modern::name_param(method, &body["params"]) {
            req = req.header("mcp-name", modern::encode_header_value(name));
            if method == "tools/call"
                && let Some(declared) = self.tool_headers.lock().get(name)
            {
                for (header, value) in declared.headers_for(&body["params"]["arguments"]) {
                    req = req.header(header, value);
                }
            }
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.body(body.to_string()).send().await.map_err(|e| {
            format!(
                "the remote MCP server could not be reached ({})",
                error_chain(&e)
            )
        })
    }

    async fn deliver_stateless(
        self: &Arc<Self>,
        resp: reqwest::Response,
        id: &str,
        version: &str,
    ) -> Result<(), String> {
        let status = resp.status();
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if status.is_success() && is_sse {
            let mut last = None;
            let done = self
                .pump_sse(resp, Some(id), &mut last, &CancellationToken::new())
                .await;
            return if done {
                Ok(())
            } else {
                Err("the remote MCP server's answer ended before the response".into())
            };
        }
        let text = resp.text().await.unwrap_or_default();
        // The remote's JSON-RPC answer (a result, or the revision's error with its data) as is.
        if let Ok(v) = serde_json::from_str::<Value>(&text)
            && (v.get("result").is_some() || v.get("error").is_some())
        {
            let mut v = v;
            v["id"] = serde_json::from_str(id).unwrap_or(Value::Null);
            self.to_host(v.to_string());
            return Ok(());
        }
        // A remote that does not speak the revision: an error the host falls back on.
        self.pending.lock().remove(id);
        let message = format!(
            "the remote MCP server does not serve protocol revision {version} (HTTP {}); initialize instead",
            status.as_u16()
        );
        let _ = self.out.send(jsonrpc::error_response(
            id,
            jsonrpc::METHOD_NOT_FOUND,
            &message,
        ));
        Ok(())
    }

    /// Takes note of the `Mcp-Param-*` headers the tools in a `tools/list` answer declare (a tool
    /// whose declarations are invalid declares none: hosts drop it). Pages add to what is known.
    pub(super) fn learn_tools(&self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let Some(tools) = v["result"]["tools"].as_array() else {
            return;
        };
        let mut known = self.tool_headers.lock();
        for tool in tools {
            if let Some(name) = tool["name"].as_str() {
                let declared = params::declared(&tool["inputSchema"]).unwrap_or_default();
                known.insert(name.to_string(), declared);
            }
        }
    }

    /// A host's cancellation of a stateless request: its HTTP request is closed. False when it
    /// names no stateless request.
    pub(super) fn cancel_stateless(&self, line: &[u8]) -> bool {
        let Some(id) = jsonrpc::cancelled_request_id(line) else {
            return false;
        };
        match self.stateless.lock().get(&id) {
            Some(stop) => {
                stop.cancel();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_encoded_only_when_needed() {
        assert_eq!(modern::encode_header_value("get_forecast"), "get_forecast");
        assert_eq!(
            modern::encode_header_value("aareguru://cities"),
            "aareguru://cities"
        );
        let odd = modern::encode_header_value("Bärn");
        assert!(odd.starts_with("=?base64?"), "{odd}");
        assert_eq!(modern::decode_header_value(&odd).as_deref(), Some("Bärn"));
        assert!(modern::encode_header_value(" x").starts_with("=?base64?"));
    }

    #[test]
    fn only_requests_carrying_the_revision_are_stateless() {
        let meta = |v: &str| {
            serde_json::json!({"params": {"_meta": {modern::PROTOCOL_VERSION_KEY: v,
                                                     modern::CLIENT_CAPABILITIES_KEY: {}}}})
        };
        assert_eq!(
            revision_of(&meta("2026-07-28")).as_deref(),
            Some("2026-07-28")
        );
        assert_eq!(revision_of(&meta("2025-11-25")), None);
        assert_eq!(revision_of(&serde_json::json!({"params": {}})), None);
    }
}
