//! Clients that vanish: 300 HTTP+SSE streams per backend dropped by RST and by FIN — idle,
//! in the middle of a POST body, and with a call in flight — leave nothing behind: every
//! per-session child is reaped within the shutdown grace plus one second, every session ends,
//! the shared children stay as many as configured, and the gateway's sockets are freed.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    gateway_util::{Gateway, example, processes_with},
};

const STREAMS: usize = 300;
const GRACE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
enum How {
    /// SO_LINGER 0: the kernel answers with a reset.
    Rst,
    /// What was received is read, then an orderly close.
    Fin,
}

#[derive(Clone, Copy, Debug)]
enum When {
    Idle,
    MidPost,
    InFlight,
}

/// One raw HTTP+SSE session: the stream's socket and its POST path.
struct Raw {
    stream: TcpStream,
    post_path: String,
}

async fn open(addr: &str) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let req = format!("GET /sse HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let post_path = loop {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("no endpoint event")
            .unwrap();
        assert!(n > 0, "stream closed before its endpoint event");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(at) = text.find("data:")
            && let Some(end) = text[at..].find('\n')
        {
            break text[at + 5..at + end].trim().to_string();
        }
    };
    Raw { stream, post_path }
}

/// Sends `body` to the session's POST path on a new connection and reads the status.
async fn post(addr: &str, path: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("POST not answered")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 202"), "POST refused: {head}");
    s
}

fn drop_socket(s: TcpStream, how: How) {
    match how {
        How::Rst => {
            use std::os::fd::AsRawFd;
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt on an open socket with a correctly sized linger struct.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "SO_LINGER");
            drop(s);
        }
        How::Fin => {
            // Whatever was received is read first, or closing would send a reset.
            let std = s.into_std().unwrap();
            std.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 65536];
            while matches!(std::io::Read::read(&mut &std, &mut buf), Ok(n) if n > 0) {}
            let _ = std.shutdown(std::net::Shutdown::Both);
            drop(std);
        }
    }
}

/// Opens a session, brings it to `when`, and drops everything it holds the way `how` says.
async fn session_then_drop(addr: String, call: String, how: How, when: When) {
    let raw = open(&addr).await;
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"drops","version":"1"}}}"#;
    let c = post(&addr, &raw.post_path, init).await;
    drop_socket(c, how);
    match when {
        When::Idle => drop_socket(raw.stream, how),
        When::MidPost => {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let body =
                format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{call}}}"#);
            let req = format!(
                "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                raw.post_path,
                body.len() + 100,
                &body[..body.len() / 2]
            );
            s.write_all(req.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop_socket(s, how);
            drop_socket(raw.stream, how);
        }
        When::InFlight => {
            let body =
                format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{call}}}"#);
            let c = post(&addr, &raw.post_path, &body).await;
            drop_socket(c, how);
            drop_socket(raw.stream, how);
        }
    }
}

/// Connections the gateway listening on `port` still holds (established, or closed by the
/// client and not yet by the gateway).
fn connections_to(port: u16) -> usize {
    let port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|t| {
            t.lines()
                .skip(1)
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[1].ends_with(&port) && matches!(f[3], "01" | "08")
                })
                .count()
        })
        .sum::<usize>()
}

