//! Federation: a group of the servers file's servers served as one endpoint, with real children
//! on each backend, the built-in server in process, and a member that never starts.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    gateway_util::{Gateway, McpClient, SseClient, example},
    infra::TempDir,
    servers::{fixture, refused_at_start, write},
    util::BIN,
};

async fn tool_names(c: &McpClient) -> Vec<String> {
    let (status, v) = c.request(3, "tools/list", json!({})).await;
    assert_eq!(status, 200, "{v}");
    v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

async fn env_of(c: &McpClient, tool: &str) -> Value {
    let (status, v) = c.call(7, tool, json!({"name": "FIXTURE_NAME"})).await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn one_endpoint_serves_every_member_and_routes_each_call_to_its_own() {
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let dir = TempDir::new("federation");
    let config = json!({
        "mcpServers": {
            "aareguru": {"command": BIN, "args": ["--stdio"], "env": {"AAREGURU_BASE_URL": upstream.base_url()}},
            "a": fixture("a", json!({})),
            "b": fixture("b", json!({"backend": "shared", "tools": {"deny": ["crash"]}})),
            "broken": {"command": "/nonexistent/mcp-server"}
        },
        "groups": {
            "all": {"members": "*", "memberTimeout": "3s"},
            "pair": {"members": ["a", "b"], "prefix": "never"},
            "needs-broken": {"members": ["a", "broken"], "required": ["broken"]}
        }
    });
    let path = write(&dir, &config);
    let gw = Gateway::start(
        &["--config", &path, "--base-url", &upstream.base_url()],
        &[],
    )
    .await;

    let mut c = McpClient::new(&gw.url("/servers/all"));
    c.initialize().await;
    let names = tool_names(&c).await;
    // Every member's tools, under its own name; the member's own filter applied first; the
    // member that never starts left out.
    for name in [
        "a__echo",
        "a__crash",
        "b__echo",
        "aareguru__get_current_temperature",
    ] {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }
    assert!(!names.contains(&"b__crash".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("broken")), "{names:?}");
    assert_eq!(names.len(), 8 + 7 + 7, "{names:?}");

    // Each call reaches its own member, under its own name there.
    let v = env_of(&c, "a__env").await;
    assert_eq!(v["result"]["structuredContent"]["value"], "a", "{v}");
    let v = env_of(&c, "b__env").await;
    assert_eq!(v["result"]["structuredContent"]["value"], "b", "{v}");
    let (status, v) = c
        .call(
            8,
            "aareguru__get_current_temperature",
            json!({"city": "bern"}),
        )
        .await;
    assert_eq!(status, 200);
    let text = v["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(text.contains("12.5 °C"), "{v}");
    // A name no member has, a method no group routes.
    let (_, v) = c.call(9, "nobody__echo", json!({})).await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let (_, v) = c.request(10, "tasks/list", json!({})).await;
    assert_eq!(v["error"]["code"], -32601, "{v}");
    let (_, v) = c.request(11, "ping", json!({})).await;
    assert_eq!(v["result"], json!({}), "{v}");
    // The built-in member's prompts and resources, through the group.
    let (_, v) = c.request(12, "prompts/list", json!({})).await;
    let prompts = v["result"]["prompts"].as_array().unwrap();
    assert!(
        prompts
            .iter()
            .all(|p| p["name"].as_str().unwrap().starts_with("aareguru__")),
        "{v}"
    );
    assert!(!prompts.is_empty());
    let (_, v) = c.request(13, "resources/list", json!({})).await;
    let uri = v["result"]["resources"][0]["uri"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    let (_, v) = c.request(14, "resources/read", json!({"uri": uri})).await;
    assert!(v["result"]["contents"].is_array(), "{v}");

    // "never": the names are the members' own; the one both have is the first member's, and
    // /health says which was left out.
    let mut p = McpClient::new(&gw.url("/servers/pair"));
    p.initialize().await;
    let names = tool_names(&p).await;
    assert_eq!(
        names.iter().filter(|n| *n == "echo").count(),
        1,
        "{names:?}"
    );
    let v = env_of(&p, "env").await;
    assert_eq!(v["result"]["structuredContent"]["value"], "a", "{v}");
    let h = gw.health().await;
    let pair = h["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "pair")
        .unwrap()
        .clone();
    assert_eq!(pair["backend"], "federated", "{pair}");
    let left_out = pair["group"]["left_out"].to_string();
    assert!(
        left_out.contains("b:") && left_out.contains("echo"),
        "{pair}"
    );
    let all = h["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "all")
        .unwrap()
        .clone();
    let states: Vec<(String, String)> = all["group"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&("broken".into(), "failed".into())),
        "{all}"
    );

    // A required member that cannot start refuses the session, saying why.
    let mut r = McpClient::new(&gw.url("/servers/needs-broken"));
    let resp = r
        .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}}))
        .await;
    let body = resp.text().await.unwrap();
    assert!(body.contains("broken") && body.contains("error"), "{body}");
    r.session = None;
}

#[tokio::test]
async fn a_member_that_dies_leaves_the_list_and_comes_back_while_the_others_answer() {
    let dir = TempDir::new("federation-down");
    let config = json!({
        "mcpServers": {"a": fixture("a", json!({})), "b": fixture("b", json!({}))},
        "groups": {"g": {"members": ["a", "b"]}}
    });
    let path = write(&dir, &config);
    let gw = Gateway::start(&["--config", &path], &[]).await;
    let mut c = SseClient::connect_at(&gw, "/servers/g/sse", &[])
        .await
        .unwrap();
    c.initialize().await;
    let tools = c.request(json!(1), "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 16);

    // Both members ask the client at the same moment, with the same ids of their own: the
    // client sees two distinct ids, and each answer goes back to the member that asked.
    for (id, tool) in [(2, "a__ask"), (3, "b__ask")] {
        let status = c
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": tool, "arguments": {}}}))
            .await;
        assert_eq!(status, 202);
    }
    let mut asked = vec![];
    while asked.len() < 2 {
        let m = c.next_message().await.expect("stream open");
        if m["method"] == "roots/list" {
            asked.push(m["id"].clone());
        }
    }
    assert_ne!(asked[0], asked[1], "{asked:?}");
    for (n, id) in asked.iter().enumerate() {
        let status = c
            .post(&json!({"jsonrpc": "2.0", "id": id, "result": {"roots": [{"uri": format!("file:///root{n}")}]}}))
            .await;
        assert_eq!(status, 202);
    }
    let mut answered = vec![];
    while answered.len() < 2 {
        let m = c.next_message().await.expect("stream open");
        if m["id"] == 2 || m["id"] == 3 {
            answered.push(m);
        }
    }
    let roots: Vec<String> = answered
        .iter()
        .map(|m| {
            m["result"]["structuredContent"]["answer"]["result"]["roots"][0]["uri"].to_string()
        })
        .collect();
    assert!(
        roots.iter().any(|r| r.contains("root0")) && roots.iter().any(|r| r.contains("root1")),
        "{answered:?}"
    );

    // Member a dies mid-session: its call fails, its tools leave with a list_changed, b answers.
    let status = c
        .post(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                      "params": {"name": "a__crash", "arguments": {}}}))
        .await;
    assert_eq!(status, 202);
    let mut saw_error = false;
    let mut saw_changed = false;
    while !(saw_error && saw_changed) {
        let m = c
            .message_within(Duration::from_secs(10))
            .await
            .expect("the crash is reported");
        saw_error |= m["id"] == 4 && m["error"].is_object();
        saw_changed |= m["method"] == "notifications/tools/list_changed";
    }
    let (r, _) = c
        .call(json!(5), "b__env", json!({"name": "FIXTURE_NAME"}))
        .await;
    assert_eq!(r["result"]["structuredContent"]["value"], "b", "{r}");
    // It is started again (after a second) and announced; its tools are back.
    let mut back = false;
    for _ in 0..20 {
        let tools = c.request(json!(6), "tools/list", json!({})).await;
        if tools["result"]["tools"].as_array().unwrap().len() == 16 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(back, "member a did not come back");
    let (r, _) = c
        .call(json!(7), "a__env", json!({"name": "FIXTURE_NAME"}))
        .await;
    assert_eq!(r["result"]["structuredContent"]["value"], "a", "{r}");

    // Per member, in /metrics: what it answered, what failed with it, whether it is up.
    let m = gw.metrics().await;
    let value = |series: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} in\n{m}"))
    };
    let label = |member: &str, outcome: &str| {
        format!(
            "aareguru_gateway_group_member_requests_total{{server=\"g\",member=\"{member}\",outcome=\"{outcome}\"}}"
        )
    };
    assert!(value(&label("a", "ok")) >= 2.0, "{m}");
    assert!(value(&label("a", "error")) >= 1.0, "{m}");
    assert!(value(&label("b", "ok")) >= 2.0, "{m}");
    assert_eq!(value(&label("b", "error")), 0.0, "{m}");
    assert_eq!(
        value("aareguru_gateway_group_member_up{server=\"g\",member=\"b\"}"),
        1.0,
        "{m}"
    );
    assert!(
        m.contains("aareguru_gateway_group_member_request_duration_seconds_count{server=\"g\",member=\"a\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn remote_servers_are_served_alone_and_as_members_with_their_own_credentials() {
    // The remote: another gateway, behind an API key, wrapping a fixture that knows its name.
    let program = example("fixture_server");
    let remote = Gateway::start(
        &[
            "--api-key",
            "k-remote-123",
            "--child-env",
            "FIXTURE_*",
            "--",
            &program,
        ],
        &[("FIXTURE_NAME", "far-away")],
    )
    .await;
    let dir = TempDir::new("federation-remote");
    let config = json!({
        "mcpServers": {
            "a": fixture("a", json!({})),
            // As Claude Code and VS Code write them; the key comes from the gateway's environment.
            "far": {"type": "http", "url": remote.url("/mcp"),
                    "headers": {"Authorization": "Bearer ${REMOTE_KEY}"}},
            "far-sse": {"type": "sse", "url": remote.url("/sse"),
                        "headers": {"X-API-Key": "${env:REMOTE_KEY}"}},
        },
        "groups": {"g": {"members": ["a", "far", "far-sse"]}}
    });
    let path = write(&dir, &config);
    let mut gw = Gateway::start(&["--config", &path], &[("REMOTE_KEY", "k-remote-123")]).await;

    // Alone, at its own path — with the caller's own Authorization header left behind.
    let mut far = McpClient::new(&gw.url("/servers/far"));
    far.headers
        .push(("authorization".into(), "Bearer the-callers-token".into()));
    far.initialize().await;
    let v = env_of(&far, "env").await;
    assert_eq!(v["result"]["structuredContent"]["value"], "far-away", "{v}");

    // As members of a group, beside a local one, over both remote transports.
    let mut c = McpClient::new(&gw.url("/servers/g"));
    c.initialize().await;
    let names = tool_names(&c).await;
    for name in ["a__echo", "far__echo", "far-sse__echo"] {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }
    for (tool, expect) in [
        ("a__env", "a"),
        ("far__env", "far-away"),
        ("far-sse__env", "far-away"),
    ] {
        let v = env_of(&c, tool).await;
        assert_eq!(
            v["result"]["structuredContent"]["value"], expect,
            "{tool}: {v}"
        );
    }
    // The 2026-07-28 revision reaches a remote server alone, and through the group.
    let m = crate::modern::Modern::at(&gw.url("/servers/far"));
    let r = m.call("env", json!({"name": "FIXTURE_NAME"})).await;
    assert_eq!(r["result"]["structuredContent"]["value"], "far-away", "{r}");
    let m = crate::modern::Modern::at(&gw.url("/servers/g"));
    let r = m
        .call("far-sse__env", json!({"name": "FIXTURE_NAME"}))
        .await;
    assert_eq!(r["result"]["structuredContent"]["value"], "far-away", "{r}");
    // A call that takes a while, through both gateways.
    let (status, v) = c.call(20, "far__slow", json!({"ms": 10})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "slept", "{v}");

    let h = gw.health().await;
    let far_status = h["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "far")
        .unwrap()
        .clone();
    assert_eq!(far_status["backend"], "remote", "{far_status}");
    gw.stop_reading_log().await;
    let log = gw.log_text();
    assert!(!log.contains("k-remote-123"), "a credential was logged");

    // A variable the environment does not have stops the gateway at startup, naming it.
    let bad = json!({"mcpServers": {"far": {"type": "http", "url": remote.url("/mcp"),
                     "headers": {"Authorization": "Bearer ${NOT_SET_ANYWHERE}"}}}});
    std::fs::write(dir.0.join("bad.json"), bad.to_string()).unwrap();
    let bad_path = dir.0.join("bad.json").display().to_string();
    let err = refused_at_start(&bad_path).await;
    assert!(
        err.contains("NOT_SET_ANYWHERE") && err.contains("mcpServers.far"),
        "{err}"
    );
}

/// The 2026-07-28 revision on a group: `server/discover` answered for the group, calls routed by
/// their group names, a member's question as an `input_required` round trip.
#[tokio::test]
async fn stateless_requests_reach_the_groups_members() {
    let dir = TempDir::new("federation-modern");
    let config = json!({
        "mcpServers": {"a": fixture("a", json!({"backend": "shared"})),
                       "b": fixture("b", json!({"backend": "shared"}))},
        "groups": {"g": {"members": ["a", "b"]}}
    });
    let path = write(&dir, &config);
    let gw = Gateway::start(&["--config", &path, "--default-server", "g"], &[]).await;
    let m = crate::modern::Modern::at(&gw.base);
    let (status, d) = m.request("server/discover", json!({})).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        d["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "g",
        "{d}"
    );
    let (_, tools) = m.request("tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{tools}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"a__echo") && names.contains(&"b__env"),
        "{names:?}"
    );
    for (tool, expect) in [("a__env", "a"), ("b__env", "b")] {
        let r = m.call(tool, json!({"name": "FIXTURE_NAME"})).await;
        assert_eq!(
            r["result"]["structuredContent"]["value"], expect,
            "{tool}: {r}"
        );
    }
    let first = m
        .call(
            "b__ask",
            json!({"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}}),
        )
        .await;
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");

    // `Mcp-Param-*` headers are checked against the member's own declaration of the tool, under
    // its group name: a matching call passes, a mismatch never reaches the member.
    let deploy = |region: &str| {
        m.build(
            json!(9),
            "tools/call",
            json!({"name": "a__deploy", "arguments": {"region": "eu-west"}}),
        )
        .header("mcp-param-region", region)
        .send()
    };
    let r = deploy("eu-west").await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"]["structuredContent"]["region"], "eu-west", "{v}");
    let r = deploy("us-east").await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32020, "{v}");
}

/// A reload that adds one member and removes another reaches the group's open sessions: they
/// are told with `list_changed`, see the new member's tools and not the old one's, and not one
/// call to the member that stayed fails meanwhile. The removed server stops although the open
/// group sessions (of the group's older generation) are still there.
#[tokio::test]
async fn a_reload_changes_the_members_of_open_sessions_and_fails_no_call_on_the_others() {
    let dir = TempDir::new("federation-reload");
    let mut config = json!({
        "mcpServers": {"stay": fixture("stay", json!({"backend": "shared"})),
                       "leave": fixture("leave", json!({}))},
        "groups": {"g": {"members": "*"}}
    });
    let path = write(&dir, &config);
    let gw = Gateway::start(&["--config", &path], &[]).await;

    let target = gw.url("/servers/g");
    let load = tokio::spawn(async move {
        tokio::process::Command::new(crate::gateway_util::example("loadgen"))
            .args(["--target", &target, "--mode", "mcp", "--child", "echo"])
            .args([
                "--tool-prefix",
                "stay__",
                "--sessions",
                "10",
                "--calls",
                "300",
            ])
            .output()
            .await
            .unwrap()
    });
    let mut sse = SseClient::connect_at(&gw, "/servers/g/sse", &[])
        .await
        .unwrap();
    sse.initialize().await;
    let tools = sse.request(json!(1), "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 16);
    let mut http = McpClient::new(&gw.url("/servers/g"));
    http.initialize().await;
    assert!(tool_names(&http).await.contains(&"leave__echo".into()));

    config["mcpServers"]["new"] = fixture("new", json!({}));
    config["mcpServers"]
        .as_object_mut()
        .unwrap()
        .remove("leave");
    write(&dir, &config);
    let mut changed = false;
    while !changed {
        let m = sse
            .message_within(Duration::from_secs(15))
            .await
            .expect("list_changed after the reload");
        changed = m["method"] == "notifications/tools/list_changed";
    }
    // The new member is there (once it is up), the removed one is not, on both open sessions.
    let mut names = vec![];
    for _ in 0..40 {
        names = tool_names(&http).await;
        if names.contains(&"new__echo".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(names.contains(&"new__echo".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("leave__")), "{names:?}");
    let v = env_of(&http, "new__env").await;
    assert_eq!(v["result"]["structuredContent"]["value"], "new", "{v}");
    let (_, v) = http.call(8, "leave__env", json!({})).await;
    assert!(v["error"].is_object(), "{v}");
    let (r, _) = sse
        .call(json!(2), "stay__env", json!({"name": "FIXTURE_NAME"}))
        .await;
    assert_eq!(r["result"]["structuredContent"]["value"], "stay", "{r}");
    let (r, _) = sse
        .call(json!(3), "new__env", json!({"name": "FIXTURE_NAME"}))
        .await;
    assert_eq!(r["result"]["structuredContent"]["value"], "new", "{r}");

    // The removed server is stopped while the group's open sessions go on.
    gw.wait_health("the removed member drained", |h| {
        h["servers"]
            .as_array()
            .is_some_and(|s| !s.iter().any(|s| s["name"] == "leave"))
    })
    .await;
    let v = env_of(&http, "stay__env").await;
    assert_eq!(v["result"]["structuredContent"]["value"], "stay", "{v}");

    let out = tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A member with `envFromHeaders` gets each group session's own header values — and only it:
/// the other members never see them. Without its required header it is left out of that
/// session, and the group serves the rest.
#[tokio::test]
async fn a_member_takes_its_own_credentials_from_each_group_sessions_headers() {
    let dir = TempDir::new("federation-env");
    let config = json!({
        "mcpServers": {
            "gh": fixture("gh", json!({"envFromHeaders": {"X-GitHub-Token": {"env": "GITHUB_TOKEN", "required": true}}})),
            "a": fixture("a", json!({})),
        },
        "groups": {"g": {"members": ["gh", "a"]}}
    });
    let path = write(&dir, &config);
    let gw = Gateway::start(&["--config", &path], &[]).await;
    let secret = |i: u32| format!("ghp_group_secret_{i}_{}", std::process::id());
    for i in 0..2 {
        let mut c = McpClient::new(&gw.url("/servers/g"));
        c.headers = vec![("x-github-token".into(), secret(i))];
        c.initialize().await;
        let (_, v) = c.call(1, "gh__env", json!({"name": "GITHUB_TOKEN"})).await;
        assert_eq!(v["result"]["structuredContent"]["value"], secret(i), "{v}");
        let (_, v) = c.call(2, "a__env", json!({"name": "GITHUB_TOKEN"})).await;
        assert_eq!(
            v["result"]["structuredContent"]["value"],
            Value::Null,
            "{v}"
        );
    }
    // Without the header: the session opens, gh is left out (saying why), a answers.
    let mut c = McpClient::new(&gw.url("/servers/g"));
    c.initialize().await;
    let names = tool_names(&c).await;
    assert!(names.contains(&"a__echo".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("gh__")), "{names:?}");
    let (_, v) = c.call(3, "gh__env", json!({"name": "GITHUB_TOKEN"})).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("x-github-token")),
        "{v}"
    );
    let v = env_of(&c, "a__env").await;
    assert_eq!(v["result"]["structuredContent"]["value"], "a", "{v}");
}

/// With `pageSize`, a group's lists come a page at a time across members; following the
/// cursors gives every item once, over sessions and over the 2026-07-28 revision alike.
#[tokio::test]
async fn a_groups_lists_are_paged_with_a_cursor_across_members() {
    let dir = TempDir::new("federation-pages");
    let config = json!({
        "mcpServers": {"a": fixture("a", json!({"backend": "shared"})),
                       "b": fixture("b", json!({"backend": "shared"}))},
        "groups": {"g": {"members": ["a", "b"], "pageSize": 5}}
    });
    let path = write(&dir, &config);
    let gw = Gateway::start(&["--config", &path, "--default-server", "g"], &[]).await;
    let mut c = McpClient::new(&gw.url("/servers/g"));
    c.initialize().await;
    let m = crate::modern::Modern::at(&gw.base);
    for modern in [false, true] {
        let mut names: Vec<String> = vec![];
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let v = if modern {
                m.request("tools/list", params).await.1
            } else {
                c.request(1, "tools/list", params).await.1
            };
            let page = v["result"]["tools"]
                .as_array()
                .unwrap_or_else(|| panic!("{v}"));
            assert!(page.len() <= 5, "{v}");
            names.extend(page.iter().map(|t| t["name"].as_str().unwrap().to_string()));
            pages += 1;
            match v["result"]["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        assert_eq!(pages, 4, "modern={modern}");
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 16, "{names:?}");
        assert_eq!(names.len(), 16, "{names:?}");
        assert!(
            names.iter().any(|n| n.starts_with("a__"))
                && names.iter().any(|n| n.starts_with("b__"))
        );
    }
    // A cursor that is not one of ours: invalid params.
    let (_, v) = c
        .request(2, "tools/list", json!({"cursor": "not-a-cursor"}))
        .await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
}

/// A member's `tools.rename` applies before the group's prefix: the group lists and calls the
/// new name, the old one is gone; the same server alone answers to the new name too.
#[tokio::test]
async fn renames_apply_before_the_groups_prefix() {
    let dir = TempDir::new("federation-rename");
    let config = json!({
        "mcpServers": {
            "a": fixture("a", json!({"tools": {"rename": {"echo": "say", "env": "variable"}, "deny": ["crash"]}})),
            "b": fixture("b", json!({})),
        },
        "groups": {"g": {"members": ["a", "b"]}}
    });
    let path = write(&dir, &config);
    let gw = Gateway::start(&["--config", &path], &[]).await;
    let mut c = McpClient::new(&gw.url("/servers/g"));
    c.initialize().await;
    let names = tool_names(&c).await;
    for (present, name) in [
        (true, "a__say"),
        (true, "a__variable"),
        (false, "a__echo"),
        (false, "a__env"),
        (false, "a__crash"),
        (true, "b__echo"),
    ] {
        assert_eq!(
            names.contains(&name.to_string()),
            present,
            "{name} in {names:?}"
        );
    }
    let (_, v) = c.call(1, "a__say", json!({"text": "hi"})).await;
    assert_eq!(v["result"]["structuredContent"]["text"], "hi", "{v}");
    let v = env_of(&c, "a__variable").await;
    assert_eq!(v["result"]["structuredContent"]["value"], "a", "{v}");
    let (_, v) = c.call(2, "a__echo", json!({})).await;
    assert!(v["error"].is_object(), "{v}");
    let mut alone = McpClient::new(&gw.url("/servers/a"));
    alone.initialize().await;
    assert!(tool_names(&alone).await.contains(&"say".to_string()));
    let (_, v) = alone.call(3, "echo", json!({})).await;
    assert!(v["error"].is_object(), "{v}");

    // Two tools renamed to one name: the file is refused, saying where.
    let bad = json!({"mcpServers": {"a": fixture("a", json!({"tools": {"rename": {"echo": "x", "env": "x"}}}))}});
    std::fs::write(dir.0.join("bad.json"), bad.to_string()).unwrap();
    let err = refused_at_start(&dir.0.join("bad.json").display().to_string()).await;
    assert!(err.contains("rename") && err.contains("\"x\""), "{err}");
}

/// A client that calls before it lists (every 2026-07-28 stateless call does) costs the group
/// one member's work: a prefixed name routes by its prefix, no member is asked for its list, and
/// the member's own filter and renames, and the group's, still refuse what they refuse.
#[tokio::test]
async fn a_prefixed_call_reaches_its_member_without_listing_every_member() {
    let dir = TempDir::new("federation-prefix-route");
    let config = json!({
        "mcpServers": {
            "a": fixture("a", json!({"tools": {"rename": {"echo": "say"}, "deny": ["crash"]}})),
            "b": fixture("b", json!({})),
        },
        "groups": {"g": {"members": ["a", "b"], "tools": {"deny": ["b__crash"]}}}
    });
    let path = write(&dir, &config);
    let gw = Gateway::start(&["--config", &path], &[]).await;
    let mut c = McpClient::new(&gw.url("/servers/g"));
    c.initialize().await;
    let (_, v) = c.call(1, "a__say", json!({"text": "hi"})).await;
    assert_eq!(v["result"]["structuredContent"]["text"], "hi", "{v}");
    // The member's own filter and renames, and the group's filter.
    for (id, denied) in [(2, "a__crash"), (3, "a__echo"), (6, "b__crash")] {
        let (_, v) = c.call(id, denied, json!({})).await;
        assert!(v["error"].is_object(), "{denied}: {v}");
    }
    let (_, v) = c.call(4, "b__stats", json!({})).await;
    assert_eq!(v["result"]["structuredContent"]["lists"], 0, "{v}");
    // A listed client sees the same names, and the next call still needs no list.
    assert!(tool_names(&c).await.contains(&"a__say".to_string()));
    let (_, v) = c.call(5, "b__stats", json!({})).await;
    assert_eq!(v["result"]["structuredContent"]["lists"], 1, "{v}");
}
