//! Harness for gateway tests: the real binary in `--sse` mode on port 0 (its address read from
//! its JSON log), and a minimal SSE client over reqwest.

use parking_lot::Mutex;
use std::{process::Stdio, sync::Arc, time::Duration};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

use crate::util::{BIN, WAIT};

/// Path of a compiled example (cargo test builds them next to the test binary).
pub fn example(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo build --examples`",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// The entry of server `name` in a `/health` body's `servers`.
pub fn health_server<'a>(health: &'a Value, name: &str) -> Option<&'a Value> {
    health["servers"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

pub struct Gateway {
    pub child: Child,
    pub base: String,
    /// Everything the gateway logged, for assertions.
    pub log: Arc<Mutex<Vec<String>>>,
    /// The task reading the gateway's stderr.
    log_reader: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Starts `aareguru-mcp --sse --port 0 ARGS`.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Gateway {
        Self::start_program(BIN, args, env).await
    }

    /// Like [`Gateway::start`] with another copy of the binary.
    pub async fn start_program(program: &str, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let mut all = vec!["--port", "0"];
        all.extend_from_slice(args);
        Self::start_exactly(program, &all, env).await
    }

    /// `PROGRAM --sse ARGS` (no port chosen for it).
    pub async fn start_exactly(program: &str, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let mut cmd = Command::new(program);
        cmd.args(["--sse", "--log-format", "json"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn gateway");
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let log2 = log.clone();
        let log_reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "gateway listening"
                {
                    let _ = tx.send(v["address"].as_str().unwrap_or("").to_string());
                }
                log2.lock().push(line);
            }
        });
        let addr = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("gateway did not start")
            .expect("gateway exited before listening");
        Gateway {
            child,
            base: format!("http://{addr}"),
            log,
            log_reader,
        }
    }

    /// The gateway in front of the fixture server.
    pub async fn with_fixture(args: &[&str]) -> Gateway {
        let fixture = example("fixture_server");
        let mut all: Vec<&str> = args.to_vec();
        all.push("--");
        all.push(&fixture);
        Gateway::start(&all, &[]).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn health(&self) -> Value {
        reqwest::get(self.url("/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls /health until `pred` holds (or panics after 30 s).
    pub async fn wait_health(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let h = self.health().await;
            if pred(&h) {
                return h;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: {h}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Closes the reading end of the gateway's stderr, as when a log collector dies.
    pub async fn stop_reading_log(&mut self) {
        self.log_reader.abort();
        let _ = (&mut self.log_reader).await;
    }

    pub fn log_text(&self) -> String {
        self.log.lock().join("\n")
    }
}

/// One SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// A client session: the SSE stream plus POSTs to its endpoint.
pub struct SseClient {
    pub http: reqwest::Client,
    /// Absolute POST URL from the `endpoint` event.
    pub endpoint: String,
    #[allow(dead_code)]
    pub session_id: String,
    events: mpsc::UnboundedReceiver<SseEvent>,
    /// Comment lines seen (keep-alives).
    pub comments: Arc<Mutex<usize>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl SseClient {
    pub async fn connect(gw: &Gateway) -> SseClient {
        Self::connect_with(gw, &[]).await.expect("GET /sse refused")
    }

    /// `n` sessions, each through the initialize handshake.
    pub async fn initialized_many(gw: &Gateway, n: usize) -> Vec<SseClient> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = SseClient::connect(gw).await;
            c.initialize().await;
            clients.push(c);
        }
        clients
    }

    /// Opens `/sse` with extra headers; `Err(status)` when refused.
    pub async fn connect_with(
        gw: &Gateway,
        headers: &[(&str, &str)],
    ) -> Result<SseClient, (u16, String)> {
        Self::connect_at(gw, "/sse", headers).await
    }

    /// Opens the SSE stream at `path` (e.g. `/servers/time/sse`) with extra headers.
    pub async fn connect_at(
        gw: &Gateway,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<SseClient, (u16, String)> {
        // The headers go with the POSTs too (credentials).
        let mut defaults = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            defaults.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let http = reqwest::Client::builder()
            .default_headers(defaults)
            .build()
            .unwrap();
        let resp = http.get(gw.url(path)).send().await.unwrap();
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            return Err((status, resp.text().await.unwrap_or_default()));
        }
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let (tx, mut events) = mpsc::unbounded_channel();
        let comments: Arc<Mutex<usize>> = Arc::default();
        let c2 = comments.clone();
        let reader = tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            let (mut event, mut data) = (String::new(), Vec::<String>::new());
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(i) = buf.find('\n') {
                    let line = buf[..i].trim_end_matches('\r').to_string();
                    buf.drain(..=i);
                    if line.is_empty() {
                        if !data.is_empty() || !event.is_empty() {
                            let _ = tx.send(SseEvent {
                                event: std::mem::take(&mut event),
                                data: data.join("\n"),
                            });
                            data.clear();
                        }
                    } else if let Some(c) = line.strip_prefix(':') {
                        let _ = c;
                        *c2.lock() += 1;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim_start().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
            }
        });
        let first = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("no endpoint event")
            .expect("stream ended before the endpoint event");
        assert_eq!(first.event, "endpoint");
        let endpoint = if first.data.starts_with("http") {
            first.data.clone()
        } else {
            gw.url(&first.data)
        };
        let session_id = endpoint.rsplit('=').next().unwrap().to_string();
        Ok(SseClient {
            http,
            endpoint,
            session_id,
            events,
            comments,
            reader,
        })
    }

    /// POSTs a message; returns the status.
    pub async fn post(&self, message: &Value) -> u16 {
        self.http
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .body(message.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The next `message` event's JSON, or `None` when the stream ended.
    pub async fn next_message(&mut self) -> Option<Value> {
        loop {
            let e = tokio::time::timeout(WAIT, self.events.recv())
                .await
                .expect("no event within 30 s")?;
            if e.event == "message" {
                return Some(serde_json::from_str(&e.data).expect("message data is JSON"));
            }
        }
    }

    /// The next `message` event within `within`, if any.
    pub async fn message_within(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .ok()??;
            if e.event == "message" {
                return Some(serde_json::from_str(&e.data).expect("message data is JSON"));
            }
        }
    }

    /// Calls a tool and returns the response (messages before it are returned too, in order).
    pub async fn call(&mut self, id: Value, tool: &str, args: Value) -> (Value, Vec<Value>) {
        let status = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": tool, "arguments": args}}))
            .await;
        assert_eq!(status, 202, "POST tools/call {tool}");
        let mut before = vec![];
        loop {
            let m = self.next_message().await.expect("stream ended");
            if m["id"] == id && m.get("method").is_none() {
                return (m, before);
            }
            before.push(m);
        }
    }

    /// Sends a request and waits for the response with its id (other messages are skipped).
    pub async fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        let status = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        assert_eq!(status, 202, "POST {method}");
        loop {
            let m = self.next_message().await.expect("stream ended");
            if m["id"] == id && m.get("method").is_none() {
                return m;
            }
        }
    }

    pub async fn initialize(&mut self) -> Value {
        self.initialize_with("2024-11-05", json!({})).await
    }

    /// The handshake with a protocol version and client capabilities.
    pub async fn initialize_with(&mut self, version: &str, capabilities: Value) -> Value {
        let r = self
            .request(
                json!(0),
                "initialize",
                json!({"protocolVersion": version, "capabilities": capabilities,
                       "clientInfo": {"name": "it", "version": "1"}}),
            )
            .await;
        assert!(r["result"]["serverInfo"].is_object(), "{r}");
        let s = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(s, 202);
        r
    }

    /// Whether the stream has ended within `within`.
    pub async fn ended_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Waits until no process's command line contains any of `markers` (panics after `within`).
pub async fn wait_until_gone(markers: &[&str], within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while markers.iter().any(|m| processes_with(m) > 0) {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Processes whose command line contains `marker`.
/// How many processes have `assignment` (`NAME=value`) in their environment: a process of this
/// test, where its program's path would also match other tests' processes.
pub fn processes_with_env(assignment: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == assignment.as_bytes()))
                .unwrap_or(false)
        })
        .count()
}

pub fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(marker)
                })
                .unwrap_or(false)
        })
        .count()
}

const BOTH: &str = "application/json, text/event-stream";

/// A minimal Streamable HTTP client bound to one URL (a balancer or a replica).
pub struct McpClient {
    pub http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    /// Sent with every request (credentials, `envFromHeaders`).
    pub headers: Vec<(String, String)>,
}

impl McpClient {
    pub fn new(base: &str) -> McpClient {
        McpClient {
            http: reqwest::Client::new(),
            url: format!("{base}/mcp"),
            session: None,
            headers: vec![],
        }
    }

    pub async fn post(&self, body: &Value) -> reqwest::Response {
        let mut r = self
            .http
            .post(&self.url)
            .header("accept", BOTH)
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18")
            .json(body);
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s);
        }
        for (k, v) in &self.headers {
            r = r.header(k, v);
        }
        r.send().await.expect("POST /mcp")
    }

    pub async fn initialize(&mut self) {
        let status = self.try_initialize().await;
        assert_eq!(status, 200);
    }

    /// The `initialize` POST and, when it succeeds, `initialized`; the status of the first.
    pub async fn try_initialize(&mut self) -> u16 {
        let r = self
            .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}}))
            .await;
        if r.status() != 200 {
            return r.status().as_u16();
        }
        self.session = Some(r.headers()["mcp-session-id"].to_str().unwrap().to_string());
        let _ = r.bytes().await;
        let r = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(r.status(), 202);
        200
    }

    /// A request answered with JSON: the status and the JSON-RPC response.
    pub async fn request(&self, id: u64, method: &str, params: Value) -> (u16, Value) {
        let r = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        let status = r.status().as_u16();
        (status, answer(r, id).await)
    }

    /// A `tools/call` answered with JSON; its status and (when 200) the response.
    pub async fn call(&self, id: u64, name: &str, args: Value) -> (u16, Value) {
        let r = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": name, "arguments": args}}))
            .await;
        let status = r.status().as_u16();
        (status, answer(r, id).await)
    }
}

/// The JSON-RPC answer to request `id` in a POST's response: its JSON body, or — when the
/// gateway streamed it with notifications first — the `message` event that answers `id`.
async fn answer(r: reqwest::Response, id: u64) -> Value {
    let streamed = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = r.text().await.unwrap_or_default();
    if !streamed {
        return serde_json::from_str(&body).unwrap_or(Value::Null);
    }
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(str::trim_start))
                .collect();
            serde_json::from_str::<Value>(&data.join("\n")).ok()
        })
        .find(|m| m["id"] == id && m.get("method").is_none())
        .unwrap_or(Value::Null)
}
