//! The listening socket on a replica's way out, closed so that no connection a client (a load
//! balancer) has opened is reset under a request it has already sent.
//!
//! Closing a listener resets the connections queued on it (and any handshake in progress), and
//! warp's graceful stop cancels an accepted connection whose first bytes it has not read yet —
//! both would meet a request already on the wire. So, in order: new handshakes are ignored (a
//! socket filter drops bare SYNs: the client tries again a second later, finds the port closed,
//! and its connection is refused, which every balancer retries elsewhere) while handshakes under
//! way complete; the accept queue is emptied; then the accept loop ends and the listener closes,
//! and every connection already accepted is served to the end of its answer (`Connection:
//! close` while draining), never cut.
//!
//! Owns: the listening socket's close. Must not touch: connections already accepted, the order
//! of the stop (see [`crate::gateway`]).

use std::time::Duration;

use tokio::{net::TcpListener, task::JoinHandle};

/// How long the accept queue must stay empty before the listener closes: handshakes begun
/// before the filter complete well within it.
const SETTLE: Duration = Duration::from_millis(50);

/// The listener and the accept loop that owns it.
pub struct Listening {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
    accept_loop: JoinHandle<()>,
}

impl Listening {
    /// Runs `serve` (the accept loop, which takes the listener and closes it when it ends).
    pub fn start<F>(listener: TcpListener, serve: impl FnOnce(TcpListener) -> F) -> Listening
    where
        F: Future<Output = ()> + Send + 'static,
    {
        #[cfg(target_os = "linux")]
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let accept_loop = tokio::spawn(serve(listener));
        Listening {
            #[cfg(target_os = "linux")]
            fd,
            accept_loop,
        }
    }

    /// Ignores new handshakes, waits (at most `limit`) until what is queued has been accepted,
    /// then ends the accept loop, which closes the listener. Connections accepted stay open.
    pub async fn close(self, limit: Duration) {
        if self.ignore_new_handshakes() {
            let _ = tokio::time::timeout(limit, self.queue_emptied()).await;
        }
        self.accept_loop.abort();
        let _ = self.accept_loop.await;
    }

    /// Closes the listener at once (a stop that does not wait).
    pub async fn close_now(self) {
        self.accept_loop.abort();
        let _ = self.accept_loop.await;
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    /// Connections queued before the close are served after it; a new one is not let in.
    #[tokio::test]
    async fn queued_connections_are_served_and_new_ones_kept_out() {
        let listener = crate::gateway::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        // An accept loop that starts accepting only when told, echoing five bytes per connection.
        let listening = Listening::start(listener, |listener| async move {
            let _ = wait.await;
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
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
        let late = tokio::spawn(tokio::time::timeout(
            Duration::from_millis(300),
            TcpStream::connect(addr),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = go.send(());
        listening.close(Duration::from_secs(2)).await;
        for mut s in queued {
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"hello");
        }
        // The late SYN was dropped; it is refused or still waiting, never accepted.
        match late.await.unwrap() {
            Err(_) | Ok(Err(_)) => {}
            Ok(Ok(_)) => panic!("a connection got in after the filter"),
        }
    }
}
