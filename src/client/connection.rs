//! A bridge driven from inside the program rather than from stdin: the gateway's remote backend
//! opens one [`Connection`] per session, sends it the session's lines, and reads the remote's
//! messages from the channel it gave. [`Credentials`] is one remote's OAuth client, shared by
//! its connections (one token for all of them).
//!
//! Owns: that handle. Must not touch: the gateway (it only uses this).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Bridge, oauth};
use crate::config::BridgeConfig;

/// A bridge whose host is not stdio: the gateway's remote backend sends a session's lines with
/// [`Connection::send`] and reads the remote's messages from the channel it gave.
pub struct Connection {
    bridge: Arc<Bridge>,
}

/// The OAuth client of one remote, shared by its connections (one token for all of them).
#[derive(Clone)]
pub struct Credentials(Arc<oauth::OAuthClient>);

impl Credentials {
    pub fn new(config: &BridgeConfig) -> anyhow::Result<Credentials> {
        let client = oauth::OAuthClient::new(config.oauth.clone(), &config.url)
            .map_err(|e| anyhow::anyhow!("oauth: {e}"))?;
        Ok(Credentials(Arc::new(client)))
    }
}

impl Connection {
    pub fn open(
        config: BridgeConfig,
        credentials: &Credentials,
        out: mpsc::UnboundedSender<String>,
    ) -> anyhow::Result<Self> {
        Ok(Connection {
            bridge: Bridge::new(
                config,
                Some(credentials.0.clone()),
                out,
                CancellationToken::new(),
            )?,
        })
    }

    /// One message from the host side (in the order given).
    pub async fn send(&self, line: Bytes) {
        self.bridge.clone().from_host(line).await;
    }

    /// Ends the remote session (a `DELETE` on Streamable HTTP) and everything it runs.
    pub async fn close(&self) {
        self.bridge.stop.cancel();
        self.bridge.end_session().await;
    }
}
