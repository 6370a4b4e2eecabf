//! A minimal stdio MCP server for gateway tests and benchmarks, with tools that misbehave on
//! purpose. Line-delimited JSON-RPC on stdin/stdout, one message per line.
//!
//! Tools: `echo` (returns its arguments), `crash` (exits with status 3 without answering),
//! `junk` (prints a non-JSON line, then answers), `big` (answers with `bytes` of text),
//! `slow` (answers after `ms` milliseconds), `notify` (sends a log notification, then answers),
//! `never` (never answers).
//! `FIXTURE_GRANDCHILD=1` makes it start a `sleep` grandchild (to test process-group cleanup).
//!
//! Run: `cargo run --example fixture_server`.

// This program is a stdio MCP server: stdout is its protocol.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, Write};

use serde_json::{Value, json};

fn main() {
    if std::env::var_os("FIXTURE_GRANDCHILD").is_some() {
        let marker = std::env::var("FIXTURE_MARKER").unwrap_or_else(|_| "600".into());
        let _ = std::process::Command::new("sleep").arg(marker).spawn();
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let (Some(id), Some(method)) = (msg.get("id").cloned(), msg["method"].as_str()) else {
            continue;
        };
        let result = match method {
            "initialize" => json!({
                "protocolVersion": msg["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "fixture-server", "version": "1.0.0"}
            }),
            "ping" => json!({}),
            "tools/list" => json!({"tools": [
                {"name": "echo", "description": "Echo the arguments", "inputSchema": {"type": "object"}},
                {"name": "crash", "description": "Exit without answering", "inputSchema": {"type": "object"}},
                {"name": "junk", "description": "Print junk, then answer", "inputSchema": {"type": "object"}},
                {"name": "big", "description": "Answer with `bytes` bytes", "inputSchema": {"type": "object"}},
                {"name": "slow", "description": "Answer after `ms` ms", "inputSchema": {"type": "object"}},
                {"name": "notify", "description": "Log, then answer", "inputSchema": {"type": "object"}}
            ]}),
            "tools/call" => {
                let args = &msg["params"]["arguments"];
                match msg["params"]["name"].as_str().unwrap_or("") {
                    "echo" => {
                        json!({"content": [{"type": "text", "text": args.to_string()}], "structuredContent": args})
                    }
                    // Never answers (the client is expected to cancel).
                    "never" => continue,
                    "crash" => {
                        let _ = out.flush();
                        std::process::exit(3);
                    }
                    "junk" => {
                        let _ = writeln!(out, "this is not JSON ✗");
                        json!({"content": [{"type": "text", "text": "after junk"}]})
                    }
                    "big" => {
                        let n = args["bytes"].as_u64().unwrap_or(1024) as usize;
                        json!({"content": [{"type": "text", "text": "x".repeat(n)}]})
                    }
                    "slow" => {
                        std::thread::sleep(std::time::Duration::from_millis(
                            args["ms"].as_u64().unwrap_or(100),
                        ));
                        json!({"content": [{"type": "text", "text": "slept"}]})
                    }
                    "notify" => {
                        let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                                          "params": {"level": "info", "data": args}});
                        let _ = writeln!(out, "{note}");
                        json!({"content": [{"type": "text", "text": "notified"}]})
                    }
                    other => {
                        let err = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": format!("unknown tool {other}")}});
                        let _ = writeln!(out, "{err}");
                        let _ = out.flush();
                        continue;
                    }
                }
            }
            _ => {
                let err = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}});
                let _ = writeln!(out, "{err}");
                let _ = out.flush();
                continue;
            }
        };
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
        let _ = writeln!(out, "{reply}");
        let _ = out.flush();
    }
}
