//! `aareguru-mcp --stdio` end to end: handshake, every tool, resources, prompts, upstream
//! failures, the shared cache, hostile input on stdin, and process lifecycle.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    util::{StdioServer, is_error, recv, text},
};

const GOLDEN_TOOLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/tools_list.json");

async fn setup() -> (FakeUpstream, StdioServer) {
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let server = StdioServer::initialized(&fake.base_url(), &[]).await;
    (fake, server)
}

/// The tool list is public API: names, descriptions and schemas. Regenerate on purpose with
/// `UPDATE_GOLDEN=1 cargo test`.
#[tokio::test]
async fn tools_list_matches_golden_snapshot() {
    let (_fake, mut s) = setup().await;
    let reply = s.request("tools/list", json!({})).await;
    let tools = &reply["result"]["tools"];
    let actual = serde_json::to_string_pretty(tools).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(std::path::Path::new(GOLDEN_TOOLS).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN_TOOLS, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(GOLDEN_TOOLS)
        .expect("golden file missing: run UPDATE_GOLDEN=1 cargo test once");
    assert_eq!(
        actual, expected,
        "tools/list changed; if intended, run UPDATE_GOLDEN=1 cargo test and commit the file"
    );
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "get_current_temperature",
            "get_current_conditions",
            "get_historical_data",
            "list_cities",
            "get_flow_danger_level",
            "compare_cities",
            "get_forecast"
        ]
    );
}

#[tokio::test]
async fn current_temperature_with_gloss_warning_and_warmer_station() {
    let (fake, mut s) = setup().await;
    let r = s
        .call("get_current_temperature", json!({"city": "Bärn"}))
        .await;
    assert!(!is_error(&r), "{r}");
    let t = text(&r);
    assert!(t.contains("12.5 °C"), "{t}");
    assert!(t.contains("precise: 12.49 °C"), "{t}");
    assert!(t.contains("2023-05-09 13:20 CEST"), "{t}");
    assert!(t.contains("\"Uschaflig chaut\" (unbearably cold)"), "{t}");
    assert!(t.contains("level 3"), "flow 247 ≥ 220 is elevated: {t}");
    assert!(
        t.contains("aare.guru") && t.contains("hydrodaten.admin.ch"),
        "{t}"
    );
    // cities.json: brugg is the warmest at 14.5 °C, more than 1 °C above 12.5.
    let d = &r["structuredContent"];
    assert_eq!(d["warmer_station"]["station"]["slug"], "brugg", "{d}");
    assert_eq!(d["temperature"], 12.5);
    assert_eq!(d["danger"]["level"], 3);
    // Every upstream request identifies the app.
    let requests = fake.state.requests();
    assert!(!requests.is_empty());
    for r in requests {
        assert!(r.contains("app=aareguru-mcp"), "{r}");
        assert!(
            r.contains(&format!("version={}", env!("CARGO_PKG_VERSION"))),
            "{r}"
        );
    }
}

#[tokio::test]
async fn city_names_resolve_and_unknown_cities_never_reach_current() {
    let (fake, mut s) = setup().await;
    for (input, slug) in [
        (" THUN ", "thun"),
        ("Interlake", "interlaken"),
        ("Bern, Schönau", "bern"),
    ] {
        let r = s
            .call("get_flow_danger_level", json!({"city": input}))
            .await;
        assert!(!is_error(&r), "{input}: {r}");
        assert_eq!(r["structuredContent"]["station"]["slug"], slug);
    }
    let r = s
        .call("get_current_temperature", json!({"city": "Zurich"}))
        .await;
    assert!(is_error(&r));
    let t = text(&r);
    assert!(t.contains("unknown city \"Zurich\""), "{t}");
    assert!(t.contains("bern (Bärn)"), "lists the stations: {t}");
    // The real API would have answered Bern's data for Zurich; we must not even ask.
    assert_eq!(fake.state.count("current", Some("Zurich")), 0);
    assert_eq!(fake.state.count("current", Some("zurich")), 0);
}

