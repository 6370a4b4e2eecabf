//! Outbound HTTP requests sent once more when the connection failed under them: the Aareguru
//! API's GETs and the authorization servers' requests (discovery, keys, introspection, the
//! console's code exchange).
//!
//! Owns: when a request is repeated. Must not touch: what the answers mean.

/// Sends `request`, and once more on a fresh connection when it failed before any answer for a
/// reason other than a timeout or a refused connection. A server that closes idle keep-alive
/// connections (Node's default: after 5 s) can close the one a request was just written to;
/// hyper then fails the request ("connection closed before message completed"), and without
/// this a good token would be refused until the next key fetch, or a tool call fail. Not after
/// a timeout (the server may be working on it still) nor a refused connection (dialling again
/// at once finds the port shut as well). Only for requests safe to repeat; `what` names them in
/// the debug log.
pub async fn send(
    request: reqwest::RequestBuilder,
    what: &str,
) -> reqwest::Result<reqwest::Response> {
    let again = request.try_clone();
    match (request.send().await, again) {
        (Err(e), Some(again)) if !e.is_timeout() && !e.is_connect() => {
            tracing::debug!(error = %e, "{what} failed before any answer; trying once more");
            again.send().await
        }
        (answer, _) => answer,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use tokio::{io::AsyncReadExt, net::TcpListener};

    #[tokio::test]
    async fn a_request_that_timed_out_is_not_sent_again() {
        // A server that reads requests and never answers, counting them.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let e = super::send(http.get(&url), "a test").await.unwrap_err();
        assert!(e.is_timeout(), "{e}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_request_on_a_connection_closed_under_it_is_sent_once_more() {
        let (base, server) = crate::test_support::hangs_up_on_reuse("{}").await;
        let http = reqwest::Client::new();
        let first = super::send(http.get(&base), "a test").await.unwrap();
        assert_eq!(first.text().await.unwrap(), "{}");
        let second = super::send(http.get(&base), "a test").await.unwrap();
        assert_eq!(second.text().await.unwrap(), "{}");
        server.await.unwrap();
    }
}
