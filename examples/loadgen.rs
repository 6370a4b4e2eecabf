//! Load generator for the gateway (a benchmark program, not a test).
//!
//! Opens N concurrent sessions, makes M tool calls in each with a payload unique to the session,
//! and reports session setup (new stream to `initialize` answered) p50/p99, call round trip
//! p50/p99, calls per second, misrouted replies and memory. The same workload can run against
//! the child driven directly over stdio, for comparison.
//!
//! ```sh
//! cargo build --release --bin aareguru-mcp --examples
//! target/release/examples/loadgen --matrix                       # the README table
//! target/release/examples/loadgen --matrix --children echo       # only the echo rows
//! target/release/examples/loadgen --mode sse --sessions 100 --calls 200 --child echo --backend shared
//! target/release/examples/loadgen --mode sse --sessions 10000 --calls 0 --child aareguru --backend in-process
//! target/release/examples/loadgen --mode sse --sessions 200 --calls 1 --wave 1 --child aareguru --backend per-session
//! target/release/examples/loadgen --mode mcp --sessions 100 --calls 200 --child echo --backend shared
//! target/release/examples/loadgen --mode modern --sessions 100 --calls 200 --child echo --backend shared
//! target/release/examples/loadgen --mode stdio --sessions 10 --calls 1000 --child aareguru
//! target/release/examples/loadgen --mode mcp --sessions 300 --calls 20 --child aareguru \
//!     --target http://127.0.0.1:8080     # a running gateway, or nginx in front of replicas
//! target/release/examples/loadgen --mode mcp --sessions 1 --calls 5000 --child echo \
//!     --target http://127.0.0.1:8081 --call-target http://127.0.0.1:8082   # forwarding cost
//! ```
//!
//! `--regression tests/bench/regression.json` is the quick check CI runs: ratios against the
//! raw pipe, failing on a large regression (see `loadgen/regression.rs`).
//!
//! `--tool-prefix s1__` calls `s1__echo` instead of `echo` (a member of a federated group, with
//! `--target http://…/servers/<group>`; see tests/bench/federation.sh).
//!
//! `--gw-args "--prespawn 100"` passes more flags to the gateway, `--child-command "npx -y
//! @modelcontextprotocol/server-everything"` wraps another server (with `--child everything`,
//! whose `echo` tool answers `Echo: …`), `--settle 3` waits before the sessions start (a warm
//! pool fills); `FIXTURE_START_MS=300` in the environment makes the fixture slow to start (loadgen passes
//! `FIXTURE_*` on to the children with `--child-env`).
//!
//! Children: `echo` (examples/fixture_server, measures the relay itself) or `aareguru` (this
//! project's server, against the fake upstream started in-process; the payload is an unknown
//! city name, which the server echoes in its error). Backends: `per-session`, `shared`,
//! `in-process` (aareguru only). `--wave N` sets how many sessions are set up at once (1 measures
//! setup latency without contention); `--calls 0` only opens sessions and measures memory.
//! With `--target URL` nothing is started: the sessions go to URL (whose gateways must serve the
//! `--child` named, against an upstream of their own for `aareguru`), and memory is not
//! measured. The last line of the output is the row; the process exits 1 if any reply was
//! misrouted or any call failed.

#[path = "../tests/support/fake_upstream.rs"]
mod fake_upstream;
#[path = "loadgen/regression.rs"]
mod regression;
// The process-tree walk the soak uses too (the rest of that module is the soak's).
#[allow(dead_code)]
#[path = "soak/gauges.rs"]
mod soak_gauges;

use std::{
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
    sync::{Barrier, mpsc},
};

#[derive(Clone)]
struct Opts {
    mode: String,
    backend: String,
    wave: usize,
    sessions: usize,
    calls: usize,
    child: String,
    bin: String,
    /// A gateway (or a load balancer in front of several) to drive instead of starting one.
    target: Option<String>,
    /// More arguments for the gateway it starts (`--gw-args "--prespawn 100"`).
    gw_args: Vec<String>,
    /// The wrapped server for `echo`/`everything` children (default: the fixture server).
    child_command: Option<Vec<String>>,
    /// Seconds to wait after the gateway is up before the sessions start (a warm pool fills).
    settle: f64,
    /// Where the calls go once a session is open (default: where it was opened); another
    /// replica of a cluster measures what forwarding adds.
    call_target: Option<String>,
    fixture: String,
    upstream: String,
}

