//! The soak's population: what real clients do to a gateway, one seeded choice at a time —
//! sessions that call and leave, that drop their connection (RST or FIN; idle, mid-POST, call in
//! flight), that read slowly, send garbage or cancel — with every call's reply checked.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use futures::StreamExt;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};

/// How long a call may take before it counts as lost.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Default)]
pub struct Counts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub misrouted: AtomicU64,
    pub lost: AtomicU64,
    pub sessions: AtomicU64,
    pub drops_rst: AtomicU64,
    pub drops_fin: AtomicU64,
    pub slow_readers: AtomicU64,
    pub slow_shed: AtomicU64,
    pub garbage: AtomicU64,
    pub server_errors: AtomicU64,
    pub cancels: AtomicU64,
    pub abandoned: AtomicU64,
    pub children_killed: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counts {
    pub fn json(&self) -> Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "calls": {"ok": g(&self.ok), "failed": g(&self.failed),
                      "misrouted": g(&self.misrouted), "lost": g(&self.lost)},
            "sessions": g(&self.sessions),
            "faults": {"dropped_rst": g(&self.drops_rst), "dropped_fin": g(&self.drops_fin),
                       "slow_readers": g(&self.slow_readers), "slow_readers_shed": g(&self.slow_shed),
                       "garbage": g(&self.garbage), "garbage_5xx": g(&self.server_errors),
                       "cancelled": g(&self.cancels), "abandoned": g(&self.abandoned),
                       "children_killed": g(&self.children_killed)},
        })
    }
}

/// A server the population talks to.
#[derive(Clone)]
pub struct Server {
    /// `http://host:port/servers/ps` (its `/mcp` and `/sse` below).
    pub base: String,
    /// Wraps the fixture (echo, slow, never, big) rather than the built-in server.
    pub fixture: bool,
}

pub struct World {
    pub http: reqwest::Client,
    pub addr: String,
    pub servers: Vec<Server>,
    pub counts: Counts,
    pub seed: u64,
    /// `--faults none`: only sessions that call and leave (then every call must succeed).
    pub faults: bool,
    /// When the population stops: sessions end their calls then too.
    pub deadline: tokio::time::Instant,
}

enum Outcome {
    Ok,
    /// An answer that says it failed: a JSON-RPC error, a 404 for a session that ended, a
    /// stream that closed.
    Failed,
    Misrouted,
    Lost,
}

impl World {
    fn record(&self, o: Outcome) {
        inc(match o {
            Outcome::Ok => &self.counts.ok,
            Outcome::Failed => &self.counts.failed,
            Outcome::Misrouted => &self.counts.misrouted,
            Outcome::Lost => &self.counts.lost,
        });
    }

    fn judge(&self, reply: &Value, payload: &str) -> Outcome {
        let text = reply.to_string();
        if text.contains(payload) {
            Outcome::Ok
        } else if text.contains(&format!("soak-{}-", self.seed)) {
            Outcome::Misrouted
        } else {
            Outcome::Failed
        }
    }
}

/// The call with a unique payload: the fixture's `echo`, or the built-in server's
/// `get_current_temperature` for an unknown city (its error names the city).
fn call(server: &Server, payload: &str) -> Value {
    if server.fixture {
        json!({"name": "echo", "arguments": {"p": payload}})
    } else {
        json!({"name": "get_current_temperature", "arguments": {"city": payload}})
    }
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn initialize() -> Value {
    request(
        0,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "soak", "version": "1"}}),
    )
}

// ---- Streamable HTTP ---------------------------------------------------------------------

struct Mcp {
    url: String,
    session: String,
}

impl Mcp {
    async fn post(&self, w: &World, body: &Value) -> Result<reqwest::Response, reqwest::Error> {
        w.http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(body)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
    }

