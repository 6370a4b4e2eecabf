//! `aareguru-mcp --connect URL`: the stdio bridge in front of this gateway.

use std::{process::Stdio, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::{
    gateway_util::Gateway,
    util::{BIN, WAIT},
};

struct Bridge {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Bridge {
    fn start(args: &[&str]) -> Bridge {
        let mut child = Command::new(BIN)
            .arg("--connect")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Bridge {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            _child: child,
        }
    }

    async fn send(&mut self, v: Value) {
        self.stdin
            .write_all(format!("{v}\n").as_bytes())
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("bridge answered in time")
            .unwrap()
            .expect("bridge stdout open");
        serde_json::from_str(&line).expect("bridge stdout carries JSON only")
    }

    async fn initialize(&mut self) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}}))
            .await;
        let r = self.next().await;
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        r
    }
}

#[tokio::test]
async fn the_bridge_relays_both_transports_with_ids_intact() {
    let gw = Gateway::with_fixture(&["--backend", "shared"]).await;
    for path in ["/mcp", "/sse"] {
        let mut b = Bridge::start(&[&gw.url(path)]);
        let init = b.initialize().await;
        assert_eq!(
            init["result"]["serverInfo"]["name"], "fixture-server",
            "{path}"
        );
        // Ids that look like the bridge's own internal ones are the host's all the same.
        for id in [
            json!(1),
            json!("1"),
            json!("aareguru-bridge-0"),
            json!("x-aareguru-bridge-7"),
        ] {
            b.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": "echo", "arguments": {"id": id}}}))
                .await;
            let r = b.next().await;
            assert_eq!(r["id"], id, "{path}: {r}");
            assert_eq!(r["result"]["structuredContent"]["id"], id);
        }
        // Progress notifications arrive before the response, with the host's own token.
        b.send(
            json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
            "name": "progress", "arguments": {"count": 2}, "_meta": {"progressToken": "p"}}}),
        )
        .await;
        for _ in 0..2 {
            let m = b.next().await;
            assert_eq!(m["method"], "notifications/progress", "{path}: {m}");
            assert_eq!(m["params"]["progressToken"], "p");
        }
        assert_eq!(b.next().await["id"], 9);
    }
}

#[tokio::test]
async fn an_unreachable_remote_is_an_error_not_a_hang() {
    // Nothing listens on port 9.
    let mut b = Bridge::start(&["http://127.0.0.1:9/mcp"]);
    let started = std::time::Instant::now();
    let r = b.initialize().await;
    assert_eq!(r["id"], 0);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{r}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn http_errors_become_json_rpc_errors_for_the_request() {
    // The gateway with an API key, the bridge without: the 401 comes back as an error.
    let fixture = crate::gateway_util::example("fixture_server");
    let gw = Gateway::start(&["--api-key", "sekret", "--", &fixture], &[]).await;
    let mut b = Bridge::start(&[&gw.url("/mcp"), "--transport", "streamable-http"]);
    let r = b.initialize().await;
    assert!(
        r["error"]["message"].as_str().unwrap().contains("401"),
        "{r}"
    );
    // With the key, it works.
    let mut b = Bridge::start(&[&gw.url("/mcp"), "--api-key", "sekret"]);
    let r = b.initialize().await;
    assert_eq!(r["result"]["serverInfo"]["name"], "fixture-server", "{r}");
}

/// A host speaking 2026-07-28: each request goes out on its own (no session), answers and the
/// revision's errors come back as the remote sent them, progress included; a cancellation closes
/// the request, which cancels it on the child; an HTTP+SSE remote refuses at once.
#[tokio::test]
async fn a_stateless_host_is_bridged_request_by_request() {
    let gw = Gateway::with_fixture(&["--backend", "shared"]).await;
    let meta = |extra: Value| {
        let mut m = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                           "io.modelcontextprotocol/clientCapabilities": {}});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let mut b = Bridge::start(&[&gw.url("/mcp")]);
    b.send(
        json!({"jsonrpc": "2.0", "id": "d", "method": "server/discover",
                  "params": {"_meta": meta(json!({}))}}),
    )
    .await;
    let d = b.next().await;
    assert_eq!(d["id"], "d", "{d}");
    assert!(
        d["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28")),
        "{d}"
    );
    b.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                  "params": {"name": "progress", "arguments": {"count": 2},
                             "_meta": meta(json!({"progressToken": "t"}))}}))
        .await;
    let mut got = vec![b.next().await, b.next().await, b.next().await];
    assert_eq!(got[0]["method"], "notifications/progress", "{got:?}");
    assert_eq!(got[1]["params"]["progressToken"], "t", "{got:?}");
    let last = got.pop().unwrap();
    assert_eq!(
        (last["id"].clone(), last["result"]["resultType"].clone()),
        (json!(2), json!("complete")),
        "{last}"
    );
    // The revision's own error, with its data, as the remote sent it.
    b.send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list",
                  "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}))
        .await;
    let e = b.next().await;
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (json!(3), json!(-32602)),
        "{e}"
    );
    // A cancelled request: its POST closes, and the child hears the cancellation.
    b.send(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                  "params": {"name": "never", "arguments": {"label": "bridged"}, "_meta": meta(json!({}))}}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 4}}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        b.send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                      "params": {"name": "cancelled", "arguments": {}, "_meta": meta(json!({}))}}))
            .await;
        let r = b.next().await;
        assert_eq!(r["id"], 5, "no answer to the cancelled request: {r}");
        if r["result"]["structuredContent"]["labels"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("bridged")))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not cancelled: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `Mcp-Param-*` headers: a tool the host has not listed gets none (the gateway, checking
    // for the child, refuses the call, as an SDK server would); once listed, they are sent.
    let deploy = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "deploy", "arguments": {"region": "Bärn", "replicas": 2},
                          "_meta": meta(json!({}))}})
    };
    b.send(deploy(6)).await;
    let e = b.next().await;
    assert_eq!(e["error"]["code"], -32020, "{e}");
    b.send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"_meta": meta(json!({}))}}))
        .await;
    let listed = b.next().await;
    assert_eq!(listed["id"], 7, "{listed}");
    b.send(deploy(8)).await;
    let r = b.next().await;
    assert_eq!(r["result"]["structuredContent"]["region"], "Bärn", "{r}");

    let mut sse = Bridge::start(&[&gw.url("/sse")]);
    sse.send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                    "params": {"_meta": meta(json!({}))}}),
    )
    .await;
    let e = sse.next().await;
    assert_eq!(e["error"]["code"], -32601, "{e}");
}
