//! One stdio MCP child process: spawned in its own process group, stdin fed from a
//! [`LineQueue`] (written directly while its writer is idle), stdout framed on bytes into
//! JSON-RPC lines for whoever relays them, stderr logged with the session id, and a shutdown
//! that closes stdin, then signals the whole group (SIGTERM, then SIGKILL) so no grandchild
//! survives.
//!
//! Owns: spawning, signalling and reaping one process. Must not touch: what the lines mean.

use parking_lot::RwLock;
use std::{
    os::unix::process::ExitStatusExt,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::unix::pipe,
    process::{ChildStderr, ChildStdout, Command},
    sync::watch,
};
use tokio_util::sync::CancellationToken;

use super::{
    children::ExitCause,
    own::{Output, Worker},
    sandbox::{self, Limit, Walls},
};
use crate::{
    config::ChildCommand,
    mcp::{
        lines::{FrameSink, read_lines},
        queue::{Input, LineQueue, write_pipe},
    },
};

/// How long a child's stdout may still deliver after the child exited (a grandchild holding
/// it open must not hide the exit).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// A running child. Dropping it does not kill it; call [`ChildProcess::terminate`].
pub struct ChildProcess {
    pub pid: u32,
    label: Label,
    /// Lines for the child's stdin (without newline).
    stdin: LineQueue,
    /// Cancelled to close the child's stdin, whoever still holds a sender.
    close_stdin: CancellationToken,
    /// How the process ended, once it has been reaped.
    exit: watch::Receiver<Option<Exit>>,
    /// Set when we began terminating, so the exit is not reported as a crash.
    terminating: Arc<AtomicBool>,
}

/// What the child writes on stdout, and how it ends: read by whoever serves it
/// ([`Output::relay`]), from the moment it does — a pooled child's output waits in the pipe.
pub struct ChildOutput {
    stdout: ChildStdout,
    exit: watch::Receiver<Option<Exit>>,
    terminating: Arc<AtomicBool>,
    session: String,
    max_line: usize,
}

/// How a reaped process ended.
#[derive(Debug, Clone)]
struct Exit {
    success: bool,
    detail: String,
    /// The sandbox's limit that ended it.
    limit: Option<Limit>,
}

impl Exit {
    fn cause(&self, terminating: bool) -> ExitCause {
        if terminating {
            ExitCause::Terminated
        } else if let Some(limit) = self.limit {
            ExitCause::Limit(limit)
        } else if self.success {
            ExitCause::Exited
        } else {
            ExitCause::Crashed
        }
    }
}

