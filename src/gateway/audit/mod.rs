//! The audit log: one JSON line per `tools/call`, `prompts/get` and `resources/read` — who
//! (subject, key, client), what (server, member, name, a SHA-256 of the canonical arguments,
//! the arguments themselves only when turned on and redacted), how it ended and how long it
//! took. Lines go through a bounded queue to a writer thread (standard error, or a file rotated
//! by size with `file-rotate`): a call never waits for the disk, and a line that finds the
//! queue full is dropped and counted.
//!
//! Owns: what a line says and how it is written. Must not touch: where calls are seen (the
//! layer in `servers/calls.rs`), HTTP.

use std::{
    io::Write,
    sync::{
        Arc,
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    time::Duration,
};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::AuditConfig;

/// Lines that may wait for the writer before new ones are dropped.
const QUEUE: usize = 65_536;

/// How long the writer lets lines gather after each batch (65 536 lines fill the queue in that
/// time only above 6.5 million calls a second).
const GATHER: Duration = Duration::from_millis(10);

/// How a call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answered with a result.
    Ok,
    /// Answered with a result flagged `isError` (the tool ran and failed).
    ToolError,
    /// Answered with a JSON-RPC error (or never answered: the session ended).
    Error { code: i64, message: String },
    /// Refused by the rules (or the server's tool filter) before any server saw it.
    Denied { rule: String },
    /// Refused by a limit.
    Limited { limit: String },
    /// The client cancelled it (or went away) before the answer.
    Cancelled,
    /// Answered with a timeout error (-32001).
    TimedOut,
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Error { .. } => "error",
            Outcome::Denied { .. } => "denied",
            Outcome::Limited { .. } => "limited",
            Outcome::Cancelled => "cancelled",
            Outcome::TimedOut => "timed_out",
        }
    }

    /// The outcome an answer (a JSON-RPC response) tells.
    pub fn of_answer(answer: &Value) -> Outcome {
        if let Some(error) = answer.get("error") {
            let code = error["code"].as_i64().unwrap_or(0);
            if code == -32001 {
                return Outcome::TimedOut;
            }
            let message = error["message"].as_str().unwrap_or_default().to_string();
            return Outcome::Error { code, message };
        }
        match answer["result"]["isError"].as_bool() {
            Some(true) => Outcome::ToolError,
            _ => Outcome::Ok,
        }
    }
}

/// One call, as the layer saw it.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub subject: String,
    pub key: Option<String>,
    pub client: Option<(String, String)>,
    pub session: String,
    pub server: String,
    pub member: Option<String>,
    pub method: String,
    /// The tool's or prompt's name, or the resource's URI.
    pub name: String,
    pub duration: Duration,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub arguments_sha256: Option<String>,
    pub arguments: Option<Value>,
}

/// The audit log's writer side, shared by every server's layer.
pub struct Audit {
    config: AuditConfig,
    replica: String,
    tx: SyncSender<Message>,
    written: Counter,
    dropped: Counter,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

enum Message {
    Line(String),
    /// Everything before it is written; then the writer stops.
    Close,
}

impl Audit {
    /// The gateway's audit log, if `--audit-log` asks for one.
    pub fn of_gateway(
        gateway: &crate::config::GatewayConfig,
        metrics: &crate::gateway::metrics::Metrics,
    ) -> anyhow::Result<Option<Arc<Audit>>> {
        let Some(config) = &gateway.audit else {
            return Ok(None);
        };
        let cluster_id = gateway
            .cluster
            .as_ref()
            .and_then(|c| c.replica_id.as_deref());
        let (written, dropped) = (metrics.audit_lines.clone(), metrics.audit_dropped.clone());
        Audit::start(config, replica_name(cluster_id), written, dropped).map(Some)
    }

