//! Helpers for the crate's unit tests: servers that misbehave at the HTTP level the way real
//! ones do.
//!
//! Owns: those servers. Must not touch: the code under test.

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// Reads one request head (GETs without a body).
async fn read_head(s: &mut TcpStream) -> bool {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A server that answers `json` on a kept-alive connection, then reads the next request on it
/// and hangs up without an answer (an idle-timeout close crossing the client's reuse), then
/// answers `json` on a new connection. Its base URL, and the task (which panics if the client
/// does not do exactly that).
pub async fn hangs_up_on_reuse(json: &str) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
        json.len()
    );
    let server = tokio::spawn(async move {
        let (mut first, _) = listener.accept().await.unwrap();
        assert!(read_head(&mut first).await);
        first.write_all(answer.as_bytes()).await.unwrap();
        assert!(
            read_head(&mut first).await,
            "the second request reuses the connection"
        );
        drop(first);
        let (mut second, _) = listener.accept().await.unwrap();
        assert!(read_head(&mut second).await);
        second.write_all(answer.as_bytes()).await.unwrap();
        second.flush().await.unwrap();
    });
    (base, server)
}
