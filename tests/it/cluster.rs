//! Several replicas behind real load balancers, on a real Redis: nginx round-robin (no
//! stickiness) with the cluster doing the placing, HAProxy stick tables with no Redis at all,
//! replicas killed and restarted, Redis stopped and restarted — with the load generator's
//! 0-misrouted/0-failed check and a plain Streamable HTTP client for the details.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    gateway_util::{Gateway, McpClient as Mcp, example},
    infra::{Balancer, Redis, free_port},
    util::HEAVY,
};

const BOTH: &str = "application/json, text/event-stream";

/// A gateway replica of a cluster on `redis` (or alone when `None`).
async fn replica(
    redis: Option<&Redis>,
    id: &str,
    port: u16,
    backend: &str,
    upstream: &str,
    marker: &str,
) -> Gateway {
    let port = port.to_string();
    let mut args = vec![
        "--port",
        &port,
        "--backend",
        backend,
        "--base-url",
        upstream,
        "--max-sessions",
        "4000",
    ];
    let url;
    if let Some(r) = redis {
        url = r.url();
        args.extend(["--redis", &url, "--replica-id", id]);
    }
    let fixture = example("fixture_server");
    if backend != "in-process" {
        // The marker makes this replica's children countable after it is killed.
        args.extend(["--", &fixture, marker]);
    }
    Gateway::start_exactly(crate::util::BIN, &args, &[]).await
}

fn host_port(gw: &Gateway) -> String {
    gw.base.trim_start_matches("http://").to_string()
}

