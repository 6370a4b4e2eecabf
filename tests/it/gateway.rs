//! `aareguru-mcp --sse`: the gateway with real children, real HTTP, hostile input and signals.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    gateway_util::{
        Gateway, McpClient, SseClient, example, processes_with, processes_with_env, wait_until_gone,
    },
};

fn text(reply: &Value) -> String {
    reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn full_session_with_the_builtin_server_on_every_backend() {
    // The default for the built-in server is in-process.
    for (backend, children) in [(None, 0), (Some("per-session"), 1), (Some("shared"), 1)] {
        let fake = FakeUpstream::start(Behaviour::Normal).await;
        let args: Vec<&str> = backend.map(|b| vec!["--backend", b]).unwrap_or_default();
        let gw = Gateway::start(&args, &[("AAREGURU_BASE_URL", &fake.base_url())]).await;
        let h = full_builtin_session(&gw, &fake).await;
        assert_eq!(h["backend"], backend.unwrap_or("in-process"));
        assert_eq!(h["children_alive"], children, "{backend:?}");
    }
}

async fn full_builtin_session(gw: &Gateway, fake: &FakeUpstream) -> Value {
    let mut c = SseClient::connect(gw).await;
    assert!(c.endpoint.contains("/messages?session_id="));
    let init = c.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "aareguru-mcp");
    let tools = c.request(json!(1), "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 7);
    let r = c
        .request(
            json!("a"),
            "tools/call",
            json!({"name": "get_current_temperature", "arguments": {"city": "Bärn"}}),
        )
        .await;
    assert!(text(&r).contains("12.5 °C"), "{r}");
    // Upstream settings reached the child.
    assert!(fake.state.count("current", Some("bern")) >= 1);
    let h = gw.health().await;
    assert_eq!(
        (h["status"].as_str(), h["sessions"].as_u64()),
        (Some("ok"), Some(1))
    );
    h
}

#[tokio::test]
async fn concurrent_sessions_with_colliding_ids_get_only_their_own_replies() {
    let gw = Gateway::with_fixture(&[]).await;
    colliding_ids_are_never_misrouted(&gw, 40, 15).await;
}

/// `sessions` concurrent sessions, each posting `calls` echo calls at once with the same ids
/// (integers and strings that look alike) and distinct payloads: every reply must reach the
/// session that asked, with its own payload, and none may be lost.
pub async fn colliding_ids_are_never_misrouted(gw: &Gateway, sessions: usize, calls: usize) {
    let results = join_all((0..sessions).map(|s| async move {
        let mut c = SseClient::connect(gw).await;
        c.initialize().await;
        let mut pending = vec![];
        for i in 0..calls {
            let id = if i % 2 == 0 {
                json!(i)
            } else {
                json!(i.to_string())
            };
            let payload = format!("session-{s}-call-{i}");
            let status = c
                .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                              "params": {"name": "echo", "arguments": {"p": payload}}}))
                .await;
            assert_eq!(status, 202);
            pending.push((id, payload));
        }
        let mut got = 0;
        while got < calls {
            let m = c.next_message().await.expect("stream ended early");
            let at = pending
                .iter()
                .position(|(id, _)| *id == m["id"])
                .unwrap_or_else(|| panic!("session {s} got a reply it never asked for: {m}"));
            let (id, payload) = pending.swap_remove(at);
            assert_eq!(
                m["result"]["structuredContent"]["p"], *payload,
                "session {s}: reply for id {id} carries another payload: {m}"
            );
            got += 1;
        }
        assert!(
            c.message_within(Duration::from_millis(100)).await.is_none(),
            "session {s} got more replies than it asked for"
        );
        got
    }))
    .await;
    assert_eq!(results.iter().sum::<usize>(), sessions * calls);
}