    async fn open(w: &World, server: &Server) -> Option<Mcp> {
        let url = format!("{}/mcp", server.base);
        let r = w
            .http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize())
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .ok()?;
        let session = r
            .headers()
            .get("mcp-session-id")?
            .to_str()
            .ok()?
            .to_string();
        let _ = r.bytes().await;
        let mcp = Mcp { url, session };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        mcp.post(w, &note).await.ok()?;
        inc(&w.counts.sessions);
        Some(mcp)
    }

    /// One checked call.
    /// One checked call; false when it was lost (the session is no use after that).
    async fn call(&self, w: &World, server: &Server, id: u64, payload: &str) -> bool {
        let outcome = match self
            .post(w, &request(id, "tools/call", call(server, payload)))
            .await
        {
            Err(e) if e.is_timeout() => Outcome::Lost,
            Err(_) => Outcome::Failed,
            Ok(r) if !r.status().is_success() => Outcome::Failed,
            Ok(r) => {
                let sse = r
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
                match r.text().await {
                    Err(e) if e.is_timeout() => Outcome::Lost,
                    Err(_) => Outcome::Failed,
                    Ok(body) => {
                        let reply = if sse {
                            body.lines()
                                .filter_map(|l| l.strip_prefix("data:"))
                                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                                .find(|v| v.get("id").is_some())
                        } else {
                            serde_json::from_str(&body).ok()
                        };
                        match reply {
                            Some(v) if v["id"] != id => Outcome::Misrouted,
                            Some(v) => w.judge(&v, payload),
                            None => Outcome::Failed,
                        }
                    }
                }
            }
        };
        let lost = matches!(outcome, Outcome::Lost);
        w.record(outcome);
        !lost
    }

    async fn close(&self, w: &World) {
        let _ = w
            .http
            .delete(&self.url)
            .header("mcp-session-id", &self.session)
            .send()
            .await;
    }
}

// ---- HTTP+SSE ----------------------------------------------------------------------------

struct Sse {
    post_url: String,
    messages: mpsc::UnboundedReceiver<Value>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Sse {
    async fn open(w: &World, server: &Server) -> Option<Sse> {
        let r = w
            .http
            .get(format!("{}/sse", server.base))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        let (ep_tx, ep_rx) = tokio::sync::oneshot::channel();
        let (tx, messages) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut ep_tx = Some(ep_tx);
            let mut body = r.bytes_stream();
            let mut buf: Vec<u8> = vec![];
            while let Some(Ok(chunk)) = body.next().await {
                buf.extend_from_slice(&chunk);
                while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = buf.drain(..end + 2).collect();
                    let text = String::from_utf8_lossy(&block);
                    let (mut event, mut data) = (String::new(), String::new());
                    for line in text.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        }
                    }
                    if event == "endpoint" {
                        if let Some(t) = ep_tx.take() {
                            let _ = t.send(data);
                        }
                    } else if let Ok(v) = serde_json::from_str(&data)
                        && tx.send(v).is_err()
                    {
                        return;
                    }
                }
            }
        });
        let endpoint = tokio::time::timeout(CALL_TIMEOUT, ep_rx).await.ok()?.ok()?;
        let origin = server
            .base
            .split("/servers/")
            .next()
            .unwrap_or(&server.base);
        let mut sse = Sse {
            post_url: format!("{origin}{endpoint}"),
            messages,
            reader,
        };
        sse.post(w, &initialize()).await.ok()?;
        sse.answer(0).await?;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        sse.post(w, &note).await.ok()?;
        inc(&w.counts.sessions);
        Some(sse)
    }

    async fn post(&self, w: &World, body: &Value) -> Result<u16, ()> {
        let r = w
            .http
            .post(&self.post_url)
            .json(body)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|_| ())?;
        Ok(r.status().as_u16())
    }

    /// The next response on the stream with `id`; other responses are kept out of the way (a
    /// late answer to a cancelled request may come); `None` when the stream ends or time is up.
    async fn answer(&mut self, id: u64) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        loop {
            let v = tokio::time::timeout_at(deadline, self.messages.recv())
                .await
                .ok()??;
            if v.get("method").is_none() && v["id"] == id {
                return Some(v);
            }
        }
    }

    async fn call(&mut self, w: &World, server: &Server, id: u64, payload: &str) -> bool {
        let outcome = match self
            .post(w, &request(id, "tools/call", call(server, payload)))
            .await
        {
            Ok(202) => {
                let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
                let mut outcome = Outcome::Lost;
                while let Ok(next) = tokio::time::timeout_at(deadline, self.messages.recv()).await {
                    let Some(v) = next else {
                        outcome = Outcome::Failed;
                        break;
                    };
                    if v.get("method").is_some() {
                        continue;
                    }
                    if v["id"] == id {
                        outcome = w.judge(&v, payload);
                        break;
                    }
                    // A response under another id: a late answer to a request this session
                    // cancelled is allowed; anyone else's payload is not.
                    if v.to_string().contains(&format!("soak-{}-", w.seed)) {
                        outcome = Outcome::Misrouted;
                        break;
                    }
                }
                outcome
            }
            _ => Outcome::Failed,
        };
        let lost = matches!(outcome, Outcome::Lost);
        w.record(outcome);
        !lost
    }
}

