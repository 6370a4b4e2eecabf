//! A server's layers around its backend (its tool filter, then the rules, then tool search, then
//! the calls layer: limits and the audit log), and how it serves requests of the stateless
//! revision.
//!
//! Owns: the order of the layers. Must not touch: HTTP, sessions.

use std::{sync::Arc, time::Duration};

use super::{calls, rules, search, tools};
use crate::{
    config::{Backend as BackendKind, ServerConfig},
    gateway::{
        backend::{self, Limits},
        metrics::ServerMetrics,
        stateless::{Settings as StatelessSettings, Stateless},
    },
};

/// How `config` serves stateless requests: natively in-process, else on a lane of children of
/// its own (with the server's tool filter), started on first use.
pub(super) fn stateless_lane(
    config: &Arc<ServerConfig>,
    backend: &Arc<dyn backend::Backend>,
    limits: Limits,
    metrics: &ServerMetrics,
    input_wait: Duration,
    guards: Guards,
) -> Stateless {
    let settings = StatelessSettings {
        grace: limits.shutdown_grace,
        input_wait,
        buffer_bytes: limits.input_bytes,
        metrics: metrics.clone(),
    };
    if config.group.is_some() || config.remote.is_some() {
        // A session per request on the server's own backend: a group's (its members keep
        // their own children; a per-session member starts one for each such request), or a
        // remote server's (which may speak any revision: the request's is translated as for a
        // child).
        let own = backend.clone();
        return Stateless::children(Box::new(move || Ok(own.clone())), settings);
    }
    if !config.env_from_headers.is_empty() {
        let reason = format!(
            "server {:?} takes settings from each session's headers (envFromHeaders), so it is served only with sessions: initialize first",
            config.name
        );
        return Stateless::refused(reason, settings);
    }
    if config.backend == BackendKind::InProcess {
        return Stateless::native(backend.clone(), settings);
    }
    let (config, metrics) = (config.clone(), metrics.clone());
    Stateless::children(
        Box::new(move || {
            let lane = backend::lane(config.clone(), limits, metrics.clone());
            let lane = layers(lane, &config, &metrics, &guards);
            lane.clone().start()?;
            Ok(lane)
        }),
        settings,
    )
}

/// What every server's layers share: the rules and limits in force, and the audit log.
#[derive(Clone)]
pub(super) struct Guards {
    pub book: Arc<crate::gateway::policy::book::Book>,
    pub limits: Arc<super::limits::Limits>,
    pub audit: Option<Arc<crate::gateway::audit::Audit>>,
}

/// A server's layers around its backend: its tool filter, then the rules (which so judge the
/// names clients see), then tool search (whose call tool so becomes a call the layers inside
/// judge under the tool's own name), then the calls layer (limits, and the audit log, which so
/// records what the rules and the filter refused, and the search's own calls; a call of the
/// call tool it counts and records under the name of the tool called).
pub(super) fn layers(
    backend: Arc<dyn backend::Backend>,
    config: &ServerConfig,
    metrics: &ServerMetrics,
    guards: &Guards,
) -> Arc<dyn backend::Backend> {
    let filtered = tools::filtered(backend, config.tools.clone(), metrics.clone());
    let subject = rules::Subject::of(&config.name, config.group.as_ref());
    let guarded = rules::guarded(
        filtered,
        subject.clone(),
        guards.book.clone(),
        metrics.clone(),
    );
    let searched = search::searched(
        guarded,
        config.tool_search.clone(),
        config.tool_scopes.clone(),
        metrics.clone(),
    );
    calls::counted(
        searched,
        subject,
        guards.audit.clone(),
        guards.limits.clone(),
        metrics.clone(),
        config.tool_search.is_some(),
    )
}