#[tokio::test]
async fn disconnect_terminates_child_and_grandchildren() {
    let marker = format!("{}", 700_000 + std::process::id() % 100_000);
    let fixture = example("fixture_server");
    let gw = Gateway::start(
        &["--child-env", "FIXTURE_*", "--", "sh", "-c", &fixture],
        &[("FIXTURE_GRANDCHILD", "1"), ("FIXTURE_MARKER", &marker)],
    )
    .await;
    let clients = SseClient::initialized_many(&gw, 5).await;
    gw.wait_health("5 children", |h| h["children_alive"] == 5)
        .await;
    assert_eq!(
        processes_with(&format!("sleep {marker}")),
        5,
        "grandchildren started"
    );
    drop(clients);
    gw.wait_health("children gone", |h| {
        h["children_alive"] == 0 && h["sessions"] == 0
    })
    .await;
    // Grandchildren (the `sleep`s the `sh` wrappers left) are gone too.
    let sleeps = format!("sleep {marker}");
    wait_until_gone(
        &[&sleeps],
        Duration::from_secs(10),
        "grandchildren survived",
    )
    .await;
}

#[tokio::test]
async fn child_crash_fails_inflight_requests_and_ends_only_that_stream() {
    let gw = Gateway::with_fixture(&[]).await;
    let mut victim = SseClient::connect(&gw).await;
    let mut bystander = SseClient::connect(&gw).await;
    victim.initialize().await;
    bystander.initialize().await;
    let r = victim
        .request(
            json!(5),
            "tools/call",
            json!({"name": "crash", "arguments": {}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32603, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("ended"),
        "{r}"
    );
    assert!(
        victim.ended_within(Duration::from_secs(10)).await,
        "stream should end"
    );
    let status = victim
        .post(&json!({"jsonrpc": "2.0", "id": 6, "method": "ping"}))
        .await;
    assert_eq!(status, 404);
    let r = bystander
        .request(
            json!(5),
            "tools/call",
            json!({"name": "echo", "arguments": {"still": "here"}}),
        )
        .await;
    assert_eq!(r["result"]["structuredContent"]["still"], "here");
    let text = gw.log_text();
    assert!(text.contains("child exited"), "crash is logged");
}

#[tokio::test]
async fn cancelled_requests_are_not_failed_when_the_child_dies() {
    let gw = Gateway::with_fixture(&[]).await;
    let mut c = SseClient::connect(&gw).await;
    c.initialize().await;
    let never = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "never", "arguments": {}}});
    assert_eq!(c.post(&never).await, 202);
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 1, "reason": "user gave up"}});
    assert_eq!(c.post(&cancel).await, 202);
    let r = c
        .request(
            json!(2),
            "tools/call",
            json!({"name": "crash", "arguments": {}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32603);
    // Nothing more for id 1: the stream just ends.
    if let Some(m) = c.next_message().await {
        panic!("unexpected message after the crash: {m}");
    }
}

#[tokio::test]
async fn non_json_child_output_is_skipped() {
    let gw = Gateway::with_fixture(&[]).await;
    let mut c = SseClient::connect(&gw).await;
    c.initialize().await;
    let r = c
        .request(
            json!(1),
            "tools/call",
            json!({"name": "junk", "arguments": {}}),
        )
        .await;
    assert_eq!(text(&r), "after junk");
    assert!(gw.log_text().contains("non-JSON line"));
}

#[tokio::test]
async fn over_long_child_reply_becomes_an_error_for_that_request() {
    let gw = Gateway::with_fixture(&["--max-line-bytes", "100000"]).await;
    let mut c = SseClient::connect(&gw).await;
    c.initialize().await;
    let r = c
        .request(
            json!(3),
            "tools/call",
            json!({"name": "big", "arguments": {"bytes": 200000}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32603, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("limit"));
    let r = c
        .request(
            json!(4),
            "tools/call",
            json!({"name": "big", "arguments": {"bytes": 1000}}),
        )
        .await;
    assert_eq!(text(&r).len(), 1000, "framing recovered");
}

#[tokio::test]
async fn bad_posts_get_clear_statuses() {
    let gw = Gateway::with_fixture(&["--max-body-bytes", "4096"]).await;
    let c = SseClient::connect(&gw).await;
    let http = reqwest::Client::new();
    let post = |url: String, ct: &'static str, body: String| {
        let http = http.clone();
        async move {
            let r = http
                .post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let ok = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    // Missing, malformed and unknown session ids.
    assert_eq!(
        post(gw.url("/messages"), "application/json", ok.clone())
            .await
            .0,
        400
    );
    assert_eq!(
        post(
            gw.url("/messages?session_id=nope"),
            "application/json",
            ok.clone()
        )
        .await
        .0,
        400
    );
    let unknown = gw.url("/messages?session_id=9b2e4f0c-1111-4222-8333-444455556666");
    assert_eq!(post(unknown, "application/json", ok.clone()).await.0, 404);
    // The camelCase spelling works too.
    let camel = c.endpoint.replace("session_id", "sessionId");
    assert_eq!(post(camel, "application/json", ok.clone()).await.0, 202);
    // Bad bodies.
    let (s, body) = post(c.endpoint.clone(), "application/json", "{not json".into()).await;
    assert_eq!(s, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32700
    );
    assert_eq!(
        post(c.endpoint.clone(), "application/json", "{\"id\":1}".into())
            .await
            .0,
        400
    );
    assert_eq!(
        post(c.endpoint.clone(), "application/json", "[]".into())
            .await
            .0,
        400
    );
    assert_eq!(
        post(c.endpoint.clone(), "application/json", "".into())
            .await
            .0,
        400
    );
    assert_eq!(
        post(c.endpoint.clone(), "text/plain", ok.clone()).await.0,
        415
    );
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":{{\"p\":\"{}\"}}}}",
        "a".repeat(10_000)
    );
    assert_eq!(
        post(c.endpoint.clone(), "application/json", huge).await.0,
        413
    );
    // Unknown paths and methods.
    assert_eq!(
        http.get(gw.url("/nope")).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        http.get(gw.url("/messages")).send().await.unwrap().status(),
        405
    );
    // The session survived all of it.
    let mut c = c;
    let r = c.request(json!(1), "ping", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
    let metrics = http
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("aareguru_gateway_rejected_requests_total{reason=\"body_too_large\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn hostile_bodies_are_refused_and_the_gateway_carries_on() {
    let gw = Gateway::with_fixture(&[]).await;
    let mut c = SseClient::connect(&gw).await;
    c.initialize().await;
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let mut bodies: Vec<Vec<u8>> = vec![
        deep.into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}{}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":{\"obj\":1},\"method\":\"ping\"}".to_vec(),
        b"null".to_vec(),
        b"\"just a string\"".to_vec(),
        b"[1, 2, 3]".to_vec(),
    ];
    // Pseudo-random bytes, deterministic.
    let mut x: u32 = 0x1234_5678;
    for _ in 0..20 {
        let body: Vec<u8> = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x & 0xff) as u8
            })
            .collect();
        bodies.push(body);
    }
    for body in bodies {
        let status = c
            .http
            .post(&c.endpoint)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert!(status == 400 || status == 202, "{status}");
    }
    let r = c.request(json!(77), "ping", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
    assert_eq!(gw.health().await["status"], "ok");
}

#[tokio::test]
async fn batches_and_pretty_printed_json_are_relayed() {
    let gw = Gateway::with_fixture(&[]).await;
    let mut c = SseClient::connect(&gw).await;
    c.initialize().await;
    let body = "[\n {\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"},\n {\"jsonrpc\": \"2.0\",\n  \"id\": 2, \"method\": \"tools/call\", \"params\": {\"name\": \"echo\", \"arguments\": {\"x\": \"a\\nb\"}}}\n]";
    let status = c
        .http
        .post(&c.endpoint)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    let mut ids = vec![];
    for _ in 0..2 {
        let m = c.next_message().await.unwrap();
        if m["id"] == 2 {
            assert_eq!(m["result"]["structuredContent"]["x"], "a\nb");
        }
        ids.push(m["id"].as_i64().unwrap());
    }
    ids.sort();
    assert_eq!(ids, [1, 2]);
}

#[tokio::test]
async fn discover_probe_is_answered_without_the_child() {
    let gw = Gateway::with_fixture(&[]).await;
    let mut c = SseClient::connect(&gw).await;
    let r = c.request(json!(1), "server/discover", json!({})).await;
    assert_eq!(r["error"]["code"], -32601, "{r}");
    c.initialize().await;
}

#[tokio::test]
async fn host_and_origin_are_validated() {
    let gw = Gateway::with_fixture(&[]).await;
    let refused = SseClient::connect_with(&gw, &[("host", "attacker.example")]).await;
    assert_eq!(refused.err().map(|e| e.0), Some(421));
    let refused = SseClient::connect_with(&gw, &[("origin", "https://attacker.example")]).await;
    assert_eq!(refused.err().map(|e| e.0), Some(403));
    assert!(
        SseClient::connect_with(&gw, &[("origin", "http://localhost:6274")])
            .await
            .is_ok()
    );
    // /health stays open to anyone.
    let r = reqwest::Client::new()
        .get(gw.url("/health"))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let gw = Gateway::with_fixture(&[
        "--allowed-host",
        "mcp.example.com",
        "--allowed-origin",
        "https://app.example.com",
    ])
    .await;
    assert!(
        SseClient::connect_with(
            &gw,
            &[
                ("host", "mcp.example.com"),
                ("origin", "https://app.example.com")
            ]
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn api_keys_when_configured_and_never_logged() {
    let key = "k-3f9a1c77-very-secret";
    let gw = Gateway::with_fixture(&["--api-key", key, "--protect-metrics"]).await;
    let refused = SseClient::connect_with(&gw, &[]).await;
    assert_eq!(refused.err().map(|e| e.0), Some(401));
    let refused = SseClient::connect_with(&gw, &[("x-api-key", "wrong")]).await;
    assert_eq!(refused.err().map(|e| e.0), Some(401));
    let mut c = SseClient::connect_with(&gw, &[("authorization", &format!("Bearer {key}"))])
        .await
        .unwrap();
    // POSTs need the key too (the client sends its connect headers on its POSTs; a bare one
    // does not).
    let bare = reqwest::Client::new()
        .post(&c.endpoint)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);
    let ok = c
        .http
        .post(&c.endpoint)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    assert!(c.next_message().await.unwrap()["result"].is_object());
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(gw.url("/metrics")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        http.get(gw.url("/metrics"))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(gw.url("/health")).send().await.unwrap().status(),
        200
    );
    assert!(!gw.log_text().contains(key), "the key appeared in the log");

    // From the environment, comma-separated.
    let fixture = example("fixture_server");
    let gw = Gateway::start(&["--", &fixture], &[("AAREGURU_MCP_API_KEYS", "one,two")]).await;
    assert!(
        SseClient::connect_with(&gw, &[("x-api-key", "two")])
            .await
            .is_ok()
    );
    assert_eq!(
        SseClient::connect_with(&gw, &[]).await.err().map(|e| e.0),
        Some(401)
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let gw = Gateway::with_fixture(&["--rate-limit", "2", "--rate-burst", "3"]).await;
    let c = SseClient::connect(&gw).await;
    let mut statuses = vec![];
    let mut retry_after = None;
    for i in 0..10 {
        let r = c
            .http
            .post(&c.endpoint)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc": "2.0", "id": i, "method": "ping"}).to_string())
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
        }
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&202));
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn session_limit_answers_503() {
    let gw = Gateway::with_fixture(&["--max-sessions", "2"]).await;
    let _a = SseClient::connect(&gw).await;
    let _b = SseClient::connect(&gw).await;
    let refused = SseClient::connect_with(&gw, &[]).await;
    assert_eq!(refused.err().map(|e| e.0), Some(503));
    drop(_a);
    gw.wait_health("slot freed", |h| h["sessions"] == 1).await;
    assert!(SseClient::connect_with(&gw, &[]).await.is_ok());
}

#[tokio::test]
async fn idle_sessions_are_reaped() {
    let gw = Gateway::with_fixture(&["--session-idle-timeout", "700ms"]).await;
    let mut c = SseClient::connect(&gw).await;
    c.initialize().await;
    assert!(
        c.ended_within(Duration::from_secs(15)).await,
        "idle stream not closed"
    );
    gw.wait_health("reaped", |h| h["sessions"] == 0 && h["children_alive"] == 0)
        .await;
}

#[tokio::test]
async fn keepalive_comments_flow_on_idle_streams() {
    let gw = Gateway::with_fixture(&["--keepalive", "100ms"]).await;
    let c = SseClient::connect(&gw).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(*c.comments.lock() >= 2);
}

#[tokio::test]
async fn child_that_never_answers_fails_after_the_start_timeout() {
    let gw = Gateway::start(
        &[
            "--child-start-timeout",
            "800ms",
            "--",
            "sh",
            "-c",
            "cat > /dev/null",
        ],
        &[],
    )
    .await;
    let mut c = SseClient::connect(&gw).await;
    let r = c
        .request(json!(1), "initialize", json!({"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}))
        .await;
    assert_eq!(r["error"]["code"], -32603, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not start")
    );
    assert!(c.ended_within(Duration::from_secs(10)).await);
    gw.wait_health("child gone", |h| h["children_alive"] == 0)
        .await;
}

#[tokio::test]
async fn builtin_child_still_starts_after_the_binary_is_replaced_on_disk() {
    // As when install.sh upgrades a running gateway: the file on disk is renamed over/removed.
    let dir = std::env::temp_dir().join(format!("aareguru-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("aareguru-mcp");
    std::fs::copy(crate::util::BIN, &copy).unwrap();
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let gw = Gateway::start_program(
        copy.to_str().unwrap(),
        &["--backend", "per-session"],
        &[("AAREGURU_BASE_URL", &fake.base_url())],
    )
    .await;
    std::fs::remove_file(&copy).unwrap();
    let mut c = SseClient::connect(&gw).await;
    let init = c.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "aareguru-mcp");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn child_that_cannot_start_is_a_502() {
    let gw = Gateway::start(&["--", "/nonexistent/mcp-server"], &[]).await;
    let refused = SseClient::connect_with(&gw, &[]).await;
    assert_eq!(refused.err().map(|e| e.0), Some(502));
}

#[tokio::test]
async fn public_url_prefix_is_announced_and_accepted() {
    let gw = Gateway::with_fixture(&["--public-url", "/aare"]).await;
    let mut c = SseClient::connect(&gw).await;
    assert!(
        c.endpoint.contains("/aare/messages?session_id="),
        "{}",
        c.endpoint
    );
    c.initialize().await;
    // A proxy that does not strip the prefix reaches the same routes.
    let h = reqwest::get(gw.url("/aare/health")).await.unwrap();
    assert_eq!(h.status(), 200);
}

#[tokio::test]
async fn client_that_stops_reading_is_cut_off() {
    let gw = Gateway::with_fixture(&["--session-buffer-bytes", "65536"]).await;
    // A raw socket that sends GET /sse and then never reads.
    let addr = gw.base.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let sock = socket2_recv_buffer(stream);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = sock;
    sock.write_all(format!("GET /sse HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = vec![0u8; 512];
    let n = sock.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    let session = head
        .split("session_id=")
        .nth(1)
        .map(|s| s.chars().take(36).collect::<String>())
        .expect("endpoint event in the first read");
    let endpoint = gw.url(&format!("/messages?session_id={session}"));
    let http = reqwest::Client::new();
    // Posting is quicker than the child writing 200 kB answers: after a burst, keep asking
    // (slowly) until the gateway has noticed the client is not reading.
    let mut closed = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    while std::time::Instant::now() < deadline {
        let status = http
            .post(&endpoint)
            .header("content-type", "application/json")
            .body(
                json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                         "params": {"name": "big", "arguments": {"bytes": 200_000}}})
                .to_string(),
            )
            .send()
            .await
            .unwrap()
            .status();
        if status == 404 {
            closed = true;
            break;
        }
        i += 1;
        if i >= 400 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(closed, "a client that never reads kept its session open");
    assert!(gw.log_text().contains("not reading its stream"));
    gw.wait_health("child gone", |h| h["children_alive"] == 0)
        .await;
    drop(sock);
}

/// Shrinks the socket's receive buffer so back-pressure reaches the gateway quickly.
fn socket2_recv_buffer(stream: tokio::net::TcpStream) -> tokio::net::TcpStream {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt on a valid socket with a pointer to a local int.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    stream
}

#[tokio::test]
async fn sigterm_ends_streams_stops_children_and_exits_zero() {
    let marker = format!("{}", 800_000 + std::process::id() % 100_000);
    let fixture = example("fixture_server");
    let mut gw = Gateway::start(
        &[
            "--shutdown-grace",
            "1s",
            "--child-env",
            "FIXTURE_*",
            "--",
            &fixture,
        ],
        &[("FIXTURE_GRANDCHILD", "1"), ("FIXTURE_MARKER", &marker)],
    )
    .await;
    let mut clients = SseClient::initialized_many(&gw, 3).await;
    crate::infra::signal(gw.child.id().unwrap(), libc::SIGTERM);
    for c in &mut clients {
        assert!(
            c.ended_within(Duration::from_secs(10)).await,
            "stream not ended on shutdown"
        );
    }
    let status = tokio::time::timeout(Duration::from_secs(15), gw.child.wait())
        .await
        .expect("gateway did not exit")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let sleeps = format!("sleep {marker}");
    wait_until_gone(
        &[&sleeps],
        Duration::from_secs(5),
        "grandchildren survived shutdown",
    )
    .await;
    // The fixture children of this gateway (by their environment: other tests run the same
    // program).
    let ours = format!("FIXTURE_MARKER={marker}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while processes_with_env(&ours) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "children survived shutdown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn health_turns_503_while_children_stop() {
    // A child that ignores both stdin EOF and SIGTERM keeps the drain going until SIGKILL.
    let mut gw = Gateway::start(
        &[
            "--shutdown-grace",
            "1s",
            "--",
            "sh",
            "-c",
            "trap '' TERM; while :; do sleep 0.1; done",
        ],
        &[],
    )
    .await;
    let c = SseClient::connect(&gw).await;
    gw.wait_health("child up", |h| h["children_alive"] == 1)
        .await;
    crate::infra::signal(gw.child.id().unwrap(), libc::SIGTERM);
    let http = reqwest::Client::new();
    let mut saw_503 = false;
    for _ in 0..100 {
        match http.get(gw.url("/health")).send().await {
            Ok(r) if r.status() == 503 => {
                assert_eq!(r.headers()["connection"], "close");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["status"], "shutting_down");
                // Readiness is 503, yet for the drain delay everything is still served, each
                // answer closing its connection.
                let sse = http.get(gw.url("/sse")).send().await.unwrap();
                assert_eq!(sse.status(), 200, "served while draining");
                assert_eq!(sse.headers()["connection"], "close");
                saw_503 = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => break,
        }
    }
    assert!(saw_503, "/health never reported shutting_down");
    let status = tokio::time::timeout(Duration::from_secs(15), gw.child.wait())
        .await
        .expect("gateway did not exit")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    drop(c);
}

/// A supervisor that reads the gateway's log can die; the gateway must not care.
#[tokio::test]
async fn lost_stderr_reader_does_not_break_cleanup_or_shutdown() {
    let mut gw = Gateway::with_fixture(&[]).await;
    gw.stop_reading_log().await; // every later log write fails with EPIPE
    // Open and drop a session: its cleanup logs, and must still stop the child.
    let resp = reqwest::get(gw.url("/sse")).await.unwrap();
    assert_eq!(resp.status(), 200);
    gw.wait_health("child started", |h| h["children_alive"] == 1)
        .await;
    drop(resp);
    gw.wait_health("child outlived its session", |h| h["children_alive"] == 0)
        .await;
    crate::infra::signal(gw.child.id().unwrap(), libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(10), gw.child.wait())
        .await
        .expect("SIGTERM ignored")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn metrics_count_sessions_messages_and_spawns() {
    let gw = Gateway::with_fixture(&[]).await;
    let mut c = SseClient::connect(&gw).await;
    c.initialize().await;
    c.request(json!(1), "ping", json!({})).await;
    let m = gw.metrics().await;
    for needle in [
        "aareguru_gateway_sessions_active 1",
        "aareguru_gateway_sessions_total 1",
        "aareguru_gateway_child_spawns_total 1",
        "aareguru_gateway_messages_total{direction=\"client_to_server\"} 3",
        "aareguru_gateway_messages_total{direction=\"server_to_client\"} 2",
        "aareguru_gateway_post_duration_seconds_count 3",
        "aareguru_gateway_child_spawn_duration_seconds_count 1",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in\n{m}");
    }
}

/// What a child sees of `names` in its environment (the fixture's `env` tool), per name.
async fn child_env(gw: &Gateway, key: Option<&str>, names: &[&str]) -> Vec<Option<String>> {
    let mut c = McpClient::new(&gw.url(""));
    if let Some(k) = key {
        c.headers.push(("x-api-key".into(), k.into()));
    }
    c.initialize().await;
    let mut seen = vec![];
    for (i, name) in names.iter().enumerate() {
        let (status, v) = c.call(i as u64 + 1, "env", json!({"name": name})).await;
        assert_eq!(status, 200, "{v}");
        seen.push(
            v["result"]["structuredContent"]["value"]
                .as_str()
                .map(str::to_string),
        );
    }
    seen
}

/// Children do not inherit the gateway's environment, which holds its settings and secrets:
/// only the MCP SDKs' short list, what `--child-env` allows (no glob passes the gateway's own
/// `AAREGURU_*` variables) and the entry's own `env`.
#[tokio::test]
async fn children_get_only_the_environment_they_are_given() {
    let fixture = example("fixture_server");
    let env = [
        ("AAREGURU_MCP_API_KEYS", "key-1"),
        ("AAREGURU_MCP_OAUTH_CLIENT_SECRET", "oauth-secret"),
        ("AAREGURU_BASE_URL", "http://127.0.0.1:9"),
        ("CLOUD_TOKEN", "cloud-secret"),
        ("LC_IT_CHILD", "de_CH"),
        ("HOME", "/tmp/it-home"),
    ];
    let names = [
        "AAREGURU_MCP_API_KEYS",
        "AAREGURU_MCP_OAUTH_CLIENT_SECRET",
        "AAREGURU_BASE_URL",
        "CLOUD_TOKEN",
        "LC_IT_CHILD",
        "HOME",
    ];
    let s = |v: &str| Some(v.to_string());
    for backend in ["per-session", "shared"] {
        // By default: the short list only.
        let gw = Gateway::start(&["--backend", backend, "--", &fixture], &env).await;
        assert_eq!(
            child_env(&gw, Some("key-1"), &names).await,
            [None, None, None, None, None, s("/tmp/it-home")],
            "{backend}"
        );
        // Globs, even `*`, never pass the gateway's own settings; an exact name does.
        let gw = Gateway::start(
            &[
                "--backend",
                backend,
                "--child-env",
                "*,AAREGURU_BASE_URL",
                "--",
                &fixture,
            ],
            &env,
        )
        .await;
        assert_eq!(
            child_env(&gw, Some("key-1"), &names).await,
            [
                None,
                None,
                s("http://127.0.0.1:9"),
                s("cloud-secret"),
                s("de_CH"),
                s("/tmp/it-home")
            ],
            "{backend}"
        );
    }
    // The same from the environment, and a bad name refused at start.
    let gw = Gateway::start(
        &["--", &fixture],
        &[("AAREGURU_MCP_CHILD_ENV", "LC_*"), ("LC_IT_CHILD", "fr_CH")],
    )
    .await;
    assert_eq!(child_env(&gw, None, &["LC_IT_CHILD"]).await, [s("fr_CH")]);
    let out = std::process::Command::new(crate::util::BIN)
        .args(["--sse", "--port", "0", "--child-env", "A=B", "--", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--child-env"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
