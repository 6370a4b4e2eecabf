//! A replica on its way out (SIGTERM): readiness says so at once while every request is still
//! served, each answer closes its connection (so a keep-alive connection is closed by the
//! client's side after a complete answer, never under a request), listen streams end when the
//! drain delay is over (their clients open them again on another replica), and what is in
//! flight is counted so the stop can wait for it.
//!
//! Owns: the drain's state. Must not touch: the order of the stop (see [`crate::gateway`]).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use warp::{
    http::{HeaderValue, header::CONNECTION},
    reply::Response,
};

#[derive(Default)]
pub struct Drain {
    /// Readiness is 503 and answers carry `Connection: close`.
    draining: AtomicBool,
    /// Listen streams (a Streamable HTTP session's GET) end now.
    streams_end: CancellationToken,
    in_flight: Arc<Counter>,
}

#[derive(Default)]
struct Counter {
    n: AtomicUsize,
    idle: Notify,
}

/// One request (or a POST's answer stream) in flight, until dropped.
pub struct InFlight(Arc<Counter>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drain {
    /// From now on readiness is 503 and every answer closes its connection.
    pub fn begin(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ends every listen stream (after what it holds).
    pub fn end_streams(&self) {
        self.streams_end.cancel();
    }

    /// What an SSE answer holds: a POST's answer stream is in flight until its last answer (a
    /// stop waits for it); a listen stream is not, and gets the token that ends it.
    pub fn stream(&self, listen: bool) -> (Option<InFlight>, Option<CancellationToken>) {
        if listen {
            (None, Some(self.streams_end.clone()))
        } else {
            (Some(self.enter()), None)
        }
    }

    /// Waits for `changed`; false when `end` came first (the stream is to end).
    pub async fn waited(
        end: Option<&CancellationToken>,
        changed: impl Future<Output = ()>,
    ) -> bool {
        match end {
            Some(end) => tokio::select! {
                _ = changed => true,
                _ = end.cancelled() => false,
            },
            None => {
                changed.await;
                true
            }
        }
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn enter(&self) -> InFlight {
        self.in_flight.n.fetch_add(1, Ordering::AcqRel);
        InFlight(self.in_flight.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.n.load(Ordering::Acquire)
    }

    /// Waits until nothing is in flight, at most `limit`; what is still in flight then.
    pub async fn settled(&self, limit: Duration) -> usize {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let idle = self.in_flight.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await;
        self.in_flight()
    }

    /// Marks `response` to close its connection once sent, while draining.
    pub fn mark(&self, mut response: Response) -> Response {
        if self.is_draining() {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settles_when_the_last_request_ends_and_not_before() {
        let drain = Arc::new(Drain::default());
        let a = drain.enter();
        let b = drain.enter();
        assert_eq!(drain.settled(Duration::from_millis(20)).await, 2);
        drop(a);
        let waiter = {
            let drain = drain.clone();
            tokio::spawn(async move { drain.settled(Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(b);
        assert_eq!(waiter.await.unwrap(), 0);
    }

    #[test]
    fn answers_close_their_connection_only_while_draining() {
        let drain = Drain::default();
        let r = drain.mark(super::super::reply::reply(
            warp::http::StatusCode::OK,
            String::new(),
        ));
        assert!(r.headers().get(CONNECTION).is_none());
        drain.begin();
        let r = drain.mark(super::super::reply::reply(
            warp::http::StatusCode::OK,
            String::new(),
        ));
        assert_eq!(r.headers()[CONNECTION], "close");
    }
}
