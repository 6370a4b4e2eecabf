//! The bridge's HTTP+SSE client: the GET stream whose `endpoint` event names where to POST, and
//! the POSTs themselves.

use std::sync::Arc;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Bridge, Failure, Mode, error_chain, events::events};

impl Bridge {
    /// HTTP+SSE: connects (GET, endpoint event) if needed, then POSTs.
    pub(super) async fn post_sse(self: &Arc<Self>, line: &[u8]) -> Result<(), Failure> {
        let endpoint = self.remote.lock().endpoint.clone();
        let endpoint = match endpoint {
            Some(e) => e,
            None => self.connect_sse().await?,
        };
        let sent = self.oauth.token().await;
        let mut req = self
            .http
            .post(&endpoint)
            .header("content-type", "application/json");
        if let Some(t) = &sent {
            req = req.bearer_auth(t);
        }
        let resp = req
            .body(line.to_vec())
            .send()
            .await
            .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
        if let Some(f) = super::streamable::auth_failure(&resp, sent) {
            return Err(f);
        }
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(Failure::SessionLost),
            s => Err(Failure::Status(s, resp.text().await.unwrap_or_default())),
        }
    }

    pub(super) async fn connect_sse(self: &Arc<Self>) -> Result<String, Failure> {
        // Also for the auto fallback: the spec's procedure GETs the same URL.
        let url = self.config.url.clone();
        let sent = self.oauth.token().await;
        let mut req = self.http.get(&url).header("accept", "text/event-stream");
        if let Some(t) = &sent {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
        if let Some(f) = super::streamable::auth_failure(&resp, sent) {
            return Err(f);
        }
        if !resp.status().is_success() {
            let s = resp.status().as_u16();
            return Err(Failure::Status(s, resp.text().await.unwrap_or_default()));
        }
        let mut events = events(resp.bytes_stream());
        let mut queued = vec![];
        let endpoint = loop {
            match events.next().await {
                Some(event) if event.event == "endpoint" => break event.data,
                Some(event) => queued.push(event),
                None => {
                    return Err(Failure::Unreachable(
                        "the SSE stream ended before its endpoint event".into(),
                    ));
                }
            }
        };
        let endpoint = resolve(&url, &endpoint);
        let stop = CancellationToken::new();
        {
            let mut r = self.remote.lock();
            r.mode = Some(Mode::Sse);
            r.endpoint = Some(endpoint.clone());
            if let Some(old) = r.streams.replace(stop.clone()) {
                old.cancel();
            }
        }
        tracing::info!(%endpoint, "connected over HTTP+SSE");
        let bridge = self.clone();
        tokio::spawn(async move {
            for event in queued {
                if event.event == "message" && !event.data.is_empty() {
                    bridge.to_host(event.data);
                }
            }
            loop {
                let event = tokio::select! {
                    e = events.next() => e,
                    _ = stop.cancelled() => return,
                    _ = bridge.stop.cancelled() => return,
                };
                let Some(event) = event else { break };
                if event.event == "message" && !event.data.is_empty() {
                    bridge.to_host(event.data);
                }
            }
            // The stream is gone: so is the session.
            tracing::warn!("the remote closed the SSE stream");
            bridge.remote.lock().endpoint = None;
            bridge.start_reconnect();
        });
        Ok(endpoint)
    }
}

/// `endpoint` (absolute, or relative to the SSE URL) as an absolute URL.
fn resolve(sse_url: &str, endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        return endpoint.to_string();
    }
    let origin_end = sse_url
        .find("://")
        .and_then(|i| sse_url[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(sse_url.len());
    if endpoint.starts_with('/') {
        format!("{}{endpoint}", &sse_url[..origin_end])
    } else {
        let base = &sse_url[..sse_url
            .rfind('/')
            .filter(|i| *i >= origin_end)
            .unwrap_or(sse_url.len())];
        format!("{base}/{endpoint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn endpoints_resolve_against_the_sse_url() {
        assert_eq!(
            resolve("http://h:1/sse", "/messages?session_id=x"),
            "http://h:1/messages?session_id=x"
        );
        assert_eq!(
            resolve("https://h/aare/sse", "messages?s=1"),
            "https://h/aare/messages?s=1"
        );
        assert_eq!(resolve("http://h/sse", "http://o/m"), "http://o/m");
    }
}
