//! The HTTP gateway (`--sse`): remote MCP clients over Streamable HTTP (`/mcp`) and HTTP+SSE
//! (`/sse`), each session served by a backend — a stdio child of its own, a shared child, or the
//! built-in server in process. This file only wires the rooms together; a message travels
//!
//! ```text
//! http (router, guard, transports) → session (the table) → backend (link) → process / mux
//! ```
//!
//! and back through [`backend::Client`]. Doors open one way: the HTTP front knows sessions,
//! sessions know the [`backend::Backend`] trait, backends know neither.
//!
//! Owns: startup, periodic upkeep, shutdown order. Must not touch: request handling.

pub mod audit;
pub mod backend;
pub mod caller;
pub mod cluster;
pub mod federation;
pub mod http;
mod listening;

pub use listening::bind;
pub mod metrics;
pub mod oauth;
pub mod policy;
pub mod servers;
pub mod session;
pub mod stateless;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::{
    cluster::{Cluster, Release},
    http::Http,
    listening::Listening,
    metrics::Metrics,
    servers::Registry,
    session::CloseCause,
};
use crate::{
    config::{Backend as BackendKind, GatewayConfig},
    signals::Stop,
};

/// Serves until asked to stop, then drains (see [`Stopping`]) and returns.
pub async fn run(config: GatewayConfig, listener: TcpListener, stop: Stop) -> anyhow::Result<()> {
    raise_fd_limit();
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let registry = Registry::start(config.clone(), metrics.clone(), None)?;
    let local = listener.local_addr()?;
    let cluster = match &config.cluster {
        Some(c) => {
            // Without --advertise-url, peers reach this replica where it listens.
            let advertise = c
                .advertise_url
                .clone()
                .unwrap_or_else(|| format!("http://{local}"));
            let cluster =
                Cluster::new(c, &advertise, config.session_idle_timeout, metrics.clone())?;
            cluster.start();
            let hook = cluster.clone();
            registry.on_close(Arc::new(move |session, cause| {
                hook.closed(&session.id_str, release_of(cause));
            }));
            tracing::info!(replica = %cluster.replica(), advertise = %advertise, "joining the cluster");
            Some(cluster)
        }
        None => None,
    };
    let http = Arc::new(Http::new(
        config.clone(),
        registry.clone(),
        metrics,
        cluster.clone(),
        local,
    ));
    let default = &config.server;
    tracing::info!(
        address = %local,
        sse = %if config.serve_sse { format!("http://{local}/sse") } else { "off".into() },
        mcp = %if config.serve_mcp { format!("http://{local}/mcp") } else { "off".into() },
        backend = default.backend.as_str(),
        children = if default.backend == BackendKind::Shared { default.children } else { 0 },
        child = %if default.backend == BackendKind::InProcess { "(in-process)" } else { default.child.program.as_str() },
        builtin_child = default.builtin,
        servers = ?registry.names(),
        default_server = ?config.default_server,
        auth = http.auth_enabled(),
        "gateway listening"
    );

    tokio::spawn(housekeeping(
        config.clone(),
        registry.clone(),
        http.clone(),
        stop.drain.clone(),
    ));
    tokio::spawn(servers::reload::watch(registry.clone(), stop.drain.clone()));
    if config.console.is_some() {
        http.keep_live(stop.drain.clone());
    }

    let routes = http::routes(http.clone());
    let listening = Listening::start(listener, |listener, stop| {
        warp::serve(routes).incoming(listener).graceful(stop).run()
    });

    stop.drain.cancelled().await;
    let stopping = Stopping {
        config: &config,
        http: &http,
        registry: &registry,
        cluster: cluster.as_deref(),
        stop: &stop,
    };
    stopping.drain(listening).await;
    tracing::info!("gateway stopped");
    Ok(())
}

