//! The bridge's Streamable HTTP client: POSTs with JSON or SSE answers (an SSE answer cut short
//! is resumed with `Last-Event-ID`), the GET listen stream, and DELETE at the end.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Bridge, Failure, Mode, error_chain, events::events};
use crate::mcp::{
    jsonrpc::{self, Kind},
    version,
};

impl Bridge {
    pub(super) fn streamable_request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let req = self.streamable_request_without_token(method);
        match self.oauth.current() {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    fn streamable_request_without_token(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let (session, version) = {
            let r = self.remote.lock();
            (r.session.clone(), r.version.clone())
        };
        let mut req = self.http.request(method, &self.config.url);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = version.filter(|v| v.as_str() >= version::PROTOCOL_HEADER_FROM) {
            req = req.header("mcp-protocol-version", v);
        }
        req
    }

    pub(super) async fn post_streamable(
        self: &Arc<Self>,
        line: &[u8],
        is_request: bool,
    ) -> Result<(), Failure> {
        let has_session = self.remote.lock().session.is_some();
        let sent = self.oauth.token().await;
        let resp = self
            .streamable_request(reqwest::Method::POST)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(line.to_vec())
            .send()
            .await
            .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
        let status = resp.status().as_u16();
        if let Some(f) = auth_failure(&resp, sent) {
            return Err(f);
        }
        if status == 404 && has_session {
            return Err(Failure::SessionLost);
        }
        if !resp.status().is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(Failure::Status(status, body));
        }
        if let Some(session) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.remote.lock().session = Some(session.to_string());
        }
        if status == 202 || !is_request {
            return Ok(());
        }
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if is_sse {
            let request_id = jsonrpc::classify(line).ok().and_then(|k| match k {
                Kind::Request { id, .. } => Some(id),
                _ => None,
            });
            self.read_post_stream(resp, request_id).await
        } else {
            let body = resp
                .text()
                .await
                .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
            self.deliver_json(&body);
            Ok(())
        }
    }

    /// A JSON body: one message or an array of them.
    pub(super) fn deliver_json(&self, body: &str) {
        match serde_json::from_str::<Value>(body) {
            Ok(Value::Array(items)) => {
                for item in items {
                    self.observe(&item);
                    self.to_host(item.to_string());
                }
            }
            Ok(v) => {
                self.observe(&v);
                self.to_host(body.trim().to_string());
            }
            Err(e) => tracing::warn!(error = %e, "remote sent a body that is not JSON; dropped"),
        }
    }

    /// Learns the negotiated version from an initialize result.
    pub(super) fn observe(&self, message: &Value) {
        if let Some(v) = message["result"]["protocolVersion"].as_str()
            && message["result"]["serverInfo"].is_object()
        {
            self.remote.lock().version = Some(v.to_string());
        }
    }

    /// Reads an SSE answer to a POST until its response; resumes with Last-Event-ID if the
    /// stream ends early.
    pub(super) async fn read_post_stream(
        self: &Arc<Self>,
        resp: reqwest::Response,
        request_id: Option<String>,
    ) -> Result<(), Failure> {
        let mut resp = resp;
        let mut last_id: Option<String> = None;
        for attempt in 0..5 {
            let done = self
                .pump_sse(
                    resp,
                    request_id.as_deref(),
                    &mut last_id,
                    &CancellationToken::new(),
                )
                .await;
            if done || request_id.is_none() {
                return Ok(());
            }
            let Some(last) = last_id.clone() else {
                return Err(Failure::SessionLost);
            };
            // The server's `retry:` if it sent one, else a short growing pause.
            let wait = self
                .sse_retry
                .lock()
                .unwrap_or(Duration::from_millis(100 * (attempt + 1)));
            tokio::time::sleep(wait).await;
            resp = self
                .streamable_request(reqwest::Method::GET)
                .header("accept", "text/event-stream")
                .header("last-event-id", last)
                .send()
                .await
                .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
            if resp.status().as_u16() == 404 {
                return Err(Failure::SessionLost);
            }
            if !resp.status().is_success() {
                return Err(Failure::Status(resp.status().as_u16(), String::new()));
            }
        }
        Err(Failure::SessionLost)
    }

    /// Delivers an SSE body's messages to the host; true once the response to `until` (if any)
    /// has been seen.
    pub(super) async fn pump_sse(
        &self,
        resp: reqwest::Response,
        until: Option<&str>,
        last_id: &mut Option<String>,
        stop: &CancellationToken,
    ) -> bool {
        let mut events = events(resp.bytes_stream());
        loop {
            let event = tokio::select! {
                e = events.next() => e,
                _ = stop.cancelled() => return false,
                _ = self.stop.cancelled() => return false,
            };
            let Some(event) = event else {
                return false;
            };
            if let Some(id) = event.id {
                *last_id = Some(id);
            }
            if let Some(retry) = event.retry {
                *self.sse_retry.lock() = Some(retry);
            }
            if event.data.trim().is_empty() || event.event != "message" {
                continue;
            }
            let finished = until.is_some_and(|want| {
                matches!(jsonrpc::classify(event.data.as_bytes()), Ok(Kind::Response { ref id }) if id == want)
            });
            // Only an initialize result is worth parsing here.
            if event.data.contains("\"serverInfo\"")
                && let Ok(v) = serde_json::from_str::<Value>(&event.data)
            {
                self.observe(&v);
            }
            self.to_host(event.data);
            if finished {
                return true;
            }
        }
    }

    /// Opens the GET listen stream of a Streamable HTTP session (if the remote offers one).
    pub(super) fn start_listening(self: &Arc<Self>) {
        let stop = CancellationToken::new();
        if let Some(old) = self.remote.lock().streams.replace(stop.clone()) {
            old.cancel();
        }
        let bridge = self.clone();
        tokio::spawn(async move {
            let mut last_id: Option<String> = None;
            let mut failures = 0u32;
            while !stop.is_cancelled() && !bridge.stop.is_cancelled() {
                let mut req = bridge
                    .streamable_request(reqwest::Method::GET)
                    .header("accept", "text/event-stream");
                if let Some(id) = &last_id {
                    req = req.header("last-event-id", id);
                }
                match req.send().await {
                    Ok(resp) if resp.status().is_success() => {
                        failures = 0;
                        bridge.pump_sse(resp, None, &mut last_id, &stop).await;
                    }
                    // 405: no listen stream offered; 404: the session is gone (a request will
                    // notice and reconnect); 409: someone else is listening.
                    Ok(resp) if matches!(resp.status().as_u16(), 404 | 405 | 409) => return,
                    _ => failures += 1,
                }
                if failures > 3 {
                    return;
                }
                let wait = bridge
                    .sse_retry
                    .lock()
                    .unwrap_or(Duration::from_millis(500 * u64::from(failures.max(1))));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    /// Ends the Streamable HTTP session politely (DELETE) when the host goes away.
    pub(super) async fn end_session(&self) {
        let has = self.remote.lock().session.is_some();
        if has && self.mode() == Mode::Streamable {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                self.streamable_request(reqwest::Method::DELETE).send(),
            )
            .await;
        }
    }
}

/// A 401, or a 403 asking for more scope: the remote wants an OAuth token.
pub(super) fn auth_failure(resp: &reqwest::Response, sent: Option<String>) -> Option<Failure> {
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let wants = status == 401
        || (status == 403
            && challenge
                .as_deref()
                .is_some_and(|c| c.contains("insufficient_scope")));
    wants.then_some(Failure::Auth {
        status,
        challenge,
        sent,
    })
}
