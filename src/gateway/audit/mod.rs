//! The audit log: one JSON line per `tools/call`, `prompts/get` and `resources/read` — who
//! (subject, key, client), what (server, member, name, a SHA-256 of the canonical arguments,
//! the arguments themselves only when turned on and redacted), how it ended and how long it
//! took. A line is written into a bounded buffer shared with a writer thread (standard error,
//! or a file rotated by size with `file-rotate`), which takes what gathered every few
//! milliseconds: a call never waits for the disk, allocates nothing for its line and wakes no
//! thread; a line that finds the buffer full is dropped and counted.
//!
//! Owns: what a line says and how it is written. Must not touch: where calls are seen (the
//! layer in `servers/calls.rs`), HTTP.

use std::{
    cell::RefCell,
    io::Write,
    sync::{Arc, atomic::AtomicBool, atomic::Ordering},
    time::Duration,
};

use parking_lot::{Condvar, Mutex};
use prometheus_client::metrics::counter::Counter;
use serde_json::Value;

#[cfg(test)]
use self::digest::canonical;
use self::digest::scalar;
pub use self::digest::{Sha256Digest, canonical_sha256, canonical_sha256_of};
use crate::{config::AuditConfig, gateway::caller::Caller};

mod digest;

/// Bytes of lines that may wait for the writer before new ones are dropped (some 60 000
/// lines of ~500 bytes).
const BUFFER: usize = 32 << 20;

/// How long the writer lets lines gather between writes (32 MiB fill in that time only
/// above 6 million calls a second).
const GATHER: Duration = Duration::from_millis(10);

/// The most the writer hands the file in one write: a rotation (after a write that passes
/// the size) comes between whole lines and at most this far past the size.
const CHUNK: usize = 256 * 1024;

/// How a call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answered with a result.
    Ok,
    /// Answered with a result flagged `isError` (the tool ran and failed).
    ToolError,
    /// Answered with a JSON-RPC error.
    Error { code: i64, message: String },
    /// Never answered: the session ended first, or the call could not be sent on. Written as
    /// `error` with the reason and no code (no JSON-RPC error was given).
    Unanswered { reason: String },
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
            Outcome::Error { .. } | Outcome::Unanswered { .. } => "error",
            Outcome::Denied { .. } => "denied",
            Outcome::Limited { .. } => "limited",
            Outcome::Cancelled => "cancelled",
            Outcome::TimedOut => "timed_out",
        }
    }

    /// The outcome a JSON-RPC error answer tells (-32001 is a timeout).
    pub fn of_error(code: i64, message: String) -> Outcome {
        match code {
            -32001 => Outcome::TimedOut,
            _ => Outcome::Error { code, message },
        }
    }
}

/// A client's name and version, from its `initialize`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientInfo {
    pub name: String,
    pub version: String,
}

/// One call, as the layer saw it. The parts every call of a session shares are shared.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// Who called (its subject and key); `None` for the gateway's own requests.
    pub caller: Option<Arc<Caller>>,
    pub client: Option<Arc<ClientInfo>>,
    pub session: Arc<str>,
    pub server: Arc<str>,
    pub member: Option<String>,
    pub method: &'static str,
    /// The tool's or prompt's name, or the resource's URI.
    pub name: String,
    pub duration: Duration,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub arguments_sha256: Option<Sha256Digest>,
    pub arguments: Option<Value>,
}

/// The audit log's writer side, shared by every server's layer.
pub struct Audit {
    config: AuditConfig,
    replica: String,
    shared: Arc<Shared>,
    dropped: Counter,
    written: Counter,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The newest lines, kept for the console (`--console`); `None` without it.
    recent: std::sync::OnceLock<Mutex<std::collections::VecDeque<Box<[u8]>>>>,
}

/// Lines the console keeps.
const RECENT: usize = 200;

/// What the calls and the writer share.
struct Shared {
    pending: Mutex<Pending>,
    /// Set at the close: the writer writes what is left and stops; later lines are dropped.
    closed: AtomicBool,
    wake: Condvar,
}

/// Lines not yet written.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: u64,
}