impl ChildProcess {
    /// Spawns `cmd`; its output is read through the returned [`ChildOutput`]; `input` says how
    /// its stdin is written.
    pub fn spawn(
        cmd: &ChildCommand,
        session: &str,
        max_line: usize,
        extra_env: &[(String, String)],
        input: Input,
    ) -> std::io::Result<(ChildProcess, ChildOutput)> {
        let mut command = Command::new(&cmd.program);
        if let Some(arg0) = &cmd.arg0 {
            command.arg0(arg0);
        }
        if let Some(dir) = &cmd.cwd {
            command.current_dir(dir);
        }
        // Not the gateway's environment (its settings and secrets): the short list and what
        // the operator allows, then the entry's own, then the session's.
        let mut env = sandbox::inherited(std::env::vars_os(), &cmd.inherit_env);
        env.extend(cmd.env.iter().map(|(k, v)| (k.into(), v.into())));
        env.extend(extra_env.iter().map(|(k, v)| (k.into(), v.into())));
        let walls = Walls::prepare(cmd, &env)?;
        command.args(&cmd.args).env_clear().envs(env);
        let tmp = walls.as_ref().map(|w| w.tmp.clone());
        if let Some(walls) = walls {
            command.envs(walls.env());
            walls.install(&mut command);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so signals reach `sh -c` and `npx` grandchildren too.
            .process_group(0)
            .kill_on_drop(false);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGTERM the child if
        // the gateway dies without cleaning up (e.g. SIGKILL), so children are never orphaned.
        // The "parent" is the thread that forks: spawn from runtime threads only (a blocking
        // pool thread exits when idle, and its children would get the signal).
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                if let Some(tmp) = &tmp {
                    sandbox::remove_tmp(tmp);
                }
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        // Stdin as a pipe of our own, so a sender can write to it without a task in between.
        let stdin = child
            .stdin
            .take()
            .expect("piped stdin")
            .into_owned_fd()
            .and_then(pipe::Sender::from_owned_fd);
        let stdin = match stdin {
            Ok(pipe) => pipe,
            Err(e) => {
                signal_group(pid, libc::SIGKILL);
                tokio::spawn(async move {
                    let _ = child.wait().await;
                    if let Some(tmp) = tmp {
                        sandbox::remove_tmp(&tmp);
                    }
                });
                return Err(e);
            }
        };

        let (line_tx, line_rx) = LineQueue::channel();
        let (exit_tx, exit_rx) = watch::channel(None);
        let terminating = Arc::new(AtomicBool::new(false));
        let close_stdin = CancellationToken::new();
        tokio::spawn(write_pipe(
            stdin,
            input,
            line_rx,
            close_stdin.clone(),
            session.to_string(),
        ));
        let label: Label = Arc::new(RwLock::new(Arc::from(session)));
        let said_oom = Arc::new(AtomicBool::new(false));
        tokio::spawn(log_stderr(stderr, label.clone(), said_oom.clone()));
        let name = session.to_string();
        let ended_by_us = terminating.clone();
        tokio::spawn(async move {
            // Watch the process, not the pipe: a grandchild holding stdout open must not hide
            // the child's exit.
            let exit = match child.wait().await {
                Ok(s) => Exit {
                    success: s.success(),
                    detail: s.to_string(),
                    limit: match s.signal() {
                        // A sandboxed child that died of a signal we did not send.
                        Some(sig) if tmp.is_some() && !ended_by_us.load(Ordering::Acquire) => {
                            let said = || said_oom.load(Ordering::Relaxed);
                            if Limit::of_signal(sig, said()).is_none()
                                && Limit::of_signal(sig, true).is_some()
                            {
                                // What it said on dying may still be in the pipe.
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Limit::of_signal(sig, said())
                        }
                        _ => None,
                    },
                },
                Err(e) => Exit {
                    success: false,
                    detail: format!("wait failed: {e}"),
                    limit: None,
                },
            };
            if let Some(limit) = exit.limit {
                sandbox::count_limit_kill(limit);
                tracing::warn!(session = %name, pid, detail = %exit.detail,
                    "child ended by its sandbox's {} limit", limit.as_str());
            }
            tracing::debug!(session = %name, pid, detail = %exit.detail, "child ended");
            let _ = exit_tx.send(Some(exit));
            // The leader is gone; once its output had its chance to drain, nothing else of
            // its group may linger.
            if pid != 0 && group_alive(pid) {
                tokio::time::sleep(DRAIN_AFTER_EXIT).await;
                if group_alive(pid) {
                    signal_group(pid, libc::SIGTERM);
                    signal_group(pid, libc::SIGKILL);
                }
            }
            if let Some(tmp) = tmp {
                let _ = tokio::task::spawn_blocking(move || sandbox::remove_tmp(&tmp)).await;
            }
        });
        Ok((
            ChildProcess {
                pid,
                label,
                stdin: line_tx,
                close_stdin,
                exit: exit_rx.clone(),
                terminating: terminating.clone(),
            },
            ChildOutput {
                stdout,
                exit: exit_rx,
                terminating,
                session: session.to_string(),
                max_line,
            },
        ))
    }

    /// From now on its stderr is logged under `session`.
    pub fn relabel(&self, session: &str) {
        *self.label.write() = Arc::from(session);
    }

    /// A handle for writing lines to the child's stdin.
    pub fn stdin(&self) -> LineQueue {
        self.stdin.clone()
    }

    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// How it ended, once it has.
    pub fn ended(&self) -> Option<(ExitCause, String)> {
        let terminating = self.terminating.load(Ordering::Acquire);
        self.exit
            .borrow()
            .as_ref()
            .map(|e| (e.cause(terminating), e.detail.clone()))
    }

    /// Closes stdin, waits up to `grace`, SIGTERMs the group, waits up to `grace`, SIGKILLs the
    /// group. Returns once the child has been reaped (or after the SIGKILL).
    pub async fn terminate(&mut self, grace: Duration) {
        self.terminating.store(true, Ordering::Release);
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
        let mut exit = self.exit.clone();
        tokio::time::timeout(within, exit.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Output for ChildOutput {
    /// Hands every frame of stdout to `sink` until stdout ends (or, once the process has
    /// exited, until [`DRAIN_AFTER_EXIT`] has passed), then reports how the process ended.
    async fn relay(self, sink: impl FrameSink) -> (ExitCause, String) {
        let ChildOutput {
            stdout,
            mut exit,
            terminating,
            session,
            max_line,
        } = self;
        let reading = read_lines(stdout, max_line, sink, &session);
        tokio::pin!(reading);
        let read_all = tokio::select! {
            _ = &mut reading => true,
            _ = exit.wait_for(Option::is_some) => false,
        };
        if !read_all
            && tokio::time::timeout(DRAIN_AFTER_EXIT, reading)
                .await
                .is_err()
        {
            tracing::debug!(session = %session, "stdout still held open after the child exited");
        }
        let ended = exit
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|e| e.clone());
        match ended {
            Some(e) => (e.cause(terminating.load(Ordering::Acquire)), e.detail),
            None => (ExitCause::Crashed, "the child's watcher ended".into()),
        }
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

/// Logs a child's stderr under its label, noting in `said_oom` whether it said it ran out of
/// memory.
async fn log_stderr(stderr: ChildStderr, label: Label, said_oom: Arc<AtomicBool>) {
    let mut lines = BufReader::new(stderr).split(b'\n');
    while let Ok(Some(mut line)) = lines.next_segment().await {
        line.truncate(8 * 1024);
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if !text.is_empty() {
            if Limit::says_out_of_memory(text) {
                said_oom.store(true, Ordering::Relaxed);
            }
            let session = label.read().clone();
            tracing::info!(target: "aareguru_mcp::child", session = %session, "{text}");
        }
    }
}
