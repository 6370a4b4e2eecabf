//! The shared and in-process backends: many sessions on one child (or none), with the protocol
//! kept whole — ids, progress, cancellation, the child's own requests, subscriptions, a child
//! that dies under load — and one upstream request for many sessions.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    gateway::colliding_ids_are_never_misrouted,
    gateway_util::{Gateway, SseClient, example},
    util::BIN,
};

/// The gateway with one shared, strict fixture child (it refuses requests before
/// `notifications/initialized`, so a gateway that forwards out of order fails).
async fn shared_fixture(extra: &[&str]) -> Gateway {
    let fixture = example("fixture_server");
    let mut args = vec!["--backend", "shared", "--child-env", "FIXTURE_STRICT"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", &fixture]);
    Gateway::start(&args, &[("FIXTURE_STRICT", "1")]).await
}

async fn stats(c: &mut SseClient) -> Value {
    let (r, _) = c.call(json!("stats"), "stats", json!({})).await;
    r["result"]["structuredContent"].clone()
}

#[tokio::test]
async fn hundreds_of_sessions_share_one_child_and_every_reply_finds_its_session() {
    let gw = shared_fixture(&[]).await;
    colliding_ids_are_never_misrouted(&gw, 300, 10).await;
    let h = gw.health().await;
    assert_eq!(h["backend"], "shared");
    assert_eq!(h["children_alive"], 1);
    // 300 handshakes, one of them reached the child.
    let mut c = SseClient::connect(&gw).await;
    c.initialize().await;
    let s = stats(&mut c).await;
    assert_eq!(
        (s["initialize"].as_u64(), s["initialized"].as_u64()),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn later_sessions_get_the_cached_handshake_with_their_own_version() {
    let gw = shared_fixture(&[]).await;
    let mut a = SseClient::connect(&gw).await;
    let ra = a.initialize_with("2025-06-18", json!({})).await;
    let mut b = SseClient::connect(&gw).await;
    let rb = b.initialize_with("2024-11-05", json!({})).await;
    assert_eq!(ra["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(rb["result"]["protocolVersion"], "2024-11-05");
    assert_eq!(rb["result"]["serverInfo"]["name"], "fixture-server");
    assert_eq!(rb["id"], 0);
}

#[tokio::test]
async fn progress_and_cancellation_are_routed_per_session() {
    let gw = shared_fixture(&[]).await;
    let mut clients = SseClient::initialized_many(&gw, 3).await;
    let [a, b, c] = &mut clients[..] else {
        unreachable!()
    };
    // Same request id, tokens that collide once rewritten naively ("1" vs 1).
    let progress = |token: Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "progress", "arguments": {"count": 3}, "_meta": {"progressToken": token}}})
    };
    assert_eq!(a.post(&progress(json!("1"))).await, 202);
    assert_eq!(b.post(&progress(json!(1))).await, 202);
    for (client, token) in [(&mut *a, json!("1")), (&mut *b, json!(1))] {
        for step in 1..=3 {
            let m = client.next_message().await.unwrap();
            assert_eq!(m["method"], "notifications/progress", "{m}");
            assert_eq!(m["params"]["progressToken"], token);
            assert_eq!(m["params"]["progress"], step);
        }
        let done = client.next_message().await.unwrap();
        assert_eq!(
            (done["id"].clone(), done["result"].is_object()),
            (json!(1), true)
        );
    }
    assert!(c.message_within(Duration::from_millis(100)).await.is_none());

    // Two sessions wait on calls with the same id; only a's is cancelled at the child.
    for (client, label) in [(&*a, "a"), (&*b, "b")] {
        let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                          "params": {"name": "never", "arguments": {"label": label}}});
        assert_eq!(client.post(&call).await, 202);
    }
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 5, "reason": "user"}});
    assert_eq!(a.post(&cancel).await, 202);
    let labels = |s: Value| s["labels"].clone();
    let (r, _) = c.call(json!(9), "cancelled", json!({})).await;
    assert_eq!(
        labels(r["result"]["structuredContent"].clone()),
        json!(["a"])
    );
    // b leaves: the gateway cancels its request at the child.
    drop(clients.remove(1));
    let c = &mut clients[1];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (r, _) = c.call(json!(10), "cancelled", json!({})).await;
        if labels(r["result"]["structuredContent"].clone()) == json!(["a", "b"]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b's request was not cancelled: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_childs_requests_reach_the_asking_session_and_its_answer_reaches_the_child() {
    let gw = shared_fixture(&[]).await;
    let mut clients = vec![];
    for _ in 0..4 {
        let mut c = SseClient::connect(&gw).await;
        c.initialize_with("2025-06-18", json!({"roots": {"listChanged": true}}))
            .await;
        clients.push(c);
    }
    for (k, asker) in clients.iter_mut().enumerate() {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "ask", "arguments": {"method": "roots/list"}}});
        assert_eq!(asker.post(&call).await, 202);
        let question = asker.next_message().await.unwrap();
        assert_eq!(question["method"], "roots/list", "{question}");
        let root = format!("file:///session-{k}");
        let answer =
            json!({"jsonrpc": "2.0", "id": question["id"], "result": {"roots": [{"uri": root}]}});
        assert_eq!(asker.post(&answer).await, 202);
        let done = asker.next_message().await.unwrap();
        assert_eq!(done["id"], 1);
        let seen = &done["result"]["structuredContent"]["answer"];
        assert_eq!(seen["result"]["roots"][0]["uri"], root.as_str(), "{done}");
        // The child got the answer under its own id (it numbers "1", "2"…).
        assert_eq!(seen["id"], json!((k + 1).to_string()));
    }
    for (k, c) in clients.iter_mut().enumerate() {
        let extra = c.message_within(Duration::from_millis(100)).await;
        assert!(
            extra.is_none(),
            "session {k} got a message meant for another: {extra:?}"
        );
    }
}

