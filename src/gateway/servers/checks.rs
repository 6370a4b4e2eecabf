//! What is checked of a server before it serves: that its command can run here, and what
//! stands in for a server that could not be set up (it refuses every session).
//!
//! Owns: those two. Must not touch: serving.

use std::sync::Arc;

use crate::{
    config::{Backend as BackendKind, ServerConfig},
    gateway::backend,
};

/// Stands in for the backend of a server that could not be set up: refuses every session.
pub(super) struct NoBackend;

impl backend::Backend for NoBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::PerSession
    }

    fn start(self: Arc<Self>) -> anyhow::Result<()> {
        Ok(())
    }

    fn open(
        &self,
        _client: Arc<dyn backend::Client>,
        _env: &[(String, String)],
    ) -> Result<Box<dyn backend::Link>, backend::OpenError> {
        Err(backend::OpenError::Spawn(std::io::Error::other(
            "the server could not be started (see /health)",
        )))
    }

    fn status(&self) -> backend::Status {
        backend::Status::default()
    }

    fn shutdown(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Why `config`'s command cannot run here, if it cannot (not found, not executable).
pub(super) fn missing_command(config: &ServerConfig) -> Option<String> {
    if config.backend == BackendKind::InProcess || config.builtin && config.child.arg0.is_some() {
        return None;
    }
    let program = &config.child.program;
    let found = if program.contains('/') {
        let path = match &config.child.cwd {
            Some(dir) if !program.starts_with('/') => dir.join(program),
            _ => program.into(),
        };
        is_executable(&path)
    } else {
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program)))
        })
    };
    (!found).then(|| {
        format!(
            "server {:?}: command {program:?} not found (or not executable)",
            config.name
        )
    })
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
