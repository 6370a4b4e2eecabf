//! Restarts nobody notices: twenty Streamable HTTP sessions of the built-in server call without
//! pause through a real nginx (round-robin, the README's settings) in front of three replicas on
//! a real Redis, while replicas are killed (SIGKILL) and stopped (SIGTERM, a rolling restart) and
//! Redis is killed and comes back empty — five times over with different timings. Not one call
//! may fail and not one session may be lost. Then the same drain behind HAProxy (sticky) and for
//! a plain client holding keep-alive connections to the stopping replica itself.
//!
//! They count every failed call, so they run alone (`cargo test --test it -- --ignored
//! restarts::`, CI's own stage). Their balancers keep no idle connection past a replica's drain
//! delay (nginx's `keepalive_timeout`, HAProxy's `http-server-close`; see the README): without
//! that, under the whole suite's load, a call in a few thousand failed — the balancer sending on
//! an idle connection the stopping replica closed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    gateway_util::Gateway,
    infra::{Balancer, Redis, free_port},
    util::{BIN, HEAVY},
};

const BOTH: &str = "application/json, text/event-stream";

/// A replica of the cluster on `redis`, on its own fixed port (restarted on the same one).
struct Replica {
    id: String,
    port: u16,
    gw: Option<Gateway>,
}

impl Replica {
    async fn start(redis: &Redis, id: &str, port: u16, upstream: &str) -> Replica {
        let mut r = Replica {
            id: id.to_string(),
            port,
            gw: None,
        };
        r.run(redis, upstream).await;
        r
    }

    async fn run(&mut self, redis: &Redis, upstream: &str) {
        let (port, url) = (self.port.to_string(), redis.url());
        let args = [
            "--port",
            &port,
            "--backend",
            "in-process",
            "--base-url",
            upstream,
            "--redis",
            &url,
            "--replica-id",
            &self.id,
            "--drain-delay",
            "1500ms",
            "--max-sessions",
            "4000",
        ];
        self.gw = Some(Gateway::start_exactly(BIN, &args, &[]).await);
    }

    fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> i32 {
        self.gw.as_ref().unwrap().child.id().unwrap() as i32
    }

    /// SIGKILL, and waits for the process to be gone.
    async fn kill(&mut self) {
        let mut gw = self.gw.take().unwrap();
        gw.child.start_kill().unwrap();
        let _ = gw.child.wait().await;
    }

    /// SIGTERM (a rolling restart), and waits for the drain to end; its exit status.
    async fn terminate(&mut self) -> Option<i32> {
        // SAFETY: signals a process this test started.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let mut gw = self.gw.take().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), gw.child.wait())
            .await
            .expect("the replica exits within its grace")
            .unwrap();
        status.code()
    }
}

/// Milliseconds of the wall clock (mod 100 s), to line failures up with events in a log.
fn clock_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 100_000
}

/// What the clients saw: calls answered, and every failure with its session and reason.
#[derive(Default)]
struct Seen {
    calls: AtomicU64,
    failures: Mutex<Vec<String>>,
}

