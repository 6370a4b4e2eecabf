//! The HTTP front's state, shared by the router, the policies and the transports.
//!
//! Owns: what every handler may read (settings, sessions, policies, metrics, shutdown). Must not
//! touch: request handling.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use super::{drain::Drain, forward, guard::Guard, streams};
use crate::{
    config::GatewayConfig,
    gateway::{cluster::Cluster, metrics::Metrics, oauth::Verifier, servers::Registry},
};

/// The gateway as an OAuth resource server (`--oauth-issuer`).
pub(super) struct ResourceServer {
    pub verifier: Verifier,
    /// This server's public base URL (scheme, host, prefix); resources are under it.
    pub base: String,
}

/// State of the HTTP front.
pub struct Http {
    pub(super) config: Arc<GatewayConfig>,
    /// The served servers and their sessions.
    pub(super) registry: Arc<Registry>,
    pub(super) guard: Guard,
    pub(super) metrics: Arc<Metrics>,
    /// Set when the drain delay is over: new sessions are refused.
    shutting_down: AtomicBool,
    /// The way out: readiness, `Connection: close`, listen streams, what is in flight.
    pub(super) drain: Drain,
    /// Path part of --public-url, also accepted as a prefix on incoming paths.
    pub(super) base_path: String,
    /// Streamable HTTP sessions (`/mcp`).
    pub(super) mcp: streams::Registry,
    /// The other replicas and the directory, with `--redis`.
    pub(super) cluster: Option<Arc<Cluster>>,
    /// Forwards requests to the other replicas.
    pub(super) forwarder: forward::Forwarder,
    /// Held while a roaming session is restored, so two requests do not restore it twice.
    pub(super) restoring: tokio::sync::Mutex<()>,
    /// `--oauth-issuer`: the gateway as an OAuth resource server.
    pub(super) oauth: Option<ResourceServer>,
    /// The console's newest live sample, for its open pages (`--console`).
    /// With the servers' states of the same second.
    /// As the text of its SSE event, made once for every open page.
    pub(super) live: tokio::sync::watch::Sender<Option<Arc<str>>>,
    /// When this replica started (its uptime in `/health`).
    pub(super) started: std::time::Instant,
}

impl Http {
    pub fn new(
        config: Arc<GatewayConfig>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        cluster: Option<Arc<Cluster>>,
        local: std::net::SocketAddr,
    ) -> Self {
        let mut guard = Guard::new(&config);
        guard.use_keys(registry.keys.clone());
        if let Some(c) = &cluster {
            // Peers reach this replica by its advertise address.
            let host = c
                .advertise_url()
                .split_once("://")
                .map_or("", |(_, rest)| rest)
                .split('/')
                .next()
                .unwrap_or("");
            guard.allow_host(host);
        }
        let oauth = config.oauth.as_ref().map(|o| ResourceServer {
            verifier: Verifier::new(o),
            base: public_base(&config.public_url, local),
        });
        Http {
            oauth,
            guard,
            cluster,
            forwarder: forward::Forwarder::new(metrics.clone()),
            restoring: tokio::sync::Mutex::new(()),
            base_path: base_path(&config.public_url),
            config,
            registry,
            metrics,
            shutting_down: AtomicBool::new(false),
            drain: Drain::default(),
            mcp: streams::Registry::default(),
            live: tokio::sync::watch::Sender::new(None),
            started: std::time::Instant::now(),
        }
    }

    pub fn auth_enabled(&self) -> bool {
        self.guard.auth_enabled()
    }

    /// The replica's drain (readiness, `Connection: close`, listen streams, in flight).
    pub fn drain(&self) -> &Drain {
        &self.drain
    }

    /// From now on new sessions are refused (and /health answers 503); what is open is still
    /// answered.
    pub fn begin_shutdown(&self) {
        self.drain.begin();
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Draining or shutting down: readiness is 503.
    pub(super) fn is_draining(&self) -> bool {
        self.drain.is_draining()
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Periodic upkeep of the policies (rate-limit state of departed clients).
    pub fn forget_idle_clients(&self) {
        self.guard.forget_idle_clients();
    }
}

/// The URL clients reach this gateway at: `--public-url` when it names one, else the listening
/// address (with the public path prefix, if any).
fn public_base(public_url: &str, local: std::net::SocketAddr) -> String {
    if public_url.contains("://") {
        public_url.trim_end_matches('/').to_string()
    } else {
        format!("http://{local}{}", base_path(public_url))
    }
}

fn base_path(public_url: &str) -> String {
    let path = match public_url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => public_url,
    };
    path.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths() {
        assert_eq!(base_path(""), "");
        assert_eq!(base_path("/aare/"), "/aare");
        assert_eq!(base_path("https://example.com/aare"), "/aare");
        assert_eq!(base_path("https://example.com"), "");
    }
}