    /// Opens the log (a file's directory must exist) and starts its writer thread.
    pub fn start(
        config: &AuditConfig,
        replica: String,
        written: Counter,
        dropped: Counter,
    ) -> anyhow::Result<Arc<Audit>> {
        let sink: Box<dyn Write + Send> = match &config.file {
            None => Box::new(std::io::stderr()),
            Some(path) => {
                // Fail at start, clearly, rather than lose every line later.
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot open the audit log {}: {e}", path.display())
                    })?;
                Box::new(file_rotate::FileRotate::new(
                    path,
                    file_rotate::suffix::AppendCount::new(config.keep),
                    file_rotate::ContentLimit::BytesSurpassed(config.max_bytes as usize),
                    file_rotate::compression::Compression::None,
                    None,
                ))
            }
        };
        let (tx, rx) = sync_channel(QUEUE);
        let writer = std::thread::Builder::new()
            .name("audit-log".into())
            .spawn({
                let written = written.clone();
                move || write_lines(rx, sink, written)
            })?;
        Ok(Arc::new(Audit {
            config: config.clone(),
            replica,
            tx,
            written,
            dropped,
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// Whether lines carry the (redacted) arguments.
    pub fn with_arguments(&self) -> bool {
        self.config.arguments
    }

    /// The arguments as a line shows them: the configured keys' values replaced.
    pub fn redacted(&self, arguments: &Value) -> Value {
        redact(arguments, &self.config.redact)
    }

    /// Queues the line for `entry`; never waits (a full queue drops it, counted).
    pub fn record(&self, entry: Entry, outcome: &Outcome) {
        let line = self.line(entry, outcome);
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }

    fn line(&self, e: Entry, outcome: &Outcome) -> String {
        #[derive(serde::Serialize)]
        struct Client<'a> {
            name: &'a str,
            version: &'a str,
        }
        #[derive(serde::Serialize)]
        struct Error<'a> {
            code: i64,
            message: &'a str,
        }
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Line<'a> {
            time: String,
            replica: &'a str,
            subject: &'a str,
            key: Option<&'a str>,
            client: Option<Client<'a>>,
            session: &'a str,
            server: &'a str,
            member: Option<&'a str>,
            method: &'a str,
            name: &'a str,
            outcome: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            rule: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            limit: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<Error<'a>>,
            duration_ms: f64,
            bytes_in: usize,
            bytes_out: usize,
            arguments_sha256: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            arguments: Option<&'a Value>,
        }
        let ms = e.duration.as_secs_f64() * 1000.0;
        let line = Line {
            time: format!("{:.3}", jiff::Timestamp::now()),
            replica: &self.replica,
            subject: &e.subject,
            key: e.key.as_deref(),
            client: e
                .client
                .as_ref()
                .map(|(name, version)| Client { name, version }),
            session: &e.session,
            server: &e.server,
            member: e.member.as_deref(),
            method: &e.method,
            name: &e.name,
            outcome: outcome.name(),
            rule: match outcome {
                Outcome::Denied { rule } => Some(rule),
                _ => None,
            },
            limit: match outcome {
                Outcome::Limited { limit } => Some(limit),
                _ => None,
            },
            error: match outcome {
                Outcome::Error { code, message } => Some(Error {
                    code: *code,
                    message,
                }),
                _ => None,
            },
            duration_ms: (ms * 1000.0).round() / 1000.0,
            bytes_in: e.bytes_in,
            bytes_out: e.bytes_out,
            arguments_sha256: e.arguments_sha256.as_deref(),
            arguments: e.arguments.as_ref(),
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes what is queued and stops the writer (at the gateway's stop); lines recorded
    /// afterwards are dropped and counted.
    pub async fn close(self: &Arc<Self>) {
        let Some(writer) = self.writer.lock().take() else {
            return;
        };
        let tx = self.tx.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if tx.send(Message::Close).is_ok() {
                let _ = writer.join();
            }
        })
        .await;
    }

    /// Lines written and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.written.get(), self.dropped.get())
    }
}

/// The writer thread: takes what is queued in one batch of whole lines, so a rotation never
/// splits a line.
fn write_lines(rx: Receiver<Message>, mut sink: Box<dyn Write + Send>, written: Counter) {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Ok(first) = rx.recv() {
        let mut n = 0;
        let mut closing = false;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => {
                    batch.extend_from_slice(line.as_bytes());
                    n += 1;
                }
                Message::Close => closing = true,
            }
            if closing || batch.len() >= 256 * 1024 {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            if let Err(e) = sink.write_all(&batch).and_then(|()| sink.flush()) {
                tracing::warn!(error = %e, lines = n, "cannot write the audit log");
            } else {
                written.inc_by(n);
            }
            batch.clear();
        }
        if closing {
            return;
        }
        // Let lines gather: a sender finding the writer asleep (not waiting on the queue)
        // enqueues without waking it, and the next batch is one write instead of many.
        std::thread::sleep(GATHER);
    }
}

/// The replica's name in audit lines: its cluster id, else the host's name.
pub fn replica_name(cluster_id: Option<&str>) -> String {
    if let Some(id) = cluster_id {
        return id.to_string();
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match rc {
        0 => String::from_utf8_lossy(&buf[..end]).into_owned(),
        _ => String::new(),
    }
}

/// A key as matched for redaction: lower case, without `_` and `-`.
pub fn normalized_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// `value` with the values of keys containing one of `keys` (normalized) replaced.
fn redact(value: &Value, keys: &[String]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let nk = normalized_key(k);
                    if keys.iter().any(|r| nk.contains(r.as_str())) {
                        (k.clone(), Value::from("[redacted]"))
                    } else {
                        (k.clone(), redact(v, keys))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| redact(v, keys)).collect()),
        other => other.clone(),
    }
}

/// SHA-256 (hex) of `value` in canonical form: object keys sorted at every depth, no
/// whitespace, serde_json's forms of strings and numbers. Equal arguments hash equal whatever
/// order or spacing the client sent them in.
pub fn canonical_sha256(value: &Value) -> String {
    let mut text = String::new();
    canonical(value, &mut text);
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests;