struct Report {
    mode: String,
    backend: String,
    child: String,
    sessions: usize,
    calls: usize,
    setup: Vec<Duration>,
    rtt: Vec<Duration>,
    elapsed: Duration,
    misrouted: u64,
    errors: u64,
    gateway_rss_kib: u64,
    children_rss_kib: u64,
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

impl Report {
    fn header() -> &'static str {
        "| mode | backend | child | sessions | calls | setup p50 ms | setup p99 ms | call p50 ms | call p99 ms | calls/s | misrouted | errors | gateway RSS MiB | children RSS MiB | (gateway+children) / session KiB |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    }

    fn row(&mut self) -> String {
        let total_calls = self.rtt.len() as f64;
        let per_session =
            (self.gateway_rss_kib + self.children_rss_kib) / self.sessions.max(1) as u64;
        let dash = |s: String| if total_calls == 0.0 { "-".into() } else { s };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {} |",
            self.mode,
            self.backend,
            self.child,
            self.sessions,
            self.sessions * self.calls,
            ms(percentile(&mut self.setup, 0.5)),
            ms(percentile(&mut self.setup, 0.99)),
            dash(ms(percentile(&mut self.rtt, 0.5))),
            dash(ms(percentile(&mut self.rtt, 0.99))),
            dash(format!("{:.0}", total_calls / self.elapsed.as_secs_f64())),
            self.misrouted,
            self.errors,
            self.gateway_rss_kib as f64 / 1024.0,
            self.children_rss_kib as f64 / 1024.0,
            per_session,
        )
    }
}

/// `--tool-prefix P`: tool names get `P` in front (a member's prefix in a federated group).
static TOOL_PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The call for call `j` of session `i`, and the text its reply must contain.
fn call(child: &str, i: usize, j: usize) -> (Value, String) {
    let payload = format!("s{i}-c{j}");
    let mut params = match child {
        "echo" => json!({"name": "echo", "arguments": {"p": payload}}),
        // @modelcontextprotocol/server-everything
        "everything" => json!({"name": "echo", "arguments": {"message": payload}}),
        _ => json!({"name": "get_current_temperature", "arguments": {"city": payload}}),
    };
    if let Some(prefix) = TOOL_PREFIX.get() {
        params["name"] = format!("{prefix}{}", params["name"].as_str().unwrap_or("")).into();
    }
    (params, payload)
}

fn reply_matches(reply: &Value, payload: &str) -> bool {
    reply["result"]["content"][0]["text"]
        .as_str()
        .is_some_and(|t| {
            t.contains(&format!("\"{payload}\"")) || t.ends_with(&format!(" {payload}"))
        })
}

/// RSS of `pid` and of all its descendants, in KiB.
fn rss_tree(pid: u32) -> (u64, u64) {
    if pid == 0 {
        // Driving a gateway that is not ours (`--target`): its memory is not measured here.
        return (0, 0);
    }
    let rss = |p: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{p}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };
    let children: u64 = soak_gauges::descendants(pid).iter().map(|p| rss(*p)).sum();
    (rss(pid), children)
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

async fn start_gateway(o: &Opts) -> (tokio::process::Child, String) {
    let mut cmd = Command::new(&o.bin);
    cmd.args([
        "--sse",
        "--port",
        "0",
        "--log-format",
        "json",
        "--log-level",
        "info",
    ])
    .args(["--max-sessions", "20000", "--base-url", &o.upstream])
    .args(["--backend", &o.backend])
    .args(["--child-env", "FIXTURE_*"])
    .args(&o.gw_args)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    if o.child != "aareguru" {
        cmd.arg("--");
        match &o.child_command {
            Some(c) => cmd.args(c),
            None => cmd.arg(&o.fixture),
        };
    }
    let mut child = cmd.spawn().expect("start gateway");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next_line().await.unwrap().expect("gateway exited");
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "gateway listening"
        {
            break v["address"].as_str().unwrap().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{addr}"))
}

struct Sse {
    events: mpsc::UnboundedReceiver<(String, String)>,
}

impl Sse {
    async fn next(&mut self) -> Option<(String, String)> {
        self.events.recv().await
    }
}

async fn open_sse(http: &reqwest::Client, base: &str) -> Result<Sse, String> {
    let resp = http
        .get(format!("{base}/sse"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("GET /sse: {}", resp.status()));
    }
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = resp.bytes_stream();
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
                if !event.is_empty() && tx.send((event, data)).is_err() {
                    return;
                }
            }
        }
    });
    Ok(Sse { events })
}