/// The way out, in order, so that no request that reached this replica is answered with a reset
/// or a 5xx: readiness 503 and `Connection: close` on every answer while still serving for the
/// drain delay (load balancers and clients move away; keep-alive connections are closed by the
/// client's side after a complete answer); then no new connections (new handshakes ignored
/// while the queued connections are taken, then the listener closes; every connection accepted
/// is served to the end of its answer, see [`listening`]), listen streams end (their clients open them elsewhere), what is in flight finishes (up to the shutdown
/// grace); then the cluster is left (roaming sessions stay in the directory for the others) and
/// children stop.
struct Stopping<'a> {
    config: &'a GatewayConfig,
    http: &'a Arc<Http>,
    registry: &'a Arc<Registry>,
    cluster: Option<&'a Cluster>,
    stop: &'a Stop,
}

impl Stopping<'_> {
    async fn drain(&self, listening: Listening) {
        let drain = self.http.drain();
        drain.begin();
        let delay = if self.stop.now.is_cancelled() {
            Duration::ZERO
        } else {
            self.config.drain_delay
        };
        tracing::info!(
            ?delay,
            "draining: /health answers 503, every answer closes its connection"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.stop.now.cancelled() => {}
        }
        tracing::info!(
            in_flight = drain.in_flight(),
            "no longer accepting connections; ending listen streams, finishing what is in flight"
        );
        // No connection a client has opened is cut (see `listening`): the ones accepted go on
        // to the end of their answer.
        if !self.stop.now.is_cancelled() {
            listening.stop_accepting(Duration::from_secs(1)).await;
        }
        self.http.begin_shutdown();
        drain.end_streams();
        let grace = self.config.shutdown_grace;
        let settled = async {
            let started = Instant::now();
            drain.settled(grace).await;
            // A connection accepted last may not have been read yet: a moment for it to be.
            tokio::time::sleep(Duration::from_millis(100)).await;
            drain.settled(grace.saturating_sub(started.elapsed())).await
        };
        let left = tokio::select! {
            left = settled => left,
            _ = self.stop.now.cancelled() => drain.in_flight(),
        };
        if left > 0 {
            tracing::warn!(left, "requests still in flight after the shutdown grace");
        }
        if let Some(cluster) = self.cluster {
            cluster.leave().await;
        }
        // Children get `grace` after stdin closes and again after SIGTERM; SIGKILL ends the rest.
        if tokio::time::timeout(
            grace * 2 + Duration::from_secs(3),
            self.registry.close_all(grace),
        )
        .await
        .is_err()
        {
            tracing::warn!("some children did not stop in time");
        }
        // Every call has ended: what the audit log holds is written before the exit.
        if let Some(audit) = &self.registry.audit {
            audit.close().await;
        }
        // Every stream has ended: idle connections close, the last answers are sent.
        if !listening.close(Duration::from_secs(3)).await {
            tracing::warn!("HTTP connections still open after shutdown; leaving them");
        }
    }
}

/// What the directory should do when a session held here closes.
fn release_of(cause: CloseCause) -> Release {
    match cause {
        CloseCause::ClientGone
        | CloseCause::ChildExited
        | CloseCause::ChildStartTimeout
        | CloseCause::Ended => Release::Ended,
        CloseCause::IdleTimeout | CloseCause::SlowClient | CloseCause::Shutdown => {
            Release::LocalCopy
        }
        CloseCause::Superseded => Release::NotOurs,
    }
}

/// How often idle rate-limit state is dropped.
const FORGET_INTERVAL: Duration = Duration::from_secs(60);

/// Periodic work: reap idle sessions and forget rate-limit state of departed clients.
async fn housekeeping(
    config: Arc<GatewayConfig>,
    registry: Arc<Registry>,
    http: Arc<Http>,
    shutdown: CancellationToken,
) {
    let every =
        (config.session_idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut tick = tokio::time::interval(every);
    let mut last_forget = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        registry.reap_idle();
        if last_forget.elapsed() > FORGET_INTERVAL {
            http.forget_idle_clients();
            last_forget = Instant::now();
        }
    }
}

/// Many sessions mean many pipes and sockets: lift the soft file limit to the hard one.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                tracing::debug!(limit = lim.rlim_max, "raised the open-file limit");
            }
        }
    }
}