/// Runs the load generator against `target`; returns its row and whether it passed.
async fn load(target: &str, mode: &str, child: &str, sessions: usize, calls: usize) -> String {
    let out = tokio::process::Command::new(example("loadgen"))
        .args(["--target", target, "--mode", mode, "--child", child])
        .args([
            "--sessions",
            &sessions.to_string(),
            "--calls",
            &calls.to_string(),
        ])
        .args(["--wave", "32"])
        .output()
        .await
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout.lines().last().unwrap_or("").to_string();
    assert!(
        out.status.success(),
        "loadgen {mode}/{child} against {target} failed: {row}\n{}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // | mode | backend | child | sessions | calls | … | misrouted | errors | …
    let cols: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!((cols[11], cols[12]), ("0", "0"), "misrouted/errors: {row}");
    row
}

async fn sum_health(replicas: &[&Gateway], field: &str) -> u64 {
    let mut n = 0;
    for r in replicas {
        n += r.health().await["cluster"][field].as_u64().unwrap_or(0);
    }
    n
}

/// Waits until every replica sees `n` live replicas.
pub(crate) async fn wait_peers(replicas: &[&Gateway], n: usize) {
    for r in replicas {
        r.wait_health("peers seen", |h| {
            h["cluster"]["peers"]
                .as_array()
                .is_some_and(|p| p.len() == n)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roaming_sessions_through_round_robin_survive_a_killed_replica() {
    let _heavy = HEAVY.lock().await;
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let mut gws = vec![];
    for i in 0..3 {
        gws.push(replica(Some(&redis), &format!("r{i}"), 0, "in-process", &base, "").await);
    }
    let lb = Balancer::nginx(&gws.iter().map(host_port).collect::<Vec<_>>()).await;
    wait_peers(&gws.iter().collect::<Vec<_>>(), 3).await;

    // 300 sessions × 20 calls, every reply checked, on both transports.
    load(&lb.url(), "mcp", "aareguru", 300, 20).await;
    load(&lb.url(), "sse", "aareguru", 300, 20).await;
    let all: Vec<&Gateway> = gws.iter().collect();
    assert!(
        sum_health(&all, "roamed").await > 0,
        "Streamable HTTP sessions roamed"
    );
    assert!(
        sum_health(&all, "forwarded").await > 0,
        "HTTP+SSE POSTs were forwarded"
    );

    // Sessions opened through the balancer, then one replica killed: they carry on.
    let mut clients = vec![];
    for _ in 0..12 {
        let mut c = Mcp::new(&lb.url());
        c.initialize().await;
        clients.push(c);
    }
    for (i, c) in clients.iter().enumerate() {
        let (status, v) = c
            .call(1, "get_current_temperature", json!({"city": "thun"}))
            .await;
        assert_eq!(status, 200, "session {i} before the kill: {v}");
    }
    let mut victim = gws.remove(1);
    victim.child.start_kill().unwrap();
    let _ = victim.child.wait().await;
    for round in 2..6 {
        for (i, c) in clients.iter().enumerate() {
            let (status, v) = c
                .call(round, "get_current_temperature", json!({"city": "bern"}))
                .await;
            assert_eq!(status, 200, "session {i}, call {round} after the kill: {v}");
            assert!(
                v["result"]["content"][0]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Bern"))
            );
        }
    }
    // The survivors see the dead one leave the cluster.
    wait_peers(&gws.iter().collect::<Vec<_>>(), 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_sessions_are_forwarded_and_end_with_their_replica() {
    let _heavy = HEAVY.lock().await;
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    for backend in ["per-session", "shared"] {
        let mut gws = vec![];
        let ids: Vec<String> = (0..3).map(|i| format!("{backend}-r{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            let marker = format!("pinned-{backend}-r{i}-{}", std::process::id());
            gws.push(replica(Some(&redis), id, 0, backend, &base, &marker).await);
        }
        let lb = Balancer::nginx(&gws.iter().map(host_port).collect::<Vec<_>>()).await;
        wait_peers(&gws.iter().collect::<Vec<_>>(), 3).await;
        load(&lb.url(), "mcp", "echo", 300, 20).await;
        load(&lb.url(), "sse", "echo", 120, 20).await;
        let all: Vec<&Gateway> = gws.iter().collect();
        assert!(
            sum_health(&all, "forwarded").await > 0,
            "{backend}: forwarded"
        );
        assert_eq!(
            sum_health(&all, "roamed").await,
            0,
            "{backend}: child sessions never roam"
        );

        // Sessions on each replica; then kill the one holding the first.
        let mut clients = vec![];
        for _ in 0..9 {
            let mut c = Mcp::new(&lb.url());
            c.initialize().await;
            let (status, _) = c.call(1, "echo", json!({"p": "x"})).await;
            assert_eq!(status, 200);
            clients.push(c);
        }
        let owner_of = |c: &Mcp| {
            let id = c.session.clone().unwrap();
            let redis_port = redis.port;
            async move {
                let out = tokio::process::Command::new("redis-cli")
                    .args([
                        "-p",
                        &redis_port.to_string(),
                        "GET",
                        &format!("aareguru-mcp:session:{id}"),
                    ])
                    .output()
                    .await
                    .unwrap();
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                v["owner"].as_str().unwrap_or("").to_string()
            }
        };
        let victim_id = owner_of(&clients[0]).await;
        let idx = ids
            .iter()
            .position(|id| *id == victim_id)
            .expect("owner is one of the replicas");
        let marker = format!("pinned-{backend}-r{idx}-{}", std::process::id());
        assert!(children_with(&marker) > 0, "the victim has children");
        let mut victim = gws.remove(idx);
        victim.child.start_kill().unwrap();
        let _ = victim.child.wait().await;
        // No orphan: the children die with their replica.
        wait_no_children(&marker, "children of the killed replica").await;
        for c in &clients {
            let owner = owner_of(c).await;
            let started = Instant::now();
            let (status, v) = c.call(2, "echo", json!({"p": "y"})).await;
            if owner == victim_id {
                assert_eq!(status, 404, "a session of the dead replica: {v}");
                assert!(started.elapsed() < Duration::from_secs(3), "404 promptly");
            } else {
                assert_eq!(status, 200, "a session of a live replica: {v}");
            }
        }
        // The client's answer to 404: a new session, which works.
        let mut fresh = Mcp::new(&lb.url());
        fresh.initialize().await;
        assert_eq!(fresh.call(1, "echo", json!({"p": "z"})).await.0, 200);
        drop(lb);
        drop(gws);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_stick_tables_route_sessions_without_redis() {
    let _heavy = HEAVY.lock().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let mut gws = vec![];
    for i in 0..3 {
        gws.push(replica(None, "", 0, "per-session", &base, &format!("sticky-r{i}")).await);
    }
    // What the stick table learns from: the session id on the stream's answer and on /mcp's.
    let sse = reqwest::get(gws[0].url("/sse")).await.unwrap();
    assert!(
        sse.headers().contains_key("mcp-session-id"),
        "GET /sse names its session"
    );
    drop(sse);
    let mut c = Mcp::new(&gws[0].base);
    c.initialize().await;
    let g = c
        .http
        .get(&c.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(g.headers()["mcp-session-id"], c.session.as_deref().unwrap());
    drop(g);
    let lb = Balancer::haproxy(&gws.iter().map(host_port).collect::<Vec<_>>()).await;
    load(&lb.url(), "mcp", "echo", 150, 20).await;
    load(&lb.url(), "sse", "echo", 150, 20).await;
    // Every replica served some: the stickiness is per session, not one replica for all.
    for g in &gws {
        let m = reqwest::get(g.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let opened: f64 = m
            .lines()
            .find(|l| l.starts_with("aareguru_gateway_sessions_total"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0.0);
        assert!(opened > 0.0, "{}: no session", g.base);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_then_recovers() {
    let mut redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let a = replica(Some(&redis), "a", 0, "in-process", &base, "").await;
    let b = replica(Some(&redis), "b", 0, "in-process", &base, "").await;
    wait_peers(&[&a, &b], 2).await;
    // A session used on both replicas (each holds a copy).
    let mut on_a = Mcp::new(&a.base);
    on_a.initialize().await;
    let mut on_b = Mcp::new(&b.base);
    on_b.session = on_a.session.clone();
    assert_eq!(on_b.call(1, "list_cities", json!({})).await.0, 200);

    redis.stop().await;
    for g in [&a, &b] {
        let h = g
            .wait_health("degraded", |h| h["status"] == "degraded")
            .await;
        assert!(h["reason"].as_str().unwrap().contains("Redis"), "{h}");
        assert_eq!(h["cluster"]["redis"], "unreachable");
    }
    // Sessions held here are still served.
    assert_eq!(on_a.call(2, "list_cities", json!({})).await.0, 200);
    assert_eq!(on_b.call(3, "list_cities", json!({})).await.0, 200);
    // A session opened during the outage works where it was opened, and elsewhere too: the
    // directory cannot say where it is, so the replica asks the others, and the one that holds
    // it answers.
    let mut during = Mcp::new(&a.base);
    during.initialize().await;
    assert_eq!(during.call(1, "list_cities", json!({})).await.0, 200);
    let mut elsewhere = Mcp::new(&b.base);
    elsewhere.session = during.session.clone();
    let (status, v) = elsewhere.call(1, "list_cities", json!({})).await;
    assert_eq!(status, 200, "{v}");
    // A session no replica holds cannot be placed: 503 with Retry-After, not a hang and not a
    // 404 (the client must not start over).
    let mut nowhere = Mcp::new(&b.base);
    nowhere.session = Some(uuid::Uuid::new_v4().to_string());
    let started = Instant::now();
    let r = nowhere
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(started.elapsed() < Duration::from_secs(3));

    redis.restart().await;
    for g in [&a, &b] {
        g.wait_health("recovered", |h| {
            h["status"] == "ok" && h["cluster"]["redis"] == "ok"
        })
        .await;
    }
    // What was opened during the outage is registered now, so it roams.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = elsewhere.call(2, "list_cities", json!({})).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session opened during the outage never roamed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(on_b.call(4, "list_cities", json!({})).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_with_the_same_id_does_not_revive_its_sessions() {
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let port = free_port();
    let marker = format!("restart-{}", std::process::id());
    let mut a = replica(Some(&redis), "a", port, "per-session", &base, &marker).await;
    let b = replica(
        Some(&redis),
        "b",
        0,
        "per-session",
        &base,
        &format!("{marker}-b"),
    )
    .await;
    wait_peers(&[&a, &b], 2).await;
    let mut c = Mcp::new(&a.base);
    c.initialize().await;
    assert_eq!(c.call(1, "echo", json!({"p": "1"})).await.0, 200);
    // Through the other replica: forwarded.
    let mut via_b = Mcp::new(&b.base);
    via_b.session = c.session.clone();
    assert_eq!(via_b.call(2, "echo", json!({"p": "2"})).await.0, 200);

    a.child.start_kill().unwrap();
    let _ = a.child.wait().await;
    let a2 = replica(Some(&redis), "a", port, "per-session", &base, &marker).await;
    assert_eq!(a2.base, a.base, "same address");
    // The old session's child died with the old process: gone, wherever it is asked.
    assert_eq!(c.call(3, "echo", json!({"p": "3"})).await.0, 404);
    assert_eq!(via_b.call(4, "echo", json!({"p": "4"})).await.0, 404);
    let mut fresh = Mcp::new(&b.base);
    fresh.initialize().await;
    assert_eq!(fresh.call(1, "echo", json!({"p": "5"})).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_is_authenticated_and_never_loops() {
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let a = replica(Some(&redis), "a", 0, "per-session", &base, "auth-a").await;
    let b = replica(Some(&redis), "b", 0, "per-session", &base, "auth-b").await;
    wait_peers(&[&a, &b], 2).await;
    let mut c = Mcp::new(&a.base);
    c.initialize().await;
    let session = c.session.clone().unwrap();
    let http = reqwest::Client::new();
    let call = |url: String, secret: Option<String>| {
        let (http, session) = (http.clone(), session.clone());
        async move {
            let mut r = http
                .post(url)
                .header("accept", BOTH)
                .header("content-type", "application/json")
                .header("mcp-session-id", session)
                .body(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#);
            if let Some(s) = secret {
                r = r.header("x-aareguru-cluster", s);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    // A wrong secret is refused outright.
    assert_eq!(
        call(b.url("/mcp"), Some("not-the-secret-at-all".into())).await,
        403
    );
    // With the right secret, a request is taken as already forwarded: B does not hold the
    // session, and does not pass it on again.
    let secret = redis.cli(&["GET", "aareguru-mcp:secret"]).await;
    assert!(secret.len() >= 32, "a generated secret: {secret:?}");
    assert_eq!(call(b.url("/mcp"), Some(secret.clone())).await, 404);
    // Without it, B forwards to A, which holds it.
    assert_eq!(call(b.url("/mcp"), None).await, 200);
    assert_eq!(call(a.url("/mcp"), Some(secret)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_stream_is_resumed_on_the_replica_that_buffered_it() {
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let a = replica(Some(&redis), "a", 0, "per-session", &base, "resume-a").await;
    let b = replica(Some(&redis), "b", 0, "per-session", &base, "resume-b").await;
    wait_peers(&[&a, &b], 2).await;
    let mut on_a = Mcp::new(&a.base);
    on_a.initialize().await;
    // Everything else goes through B, which forwards to A.
    let mut c = Mcp::new(&b.base);
    c.session = on_a.session.clone();
    // The fixture's `ask` sends a request to the client first, so the answer is an SSE stream.
    let r = c
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "ask", "arguments": {"method": "roots/list"}}}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let (id, question) = tokio::time::timeout(Duration::from_secs(10), async {
        use futures::StreamExt;
        loop {
            text.push_str(&String::from_utf8_lossy(
                &body.next().await.unwrap().unwrap(),
            ));
            let event = text.split("\n\n").find(|e| e.contains("roots/list"));
            if let Some(event) = event {
                let id = event
                    .lines()
                    .find_map(|l| l.strip_prefix("id:"))
                    .unwrap()
                    .trim()
                    .to_string();
                let data = event
                    .lines()
                    .find_map(|l| l.strip_prefix("data:"))
                    .unwrap()
                    .trim()
                    .to_string();
                return (id, serde_json::from_str::<Value>(&data).unwrap());
            }
        }
    })
    .await
    .expect("the question within 10 s");
    // Event ids name the replica that buffers the stream.
    let tag = a.health().await["cluster"]["incarnation"].as_str().unwrap()[..8].to_string();
    assert!(id.starts_with(&format!("{tag}.")), "{id}");
    drop(body);
    let answer = json!({"jsonrpc": "2.0", "id": question["id"], "result": {"roots": [{"uri": "file:///r"}]}});
    assert_eq!(c.post(&answer).await.status(), 202);
    let g = c
        .http
        .get(&c.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), 200);
    let events = tokio::time::timeout(Duration::from_secs(10), g.text())
        .await
        .expect("the resumed stream ends after the response")
        .unwrap();
    let results: Vec<Value> = events
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data:")))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["id"], 1);
}

/// Fixture children (not gateways, whose command lines name them too) carrying `marker`.
fn children_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| {
            c.split(' ')
                .next()
                .is_some_and(|argv0| argv0.ends_with("fixture_server"))
                && c.contains(marker)
        })
        .count()
}

/// Waits (10 s at most) until no fixture child carries `marker`.
async fn wait_no_children(marker: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while children_with(marker) > 0 {
        assert!(Instant::now() < deadline, "{what} still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(gw: &Gateway, sig: i32) {
    let pid = gw.child.id().expect("running") as libc::pid_t;
    // SAFETY: kill only sends a signal to our own child process.
    unsafe {
        libc::kill(pid, sig);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_replica_gives_up_what_the_others_gave_up() {
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let marker = format!("stall-{}", std::process::id());
    let a = replica(Some(&redis), "a", 0, "per-session", &base, &marker).await;
    let b = replica(Some(&redis), "b", 0, "per-session", &base, "stall-b").await;
    wait_peers(&[&a, &b], 2).await;
    let mut on_a = Mcp::new(&a.base);
    on_a.initialize().await;
    assert_eq!(on_a.call(1, "echo", json!({"p": "1"})).await.0, 200);
    let mut via_b = Mcp::new(&b.base);
    via_b.session = on_a.session.clone();

    // A stops answering (and announcing) for longer than its announcement lives.
    signal(&a, libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(7)).await;
    // B presumes it dead: the session is gone for everyone.
    assert_eq!(via_b.call(2, "echo", json!({"p": "2"})).await.0, 404);
    signal(&a, libc::SIGCONT);
    // A is back, but the session is no longer its own: it does not serve it, and lets its child go.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = on_a.call(3, "echo", json!({"p": "3"})).await;
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled replica kept serving a session given up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while children_with(&marker) > 0 {
        assert!(
            Instant::now() < deadline,
            "the given-up session's child was not stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it serves new sessions as before.
    let mut fresh = Mcp::new(&a.base);
    fresh.initialize().await;
    assert_eq!(fresh.call(1, "echo", json!({"p": "4"})).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_hands_roaming_sessions_over_and_ends_pinned_ones() {
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    // Roaming: two in-process replicas; the one that opened the session stops politely.
    let a = replica(Some(&redis), "a", 0, "in-process", &base, "").await;
    let b = replica(Some(&redis), "b", 0, "in-process", &base, "").await;
    wait_peers(&[&a, &b], 2).await;
    let mut c = Mcp::new(&a.base);
    c.initialize().await;
    assert_eq!(c.call(1, "list_cities", json!({})).await.0, 200);
    signal(&a, libc::SIGTERM);
    let mut a = a;
    let _ = tokio::time::timeout(Duration::from_secs(15), a.child.wait()).await;
    let mut via_b = Mcp::new(&b.base);
    via_b.session = c.session.clone();
    let (status, v) = via_b
        .call(2, "get_current_temperature", json!({"city": "thun"}))
        .await;
    assert_eq!(status, 200, "the session lives on: {v}");
    wait_peers(&[&b], 1).await;

    // Pinned: the stopping replica removes its sessions on the way out, so the others answer
    // 404 at once rather than try to forward.
    let p = replica(Some(&redis), "p", 0, "per-session", &base, "rolling-p").await;
    let q = replica(Some(&redis), "q", 0, "per-session", &base, "rolling-q").await;
    wait_peers(&[&p, &q], 3).await;
    let mut on_p = Mcp::new(&p.base);
    on_p.initialize().await;
    let id = on_p.session.clone().unwrap();
    signal(&p, libc::SIGTERM);
    let mut p = p;
    let _ = tokio::time::timeout(Duration::from_secs(15), p.child.wait()).await;
    assert_eq!(
        redis
            .cli(&["EXISTS", &format!("aareguru-mcp:session:{id}")])
            .await,
        "0"
    );
    let mut via_q = Mcp::new(&q.base);
    via_q.session = Some(id);
    assert_eq!(via_q.call(1, "echo", json!({"p": "x"})).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_recently_seen_pinned_sessions_are_still_forwarded() {
    let mut redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let a = replica(Some(&redis), "a", 0, "per-session", &base, "down-a").await;
    let b = replica(Some(&redis), "b", 0, "per-session", &base, "down-b").await;
    wait_peers(&[&a, &b], 2).await;
    let mut seen = Mcp::new(&a.base);
    seen.initialize().await;
    let mut unseen = Mcp::new(&a.base);
    unseen.initialize().await;
    // B learns where the first one lives.
    let mut via_b = Mcp::new(&b.base);
    via_b.session = seen.session.clone();
    assert_eq!(via_b.call(1, "echo", json!({"p": "1"})).await.0, 200);

    redis.stop().await;
    b.wait_health("degraded", |h| h["status"] == "degraded")
        .await;
    assert_eq!(via_b.call(2, "echo", json!({"p": "2"})).await.0, 200);
    // Not seen by B: B asks the other replicas, and its holder answers.
    let mut unseen_via_b = Mcp::new(&b.base);
    unseen_via_b.session = unseen.session.clone();
    let (status, v) = unseen_via_b.call(1, "echo", json!({"p": "3"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["structuredContent"]["p"], "3", "{v}");
    // On its own replica, both are served.
    assert_eq!(unseen.call(1, "echo", json!({"p": "4"})).await.0, 200);
    assert_eq!(seen.call(3, "echo", json!({"p": "5"})).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_a_servers_file_roam_and_forward_at_their_own_path() {
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let dir = crate::infra::TempDir::new("cluster-servers");
    let path = dir.0.join("servers.json");
    let config = json!({"mcpServers": {
        "aare": {"command": crate::util::BIN, "args": ["--stdio"]},
        "echo": {"command": example("fixture_server"), "args": []}
    }, "groups": {"g": {"members": ["aare", "echo"]}}});
    std::fs::write(&path, config.to_string()).unwrap();
    let path = path.display().to_string();
    let url = redis.url();
    let start = |id: &'static str| {
        let (path, url, base) = (path.clone(), url.clone(), upstream.base_url());
        async move {
            Gateway::start(
                &[
                    "--config",
                    &path,
                    "--base-url",
                    &base,
                    "--redis",
                    &url,
                    "--replica-id",
                    id,
                ],
                &[],
            )
            .await
        }
    };
    let a = start("a").await;
    let b = start("b").await;
    wait_peers(&[&a, &b], 2).await;
    // Roaming (the built-in entry, in process): opened on A, served by B at the same path.
    let mut on_a = Mcp::new(&a.url("/servers/aare"));
    on_a.initialize().await;
    let mut via_b = Mcp::new(&b.url("/servers/aare"));
    via_b.session = on_a.session.clone();
    assert_eq!(via_b.call(1, "list_cities", json!({})).await.0, 200);
    assert_eq!(b.health().await["cluster"]["roamed"], 1);
    // Pinned (a child per session): forwarded to A at the same path.
    let mut echo_a = Mcp::new(&a.url("/servers/echo"));
    echo_a.initialize().await;
    let mut echo_b = Mcp::new(&b.url("/servers/echo"));
    echo_b.session = echo_a.session.clone();
    assert_eq!(echo_b.call(1, "echo", json!({"p": 1})).await.0, 200);
    // At another server's path, neither exists.
    let mut wrong = Mcp::new(&b.url("/servers/echo"));
    wrong.session = on_a.session.clone();
    assert_eq!(wrong.call(2, "echo", json!({})).await.0, 404);
    let mut plain = Mcp::new(&b.base);
    plain.session = echo_a.session.clone();
    assert_eq!(plain.call(3, "list_cities", json!({})).await.0, 404);
    // A group session is pinned (it holds its members' sessions): opened on A, forwarded from B,
    // each call reaching its own member there.
    let mut group_a = Mcp::new(&a.url("/servers/g"));
    group_a.initialize().await;
    let mut group_b = Mcp::new(&b.url("/servers/g"));
    group_b.session = group_a.session.clone();
    let (status, v) = group_b.call(4, "echo__echo", json!({"p": 4})).await;
    assert_eq!(
        (status, &v["result"]["structuredContent"]["p"]),
        (200, &json!(4)),
        "{v}"
    );
    let (status, v) = group_b.call(5, "aare__list_cities", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["result"]["content"].is_array(), "{v}");
    // The 2026-07-28 revision on a group: any replica answers.
    let m = crate::modern::Modern::at(&b.url("/servers/g"));
    let r = m.call("echo__echo", json!({"p": 6})).await;
    assert_eq!(r["result"]["structuredContent"]["p"], 6, "{r}");
}

/// Protocol revision 2026-07-28 behind nginx round-robin: any replica serves a request, and a
/// retry carrying a `requestState` is sent to the replica whose call waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_requests_and_their_retries_through_round_robin() {
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let mut gws = vec![];
    for i in 0..2 {
        let marker = format!("stateless-r{i}-{}", std::process::id());
        gws.push(replica(Some(&redis), &format!("s{i}"), 0, "shared", &base, &marker).await);
    }
    let lb = Balancer::nginx(&gws.iter().map(host_port).collect::<Vec<_>>()).await;
    wait_peers(&gws.iter().collect::<Vec<_>>(), 2).await;
    let m = crate::modern::Modern::at(&lb.url());
    for i in 0..20 {
        let r = m.call("echo", json!({"i": i})).await;
        assert_eq!(r["result"]["structuredContent"]["i"], i, "{r}");
    }
    for i in 0..8 {
        let first = m
            .call(
                "ask",
                json!({"method": "elicitation/create", "params": {"i": i}}),
            )
            .await;
        let r = &first["result"];
        assert_eq!(r["resultType"], "input_required", "{first}");
        let (key, _) = r["inputRequests"]
            .as_object()
            .unwrap()
            .iter()
            .next()
            .unwrap();
        let answer = json!({"action": "accept", "content": {"i": i}});
        let (status, retry) = m
            .request(
                "tools/call",
                json!({"name": "ask", "arguments": {"method": "elicitation/create", "params": {"i": i}},
                       "inputResponses": {key.clone(): answer}, "requestState": r["requestState"]}),
            )
            .await;
        assert_eq!(status, 200, "{retry}");
        assert_eq!(
            retry["result"]["structuredContent"]["answer"]["result"]["content"]["i"], i,
            "{retry}"
        );
    }
    let all: Vec<&Gateway> = gws.iter().collect();
    assert!(
        sum_health(&all, "forwarded").await > 0,
        "some retries reached the other replica and were forwarded"
    );
}

/// A session that closes while its directory entry is being written (Redis slow to take
/// writes, the child gone right after its handshake) leaves no entry behind for the heartbeat
/// to keep alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_closed_while_registering_leaves_no_entry() {
    let redis = Redis::start().await;
    let url = redis.url();
    let fixture = example("fixture_server");
    let gw = Gateway::start(
        &[
            "--redis",
            &url,
            "--replica-id",
            "churn",
            "--child-env",
            "FIXTURE_EXIT_AFTER_INIT",
            "--",
            &fixture,
        ],
        &[("FIXTURE_EXIT_AFTER_INIT", "1")],
    )
    .await;
    gw.wait_health("redis up", |h| h["cluster"]["redis"] == "ok")
        .await;
    let mut opened = vec![];
    for _ in 0..4 {
        // Writes wait 250 ms (the gateway gives Redis 500 ms): the put is on its way when the
        // child exits and the session ends.
        redis.cli(&["CLIENT", "PAUSE", "250", "WRITE"]).await;
        let c = crate::gateway_util::McpClient::new(&gw.base);
        let r = c
            .post(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "it", "version": "1"}}}),
            )
            .await;
        assert_eq!(r.status(), 200);
        opened.push(r.headers()["mcp-session-id"].to_str().unwrap().to_string());
    }
    gw.wait_health("sessions closed", |h| h["sessions"] == 0)
        .await;
    // Past a heartbeat or two: whatever was left would have been refreshed by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in &opened {
        let key = format!("aareguru-mcp:session:{id}");
        assert_eq!(
            redis.cli(&["EXISTS", &key]).await,
            "0",
            "the entry of {id} outlived its session"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roaming_sessions_active_tools_travel_with_it() {
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let dir = crate::infra::TempDir::new("cluster-search");
    let path = dir.0.join("servers.json");
    let config = json!({"mcpServers": {
        "aare": {"command": crate::util::BIN, "args": ["--stdio"],
                 "gateway": {"toolSearch": {"mode": "activate", "maxActive": 3}}}
    }});
    std::fs::write(&path, config.to_string()).unwrap();
    let (path, url) = (path.display().to_string(), redis.url());
    let start = |id: &'static str| {
        let (path, url, base) = (path.clone(), url.clone(), upstream.base_url());
        async move {
            let args = [
                "--config",
                &path,
                "--base-url",
                &base,
                "--redis",
                &url,
                "--replica-id",
                id,
            ];
            Gateway::start(&args, &[]).await
        }
    };
    let a = start("a").await;
    let b = start("b").await;
    wait_peers(&[&a, &b], 2).await;
    let listed = |v: &Value| -> Vec<String> {
        v["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut on_a = Mcp::new(&a.url("/servers/aare"));
    on_a.initialize().await;
    let (status, v) = on_a
        .call(
            1,
            "search_tools",
            json!({"query": "flow danger level", "limit": 2}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let found: Vec<String> = v["result"]["structuredContent"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(found[0], "get_flow_danger_level", "{v}");
    let (_, v) = on_a.request(2, "tools/list", json!({})).await;
    let mut want = vec!["search_tools".to_string(), "call_tool".to_string()];
    want.extend(found.iter().cloned());
    let mut got = listed(&v);
    got.sort();
    want.sort();
    assert_eq!(got, want, "activated on A");
    // Restored on B from the directory: the same active tools, called directly there.
    let mut via_b = Mcp::new(&b.url("/servers/aare"));
    via_b.session = on_a.session.clone();
    let (_, v) = via_b.request(3, "tools/list", json!({})).await;
    let mut on_b = listed(&v);
    on_b.sort();
    assert_eq!(on_b, want, "{v}");
    assert_eq!(b.health().await["cluster"]["roamed"], 1);
    let (status, v) = via_b
        .call(4, "get_flow_danger_level", json!({"city": "thun"}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["result"]["structuredContent"].is_object(), "{v}");
}
