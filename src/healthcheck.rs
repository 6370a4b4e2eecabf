//! `--healthcheck`: asks the gateway on this machine whether it is ready — `GET /health` on
//! its `--host`/`--port` (loopback for a wildcard address) — and says so in the exit code, for a
//! container's `HEALTHCHECK` or a supervisor, without curl in the image. Plain HTTP/1.0 over a
//! socket: one request, a few seconds at most, nothing else started.
//!
//! Owns: the probe. Must not touch: the gateway itself (it only asks it).

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    time::Duration,
};

/// The address a probe on this machine reaches a gateway listening on `host:port` at.
pub fn target(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let ip: IpAddr = host
        .parse()
        .map_err(|_| anyhow::anyhow!("--host must be an IP address, got {host:?}"))?;
    let ip = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    Ok(SocketAddr::new(ip, port))
}

/// `Ok` with the status line when `/health` answered 200 within `timeout`; else why not.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let host = match addr.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
    };
    let request = format!("GET /health HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot ask {addr}: {e}"))?;
    // The status line is all it needs; a few KiB hold it whatever the body.
    let mut head = vec![0u8; 4096];
    let mut len = 0;
    while len < head.len() && !head[..len].contains(&b'\n') {
        match stream.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => return Err(format!("no answer from {addr}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&head[..len]);
    let status = text.lines().next().unwrap_or_default().trim().to_string();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    match code {
        "200" => Ok(status),
        "" => Err(format!("no HTTP answer from {addr}")),
        _ => Err(format!("{addr} answered {status:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot HTTP server answering `reply`; what it was asked comes back from the thread.
    fn answer(reply: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            s.write_all(reply.as_bytes()).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (addr, handle)
    }

    #[test]
    fn ready_only_on_200() {
        let (addr, asked) = answer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
        assert_eq!(
            probe(addr, Duration::from_secs(3)).unwrap(),
            "HTTP/1.1 200 OK"
        );
        assert!(
            asked
                .join()
                .unwrap()
                .starts_with("GET /health HTTP/1.0\r\n")
        );
        let (addr, _) = answer("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let e = probe(addr, Duration::from_secs(3)).unwrap_err();
        assert!(e.contains("503"), "{e}");
        let (addr, _) = answer("");
        assert!(probe(addr, Duration::from_secs(3)).is_err());
        // Nobody listening.
        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(probe(free, Duration::from_secs(3)).is_err());
    }

    #[test]
    fn a_wildcard_address_is_probed_on_loopback() {
        assert_eq!(
            target("0.0.0.0", 8000).unwrap().to_string(),
            "127.0.0.1:8000"
        );
        assert_eq!(target("::", 8000).unwrap().to_string(), "[::1]:8000");
        assert_eq!(target("10.1.2.3", 9).unwrap().to_string(), "10.1.2.3:9");
        assert!(target("localhost", 1).is_err());
    }
}
