//! The warm pool (`--prespawn N`): children started ahead of sessions, each used by one session
//! only, replaced when they die waiting, reaped on shutdown.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    gateway_util::{Gateway, McpClient, example, wait_until_gone},
    util::BIN,
};

/// Processes whose command line is the fixture with `marker` (not the gateway, whose command
/// line names them too).
fn children_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let argv0 = cmd.split(' ').next()?.to_string();
            (argv0.ends_with("fixture_server") && cmd.contains(marker)).then_some(pid)
        })
        .collect()
}

async fn metric(gw: &Gateway, name: &str) -> f64 {
    let text = gw.metrics().await;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn pooled(marker: &str, n: &str) -> Gateway {
    let fixture = example("fixture_server");
    Gateway::start(&["--prespawn", n, "--", &fixture, marker], &[]).await
}

async fn stats(c: &McpClient) -> Value {
    let (status, v) = c.call(9, "stats", json!({})).await;
    assert_eq!(status, 200, "{v}");
    v["result"]["structuredContent"].clone()
}

#[tokio::test]
async fn sessions_take_ready_children_that_nobody_else_used() {
    let marker = format!("pool-fresh-{}", std::process::id());
    let gw = pooled(&marker, "2").await;
    gw.wait_health("pool filled", |h| h["pool"]["ready"] == 2)
        .await;
    assert_eq!(children_with(&marker).len(), 2);
    assert_eq!(
        metric(&gw, "aareguru_gateway_child_spawns_total").await,
        2.0
    );

    let mut pids = vec![];
    for round in 1..=3u64 {
        let waiting = children_with(&marker);
        let mut c = McpClient::new(&gw.base);
        c.initialize().await;
        let s = stats(&c).await;
        let pid = s["pid"].as_u64().unwrap() as u32;
        assert!(
            waiting.contains(&pid),
            "round {round}: a child that was already waiting"
        );
        // The session's own handshake is the first and only one the child saw.
        assert_eq!(
            (s["initialize"].as_u64(), s["initialized"].as_u64()),
            (Some(1), Some(1))
        );
        assert!(!pids.contains(&pid), "a child serves one session only");
        pids.push(pid);
        let h = gw.health().await;
        assert_eq!(h["pool"]["hits"], round, "{h}");
        assert_eq!(h["pool"]["misses"], 0);
        // Ending the session ends its child; the pool stays full.
        let _ = c
            .http
            .delete(&c.url)
            .header("mcp-session-id", c.session.clone().unwrap())
            .send()
            .await;
        gw.wait_health("refilled", |h| h["pool"]["ready"] == 2)
            .await;
    }
    assert_eq!(
        metric(&gw, "aareguru_gateway_pool_hits_total{server=\"default\"}").await,
        3.0
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| children_with(&marker).contains(p)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "used children were not reaped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_pooled_child_that_dies_waiting_is_replaced() {
    let marker = format!("pool-die-{}", std::process::id());
    let gw = pooled(&marker, "2").await;
    gw.wait_health("pool filled", |h| h["pool"]["ready"] == 2)
        .await;
    let victim = children_with(&marker)[0];
    // SAFETY: signals a process of our own test.
    unsafe {
        libc::kill(victim as libc::pid_t, libc::SIGKILL);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = children_with(&marker);
        if now.len() == 2 && !now.contains(&victim) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not replaced: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.wait_health("pool full again", |h| {
        h["pool"]["ready"] == 2 && h["children_alive"] == 2
    })
    .await;
    assert_eq!(
        metric(&gw, "aareguru_gateway_child_exits_total{cause=\"crashed\"}").await,
        1.0
    );
    // And a session still gets a live one.
    let mut c = McpClient::new(&gw.base);
    c.initialize().await;
    assert_ne!(stats(&c).await["pid"].as_u64().unwrap() as u32, victim);
}

#[tokio::test]
async fn a_drained_pool_falls_back_to_starting_a_child() {
    let marker = format!("pool-miss-{}", std::process::id());
    let gw = pooled(&marker, "1").await;
    gw.wait_health("pool filled", |h| h["pool"]["ready"] == 1)
        .await;
    // Two sessions at once: one takes the waiting child, the other starts its own.
    let (mut a, mut b) = (McpClient::new(&gw.base), McpClient::new(&gw.base));
    let (ra, rb) = tokio::join!(a.try_initialize(), b.try_initialize());
    assert_eq!((ra, rb), (200, 200));
    let h = gw.health().await;
    assert_eq!(
        h["pool"]["hits"].as_u64().unwrap() + h["pool"]["misses"].as_u64().unwrap(),
        2,
        "{h}"
    );
    assert_ne!(stats(&a).await["pid"], stats(&b).await["pid"]);
}

#[tokio::test]
async fn shutdown_leaves_no_pooled_child_behind() {
    let marker = format!("pool-stop-{}", std::process::id());
    let mut gw = pooled(&marker, "3").await;
    gw.wait_health("pool filled", |h| h["pool"]["ready"] == 3)
        .await;
    let mut c = McpClient::new(&gw.base);
    c.initialize().await;
    gw.wait_health("pool refilled", |h| h["pool"]["ready"] == 3)
        .await;
    assert_eq!(children_with(&marker).len(), 4);
    // SAFETY: signals our own child.
    unsafe {
        libc::kill(gw.child.id().unwrap() as libc::pid_t, libc::SIGTERM);
    }
    let status = tokio::time::timeout(Duration::from_secs(20), gw.child.wait())
        .await
        .expect("the gateway stops")
        .unwrap();
    assert!(status.success());
    wait_until_gone(
        &[&marker],
        Duration::from_secs(5),
        "pooled children after shutdown",
    )
    .await;
}

#[tokio::test]
async fn prespawn_is_checked() {
    let run = |args: &'static [&'static str]| async move {
        let out = tokio::process::Command::new(BIN)
            .args(["--sse", "--port", "0"])
            .args(args)
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, err) = run(&["--prespawn", "5", "--max-sessions", "4", "--", "x"]).await;
    assert!(!ok && err.contains("above max sessions"), "{err}");
    let (ok, err) = run(&["--prespawn", "2"]).await;
    assert!(
        !ok && err.contains("per-session"),
        "in-process has no children: {err}"
    );
    let (ok, err) = run(&["--prespawn", "2", "--backend", "shared", "--", "x"]).await;
    assert!(!ok && err.contains("per-session"), "{err}");
}

/// The kernel sends PR_SET_PDEATHSIG when the thread that forked a child exits; a pool that
/// started children on short-lived threads (tokio's blocking pool lets idle threads go after
/// ten seconds) would see them all killed while waiting.
#[tokio::test]
async fn waiting_children_outlive_idle_threads() {
    let marker = format!("pool-idle-{}", std::process::id());
    let gw = pooled(&marker, "2").await;
    gw.wait_health("pool filled", |h| h["pool"]["ready"] == 2)
        .await;
    let before = children_with(&marker);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut after = children_with(&marker);
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(before, after, "the waiting children were replaced");
    assert!(!gw.log_text().contains("pooled child ended"));
}