#[tokio::test]
async fn resource_updates_reach_subscribers_only_and_list_changes_reach_everyone() {
    let gw = shared_fixture(&[]).await;
    let mut clients = SseClient::initialized_many(&gw, 3).await;
    let uri = "fixture://x";
    for c in &mut clients[..2] {
        let r = c
            .request(json!(1), "resources/subscribe", json!({"uri": uri}))
            .await;
        assert!(r["result"].is_object(), "{r}");
    }
    // The toucher's own notifications precede its reply.
    let (_, before) = clients[2]
        .call(json!(2), "touch", json!({"uri": uri}))
        .await;
    let mut got = vec![];
    for (k, c) in clients.iter_mut().enumerate() {
        let mut methods: Vec<String> = if k == 2 {
            before
                .iter()
                .map(|m| m["method"].as_str().unwrap_or("").to_string())
                .collect()
        } else {
            vec![]
        };
        while let Some(m) = c.message_within(Duration::from_millis(300)).await {
            methods.push(m["method"].as_str().unwrap_or("").to_string());
        }
        got.push(methods);
    }
    assert_eq!(
        got[0],
        [
            "notifications/resources/updated",
            "notifications/resources/list_changed"
        ]
    );
    assert_eq!(got[1], got[0]);
    assert_eq!(got[2], ["notifications/resources/list_changed"]);
    // Both subscribers leave: the child is unsubscribed.
    let mut last = clients.pop().unwrap();
    drop(clients);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats(&mut last).await["subscriptions"] != json!([]) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "child still subscribed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_shared_child_killed_under_load_fails_in_flight_requests_at_once_and_comes_back() {
    let gw = shared_fixture(&[]).await;
    let mut clients = SseClient::initialized_many(&gw, 20).await;
    let pid = gw.health().await["shared_children"][0]["pid"]
        .as_u64()
        .unwrap();
    // Every session has a request the child will not finish for a long time.
    for c in &clients {
        let call = json!({"jsonrpc": "2.0", "id": "slow", "method": "tools/call",
                          "params": {"name": "slow", "arguments": {"ms": 60_000}}});
        assert_eq!(c.post(&call).await, 202);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = std::time::Instant::now();
    crate::infra::signal(pid as u32, libc::SIGKILL);
    for c in &mut clients {
        let m = c
            .next_message()
            .await
            .expect("the session must survive the child");
        assert_eq!(m["id"], "slow");
        assert_eq!(m["error"]["code"], -32603, "{m}");
    }
    // Generous bound; the point is "not after the 60 s the calls would have taken".
    assert!(killed.elapsed() < Duration::from_secs(20));
    // Later requests succeed on the restarted, re-initialized child.
    colliding_calls_succeed(&mut clients).await;
    let h = gw.health().await;
    let child = &h["shared_children"][0];
    assert_eq!(
        (h["status"].as_str(), child["restarts"].as_u64()),
        (Some("ok"), Some(1))
    );
    assert_ne!(child["pid"].as_u64(), Some(pid));
    let s = stats(&mut clients[0]).await;
    assert_eq!(
        (s["initialize"].as_u64(), s["initialized"].as_u64()),
        (Some(1), Some(1))
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("aareguru_gateway_child_restarts_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aareguru_gateway_shared_children_ready 1"),
        "{metrics}"
    );
}

async fn colliding_calls_succeed(clients: &mut [SseClient]) {
    for (k, c) in clients.iter_mut().enumerate() {
        let (r, _) = c.call(json!(1), "echo", json!({"k": k})).await;
        assert_eq!(r["result"]["structuredContent"]["k"], k, "{r}");
    }
}

#[tokio::test]
async fn a_crash_on_the_shared_child_fails_every_sessions_requests_but_no_session_ends() {
    let gw = shared_fixture(&[]).await;
    let mut clients = SseClient::initialized_many(&gw, 2).await;
    let never = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                       "params": {"name": "never", "arguments": {}}});
    assert_eq!(clients[1].post(&never).await, 202);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (r, _) = clients[0].call(json!(3), "crash", json!({})).await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exit status: 3"),
        "{r}"
    );
    let m = clients[1].next_message().await.unwrap();
    assert_eq!(
        (m["id"].clone(), m["error"]["code"].clone()),
        (json!(3), json!(-32603))
    );
    colliding_calls_succeed(&mut clients).await;
}

