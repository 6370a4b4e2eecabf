//! Signals every mode answers the same way: SIGINT and SIGTERM end the program cleanly (a
//! gateway drains on SIGTERM first, see [`Stop`]).
//!
//! Owns: turning signals into a cancellation. Must not touch: what a mode does to stop.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on SIGINT or SIGTERM, so the process exits 0 when its host stops it.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    token.cancel();
}

/// How a gateway is asked to stop: `drain` on the first SIGTERM or SIGINT, `now` on SIGINT (a
/// person at a terminal does not wait for a drain delay) or on a second signal of either kind.
#[derive(Clone, Default)]
pub struct Stop {
    pub drain: CancellationToken,
    pub now: CancellationToken,
}

impl Stop {
    /// A stop driven by this process's signals.
    pub fn on_signals() -> Stop {
        let stop = Stop::default();
        tokio::spawn(stop.clone().listen());
        stop
    }

    #[cfg(unix)]
    async fn listen(self) {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot listen for SIGTERM/SIGINT; stopping at once on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            self.now.cancel();
            self.drain.cancel();
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, draining"),
            _ = int.recv() => {
                tracing::info!("SIGINT received, shutting down");
                self.now.cancel();
            }
        }
        self.drain.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("second signal received, stopping without waiting further");
        self.now.cancel();
    }

    #[cfg(not(unix))]
    async fn listen(self) {
        let _ = tokio::signal::ctrl_c().await;
        self.now.cancel();
        self.drain.cancel();
    }
}