#[tokio::test]
async fn conditions_with_the_2024_body_show_height_and_record() {
    let (fake, mut s) = setup().await;
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/aareguru/current_bern_2024-08_trimmed.json"
    ))
    .unwrap();
    fake.state.set_current_body("bern", body);
    let r = s.call("get_current_conditions", json!({})).await;
    assert!(!is_error(&r), "{r}");
    let t = text(&r);
    assert!(t.contains("Water level: 502.84 m"), "{t}");
    assert!(t.contains("Record temperature: 24.12 °C"), "{t}");
    // Not in the dictionary: glossed from the value instead.
    assert!(t.contains("\"Mit de Boumstäm schwümme\""), "{t}");
    let d = &r["structuredContent"];
    assert_eq!(d["season"], "summer");
    assert_eq!(d["water"]["trend"], "stable");
    assert_eq!(d["danger"]["level"], 3, "229 m³/s ≥ 220");
    assert!(d["water"]["flow_text_en"].is_string());
}

#[tokio::test]
async fn nulls_everywhere_and_zero_degrees() {
    let (fake, mut s) = setup().await;
    fake.state.set_current_body(
        "bern",
        json!({"aare": {"temperature": null, "flow": null, "timestamp": null}, "weather": null,
               "sun": null})
        .to_string(),
    );
    fake.state.set_current_body(
        "thun",
        json!({"aare": {"temperature": 0.0, "forecast2h": 0.4, "flow": 50, "timestamp": 1704067200}})
            .to_string(),
    );
    let r = s
        .call("get_current_conditions", json!({"city": "bern"}))
        .await;
    assert!(!is_error(&r), "{r}");
    assert_eq!(r["structuredContent"]["danger"]["level"], 0);
    assert_eq!(r["structuredContent"]["danger"]["label"], "unknown");
    let r = s
        .call("get_current_temperature", json!({"city": "bern"}))
        .await;
    assert!(text(&r).contains("No water temperature measurement"), "{r}");
    let r = s.call("get_forecast", json!({"city": "thun"})).await;
    assert!(!is_error(&r), "{r}");
    assert_eq!(r["structuredContent"]["current"], 0.0);
    assert_eq!(r["structuredContent"]["trend"], "rising");
    let r = s
        .call("get_current_conditions", json!({"city": "thun"}))
        .await;
    assert_eq!(r["structuredContent"]["season"], "winter");
    assert!(text(&r).contains("Water: 0 °C"), "{r}");
}

#[tokio::test]
async fn list_compare_and_forecast() {
    let (_fake, mut s) = setup().await;
    let r = s.call("list_cities", json!({})).await;
    let d = &r["structuredContent"];
    assert_eq!(d["count"], 8);
    assert_eq!(d["cities"][3]["slug"], "bern");
    assert_eq!(d["cities"][3]["coordinates"]["lat"], 46.93);

    let r = s.call("compare_cities", json!({})).await;
    assert!(!is_error(&r), "{r}");
    let d = &r["structuredContent"];
    assert_eq!(d["stations"].as_array().unwrap().len(), 8);
    assert_eq!(d["warmest"], "brugg");
    assert!(d["recommendation"].is_string());

    let r = s
        .call(
            "compare_cities",
            json!({"cities": ["thun", "Thun", "Atlantis", "Bärn"]}),
        )
        .await;
    let d = &r["structuredContent"];
    assert_eq!(
        d["stations"].as_array().unwrap().len(),
        2,
        "duplicates collapse: {d}"
    );
    assert_eq!(d["failures"][0]["city"], "Atlantis");

    let r = s
        .call("compare_cities", json!({"cities": ["Atlantis"]}))
        .await;
    assert!(is_error(&r), "nothing to compare is an error: {r}");

    let r = s
        .call("get_forecast", json!({"city": "bern", "hours": 6}))
        .await;
    let d = &r["structuredContent"];
    assert_eq!(d["trend"], "stable", "12.5 → 12.7 is within 0.3: {d}");
    assert!(d["note"].as_str().unwrap().contains("only 2 hours"));
    let r = s.call("get_forecast", json!({"hours": 0})).await;
    assert!(is_error(&r) && text(&r).contains("at least 1"), "{r}");
}

