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

pub mod backend;
pub mod cluster;
pub mod federation;
pub mod http;
pub mod metrics;
pub mod oauth;
pub mod servers;
pub mod session;
pub mod stateless;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use self::{
    cluster::{Cluster, Release},
    http::Http,
    metrics::Metrics,
    servers::Registry,
    session::CloseCause,
};
use crate::config::{Backend as BackendKind, GatewayConfig};

/// Binds the listening socket with TCP_NODELAY (accepted sockets inherit it; without it a
/// kept-alive loopback request waits ~40 ms on delayed ACKs).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Serves until `shutdown` is cancelled, then ends every stream, terminates every child within
/// the grace period, and returns.
pub async fn run(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
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
        shutdown.clone(),
    ));
    tokio::spawn(servers::reload::watch(registry.clone(), shutdown.clone()));

    let server_stop = CancellationToken::new();
    let server = warp::serve(http::routes(http.clone()))
        .incoming(listener)
        .graceful(server_stop.clone().cancelled_owned())
        .run();
    let server = tokio::spawn(server);

    shutdown.cancelled().await;
    tracing::info!("shutting down: refusing new sessions, ending streams, stopping children");
    // Keep answering while children stop, so load balancers see /health turn 503 and drain.
    http.begin_shutdown();
    if let Some(cluster) = &cluster {
        cluster.leave().await;
    }
    let grace = config.shutdown_grace;
    // Children get `grace` after stdin closes and again after SIGTERM; SIGKILL ends the rest.
    if tokio::time::timeout(
        grace * 2 + Duration::from_secs(3),
        registry.close_all(grace),
    )
    .await
    .is_err()
    {
        tracing::warn!("some children did not stop in time");
    }
    // Streams have ended; stop listening and let idle keep-alive connections close.
    server_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after shutdown; leaving them");
    }
    tracing::info!("gateway stopped");
    Ok(())
}

/// What the directory should do when a session held here closes.
fn release_of(cause: CloseCause) -> Release {
    match cause {
        CloseCause::ClientGone | CloseCause::ChildExited | CloseCause::ChildStartTimeout => {
            Release::Ended
        }
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
