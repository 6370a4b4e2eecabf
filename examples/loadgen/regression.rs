//! `loadgen --regression FILE`: the quick performance check CI runs (seconds, release build).
//!
//! Absolute times on a shared, noisy machine mean little, so every case is a *ratio* against the
//! raw pipe measured in the same run: the same echo child driven directly over stdio. Latency
//! cases compare round-trip p50 (one session, sequential calls); throughput cases compare calls
//! per second (many sessions at once), as raw ÷ gateway so that larger is worse for both. Each
//! case runs `ROUNDS` times interleaved with its raw pipe and keeps the median ratio.
//!
//! FILE holds the expected ratios (`{"tolerance": 2.0, "cases": {"name": ratio}}`); a case
//! whose ratio exceeds expected × tolerance fails the run (exit 1). `--update` rewrites FILE
//! from this run instead (do it on a quiet machine, and say so in the commit).

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};

use super::{Opts, Report, percentile, run_sse, run_stdio};

const ROUNDS: usize = 3;

/// One measured case: what runs through the gateway, and how it is compared.
struct Case {
    name: &'static str,
    mode: &'static str,
    backend: &'static str,
    child: &'static str,
    sessions: usize,
    calls: usize,
    /// Round-trip p50 (true) or calls per second (false).
    latency: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "sse per-session 1x2000 p50",
        mode: "sse",
        backend: "per-session",
        child: "echo",
        sessions: 1,
        calls: 2000,
        latency: true,
    },
    Case {
        name: "mcp per-session 1x2000 p50",
        mode: "mcp",
        backend: "per-session",
        child: "echo",
        sessions: 1,
        calls: 2000,
        latency: true,
    },
    Case {
        name: "mcp shared 1x2000 p50",
        mode: "mcp",
        backend: "shared",
        child: "echo",
        sessions: 1,
        calls: 2000,
        latency: true,
    },
    Case {
        name: "sse per-session 20x200 calls/s",
        mode: "sse",
        backend: "per-session",
        child: "echo",
        sessions: 20,
        calls: 200,
        latency: false,
    },
    Case {
        name: "mcp per-session 20x200 calls/s",
        mode: "mcp",
        backend: "per-session",
        child: "echo",
        sessions: 20,
        calls: 200,
        latency: false,
    },
    Case {
        name: "mcp shared 20x200 calls/s",
        mode: "mcp",
        backend: "shared",
        child: "echo",
        sessions: 20,
        calls: 200,
        latency: false,
    },
    Case {
        name: "mcp in-process 20x100 calls/s",
        mode: "mcp",
        backend: "in-process",
        child: "aareguru",
        sessions: 20,
        calls: 100,
        latency: false,
    },
];

/// Round-trip p50 in ms and calls per second of a report; `None` if any call failed.
fn figures(mut r: Report) -> Option<(f64, f64)> {
    if r.errors > 0 || r.misrouted > 0 || r.rtt.is_empty() {
        return None;
    }
    let calls = r.rtt.len() as f64 / r.elapsed.as_secs_f64();
    let p50 = percentile(&mut r.rtt, 0.5).as_secs_f64() * 1000.0;
    Some((p50, calls))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs every case; returns whether they all stayed within tolerance (or, with `update`,
/// whether the file was written).
pub async fn run(base: &Opts, file: &str, update: bool) -> bool {
    let expected: Value = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({"tolerance": 2.0, "cases": {}}));
    let tolerance = expected["tolerance"].as_f64().unwrap_or(2.0);
    let mut measured = BTreeMap::new();
    let mut ok = true;
    let say = |line: String| {
        #[allow(clippy::disallowed_macros)]
        {
            println!("{line}");
        }
    };
    say(format!(
        "| case | raw pipe | gateway | ratio (median of {ROUNDS}) | expected | limit | |\n|---|---:|---:|---:|---:|---:|---|"
    ));
    for case in CASES {
        let (mut ratios, mut raws, mut gateways) = (vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            let o = Opts {
                mode: case.mode.into(),
                backend: case.backend.into(),
                child: case.child.into(),
                sessions: case.sessions,
                calls: case.calls,
                wave: 64,
                ..base.clone()
            };
            let raw = figures(
                run_stdio(Opts {
                    mode: "stdio".into(),
                    ..o.clone()
                })
                .await,
            );
            let gateway = figures(run_sse(o).await);
            let (Some(raw), Some(gateway)) = (raw, gateway) else {
                say(format!("| {} | calls failed | | | | | FAIL |", case.name));
                ok = false;
                continue;
            };
            let (r, g, ratio) = if case.latency {
                (raw.0, gateway.0, gateway.0 / raw.0)
            } else {
                (raw.1, gateway.1, raw.1 / gateway.1)
            };
            raws.push(r);
            gateways.push(g);
            ratios.push(ratio);
        }
        if ratios.is_empty() {
            continue;
        }
        let ratio = median(ratios);
        measured.insert(case.name, (ratio * 100.0).round() / 100.0);
        let unit = if case.latency { " ms" } else { "/s" };
        let fmt = |v: f64| {
            if case.latency {
                format!("{v:.3}{unit}")
            } else {
                format!("{v:.0}{unit}")
            }
        };
        let (want, verdict) = match expected["cases"][case.name].as_f64() {
            Some(want) if ratio > want * tolerance => {
                ok = false;
                (format!("{want:.2}"), "REGRESSION")
            }
            Some(want) => (format!("{want:.2}"), "ok"),
            None => ("-".into(), "new"),
        };
        let limit = expected["cases"][case.name]
            .as_f64()
            .map_or("-".into(), |w| format!("{:.2}", w * tolerance));
        say(format!(
            "| {} | {} | {} | {ratio:.2} | {want} | {limit} | {verdict} |",
            case.name,
            fmt(median(raws)),
            fmt(median(gateways)),
        ));
    }
    if update {
        let doc = json!({
            "about": "ratios against the raw pipe (gateway p50 / raw p50; raw calls/s / gateway calls/s); written by loadgen --regression FILE --update",
            "tolerance": tolerance,
            "cases": measured,
        });
        let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
        std::fs::write(file, text).expect("write the baseline");
        say(format!("wrote {file}"));
        return true;
    }
    if !ok {
        say(format!(
            "a ratio is over its expected value × {tolerance}: the call path got much slower (or the run failed)"
        ));
    }
    // A pause so the last gateway's children are gone before the process exits.
    tokio::time::sleep(Duration::from_millis(100)).await;
    ok
}