#[tokio::test]
async fn one_failing_station_does_not_fail_the_comparison() {
    let (fake, mut s) = setup().await;
    fake.state
        .set_city_behaviour("thun", Behaviour::Status(503));
    let r = s
        .call("compare_cities", json!({"cities": ["bern", "thun"]}))
        .await;
    assert!(!is_error(&r), "{r}");
    let d = &r["structuredContent"];
    assert_eq!(d["stations"].as_array().unwrap().len(), 1);
    assert_eq!(d["failures"][0]["city"], "thun");
    assert!(
        d["failures"][0]["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 503")
    );
}

#[tokio::test]
async fn history_sends_unix_seconds_and_summarises() {
    let (fake, mut s) = setup().await;
    let r = s
        .call(
            "get_historical_data",
            json!({"city": "bern", "start": "2024-08-18T00:00:00Z", "end": 1724025600}),
        )
        .await;
    assert!(!is_error(&r), "{r}");
    let hist: Vec<String> = fake
        .state
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("history?"))
        .collect();
    assert_eq!(hist.len(), 1);
    assert!(hist[0].contains("city=bern"), "{}", hist[0]);
    assert!(hist[0].contains("start=1723939200"), "{}", hist[0]);
    assert!(hist[0].contains("end=1724025600"), "{}", hist[0]);
    let summary = &r["structuredContent"]["summary"];
    assert!(
        summary["temperature"]["count"].as_u64().unwrap() > 100,
        "{summary}"
    );
    assert!(summary["flow"]["max"].is_number());
    // The raw body is returned faithfully.
    assert_eq!(r["structuredContent"]["data"]["status"], "ok");

    let r = s
        .call(
            "get_historical_data",
            json!({"city": "bern", "start": "now", "end": "-7 days"}),
        )
        .await;
    assert!(is_error(&r) && text(&r).contains("must be before"), "{r}");
    let r = s
        .call(
            "get_historical_data",
            json!({"city": "bern", "start": "next tuesday", "end": "now"}),
        )
        .await;
    assert!(is_error(&r) && text(&r).contains("ISO 8601"), "{r}");
    let r = s.call("get_historical_data", json!({"city": "bern"})).await;
    assert!(
        is_error(&r) && text(&r).contains("missing field `start`"),
        "{r}"
    );
    let hist = fake.state.count("history", None);
    assert_eq!(hist, 1, "bad arguments never reach upstream");
}

#[tokio::test]
async fn upstream_http_error_is_a_tool_error_and_is_not_cached() {
    let fake = FakeUpstream::start(Behaviour::Status(500)).await;
    let mut s = StdioServer::initialized(&fake.base_url(), &[]).await;
    let r = s.call("get_current_temperature", json!({})).await;
    assert!(is_error(&r), "{r}");
    assert!(text(&r).contains("HTTP 500"), "{r}");
    fake.state.set_behaviour(Behaviour::Normal);
    let r = s.call("get_current_temperature", json!({})).await;
    assert!(!is_error(&r), "the failure was cached: {r}");
}

#[tokio::test]
async fn upstream_garbage_is_a_tool_error() {
    let fake = FakeUpstream::start(Behaviour::Garbage).await;
    let mut s = StdioServer::initialized(&fake.base_url(), &[]).await;
    let r = s.call("list_cities", json!({})).await;
    assert!(is_error(&r) && text(&r).contains("not valid JSON"), "{r}");
    // JSON of the wrong shape is reported too.
    fake.state.set_behaviour(Behaviour::Normal);
    fake.state
        .set_current_body("bern", json!({"unexpected": true}).to_string());
    let r = s.call("get_current_temperature", json!({})).await;
    assert!(
        is_error(&r) && text(&r).contains("without the expected data"),
        "{r}"
    );
}

