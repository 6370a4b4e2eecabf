//! The mux's routing rules, driven directly (no processes, no sockets).

use super::*;
use crate::mcp::jsonrpc::Kind;

pub(super) fn kind(line: &str) -> Kind {
    jsonrpc::classify(line.as_bytes()).unwrap()
}

pub(super) fn send(mux: &mut Mux, s: Uuid, line: &str) -> Vec<Out> {
    let mut out = vec![];
    mux.from_client(s, line.as_bytes(), &kind(line), &mut out);
    out
}

pub(super) fn child_says(mux: &mut Mux, v: Value) -> Vec<Out> {
    let mut out = vec![];
    mux.from_child(v.to_string().as_bytes(), &mut out);
    out
}

pub(super) fn child_lines(out: &[Out]) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            Out::Child(b) => Some(serde_json::from_slice(b).unwrap()),
            _ => None,
        })
        .collect()
}

pub(super) fn session_msgs(out: &[Out], s: Uuid) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            Out::Session(t, m) if *t == s => Some(serde_json::from_str(m).unwrap()),
            _ => None,
        })
        .collect()
}

pub(super) fn req(id: &str, method: &str, params: Value) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
}

fn init(version: &str, caps: Value) -> String {
    req(
        "0",
        "initialize",
        json!({"protocolVersion": version, "capabilities": caps, "clientInfo": {"name": "t", "version": "1"}}),
    )
}

pub(super) fn member(mux: &mut Mux) -> Uuid {
    let s = Uuid::new_v4();
    mux.attach(s);
    s
}

/// Puts the mux past the handshake with one session and returns it.
pub(super) fn initialized(mux: &mut Mux) -> Uuid {
    let s = member(mux);
    let out = send(mux, s, &init("2025-06-18", json!({"sampling": {}})));
    let id = child_lines(&out)[0]["id"].clone();
    child_says(
        mux,
        json!({"jsonrpc": "2.0", "id": id, "result": {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "c", "version": "1"}}}),
    );
    s
}

#[test]
fn hundreds_of_sessions_with_colliding_ids_get_their_own_replies() {
    let mut mux = Mux::new();
    initialized(&mut mux);
    let sessions: Vec<Uuid> = (0..300).map(|_| member(&mut mux)).collect();
    let mut to_child = vec![];
    for (i, s) in sessions.iter().enumerate() {
        for id in ["1", "\"1\"", "2", "\"x y\""] {
            let line = req(
                id,
                "tools/call",
                json!({"name": "echo", "arguments": {"from": i, "id": id}}),
            );
            to_child.extend(child_lines(&send(&mut mux, *s, &line)));
        }
    }
    let ids: HashSet<String> = to_child.iter().map(|m| m["id"].to_string()).collect();
    assert_eq!(ids.len(), 1200, "child-side ids must be unique");
    // The child answers in reverse order, echoing the arguments.
    let mut out = vec![];
    for m in to_child.iter().rev() {
        out.extend(child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "id": m["id"], "result": m["params"]["arguments"]}),
        ));
    }
    assert_eq!(out.len(), 1200);
    for (i, s) in sessions.iter().enumerate() {
        let got = session_msgs(&out, *s);
        assert_eq!(got.len(), 4);
        for reply in got {
            assert_eq!(reply["result"]["from"], i);
            // The id comes back with its original type and text.
            assert_eq!(
                reply["id"].to_string(),
                reply["result"]["id"].as_str().unwrap()
            );
        }
    }
    assert_eq!(mux.in_flight(), 0);
}

