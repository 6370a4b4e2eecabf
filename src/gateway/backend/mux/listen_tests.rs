//! The mux and 2026-07-28 listen streams: what a child tags with a stream's id goes to the
//! request that opened it, under the id its session gave it.

use serde_json::json;

use super::{
    Mux,
    tests::{child_lines, child_says, initialized, member, req, send, session_msgs},
};

#[test]
fn listen_stream_notifications_go_to_their_request_under_its_own_id() {
    let mut mux = Mux::new();
    initialized(&mut mux);
    let (a, b) = (member(&mut mux), member(&mut mux));
    let sent = child_lines(&send(
        &mut mux,
        a,
        &req(
            "\"L\"",
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": true}}),
        ),
    ));
    send(
        &mut mux,
        b,
        &req("\"L\"", "tools/call", json!({"name": "other"})),
    );
    let n = sent[0]["id"].clone();
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
               "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": n}}}),
    );
    let heard = session_msgs(&out, a);
    assert_eq!(heard.len(), 1);
    assert_eq!(
        heard[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L"
    );
    assert!(
        session_msgs(&out, b).is_empty(),
        "only the listening request hears it"
    );
    // Once the stream's request is answered, what still names it reaches nobody.
    send(
        &mut mux,
        a,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"L"}}"#,
    );
    child_says(&mut mux, json!({"jsonrpc": "2.0", "id": n, "result": {}}));
    let out = child_says(
        &mut mux,
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
               "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": n}}}),
    );
    assert!(session_msgs(&out, a).is_empty() && session_msgs(&out, b).is_empty());
}