#[tokio::test]
async fn upstream_hang_times_out_with_a_clear_error() {
    let fake = FakeUpstream::start(Behaviour::Hang).await;
    let mut s = StdioServer::initialized(&fake.base_url(), &["--upstream-timeout", "1s"]).await;
    let started = std::time::Instant::now();
    let r = s.call("get_current_temperature", json!({})).await;
    assert!(is_error(&r), "{r}");
    assert!(text(&r).contains("did not answer within 1 s"), "{r}");
    // Generous bound: only proves the timeout fired instead of waiting for the 1 h hang.
    assert!(started.elapsed() < Duration::from_secs(20));
    // The server is still responsive afterwards.
    let reply = s.request("tools/list", json!({})).await;
    assert!(reply["result"]["tools"].is_array());
}

#[tokio::test]
async fn upstream_unreachable_is_a_tool_error() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = StdioServer::initialized(&format!("http://127.0.0.1:{port}"), &[]).await;
    let r = s
        .call("get_flow_danger_level", json!({"city": "thun"}))
        .await;
    assert!(is_error(&r), "{r}");
    assert!(text(&r).contains("could not be reached"), "{r}");
}

#[tokio::test]
async fn concurrent_identical_calls_make_one_upstream_request() {
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    // Slow answers keep all the misses in flight at once.
    fake.state.set_delay(Duration::from_millis(300));
    let mut s = StdioServer::initialized(&fake.base_url(), &[]).await;
    let mut pending = vec![];
    for _ in 0..25 {
        pending.push(
            s.send_request(
                "tools/call",
                json!({"name": "get_flow_danger_level", "arguments": {"city": "bern"}}),
            )
            .await,
        );
    }
    for rx in pending {
        let reply = recv(rx).await;
        assert!(!is_error(&reply["result"]), "{reply}");
    }
    assert_eq!(
        fake.state.count("cities", None),
        1,
        "{:?}",
        fake.state.requests()
    );
    assert_eq!(
        fake.state.count("current", Some("bern")),
        1,
        "{:?}",
        fake.state.requests()
    );
}

#[tokio::test]
async fn cache_ttl_zero_disables_the_cache() {
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let mut s = StdioServer::initialized(&fake.base_url(), &["--cache-ttl", "0"]).await;
    s.call("list_cities", json!({})).await;
    s.call("list_cities", json!({})).await;
    assert_eq!(fake.state.count("cities", None), 2);
}

#[tokio::test]
async fn resources_and_templates() {
    let (_fake, mut s) = setup().await;
    let list = s.request("resources/list", json!({})).await;
    let uris: Vec<&str> = list["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, ["aareguru://cities", "aareguru://widget"]);
    let t = s.request("resources/templates/list", json!({})).await;
    let templates: Vec<&str> = t["result"]["resourceTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uriTemplate"].as_str().unwrap())
        .collect();
    assert_eq!(
        templates,
        ["aareguru://current/{city}", "aareguru://today/{city}"]
    );

    let read = |v: &Value| -> Value {
        serde_json::from_str(v["result"]["contents"][0]["text"].as_str().unwrap()).unwrap()
    };
    let r = s
        .request("resources/read", json!({"uri": "aareguru://cities"}))
        .await;
    assert_eq!(read(&r).as_array().unwrap().len(), 8);
    assert_eq!(r["result"]["contents"][0]["mimeType"], "application/json");
    let r = s
        .request("resources/read", json!({"uri": "aareguru://widget"}))
        .await;
    assert!(read(&r)["values"]["bern"].is_object());
    let r = s
        .request(
            "resources/read",
            json!({"uri": "aareguru://current/B%C3%A4rn"}),
        )
        .await;
    assert_eq!(read(&r)["aare"]["location"], "Bärn");
    let r = s
        .request(
            "resources/read",
            json!({"uri": "aareguru://today/interlaken"}),
        )
        .await;
    assert_eq!(read(&r)["text"], "Rächt gut. Mit viu Wasser");

    for uri in [
        "aareguru://current/zurich",
        "aareguru://nope",
        "http://example.com",
    ] {
        let r = s.request("resources/read", json!({"uri": uri})).await;
        assert_eq!(r["error"]["code"], -32002, "{uri}: {r}");
    }
}