#[test]
fn initialize_reaches_the_child_once_and_each_session_gets_its_version() {
    let mut mux = Mux::new();
    let (a, b, c) = (member(&mut mux), member(&mut mux), member(&mut mux));
    let out = send(&mut mux, a, &init("2025-06-18", json!({"roots": {}})));
    let sent = child_lines(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["params"]["protocolVersion"], "2025-11-25");
    assert_eq!(
        sent[0]["params"]["clientInfo"]["name"],
        "aareguru-mcp-gateway"
    );
    assert!(sent[0]["params"]["capabilities"]["sampling"].is_object());
    assert!(sent[0]["params"]["capabilities"]["elicitation"].is_object());
    // Another session arrives while the handshake is in flight: it waits, nothing is sent.
    assert!(send(&mut mux, b, &init("2024-11-05", json!({}))).is_empty());
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "id": sent[0]["id"], "result": {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "c", "version": "1"}}}),
    );
    // `initialized` goes to the child before any session hears back.
    assert!(matches!(&out[0], Out::Child(l) if l.windows(11).any(|w| w == b"initialized")));
    assert_eq!(
        session_msgs(&out, a)[0]["result"]["protocolVersion"],
        "2025-06-18"
    );
    assert_eq!(
        session_msgs(&out, b)[0]["result"]["protocolVersion"],
        "2024-11-05"
    );
    assert_eq!(session_msgs(&out, a)[0]["id"], 0);
    // Later sessions: answered from the cache; an unknown version gets the child's.
    let out = send(&mut mux, c, &init("2026-07-28", json!({})));
    assert!(child_lines(&out).is_empty());
    assert_eq!(
        session_msgs(&out, c)[0]["result"]["protocolVersion"],
        "2025-11-25"
    );
    assert_eq!(
        session_msgs(&out, c)[0]["result"]["serverInfo"]["name"],
        "c"
    );
    // Clients' own `initialized` never reaches the child.
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert!(send(&mut mux, c, note).is_empty());
}

#[test]
fn a_failed_handshake_is_not_cached() {
    let mut mux = Mux::new();
    let a = member(&mut mux);
    let sent = child_lines(&send(&mut mux, a, &init("2025-06-18", json!({}))));
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "id": sent[0]["id"], "error": {"code": -32602, "message": "no"}}),
    );
    assert_eq!(session_msgs(&out, a)[0]["error"]["code"], -32602);
    assert_eq!(session_msgs(&out, a)[0]["id"], 0);
    assert_eq!(
        child_lines(&send(&mut mux, a, &init("2025-06-18", json!({})))).len(),
        1
    );
}

#[test]
fn progress_and_cancellation_are_rewritten_both_ways() {
    let mut mux = Mux::new();
    initialized(&mut mux);
    let (a, b) = (member(&mut mux), member(&mut mux));
    let call = |tok: Value| {
        req(
            "1",
            "tools/call",
            json!({"name": "slow", "_meta": {"progressToken": tok}}),
        )
    };
    let to_a = child_lines(&send(&mut mux, a, &call(json!("t"))));
    let to_b = child_lines(&send(&mut mux, b, &call(json!(1)))); // same id, other type of token
    let (ta, tb) = (
        &to_a[0]["params"]["_meta"]["progressToken"],
        &to_b[0]["params"]["_meta"]["progressToken"],
    );
    assert_ne!(ta, tb);
    let progress = |t: &Value| json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": t, "progress": 1}});
    let out = child_says(&mut mux, progress(tb));
    assert_eq!(session_msgs(&out, b)[0]["params"]["progressToken"], 1);
    assert!(session_msgs(&out, a).is_empty());
    let out = child_says(&mut mux, progress(ta));
    assert_eq!(session_msgs(&out, a)[0]["params"]["progressToken"], "t");
    // b cancels its request 1: the child hears about its own id for it.
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"user"}}"#;
    let sent = child_lines(&send(&mut mux, b, cancel));
    assert_eq!(sent[0]["params"]["requestId"], to_b[0]["id"]);
    assert_eq!(sent[0]["params"]["reason"], "user");
    // A late answer to the cancelled request and its progress are dropped.
    assert!(
        child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "id": to_b[0]["id"], "result": {}})
        )
        .is_empty()
    );
    assert!(child_says(&mut mux, progress(tb)).is_empty());
    // Cancelling a request that is not in flight sends nothing.
    assert!(send(&mut mux, b, cancel).is_empty());
    // a's request is unaffected.
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "id": to_a[0]["id"], "result": {"ok": true}}),
    );
    assert_eq!(session_msgs(&out, a)[0]["id"], 1);
}

