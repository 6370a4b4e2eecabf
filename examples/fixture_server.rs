//! A minimal stdio MCP server for gateway tests and benchmarks, with tools that misbehave on
//! purpose. Line-delimited JSON-RPC on stdin/stdout, one message per line.
//!
//! Tools: `echo` (returns its arguments), `crash` (exits with status 3 without answering),
//! `junk` (prints a non-JSON line, then answers), `big` (answers with `bytes` of text),
//! `slow` (answers after `ms` milliseconds), `notify` (sends a log notification, then answers),
//! `never` (never answers; `label` names it for `cancelled`), `cancelled` (labels of requests the
//! client cancelled), `progress` (sends `count` progress notifications for the request's
//! progress token, then answers), `ask` (sends the client a `method` request — `roots/list` by
//! default — with an id like the client's own, and answers with the client's reply; `flood`
//! log messages follow the question), `touch`
//! (sends `notifications/resources/updated` for `uri` and a list-changed notification),
//! `stats` (handshakes, `tools/list` requests, calls by tool name and the last 32 call lines as received, subscriptions seen, and the process id), `env` (the value of the
//! environment variable `name`), `deploy` (like `echo`; its `inputSchema` declares `region` and
//! `replicas` as `Mcp-Param-*` headers of protocol revision 2026-07-28).
//! `FIXTURE_GRANDCHILD=1` makes it start a `sleep` grandchild (to test process-group cleanup).
//! `FIXTURE_STRICT=1` refuses requests before `notifications/initialized` (as strict SDKs do).
//! `FIXTURE_START_MS=300` makes it take that long to start (as npx or Python servers do).
//! `FIXTURE_EXIT_AFTER_INIT=1` makes it exit right after answering `initialize`.
//!
//! Run: `cargo run --example fixture_server`.

// This program is a stdio MCP server: stdout is its protocol.
#![allow(clippy::disallowed_methods)]

use std::{
    collections::{BTreeSet, HashMap},
    io::{BufRead, Write},
};

use serde_json::{Value, json};