#[tokio::test]
async fn prompts() {
    let (_fake, mut s) = setup().await;
    let list = s.request("prompts/list", json!({})).await;
    let names: Vec<&str> = list["result"]["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "daily-swimming-report",
            "compare-swimming-spots",
            "weekly-trend-analysis"
        ]
    );
    let r = s
        .request(
            "prompts/get",
            json!({"name": "weekly-trend-analysis", "arguments": {"city": "thun", "days": "14"}}),
        )
        .await;
    let msg = r["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap();
    assert!(msg.contains("start \"-14 days\""), "{msg}");
    let r = s
        .request(
            "prompts/get",
            json!({"name": "weekly-trend-analysis", "arguments": {"days": "-3"}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
}

#[tokio::test]
async fn completions_suggest_stations() {
    let (_fake, mut s) = setup().await;
    let complete = |r: Value, name: &str, value: &str| json!({"ref": r, "argument": {"name": name, "value": value}});
    let prompt = json!({"type": "ref/prompt", "name": "daily-swimming-report"});
    let r = s
        .request("completion/complete", complete(prompt.clone(), "city", "b"))
        .await;
    let values = r["result"]["completion"]["values"].clone();
    assert_eq!(values, json!(["brienz", "bern", "biel", "brugg"]), "{r}");
    // Bernese names complete to their slug.
    let r = s
        .request(
            "completion/complete",
            complete(prompt.clone(), "city", "Bä"),
        )
        .await;
    assert_eq!(r["result"]["completion"]["values"], json!(["bern"]), "{r}");
    let template = json!({"type": "ref/resource", "uri": "aareguru://current/{city}"});
    let r = s
        .request("completion/complete", complete(template, "city", "inter"))
        .await;
    assert_eq!(
        r["result"]["completion"]["values"],
        json!(["interlaken"]),
        "{r}"
    );
    let r = s
        .request(
            "completion/complete",
            complete(prompt, "include_forecast", "f"),
        )
        .await;
    assert_eq!(r["result"]["completion"]["values"], json!(["false"]), "{r}");
}

#[tokio::test]
async fn hostile_input_never_kills_the_server() {
    let (_fake, mut s) = setup().await;
    for junk in [
        "this is not json",
        "{\"jsonrpc\":\"2.0\",\"id\":",
        "[]",
        "42",
        "{\"jsonrpc\":\"2.0\",\"id\":99,\"params\":{}}",
        "\u{0}\u{1}binary",
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/unknown\"}",
    ] {
        s.send_line(junk).await;
    }
    let r = s.request("no/such/method", json!({})).await;
    assert_eq!(r["error"]["code"], -32601, "{r}");
    let r = s
        .request(
            "tools/call",
            json!({"name": "no_such_tool", "arguments": {}}),
        )
        .await;
    assert_eq!(
        r["error"]["code"], -32602,
        "unknown tool is a protocol error: {r}"
    );
    let r = s
        .request(
            "tools/call",
            json!({"name": "get_forecast", "arguments": {"hours": "soon"}}),
        )
        .await;
    assert!(
        is_error(&r["result"]),
        "wrong argument type is a tool error: {r}"
    );
    assert!(text(&r["result"]).contains("`hours`"), "{r}");
    let r = s
        .request(
            "tools/call",
            json!({"name": "compare_cities", "arguments": {"cities": "bern"}}),
        )
        .await;
    assert!(is_error(&r["result"]), "{r}");
    // String and integer ids are distinct and echoed as sent.
    let a = s.send_with_id(json!("7"), "tools/list", json!({})).await;
    let b = s.send_with_id(json!(7), "prompts/list", json!({})).await;
    let (a, b) = (recv(a).await, recv(b).await);
    assert_eq!(a["id"], json!("7"));
    assert!(a["result"]["tools"].is_array());
    assert_eq!(b["id"], json!(7));
    assert!(b["result"]["prompts"].is_array());
    // Still alive and correct.
    let r = s.call("get_current_temperature", json!({})).await;
    assert!(!is_error(&r));
    assert!(s.child.try_wait().unwrap().is_none());
}

#[tokio::test]
async fn oversized_line_is_discarded_and_the_server_carries_on() {
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let mut s = StdioServer::initialized(&fake.base_url(), &["--max-line-bytes", "4096"]).await;
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":500,\"method\":\"tools/call\",\"params\":{{\"name\":\"list_cities\",\"arguments\":{{\"pad\":\"{}\"}}}}}}",
        "x".repeat(100_000)
    );
    s.send_line(&huge).await;
    let r = s.request("tools/list", json!({})).await;
    assert!(r["result"]["tools"].is_array(), "{r}");
}

#[tokio::test]
async fn stdout_carries_only_protocol_even_with_debug_logs() {
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let mut s = StdioServer::start_with_env(&fake.base_url(), &[], &[("RUST_LOG", "trace")]).await;
    s.request(
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}),
    )
    .await;
    s.notify("notifications/initialized", json!({})).await;
    s.call("get_current_conditions", json!({})).await;
    s.close_stdin();
    assert_eq!(s.wait_exit().await, Some(0));
    let lines = s.stdout_lines.lock().clone();
    assert!(lines.len() >= 2);
    for l in lines {
        let v: Value =
            serde_json::from_str(&l).unwrap_or_else(|_| panic!("not JSON on stdout: {l}"));
        assert_eq!(v["jsonrpc"], "2.0");
    }
}

