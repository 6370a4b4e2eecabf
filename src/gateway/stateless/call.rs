//! One stateless request's connection to a server: a session the backend serves like any other
//! (its own member of a shared child, or its own in-process server), that nobody else can name
//! and that ends with the request.
//!
//! Owns: the link and what the server says on it. Must not touch: HTTP, parking.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    gateway::backend::{Backend, Client, CloseCause, ForwardError, Link, OpenError},
    mcp::jsonrpc::{self, Kind},
};

/// What the server said to the call.
pub(super) enum Heard {
    Message(String),
    /// The backend ended the call (its server died, or it could not keep up).
    Ended(CloseCause),
}

/// The call as the backend sees it: a client whose messages go into a channel.
struct Virtual {
    id: Uuid,
    name: String,
    tx: mpsc::UnboundedSender<Heard>,
}

impl Client for Virtual {
    fn id(&self) -> Uuid {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, message: String) -> bool {
        // Bounded by the call's life: it reads until its answer, then ends.
        let _ = self.tx.send(Heard::Message(message));
        true
    }

    fn send_unbounded(&self, message: String) {
        let _ = self.tx.send(Heard::Message(message));
    }

    fn end(&self, cause: CloseCause) {
        let _ = self.tx.send(Heard::Ended(cause));
    }
}

/// An open call; dropping it leaves the server (the backend cancels what is still in flight).
pub(super) struct Call {
    link: Box<dyn Link>,
    rx: mpsc::UnboundedReceiver<Heard>,
    grace: Duration,
}

impl Call {
    pub fn open(backend: &Arc<dyn Backend>, grace: Duration) -> Result<Call, OpenError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = Uuid::new_v4();
        let client = Arc::new(Virtual {
            id,
            name: format!("stateless-{}", &id.simple().to_string()[..8]),
            tx,
        });
        let link = backend.open(client, &[])?;
        Ok(Call { link, rx, grace })
    }

    pub async fn send(&self, line: Bytes) -> Result<(), ForwardError> {
        let kind = jsonrpc::classify(&line).map_err(|_| ForwardError::Closed)?;
        self.link.forward(line, &kind).await
    }

    /// The next thing the server said; `None` once the backend dropped the call.
    pub async fn next(&mut self) -> Option<Heard> {
        self.rx.recv().await
    }

    /// What the server already said, without waiting.
    pub fn try_next(&mut self) -> Option<Heard> {
        self.rx.try_recv().ok()
    }

    /// The answer to request `id`, skipping anything else; `None` if the call ended first.
    pub async fn answer_to(&mut self, id: &str) -> Option<(String, Kind)> {
        while let Some(heard) = self.next().await {
            let Heard::Message(text) = heard else {
                return None;
            };
            if let Ok(kind @ Kind::Response { .. }) = jsonrpc::classify(text.as_bytes())
                && matches!(&kind, Kind::Response { id: r } if r == id)
            {
                return Some((text, kind));
            }
        }
        None
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.link.release(self.grace);
    }
}