#[test]
fn child_requests_go_to_the_session_whose_call_is_in_flight_and_answers_come_back() {
    let mut mux = Mux::new();
    let first = initialized(&mut mux);
    let (a, b) = (member(&mut mux), member(&mut mux));
    send(&mut mux, a, &init("2025-11-25", json!({"sampling": {}})));
    send(&mut mux, b, &init("2025-11-25", json!({})));
    send(
        &mut mux,
        a,
        &req("7", "tools/call", json!({"name": "sample"})),
    );
    // b's call is more recent, but b cannot sample: a is asked.
    send(
        &mut mux,
        b,
        &req("7", "tools/call", json!({"name": "other"})),
    );
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "id": 7, "method": "sampling/createMessage", "params": {"messages": []}}),
    );
    let asked = session_msgs(&out, a);
    assert_eq!(asked.len(), 1);
    assert!(session_msgs(&out, b).is_empty() && session_msgs(&out, first).is_empty());
    // a is asked under the child's own id, and its answer goes back to the child.
    assert_eq!(asked[0]["id"], 7);
    let answer = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":{{"type":"text","text":"hi"}}}}}}"#,
        asked[0]["id"]
    );
    // b cannot answer a's question.
    assert!(send(&mut mux, b, &answer).is_empty());
    let sent = child_lines(&send(&mut mux, a, &answer));
    assert_eq!(sent[0]["id"], 7);
    assert_eq!(sent[0]["result"]["content"]["text"], "hi");
    // A roots request goes to the most recent in-flight session whose capabilities allow it
    // (b declared none, a did not declare roots: neither; the one that spoke last is asked).
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "id": 8, "method": "ping"}),
    );
    assert_eq!(
        child_lines(&out)[0]["id"],
        8,
        "the child's ping is answered by the gateway"
    );
    assert_eq!(child_lines(&out)[0]["result"], json!({}));
}

#[test]
fn with_nothing_in_flight_requests_go_to_the_last_speaker_and_logs_to_everyone() {
    let mut mux = Mux::new();
    let s0 = initialized(&mut mux);
    let a = member(&mut mux);
    send(
        &mut mux,
        a,
        r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#,
    );
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"}),
    );
    assert_eq!(session_msgs(&out, a).len(), 1);
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}),
    );
    assert_eq!(
        session_msgs(&out, a).len() + session_msgs(&out, s0).len(),
        2
    );
    // With no session at all, the child is told at once.
    let mut lonely = Mux::new();
    let out = child_says(
        &mut lonely,
        json!({"jsonrpc": "2.0", "id": 3, "method": "roots/list"}),
    );
    assert_eq!(
        child_lines(&out)[0]["error"]["code"],
        jsonrpc::INTERNAL_ERROR
    );
}

#[test]
fn a_departing_session_cancels_its_requests_and_answers_pending_questions() {
    let mut mux = Mux::new();
    initialized(&mut mux);
    let a = member(&mut mux);
    let sent = child_lines(&send(
        &mut mux,
        a,
        &req("1", "tools/call", json!({"name": "never"})),
    ));
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "id": "q", "method": "elicitation/create", "params": {}}),
    );
    assert_eq!(session_msgs(&out, a).len(), 1);
    let mut out = vec![];
    mux.detach(a, &mut out);
    let to_child = child_lines(&out);
    assert!(
        to_child
            .iter()
            .any(|m| m["method"] == "notifications/cancelled"
                && m["params"]["requestId"] == sent[0]["id"])
    );
    assert!(
        to_child
            .iter()
            .any(|m| m["id"] == "q" && m["error"].is_object())
    );
    assert_eq!(mux.in_flight(), 0);
    assert!(
        child_says(
            &mut mux,
            json!({"jsonrpc": "2.0", "id": sent[0]["id"], "result": {}})
        )
        .is_empty()
    );
}