// ---- raw sockets -------------------------------------------------------------------------

fn rst(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a correctly sized struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn drop_socket(w: &World, s: TcpStream, reset: bool) {
    if reset {
        rst(s);
        inc(&w.counts.drops_rst);
    } else if let Ok(std) = s.into_std() {
        let _ = std.set_nonblocking(true);
        let mut buf = [0u8; 65536];
        while matches!(std::io::Read::read(&mut &std, &mut buf), Ok(n) if n > 0) {}
        let _ = std.shutdown(std::net::Shutdown::Both);
        inc(&w.counts.drops_fin);
    }
}

async fn raw(w: &World, head: &str, body: &[u8], declared: Option<usize>) -> Option<TcpStream> {
    let mut s = TcpStream::connect(&w.addr).await.ok()?;
    let len = declared.unwrap_or(body.len());
    let req = format!("{head}Host: {}\r\nContent-Length: {len}\r\n\r\n", w.addr);
    s.write_all(req.as_bytes()).await.ok()?;
    s.write_all(body).await.ok()?;
    Some(s)
}

/// Reads until `needle` shows up (or 10 s pass).
async fn read_until(s: &mut TcpStream, needle: &str) -> Option<String> {
    let mut seen = vec![];
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(at) = text.find(needle) {
            return Some(text[at..].to_string());
        }
    }
}

fn path_of(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.find('/').map_or("/".into(), |i| rest[i..].to_string())
}

// ---- the population -------------------------------------------------------------------

/// One member of the population, acting until `deadline`.
pub async fn actor(w: std::sync::Arc<World>, index: u64, deadline: tokio::time::Instant) {
    let mut rng = StdRng::seed_from_u64(w.seed.wrapping_mul(1_000_003).wrapping_add(index));
    let mut n = 0u64;
    while tokio::time::Instant::now() < deadline {
        let server = w.servers[rng.random_range(0..w.servers.len())].clone();
        let sse = rng.random_bool(0.5);
        let roll = if w.faults {
            rng.random_range(0..100)
        } else {
            rng.random_range(0..55)
        };
        let mut payload = || {
            n += 1;
            format!("soak-{}-{index}-{n}", w.seed)
        };
        match roll {
            0..45 => {
                let calls = rng.random_range(1..30);
                let leave_politely = rng.random_bool(0.8);
                normal(&w, &server, sse, calls, leave_politely, &mut payload).await;
            }
            45..55 => {
                // Churn: connect and leave at once.
                normal(&w, &server, sse, 0, true, &mut payload).await;
            }
            55..70 => {
                let reset = rng.random_bool(0.5);
                let when = rng.random_range(0..3);
                let resume = rng.random_bool(0.5);
                dropper(&w, &server, sse, reset, when, resume, &mut payload).await;
            }
            70..85 => garbage(&w, &server, rng.random_range(0..10), &mut rng).await,
            85..95 if server.fixture => cancel(&w, &server, sse, &mut payload).await,
            95..100 if server.fixture => slow_reader(&w, &server).await,
            _ => normal(&w, &server, sse, 3, true, &mut payload).await,
        }
    }
}

async fn normal(
    w: &World,
    server: &Server,
    sse: bool,
    calls: u64,
    polite: bool,
    payload: &mut impl FnMut() -> String,
) {
    if sse {
        let Some(mut s) = Sse::open(w, server).await else {
            return w.record(Outcome::Failed);
        };
        for id in 1..=calls {
            if !s.call(w, server, id, &payload()).await || tokio::time::Instant::now() > w.deadline
            {
                break;
            }
        }
        if !polite {
            inc(&w.counts.abandoned);
        }
    } else {
        let Some(m) = Mcp::open(w, server).await else {
            return w.record(Outcome::Failed);
        };
        for id in 1..=calls {
            if !m.call(w, server, id, &payload()).await || tokio::time::Instant::now() > w.deadline
            {
                break;
            }
        }
        if polite {
            m.close(w).await;
        } else {
            // Left for the idle timeout to reap.
            inc(&w.counts.abandoned);
        }
    }
}

