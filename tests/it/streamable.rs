//! Streamable HTTP (`/mcp`): sessions, statuses, JSON or SSE answers, the listen stream,
//! resumption, version rules — with raw HTTP, so every header and status is visible.

use std::time::Duration;

use serde_json::{Value, json};

use crate::gateway_util::{Gateway, example};

const BOTH: &str = "application/json, text/event-stream";

/// One SSE event as parsed from a response body.
#[derive(Debug, Clone)]
struct Ev {
    id: Option<String>,
    data: String,
}

fn parse_sse(body: &str) -> Vec<Ev> {
    body.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .filter_map(|block| {
            let (mut id, mut data, mut any) = (None, vec![], false);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_string());
                    any = true;
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    any = true;
                }
            }
            any.then(|| Ev {
                id,
                data: data.join("\n"),
            })
        })
        .collect()
}

/// The first event with data on an SSE body (within 10 s); the body stays open.
async fn first_message(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
) -> Ev {
    use futures::StreamExt;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let chunk = body.next().await.expect("stream open").expect("chunk");
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(e) = parse_sse(&text).into_iter().find(|e| !e.data.is_empty()) {
                return e;
            }
        }
    })
    .await
    .expect("an event within 10 s")
}

struct Mcp {
    http: reqwest::Client,
    url: String,
    session: Option<String>,
    version: Option<&'static str>,
}

impl Mcp {
    fn new(gw: &Gateway) -> Mcp {
        Mcp {
            http: reqwest::Client::new(),
            url: gw.url("/mcp"),
            session: None,
            version: None,
        }
    }

    fn post_req(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(&self.url)
            .header("accept", BOTH)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s);
        }
        if let Some(v) = self.version {
            r = r.header("mcp-protocol-version", v);
        }
        r
    }

    async fn post(&self, body: &Value) -> reqwest::Response {
        self.post_req(body).send().await.unwrap()
    }

    /// initialize + initialized; remembers the session and version.
    async fn initialize(&mut self, version: &'static str) -> Value {
        let r = self
            .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}}))
            .await;
        assert_eq!(r.status(), 200);
        self.session = Some(r.headers()["mcp-session-id"].to_str().unwrap().to_string());
        let v: Value = r.json().await.unwrap();
        self.version = Some(version);
        let n = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(n.status(), 202);
        assert_eq!(n.text().await.unwrap(), "");
        v
    }

    /// Opens the session's GET listen stream.
    async fn listen(&self) -> reqwest::Response {
        self.http
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", self.session.as_deref().unwrap())
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap()
    }

    fn call(id: Value, tool: &str, args: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}})
    }
}

async fn fixture(extra: &[&str]) -> Gateway {
    Gateway::with_fixture(extra).await
}

