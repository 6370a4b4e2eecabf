//! The listening socket: bound with the options every connection needs, and closed on a
//! replica's way out so that no connection a client (a load balancer) has opened is reset
//! under a request it has already sent.
//!
//! Closing a listener resets the connections queued on it and any handshake in progress, and a
//! graceful stop cancels an accepted connection whose first bytes it has not read yet — each
//! would meet a request already on the wire. So, in order: new handshakes are ignored (a socket
//! filter drops bare SYNs) while handshakes under way complete and the accept queue empties;
//! then the listener stops listening (a client's SYN, or its retry of one, is refused: a failure
//! every balancer retries elsewhere); the replica serves what it accepted (`Connection: close`
//! while draining) and, last, the server's graceful stop ends idle connections and waits for
//! the rest.
//!
//! Owns: the listening socket (its options and its close). Must not touch: connections already
//! accepted, the order of the stop (`Stopping` in the gateway's `mod.rs`).

use std::{net::SocketAddr, time::Duration};

use tokio::{
    net::{TcpListener, TcpSocket},
    task::JoinHandle,
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

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

/// How long the accept queue must stay empty before the listener stops listening: handshakes
/// begun before the filter complete well within it.
const SETTLE: Duration = Duration::from_millis(100);

/// The listener and the server task that accepts on it.
pub struct Listening {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
    server: JoinHandle<()>,
    graceful: CancellationToken,
}

impl Listening {
    /// Runs `serve` on `listener`; `serve` stops gracefully (ends idle connections, waits for
    /// the others, closes the listener) when the future it is given completes.
    pub fn start<F>(
        listener: TcpListener,
        serve: impl FnOnce(TcpListener, WaitForCancellationFutureOwned) -> F,
    ) -> Listening
    where
        F: Future<Output = ()> + Send + 'static,
    {
        #[cfg(target_os = "linux")]
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let graceful = CancellationToken::new();
        let server = tokio::spawn(serve(listener, graceful.clone().cancelled_owned()));
        Listening {
            #[cfg(target_os = "linux")]
            fd,
            server,
            graceful,
        }
    }

    /// Ignores new handshakes, waits (at most `limit`) until what is queued has been accepted,
    /// then stops listening: new connections are refused, those accepted carry on.
    pub async fn stop_accepting(&self, limit: Duration) {
        if self.ignore_new_handshakes() {
            let _ = tokio::time::timeout(limit, self.queue_emptied()).await;
            self.stop_listening();
        }
    }

    /// The server's graceful stop: idle connections end, the others are waited for (at most
    /// `within`). False when some were still open.
    pub async fn close(self, within: Duration) -> bool {
        self.graceful.cancel();
        tokio::time::timeout(within, self.server).await.is_ok()
    }

    /// Takes the socket out of the listening state (Linux: `shutdown`, which the server's
    /// accept loop meets as an error it waits out until its stop): a SYN now finds no listener
    /// and is refused at once.
    fn stop_listening(&self) {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: shutdown on the listener's descriptor (open: the server owning it runs
            // until `close`).
            if unsafe { libc::shutdown(self.fd, libc::SHUT_RD) } != 0 {
                let e = std::io::Error::last_os_error();
                tracing::warn!(error = %e, "cannot stop listening before the server's stop");
            }
        }
    }

    /// Waits until the accept queue has been seen empty twice, [`SETTLE`] apart.
    async fn queue_emptied(&self) {
        let mut empty_once = false;
        loop {
            match self.queued() {
                Some(0) if empty_once => return,
                Some(0) => empty_once = true,
                Some(_) => empty_once = false,
                None => {
                    // The queue cannot be read: give what is queued the time to be taken.
                    tokio::time::sleep(SETTLE * 2).await;
                    return;
                }
            }
            tokio::time::sleep(if empty_once {
                SETTLE
            } else {
                Duration::from_millis(5)
            })
            .await;
        }
    }

    /// A socket filter that drops bare SYNs (SYN without ACK): new handshakes are ignored, a
    /// handshake's last ACK and anything else still pass. True when attached (Linux).
    fn ignore_new_handshakes(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            // The filter sees a TCP segment from its header: byte 13 holds the flags.
            const SYN: u32 = 0x02;
            const ACK: u32 = 0x10;
            let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
                code: code as u16,
                jt,
                jf,
                k,
            };
            let mut program = [
                op(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0, 0, 13),
                op(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 0, 0, SYN | ACK),
                op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, SYN),
                op(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
                op(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
            ];
            let fprog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_mut_ptr(),
            };
            // SAFETY: setsockopt on the listener's descriptor (open: the accept loop owning it
            // runs until `close`) with a valid program that outlives the call (the kernel
            // copies it).
            let rc = unsafe {
                libc::setsockopt(
                    self.fd,
                    libc::SOL_SOCKET,
                    libc::SO_ATTACH_FILTER,
                    (&fprog as *const libc::sock_fprog).cast(),
                    std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                tracing::warn!(error = %e, "cannot hold new connections off the listener");
                return false;
            }
            true
        }
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Connections waiting in the accept queue (Linux: `tcpi_unacked` of a listening socket).
    fn queued(&self) -> Option<u32> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: an all-zero tcp_info is valid; getsockopt writes at most `len` bytes
            // into it, on the listener's descriptor (open, see above).
            let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            let rc = unsafe {
                libc::getsockopt(
                    self.fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_INFO,
                    (&mut info as *mut libc::tcp_info).cast(),
                    &mut len,
                )
            };
            (rc == 0).then_some(info.tcpi_unacked)
        }
        #[cfg(not(target_os = "linux"))]
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    /// Connections queued before the listener stops are served after it; one attempted
    /// meanwhile is not let in, and one attempted afterwards is refused at once.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn queued_connections_are_served_and_new_ones_kept_out() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        // Accepts only when told, echoes five bytes per connection, stops when asked — and,
        // like warp, waits out accept errors.
        let listening = Listening::start(listener, |listener, stop| async move {
            let _ = wait.await;
            tokio::pin!(stop);
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = &mut stop => return,
                };
                let Ok((mut s, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 5];
                    s.read_exact(&mut buf).await.unwrap();
                    s.write_all(&buf).await.unwrap();
                });
            }
        });
        let mut queued = vec![];
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"hello").await.unwrap();
            queued.push(s);
        }
        assert_eq!(listening.queued(), Some(3));
        assert!(listening.ignore_new_handshakes());
        let meanwhile = tokio::spawn(tokio::time::timeout(
            Duration::from_millis(300),
            TcpStream::connect(addr),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = go.send(());
        listening.stop_accepting(Duration::from_secs(2)).await;
        assert_eq!(listening.queued(), Some(0));
        let after = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr))
            .await
            .expect("refused at once, not left waiting");
        assert_eq!(
            after.unwrap_err().kind(),
            std::io::ErrorKind::ConnectionRefused
        );
        for mut s in queued {
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"hello");
        }
        // The SYN sent meanwhile was dropped: never accepted.
        match meanwhile.await.unwrap() {
            Err(_) | Ok(Err(_)) => {}
            Ok(Ok(_)) => panic!("a connection got in after the filter"),
        }
        assert!(listening.close(Duration::from_secs(2)).await);
    }
}
