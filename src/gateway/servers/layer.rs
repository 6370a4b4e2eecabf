//! What every layer around a server's backend shares (the tool filter, the rules, the calls
//! layer): a backend that is the one inside in every respect but how a session is opened.
//!
//! Owns: the pass-through of a layer. Must not touch: what a layer does with a session.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::{
    config::Backend as BackendKind,
    gateway::backend::{Backend, Client, Link, OpenError, Status},
};

/// How a layer opens a session on the backend inside it (giving it its own view of the
/// client, and the client its own view of the link).
pub trait Opens: Send + Sync + 'static {
    fn open(
        &self,
        inner: &dyn Backend,
        client: Arc<dyn Client>,
        env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError>;
}

/// `inner` seen through a layer that opens its sessions with `opens`.
pub fn layer(inner: Arc<dyn Backend>, opens: impl Opens) -> Arc<dyn Backend> {
    Arc::new(Layer { inner, opens })
}

struct Layer<O> {
    inner: Arc<dyn Backend>,
    opens: O,
}

impl<O: Opens> Backend for Layer<O> {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn start(self: Arc<Self>) -> anyhow::Result<()> {
        self.inner.clone().start()
    }

    fn open(
        &self,
        client: Arc<dyn Client>,
        env: &[(String, String)],
    ) -> Result<Box<dyn Link>, OpenError> {
        self.opens.open(&*self.inner, client, env)
    }

    fn status(&self) -> Status {
        self.inner.status()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.inner.shutdown()
    }
}
