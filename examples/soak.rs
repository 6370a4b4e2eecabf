//! The soak and chaos run: a seeded, time-bounded population against a gateway, with faults.
//!
//! ```sh
//! cargo build --release --bin aareguru-mcp --examples
//! target/release/examples/soak --duration 300 --seed 7
//! target/release/examples/soak --duration 60 --target http://127.0.0.1:8080 [--pid PID]
//! ```
//!
//! Without `--target` it starts its own gateway (release build) on a servers file with three
//! servers — the fixture per session (with a warm pool), the fixture shared by two children,
//! and the built-in server in process — and its fake Aareguru API. `--concurrency N` members
//! (default 32) each pick, with their own seeded generator, what to do next: open a session
//! over HTTP+SSE or Streamable HTTP and make checked calls (every payload unique, every reply
//! checked for its own payload), leave politely or abandon the session, drop the connection by
//! RST or FIN (idle, mid-POST, call in flight) and sometimes carry on in the same session,
//! read a 4 MB answer a kilobyte at a time, send garbage (each must get a 4xx), or cancel a
//! call that never ends and then call again. A chaos task SIGKILLs a random child every 1.5–4 s.
//!
//! Every `--report-every` seconds (60) it prints the counts and the gauges; at the end, after
//! the population stops, it waits for the idle timeout and checks that everything drained.
//! The last line is one JSON object. Exit 1 when a reply was misrouted, a request lost (neither
//! answer nor error within 20 s), garbage got a 5xx, a gauge trended up after warm-up, or the
//! gateway did not drain. `--faults none` keeps only the sessions that call and leave, with no
//! chaos: then any failed call fails the run too. With `--target`, the gateway's `/mcp` and
//! `/sse` must wrap the fixture server; gauges come from its `/metrics` (and `/proc` with
//! `--pid`).

#[path = "../tests/support/fake_upstream.rs"]
mod fake_upstream;
#[path = "soak/gauges.rs"]
mod gauges;
#[path = "soak/population.rs"]
mod population;