#[test]
fn subscriptions_are_counted_and_updates_go_only_to_subscribers() {
    let mut mux = Mux::new();
    let s0 = initialized(&mut mux);
    let (a, b) = (member(&mut mux), member(&mut mux));
    let sub = |id: &str| req(id, "resources/subscribe", json!({"uri": "aareguru://x"}));
    let sent = child_lines(&send(&mut mux, a, &sub("1")));
    assert_eq!(sent[0]["method"], "resources/subscribe");
    let out = send(&mut mux, b, &sub("\"s\""));
    assert!(child_lines(&out).is_empty());
    assert_eq!(session_msgs(&out, b)[0]["id"], "s");
    let upd = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "aareguru://x"}});
    let out = child_says(&mut mux, upd.clone());
    assert_eq!(session_msgs(&out, a).len(), 1);
    assert_eq!(session_msgs(&out, b).len(), 1);
    assert!(session_msgs(&out, s0).is_empty());
    // a leaves the subscription; the child keeps sending for b.
    let out = send(
        &mut mux,
        a,
        &req("2", "resources/unsubscribe", json!({"uri": "aareguru://x"})),
    );
    assert!(child_lines(&out).is_empty());
    assert_eq!(session_msgs(&child_says(&mut mux, upd.clone()), a).len(), 0);
    // b disconnects: the gateway unsubscribes the child itself.
    let mut out = vec![];
    mux.detach(b, &mut out);
    assert_eq!(child_lines(&out)[0]["method"], "resources/unsubscribe");
    // List changes reach everyone.
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
    );
    assert_eq!(
        session_msgs(&out, a).len() + session_msgs(&out, s0).len(),
        2
    );
}

#[test]
fn a_dead_child_fails_in_flight_requests_and_a_new_one_is_reinitialized_first() {
    let mut mux = Mux::new();
    initialized(&mut mux);
    let a = member(&mut mux);
    send(
        &mut mux,
        a,
        &req("1", "resources/subscribe", json!({"uri": "u"})),
    );
    send(
        &mut mux,
        a,
        &req("\"p\"", "tools/call", json!({"name": "never"})),
    );
    let mut out = vec![];
    mux.child_died("exit status: 3", &mut out);
    let errors = session_msgs(&out, a);
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| {
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exit status: 3")
    }));
    // While the child is down, client messages wait.
    assert!(send(&mut mux, a, &req("2", "tools/list", json!({}))).is_empty());
    let mut out = vec![];
    mux.child_started(&mut out);
    let replay = child_lines(&out);
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0]["method"], "initialize");
    assert_eq!(
        replay[0]["params"]["clientInfo"]["name"],
        "aareguru-mcp-gateway"
    );
    assert!(!mux.is_ready());
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "id": replay[0]["id"], "result": {"protocolVersion": "2025-11-25"}}),
    );
    let sent = child_lines(&out);
    let methods: Vec<&str> = sent.iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        [
            "notifications/initialized",
            "resources/subscribe",
            "tools/list"
        ]
    );
    assert!(
        session_msgs(&out, a).is_empty(),
        "the replayed handshake is not shown to clients"
    );
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "id": sent[2]["id"], "result": {"tools": []}}),
    );
    assert_eq!(session_msgs(&out, a)[0]["id"], 2);
}

#[test]
fn what_waits_for_a_restarting_child_is_bounded_in_bytes() {
    let mut mux = Mux::new();
    let a = initialized(&mut mux);
    let mut out = vec![];
    mux.child_died("killed", &mut out);
    let big = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/roots/list_changed","params":{{"pad":"{}"}}}}"#,
        "x".repeat(1000)
    );
    let limit = 10 * big.len();
    let mut taken = 0;
    while mux.room_for(big.len(), limit) {
        assert!(send(&mut mux, a, &big).is_empty(), "held, not sent");
        taken += 1;
        assert!(taken <= 10, "past the byte limit");
    }
    assert_eq!(taken, 10);
    assert_eq!(mux.held(), (10, limit));
    assert!(!mux.room_for(1, limit));
    // Ready again: everything held goes to the child, and there is room again.
    let mut out = vec![];
    mux.child_started(&mut out);
    let replay = child_lines(&out);
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "id": replay[0]["id"], "result": {"protocolVersion": "2025-11-25"}}),
    );
    let sent = child_lines(&out);
    assert_eq!(
        sent.iter()
            .filter(|m| m["method"] == "notifications/roots/list_changed")
            .count(),
        10
    );
    assert_eq!(mux.held(), (0, 0));
    assert!(mux.room_for(big.len(), limit));
}
