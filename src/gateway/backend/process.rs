//! One stdio MCP child process: spawned in its own process group, stdin fed from a channel,
//! stdout framed on bytes into JSON-RPC lines, stderr logged with the session id, and a shutdown
//! that closes stdin, then signals the whole group (SIGTERM, then SIGKILL) so no grandchild
//! survives.
//!
//! Owns: spawning, signalling and reaping one process. Must not touch: what the lines mean.

use std::{
    process::Stdio,
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{ChildStderr, Command},
    sync::{mpsc, watch},
};
use tokio_util::sync::CancellationToken;

use super::{
    children::{ChildEvent, ExitCause},
    own::Worker,
};
use crate::{
    config::ChildCommand,
    mcp::lines::{LineQueue, read_lines, write_lines},
};

/// A running child. Dropping it does not kill it; call [`ChildProcess::terminate`].
pub struct ChildProcess {
    pub pid: u32,
    label: Label,
    /// Lines for the child's stdin (without newline).
    stdin: LineQueue,
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
        extra_env: &[(String, String)],
    ) -> std::io::Result<(ChildProcess, mpsc::Receiver<ChildEvent>)> {
        let mut command = Command::new(&cmd.program);
        if let Some(arg0) = &cmd.arg0 {
            command.arg0(arg0);
        }
        if let Some(dir) = &cmd.cwd {
            command.current_dir(dir);
        }
        command
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
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

        let (line_tx, line_rx) = LineQueue::channel();
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
        let label: Label = Arc::new(RwLock::new(Arc::from(session)));
        tokio::spawn(log_stderr(stderr, label.clone()));
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
                label,
                stdin: line_tx,
                close_stdin,
                exited: exited_rx,
                terminating: terminating_tx,
            },
            event_rx,
        ))
    }

    /// From now on its stderr is logged under `session`.
    pub fn relabel(&self, session: &str) {
        *self.label.write().unwrap() = Arc::from(session);
    }

    /// A handle for writing lines to the child's stdin.
    pub fn stdin(&self) -> LineQueue {
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

impl Worker for ChildProcess {
    fn terminate(&mut self, grace: Duration) -> impl Future<Output = ()> + Send {
        ChildProcess::terminate(self, grace)
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

/// The name a child's stderr is logged under (a pooled child gets its session's on being taken).
type Label = Arc<RwLock<Arc<str>>>;

async fn log_stderr(stderr: ChildStderr, label: Label) {
    let mut lines = BufReader::new(stderr).split(b'\n');
    while let Ok(Some(mut line)) = lines.next_segment().await {
        line.truncate(8 * 1024);
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if !text.is_empty() {
            let session = label.read().unwrap().clone();
            tracing::info!(target: "aareguru_mcp::child", session = %session, "{text}");
        }
    }
}
