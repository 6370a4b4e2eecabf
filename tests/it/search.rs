//! Tool search with fixture servers: what the search finds and the call tool reaches is what
//! the layers inside allow — the tool filter hides, the rules judge the named tool's arguments
//! (every encoding) before the child sees them (the fixture counts its calls), the audit log
//! records the tool's own name — and activate mode keeps a session's found tools up to its cap.

use serde_json::{Value, json};

use crate::{
    gateway_util::{Gateway, McpClient},
    infra::TempDir,
    servers::{fixture, write},
};

fn names(v: &Value, key: &str) -> Vec<String> {
    v["result"][key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

async fn search(c: &McpClient, query: &str, limit: u64) -> Vec<String> {
    let (status, v) = c
        .call(20, "search_tools", json!({"query": query, "limit": limit}))
        .await;
    assert_eq!(status, 200, "{v}");
    names(
        &json!({"result": v["result"]["structuredContent"]}),
        "tools",
    )
}

async fn calls_of(c: &McpClient, tool: &str) -> u64 {
    let (_, v) = c.call(90, "stats", json!({})).await;
    v["result"]["structuredContent"]["calls"][tool]
        .as_u64()
        .unwrap_or(0)
}

/// A `call_tool` request with `inner` (raw JSON) as the arguments of the tool it names.
async fn raw_call_tool(c: &McpClient, tool: &str, inner: &str) -> Value {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"call_tool","arguments":{{"name":"{tool}","arguments":{inner}}}}}}}"#
    );
    crate::policy::raw_call(c, &body).await
}

/// A gateway on `config` writing its audit log in `dir`, and the log's path.
async fn with_log(dir: &TempDir, config: &Value) -> (Gateway, std::path::PathBuf) {
    let path = write(dir, config);
    let log = dir.0.join("audit.log");
    let log_arg = log.display().to_string();
    let gw = Gateway::start(&["--config", &path, "--audit-log", &log_arg], &[]).await;
    (gw, log)
}

/// The audit log's lines as `name outcome` (but the fixture's `stats`), once there are `n`.
async fn logged(log: &std::path::Path, n: usize) -> Vec<String> {
    let mut seen = vec![];
    for _ in 0..50 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        seen = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|l| {
                format!(
                    "{} {}",
                    l["name"].as_str().unwrap(),
                    l["outcome"].as_str().unwrap()
                )
            })
            .filter(|l| !l.starts_with("stats "))
            .collect();
        if seen.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    seen
}

