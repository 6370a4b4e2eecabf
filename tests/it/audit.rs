//! The audit log: 10 000 calls from twenty concurrent Streamable HTTP sessions — answered,
//! failing in the tool, refused by a rule, refused by the server (unknown tool), cancelled by
//! the client — give exactly one valid JSON line each, with the right outcome, in a log
//! rotated many times over, and none dropped. Calls through a group are recorded once, by the
//! group, naming the member.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::{
    gateway_util::{Gateway, McpClient},
    infra::TempDir,
    servers::{fixture, write},
};

const SESSIONS: u64 = 20;
const CALLS: u64 = 500;

/// What call `n` is, and the outcome its line must tell.
fn plan(n: u64) -> (&'static str, &'static str) {
    match n % 10 {
        0..=5 => ("echo", "ok"),
        6 => ("fail", "tool_error"),
        7 => ("deploy", "denied"),
        8 => ("nosuch", "error"),
        _ => ("never", "cancelled"),
    }
}

/// Every line of the log and its rotated files.
fn lines(dir: &std::path::Path) -> Vec<Value> {
    let mut all = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("audit.log")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends mid-line",
            path.display()
        );
        for line in text.lines() {
            let v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            all.push(v);
        }
    }
    all
}

/// One session's calls, in order; the cancelled ones are sent, cancelled, and left.
async fn session(base: String, s: u64) {
    let mut c = McpClient::new(&base);
    c.initialize().await;
    let mut never = 0;
    let mut stats_id = 1_000_000 * (s + 1);
    for i in 0..CALLS {
        let n = s * CALLS + i;
        let (tool, expected) = plan(n);
        let args = json!({"n": n, "token": format!("secret-{n}")});
        if expected == "cancelled" {
            let body = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                "params": {"name": tool, "arguments": args}});
            let pending = {
                let c = McpClient {
                    http: c.http.clone(),
                    url: c.url.clone(),
                    session: c.session.clone(),
                    headers: vec![],
                };
                tokio::spawn(async move { c.post(&body).await })
            };
            // Cancelled once the server has it (the fixture counts it; a call the gateway never
            // read has nothing to record).
            never += 1;
            loop {
                stats_id += 1;
                let (_, v) = c.call(stats_id, "stats", json!({})).await;
                if v["result"]["structuredContent"]["calls"]["never"] == never {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            let r = c
                .post(
                    &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": n, "reason": "test"}}),
                )
                .await;
            assert_eq!(r.status(), 202);
            pending.abort();
            continue;
        }
        let (status, v) = c.call(n, tool, args).await;
        assert_eq!(status, 200, "call {n}: {v}");
        match expected {
            "ok" => assert_eq!(v["result"]["structuredContent"]["n"], n, "{v}"),
            "tool_error" => assert_eq!(v["result"]["isError"], true, "{v}"),
            _ => assert!(v.get("error").is_some(), "call {n}: {v}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_give_one_line_each_with_its_outcome_through_rotations() {
    let dir = TempDir::new("audit");
    let logs = dir.0.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = json!({
        "mcpServers": {
            "fx": fixture("fx", json!({"rules": [{"name": "no-deploy", "deny": "mcp.tool.name == 'deploy'"}]})),
        },
        "groups": {"g": {"members": ["fx"]}}
    });
    let path = write(&dir, &config);
    let log = logs.join("audit.log");
    let log_arg = log.display().to_string();
    let mut gw = Gateway::start(
        &[
            "--config",
            &path,
            "--audit-log",
            &log_arg,
            "--audit-log-max-bytes",
            "262144",
            "--audit-log-keep",
            "1000",
            "--audit-arguments",
            "--drain-delay",
            "0s",
        ],
        &[],
    )
    .await;
    let base = gw.url("/servers/fx");
    let all: Vec<_> = (0..SESSIONS)
        .map(|s| tokio::spawn(session(base.clone(), s)))
        .collect();
    for t in all {
        t.await.unwrap();
    }
    // Through the group: one line, by the group, naming the member.
    let mut g = McpClient::new(&gw.url("/servers/g"));
    g.initialize().await;
    let (status, v) = g.call(1, "fx__echo", json!({"n": -1})).await;
    assert_eq!(
        (status, &v["result"]["structuredContent"]["n"]),
        (200, &json!(-1)),
        "{v}"
    );
    let metrics = gw.metrics().await;
    // SIGTERM: what the log holds is written before the exit.
    // SAFETY: signals a process this test started.
    unsafe { libc::kill(gw.child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), gw.child.wait())
        .await
        .expect("the gateway exits")
        .unwrap();
    assert!(status.success());

    let lines = lines(&logs);
    let mut by_n: HashMap<i64, Vec<&Value>> = HashMap::new();
    let mut stats = 0;
    for line in &lines {
        if line["name"] == "stats" {
            assert_eq!(line["outcome"], "ok", "{line}");
            stats += 1;
            continue;
        }
        let n = line["arguments"]["n"].as_i64().expect("arguments recorded");
        by_n.entry(n).or_default().push(line);
    }
    let total = SESSIONS * CALLS;
    let missing: Vec<i64> = (-1..total as i64)
        .filter(|n| !by_n.contains_key(n))
        .collect();
    assert!(missing.is_empty(), "calls without a line: {missing:?}");
    assert_eq!(
        lines.len() as u64 - stats,
        total + 1,
        "one line per call; {} distinct calls",
        by_n.len()
    );
    let mut outcomes: HashMap<&str, u64> = HashMap::new();
    for n in 0..total {
        let (tool, expected) = plan(n);
        let seen = by_n.get(&(n as i64)).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(seen.len(), 1, "call {n}: {seen:?}");
        let line = seen[0];
        assert_eq!(line["outcome"], expected, "call {n}: {line}");
        assert_eq!(line["name"], tool);
        assert_eq!(line["server"], "fx");
        assert_eq!(line["method"], "tools/call");
        assert_eq!(line["client"], json!({"name": "it", "version": "1"}));
        assert_eq!(line["arguments"]["token"], "[redacted]", "{line}");
        let args = json!({"n": n, "token": format!("secret-{n}")});
        assert_eq!(
            line["argumentsSha256"],
            aareguru_mcp::gateway::audit::canonical_sha256(&args).to_string()
        );
        assert!(line["durationMs"].as_f64().unwrap() >= 0.0);
        if expected == "denied" {
            assert!(
                line["rule"].as_str().unwrap().contains("no-deploy"),
                "{line}"
            );
        }
        if expected == "ok" {
            assert!(line["bytesOut"].as_u64().unwrap() > 0);
        }
        *outcomes
            .entry(line["outcome"].as_str().unwrap())
            .or_default() += 1;
    }
    assert_eq!(outcomes["ok"], total * 6 / 10);
    let via_group = by_n[&-1][0];
    assert_eq!(
        (
            &via_group["server"],
            &via_group["member"],
            &via_group["name"]
        ),
        (&json!("g"), &json!("fx"), &json!("fx__echo"))
    );
    let files = std::fs::read_dir(&logs).unwrap().count();
    assert!(files > 5, "the log was rotated ({files} files)");
    assert!(
        metrics.contains("aareguru_gateway_audit_dropped_lines_total 0"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("audit"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let raw = lines.iter().any(|l| l.to_string().contains("secret-"));
    assert!(!raw, "a redacted value reached the log");
}