#[tokio::test]
async fn sessions_are_issued_on_initialize_and_required_after() {
    let gw = fixture(&[]).await;
    let mut c = Mcp::new(&gw);
    let init = c.initialize("2025-06-18").await;
    assert_eq!(init["result"]["serverInfo"]["name"], "fixture-server");
    let session = c.session.clone().unwrap();
    assert!(session.bytes().all(|b| (0x21..=0x7e).contains(&b)));

    // A request: one response, as JSON.
    let r = c
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], 1);
    assert!(v["result"]["tools"].is_array());

    // Without the session header: 400; with an unknown one: 404.
    let mut anon = Mcp::new(&gw);
    let r = anon
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await;
    assert_eq!(r.status(), 400);
    anon.session = Some("00000000-0000-4000-8000-000000000000".into());
    let r = anon
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await;
    assert_eq!(r.status(), 404);

    // DELETE ends it; afterwards the session is unknown.
    let d = c
        .http
        .delete(&c.url)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 200);
    let r = c
        .post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn statuses_follow_the_spec() {
    let gw = fixture(&[]).await;
    let mut c = Mcp::new(&gw);
    c.initialize("2025-11-25").await;
    let session = c.session.clone().unwrap();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let raw = |accept: &str, ct: &str, body: String| {
        c.http
            .post(&c.url)
            .header("accept", accept)
            .header("content-type", ct)
            .header("mcp-session-id", &session)
            .body(body)
            .send()
    };
    assert_eq!(
        raw("application/json", "application/json", list.to_string())
            .await
            .unwrap()
            .status(),
        406
    );
    assert_eq!(
        raw(BOTH, "text/plain", list.to_string())
            .await
            .unwrap()
            .status(),
        415
    );
    assert_eq!(
        raw(BOTH, "application/json", "{nope".into())
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        raw("*/*", "application/json", list.to_string())
            .await
            .unwrap()
            .status(),
        200
    );

    // Unsupported protocol versions: 400 at once, with a JSON-RPC error naming what is served.
    let bare = Mcp {
        http: c.http.clone(),
        url: c.url.clone(),
        session: c.session.clone(),
        version: None,
    };
    let r = bare
        .post_req(&list)
        .header("mcp-protocol-version", "2099-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2025-11-25"),
        "{body}"
    );
    assert_eq!(body["error"]["code"], -32022, "{body}");
    assert_eq!(body["error"]["data"]["requested"], "2099-01-01", "{body}");
    // 2026-07-28 is served per request: a request without its envelope is refused as such.
    let r = bare
        .post_req(&list)
        .header("mcp-protocol-version", "2026-07-28")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32602, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("io.modelcontextprotocol/protocolVersion"),
        "{body}"
    );
    // The 2026-07-28 discovery probe, without a session: 400, not a hang.
    let probe = Mcp::new(&gw);
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        probe.post(&json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}})),
    )
    .await
    .expect("the probe must be answered at once");
    // Without its envelope and headers: refused at once, so clients fall back to initialize.
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32602);

    // GET needs text/event-stream; other methods are 405 with Allow.
    let g = c
        .http
        .get(&c.url)
        .header("accept", "application/json")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), 406);
    let p = c.http.put(&c.url).send().await.unwrap();
    assert_eq!(p.status(), 405);
    assert!(p.headers()["allow"].to_str().unwrap().contains("DELETE"));

    // Origin and Host checks apply to /mcp too.
    let o = c
        .post_req(&list)
        .header("origin", "http://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(o.status(), 403);
    let h = c
        .post_req(&list)
        .header("host", "evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 421);
}

#[tokio::test]
async fn batches_are_only_for_2025_03_26() {
    let gw = fixture(&[]).await;
    let mut c = Mcp::new(&gw);
    c.initialize("2025-06-18").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        Mcp::call(json!("2"), "echo", json!({"x": 2}))
    ]);
    assert_eq!(c.post(&batch).await.status(), 400);
    // Without the header the version is taken to be 2025-03-26: both answers, on one SSE stream.
    c.version = None;
    let r = c.post(&batch).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = parse_sse(&r.text().await.unwrap());
    let ids: Vec<Value> = events
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["id"].clone())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&json!(1)) && ids.contains(&json!("2")));
}

#[tokio::test]
async fn progress_before_the_response_turns_the_answer_into_sse_with_ids() {
    let gw = fixture(&[]).await;
    for (version, priming) in [("2025-11-25", true), ("2025-06-18", false)] {
        let mut c = Mcp::new(&gw);
        c.initialize(version).await;
        let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "progress", "arguments": {"count": 3}, "_meta": {"progressToken": "tok"}}});
        let r = c.post(&call).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let events = parse_sse(&r.text().await.unwrap());
        let mut it = events.iter();
        if priming {
            let p = it.next().unwrap();
            assert!(
                p.data.is_empty() && p.id.is_some(),
                "priming event first: {p:?}"
            );
        } else {
            assert!(
                events.iter().all(|e| !e.data.is_empty()),
                "no priming for {version}"
            );
        }
        let messages: Vec<Value> = it.map(|e| serde_json::from_str(&e.data).unwrap()).collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        for m in &messages[..3] {
            assert_eq!(m["method"], "notifications/progress");
            assert_eq!(m["params"]["progressToken"], "tok");
        }
        assert_eq!(messages[3]["id"], 7);
        // Every event carries an id of the form <stream>-<seq>.
        assert!(
            events
                .iter()
                .all(|e| e.id.as_deref().is_some_and(|i| i.contains('-')))
        );
    }
}