thread_local! {
    /// Where a line is written before it is copied into the shared buffer (the lock is held
    /// only for the copy).
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
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
        let audit = Audit::start(config, replica_name(cluster_id), written, dropped)?;
        if gateway.console.is_some() {
            let _ = audit.recent.set(Mutex::default());
        }
        Ok(Some(audit))
    }

    /// Opens the log (a file's directory must exist) and starts its writer thread.
    pub fn start(
        config: &AuditConfig,
        replica: String,
        written: Counter,
        dropped: Counter,
    ) -> anyhow::Result<Arc<Audit>> {
        let (sink, chunk): (Box<dyn Write + Send>, usize) = match &config.file {
            None => (Box::new(std::io::stderr()), CHUNK),
            Some(path) => {
                // Fail at start, clearly, rather than lose every line later.
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot open the audit log {}: {e}", path.display())
                    })?;
                let file = file_rotate::FileRotate::new(
                    path,
                    file_rotate::suffix::AppendCount::new(config.keep),
                    file_rotate::ContentLimit::BytesSurpassed(config.max_bytes as usize),
                    file_rotate::compression::Compression::None,
                    None,
                );
                (Box::new(file), CHUNK.min(config.max_bytes.max(1) as usize))
            }
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                bytes: Vec::with_capacity(1 << 20),
                lines: 0,
            }),
            closed: AtomicBool::new(false),
            wake: Condvar::new(),
        });
        let writer = std::thread::Builder::new()
            .name("audit-log".into())
            .spawn({
                let (shared, written) = (shared.clone(), written.clone());
                move || write_lines(&shared, sink, chunk, &written)
            })?;
        Ok(Arc::new(Audit {
            config: config.clone(),
            replica,
            shared,
            dropped,
            written,
            writer: Mutex::new(Some(writer)),
            recent: std::sync::OnceLock::new(),
        }))
    }

    /// The newest lines (as written, oldest first), with the console on; none without it.
    pub fn recent(&self) -> Vec<Value> {
        let Some(recent) = self.recent.get() else {
            return vec![];
        };
        let lines: Vec<Box<[u8]>> = recent.lock().iter().cloned().collect();
        lines
            .iter()
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect()
    }

    /// Whether lines carry the (redacted) arguments.
    pub fn with_arguments(&self) -> bool {
        self.config.arguments
    }

    /// The arguments as a line shows them: the configured keys' values replaced.
    pub fn redacted(&self, arguments: &Value) -> Value {
        redact(arguments, &self.config.redact)
    }

    /// Adds the line for `entry`; never waits for the writer (a full buffer drops it,
    /// counted).
    pub fn record(&self, entry: &Entry, outcome: &Outcome) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            self.line(entry, outcome, line);
            if let Some(recent) = self.recent.get() {
                let mut recent = recent.lock();
                if recent.len() == RECENT {
                    recent.pop_front();
                }
                recent.push_back(line.as_slice().into());
            }
            let mut pending = self.shared.pending.lock();
            let first = pending.lines == 0;
            self.append(&mut pending, line);
            drop(pending);
            // The writer sleeps while nothing is pending; the first line of a batch wakes it.
            if first {
                self.shared.wake.notify_one();
            }
        });
    }

    /// Copies a line into the buffer (its lock held), or drops it, counted, when the buffer is
    /// full or the log closed.
    fn append(&self, pending: &mut Pending, line: &[u8]) {
        if self.shared.closed.load(Ordering::Acquire) || pending.bytes.len() + line.len() > BUFFER {
            self.dropped.inc();
            return;
        }
        pending.bytes.extend_from_slice(line);
        pending.lines += 1;
    }

    /// The line for `entry`, written by hand (the keys are fixed text; only the values are
    /// escaped), in the order and form serde_json would write it.
    fn line(&self, e: &Entry, outcome: &Outcome, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        write_time(jiff::Timestamp::now(), out);
        out.extend_from_slice(b"\",\"replica\":");
        scalar(out, self.replica.as_str());
        out.extend_from_slice(b",\"subject\":");
        scalar(out, e.caller.as_ref().map_or("", |c| c.subject.as_str()));
        out.extend_from_slice(b",\"key\":");
        let key = e.caller.as_ref().and_then(|c| Some(&*c.key.as_ref()?.name));
        scalar(out, &key);
        out.extend_from_slice(b",\"client\":");
        match &e.client {
            Some(c) => {
                out.extend_from_slice(b"{\"name\":");
                scalar(out, c.name.as_str());
                out.extend_from_slice(b",\"version\":");
                scalar(out, c.version.as_str());
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"session\":");
        scalar(out, &*e.session);
        out.extend_from_slice(b",\"server\":");
        scalar(out, &*e.server);
        out.extend_from_slice(b",\"member\":");
        scalar(out, &e.member);
        out.extend_from_slice(b",\"method\":");
        scalar(out, e.method);
        out.extend_from_slice(b",\"name\":");
        scalar(out, e.name.as_str());
        out.extend_from_slice(b",\"outcome\":\"");
        out.extend_from_slice(outcome.name().as_bytes());
        out.push(b'"');
        match outcome {
            Outcome::Denied { rule } => {
                out.extend_from_slice(b",\"rule\":");
                scalar(out, rule.as_str());
            }
            Outcome::Limited { limit } => {
                out.extend_from_slice(b",\"limit\":");
                scalar(out, limit.as_str());
            }
            Outcome::Error { code, message } => {
                out.extend_from_slice(b",\"error\":{\"code\":");
                scalar(out, code);
                out.extend_from_slice(b",\"message\":");
                scalar(out, message.as_str());
                out.push(b'}');
            }
            Outcome::Unanswered { reason } => {
                out.extend_from_slice(b",\"error\":{\"message\":");
                scalar(out, reason.as_str());
                out.push(b'}');
            }
            Outcome::Ok | Outcome::ToolError | Outcome::Cancelled | Outcome::TimedOut => {}
        }
        let ms = e.duration.as_secs_f64() * 1000.0;
        out.extend_from_slice(b",\"durationMs\":");
        scalar(out, &((ms * 1000.0).round() / 1000.0));
        out.extend_from_slice(b",\"bytesIn\":");
        scalar(out, &e.bytes_in);
        out.extend_from_slice(b",\"bytesOut\":");
        scalar(out, &e.bytes_out);
        out.extend_from_slice(b",\"argumentsSha256\":");
        scalar(out, &e.arguments_sha256);
        if let Some(arguments) = &e.arguments {
            out.extend_from_slice(b",\"arguments\":");
            scalar(out, arguments);
        }
        out.extend_from_slice(b"}\n");
    }

    /// Writes what is pending and stops the writer (at the gateway's stop); lines recorded
    /// afterwards are dropped and counted.
    pub async fn close(self: &Arc<Self>) {
        let Some(writer) = self.writer.lock().take() else {
            return;
        };
        {
            // Under the lock, so a line is either in the last batch or dropped.
            let _pending = self.shared.pending.lock();
            self.shared.closed.store(true, Ordering::Release);
        }
        self.shared.wake.notify_one();
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }

    /// Lines written and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.written.get(), self.dropped.get())
    }
}

