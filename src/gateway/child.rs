//! One stdio MCP child process: spawned in its own process group, stdin fed from a channel,
//! stdout framed on bytes into JSON-RPC lines, stderr logged with the session id, and a shutdown
//! that closes stdin, then signals the whole group (SIGTERM, then SIGKILL) so no grandchild
//! survives.

use std::{
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    process::{ChildStderr, Command},
    sync::{Notify, mpsc, watch},
};
use tokio_util::sync::CancellationToken;

use crate::config::ChildCommand;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// Exited on its own with status 0.
    Exited,
    /// Exited with a non-zero status or was killed by a signal it was not sent by us.
    Crashed,
    /// Ended because we terminated it.
    Terminated,
}

impl ExitCause {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitCause::Exited => "exited",
            ExitCause::Crashed => "crashed",
            ExitCause::Terminated => "terminated",
        }
    }
}

/// What the child said or did, in order, to whoever owns it.
#[derive(Debug)]
pub enum ChildEvent {
    /// One JSON line from stdout (without the newline).
    Line(Bytes),
    /// A line longer than the limit: its first bytes (to find an id) and its length (without
    /// the newline).
    TooLong { prefix: Bytes, len: usize },
    /// Stdout closed and the process was reaped; always the last event.
    Exited { cause: ExitCause, detail: String },
}

/// Lines waiting for a child's input. Pushing never blocks (a multiplexer can enqueue while
/// holding its lock, in order); callers bound the queue with [`Stdin::wait_room`] first.
#[derive(Clone)]
pub struct Stdin {
    tx: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

/// The child no longer reads its input.
#[derive(Debug)]
pub struct StdinClosed;

impl Stdin {
    /// A queue and the receiving end for the writer task.
    pub fn channel() -> (Stdin, StdinRx) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let drained = Arc::new(Notify::new());
        (
            Stdin {
                tx,
                queued: queued.clone(),
                drained: drained.clone(),
            },
            StdinRx {
                rx,
                queued,
                drained,
            },
        )
    }

    /// Queues one line (without newline).
    pub fn push(&self, line: Bytes) -> Result<(), StdinClosed> {
        let len = line.len();
        self.queued.fetch_add(len, Ordering::Relaxed);
        self.tx.send(line).map_err(|_| {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            StdinClosed
        })
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Waits until fewer than `limit` bytes are queued; false if that takes longer than
    /// `within` (the child is not reading).
    pub async fn wait_room(&self, limit: usize, within: Duration) -> bool {
        if self.queued_bytes() < limit {
            return true;
        }
        tokio::time::timeout(within, async {
            loop {
                let drained = self.drained.notified();
                if self.queued_bytes() < limit || self.is_closed() {
                    return;
                }
                drained.await;
            }
        })
        .await
        .is_ok()
    }
}

/// The writer's end of a [`Stdin`].
pub struct StdinRx {
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

impl StdinRx {
    async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    fn try_recv(&mut self) -> Option<Bytes> {
        self.rx.try_recv().ok()
    }

    fn written(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::Relaxed);
        self.drained.notify_waiters();
    }
}

/// A running child. Dropping it does not kill it; call [`ChildProcess::terminate`].
pub struct ChildProcess {
    pub pid: u32,
    /// Lines for the child's stdin (without newline).
    stdin: Stdin,
    /// Cancelled to close the child's stdin, whoever still holds a sender.
    close_stdin: CancellationToken,
    /// Flips to true when the process has been reaped.
    exited: watch::Receiver<bool>,
    /// Set when we began terminating, so the exit is not reported as a crash.
    terminating: watch::Sender<bool>,
}

impl ChildProcess {
    /// Spawns `cmd`; events arrive on the returned receiver.
    pub fn spawn(
        cmd: &ChildCommand,
        session: &str,
        max_line: usize,
    ) -> std::io::Result<(ChildProcess, mpsc::Receiver<ChildEvent>)> {
        let mut command = Command::new(&cmd.program);
        if let Some(arg0) = &cmd.arg0 {
            command.arg0(arg0);
        }
        command
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so signals reach `sh -c` and `npx` grandchildren too.
            .process_group(0)
            .kill_on_drop(false);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGTERM the child if
        // the gateway dies without cleaning up (e.g. SIGKILL), so children are never orphaned.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        let (line_tx, line_rx) = Stdin::channel();
        let (event_tx, event_rx) = mpsc::channel::<ChildEvent>(1024);
        let (exited_tx, exited_rx) = watch::channel(false);
        let (terminating_tx, terminating_rx) = watch::channel(false);

        let close_stdin = CancellationToken::new();
        tokio::spawn(write_lines(
            stdin,
            line_rx,
            close_stdin.clone(),
            session.to_string(),
        ));
        tokio::spawn(log_stderr(stderr, session.to_string()));
        let session = session.to_string();
        tokio::spawn(async move {
            let reader = {
                let (events, session) = (event_tx.clone(), session.clone());
                tokio::spawn(async move { read_lines(stdout, max_line, &events, &session).await })
            };
            // Watch the process, not the pipe: a grandchild holding stdout open must not hide
            // the child's exit.
            let status = child.wait().await;
            let _ = exited_tx.send(true);
            // Deliver what the child wrote before it exited.
            if tokio::time::timeout(Duration::from_millis(500), reader)
                .await
                .is_err()
            {
                tracing::debug!(session = %session, "stdout still held open after the child exited");
            }
            let terminated = *terminating_rx.borrow();
            let (cause, detail) = match status {
                Ok(s) if terminated => (ExitCause::Terminated, s.to_string()),
                Ok(s) if s.success() => (ExitCause::Exited, s.to_string()),
                Ok(s) => (ExitCause::Crashed, s.to_string()),
                Err(e) => (ExitCause::Crashed, format!("wait failed: {e}")),
            };
            // The leader is gone; make sure nothing else of its group lingers.
            if pid != 0 && group_alive(pid) {
                signal_group(pid, libc::SIGTERM);
                signal_group(pid, libc::SIGKILL);
            }
            tracing::debug!(session = %session, pid, cause = cause.as_str(), %detail, "child ended");
            let _ = event_tx.send(ChildEvent::Exited { cause, detail }).await;
        });
        Ok((
            ChildProcess {
                pid,
                stdin: line_tx,
                close_stdin,
                exited: exited_rx,
                terminating: terminating_tx,
            },
            event_rx,
        ))
    }

