//! Protocol revision 2026-07-28 through the gateway with a handshake-era server behind it
//! (`examples/conformance_server`, translated): what one request lets the server ask (only
//! what the client declared, else -32021), say (log messages only at the level the request
//! opted in to), answers it already carries (`inputResponses` before being asked), and
//! `subscriptions/listen` streams (acknowledged first, then only what was asked for, tagged).

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    gateway_util::{Gateway, example},
    modern::Modern,
};

async fn gateway(backend: &str) -> Gateway {
    let conf = example("conformance_server");
    Gateway::start(&["--backend", backend, "--", &conf], &[]).await
}

/// Every JSON message of an SSE (or JSON) answer, in order.
async fn messages(r: reqwest::Response) -> Vec<Value> {
    let body = r.text().await.unwrap();
    if let Ok(v) = serde_json::from_str::<Value>(&body) {
        return vec![v];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

/// Answers what `first` asks (whatever it asks, by each question's method) and retries `call`
/// until the call completes or fails. On a shared child nothing ties a server's question to
/// the request that caused it but timing (see `Mux::route`): a scenario ends its calls before
/// the next begins, or a late question of one goes to the next.
async fn finish(client: &Modern, call: &Value, first: Value) {
    let mut r = first;
    for _ in 0..5 {
        if r["result"]["resultType"] != "input_required" {
            return;
        }
        let answers: serde_json::Map<String, Value> = r["result"]["inputRequests"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, q)| {
                let answer = match q["method"].as_str() {
                    Some("sampling/createMessage") => {
                        json!({"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"})
                    }
                    Some("roots/list") => json!({"roots": []}),
                    _ => json!({"action": "decline"}),
                };
                (key.clone(), answer)
            })
            .collect();
        let mut retry = call.clone();
        retry["requestState"] = r["result"]["requestState"].clone();
        retry["inputResponses"] = Value::Object(answers);
        r = client.request("tools/call", retry).await.1;
    }
    panic!("the call did not end: {r}");
}

#[tokio::test]
async fn a_question_the_client_did_not_declare_is_refused_with_the_capability_it_needs() {
    let gw = gateway("shared").await;
    let none = Modern::declaring(&gw.base, json!({}));
    let call = json!({"name": "test_missing_capability", "arguments": {}});
    let (status, r) = none.request("tools/call", call.clone()).await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(r["id"], 7, "{r}");
    assert_eq!(r["error"]["code"], -32021, "{r}");
    assert_eq!(
        r["error"]["data"]["requiredCapabilities"],
        json!({"sampling": {}}),
        "{r}"
    );

    // Declared: the same call asks the client.
    let all = Modern::at(&gw.base);
    let (status, r) = all.request("tools/call", call.clone()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    finish(&all, &call, r).await;

    // Some declared: only those are asked (the server hears an error for the rest); the
    // questions the server asks together are asked together, under the names its ids give.
    let sampling = Modern::declaring(&gw.base, json!({"sampling": {}}));
    let call = json!({"name": "test_input_required_result_capabilities", "arguments": {}});
    let (_, r) = sampling.request("tools/call", call.clone()).await;
    let asked: Vec<&String> = r["result"]["inputRequests"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(asked, ["greeting"], "{r}");
    finish(&sampling, &call, r).await;
    let (_, r) = all
        .request(
            "tools/call",
            json!({"name": "test_input_required_result_multiple_inputs", "arguments": {}}),
        )
        .await;
    let mut asked: Vec<&String> = r["result"]["inputRequests"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    asked.sort();
    assert_eq!(asked, ["client_roots", "greeting", "user_name"], "{r}");

    // A retry that answers only some is asked the rest again, under a new requestState.
    let state = r["result"]["requestState"].as_str().unwrap().to_string();
    let (_, again) = all
        .request(
            "tools/call",
            json!({"name": "test_input_required_result_multiple_inputs", "arguments": {},
                   "requestState": state,
                   "inputResponses": {"user_name": {"action": "accept", "content": {"name": "Ada"}}}}),
        )
        .await;
    assert_eq!(again["result"]["resultType"], "input_required", "{again}");
    let mut rest: Vec<&String> = again["result"]["inputRequests"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    rest.sort();
    assert_eq!(rest, ["client_roots", "greeting"], "{again}");
    assert_ne!(again["result"]["requestState"], json!(state));
    let (_, done) = all
        .request(
            "tools/call",
            json!({"name": "test_input_required_result_multiple_inputs", "arguments": {},
                   "requestState": again["result"]["requestState"],
                   "inputResponses": {
                       "greeting": {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"},
                       "client_roots": {"roots": []}}}),
        )
        .await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    let text = done["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(text.contains("Ada") && text.contains("hi"), "{done}");
}

#[tokio::test]
async fn answers_sent_before_the_question_are_used_and_malformed_ones_refused() {
    let gw = gateway("shared").await;
    let m = Modern::at(&gw.base);
    let (_, r) = m
        .request(
            "tools/call",
            json!({"name": "test_input_required_result_elicitation", "arguments": {},
                   "inputResponses": {"user_name": {"action": "accept", "content": {"name": "Bo"}},
                                      "unrelated": {"action": "decline"}}}),
        )
        .await;
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "Hello, Bo!", "{r}");
    for bad in [json!(null), json!({"user_name": 12345}), json!([1])] {
        let (status, r) = m
            .request(
                "tools/call",
                json!({"name": "test_input_required_result_elicitation", "arguments": {},
                       "inputResponses": bad}),
            )
            .await;
        assert_eq!((status, &r["error"]["code"]), (400, &json!(-32602)), "{r}");
    }
    // A requestState the gateway did not issue (or one altered) is refused.
    let (_, first) = m
        .request(
            "tools/call",
            json!({"name": "test_input_required_result_tampered_state", "arguments": {}}),
        )
        .await;
    let state = first["result"]["requestState"].as_str().unwrap();
    let (status, r) = m
        .request(
            "tools/call",
            json!({"name": "test_input_required_result_tampered_state", "arguments": {},
                   "requestState": format!("{state}-TAMPERED"),
                   "inputResponses": {"confirm": {"action": "accept", "content": {"ok": true}}}}),
        )
        .await;
    assert_eq!((status, &r["error"]["code"]), (400, &json!(-32602)), "{r}");
}

#[tokio::test]
async fn log_messages_reach_only_requests_that_opted_in_at_their_level() {
    let gw = gateway("per-session").await;
    let m = Modern::at(&gw.base);
    for (meta, expected) in [
        (json!({}), 0),
        (json!({"io.modelcontextprotocol/logLevel": "info"}), 2),
        (json!({"io.modelcontextprotocol/logLevel": "error"}), 0),
    ] {
        let r = m
            .build(
                json!(3),
                "tools/call",
                json!({"name": "test_logging_tool", "arguments": {}, "_meta": meta}),
            )
            .send()
            .await
            .unwrap();
        let all = messages(r).await;
        let logs = all
            .iter()
            .filter(|v| v["method"] == "notifications/message")
            .count();
        assert_eq!(logs, expected, "{meta}: {all:?}");
        assert_eq!(all.last().unwrap()["id"], 3, "{all:?}");
    }
}

/// The next SSE message of a streaming answer.
async fn next_event(r: &mut reqwest::Response, buf: &mut String) -> Option<Value> {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(v) = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .find_map(|d| serde_json::from_str(d.trim()).ok())
            {
                return Some(v);
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .ok()?
            .ok()??;
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn a_listen_stream_is_acknowledged_then_hears_only_what_it_asked_for() {
    for backend in ["shared", "per-session"] {
        let gw = gateway(backend).await;
        let m = Modern::at(&gw.base);
        let mut listen = m
            .build(
                json!("L1"),
                "subscriptions/listen",
                json!({"notifications": {"toolsListChanged": true, "resourcesListChanged": true}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(listen.status(), 200);
        let mut buf = String::new();
        let ack = next_event(&mut listen, &mut buf)
            .await
            .expect("acknowledged");
        assert_eq!(
            ack["method"], "notifications/subscriptions/acknowledged",
            "{ack}"
        );
        assert_eq!(
            ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            "L1"
        );
        // What the server's capabilities can honour (the fixture's lists all change).
        assert_eq!(
            ack["params"]["notifications"],
            json!({"toolsListChanged": true, "resourcesListChanged": true}),
            "{ack}"
        );
        // A prompt change was not asked for; the tool change that follows was.
        m.call("test_trigger_prompt_change", json!({})).await;
        m.call("test_trigger_tool_change", json!({})).await;
        let heard = next_event(&mut listen, &mut buf).await.expect("a change");
        assert_eq!(
            heard["method"], "notifications/tools/list_changed",
            "{backend}: {heard}"
        );
        assert_eq!(
            heard["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L1",
            "{heard}"
        );

        // A listen stream needs a stream to answer on.
        let r = reqwest::Client::new()
            .post(format!("{}/mcp", gw.base))
            .header("accept", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "subscriptions/listen")
            .json(
                &json!({"jsonrpc": "2.0", "id": 4, "method": "subscriptions/listen", "params": {
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {}},
                "notifications": {"toolsListChanged": true}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 406);

        // The gateway shutting down ends the stream with its result, tagged.
        let pid = gw.child.id().unwrap() as i32;
        // SAFETY: signalling a child process this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let last = next_event(&mut listen, &mut buf)
            .await
            .expect("closed with a result");
        assert_eq!(last["id"], "L1", "{last}");
        assert_eq!(
            last["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L1",
            "{last}"
        );
    }
}

#[tokio::test]
async fn a_refused_protocol_version_names_the_request_and_removed_methods_are_gone() {
    let gw = gateway("shared").await;
    let r = reqwest::Client::new()
        .post(format!("{}/mcp", gw.base))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "v999.0.0")
        .json(
            &json!({"jsonrpc": "2.0", "id": 301, "method": "server/discover", "params": {
            "_meta": {"io.modelcontextprotocol/protocolVersion": "v999.0.0",
                      "io.modelcontextprotocol/clientCapabilities": {}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], 301, "{body}");
    assert_eq!(body["error"]["data"]["requested"], "v999.0.0", "{body}");

    let m = Modern::at(&gw.base);
    for method in [
        "ping",
        "initialize",
        "logging/setLevel",
        "resources/subscribe",
    ] {
        let (status, r) = m.request(method, json!({})).await;
        assert_eq!(
            (status, &r["error"]["code"]),
            (404, &json!(-32601)),
            "{method}: {r}"
        );
    }
}