use std::{
    process::Stdio,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use population::{Server, World};

const IDLE_TIMEOUT_S: u64 = 5;
const GRACE_S: u64 = 2;
const POOL: usize = 2;
const SHARED: usize = 2;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[allow(clippy::disallowed_macros)]
fn say(line: &str) {
    println!("{line}");
}

struct Own {
    child: tokio::process::Child,
    base: String,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn start_gateway(upstream: &str) -> Own {
    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap();
    let bin = examples.parent().unwrap().join("aareguru-mcp");
    let fixture = examples.join("fixture_server");
    let dir = std::env::temp_dir().join(format!("soak-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("servers.json");
    let servers = json!({"mcpServers": {
        "ps": {"command": fixture, "gateway": {"backend": "per-session", "prespawn": POOL}},
        "sh": {"command": fixture, "gateway": {"backend": "shared", "children": SHARED}},
        "ip": {"command": bin, "args": ["--stdio"], "gateway": {"backend": "in-process"}},
    }});
    std::fs::write(&file, servers.to_string()).unwrap();
    let mut cmd = Command::new(&bin);
    cmd.args(["--sse", "--port", "0", "--log-format", "json"])
        .args(["--base-url", upstream, "--config"])
        .arg(&file)
        .args(["--session-idle-timeout", &format!("{IDLE_TIMEOUT_S}s")])
        .args(["--shutdown-grace", &format!("{GRACE_S}s")])
        .args(["--max-body-bytes", "262144", "--max-sessions", "4096"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .expect("start the gateway (cargo build --release first)");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the gateway exited before listening");
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "gateway listening"
        {
            break v["address"].as_str().unwrap().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Own {
        child,
        base: format!("http://{addr}"),
        _dir: tempdir::Dir(dir),
    }
}

/// SIGKILLs a random child of the gateway (one of the fixture's) every 1.5–4 s.
async fn chaos(w: Arc<World>, pid: u32, deadline: tokio::time::Instant, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xc4a0);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1500..4000))).await;
        let fixtures: Vec<u32> = gauges::descendants(pid)
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("fixture_server"))
            })
            .collect();
        if fixtures.is_empty() {
            continue;
        }
        let victim = fixtures[rng.random_range(0..fixtures.len())];
        // SAFETY: kill(2) on a process id we just read; at worst it has already exited.
        if unsafe { libc::kill(victim as i32, libc::SIGKILL) } == 0 {
            w.counts.children_killed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let duration: f64 = arg(&args, "--duration").map_or(60.0, |s| s.parse().expect("--duration"));
    let seed: u64 = arg(&args, "--seed").map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        },
        |s| s.parse().expect("--seed"),
    );
    let faults = match arg(&args, "--faults").as_deref() {
        None | Some("all") => true,
        Some("none") => false,
        Some(other) => panic!("--faults all|none, not {other}"),
    };
    let concurrency: u64 = arg(&args, "--concurrency").map_or(32, |s| s.parse().unwrap());
    let report_every: f64 = arg(&args, "--report-every").map_or(60.0, |s| s.parse().unwrap());
    let warmup: f64 =
        arg(&args, "--warmup").map_or((duration * 0.2).clamp(10.0, 300.0), |s| s.parse().unwrap());
    let fake = fake_upstream::FakeUpstream::start(fake_upstream::Behaviour::Normal).await;
    let (own, base, pid) = match arg(&args, "--target") {
        Some(t) => (
            None,
            t.trim_end_matches('/').to_string(),
            arg(&args, "--pid").map(|p| p.parse().unwrap()),
        ),
        None => {
            let own = start_gateway(&fake.base_url()).await;
            let base = own.base.clone();
            let pid = own.child.id();
            (Some(own), base, pid)
        }
    };
    let servers = if own.is_some() {
        vec![
            Server {
                base: format!("{base}/servers/ps"),
                fixture: true,
            },
            Server {
                base: format!("{base}/servers/sh"),
                fixture: true,
            },
            Server {
                base: format!("{base}/servers/ip"),
                fixture: false,
            },
        ]
    } else {
        vec![Server {
            base: base.clone(),
            fixture: true,
        }]
    };
    // Idle keep-alive connections close soon, so that they are gone by the drained check (they
    // hold a socket and a task on the gateway).
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let w = Arc::new(World {
        http: http.clone(),
        addr: base.trim_start_matches("http://").to_string(),
        servers,
        counts: Default::default(),
        seed,
        faults,
        deadline: tokio::time::Instant::now() + Duration::from_secs_f64(duration + 2.0),
    });
    say(&format!(
        "soak: {duration} s, seed {seed}, {concurrency} clients, warm-up {warmup} s, gateway {base}"
    ));
    // The pool fills and the shared children start before the baseline is taken.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = gauges::sample(&http, &base, pid, 0.0).await;
    say(&format!("baseline: {}", baseline.line()));

    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs_f64(duration);
    let mut members = vec![];
    for i in 0..concurrency {
        members.push(tokio::spawn(population::actor(w.clone(), i, deadline)));
    }
    let chaos_task = pid
        .filter(|_| faults)
        .map(|p| tokio::spawn(chaos(w.clone(), p, deadline, seed)));
    let mut samples = vec![];
    let mut next_report = report_every;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let t = start.elapsed().as_secs_f64();
        let s = gauges::sample(&http, &base, pid, t).await;
        samples.push(s);
        if t >= next_report {
            next_report += report_every;
            let c = w.counts.json();
            say(&format!("[{t:.0} s] calls {} | {}", c["calls"], s.line()));
        }
    }
    for m in members {
        let _ = m.await;
    }
    if let Some(c) = chaos_task {
        let _ = c.await;
    }
    let (growth, trending) = gauges::trends(&samples, warmup);

    // Drained: once every session has had time to reach its idle timeout, nothing is left but
    // the warm pool and the shared children, and tasks and descriptors are back near baseline.
    let mut drained = gauges::sample(&http, &base, pid, start.elapsed().as_secs_f64()).await;
    let mut leftovers = vec![];
    if own.is_some() {
        let want_children = (POOL + SHARED) as f64;
        let until =
            tokio::time::Instant::now() + Duration::from_secs(IDLE_TIMEOUT_S + GRACE_S + 20);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drained = gauges::sample(&http, &base, pid, start.elapsed().as_secs_f64()).await;
            leftovers.clear();
            if drained.sessions != 0.0 {
                leftovers.push(format!("{} sessions", drained.sessions));
            }
            if drained.children != want_children {
                leftovers.push(format!(
                    "{} children (want {want_children})",
                    drained.children
                ));
            }
            if drained.tasks > baseline.tasks + 16.0 {
                leftovers.push(format!(
                    "{} tasks (baseline {})",
                    drained.tasks, baseline.tasks
                ));
            }
            if drained.fds > baseline.fds + 16.0 {
                leftovers.push(format!("{} fds (baseline {})", drained.fds, baseline.fds));
            }
            if leftovers.is_empty() || tokio::time::Instant::now() > until {
                break;
            }
        }
    }
    let counts = w.counts.json();
    let calls = &counts["calls"];
    // Without faults nothing may fail at all.
    let pass = (faults || calls["failed"] == 0)
        && calls["misrouted"] == 0
        && calls["lost"] == 0
        && counts["faults"]["garbage_5xx"] == 0
        && trending.is_empty()
        && leftovers.is_empty();
    let mut out = counts.clone();
    out["seed"] = json!(seed);
    out["duration_s"] = json!(duration);
    out["faults_on"] = json!(faults);
    out["warmup_s"] = json!(warmup);
    out["gauges"] = json!({
        "baseline": baseline.json(),
        "end": samples.last().map(|s| s.json()),
        "max": gauges::NAMES.iter().map(|n| (n.to_string(), json!(samples.iter().map(|s| s.get(n)).fold(0.0, f64::max)))).collect::<serde_json::Map<_, _>>(),
        "after_warmup": growth,
        "drained": drained.json(),
    });
    out["trending_up"] = json!(trending);
    out["not_drained"] = json!(leftovers);
    out["pass"] = json!(pass);
    say(&out.to_string());
    drop(own);
    std::process::exit(if pass { 0 } else { 1 });
}
