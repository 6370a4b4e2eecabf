//! Protocol revision 2026-07-28 on `/mcp`: the envelope and header checks with the revision's
//! statuses, and requests served one at a time without sessions on every backend — the built-in
//! server natively, this binary's `--stdio` passed through, handshake-era fixtures translated
//! (one handshake per child, `input_required` round trips for questions, cancellation when the
//! client goes away).

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    gateway_util::{Gateway, McpClient, example, processes_with, wait_until_gone},
};

const V: &str = "2026-07-28";

fn envelope(caps: Value) -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": V,
           "io.modelcontextprotocol/clientCapabilities": caps,
           "io.modelcontextprotocol/clientInfo": {"name": "it", "version": "1"}})
}

/// A 2026-07-28 client: every request carries its envelope and the matching headers.
pub struct Modern {
    http: reqwest::Client,
    url: String,
    /// The client capabilities every request declares.
    pub caps: Value,
}

impl Modern {
    fn new(gw: &Gateway) -> Modern {
        Modern::at(&gw.base)
    }

    /// A client of `base`'s `/mcp` declaring `caps`.
    pub fn declaring(base: &str, caps: Value) -> Modern {
        Modern {
            caps,
            ..Modern::at(base)
        }
    }

    /// A client of `base`'s `/mcp` (a gateway or a balancer).
    pub fn at(base: &str) -> Modern {
        Modern {
            http: reqwest::Client::new(),
            url: format!("{base}/mcp"),
            caps: json!({"sampling": {}, "elicitation": {}, "roots": {}}),
        }
    }

    /// The POST for a request, envelope and headers in place (`params` may add to `_meta`).
    pub fn build(&self, id: Value, method: &str, mut params: Value) -> reqwest::RequestBuilder {
        let mut meta = envelope(self.caps.clone());
        if let Some(extra) = params.get("_meta").and_then(Value::as_object) {
            for (k, v) in extra {
                meta[k] = v.clone();
            }
        }
        params["_meta"] = meta;
        let mut r = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", V)
            .header("mcp-method", method);
        let name = match method {
            "tools/call" | "prompts/get" => params["name"].as_str(),
            "resources/read" => params["uri"].as_str(),
            _ => None,
        };
        if let Some(n) = name {
            r = r.header("mcp-name", n);
        }
        r.json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
    }