#[tokio::test]
async fn discover_probe_is_answered_immediately() {
    let (fake, _) = setup().await;
    let mut s = StdioServer::start(&fake.base_url(), &[]).await;
    // A 2026-07-28 client probes before any handshake; it must get an answer, never silence.
    let r = s
        .request(
            "server/discover",
            json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                             "io.modelcontextprotocol/clientCapabilities": {}}}),
        )
        .await;
    let versions = r["result"]["supportedVersions"].as_array();
    assert!(
        versions.is_some_and(|v| v.contains(&json!("2025-06-18"))) || r["error"]["code"].is_i64(),
        "{r}"
    );
    // A legacy handshake still works afterwards.
    let init = s
        .request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}),
        )
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
}

#[tokio::test]
async fn closed_stdin_exits_zero_before_and_after_handshake() {
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let mut s = StdioServer::start(&fake.base_url(), &[]).await;
    s.close_stdin();
    assert_eq!(s.wait_exit().await, Some(0));

    let mut s = StdioServer::initialized(&fake.base_url(), &[]).await;
    s.call("list_cities", json!({})).await;
    s.close_stdin();
    assert_eq!(s.wait_exit().await, Some(0));
}

#[tokio::test]
async fn closed_stderr_does_not_stop_the_server() {
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    // Debug logging makes every request write to the (closed) stderr.
    let mut s =
        StdioServer::start_with_closed_stderr(&fake.base_url(), &["--log-level", "debug"]).await;
    s.request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}),
    )
    .await;
    s.notify("notifications/initialized", json!({})).await;
    let r = s.call("get_current_temperature", json!({})).await;
    assert!(!is_error(&r), "{r}");
    s.close_stdin();
    assert_eq!(s.wait_exit().await, Some(0));
}

#[tokio::test]
async fn sigterm_exits_zero() {
    let (_fake, mut s) = setup().await;
    let pid = s.child.id().unwrap() as i32;
    crate::infra::signal(pid as u32, libc::SIGTERM);
    assert_eq!(s.wait_exit().await, Some(0));
}

#[tokio::test]
async fn bad_configuration_fails_fast_with_a_message() {
    let out = tokio::process::Command::new(crate::util::BIN)
        .args(["--stdio", "--base-url", "not-a-url"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AAREGURU_BASE_URL"), "{err}");
    let out = tokio::process::Command::new(crate::util::BIN)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "no mode given must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stdio"));
}