/// A session whose connection drops: idle (0), mid-POST (1) or with a call in flight (2).
async fn dropper(
    w: &World,
    server: &Server,
    sse: bool,
    reset: bool,
    when: u32,
    resume: bool,
    payload: &mut impl FnMut() -> String,
) {
    let slow = if server.fixture {
        json!({"name": "slow", "arguments": {"ms": 200}})
    } else {
        call(server, &payload())
    };
    let body = request(99, "tools/call", slow).to_string();
    if sse {
        let get = format!(
            "GET {}/sse HTTP/1.1\r\nAccept: text/event-stream\r\n",
            path_of(&server.base)
        );
        let Some(mut stream) = raw(w, &get, b"", None).await else {
            return;
        };
        let Some(ep) = read_until(&mut stream, "/messages").await else {
            return w.record(Outcome::Failed);
        };
        let ep = ep.lines().next().unwrap_or("").trim().to_string();
        let post = format!("POST {ep} HTTP/1.1\r\nContent-Type: application/json\r\n");
        let init = initialize().to_string();
        if let Some(c) = raw(w, &post, init.as_bytes(), None).await {
            drop_socket(w, c, reset);
        }
        match when {
            1 => {
                let half = &body.as_bytes()[..body.len() / 2];
                if let Some(c) = raw(w, &post, half, Some(body.len())).await {
                    drop_socket(w, c, reset);
                }
            }
            2 => {
                if let Some(mut c) = raw(w, &post, body.as_bytes(), None).await {
                    let _ = read_until(&mut c, "HTTP/1.1").await;
                    drop_socket(w, c, reset);
                }
            }
            _ => {}
        }
        drop_socket(w, stream, reset);
        return;
    }
    let Some(m) = Mcp::open(w, server).await else {
        return w.record(Outcome::Failed);
    };
    let path = path_of(&m.url);
    let headers = format!(
        "Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\nMcp-Session-Id: {}\r\n",
        m.session
    );
    match when {
        0 => {
            let get = format!(
                "GET {path} HTTP/1.1\r\nAccept: text/event-stream\r\nMcp-Session-Id: {}\r\n",
                m.session
            );
            if let Some(mut s) = raw(w, &get, b"", None).await {
                let _ = read_until(&mut s, "HTTP/1.1").await;
                drop_socket(w, s, reset);
            }
        }
        1 => {
            let half = &body.as_bytes()[..body.len() / 2];
            let head = format!("POST {path} HTTP/1.1\r\n{headers}");
            if let Some(s) = raw(w, &head, half, Some(body.len())).await {
                drop_socket(w, s, reset);
            }
        }
        _ => {
            let head = format!("POST {path} HTTP/1.1\r\n{headers}");
            if let Some(s) = raw(w, &head, body.as_bytes(), None).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop_socket(w, s, reset);
            }
        }
    }
    if resume {
        // A dropped connection is not the end of the session.
        m.call(w, server, 100, &payload()).await;
        m.close(w).await;
    } else {
        inc(&w.counts.abandoned);
    }
}