#[tokio::test]
async fn what_the_search_finds_and_calls_is_what_the_layers_inside_allow() {
    let dir = TempDir::new("search");
    let config = json!({
        "mcpServers": {
            "fx": fixture("fx", json!({
                "toolSearch": {"mode": "search", "alwaysList": ["env"]},
                "tools": {"deny": ["crash"]},
                "rules": [{"name": "echo-paths", "deny":
                    "mcp.tool.name == 'echo' && has(mcp.tool.arguments.path) && !mcp.tool.arguments.path.startsWith('/srv/public/')"}]
            })),
            "fx2": fixture("fx2", json!({"backend": "shared"})),
            "fx3": fixture("fx3", json!({"toolSearch": "activate"}))
        },
        "groups": {"desk": {"members": ["fx", "fx2"], "toolSearch": {"mode": "activate", "maxActive": 2}}}
    });
    let (gw, log) = with_log(&dir, &config).await;

    let mut c = McpClient::new(&gw.url("/servers/fx"));
    c.initialize().await;
    let (_, v) = c.request(2, "tools/list", json!({})).await;
    assert_eq!(
        names(&v, "tools"),
        ["search_tools", "call_tool", "env"],
        "{v}"
    );
    assert!(v["result"]["tools"][0]["outputSchema"].is_object(), "{v}");
    assert_eq!(
        search(&c, "value of an environment variable", 1).await,
        ["env"]
    );
    // The filter's hidden tool is not found, and not reached through the call tool.
    assert!(
        !search(&c, "exit without answering", 10)
            .await
            .contains(&"crash".to_string())
    );
    let v = raw_call_tool(&c, "crash", "{}").await;
    assert!(
        v["error"].is_object() || v["result"]["isError"] == true,
        "{v}"
    );

    // The rule judges the named tool's arguments, whatever their encoding, before the child.
    for denied in [
        r#"{"path": "/etc/passwd"}"#,
        r#"{"path": "\u002fetc\u002fpasswd"}"#,
        r#"{"path": "/srv/public/a", "path": "/etc/passwd"}"#,
    ] {
        let v = raw_call_tool(&c, "echo", denied).await;
        assert_eq!(v["error"]["code"], -32602, "{denied}: {v}");
        assert!(!v.to_string().contains("passwd"), "{denied}: {v}");
    }
    assert_eq!(calls_of(&c, "echo").await, 0);
    let v = raw_call_tool(&c, "echo", r#"{"path": "\u002fsrv/public/a"}"#).await;
    assert_eq!(
        v["result"]["structuredContent"],
        json!({"path": "/srv/public/a"}),
        "{v}"
    );
    assert_eq!(calls_of(&c, "echo").await, 1);
    // A tool's own error comes back unchanged; a call without a name is the call tool's error.
    let v = raw_call_tool(&c, "env", r#"{"name": 5}"#).await;
    assert!(v["result"].is_object() || v["error"].is_object(), "{v}");
    let (_, v) = c.call(8, "call_tool", json!({"arguments": {}})).await;
    assert_eq!(v["result"]["isError"], true, "{v}");

    // The audit log names the tool the call tool called, with the rule's refusals (the
    // searches have their lines too).
    let lines = logged(&log, 9).await;
    let echoes: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("echo "))
        .collect();
    assert_eq!(
        echoes.iter().filter(|o| o.starts_with("denied")).count(),
        3,
        "{lines:?}"
    );
    assert_eq!(
        echoes.iter().filter(|o| **o == "ok").count(),
        1,
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| *l == "search_tools ok").count(),
        2,
        "{lines:?}"
    );

    // Activate mode: found tools join the session's list, at most two, the newest kept.
    let mut d = McpClient::new(&gw.url("/servers/desk"));
    d.initialize().await;
    let (_, v) = d.request(2, "tools/list", json!({})).await;
    assert_eq!(names(&v, "tools"), ["search_tools", "call_tool"]);
    assert_eq!(search(&d, "environment variable", 1).await, ["fx__env"]);
    let (_, v) = d.request(3, "tools/list", json!({})).await;
    assert_eq!(names(&v, "tools"), ["search_tools", "call_tool", "fx__env"]);
    let found = search(&d, "answer after a delay", 2).await;
    assert_eq!(found.len(), 2, "{found:?}");
    let (_, v) = d.request(4, "tools/list", json!({})).await;
    let listed = names(&v, "tools");
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(!listed.contains(&"fx__env".to_string()), "{listed:?}");
    for f in &found {
        assert!(listed.contains(f), "{f} in {listed:?}");
    }
    // An activated tool is called by its own name.
    let (_, v) = d.call(5, &found[0], json!({"ms": 1})).await;
    assert!(v["result"].is_object(), "{v}");
    // Another session of the group has its own active tools.
    let mut e = McpClient::new(&gw.url("/servers/desk"));
    e.initialize().await;
    let (_, v) = e.request(2, "tools/list", json!({})).await;
    assert_eq!(names(&v, "tools"), ["search_tools", "call_tool"]);

    // A server alone in activate mode says its tool list changes, so hosts listen.
    let alone = McpClient::new(&gw.url("/servers/fx3"));
    let r = alone
        .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}}))
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["result"]["capabilities"]["tools"]["listChanged"], true,
        "{v}"
    );

    // What an operator sees: the mode in /health, searches and index builds in /metrics.
    let health = gw.health().await;
    let desk = health["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "desk")
        .unwrap()
        .clone();
    assert_eq!(desk["tool_search"]["mode"], "activate", "{desk}");
    let metrics = gw.metrics().await;
    assert!(
        metrics
            .contains(r#"aareguru_gateway_tool_searches_total{server="desk",outcome="found"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"aareguru_gateway_tool_search_indexes_total{server="fx"} 1"#),
        "{metrics}"
    );
}

/// The search's own calls meet the limits and the audit log like any tool's, and a call
/// through the call tool is limited and recorded as the call of the tool it names.
#[tokio::test]
async fn the_search_and_the_call_tool_are_limited_and_recorded() {
    let dir = TempDir::new("search-limits");
    let config = json!({
        "gateway": {"limits": [
            {"name": "searches", "tools": ["search_tools"], "rate": "2/min"},
            {"name": "echoes", "tools": ["echo"], "rate": "1/min"}
        ]},
        "mcpServers": {"fx": fixture("fx", json!({"toolSearch": "search"}))}
    });
    let (gw, log) = with_log(&dir, &config).await;
    let mut c = McpClient::new(&gw.url("/servers/fx"));
    c.initialize().await;
    for id in 1..=2 {
        let (status, v) = c.call(id, "search_tools", json!({"query": "echo"})).await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, v) = c.call(3, "search_tools", json!({"query": "echo"})).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["data"]["limit"], "searches", "{v}");
    let (status, v) = c
        .call(
            4,
            "call_tool",
            json!({"name": "echo", "arguments": {"p": 1}}),
        )
        .await;
    assert_eq!(
        (status, &v["result"]["structuredContent"]),
        (200, &json!({"p": 1})),
        "{v}"
    );
    let (status, v) = c
        .call(
            5,
            "call_tool",
            json!({"name": "echo", "arguments": {"p": 2}}),
        )
        .await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["data"]["limit"], "echoes", "{v}");
    assert_eq!(calls_of(&c, "echo").await, 1);

    // One line per call, the call tool's under the tool it called.
    assert_eq!(
        logged(&log, 5).await,
        [
            "search_tools ok",
            "search_tools ok",
            "search_tools limited",
            "echo ok",
            "echo limited"
        ]
    );
}

