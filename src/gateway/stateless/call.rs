//! One stateless request's connection to a server: a session the backend serves like any other
//! (its own member of a shared child, or its own in-process server), that nobody else can name
//! and that ends with the request.
//!
//! Owns: the link and what the server says on it. Must not touch: HTTP, parking.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::budget::Budget;
use crate::{
    gateway::{
        backend::{Backend, Client, CloseCause, ForwardError, Link, OpenError},
        caller::Caller,
    },
    mcp::jsonrpc::{self, Kind},
};

/// What the server said to the call.
pub(super) enum Heard {
    Message(String),
    /// The backend ended the call (its server died, or it could not keep up).
    Ended(CloseCause),
}

/// The call as the backend sees it: a client whose messages go into a channel, counted: a
/// parked call is not read until its client retries.
struct Virtual {
    id: Uuid,
    name: String,
    tx: mpsc::UnboundedSender<Heard>,
    budget: Budget,
    caller: Option<Arc<Caller>>,
}

impl Client for Virtual {
    fn id(&self) -> Uuid {
        self.id
    }

    fn stateless(&self) -> bool {
        true
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, message: String) -> bool {
        // False past the limit: the backend then ends the call as a slow client.
        if !self.budget.take(message.len()) {
            return false;
        }
        let _ = self.tx.send(Heard::Message(message));
        true
    }

    fn send_unbounded(&self, message: String) {
        self.budget.force(message.len());
        let _ = self.tx.send(Heard::Message(message));
    }

    fn end(&self, cause: CloseCause) {
        let _ = self.tx.send(Heard::Ended(cause));
    }

    fn caller(&self) -> Option<Arc<Caller>> {
        self.caller.clone()
    }
}

/// An open call; dropping it leaves the server (the backend cancels what is still in flight).
pub(super) struct Call {
    link: Box<dyn Link>,
    rx: mpsc::UnboundedReceiver<Heard>,
    /// Read too early: given again by the next [`Call::next`].
    unread: Option<Heard>,
    grace: Duration,
    budget: Budget,
}

impl Call {
    /// A call whose unread messages may take up to `limit` bytes, made by `caller` (`None`:
    /// the gateway's own).
    pub fn open(
        backend: &Arc<dyn Backend>,
        grace: Duration,
        limit: usize,
        caller: Option<Arc<Caller>>,
    ) -> Result<Call, OpenError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = Uuid::new_v4();
        let budget = Budget::new(limit);
        let client = Arc::new(Virtual {
            id,
            name: format!("stateless-{}", &id.simple().to_string()[..8]),
            tx,
            budget: budget.clone(),
            caller,
        });
        let link = backend.open(client, &[])?;
        Ok(Call {
            link,
            rx,
            unread: None,
            grace,
            budget,
        })
    }

    fn read(&self, heard: Heard) -> Heard {
        if let Heard::Message(text) = &heard {
            self.budget.give(text.len());
        }
        heard
    }

    pub async fn send(&self, line: Bytes) -> Result<(), ForwardError> {
        let kind = jsonrpc::classify(&line).map_err(|_| ForwardError::Closed)?;
        self.link.forward(line, &kind).await
    }

    /// The next thing the server said; `None` once the backend dropped the call.
    pub async fn next(&mut self) -> Option<Heard> {
        if let Some(heard) = self.unread.take() {
            return Some(heard);
        }
        let heard = self.rx.recv().await?;
        Some(self.read(heard))
    }

    /// Gives `heard` (just read) back: the next [`Call::next`] returns it again.
    pub fn unread(&mut self, heard: Heard) {
        self.unread = Some(heard);
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