async fn drops_leave_nothing(backend: &str, call: &str, children: usize) {
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base_url = format!("http://{}", upstream.addr);
    let marker = format!("drops-{}", uuid::Uuid::new_v4());
    let fixture = example("fixture_server");
    let grace = format!("{}s", GRACE.as_secs());
    let mut args = vec![
        "--backend",
        backend,
        "--base-url",
        &base_url,
        "--shutdown-grace",
        &grace,
    ];
    if backend == "shared" {
        args.extend(["--children", "2"]);
    }
    if backend != "in-process" {
        args.extend(["--", &fixture, &marker]);
    }
    let gw = Gateway::start(&args, &[]).await;
    let addr = gw.base.trim_start_matches("http://").to_string();
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    // The gateway's own command line names the marker too.
    let children = if backend == "in-process" {
        0
    } else {
        children + 1
    };

    // Every session is open (and its child running) before the first one drops.
    let mut opened = vec![];
    let kinds = [When::Idle, When::MidPost, When::InFlight];
    for i in 0..STREAMS {
        let how = if i % 2 == 0 { How::Rst } else { How::Fin };
        let when = kinds[(i / 2) % 3];
        opened.push((how, when));
    }
    let tasks: Vec<_> = opened
        .iter()
        .map(|&(how, when)| {
            tokio::spawn(session_then_drop(addr.clone(), call.to_string(), how, when))
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let dropped = tokio::time::Instant::now();
    let limit = GRACE + Duration::from_secs(1);
    loop {
        let h = gw.health().await;
        let ours = processes_with(&marker);
        // At most the connection of the /health request just made.
        let open = connections_to(port);
        let done = h["sessions"] == 0 && ours == children && open <= 1;
        if done {
            eprintln!(
                "{backend}: {STREAMS} dropped streams cleaned up in {:?}",
                dropped.elapsed()
            );
            break;
        }
        assert!(
            dropped.elapsed() < limit,
            "{backend}: {} s after {STREAMS} dropped streams: {ours} children (want {children}), \
             health {h}, {open} connections open",
            limit.as_secs(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing failed on the gateway's side while it happened.
    let h = gw.health().await;
    assert_eq!(h["status"], "ok", "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_streams_leave_no_per_session_child() {
    let _heavy = crate::util::HEAVY.lock().await;
    // `slow` holds the child busy: the gateway must stop it, not wait for it to read EOF.
    drops_leave_nothing(
        "per-session",
        r#"{"name":"slow","arguments":{"ms":60000}}"#,
        0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_streams_leave_shared_children_as_they_were() {
    let _heavy = crate::util::HEAVY.lock().await;
    drops_leave_nothing("shared", r#"{"name":"never","arguments":{"label":"x"}}"#, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_streams_end_in_process_sessions() {
    let _heavy = crate::util::HEAVY.lock().await;
    drops_leave_nothing(
        "in-process",
        r#"{"name":"get_current_temperature","arguments":{"city":"bern"}}"#,
        0,
    )
    .await;
}

/// Sends a raw HTTP request on a new connection; waits for the response head if `answered`.
async fn raw_request(addr: &str, head: &str, body: &str, answered: bool) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "{head}Host: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    if !answered {
        return s;
    }
    let mut buf = [0u8; 4096];
    tokio::time::sleep(Duration::from_millis(5)).await;
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("no response head")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 200"), "{head}: {text}");
    s
}

fn runtime_tasks(metrics: &str) -> i64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("aareguru_gateway_runtime_tasks "))
        .and_then(|v| v.trim().parse().ok())
        .expect("runtime_tasks in /metrics")
}

/// Streamable HTTP: a dropped connection — the listen stream, or a POST waiting for its
/// answer — is neither a cancellation nor the end of the session. What it leaves behind is
/// freed at once (connections, tasks), the session keeps working, and it is reaped with its
/// child at the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_streamable_connections_free_everything_but_the_session() {
    let _heavy = crate::util::HEAVY.lock().await;
    const SESSIONS: usize = 60;
    let marker = format!("drops-{}", uuid::Uuid::new_v4());
    let fixture = example("fixture_server");
    let gw = Gateway::start(
        &[
            // Long enough that the first session is not idle before the last one is opened
            // (60 children started one after another) on a busy machine: 8 s was not, once,
            // with the cluster tests' load generators running beside it.
            "--session-idle-timeout",
            "15s",
            "--shutdown-grace",
            "1s",
            "--",
            &fixture,
            &marker,
        ],
        &[],
    )
    .await;
    let addr = gw.base.trim_start_matches("http://").to_string();
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let metrics = || async { gw.metrics().await };
    let mut clients = vec![];
    for _ in 0..SESSIONS {
        let mut c = crate::gateway_util::McpClient::new(&gw.base);
        c.initialize().await;
        clients.push(c);
    }
    let tasks_before = runtime_tasks(&metrics().await);
    // The clients' own idle keep-alive connections.
    let open_before = connections_to(port);
    let mut held = vec![];
    for (i, c) in clients.iter().enumerate() {
        let session = c.session.clone().unwrap();
        let listen = raw_request(
            &addr,
            &format!(
                "GET /mcp HTTP/1.1\r\nAccept: text/event-stream\r\nMcp-Session-Id: {session}\r\n"
            ),
            "",
            true,
        )
        .await;
        // Sent, not answered yet (the call takes 400 ms): dropped in flight.
        let call = raw_request(
            &addr,
            &format!(
                "POST /mcp HTTP/1.1\r\nAccept: application/json, text/event-stream\r\n\
                 Content-Type: application/json\r\nMcp-Session-Id: {session}\r\n"
            ),
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow","arguments":{"ms":400}}}"#,
            false,
        )
        .await;
        let how = if i % 2 == 0 { How::Rst } else { How::Fin };
        held.push((listen, call, how));
    }
    for (listen, call, how) in held {
        drop_socket(listen, how);
        drop_socket(call, how);
    }
    // Soon (a second when the machine is idle; five allowed for two busy cores): no connection
    // left, the tasks that served them gone, the sessions and their children still there.
    let dropped = tokio::time::Instant::now();
    loop {
        let h = gw.health().await;
        let open = connections_to(port);
        let tasks = runtime_tasks(&metrics().await);
        assert_eq!(
            h["sessions"], SESSIONS,
            "a dropped connection ended a session: {h}"
        );
        assert_eq!(processes_with(&marker), SESSIONS + 1);
        // At most the /health and /metrics connections just made.
        if open <= open_before + 2 && tasks <= tasks_before + 4 {
            break;
        }
        assert!(
            dropped.elapsed() < Duration::from_secs(5),
            "{open} connections (had {open_before}) and {tasks} tasks (had {tasks_before}) five \
             seconds after the drops"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The sessions keep working: the dropped call was not a cancellation of the session.
    for c in &clients[..5] {
        let (status, reply) = c
            .call(8, "echo", serde_json::json!({"p": "still here"}))
            .await;
        assert_eq!(status, 200, "{reply}");
        assert!(reply.to_string().contains("still here"), "{reply}");
    }
    // Left alone, they are reaped at the idle timeout (15 s) with their children: the reaper
    // runs every quarter of the timeout, so within 15 + 3.75 s, and a little more on busy cores.
    let idle = tokio::time::Instant::now();
    loop {
        let h = gw.health().await;
        if h["sessions"] == 0 && processes_with(&marker) == 1 {
            break;
        }
        assert!(
            idle.elapsed() < Duration::from_secs(15 + 4 + 4),
            "not reaped at the idle timeout: {h}, {} children",
            processes_with(&marker) - 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