/// Requests a gateway must refuse with a 4xx (never a 5xx, never a hang).
async fn garbage(w: &World, server: &Server, kind: u32, rng: &mut StdRng) {
    inc(&w.counts.garbage);
    let mcp = format!("{}/mcp", server.base);
    let origin = server
        .base
        .split("/servers/")
        .next()
        .unwrap_or(&server.base)
        .to_string();
    let junk: Vec<u8> = (0..rng.random_range(1..400))
        .map(|_| rng.random())
        .collect();
    let accept = "application/json, text/event-stream";
    let h = &w.http;
    let sent = match kind {
        0 => {
            h.post(&mcp)
                .header("accept", accept)
                .header("content-type", "application/json")
                .body("{\"jsonrpc\":\"2.0\",\"id\":1,")
                .send()
                .await
        }
        1 => {
            h.post(&mcp)
                .header("accept", accept)
                .header("mcp-session-id", uuid::Uuid::new_v4().to_string())
                .json(&request(1, "tools/list", json!({})))
                .send()
                .await
        }
        2 => {
            h.post(&mcp)
                .header("accept", accept)
                .header("mcp-session-id", "not-a-session")
                .json(&request(1, "tools/list", json!({})))
                .send()
                .await
        }
        3 => {
            h.post(format!(
                "{origin}/messages?session_id={}",
                uuid::Uuid::new_v4()
            ))
            .json(&request(1, "tools/list", json!({})))
            .send()
            .await
        }
        4 => {
            h.post(&mcp)
                .header("accept", accept)
                .header("content-type", "application/json")
                .body(vec![b' '; 300_000])
                .send()
                .await
        }
        5 => {
            h.post(&mcp)
                .header("accept", accept)
                .header("content-type", "text/plain")
                .body("hello")
                .send()
                .await
        }
        6 => {
            h.post(&mcp)
                .header("accept", accept)
                .header("content-type", "application/json")
                .body(junk.clone())
                .send()
                .await
        }
        7 => {
            h.post(&mcp)
                .header("accept", accept)
                .json(&json!([request(1, "ping", json!({}))]))
                .send()
                .await
        }
        8 => h.get(&mcp).send().await,
        _ => {
            // Not HTTP at all.
            if let Ok(mut s) = TcpStream::connect(&w.addr).await {
                let _ = s.write_all(&junk).await;
                let _ = s.write_all(b"\r\n\r\n").await;
                let mut buf = [0u8; 256];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await
                    && String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 5")
                {
                    inc(&w.counts.server_errors);
                }
            }
            return;
        }
    };
    if let Ok(r) = sent
        && r.status().is_server_error()
    {
        inc(&w.counts.server_errors);
    }
}

/// A call that never ends, cancelled; then the session must still answer.
async fn cancel(w: &World, server: &Server, sse: bool, payload: &mut impl FnMut() -> String) {
    inc(&w.counts.cancels);
    let never = request(
        50,
        "tools/call",
        json!({"name": "never", "arguments": {"label": "soak"}}),
    );
    let cancelled = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                           "params": {"requestId": 50, "reason": "soak"}});
    if sse {
        let Some(mut s) = Sse::open(w, server).await else {
            return w.record(Outcome::Failed);
        };
        let _ = s.post(w, &never).await;
        let _ = s.post(w, &cancelled).await;
        s.call(w, server, 51, &payload()).await;
    } else {
        let Some(m) = Mcp::open(w, server).await else {
            return w.record(Outcome::Failed);
        };
        let pending = {
            let req = w
                .http
                .post(&m.url)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", &m.session)
                .json(&never)
                .send();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), req).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = m.post(w, &cancelled).await;
        m.call(w, server, 51, &payload()).await;
        pending.abort();
        m.close(w).await;
    }
}

/// A client that asks for a large answer and reads it a kilobyte at a time.
async fn slow_reader(w: &World, server: &Server) {
    inc(&w.counts.slow_readers);
    let get = format!(
        "GET {}/sse HTTP/1.1\r\nAccept: text/event-stream\r\n",
        path_of(&server.base)
    );
    let Ok(sock) = tokio::net::TcpSocket::new_v4() else {
        return;
    };
    let _ = sock.set_recv_buffer_size(4096);
    let Ok(addr) = w.addr.parse() else { return };
    let Ok(mut s) = sock.connect(addr).await else {
        return;
    };
    let req = format!("{get}Host: {}\r\n\r\n", w.addr);
    if s.write_all(req.as_bytes()).await.is_err() {
        return;
    }
    let Some(ep) = read_until(&mut s, "/messages").await else {
        return;
    };
    let ep = ep.lines().next().unwrap_or("").trim().to_string();
    let post = format!("POST {ep} HTTP/1.1\r\nContent-Type: application/json\r\n");
    for msg in [
        initialize(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        request(
            1,
            "tools/call",
            json!({"name": "big", "arguments": {"bytes": 4_000_000}}),
        ),
    ] {
        if let Some(c) = raw(w, &post, msg.to_string().as_bytes(), None).await {
            drop(c);
        }
    }
    let mut buf = [0u8; 1024];
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                // The gateway gave up on it (slow-client limit): what it should do.
                inc(&w.counts.slow_shed);
                return;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
