//! A stdio MCP server that tries, each on request, what a malicious or broken server would:
//! one tool, `attempt`, with `what` naming the try. It answers `DONE: …` when the try worked
//! and `REFUSED: …` with the error when it did not — so a test behind a sandbox expects
//! `REFUSED` — or does not answer at all when the try ends the process (`spin`, `big_file`,
//! `oom`).
//!
//! - `read` `path`: read a file (the servers file, a token store, `/etc/shadow`);
//! - `environ` `pid`: read `/proc/<pid>/environ` (the gateway's, another child's);
//! - `write` `path`: create a file;
//! - `connect` `port`: open a TCP connection to 127.0.0.1;
//! - `fork` `count`: start that many processes that wait (then ends them);
//! - `alloc` `bytes`: reserve that much memory (and touch it);
//! - `ptrace`: attach to its parent (the gateway);
//! - `spin`: burn CPU until stopped; `big_file` `bytes`: write that much into `$TMPDIR`;
//!   `oom` `bytes`: allocate that much the way most programs do, dying if they cannot;
//! - `whoami`: its pid, uid, `$TMPDIR`, and `env` `name`: a variable's value.
//!
//! Run: `cargo run --example hostile_server`.

// This program is a stdio MCP server: stdout is its protocol.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, Write};

use serde_json::{Value, json};

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let Some(id) = msg.get("id").cloned() else {
            continue;
        };
        let result = match msg["method"].as_str().unwrap_or("") {
            "initialize" => json!({
                "protocolVersion": msg["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "hostile", "version": "1"}
            }),
            "tools/list" => json!({"tools": [{
                "name": "attempt",
                "description": "Tries something a sandbox should refuse",
                "inputSchema": {"type": "object", "properties": {"what": {"type": "string"}}}
            }]}),
            "tools/call" => {
                let args = &msg["params"]["arguments"];
                let text = match attempt(args) {
                    Ok(done) => format!("DONE: {done}"),
                    Err(e) => format!("REFUSED: {e}"),
                };
                json!({"content": [{"type": "text", "text": text}]})
            }
            _ => json!({}),
        };
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
        if writeln!(out, "{reply}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
}

fn attempt(args: &Value) -> Result<String, String> {
    let s = |k: &str| args[k].as_str().unwrap_or("").to_string();
    let n = |k: &str| args[k].as_u64().unwrap_or(0);
    let e = |e: std::io::Error| e.to_string();
    match s("what").as_str() {
        "read" => std::fs::read(s("path"))
            .map(|b| format!("read {} bytes", b.len()))
            .map_err(e),
        "environ" => std::fs::read(format!("/proc/{}/environ", n("pid")))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .map_err(e),
        "write" => std::fs::write(s("path"), "written by a child")
            .map(|_| "wrote it".into())
            .map_err(e),
        "connect" => std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], n("port") as u16).into(),
            std::time::Duration::from_secs(2),
        )
        .map(|_| "connected".into())
        .map_err(e),
        "fork" => fork(n("count")),
        "alloc" => {
            let mut v: Vec<u8> = vec![];
            v.try_reserve_exact(n("bytes") as usize)
                .map_err(|e| e.to_string())?;
            v.resize(n("bytes") as usize, 1);
            Ok(format!("allocated {} bytes", v.len()))
        }
        "ptrace" => {
            // SAFETY: PTRACE_ATTACH takes a pid and no memory.
            let parent = unsafe { libc::getppid() };
            let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, parent, 0, 0) };
            if rc == 0 {
                Ok(format!("attached to {parent}"))
            } else {
                Err(std::io::Error::last_os_error().to_string())
            }
        }
        "spin" => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        "big_file" => {
            let dir = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
            let chunk = vec![7u8; 1 << 20];
            let mut f = std::fs::File::create(format!("{dir}/big")).map_err(e)?;
            for _ in 0..n("bytes").div_ceil(1 << 20) {
                f.write_all(&chunk).map_err(e)?;
            }
            Ok("wrote it".into())
        }
        "oom" => {
            let v = vec![1u8; n("bytes") as usize];
            Ok(format!("allocated {}", std::hint::black_box(v).len()))
        }
        "whoami" => Ok(json!({
            "pid": std::process::id(),
            // SAFETY: getuid has no arguments.
            "uid": unsafe { libc::getuid() },
            "tmpdir": std::env::var("TMPDIR").ok(),
        })
        .to_string()),
        "env" => std::env::var(s("name")).map_err(|e| e.to_string()),
        other => Err(format!("unknown attempt {other:?}")),
    }
}

/// Starts `count` processes that wait, then ends them; fails at the first refused fork.
fn fork(count: u64) -> Result<String, String> {
    let mut pids = vec![];
    let mut failure = None;
    for _ in 0..count {
        // SAFETY: the child only pauses until killed (async-signal-safe).
        match unsafe { libc::fork() } {
            0 => loop {
                unsafe { libc::pause() };
            },
            -1 => {
                failure = Some(std::io::Error::last_os_error());
                break;
            }
            pid => pids.push(pid),
        }
    }
    for &pid in &pids {
        // SAFETY: ends and reaps a child of ours.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    match failure {
        Some(e) => Err(format!("{e} after {} processes", pids.len())),
        None => Ok(format!("started {} processes", pids.len())),
    }
}
