//! Limits per caller: two callers told apart by their named API keys share a server; the one
//! over its rate gets 429 with `Retry-After` (and the JSON-RPC error that says when) on
//! Streamable HTTP and 2026-07-28, the error on its HTTP+SSE stream, while the other caller and
//! the tools the limit does not name are unaffected; calls at once are refused past the number
//! and given back when they end; `/metrics` and the audit log say which limit refused; a reload
//! puts new limits in force.

use serde_json::{Value, json};

use crate::{
    gateway_util::{Gateway, McpClient, SseClient},
    infra::TempDir,
    modern::Modern,
    servers::{fixture, write},
};

fn key_entry(name: &str, key: &str) -> Value {
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({"name": name, "sha256": sha})
}

fn config(echo_rate: &str) -> Value {
    json!({
        "gateway": {
            "apiKeys": [key_entry("alice", "k-alice-0123456789"), key_entry("bob", "k-bob-0123456789")],
            "limits": [
                {"name": "echo-rate", "per": "key", "servers": ["fx"], "tools": ["echo"], "rate": echo_rate},
                {"name": "two-at-once", "tools": ["slow"], "concurrent": 2}
            ]
        },
        "mcpServers": {"fx": fixture("fx", json!({}))}
    })
}

async fn client(gw: &Gateway, key: &str) -> McpClient {
    let mut c = McpClient::new(&gw.url("/servers/fx"));
    c.headers.push(("x-api-key".into(), key.into()));
    c.initialize().await;
    c
}

/// A `tools/call` POST: status, `Retry-After`, body.
async fn call(c: &McpClient, id: u64, tool: &str, args: Value) -> (u16, Option<u64>, Value) {
    let r = c
        .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}}))
        .await;
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_limit_gets_429_and_when_to_retry_while_others_carry_on() {
    let dir = TempDir::new("limits");
    let path = write(&dir, &config("3/min"));
    let log = dir.0.join("audit.log").display().to_string();
    let gw = Gateway::start(&["--config", &path, "--audit-log", &log], &[]).await;
    let alice = client(&gw, "k-alice-0123456789").await;
    let bob = client(&gw, "k-bob-0123456789").await;

    for id in 1..=3 {
        let (status, _, v) = call(&alice, id, "echo", json!({"n": id})).await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, retry, v) = call(&alice, 4, "echo", json!({"n": 4})).await;
    assert_eq!(status, 429, "{v}");
    let retry = retry.expect("Retry-After");
    assert!((1..=20).contains(&retry), "one call every 20 s: {retry}");
    assert_eq!(v["id"], 4);
    assert_eq!(v["error"]["code"], -32029, "{v}");
    assert_eq!(
        v["error"]["data"],
        json!({"limit": "echo-rate", "retryAfter": retry})
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("retry in"),
        "{v}"
    );
    // Another caller, and a tool the limit does not name, are not counted against it.
    let (status, _, v) = call(&bob, 5, "echo", json!({})).await;
    assert_eq!(status, 200, "{v}");
    let (status, _, v) = call(&alice, 6, "env", json!({"name": "FIXTURE_NAME"})).await;
    assert_eq!(status, 200, "{v}");
    // 2026-07-28: the same caller, the same limit.
    let modern = Modern::at(&gw.url("/servers/fx"));
    let r = modern
        .build(
            json!(7),
            "tools/call",
            json!({"name": "echo", "arguments": {}}),
        )
        .header("x-api-key", "k-alice-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32029, "{v}");
    // HTTP+SSE: the POST was accepted before the answer; the answer says when.
    let mut sse = SseClient::connect_at(
        &gw,
        "/servers/fx/sse",
        &[("x-api-key", "k-alice-0123456789")],
    )
    .await
    .unwrap();
    sse.initialize().await;
    let (answer, _) = sse.call(json!(8), "echo", json!({})).await;
    assert_eq!(answer["error"]["code"], -32029, "{answer}");

    // Calls at once: two `slow` calls hold the slots; a third is refused; then one is free.
    let slow = |c: &McpClient, id: u64| {
        let c = McpClient {
            http: c.http.clone(),
            url: c.url.clone(),
            session: c.session.clone(),
            headers: c.headers.clone(),
        };
        tokio::spawn(async move { call(&c, id, "slow", json!({"ms": 1500})).await })
    };
    let (s1, s2) = (slow(&alice, 10), slow(&alice, 11));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (status, retry, v) = call(&alice, 12, "slow", json!({"ms": 1})).await;
    assert_eq!((status, retry), (429, Some(1)), "{v}");
    assert_eq!(v["error"]["data"]["limit"], "two-at-once");
    // Bob has slots of his own.
    let (status, _, v) = call(&bob, 13, "slow", json!({"ms": 1})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s1.await.unwrap().0, 200);
    assert_eq!(s2.await.unwrap().0, 200);
    let (status, _, v) = call(&alice, 14, "slow", json!({"ms": 1})).await;
    assert_eq!(status, 200, "{v}");

    let metrics = gw.metrics().await;
    for (limit, n) in [("echo-rate", 3), ("two-at-once", 1)] {
        let line =
            format!("aareguru_gateway_policy_limited_total{{server=\"fx\",rule=\"{limit}\"}} {n}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }

    // A reload puts new limits in force, with counts afresh.
    std::fs::write(&path, config("100/min").to_string()).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (status, _, _) = call(&alice, 20, "echo", json!({})).await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reload never took"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // The audit log says who was limited, by which limit (written as it goes).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let limited: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["outcome"] == "limited")
            .collect();
        if limited.len() >= 4 {
            assert!(limited.iter().all(|l| l["key"] == "alice"), "{limited:?}");
            assert_eq!(limited[0]["limit"], "echo-rate");
            assert!(limited.iter().any(|l| l["limit"] == "two-at-once"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "limited calls in the audit log: {limited:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