thread_local! {
    /// The second last written and its text up to the seconds (`2026-12-06T20:10:11`): a
    /// line's time is that and its milliseconds.
    static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
}

/// `time` in RFC 3339 (UTC) with milliseconds, as `{:.3}` writes it.
fn write_time(time: jiff::Timestamp, out: &mut Vec<u8>) {
    let (second, nanos) = (time.as_second(), time.subsec_nanosecond());
    // Before 1970 the fraction counts back: whole seconds are formatted the slow way.
    if nanos < 0 {
        out.extend_from_slice(format!("{time:.3}").as_bytes());
        return;
    }
    SECOND.with_borrow_mut(|(known, text)| {
        if *known != second {
            let whole = jiff::Timestamp::from_second(second).unwrap_or(time);
            *text = whole.to_string();
            text.pop(); // the `Z`
            *known = second;
        }
        out.extend_from_slice(text.as_bytes());
    });
    let ms = (nanos / 1_000_000) as u32;
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

/// The writer thread: `GATHER` after a batch's first line it takes the pending lines and
/// writes them in chunks of whole lines (so a rotation never splits one); idle, it sleeps; at
/// the close, what is left, then it stops.
fn write_lines(shared: &Shared, mut sink: Box<dyn Write + Send>, chunk: usize, written: &Counter) {
    let mut batch = Vec::with_capacity(1 << 20);
    loop {
        let (lines, closing) = {
            let mut pending = shared.pending.lock();
            // Idle, it sleeps until a line comes (or the close).
            while pending.lines == 0 && !shared.closed.load(Ordering::Acquire) {
                shared.wake.wait(&mut pending);
            }
            // Then it lets lines gather: calls add theirs without waking this thread, and a
            // batch is one write instead of many. The close wakes it.
            if !shared.closed.load(Ordering::Acquire) {
                shared.wake.wait_for(&mut pending, GATHER);
            }
            std::mem::swap(&mut pending.bytes, &mut batch);
            let lines = std::mem::take(&mut pending.lines);
            (lines, shared.closed.load(Ordering::Acquire))
        };
        if !batch.is_empty() {
            match write_chunks(&mut *sink, &batch, chunk) {
                Ok(()) => {
                    written.inc_by(lines);
                }
                Err(e) => tracing::warn!(error = %e, lines, "cannot write the audit log"),
            }
            batch.clear();
        }
        if closing {
            return;
        }
    }
}

/// `batch` (whole lines) written in pieces of at most `chunk` bytes that end at a line's end
/// (a longer line is one piece).
fn write_chunks(sink: &mut dyn Write, mut batch: &[u8], chunk: usize) -> std::io::Result<()> {
    while !batch.is_empty() {
        let end = match batch.len() <= chunk {
            true => batch.len(),
            false => match batch[..chunk].iter().rposition(|b| *b == b'\n') {
                Some(at) => at + 1,
                None => batch
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(batch.len(), |at| at + 1),
            },
        };
        sink.write_all(&batch[..end])?;
        batch = &batch[end..];
    }
    sink.flush()
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

#[cfg(test)]
mod tests;