/// What every session task of one run shares.
struct Run {
    http: reqwest::Client,
    base: String,
    /// Where calls go (`--call-target`, else `base`).
    calls_base: String,
    o: Arc<Opts>,
    barrier: Arc<Barrier>,
    misrouted: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    /// Limits how many sessions are being set up at once.
    wave: Arc<tokio::sync::Semaphore>,
}

/// One transport's way to open a session and make a call in it.
trait Channel: Sized + Send + 'static {
    /// New session to `initialize` answered (and `initialized` sent).
    fn open(run: &Run) -> impl Future<Output = Result<Self, String>> + Send + '_;
    /// One request in, its reply out.
    fn call<'a>(
        &'a mut self,
        run: &'a Run,
        msg: &'a Value,
    ) -> impl Future<Output = Result<Value, String>> + Send + 'a;
}

/// HTTP+SSE: the stream plus its POST endpoint; a call is a POST and the next event.
struct SseChannel {
    sse: Sse,
    endpoint: String,
}

impl Channel for SseChannel {
    async fn open(run: &Run) -> Result<Self, String> {
        let (http, base) = (&run.http, &run.base);
        let mut sse = open_sse(http, base).await?;
        let (_, endpoint) = sse.next().await.ok_or("no endpoint event")?;
        let endpoint = format!("{}{endpoint}", run.calls_base);
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "loadgen", "version": "1"}}});
        post(http, &endpoint, &init).await?;
        loop {
            let (_, data) = sse.next().await.ok_or("stream ended")?;
            let v: Value = serde_json::from_str(&data).map_err(|e| e.to_string())?;
            if v["id"] == 0 {
                break;
            }
        }
        post(
            http,
            &endpoint,
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await?;
        Ok(SseChannel { sse, endpoint })
    }

    async fn call(&mut self, run: &Run, msg: &Value) -> Result<Value, String> {
        post(&run.http, &self.endpoint, msg).await?;
        // The first response on the stream (notifications a server sends meanwhile skipped).
        loop {
            let (_, data) = self.sse.next().await.ok_or("stream ended")?;
            let v: Value = serde_json::from_str(&data).unwrap_or_default();
            if v.get("method").is_none() {
                return Ok(v);
            }
        }
    }
}

/// Streamable HTTP: the session id; a call is one POST answered with the JSON response.
struct McpChannel {
    url: String,
    session: String,
}

impl Channel for McpChannel {
    async fn open(run: &Run) -> Result<Self, String> {
        let url = format!("{}/mcp", run.base);
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "loadgen", "version": "1"}}});
        let r = mcp_post(&run.http, &url, None, &init).await?;
        let session = r
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or("no Mcp-Session-Id")?
            .to_string();
        r.bytes().await.map_err(|e| e.to_string())?;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        mcp_post(&run.http, &url, Some(&session), &note).await?;
        let url = format!("{}/mcp", run.calls_base);
        Ok(McpChannel { url, session })
    }

    async fn call(&mut self, run: &Run, msg: &Value) -> Result<Value, String> {
        let r = mcp_post(&run.http, &self.url, Some(&self.session), msg).await?;
        answer(r, &msg["id"]).await
    }
}

/// The answer to request `id` in a POST's response: the JSON body, or — when the server streamed
/// it after notifications (a `list_changed`, progress) — the `message` event that answers it.
async fn answer(r: reqwest::Response, id: &Value) -> Result<Value, String> {
    let streamed = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = r.text().await.map_err(|e| e.to_string())?;
    if !streamed {
        return serde_json::from_str(&body).map_err(|e| e.to_string());
    }
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(str::trim_start))
                .collect();
            serde_json::from_str::<Value>(&data.join("\n")).ok()
        })
        .find(|m| m["id"] == *id && m.get("method").is_none())
        .ok_or_else(|| format!("no answer to {id} in the stream"))
}

/// Protocol revision 2026-07-28: no session; "setup" is a `server/discover`, a call is one POST
/// carrying the revision's envelope and headers, answered with JSON.
struct ModernChannel {
    url: String,
}