#[tokio::test]
async fn a_dropped_stream_is_resumed_with_last_event_id() {
    let gw = fixture(&[]).await;
    let mut c = Mcp::new(&gw);
    c.initialize("2025-11-25").await;
    // The fixture's `ask` sends us a request first, so the answer is an SSE stream.
    let r = c
        .post(&Mcp::call(json!(1), "ask", json!({"method": "roots/list"})))
        .await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let question = first_message(&mut body).await;
    // The connection drops before the tool's response.
    drop(body);
    let asked: Value = serde_json::from_str(&question.data).unwrap();
    assert_eq!(asked["method"], "roots/list");
    let answer =
        json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"roots": [{"uri": "file:///r"}]}});
    assert_eq!(c.post(&answer).await.status(), 202);
    // Resume from the last event seen: the response arrives, nothing is repeated.
    let g = c
        .http
        .get(&c.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .header("last-event-id", question.id.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), 200);
    let events = tokio::time::timeout(Duration::from_secs(10), g.text())
        .await
        .expect("the resumed stream ends after the response")
        .unwrap();
    let messages: Vec<Value> = parse_sse(&events)
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["id"], 1);
    assert_eq!(
        messages[0]["result"]["structuredContent"]["answer"]["result"]["roots"][0]["uri"],
        "file:///r"
    );
}

#[tokio::test]
async fn the_listen_stream_carries_unrelated_messages_and_is_single() {
    // Shared backend: another session's `touch` makes the child announce a list change, which
    // is unrelated to any request of this session and must arrive on its GET stream.
    let fixture_bin = example("fixture_server");
    let gw = Gateway::start(&["--backend", "shared", "--", &fixture_bin], &[]).await;
    let mut a = Mcp::new(&gw);
    a.initialize("2025-11-25").await;
    let g = a.listen().await;
    assert_eq!(g.status(), 200);
    assert_eq!(a.listen().await.status(), 409);
    let mut b = Mcp::new(&gw);
    b.initialize("2025-11-25").await;
    let r = b
        .post(&Mcp::call(json!(1), "touch", json!({"uri": "x://y"})))
        .await;
    assert_eq!(r.status(), 200);
    let mut body = g.bytes_stream();
    let got = first_message(&mut body).await;
    let m: Value = serde_json::from_str(&got.data).unwrap();
    assert_eq!(m["method"], "notifications/resources/list_changed");
    // Once the listen connection is gone, another may open.
    drop(body);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.listen().await.status(), 200);
}

/// A POST whose client went away before its answer leaves no stream behind that would swallow
/// the session's unrelated messages: they still reach the GET stream.
#[tokio::test]
async fn a_post_its_client_left_does_not_swallow_unrelated_messages() {
    let fixture_bin = example("fixture_server");
    let gw = Gateway::start(&["--backend", "shared", "--", &fixture_bin], &[]).await;
    let mut a = Mcp::new(&gw);
    a.initialize("2025-11-25").await;
    let g = a.listen().await;
    assert_eq!(g.status(), 200);
    // A request the server never answers, whose client gives up.
    let left = a
        .post_req(&Mcp::call(json!(1), "never", json!({"label": "left"})))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(left.is_err_and(|e| e.is_timeout()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut b = Mcp::new(&gw);
    b.initialize("2025-11-25").await;
    let r = b
        .post(&Mcp::call(json!(1), "touch", json!({"uri": "x://y"})))
        .await;
    assert_eq!(r.status(), 200);
    let mut body = g.bytes_stream();
    let got = first_message(&mut body).await;
    let m: Value = serde_json::from_str(&got.data).unwrap();
    assert_eq!(m["method"], "notifications/resources/list_changed");
}

#[tokio::test]
async fn idle_mcp_sessions_are_reaped() {
    let gw = fixture(&["--session-idle-timeout", "1s"]).await;
    let mut c = Mcp::new(&gw);
    c.initialize("2025-06-18").await;
    gw.wait_health("session reaped", |h| h["sessions"] == 0)
        .await;
    let r = c
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn either_transport_can_be_turned_off() {
    let gw = fixture(&["--no-sse"]).await;
    assert_eq!(reqwest::get(gw.url("/sse")).await.unwrap().status(), 404);
    let mut c = Mcp::new(&gw);
    c.initialize("2025-06-18").await;
    let gw = fixture(&["--no-streamable-http"]).await;
    let c = Mcp::new(&gw);
    let r = c
        .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}))
        .await;
    assert_eq!(r.status(), 404);
}