    /// A request answered with JSON: status and body.
    pub async fn request(&self, method: &str, params: Value) -> (u16, Value) {
        let r = self.build(json!(7), method, params).send().await.unwrap();
        let status = r.status().as_u16();
        assert!(
            r.headers().get("mcp-session-id").is_none(),
            "no sessions in 2026-07-28"
        );
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn call(&self, tool: &str, args: Value) -> Value {
        let (status, body) = self
            .request("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["id"], 7, "{body}");
        body
    }
}

#[tokio::test]
async fn the_envelope_and_headers_are_checked_with_the_revisions_statuses() {
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let gw = Gateway::start(&[], &[("AAREGURU_BASE_URL", &fake.base_url())]).await;
    let m = Modern::new(&gw);

    let (status, d) = m.request("server/discover", json!({})).await;
    assert_eq!(status, 200, "{d}");
    assert!(
        d["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!(V))
    );
    let (status, tools) = m.request("tools/list", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 7);
    assert!(tools["result"]["tools"][0]["outputSchema"].is_object());
    let r = m
        .call("get_flow_danger_level", json!({"city": "thun"}))
        .await;
    assert_eq!(
        r["result"]["structuredContent"]["station"]["slug"], "thun",
        "{r}"
    );

    let post = |headers: &[(&str, &str)], body: Value| {
        let mut r = m
            .http
            .post(&m.url)
            .header("content-type", "application/json");
        if !headers.iter().any(|(k, _)| *k == "accept") {
            r = r.header("accept", "application/json, text/event-stream");
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.json(&body).send()
    };
    let list = |meta: Value| json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}});
    let expect = |status: u16, code: i64| {
        move |(s, b): (u16, Value)| {
            assert_eq!(
                (s, b["error"]["code"].as_i64()),
                (status, Some(code)),
                "{b}"
            );
            b
        }
    };
    async fn answer(r: reqwest::Result<reqwest::Response>) -> (u16, Value) {
        let r = r.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
    let ok_headers = [("mcp-protocol-version", V), ("mcp-method", "tools/list")];
    // The method header disagrees with the body.
    expect(400, -32020)(
        answer(
            post(
                &[("mcp-protocol-version", V), ("mcp-method", "tools/call")],
                list(envelope(json!({}))),
            )
            .await,
        )
        .await,
    );
    // The name header disagrees with the tool called.
    let r = m
        .build(json!(1), "tools/call", json!({"name": "list_cities"}))
        .header("mcp-name", "compare_cities")
        .send()
        .await;
    expect(400, -32020)(answer(r).await);
    // A routing header twice.
    let r = m
        .build(json!(1), "tools/list", json!({}))
        .header("mcp-method", "tools/list")
        .send()
        .await;
    expect(400, -32020)(answer(r).await);
    // No envelope.
    expect(400, -32602)(answer(post(&ok_headers, list(json!({}))).await).await);
    // A revision nobody speaks, in body and header alike.
    let mut future = envelope(json!({}));
    future["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let b = expect(400, -32022)(
        answer(
            post(
                &[
                    ("mcp-protocol-version", "2099-01-01"),
                    ("mcp-method", "tools/list"),
                ],
                list(future),
            )
            .await,
        )
        .await,
    );
    assert_eq!(b["error"]["data"]["requested"], "2099-01-01");
    // The envelope without the version header: a mismatch, not a session error.
    expect(400, -32020)(
        answer(post(&[("mcp-method", "tools/list")], list(envelope(json!({})))).await).await,
    );
    // Unknown methods are 404 with -32601.
    let (status, b) = m.request("no/such/method", json!({})).await;
    assert_eq!((status, b["error"]["code"].clone()), (404, json!(-32601)));
    // A batch, or a response, is not a request.
    let b = answer(post(&ok_headers, json!([list(envelope(json!({})))])).await).await;
    assert_eq!(b.0, 400, "{}", b.1);
    let b = answer(
        post(
            &ok_headers,
            json!({"jsonrpc": "2.0", "id": 1, "result": {}}),
        )
        .await,
    )
    .await;
    assert_eq!(b.0, 400, "{}", b.1);
    // A notification is acknowledged and dropped.
    let r = post(
        &[("mcp-protocol-version", V)],
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    // No streams and no sessions to end.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = m
            .http
            .request(method, &m.url)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", V)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "POST");
    }
    // JSON must be acceptable.
    let r = post(
        &[
            ("mcp-protocol-version", V),
            ("mcp-method", "tools/list"),
            ("accept", "text/event-stream"),
        ],
        list(envelope(json!({}))),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 406);

    // The handshake-era revisions keep working on the same endpoint.
    let mut legacy = McpClient::new(&gw.base);
    legacy.initialize().await;
    let (status, r) = legacy.call(2, "list_cities", json!({})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["structuredContent"]["count"], 8);
    assert_eq!(gw.health().await["stateless"]["mode"], "native");
}

/// This binary as a child speaks the revision: requests pass through, on a lane of shared
/// children, with ids kept apart under concurrency; the lane stops with the gateway.
#[tokio::test]
async fn a_child_that_speaks_the_revision_is_passed_through() {
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let bin = env!("CARGO_BIN_EXE_aareguru-mcp");
    let marker = format!("--base-url={}", fake.base_url());
    let mut gw = Gateway::start(
        &["--backend", "per-session", "--", bin, "--stdio", &marker],
        &[],
    )
    .await;
    let m = Modern::new(&gw);
    let (status, d) = m.request("server/discover", json!({})).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        d["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "aareguru-mcp"
    );
    let health = gw.health().await;
    assert_eq!(health["stateless"]["mode"], "passthrough", "{health}");
    let cities = ["bern", "thun", "interlaken", "brienz", "olten", "brugg"];
    let calls = (0..60).map(|i| {
        let m = &m;
        async move {
            let city = cities[i % cities.len()];
            let r = m.call("get_flow_danger_level", json!({"city": city})).await;
            assert_eq!(
                r["result"]["structuredContent"]["station"]["slug"], city,
                "{r}"
            );
        }
    });
    futures::future::join_all(calls).await;
    // The gateway's own command line names the child too.
    assert_eq!(
        processes_with(&marker),
        2,
        "the gateway and one lane child, no session children"
    );
    let _ = gw.child.start_kill();
    let _ = gw.child.wait().await;
    wait_until_gone(
        &[&marker],
        Duration::from_secs(10),
        "the lane's child stopped",
    )
    .await;
}

/// A handshake-era child is translated: one handshake, discover from it, results tagged, its
/// questions as `input_required` round trips, progress on an SSE answer, and a client that
/// leaves cancels its request on the child.
#[tokio::test]
async fn a_handshake_era_child_is_translated() {
    let gw = Gateway::with_fixture(&["--backend", "shared", "--input-wait-timeout", "2s"]).await;
    let m = Modern::new(&gw);
    let (status, d) = m.request("server/discover", json!({})).await;
    assert_eq!(status, 200, "{d}");
    let d = &d["result"];
    assert_eq!(
        d["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "fixture-server"
    );
    assert_eq!(d["capabilities"]["resources"]["subscribe"], true);
    assert_eq!(
        (d["resultType"].as_str(), d["ttlMs"].as_i64()),
        (Some("complete"), Some(0))
    );

    // Ids kept apart: every call gets its own payload back.
    let calls = (0..50).map(|i| {
        let m = &m;
        async move {
            let r = m.call("echo", json!({"n": i})).await;
            assert_eq!(r["result"]["structuredContent"]["n"], i, "{r}");
            assert_eq!(r["result"]["resultType"], "complete");
        }
    });
    futures::future::join_all(calls).await;
    let stats = m.call("stats", json!({})).await;
    assert_eq!(
        stats["result"]["structuredContent"]["initialize"], 1,
        "the lane's child is initialized once: {stats}"
    );
    let (_, tools) = m.request("tools/list", json!({})).await;
    assert_eq!(tools["result"]["cacheScope"], "private");

    // A question: input_required, then the retry's answer reaches the child.
    let first = m
        .call(
            "ask",
            json!({"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}}),
        )
        .await;
    let r = &first["result"];
    assert_eq!(r["resultType"], "input_required", "{first}");
    let asks = r["inputRequests"].as_object().unwrap();
    assert_eq!(asks.len(), 1);
    let (key, ask) = asks.iter().next().unwrap();
    assert_eq!(ask["method"], "sampling/createMessage");
    assert_eq!(ask["params"]["maxTokens"], 5);
    let state = r["requestState"].as_str().unwrap().to_string();
    let answer =
        json!({"role": "assistant", "content": {"type": "text", "text": "sampled"}, "model": "m"});
    let (status, retry) = m
        .request(
            "tools/call",
            json!({"name": "ask",
                   "arguments": {"method": "sampling/createMessage",
                                 "params": {"messages": [], "maxTokens": 5}},
                   "inputResponses": {key.clone(): answer}, "requestState": state}),
        )
        .await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(
        retry["result"]["structuredContent"]["answer"]["result"]["content"]["text"], "sampled",
        "{retry}"
    );
    // The same state again, or one never issued: refused at once.
    let again = m
        .request(
            "tools/call",
            json!({"name": "ask", "arguments": {}, "requestState": state, "inputResponses": {}}),
        )
        .await;
    assert_eq!(
        (again.0, again.1["error"]["code"].as_i64()),
        (400, Some(-32602))
    );

    // Progress: the answer becomes an SSE stream carrying the notifications, then the result.
    let r = m
        .build(
            json!("p"),
            "tools/call",
            json!({"name": "progress", "arguments": {"count": 3}, "_meta": {"progressToken": "tok"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = r.text().await.unwrap();
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{body}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "tok")
    );
    assert_eq!(events.last().unwrap()["id"], "p", "{body}");

    // A client without the capability is never asked: the child hears an error and the client
    // is refused at once with -32021 naming what is missing (HTTP 400).
    let plain = Modern {
        caps: json!({}),
        ..Modern::new(&gw)
    };
    let (status, r) = tokio::time::timeout(
        Duration::from_secs(10),
        plain.request(
            "tools/call",
            json!({"name": "ask", "arguments": {"method": "elicitation/create", "params": {}}}),
        ),
    )
    .await
    .expect("answered, not parked");
    assert_eq!(status, 400, "{r}");
    assert_eq!(r["error"]["code"], -32021, "{r}");
    assert_eq!(r["id"], 7, "{r}");
    assert!(
        r["error"]["data"]["requiredCapabilities"]["elicitation"].is_object(),
        "{r}"
    );

    // A client that goes away: its request is cancelled on the child.
    let gone = m
        .build(
            json!(9),
            "tools/call",
            json!({"name": "never", "arguments": {"label": "left"}}),
        )
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(gone.is_err(), "never answered");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = m.call("cancelled", json!({})).await;
        if r["result"]["structuredContent"]["labels"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("left")))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not cancelled: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gw.health().await["stateless"]["mode"], "translated");

    // A question never answered: after --input-wait-timeout the call is given up (cancelled on
    // the child) and its state is refused.
    let asked = m
        .call("ask", json!({"method": "roots/list", "params": {}}))
        .await;
    assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
    assert_eq!(gw.health().await["stateless"]["waiting_for_clients"], 1);
    gw.wait_health("the parked call to be given up", |h| {
        h["stateless"]["waiting_for_clients"] == 0
    })
    .await;
    let late = m
        .request(
            "tools/call",
            json!({"name": "ask", "arguments": {"method": "roots/list"},
                   "requestState": asked["result"]["requestState"], "inputResponses": {}}),
        )
        .await;
    assert_eq!(late.0, 400, "{}", late.1);
    let metrics = gw.metrics().await;
    for outcome in ["answered", "input_required"] {
        let line = format!(
            "aareguru_gateway_stateless_requests_total{{server=\"default\",outcome=\"{outcome}\"}}"
        );
        assert!(metrics.contains(&line), "{line} missing");
    }
    let _ = example("fixture_server");
}

/// A child behind stdio never sees the HTTP headers, so the gateway checks a call's
/// `Mcp-Param-*` headers against its arguments as the child's tool declares them (the fixture's
/// `deploy`: `region` → `Mcp-Param-Region`, `replicas` → `Mcp-Param-Replicas`).
#[tokio::test]
async fn mcp_param_headers_are_checked_for_a_child_that_cannot() {
    let gw = Gateway::with_fixture(&["--backend", "shared"]).await;
    let m = Modern::new(&gw);
    let call = |args: Value, headers: &[(&str, &str)]| {
        let mut r = m.build(
            json!(7),
            "tools/call",
            json!({"name": "deploy", "arguments": args}),
        );
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let refused = |(status, body): (u16, Value), why: &str| {
        assert_eq!(
            (status, body["error"]["code"].as_i64()),
            (400, Some(-32020)),
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{message}");
    };

    let (status, ok) = call(
        json!({"region": "eu-west", "replicas": 3}),
        &[("mcp-param-region", "eu-west"), ("Mcp-Param-Replicas", "3")],
    )
    .await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["result"]["structuredContent"]["region"], "eu-west");
    // Encoded values are decoded; integers compare as numbers.
    let bern = "=?base64?QsOkcm4=?=";
    let (status, ok) = call(
        json!({"region": "Bärn", "replicas": 3}),
        &[("mcp-param-region", bern), ("mcp-param-replicas", "3.0")],
    )
    .await;
    assert_eq!(status, 200, "{ok}");

    refused(
        call(
            json!({"region": "eu-west"}),
            &[("mcp-param-region", "us-east")],
        )
        .await,
        "does not match",
    );
    refused(call(json!({"region": "eu-west"}), &[]).await, "is missing");
    refused(
        call(json!({}), &[("mcp-param-replicas", "2")]).await,
        "argument is absent",
    );
    refused(
        call(
            json!({"replicas": 2}),
            &[("mcp-param-replicas", "2"), ("mcp-param-replicas", "2")],
        )
        .await,
        "more than once",
    );
    refused(
        call(json!({"replicas": 2}), &[("mcp-param-replicas", "two")]).await,
        "does not match",
    );

    // Tools that declare nothing take any call; headers nobody declared are not checked.
    let (status, ok) = {
        let r = m
            .build(
                json!(7),
                "tools/call",
                json!({"name": "echo", "arguments": {"region": "x"}}),
            )
            .header("mcp-param-region", "y")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200, "{ok}");
    // Sessions (handshake-era revisions) carry no such headers: nothing is checked there.
    let mut legacy = McpClient::new(&gw.base);
    legacy.initialize().await;
    let (status, r) = legacy.call(2, "deploy", json!({"region": "eu-west"})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["structuredContent"]["region"], "eu-west", "{r}");
}

/// The last JSON-RPC message of an answer, JSON or SSE.
async fn last_message(r: reqwest::Response) -> Value {
    let body = r.text().await.unwrap();
    if let Ok(v) = serde_json::from_str(&body) {
        return v;
    }
    body.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data:"))
        .find_map(|d| serde_json::from_str(d.trim()).ok())
        .unwrap_or(Value::Null)
}

/// What waits for a stateless request's reader is bounded: a parked call whose server keeps
/// talking while nobody reads it ends as a slow client once that passes
/// `--session-buffer-bytes` (its retry is told why), and the lane serves the next calls.
#[tokio::test]
async fn a_parked_call_nobody_reads_is_bounded() {
    let gw =
        Gateway::with_fixture(&["--backend", "shared", "--session-buffer-bytes", "262144"]).await;
    let m = Modern::new(&gw);
    // About 1.3 MB of log messages (8000) follow the question while the call is parked.
    let args = json!({"method": "roots/list", "flood": 8000});
    let r = m
        .build(
            json!(1),
            "tools/call",
            json!({"name": "ask", "arguments": args}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let first = last_message(r).await;
    let asked = &first["result"];
    assert_eq!(asked["resultType"], "input_required", "{first}");
    let key = asked["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let state = asked["requestState"].as_str().unwrap().to_string();
    // Let the flood arrive while nobody reads.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = m
        .build(
            json!(2),
            "tools/call",
            json!({"name": "ask", "arguments": args, "requestState": state,
                   "inputResponses": {key: {"roots": []}}}),
        )
        .send()
        .await
        .unwrap();
    let retry = last_message(r).await;
    assert_eq!(retry["error"]["code"], -32603, "{retry}");
    assert!(
        retry["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--session-buffer-bytes"),
        "{retry}"
    );
    // The lane is fine: the next call is answered.
    let r = m.call("echo", json!({"after": true})).await;
    assert_eq!(r["result"]["structuredContent"]["after"], true, "{r}");
}