impl ModernChannel {
    async fn send(&self, http: &reqwest::Client, msg: &Value) -> Result<Value, String> {
        let mut msg = msg.clone();
        let method = msg["method"].as_str().unwrap_or("").to_string();
        msg["params"]["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                        "io.modelcontextprotocol/clientCapabilities": {}});
        let mut r = http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", &method);
        if let Some(name) = msg["params"]["name"].as_str() {
            r = r.header("mcp-name", name);
        }
        let r = r
            .body(msg.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("status {}", r.status()));
        }
        r.json::<Value>().await.map_err(|e| e.to_string())
    }
}

impl Channel for ModernChannel {
    async fn open(run: &Run) -> Result<Self, String> {
        let c = ModernChannel {
            url: format!("{}/mcp", run.calls_base),
        };
        let probe = json!({"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {}});
        let answer = c.send(&run.http, &probe).await?;
        if answer.get("result").is_none() {
            return Err(format!("server/discover: {answer}"));
        }
        Ok(c)
    }

    async fn call(&mut self, run: &Run, msg: &Value) -> Result<Value, String> {
        self.send(&run.http, msg).await
    }
}

/// One session of a run: set up (in a wave), wait until all are open (memory is sampled in
/// between), make the calls, check every reply.
async fn session<C: Channel>(run: Arc<Run>, i: usize) -> SessionResult<Option<C>> {
    let permit = run.wave.clone().acquire_owned().await.unwrap();
    let started = Instant::now();
    let setup = C::open(&run).await;
    let setup_time = started.elapsed();
    drop(permit);
    let mut channel = match setup {
        Ok(c) => c,
        Err(e) => {
            eprintln!("session {i}: setup failed: {e}");
            run.errors.fetch_add(1, Ordering::Relaxed);
            run.barrier.wait().await;
            run.barrier.wait().await;
            return (None, vec![], None);
        }
    };
    run.barrier.wait().await;
    run.barrier.wait().await;
    let mut rtts = Vec::with_capacity(run.o.calls);
    for j in 0..run.o.calls {
        let id = j as u64 + 1;
        let (params, payload) = call(&run.o.child, i, j);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        let t = Instant::now();
        let v = match channel.call(&run, &msg).await {
            Ok(v) => v,
            Err(e) => {
                eprintln!("session {i}: call failed: {e}");
                run.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        rtts.push(t.elapsed());
        if v["id"] != id || !reply_matches(&v, &payload) {
            run.misrouted.fetch_add(1, Ordering::Relaxed);
        }
    }
    (Some(setup_time), rtts, Some(channel))
}

async fn mcp_post(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: &Value,
) -> Result<reqwest::Response, String> {
    let mut r = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_string());
    if let Some(s) = session {
        r = r.header("mcp-session-id", s);
    }
    let r = r.send().await.map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("status {}", r.status()));
    }
    Ok(r)
}

/// One session's setup time (`None` if setup failed), call round trips, and what it keeps open.
type SessionResult<K> = (Option<Duration>, Vec<Duration>, K);

struct Measured {
    setup: Vec<Duration>,
    rtt: Vec<Duration>,
    elapsed: Duration,
    /// RSS (KiB) of the measured process and of its descendants, with all sessions idle.
    rss: (u64, u64),
}

/// Drives one run's session tasks through its two barriers: all sessions open → sample memory
/// → all call → collect. `K` is what a task keeps alive until everyone is done.
async fn measure<K>(
    barrier: &Barrier,
    tasks: Vec<tokio::task::JoinHandle<SessionResult<K>>>,
    rss_of: u32,
) -> Measured {
    barrier.wait().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_tree(rss_of);
    let started = Instant::now();
    barrier.wait().await;
    let (mut setup, mut rtt, mut keep) = (vec![], vec![], vec![]);
    for t in tasks {
        let (s, r, k) = t.await.unwrap();
        setup.extend(s);
        rtt.extend(r);
        keep.push(k);
    }
    let elapsed = started.elapsed();
    drop(keep);
    Measured {
        setup,
        rtt,
        elapsed,
        rss,
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Result<(), String> {
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 202 {
        return Err(format!("status {}", r.status()));
    }
    Ok(())
}

async fn run_sse(o: Opts) -> Report {
    let (mut gateway, base) = match &o.target {
        Some(target) => (None, target.trim_end_matches('/').to_string()),
        None => {
            let (g, base) = start_gateway(&o).await;
            (Some(g), base)
        }
    };
    if o.settle > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(o.settle)).await;
    }
    let pid = gateway.as_ref().and_then(|g| g.id()).unwrap_or(0);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let o = Arc::new(o);
    let barrier = Arc::new(Barrier::new(o.sessions + 1));
    let misrouted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // Open sessions in waves so a thousand spawns do not all land in the same millisecond.
    let calls_base = o
        .call_target
        .as_deref()
        .map_or_else(|| base.clone(), |t| t.trim_end_matches('/').to_string());
    let run = Arc::new(Run {
        http,
        base,
        calls_base,
        o: o.clone(),
        barrier: barrier.clone(),
        misrouted: misrouted.clone(),
        errors: errors.clone(),
        wave: Arc::new(tokio::sync::Semaphore::new(o.wave.max(1))),
    });
    let (m, mode) = if o.mode == "modern" {
        let tasks: Vec<_> = (0..o.sessions)
            .map(|i| tokio::spawn(session::<ModernChannel>(run.clone(), i)))
            .collect();
        (
            measure(&barrier, tasks, pid).await,
            "gateway (2026-07-28, no session)",
        )
    } else if o.mode == "mcp" {
        let tasks: Vec<_> = (0..o.sessions)
            .map(|i| tokio::spawn(session::<McpChannel>(run.clone(), i)))
            .collect();
        (
            measure(&barrier, tasks, pid).await,
            "gateway (Streamable HTTP)",
        )
    } else {
        let tasks: Vec<_> = (0..o.sessions)
            .map(|i| tokio::spawn(session::<SseChannel>(run.clone(), i)))
            .collect();
        (measure(&barrier, tasks, pid).await, "gateway (SSE)")
    };
    if let Some(g) = gateway.as_mut() {
        let _ = g.kill().await;
    }
    Report {
        mode: mode.into(),
        backend: o.backend.clone(),
        child: o.child.clone(),
        sessions: o.sessions,
        calls: o.calls,
        setup: m.setup,
        rtt: m.rtt,
        elapsed: m.elapsed,
        misrouted: misrouted.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        gateway_rss_kib: m.rss.0,
        children_rss_kib: m.rss.1,
    }
}

async fn run_stdio(o: Opts) -> Report {
    let o = Arc::new(o);
    let barrier = Arc::new(Barrier::new(o.sessions + 1));
    let misrouted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![];
    for i in 0..o.sessions {
        let (o, barrier, misrouted, errors) = (
            o.clone(),
            barrier.clone(),
            misrouted.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut cmd = if o.child == "echo" {
                Command::new(&o.fixture)
            } else {
                let mut c = Command::new(&o.bin);
                c.args(["--stdio", "--base-url", &o.upstream]).env("RUST_LOG", "warn");
                c
            };
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn child");
            let mut stdin = child.stdin.take().unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "loadgen", "version": "1"}}});
            stdin.write_all(format!("{init}\n").as_bytes()).await.unwrap();
            let _ = lines.next_line().await;
            stdin
                .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
                .await
                .unwrap();
            let setup = started.elapsed();
            barrier.wait().await;
            barrier.wait().await;
            let mut rtts = Vec::with_capacity(o.calls);
            for j in 0..o.calls {
                let id = j as u64 + 1;
                let (params, payload) = call(&o.child, i, j);
                let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
                let t = Instant::now();
                stdin.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
                let Ok(Some(line)) = lines.next_line().await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                rtts.push(t.elapsed());
                let v: Value = serde_json::from_str(&line).unwrap_or_default();
                if v["id"] != id || !reply_matches(&v, &payload) {
                    misrouted.fetch_add(1, Ordering::Relaxed);
                }
            }
            (Some(setup), rtts, child)
        }));
    }
    // The load generator is the parent of the children here.
    let m = measure(&barrier, tasks, std::process::id()).await;
    Report {
        mode: "direct stdio".into(),
        backend: "-".into(),
        child: o.child.clone(),
        sessions: o.sessions,
        calls: o.calls,
        setup: m.setup,
        rtt: m.rtt,
        elapsed: m.elapsed,
        misrouted: misrouted.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        gateway_rss_kib: 0,
        children_rss_kib: m.rss.1,
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    raise_fd_limit();
    let args: Vec<String> = std::env::args().collect();
    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap();
    let release = examples.parent().unwrap();
    let fake = fake_upstream::FakeUpstream::start(fake_upstream::Behaviour::Normal).await;
    if let Some(prefix) = arg(&args, "--tool-prefix") {
        let _ = TOOL_PREFIX.set(prefix);
    }
    let base = Opts {
        mode: arg(&args, "--mode").unwrap_or_else(|| "sse".into()),
        backend: arg(&args, "--backend").unwrap_or_else(|| "per-session".into()),
        wave: arg(&args, "--wave").map_or(64, |s| s.parse().unwrap()),
        sessions: arg(&args, "--sessions").map_or(10, |s| s.parse().unwrap()),
        calls: arg(&args, "--calls").map_or(200, |s| s.parse().unwrap()),
        child: arg(&args, "--child").unwrap_or_else(|| "echo".into()),
        bin: arg(&args, "--bin")
            .unwrap_or_else(|| release.join("aareguru-mcp").to_string_lossy().into_owned()),
        fixture: examples
            .join("fixture_server")
            .to_string_lossy()
            .into_owned(),
        upstream: fake.base_url(),
        target: arg(&args, "--target"),
        gw_args: arg(&args, "--gw-args")
            .map(|a| a.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        child_command: arg(&args, "--child-command")
            .map(|a| a.split_whitespace().map(String::from).collect()),
        settle: arg(&args, "--settle").map_or(0.0, |s| s.parse().unwrap()),
        call_target: arg(&args, "--call-target"),
    };
    if let Some(file) = arg(&args, "--regression") {
        let ok = regression::run(&base, &file, args.iter().any(|a| a == "--update")).await;
        std::process::exit(if ok { 0 } else { 1 });
    }
    let print = |mut r: Report| {
        #[allow(clippy::disallowed_macros)]
        {
            println!("{}", r.row());
        }
    };
    #[allow(clippy::disallowed_macros)]
    {
        println!("{}", Report::header());
    }
    if args.iter().any(|a| a == "--matrix") {
        let children: Vec<String> = arg(&args, "--children")
            .map(|c| c.split(',').map(String::from).collect())
            .unwrap_or_else(|| vec!["echo".into(), "aareguru".into()]);
        for child in children {
            let backends: &[&str] = if child == "echo" {
                &["per-session", "shared"]
            } else {
                &["per-session", "shared", "in-process"]
            };
            // Throughput and round trip.
            for (sessions, calls) in [(1, 5000), (100, 200), (1000, 20)] {
                let mut runs = vec![("stdio", "-")];
                runs.extend(backends.iter().map(|b| ("sse", *b)));
                runs.extend(backends.iter().map(|b| ("mcp", *b)));
                for (mode, backend) in runs {
                    if mode == "stdio" && sessions == 1000 {
                        continue;
                    }
                    let o = Opts {
                        mode: mode.into(),
                        backend: backend.into(),
                        sessions,
                        calls,
                        child: child.clone(),
                        ..base.clone()
                    };
                    print(if mode == "stdio" {
                        run_stdio(o).await
                    } else {
                        run_sse(o).await
                    });
                }
            }
            // Setup latency, one session at a time.
            for mode in ["sse", "mcp"] {
                for backend in backends {
                    let o = Opts {
                        mode: mode.into(),
                        backend: (*backend).into(),
                        sessions: 200,
                        calls: 1,
                        wave: 1,
                        child: child.clone(),
                        ..base.clone()
                    };
                    print(run_sse(o).await);
                }
            }
            // 10 000 idle sessions where no process per session is needed.
            for mode in ["sse", "mcp"] {
                for backend in backends.iter().filter(|b| **b != "per-session") {
                    let o = Opts {
                        mode: mode.into(),
                        backend: (*backend).into(),
                        sessions: 10_000,
                        calls: 0,
                        child: child.clone(),
                        ..base.clone()
                    };
                    print(run_sse(o).await);
                }
            }
        }
    } else {
        let r = if base.mode == "stdio" {
            run_stdio(base.clone()).await
        } else {
            run_sse(base.clone()).await
        };
        let failed = r.misrouted > 0 || r.errors > 0;
        print(r);
        if failed {
            std::process::exit(1);
        }
    }
}
