//! Tool search's index on its own: how long a search and a rebuild take over many tools, and
//! what a query finds.
//!
//! `cargo run --release --example search_bench -- TOOLS.json [QUERIES.json] [COPIES]`
//!
//! TOOLS.json is a `tools/list` answer's `tools` (tests/search/tools.json: the 57 tools of the
//! search test's six real servers). The list is repeated COPIES times (default: up to 1000
//! tools), each copy's names given a member prefix of its own (`m3__…`), as ten or more servers
//! federated would give. Every query of QUERIES.json (tests/search/queries.json) is searched
//! 20 times; printed: the index build time (a rebuild after a `list_changed`), search p50/p99,
//! and with `--explain` the top five of each query over the original list.

#![allow(clippy::disallowed_macros)] // a benchmark program: its report goes to stdout

use std::time::Instant;

use aareguru_mcp::gateway::federation::search::Index;
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let explain = args.iter().any(|a| a == "--explain");
    let args: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let Some(tools_path) = args.first() else {
        eprintln!("usage: search_bench TOOLS.json [QUERIES.json] [COPIES] [--explain]");
        std::process::exit(2);
    };
    let read = |p: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p).expect("readable file")).expect("JSON")
    };
    let tools: Vec<Value> = read(tools_path).as_array().cloned().unwrap_or_default();
    let queries: Vec<(String, Vec<String>)> = match args.get(1) {
        Some(p) => read(p)
            .as_array()
            .into_iter()
            .flatten()
            .map(|q| {
                let expect = q["expect"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str().map(str::to_string))
                    .collect();
                (q["query"].as_str().unwrap_or_default().to_string(), expect)
            })
            .collect(),
        None => vec![("read a file".into(), vec![])],
    };
    let copies: usize = args
        .get(2)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| 1000usize.div_ceil(tools.len().max(1)));

    if explain {
        let index = Index::build(tools.clone());
        for (query, expect) in &queries {
            let hits = index.search(query, 5, |_| true);
            let names: Vec<String> = hits
                .iter()
                .map(|h| {
                    let n = index.tools()[h.place]["name"].as_str().unwrap_or("?");
                    let mark = if expect.iter().any(|e| e == n) {
                        "*"
                    } else {
                        ""
                    };
                    format!("{mark}{n} {:.2}", h.score)
                })
                .collect();
            println!("{query:?}: {}", names.join(", "));
        }
    }

    let mut many = Vec::with_capacity(tools.len() * copies);
    for copy in 0..copies {
        for t in &tools {
            let mut t = t.clone();
            let name = t["name"].as_str().unwrap_or_default().to_string();
            t["name"] = Value::String(format!("m{copy}__{name}"));
            many.push(t);
        }
    }
    let mut builds = vec![];
    let mut index = None;
    for _ in 0..5 {
        let started = Instant::now();
        index = Some(Index::build(many.clone()));
        builds.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let index = index.expect("built");
    builds.sort_by(f64::total_cmp);
    let mut times = vec![];
    for _ in 0..20 {
        for (query, _) in &queries {
            let started = Instant::now();
            let hits = index.search(query, 5, |_| true);
            times.push(started.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(hits);
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "{} tools: index build {:.1} ms (median of 5); {} searches: p50 {:.0} µs, p99 {:.0} µs",
        many.len(),
        builds[2],
        times.len(),
        pct(0.5),
        pct(0.99)
    );
}