/// `toolScopes` against a real authorization server: a token without a tool's scopes does not
/// find it, and `call_tool` naming it gets the HTTP layer's 403 with the scopes to step up to.
#[tokio::test]
async fn tool_scopes_hide_tools_from_the_search_and_guard_the_call_tool() {
    let auth = crate::authserver::AuthServer::start(json!({
        "clients": [{"client_id": "machine", "client_secret": "s3cret"}],
        "scopes": ["mcp:tools", "mcp:danger"]
    }))
    .await;
    let upstream =
        crate::fake_upstream::FakeUpstream::start(crate::fake_upstream::Behaviour::Normal).await;
    let dir = TempDir::new("search-scopes");
    let config = json!({"mcpServers": {"aare": {
        "command": crate::util::BIN, "args": ["--stdio"],
        "gateway": {"toolSearch": "search", "toolScopes": {"get_flow_*": ["mcp:danger"]}}
    }}});
    let path = write(&dir, &config);
    let gw = Gateway::start(
        &[
            "--config",
            &path,
            "--base-url",
            &upstream.base_url(),
            "--oauth-issuer",
            &auth.issuer,
            "--oauth-scope",
            "mcp:tools",
        ],
        &[],
    )
    .await;
    let resource = gw.url("/servers/aare/mcp");
    let narrow = auth
        .token("machine", "s3cret", &resource, "mcp:tools")
        .await;
    let wide = auth
        .token("machine", "s3cret", &resource, "mcp:tools mcp:danger")
        .await;
    let mut c = McpClient::new(&gw.url("/servers/aare"));
    c.headers
        .push(("authorization".into(), format!("Bearer {narrow}")));
    c.initialize().await;
    let found = search(&c, "flow danger level", 7).await;
    assert!(
        !found.contains(&"get_flow_danger_level".to_string()),
        "{found:?}"
    );
    assert!(
        found.contains(&"get_current_conditions".to_string()),
        "{found:?}"
    );
    let r = c
        .post(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "call_tool", "arguments": {"name": "get_flow_danger_level", "arguments": {"city": "thun"}}}}))
        .await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("mcp:danger"), "{challenge}");
    // Stepped up: found, and called through the call tool.
    c.headers[0].1 = format!("Bearer {wide}");
    let found = search(&c, "flow danger level", 7).await;
    assert_eq!(found[0], "get_flow_danger_level", "{found:?}");
    let (status, v) = c
        .call(
            4,
            "call_tool",
            json!({"name": "get_flow_danger_level", "arguments": {"city": "thun"}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["result"]["structuredContent"]["station"]["slug"], "thun",
        "{v}"
    );
}
