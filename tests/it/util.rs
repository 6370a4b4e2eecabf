//! Test harness: start the binary with a fake upstream and talk JSON-RPC to it over its pipes.

use parking_lot::Mutex;
use std::{collections::HashMap, process::Stdio, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::{mpsc, oneshot},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_aareguru-mcp");
pub const WAIT: Duration = Duration::from_secs(30);

/// Held by the tests that put hundreds of sessions or dozens of children on the machine (the
/// cluster's replicas with their balancer and load generator, the drop tests): on two cores, two
/// of them at once starved each other's heartbeats, lookups and reapers and failed checks that
/// pass whenever they run apart. Other tests still run beside them.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running `aareguru-mcp --stdio` with a line reader routing replies by id.
pub struct StdioServer {
    pub child: Child,
    stdin: Option<ChildStdin>,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>,
    /// Lines on stdout that were not JSON-RPC responses we waited for (notifications, junk).
    #[allow(dead_code)]
    pub other: mpsc::UnboundedReceiver<String>,
    /// Every stdout line, to check that stdout carries nothing but JSON.
    pub stdout_lines: Arc<Mutex<Vec<String>>>,
    next_id: i64,
}

impl StdioServer {
    pub async fn start(base_url: &str, extra_args: &[&str]) -> StdioServer {
        Self::start_with_env(base_url, extra_args, &[]).await
    }

    pub async fn start_with_env(
        base_url: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> StdioServer {
        Self::spawn(base_url, extra_args, env, false).await
    }

    /// Starts with stderr a pipe whose reading end is already closed (every log write fails).
    pub async fn start_with_closed_stderr(base_url: &str, extra_args: &[&str]) -> StdioServer {
        Self::spawn(base_url, extra_args, &[], true).await
    }

    async fn spawn(
        base_url: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
        closed_stderr: bool,
    ) -> StdioServer {
        let mut cmd = Command::new(BIN);
        cmd.arg("--stdio")
            .args(extra_args)
            .env("AAREGURU_BASE_URL", base_url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if closed_stderr {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn aareguru-mcp");
        drop(child.stderr.take());
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let pending: Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>> = Arc::default();
        let stdout_lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, other) = mpsc::unbounded_channel();
        let (p, lines) = (pending.clone(), stdout_lines.clone());
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().push(line.clone());
                let waiter = serde_json::from_str::<Value>(&line)
                    .ok()
                    .filter(|v| v.get("method").is_none())
                    .and_then(|v| {
                        let key = v.get("id")?.to_string();
                        Some((p.lock().remove(&key)?, v))
                    });
                match waiter {
                    Some((w, v)) => {
                        let _ = w.send(v);
                    }
                    None => {
                        let _ = tx.send(line);
                    }
                }
            }
        });
        StdioServer {
            child,
            stdin,
            pending,
            other,
            stdout_lines,
            next_id: 1,
        }
    }

    /// Starts and completes the initialize handshake.
    pub async fn initialized(base_url: &str, extra_args: &[&str]) -> StdioServer {
        let mut s = Self::start(base_url, extra_args).await;
        let init = s
            .request(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "it", "version": "1"}}),
            )
            .await;
        assert_eq!(
            init["result"]["serverInfo"]["name"], "aareguru-mcp",
            "{init}"
        );
        s.notify("notifications/initialized", json!({})).await;
        s
    }

    pub async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    pub async fn notify(&mut self, method: &str, params: Value) {
        let msg = json!({"jsonrpc": "2.0", "method": method, "params": params});
        self.send_line(&msg.to_string()).await;
    }

    /// Sends a request with a fresh integer id and returns a future-like receiver for its reply.
    pub async fn send_request(&mut self, method: &str, params: Value) -> oneshot::Receiver<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_with_id(json!(id), method, params).await
    }

    pub async fn send_with_id(
        &mut self,
        id: Value,
        method: &str,
        params: Value,
    ) -> oneshot::Receiver<Value> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id.to_string(), tx);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_line(&msg.to_string()).await;
        rx
    }

    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let rx = self.send_request(method, params).await;
        recv(rx).await
    }

    /// `tools/call` and return the result object (panics on a JSON-RPC error).
    pub async fn call(&mut self, tool: &str, args: Value) -> Value {
        let reply = self
            .request("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        reply
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("{tool}: expected a result, got {reply}"))
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("process did not exit")
            .unwrap();
        status.code()
    }
}

pub async fn recv(rx: oneshot::Receiver<Value>) -> Value {
    tokio::time::timeout(WAIT, rx)
        .await
        .expect("no reply within 30 s")
        .expect("reader ended")
}

/// The text of a tool result's content blocks.
pub fn text(result: &Value) -> String {
    result["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn is_error(result: &Value) -> bool {
    result["isError"] == json!(true)
}