/// One client: a session opened through `url`, then calls until `stop`.
async fn client(url: String, n: usize, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let http = reqwest::Client::new();
    let post = |body: Value, session: Option<&str>| {
        let mut r = http
            .post(format!("{url}/mcp"))
            .header("accept", BOTH)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body);
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "restarts", "version": "1"}}});
    let r = post(init, None).await.expect("initialize");
    assert_eq!(r.status(), 200, "initialize of client {n}");
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let _ = r.bytes().await;
    let r = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
    )
    .await
    .expect("initialized");
    assert_eq!(r.status(), 202);
    let cities = ["bern", "thun", "basel", "interlaken"];
    let mut id = 1u64;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let city = cities[id as usize % cities.len()];
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "get_current_temperature", "arguments": {"city": city}}});
        let failure = match post(call, Some(&session)).await {
            Err(e) => Some(format!("transport: {e}")),
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if status != 200 || answer["id"] != id || answer.get("result").is_none() {
                    Some(format!("{status} {body}"))
                } else {
                    None
                }
            }
        };
        match failure {
            Some(f) => {
                let lost = f.starts_with("404");
                let at = clock_ms();
                seen.failures
                    .lock()
                    .push(format!("{at} session {n} call {id}: {f}"));
                if lost {
                    // The session is gone: nothing more to learn from this client.
                    return;
                }
            }
            None => {
                seen.calls.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// `n` replicas on `redis`, named `{prefix}{i}`, each seeing the others.
async fn replicas(redis: &Redis, prefix: &str, n: usize, upstream: &str) -> Vec<Replica> {
    let mut all = vec![];
    for i in 0..n {
        all.push(Replica::start(redis, &format!("{prefix}{i}"), free_port(), upstream).await);
    }
    all
}

fn upstreams(replicas: &[Replica]) -> Vec<String> {
    replicas.iter().map(Replica::host_port).collect()
}

/// No client saw a failure (else each, with the balancer's log), and they kept calling.
fn assert_none_failed((calls, failures): (u64, Vec<String>), lb: &Balancer, at_least: u64) {
    assert!(
        failures.is_empty(),
        "{} failed of {} calls:\n{}\nbalancer:\n{}",
        failures.len(),
        calls + failures.len() as u64,
        failures.join("\n"),
        lb.error_log(400)
    );
    assert!(calls > at_least, "the clients kept calling: {calls}");
}

/// Waits until the replicas on `redis` see `n` live replicas.
async fn wait_peers(replicas: &[Replica], n: usize) {
    for r in replicas {
        if let Some(gw) = &r.gw {
            gw.wait_health("peers seen", |h| {
                h["cluster"]["peers"]
                    .as_array()
                    .is_some_and(|p| p.len() == n)
            })
            .await;
        }
    }
}

/// Runs `clients` sessions through `lb` while `events` happen; the failures they saw.
async fn under_load<F: std::future::Future<Output = ()>>(
    lb: &str,
    clients: usize,
    events: F,
) -> (u64, Vec<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let tasks: Vec<_> = (0..clients)
        .map(|n| tokio::spawn(client(lb.to_string(), n, stop.clone(), seen.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    events.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }
    let failures = seen.failures.lock().clone();
    (seen.calls.load(Ordering::Relaxed), failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run alone, as CI does: `cargo test --test it -- --ignored restarts::`"]
async fn rolling_restarts_killed_replicas_and_an_emptied_redis_fail_no_call() {
    let _heavy = HEAVY.lock().await;
    let mut redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let replicas = replicas(&redis, "r", 3, &base).await;
    // A call in flight on a replica that is killed can only be made again by the balancer:
    // `non_idempotent`, as the README says for a roaming cluster.
    let lb = Balancer::nginx_retrying(&upstreams(&replicas), "error timeout non_idempotent").await;
    wait_peers(&replicas, 3).await;

    let replicas = Arc::new(tokio::sync::Mutex::new(replicas));
    let events = {
        let replicas = replicas.clone();
        let base = base.clone();
        let redis = &mut redis;
        async move {
            // Five rounds, each with its own pause between the events.
            for (round, pause) in [150u64, 700, 300, 1000, 450].into_iter().enumerate() {
                let pause = Duration::from_millis(pause);
                let mut rs = replicas.lock().await;
                let (killed, stopped) = (round % 3, (round + 1) % 3);
                eprintln!("{} round {round}: SIGKILL {}", clock_ms(), rs[killed].id);
                rs[killed].kill().await;
                tokio::time::sleep(pause).await;
                rs[killed].run(redis, &base).await;
                tokio::time::sleep(pause).await;
                eprintln!("{} round {round}: Redis restarted empty", clock_ms());
                redis.restart().await;
                tokio::time::sleep(pause).await;
                eprintln!("{} round {round}: SIGTERM {}", clock_ms(), rs[stopped].id);
                assert_eq!(rs[stopped].terminate().await, Some(0), "round {round}");
                rs[stopped].run(redis, &base).await;
                wait_peers(&rs, 3).await;
            }
        }
    };
    assert_none_failed(under_load(&lb.url(), 20, events).await, &lb, 1000);
}

/// A rolling restart alone needs nothing of the balancer: behind nginx without any retry of
/// POSTs, every replica stopped with SIGTERM in turn (and started again) fails no call — the
/// drain closes keep-alive connections from the client's side after complete answers, and stops
/// accepting only after the balancer has had its delay to notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run alone, as CI does: `cargo test --test it -- --ignored restarts::`"]
async fn a_rolling_restart_behind_nginx_without_retries_fails_no_call() {
    let _heavy = HEAVY.lock().await;
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let mut replicas = replicas(&redis, "r", 3, &base).await;
    let lb = Balancer::nginx(&upstreams(&replicas)).await;
    wait_peers(&replicas, 3).await;
    let events = async {
        for (round, pause) in [200u64, 900, 500].into_iter().enumerate() {
            let r = &mut replicas[round % 3];
            eprintln!("{} SIGTERM {}", clock_ms(), r.id);
            assert_eq!(r.terminate().await, Some(0), "round {round}");
            eprintln!("{} exited {}", clock_ms(), r.id);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            r.run(&redis, &base).await;
            wait_peers(&replicas, 3).await;
        }
    };
    assert_none_failed(under_load(&lb.url(), 20, events).await, &lb, 500);
}

/// The drain behind HAProxy with stick tables (the README's settings): a replica's sessions
/// stick to it until it stops accepting, then HAProxy's retry of the refused connection goes to
/// another replica (`option redispatch`), where the session roams on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run alone, as CI does: `cargo test --test it -- --ignored restarts::`"]
async fn a_rolling_restart_behind_sticky_haproxy_fails_no_call() {
    let _heavy = HEAVY.lock().await;
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let mut replicas = replicas(&redis, "h", 2, &base).await;
    let lb = Balancer::haproxy(&upstreams(&replicas)).await;
    wait_peers(&replicas, 2).await;
    let events = async {
        for round in 0..2 {
            let r = &mut replicas[round];
            eprintln!("{} SIGTERM {}", clock_ms(), r.id);
            assert_eq!(r.terminate().await, Some(0), "round {round}");
            r.run(&redis, &base).await;
            wait_peers(&replicas, 2).await;
        }
    };
    assert_none_failed(under_load(&lb.url(), 12, events).await, &lb, 300);
}

/// A client holding keep-alive connections to the stopping replica itself (no balancer): every
/// request it sent is answered whole — during the drain each answer closes its connection, so
/// the client's next request opens a new one — and once the replica stops accepting, the client
/// gets a refused connection (before sending anything), never a reset under a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run alone, as CI does: `cargo test --test it -- --ignored restarts::`"]
async fn a_client_kept_alive_on_the_stopping_replica_gets_whole_answers_then_refused() {
    let redis = Redis::start().await;
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let base = upstream.base_url();
    let mut replica = Replica::start(&redis, "k0", free_port(), &base).await;
    let url = format!("http://{}", replica.host_port());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|n| {
            let url = url.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut c = crate::gateway_util::McpClient::new(&url);
                c.initialize().await;
                let (mut answered, mut closing) = (0u64, 0u64);
                let mut id = 1u64;
                let outcome = loop {
                    id += 1;
                    let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                        "params": {"name": "list_cities", "arguments": {}}});
                    let sent = c
                        .http
                        .post(format!("{url}/mcp"))
                        .header("accept", BOTH)
                        .header("mcp-protocol-version", "2025-06-18")
                        .header("mcp-session-id", c.session.as_deref().unwrap())
                        .json(&call)
                        .send()
                        .await;
                    match sent {
                        Ok(r) => {
                            if r.headers().get("connection").is_some_and(|v| v == "close") {
                                closing += 1;
                            }
                            let status = r.status();
                            let body = r.text().await;
                            let whole = body.as_deref().is_ok_and(|b| {
                                serde_json::from_str::<Value>(b)
                                    .is_ok_and(|v| v["id"] == id && v.get("result").is_some())
                            });
                            if status != 200 || !whole {
                                break format!("client {n} call {id}: {status} {body:?}");
                            }
                            answered += 1;
                        }
                        Err(e) if e.is_connect() => break String::new(),
                        Err(e) => break format!("client {n} call {id}: {e:?}"),
                    }
                    if stop.load(Ordering::Relaxed) {
                        break "the replica never stopped accepting".into();
                    }
                };
                (outcome, answered, closing)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = replica.terminate();
    let exit = tokio::time::timeout(Duration::from_secs(30), stopped)
        .await
        .expect("the replica exits");
    assert_eq!(exit, Some(0));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let (outcome, answered, closing) = c.await.unwrap();
        assert!(outcome.is_empty(), "{outcome}");
        assert!(answered > 10, "{answered} answered");
        assert!(
            closing > 0,
            "no answer closed its connection while draining"
        );
    }
}

/// A roaming session's call runs on the replica its POST reached; the client's cancellation may
/// reach another replica. It still stops the call where it runs (the built-in server's tools
/// stop on cancellation, abandoning their upstream request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run alone, as CI does: `cargo test --test it -- --ignored restarts::`"]
async fn a_cancellation_sent_through_another_replica_stops_the_call_where_it_runs() {
    let redis = Redis::start().await;
    // The upstream never answers: the call runs until cancelled (or for a minute).
    let upstream = FakeUpstream::start(Behaviour::Hang).await;
    let (url, base) = (redis.url(), upstream.base_url());
    let start = |id: &'static str| {
        let (url, base) = (url.clone(), base.clone());
        async move {
            let args = [
                "--port",
                "0",
                "--backend",
                "in-process",
                "--base-url",
                &base,
                "--upstream-timeout",
                "60s",
                "--redis",
                &url,
                "--replica-id",
                id,
            ];
            Gateway::start_exactly(BIN, &args, &[]).await
        }
    };
    let (a, b) = (start("ca").await, start("cb").await);
    for g in [&a, &b] {
        g.wait_health("peers seen", |h| {
            h["cluster"]["peers"]
                .as_array()
                .is_some_and(|p| p.len() == 2)
        })
        .await;
    }
    let mut on_a = crate::gateway_util::McpClient::new(&a.base);
    on_a.initialize().await;
    let running = {
        let on_a = crate::gateway_util::McpClient {
            http: reqwest::Client::new(),
            url: on_a.url.clone(),
            session: on_a.session.clone(),
            headers: vec![],
        };
        tokio::spawn(async move {
            on_a.call(7, "get_current_temperature", json!({"city": "bern"}))
                .await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while upstream.state.requests().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut on_b = crate::gateway_util::McpClient::new(&b.base);
    on_b.session = on_a.session.clone();
    let r = on_b
        .post(
            &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                       "params": {"requestId": 7, "reason": "changed my mind"}}),
        )
        .await;
    assert_eq!(r.status(), 202);
    // The call stops on A (its answer is dropped: the client that cancelled is not waiting).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !a.log_text().contains("tool call cancelled by the client") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call on the replica running it did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!running.is_finished(), "no answer after the cancellation");
    running.abort();
}
