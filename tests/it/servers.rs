//! One gateway, many servers: a servers file in the `mcpServers` format hosts use, each server at
//! `/servers/<name>/`, tool filters, per-session credentials from headers, live reloads.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    gateway_util::{Gateway, McpClient, SseClient, example, health_server},
    infra::TempDir,
    util::BIN,
};

/// A fixture server entry that knows its own name (its `env` tool tells `FIXTURE_NAME`).
pub fn fixture(name: &str, gateway: Value) -> Value {
    json!({"command": example("fixture_server"), "args": [], "env": {"FIXTURE_NAME": name},
           "gateway": gateway})
}

/// Starts a gateway on the servers file at `path` that must refuse to start; what it said.
pub async fn refused_at_start(path: &str) -> String {
    let out = tokio::process::Command::new(BIN)
        .args(["--sse", "--port", "0", "--config", path])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn write(dir: &TempDir, config: &Value) -> String {
    let path = dir.0.join("servers.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    path.display().to_string()
}

/// Which server answered: the fixture's `FIXTURE_NAME`, over Streamable HTTP.
async fn name_over_mcp(c: &McpClient) -> String {
    let (status, v) = c.call(7, "env", json!({"name": "FIXTURE_NAME"})).await;
    assert_eq!(status, 200, "{v}");
    v["result"]["structuredContent"]["value"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn tool_names_over_mcp(c: &McpClient) -> Vec<String> {
    let (status, v) = c.request(3, "tools/list", json!({})).await;
    assert_eq!(status, 200, "{v}");
    v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn one_gateway_serves_every_server_of_a_hosts_file() {
    let upstream = FakeUpstream::start(Behaviour::Normal).await;
    let dir = TempDir::new("servers");
    // The built-in server as install.sh tells users to add it, beside fixtures and entries the
    // gateway does not serve.
    let config = json!({"mcpServers": {
        "aareguru": {"command": BIN, "args": ["--stdio"], "env": {"AAREGURU_BASE_URL": upstream.base_url()}},
        "echo-a": fixture("echo-a", json!({})),
        "echo-b": fixture("echo-b", json!({"backend": "shared", "tools": {"deny": ["crash", "big*"]}})),
        "off": {"command": "nope", "disabled": true},
        "broken": {"command": "/nonexistent/mcp-server", "args": []},
        "remote": {"type": "http", "url": "https://example.com/mcp"}
    }});
    let path = write(&dir, &config);
    let gw = Gateway::start(
        &["--config", &path, "--base-url", &upstream.base_url()],
        &[],
    )
    .await;

    let h = gw.health().await;
    let state =
        |name: &str| health_server(&h, name).map(|s| s["state"].as_str().unwrap().to_string());
    assert_eq!(state("aareguru").as_deref(), Some("serving"));
    assert_eq!(state("echo-a").as_deref(), Some("serving"));
    assert_eq!(state("echo-b").as_deref(), Some("serving"));
    assert_eq!(state("broken").as_deref(), Some("failed"));
    assert_eq!(state("off"), None);
    // A remote entry is served (at /servers/remote/); it is reached when a session opens.
    assert_eq!(state("remote").as_deref(), Some("serving"));
    assert_eq!(h["status"], "degraded");
    assert!(h["reason"].as_str().unwrap().contains("broken"), "{h}");
    let notes = h["servers_file"]["notes"].to_string();
    assert!(
        notes.contains("off: disabled") && !notes.contains("remote"),
        "{notes}"
    );

    // Each server over Streamable HTTP: the right one answers.
    for name in ["echo-a", "echo-b"] {
        let mut c = McpClient::new(&gw.url(&format!("/servers/{name}")));
        c.initialize().await;
        assert_eq!(name_over_mcp(&c).await, name);
    }
    let mut own = McpClient::new(&gw.url("/servers/aareguru"));
    own.initialize().await;
    assert_eq!(tool_names_over_mcp(&own).await.len(), 7);
    let (status, v) = own
        .call(1, "get_current_temperature", json!({"city": "bern"}))
        .await;
    assert_eq!(status, 200);
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("12.5 °C")
    );
    let h = gw.health().await;
    let own_entry = h["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "aareguru")
        .unwrap();
    assert_eq!(
        own_entry["backend"], "in-process",
        "the built-in entry runs in process"
    );

    // The tool filter: not listed, not callable, on the shared backend.
    let mut b = McpClient::new(&gw.url("/servers/echo-b"));
    b.initialize().await;
    let names = tool_names_over_mcp(&b).await;
    assert!(names.contains(&"echo".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n == "crash" || n == "big"),
        "{names:?}"
    );
    let (status, v) = b.call(5, "crash", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"crash\""),
        "{v}"
    );
    assert_eq!(
        name_over_mcp(&b).await,
        "echo-b",
        "the child did not die: the call never reached it"
    );

    // And over HTTP+SSE, on every server; the endpoint is under the server's path.
    for name in ["echo-a", "echo-b"] {
        let mut s = SseClient::connect_at(&gw, &format!("/servers/{name}/sse"), &[])
            .await
            .unwrap();
        assert!(
            s.endpoint
                .contains(&format!("/servers/{name}/messages?session_id="))
        );
        s.initialize().await;
        let (r, _) = s
            .call(json!(2), "env", json!({"name": "FIXTURE_NAME"}))
            .await;
        assert_eq!(r["result"]["structuredContent"]["value"], name);
        if name == "echo-b" {
            let listed = s.request(json!(3), "tools/list", json!({})).await;
            let tools = listed["result"]["tools"].as_array().unwrap();
            assert!(!tools.iter().any(|t| t["name"] == "crash"));
            let denied = s
                .request(
                    json!(4),
                    "tools/call",
                    json!({"name": "big", "arguments": {}}),
                )
                .await;
            assert!(
                denied["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("\"big\"")
            );
        }
    }

    // A session is only found at its own server's path.
    let mut a = McpClient::new(&gw.url("/servers/echo-a"));
    a.initialize().await;
    let mut elsewhere = McpClient::new(&gw.url("/servers/echo-b"));
    elsewhere.session = a.session.clone();
    assert_eq!(elsewhere.call(1, "echo", json!({})).await.0, 404);

    // Servers that are not served say so.
    let mut broken = McpClient::new(&gw.url("/servers/broken"));
    assert_eq!(broken.try_initialize().await, 503);
    let mut unknown = McpClient::new(&gw.url("/servers/nope"));
    assert_eq!(unknown.try_initialize().await, 404);
    let err = SseClient::connect_at(&gw, "/servers/off/sse", &[])
        .await
        .err()
        .unwrap();
    assert_eq!(err.0, 404);
    assert!(err.1.contains("echo-a"), "lists what is served: {}", err.1);

    // Plain /mcp is the command line's server (the built-in one here).
    let mut plain = McpClient::new(&gw.base);
    plain.initialize().await;
    assert_eq!(tool_names_over_mcp(&plain).await.len(), 7);
}

#[tokio::test]
async fn the_default_server_can_be_one_of_the_file() {
    let dir = TempDir::new("servers-default");
    let path = write(
        &dir,
        &json!({"mcpServers": {"echo": fixture("echo", json!({}))}}),
    );
    let gw = Gateway::start(&["--config", &path, "--default-server", "echo"], &[]).await;
    let mut plain = McpClient::new(&gw.base);
    plain.initialize().await;
    assert_eq!(name_over_mcp(&plain).await, "echo");
    let mut s = SseClient::connect(&gw).await;
    s.initialize().await;
    let (r, _) = s
        .call(json!(2), "env", json!({"name": "FIXTURE_NAME"}))
        .await;
    assert_eq!(r["result"]["structuredContent"]["value"], "echo");
    // A bad --default-server is refused at startup.
    let out = tokio::process::Command::new(BIN)
        .args([
            "--sse",
            "--port",
            "0",
            "--config",
            &path,
            "--default-server",
            "nope",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nope\""));
}

#[tokio::test]
async fn each_session_gets_its_own_credentials_from_its_headers() {
    let dir = TempDir::new("servers-env");
    let config = json!({"mcpServers": {
        "gh": fixture("gh", json!({"envFromHeaders": {
            "X-GitHub-Token": "GITHUB_TOKEN",
            "X-Org": {"env": "ORG", "required": true}}}))
    }});
    let path = write(&dir, &config);
    let gw = Gateway::start(&["--config", &path, "--log-level", "debug"], &[]).await;
    let secret = |i: u32| format!("ghp_secret_value_{i}_{}", std::process::id());
    let mut clients = vec![];
    for i in 0..2 {
        let mut c = McpClient::new(&gw.url("/servers/gh"));
        c.headers = vec![
            ("x-github-token".into(), secret(i)),
            ("x-org".into(), format!("org{i}")),
        ];
        c.initialize().await;
        clients.push(c);
    }
    for (i, c) in clients.iter().enumerate() {
        let (_, v) = c.call(1, "env", json!({"name": "GITHUB_TOKEN"})).await;
        assert_eq!(v["result"]["structuredContent"]["value"], secret(i as u32));
        let (_, v) = c.call(2, "env", json!({"name": "ORG"})).await;
        assert_eq!(v["result"]["structuredContent"]["value"], format!("org{i}"));
    }
    // Over HTTP+SSE too; a missing optional header leaves the variable unset.
    let mut s = SseClient::connect_at(&gw, "/servers/gh/sse", &[("x-org", "o")])
        .await
        .unwrap();
    s.initialize().await;
    let (r, _) = s
        .call(json!(3), "env", json!({"name": "GITHUB_TOKEN"}))
        .await;
    assert_eq!(r["result"]["structuredContent"]["value"], Value::Null);
    // A missing required header: 400, on both transports.
    let mut none = McpClient::new(&gw.url("/servers/gh"));
    assert_eq!(none.try_initialize().await, 400);
    let err = SseClient::connect_at(&gw, "/servers/gh/sse", &[])
        .await
        .err()
        .unwrap();
    assert_eq!(err.0, 400);
    assert!(err.1.contains("x-org"), "{}", err.1);
    // The values never reach the log, even at debug level.
    let log = gw.log_text();
    for i in 0..2 {
        assert!(!log.contains(&secret(i)), "a token was logged");
    }
}

#[tokio::test]
async fn env_from_headers_needs_a_child_per_session() {
    let dir = TempDir::new("servers-env-shared");
    let config = json!({"mcpServers": {
        "gh": fixture("gh", json!({"backend": "shared", "envFromHeaders": {"X-T": "T"}}))
    }});
    let path = write(&dir, &config);
    let err = refused_at_start(&path).await;
    assert!(
        err.contains("per-session") && err.contains("mcpServers.gh"),
        "{err}"
    );
}

#[tokio::test]
async fn a_reload_adds_removes_and_changes_servers_without_touching_the_others() {
    let dir = TempDir::new("servers-reload");
    let mut config = json!({"mcpServers": {
        "stay": fixture("stay", json!({})),
        "leave": fixture("leave", json!({})),
        "change": fixture("change", json!({}))
    }});
    let path = write(&dir, &config);
    let gw = Gateway::start(&["--config", &path], &[]).await;

    // Load on the server that stays, all through the reloads.
    let target = gw.url("/servers/stay");
    let load = tokio::spawn(async move {
        tokio::process::Command::new(example("loadgen"))
            .args(["--target", &target, "--mode", "mcp", "--child", "echo"])
            .args(["--sessions", "20", "--calls", "400"])
            .output()
            .await
            .unwrap()
    });
    let mut on_leave = McpClient::new(&gw.url("/servers/leave"));
    on_leave.initialize().await;
    let mut on_change = McpClient::new(&gw.url("/servers/change"));
    on_change.initialize().await;
    assert_eq!(name_over_mcp(&on_change).await, "change");

    // Add one, remove one, change one; the file is watched.
    config["mcpServers"]["new"] = fixture("new", json!({}));
    config["mcpServers"]
        .as_object_mut()
        .unwrap()
        .remove("leave");
    config["mcpServers"]["change"]["env"]["FIXTURE_NAME"] = json!("change-v2");
    write(&dir, &config);
    gw.wait_health("reloaded", |h| {
        h["servers"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "new"))
    })
    .await;
    let mut on_new = McpClient::new(&gw.url("/servers/new"));
    on_new.initialize().await;
    assert_eq!(name_over_mcp(&on_new).await, "new");
    // The removed server takes no new session, but its open one finishes.
    let mut late = McpClient::new(&gw.url("/servers/leave"));
    assert_eq!(late.try_initialize().await, 404);
    assert_eq!(name_over_mcp(&on_leave).await, "leave");
    // The changed one: open sessions on the old settings, new ones on the new.
    assert_eq!(name_over_mcp(&on_change).await, "change");
    let mut fresh = McpClient::new(&gw.url("/servers/change"));
    fresh.initialize().await;
    assert_eq!(name_over_mcp(&fresh).await, "change-v2");
    let h = gw.health().await;
    let draining = h["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "draining")
        .count();
    assert_eq!(draining, 2, "{h}");

    // A file with an error changes nothing.
    std::fs::write(dir.0.join("servers.json"), b"{\"mcpServers\": {\"x\": {}}}").unwrap();
    let h = gw
        .wait_health("refused", |h| !h["servers_file"]["last_error"].is_null())
        .await;
    assert!(
        h["servers_file"]["last_error"]
            .as_str()
            .unwrap()
            .contains("command"),
        "{h}"
    );
    assert_eq!(name_over_mcp(&on_new).await, "new");

    // The drained generations end when their last session does.
    let del = |c: &McpClient| {
        c.http
            .delete(&c.url)
            .header("mcp-session-id", c.session.clone().unwrap())
            .send()
    };
    assert_eq!(del(&on_leave).await.unwrap().status(), 200);
    assert_eq!(del(&on_change).await.unwrap().status(), 200);
    gw.wait_health("drained", |h| {
        h["servers"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["state"] != "draining"))
    })
    .await;

    // Not one failed call on the server that stayed.
    let out = tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .unwrap()
        .unwrap();
    let row = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    assert!(
        out.status.success(),
        "{row}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SIGHUP reloads too (here: the good file back).
    write(&dir, &config);
    let started = Instant::now();
    // SAFETY: kill only signals our own child.
    unsafe {
        libc::kill(gw.child.id().unwrap() as libc::pid_t, libc::SIGHUP);
    }
    gw.wait_health("reloaded after SIGHUP", |h| {
        h["servers_file"]["last_error"].is_null()
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
}