fn main() {
    // A server that takes a while to start (as npx and Python servers do).
    if let Some(ms) = std::env::var("FIXTURE_START_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if std::env::var_os("FIXTURE_GRANDCHILD").is_some() {
        let marker = std::env::var("FIXTURE_MARKER").unwrap_or_else(|_| "600".into());
        let _ = std::process::Command::new("sleep").arg(marker).spawn();
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let strict = std::env::var_os("FIXTURE_STRICT").is_some();
    let exit_after_init = std::env::var_os("FIXTURE_EXIT_AFTER_INIT").is_some();
    let (mut initializes, mut initialized, mut lists) = (0u64, 0u64, 0u64);
    // `tools/call` requests received, by tool name (what a gateway let through).
    let mut calls: HashMap<String, u64> = HashMap::new();
    // The last `tools/call` lines exactly as received (a gateway may rewrite what it judged).
    let mut raw_calls: std::collections::VecDeque<String> = Default::default();
    // Raw id of a `never` call → its label; labels of cancelled calls.
    let mut never: HashMap<String, String> = HashMap::new();
    let mut cancelled: Vec<String> = vec![];
    // Id of our request to the client → id of the tool call waiting for the answer.
    let mut asking: HashMap<String, Value> = HashMap::new();
    let mut next_ask = 1u64;
    let mut subscriptions: BTreeSet<String> = BTreeSet::new();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let method = msg["method"].as_str().unwrap_or("");
        match (msg.get("id").cloned(), method) {
            (None, "notifications/initialized") => initialized += 1,
            (None, "notifications/cancelled") => {
                if let Some(label) = never.remove(&msg["params"]["requestId"].to_string()) {
                    cancelled.push(label);
                }
            }
            // The client's answer to `ask`: answer the tool call that asked.
            (Some(id), "") => {
                if let Some(call) = asking.remove(&id.to_string()) {
                    let reply = json!({"jsonrpc": "2.0", "id": call, "result": {
                        "content": [{"type": "text", "text": msg.to_string()}],
                        "structuredContent": {"answer": msg}}});
                    let _ = writeln!(out, "{reply}");
                    let _ = out.flush();
                }
            }
            _ => {}
        }
        let (Some(id), false) = (msg.get("id").cloned(), method.is_empty()) else {
            continue;
        };
        if strict && initialized == 0 && !matches!(method, "initialize" | "ping") {
            let err = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32002, "message": "not initialized"}});
            let _ = writeln!(out, "{err}");
            let _ = out.flush();
            continue;
        }
        let result = match method {
            "initialize" => {
                initializes += 1;
                json!({
                    "protocolVersion": msg["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18"),
                    "capabilities": {"tools": {}, "resources": {"subscribe": true, "listChanged": true}},
                    "serverInfo": {"name": "fixture-server", "version": "1.0.0"}
                })
            }
            "ping" => json!({}),
            "resources/subscribe" => {
                subscriptions.insert(msg["params"]["uri"].as_str().unwrap_or("").to_string());
                json!({})
            }
            "resources/unsubscribe" => {
                subscriptions.remove(msg["params"]["uri"].as_str().unwrap_or(""));
                json!({})
            }
            "tools/list" => {
                lists += 1;
                json!({"tools": [
                {"name": "echo", "description": "Echo the arguments", "inputSchema": {"type": "object"}},
                {"name": "crash", "description": "Exit without answering", "inputSchema": {"type": "object"}},
                {"name": "junk", "description": "Print junk, then answer", "inputSchema": {"type": "object"}},
                {"name": "big", "description": "Answer with `bytes` bytes", "inputSchema": {"type": "object"}},
                {"name": "slow", "description": "Answer after `ms` ms", "inputSchema": {"type": "object"}},
                {"name": "notify", "description": "Log, then answer", "inputSchema": {"type": "object"}},
                {"name": "env", "description": "The value of environment variable `name`", "inputSchema": {"type": "object"}},
                {"name": "deploy", "description": "Echo the arguments; `region` and `replicas` are repeated as Mcp-Param-* headers",
                 "inputSchema": {"type": "object", "properties": {
                    "region": {"type": "string", "x-mcp-header": "Region"},
                    "replicas": {"type": "integer", "x-mcp-header": "Replicas"}}}}
                ]})
            }
            "tools/call" => {
                let args = &msg["params"]["arguments"];
                let name = msg["params"]["name"].as_str().unwrap_or("").to_string();
                if name != "stats" {
                    *calls.entry(name).or_default() += 1;
                    raw_calls.push_back(line.clone());
                    if raw_calls.len() > 32 {
                        raw_calls.pop_front();
                    }
                }
                match msg["params"]["name"].as_str().unwrap_or("") {
                    "echo" | "deploy" => {
                        json!({"content": [{"type": "text", "text": args.to_string()}], "structuredContent": args})
                    }
                    // Never answers (the client is expected to cancel).
                    "never" => {
                        let label = args["label"].as_str().unwrap_or("").to_string();
                        never.insert(id.to_string(), label);
                        continue;
                    }
                    "cancelled" => {
                        json!({"content": [{"type": "text", "text": cancelled.join(",")}],
                               "structuredContent": {"labels": cancelled}})
                    }
                    "env" => {
                        let name = args["name"].as_str().unwrap_or("");
                        let value = std::env::var(name).ok();
                        json!({"content": [{"type": "text", "text": value.clone().unwrap_or_default()}],
                               "structuredContent": {"name": name, "value": value}})
                    }
                    "stats" => {
                        json!({"content": [{"type": "text", "text": "stats"}],
                               "structuredContent": {"initialize": initializes, "initialized": initialized,
                                                     "lists": lists, "calls": calls, "raw_calls": raw_calls,
                                                     "subscriptions": subscriptions, "pid": std::process::id()}})
                    }
                    "progress" => {
                        let token = msg["params"]["_meta"]["progressToken"].clone();
                        let count = args["count"].as_u64().unwrap_or(3);
                        if !token.is_null() {
                            for i in 1..=count {
                                let note = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                                                  "params": {"progressToken": token, "progress": i, "total": count}});
                                let _ = writeln!(out, "{note}");
                            }
                        }
                        json!({"content": [{"type": "text", "text": format!("progressed {count}")}]})
                    }
                    "ask" => {
                        // Ids like the client's own (`"1"`, `"2"`…), to prove they are rewritten.
                        let ask_id = json!(next_ask.to_string());
                        next_ask += 1;
                        asking.insert(ask_id.to_string(), id.clone());
                        let request = json!({"jsonrpc": "2.0", "id": ask_id,
                                             "method": args["method"].as_str().unwrap_or("roots/list"),
                                             "params": args.get("params").cloned().unwrap_or(json!({}))});
                        let _ = writeln!(out, "{request}");
                        // `flood`: that many log messages while the question is open.
                        for n in 0..args["flood"].as_u64().unwrap_or(0) {
                            let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                                              "params": {"level": "info", "data": {"n": n, "pad": "x".repeat(100)}}});
                            let _ = writeln!(out, "{note}");
                        }
                        let _ = out.flush();
                        continue;
                    }
                    "touch" => {
                        let uri = args["uri"].as_str().unwrap_or("");
                        let updated = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}});
                        let changed = json!({"jsonrpc": "2.0", "method": "notifications/resources/list_changed"});
                        let _ = writeln!(out, "{updated}");
                        let _ = writeln!(out, "{changed}");
                        json!({"content": [{"type": "text", "text": "touched"}]})
                    }
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
                    // Unlisted: the tool runs and fails (`isError`).
                    "fail" => {
                        json!({"content": [{"type": "text", "text": "failed as asked"}], "isError": true})
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
        if exit_after_init && method == "initialize" {
            std::process::exit(0);
        }
    }
}