    /// A handle for writing lines to the child's stdin.
    pub fn stdin(&self) -> Stdin {
        self.stdin.clone()
    }

    pub fn has_exited(&self) -> bool {
        *self.exited.borrow()
    }

    /// Closes stdin, waits up to `grace`, SIGTERMs the group, waits up to `grace`, SIGKILLs the
    /// group. Returns once the child has been reaped (or after the SIGKILL).
    pub async fn terminate(&mut self, grace: Duration) {
        let _ = self.terminating.send(true);
        self.close_stdin.cancel();
        if self.wait_exit(grace).await {
            self.reap_group();
            return;
        }
        signal_group(self.pid, libc::SIGTERM);
        if self.wait_exit(grace).await {
            self.reap_group();
            return;
        }
        signal_group(self.pid, libc::SIGKILL);
        self.wait_exit(Duration::from_secs(2)).await;
    }

    /// SIGKILLs whatever remains of the group after the leader exited (orphaned grandchildren).
    fn reap_group(&self) {
        if group_alive(self.pid) {
            signal_group(self.pid, libc::SIGTERM);
            signal_group(self.pid, libc::SIGKILL);
        }
    }

    async fn wait_exit(&mut self, within: Duration) -> bool {
        let mut exited = self.exited.clone();
        tokio::time::timeout(within, exited.wait_for(|e| *e))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

fn signal_group(pgid: u32, signal: libc::c_int) {
    if pgid == 0 {
        return;
    }
    // SAFETY: killpg only sends a signal; a stale or empty group yields ESRCH, which is fine.
    unsafe {
        libc::killpg(pgid as libc::pid_t, signal);
    }
}

/// Whether any process of group `pgid` still exists.
fn group_alive(pgid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    pgid != 0 && unsafe { libc::killpg(pgid as libc::pid_t, 0) } == 0
}

/// Writes queued lines to `sink` (a child's stdin or an in-memory pipe) until the queue ends
/// or `close` is cancelled, then closes the sink.
pub async fn write_lines(
    sink: impl AsyncWrite + Unpin,
    mut lines: StdinRx,
    close: CancellationToken,
    session: String,
) {
    // Small: thousands of idle sessions each hold one; larger writes bypass it.
    let mut out = tokio::io::BufWriter::with_capacity(8 * 1024, sink);
    loop {
        let line = tokio::select! {
            biased;
            _ = close.cancelled() => break,
            line = lines.recv() => match line {
                Some(line) => line,
                None => break,
            },
        };
        let mut written = line.len();
        let mut result = write_line(&mut out, &line).await;
        // Coalesce whatever else is already queued into the same flush.
        while result.is_ok() {
            match lines.try_recv() {
                Some(more) => {
                    written += more.len();
                    result = write_line(&mut out, &more).await;
                }
                None => break,
            }
        }
        let result = result.and(out.flush().await);
        lines.written(written);
        if let Err(e) = result {
            tracing::debug!(session = %session, error = %e, "child stdin closed");
            return;
        }
    }
    // Closing the pipe is the polite request to exit.
    let _ = out.shutdown().await;
}

async fn write_line<W: AsyncWriteExt + Unpin>(out: &mut W, line: &[u8]) -> std::io::Result<()> {
    out.write_all(line).await?;
    out.write_all(b"\n").await
}

async fn log_stderr(stderr: ChildStderr, session: String) {
    let mut lines = BufReader::new(stderr).split(b'\n');
    while let Ok(Some(mut line)) = lines.next_segment().await {
        line.truncate(8 * 1024);
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if !text.is_empty() {
            tracing::info!(target: "aareguru_mcp::child", session = %session, "{text}");
        }
    }
}

/// Frames `source` (a child's stdout or an in-memory pipe) into events until it ends.
pub async fn read_lines(
    mut stdout: impl AsyncRead + Unpin,
    max_line: usize,
    events: &mpsc::Sender<ChildEvent>,
    session: &str,
) {
    let mut framer = LineFramer::new(max_line);
    // Starts small (an idle session holds it while waiting) and doubles, up to a pipe's
    // capacity, whenever a read fills it.
    let mut chunk = 4 * 1024;
    let mut buf = BytesMut::new();
    loop {
        buf.reserve(chunk);
        let room = buf.capacity() - buf.len();
        match stdout.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) if n >= room => chunk = (chunk * 2).min(64 * 1024),
            Ok(_) => {}
        }
        for frame in framer.push(&buf.split()) {
            let event = match frame {
                Frame::Line(line) => {
                    if !looks_like_json(&line) {
                        tracing::warn!(
                            session = %session,
                            line = %String::from_utf8_lossy(&line[..line.len().min(200)]),
                            "child wrote a non-JSON line on stdout; skipped"
                        );
                        continue;
                    }
                    ChildEvent::Line(line)
                }
                Frame::TooLong { prefix, len } => ChildEvent::TooLong { prefix, len },
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// Cheap check before full parsing: a JSON-RPC message is an object or a batch array.
fn looks_like_json(line: &[u8]) -> bool {
    matches!(line.first(), Some(b'{') | Some(b'['))
}

/// A piece of stdout.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Line(Bytes),
    TooLong { prefix: Bytes, len: usize },
}

/// Splits a byte stream into lines on `\n`, dropping a trailing `\r` and blank lines, capping a
/// line at `max` bytes. Works on bytes, so a UTF-8 character split across reads is never
/// mangled.
pub struct LineFramer {
    max: usize,
    /// The incomplete line so far.
    partial: BytesMut,
    /// Length of an over-long line being discarded (its prefix is kept in `partial`).
    discarding: Option<usize>,
}

const TOO_LONG_PREFIX: usize = 256;

impl LineFramer {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            partial: BytesMut::new(),
            discarding: None,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) -> Vec<Frame> {
        let mut frames = vec![];
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (chunk, rest, complete) = match newline {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &[][..], false),
            };
            data = rest;
            if let Some(len) = self.discarding.as_mut() {
                *len += chunk.len();
                if complete {
                    let len = *len;
                    self.discarding = None;
                    frames.push(Frame::TooLong {
                        prefix: self.partial.split().freeze(),
                        len,
                    });
                }
                continue;
            }
            if self.partial.len() + chunk.len() > self.max {
                let len = self.partial.len() + chunk.len();
                let keep = TOO_LONG_PREFIX
                    .saturating_sub(self.partial.len())
                    .min(chunk.len());
                self.partial.truncate(TOO_LONG_PREFIX);
                self.partial.extend_from_slice(&chunk[..keep]);
                if complete {
                    frames.push(Frame::TooLong {
                        prefix: self.partial.split().freeze(),
                        len,
                    });
                } else {
                    self.discarding = Some(len);
                }
                continue;
            }
            self.partial.extend_from_slice(chunk);
            if complete {
                let mut line = self.partial.split();
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                if !line.iter().all(u8::is_ascii_whitespace) {
                    frames.push(Frame::Line(line.freeze()));
                }
            }
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(frames: Vec<Frame>) -> Vec<String> {
        frames
            .into_iter()
            .map(|f| match f {
                Frame::Line(l) => String::from_utf8(l.to_vec()).unwrap(),
                Frame::TooLong { len, .. } => format!("<too long: {len}>"),
            })
            .collect()
    }

    #[test]
    fn splits_and_joins_across_reads() {
        let mut f = LineFramer::new(1024);
        assert!(f.push(b"{\"a\":").is_empty());
        assert_eq!(
            lines(f.push(b"1}\n{\"b\":2}\r\n\n  \n{\"c\"")),
            ["{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(lines(f.push(b":3}\n")), ["{\"c\":3}"]);
    }

    #[test]
    fn multibyte_characters_split_across_reads_survive() {
        let text = "{\"t\":\"Bärn ⚠️\"}\n".as_bytes();
        let mut f = LineFramer::new(1024);
        let mut out = vec![];
        for b in text {
            out.extend(lines(f.push(&[*b])));
        }
        assert_eq!(out, ["{\"t\":\"Bärn ⚠️\"}"]);
    }

    #[test]
    fn over_long_lines_are_reported_once_and_framing_recovers() {
        let mut f = LineFramer::new(10);
        let mut frames = f.push(b"{\"id\":7,\"x\":\"aaaa");
        frames.extend(f.push(b"aaaaaaaa\"}\n{\"ok\":1}\n"));
        assert_eq!(frames.len(), 2);
        match &frames[0] {
            Frame::TooLong { prefix, len } => {
                assert!(prefix.starts_with(b"{\"id\":7"));
                assert_eq!(*len, 27);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(frames[1], Frame::Line(Bytes::from_static(b"{\"ok\":1}")));
    }

    #[test]
    fn exact_limit_is_allowed() {
        let mut f = LineFramer::new(4);
        assert_eq!(lines(f.push(b"{12}\n{123}\n")), ["{12}", "<too long: 5>"]);
    }
}