/// Every tool's `structuredContent` validates against the `outputSchema` it declares, for every
/// recorded upstream body (and one where every value is missing), including the answers that
/// carry `null`s.
#[tokio::test]
async fn structured_content_validates_against_the_output_schemas() {
    let (fake, mut s) = setup().await;
    let tools = s.request("tools/list", json!({})).await["result"]["tools"].clone();
    let validators: std::collections::HashMap<String, jsonschema::Validator> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let schema = &t["outputSchema"];
            assert_eq!(schema["type"], "object", "{}", t["name"]);
            let v = jsonschema::validator_for(schema)
                .unwrap_or_else(|e| panic!("{}: invalid schema: {e}", t["name"]));
            (t["name"].as_str().unwrap().to_string(), v)
        })
        .collect();
    assert_eq!(validators.len(), 7);
    // A schema that accepted anything would prove nothing.
    assert!(!validators["get_flow_danger_level"].is_valid(&json!({"flow": "high"})));

    let fixture = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/aareguru/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let nulls = json!({"aare": {"temperature": null, "flow": null, "timestamp": null},
                       "weather": null, "sun": null})
    .to_string();
    let bodies = [
        (
            "current_bern.json",
            fixture("current_bern.json"),
            "cities.json",
        ),
        (
            "current_bern_2024-08_trimmed.json",
            fixture("current_bern_2024-08_trimmed.json"),
            "cities_2024-08_trimmed.json",
        ),
        ("nulls", nulls, "cities.json"),
    ];
    let calls = [
        ("get_current_temperature", json!({"city": "bern"})),
        ("get_current_conditions", json!({"city": "bern"})),
        (
            "get_historical_data",
            json!({"city": "bern", "start": "-2 days", "end": "now"}),
        ),
        ("list_cities", json!({})),
        ("get_flow_danger_level", json!({"city": "bern"})),
        ("compare_cities", json!({})),
        ("compare_cities", json!({"cities": ["bern", "Atlantis"]})),
        ("get_forecast", json!({"city": "bern", "hours": 6})),
    ];
    let mut checked = 0;
    for (label, body, cities) in &bodies {
        fake.state.set_current_body("bern", body.clone());
        fake.state.set_cities_body(fixture(cities));
        // Fresh server each round: the cache would otherwise keep the previous bodies.
        s = StdioServer::initialized(&fake.base_url(), &[]).await;
        for (tool, args) in &calls {
            let r = s.call(tool, args.clone()).await;
            assert!(!is_error(&r), "{label} {tool}: {r}");
            let data = &r["structuredContent"];
            let errors: Vec<String> = validators[*tool]
                .iter_errors(data)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{label} {tool}: {errors:?}\n{data}");
            checked += 1;
        }
    }
    assert_eq!(checked, bodies.len() * calls.len());
}

#[test]
fn the_binary_tells_its_revision_and_prints_its_completions_and_manual() {
    let run = |args: &[&str]| {
        std::process::Command::new(crate::util::BIN)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--version"]);
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        version.starts_with(&format!("aareguru-mcp {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    // The git revision it was built from (this test runs in a checkout).
    let rev = version
        .trim()
        .rsplit('(')
        .next()
        .unwrap()
        .trim_end_matches(')');
    assert!(
        rev.len() == 12 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
        "{version}"
    );
    for (shell, marker) in [
        ("bash", "_aareguru__mcp()"),
        ("zsh", "#compdef aareguru-mcp"),
        ("fish", "complete -c aareguru-mcp"),
    ] {
        let out = run(&["--completions", shell]);
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script:.200}");
        assert!(script.contains("sandbox"), "{shell} completes every flag");
    }
    let out = run(&["--man-page"]);
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(man.contains(".TH aareguru-mcp 1"), "{man:.300}");
    assert!(man.contains("drain\\-delay"), "the manual lists every flag");
    // They are modes of their own: not mixed with serving.
    assert_eq!(
        run(&["--completions", "bash", "--sse"]).status.code(),
        Some(2)
    );
    assert_eq!(run(&["--completions", "tcsh"]).status.code(), Some(2));
}
