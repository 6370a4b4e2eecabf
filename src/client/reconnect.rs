//! Reconnecting: when the remote goes away, fail what is in flight, then open a new session and
//! replay the host's handshake (its answers swallowed) with backoff.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use serde_json::Value;
use tokio::sync::oneshot;

use super::{Bridge, INTERNAL, Mode};
use crate::mcp::jsonrpc;

impl Bridge {
    pub(super) fn start_reconnect(self: Arc<Self>) {
        if self.stop.is_cancelled() || self.reconnecting.load(Ordering::SeqCst) {
            return;
        }
        tokio::spawn(async move {
            self.reconnect_now().await;
        });
    }

    /// Drops the session, fails what is in flight, and (if the host has initialized) replays
    /// the handshake on a new session, retrying with backoff. True once reconnected.
    pub(super) async fn reconnect_now(self: Arc<Self>) -> bool {
        if self.reconnecting.swap(true, Ordering::SeqCst) {
            // Someone else is at it; wait for them.
            while self.reconnecting.load(Ordering::SeqCst) && !self.stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return self.remote.lock().session.is_some() || self.remote.lock().endpoint.is_some();
        }
        {
            let mut r = self.remote.lock();
            r.session = None;
            r.endpoint = None;
            if let Some(s) = r.streams.take() {
                s.cancel();
            }
        }
        self.fail_pending(
            "the connection to the remote MCP server was lost; the bridge is reconnecting",
        );
        let Some(params) = self.handshake.lock().clone() else {
            self.reconnecting.store(false, Ordering::SeqCst);
            return false;
        };
        let mut delay = Duration::from_millis(250);
        let ok = loop {
            if self.stop.is_cancelled() {
                break false;
            }
            match self.replay_handshake(&params).await {
                Ok(()) => break true,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "reconnect failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.stop.cancelled() => break false,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        self.reconnecting.store(false, Ordering::SeqCst);
        if ok {
            tracing::info!("reconnected to the remote MCP server");
        }
        ok
    }

    pub(super) async fn replay_handshake(self: &Arc<Self>, params: &Value) -> Result<(), String> {
        let id = format!(
            "\"{INTERNAL}{}\"",
            self.next_internal.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        self.internal.lock().insert(id.clone(), tx);
        let line = jsonrpc::message(Some(&id), "initialize", Some(params));
        let answer = match self.post(&line, true).await {
            Ok(()) => tokio::time::timeout(Duration::from_secs(30), rx)
                .await
                .ok()
                .and_then(Result::ok),
            Err(f) => {
                self.internal.lock().remove(&id);
                return Err(f.to_string());
            }
        };
        let Some(answer) = answer else {
            self.internal.lock().remove(&id);
            return Err("no answer to initialize".into());
        };
        if answer.get("error").is_some() {
            return Err(format!("initialize refused: {}", answer["error"]));
        }
        let initialized = jsonrpc::message(None, "notifications/initialized", None);
        self.post(&initialized, false)
            .await
            .map_err(|_| "could not send initialized".to_string())?;
        if self.mode() == Mode::Streamable {
            self.start_listening();
        }
        Ok(())
    }
}