#[tokio::test]
async fn a_shared_child_that_never_answers_initialize_is_restarted() {
    let gw = Gateway::start(
        &[
            "--backend",
            "shared",
            "--child-start-timeout",
            "1s",
            "--",
            "sleep",
            "600",
        ],
        &[],
    )
    .await;
    let mut c = SseClient::connect(&gw).await;
    let r = c
        .request(
            json!(0),
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32603, "{r}");
    gw.wait_health("child restarted", |h| {
        h["shared_children"][0]["restarts"].as_u64() >= Some(1)
    })
    .await;
    assert!(gw.log_text().contains("did not answer initialize in time"));
}

#[tokio::test]
async fn a_shared_command_that_cannot_start_stops_the_gateway_with_a_clear_error() {
    let out = tokio::process::Command::new(BIN)
        .args([
            "--sse",
            "--port",
            "0",
            "--backend",
            "shared",
            "--",
            "/nonexistent/server",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot start") && err.contains("/nonexistent/server"),
        "{err}"
    );
}

/// Many sessions ask for the same station at once: one upstream request, whatever the number
/// of sessions, with the in-process and the shared backend.
#[tokio::test]
async fn many_sessions_one_upstream_request() {
    for backend in ["in-process", "shared"] {
        let fake = FakeUpstream::start(Behaviour::Normal).await;
        // Slow enough that all calls overlap and must be coalesced, not merely cached.
        fake.state.set_delay(Duration::from_millis(500));
        let gw = Gateway::start(
            &["--backend", backend],
            &[("AAREGURU_BASE_URL", &fake.base_url())],
        )
        .await;
        let mut clients = SseClient::initialized_many(&gw, 50).await;
        let replies = join_all(clients.iter_mut().enumerate().map(|(k, c)| async move {
            let (r, _) = c
                .call(json!(k), "get_current_temperature", json!({"city": "bern"}))
                .await;
            r
        }))
        .await;
        for r in &replies {
            let text = r["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or_default();
            assert!(text.contains("12.5 °C"), "{backend}: {r}");
        }
        assert_eq!(
            fake.state.count("current", Some("bern")),
            1,
            "{backend}: {:?}",
            fake.state.requests()
        );
        assert!(fake.state.count("cities", None) <= 1, "{backend}");
    }
}

/// One request that panics while holding the shared child's lock (a test-only hook of debug
/// builds) costs its own connection, nothing else: the lock does not poison, the other sessions
/// and the panicking session itself keep being served.
#[tokio::test]
async fn a_panicking_request_takes_no_other_session_down() {
    let fixture = example("fixture_server");
    let gw = Gateway::start(
        &["--backend", "shared", "--", &fixture],
        &[("AAREGURU_MCP_TEST_PANICS", "1")],
    )
    .await;
    let mut clients = vec![];
    for _ in 0..3 {
        let mut c = crate::gateway_util::McpClient::new(&gw.base);
        c.initialize().await;
        clients.push(c);
    }
    let panicked = tokio::time::timeout(
        Duration::from_secs(10),
        clients[0]
            .http
            .post(&clients[0].url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18")
            .header("mcp-session-id", clients[0].session.as_deref().unwrap())
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"aareguru-test/panic"}"#)
            .send(),
    )
    .await
    .expect("the panicking request ends");
    assert!(
        panicked.as_ref().map_or(true, |r| r.status() == 500),
        "{panicked:?}"
    );
    for round in 0..3 {
        for (i, c) in clients.iter().enumerate() {
            let (status, v) = c
                .call(10 + round, "echo", json!({"client": i, "round": round}))
                .await;
            assert_eq!(status, 200, "client {i} round {round}: {v}");
            assert_eq!(v["result"]["structuredContent"]["client"], i);
        }
    }
    let h = gw.health().await;
    assert_eq!(h["status"], "ok", "{h}");
    assert!(gw.log_text().contains("aareguru-test/panic"));
}

/// While a shared child restarts, what waits for it is bounded in bytes: past
/// `--session-buffer-bytes` a POST is refused with 503 instead of growing the gateway, and once
/// the new child is up the session carries on.
#[tokio::test]
async fn what_waits_for_a_restarting_shared_child_is_bounded() {
    let fixture = example("fixture_server");
    let gw = Gateway::start(
        &[
            "--backend",
            "shared",
            "--session-buffer-bytes",
            "1048576",
            "--child-env",
            "FIXTURE_START_MS",
            "--",
            &fixture,
        ],
        &[("FIXTURE_START_MS", "3000")],
    )
    .await;
    let mut c = crate::gateway_util::McpClient::new(&gw.base);
    c.initialize().await;
    let (status, crashed) = c.call(1, "crash", json!({})).await;
    assert_eq!(status, 200, "{crashed}");
    // The new child takes 3 s to start: messages wait for it, up to the limit.
    let pad = "x".repeat(200 * 1024);
    let mut statuses = vec![];
    for i in 0..10 {
        let r = c
            .post(
                &json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed",
                          "params": {"pad": pad, "i": i}}),
            )
            .await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[0], 202, "{statuses:?}");
    assert!(statuses.contains(&503), "nothing refused: {statuses:?}");
    let started = std::time::Instant::now();
    loop {
        let (status, v) = c.call(2, "echo", json!({"back": true})).await;
        if status == 200 && v["result"]["structuredContent"]["back"] == true {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never served again: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
