//! Who may call what: the servers file's rules in CEL against a real authorization server
//! (`oidc-provider`) whose two clients' tokens differ in a `groups` claim — each caller sees
//! and calls only what the rules allow, on Streamable HTTP, HTTP+SSE and 2026-07-28, on a
//! server alone and through a group, and a denied call never reaches the child (the fixture
//! counts the calls it got). Then rules on arguments against every encoding of a path a client
//! can send, and rules that change with the file.

use serde_json::{Value, json};

use crate::{
    authserver::AuthServer,
    gateway_util::{Gateway, McpClient, SseClient},
    infra::TempDir,
    modern::Modern,
    servers::{fixture, refused_at_start, write},
};

const AUDIENCE: &str = "http://gateway.test/mcp";
const FIXTURE_TOOLS: usize = 8;

fn rules_file(env_for_staff_only: bool) -> Value {
    let mut fx_rules = vec![json!({"name": "echo-paths", "deny":
        "mcp.tool.name == 'echo' && has(mcp.tool.arguments.path) && \
         !(mcp.tool.arguments.path.startsWith('/srv/public/') && !mcp.tool.arguments.path.contains('..'))"})];
    if env_for_staff_only {
        fx_rules.push(json!({"name": "staff-only-env",
            "deny": "mcp.tool.name == 'env' && !('staff' in jwt.groups)"}));
    }
    json!({
        "gateway": {"rules": [
            {"name": "no-crash-for-guests", "deny": "'guests' in jwt.groups && mcp.tool.name.endsWith('crash')"}
        ]},
        "mcpServers": {
            "fx": fixture("fx", json!({"rules": fx_rules})),
            "fx2": fixture("fx2", json!({"backend": "shared"}))
        },
        "groups": {"all": {"members": ["fx", "fx2"], "rules": [
            {"name": "no-fx2-for-guests", "deny": "'guests' in jwt.groups && mcp.member == 'fx2'"}
        ]}}
    })
}

fn names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("not a tool list: {list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn client(base: &str, token: &str) -> McpClient {
    let mut c = McpClient::new(base);
    c.headers
        .push(("authorization".into(), format!("Bearer {token}")));
    c
}

/// The fixture's count of the calls of `tool` it received in this session.
async fn calls_of(c: &McpClient, tool: &str) -> u64 {
    let (_, v) = c.call(90, "stats", json!({})).await;
    v["result"]["structuredContent"]["calls"][tool]
        .as_u64()
        .unwrap_or(0)
}

fn is_unknown_tool(v: &Value, name: &str) -> bool {
    v["error"]["code"] == -32602 && v["error"]["message"] == format!("Unknown tool: {name}")
}

#[tokio::test]
async fn each_caller_sees_and_calls_only_what_the_rules_allow_on_every_transport() {
    let auth = AuthServer::start(json!({"clients": [
        {"client_id": "alice", "client_secret": "a1ice", "claims": {"groups": ["staff"]}},
        {"client_id": "bob", "client_secret": "b0b", "claims": {"groups": ["guests"]}},
    ]}))
    .await;
    let dir = TempDir::new("policy");
    let path = write(&dir, &rules_file(true));
    let gw = Gateway::start(
        &[
            "--config",
            &path,
            "--oauth-issuer",
            &auth.issuer,
            "--oauth-audience",
            AUDIENCE,
        ],
        &[],
    )
    .await;
    let alice = auth.token("alice", "a1ice", AUDIENCE, "mcp:tools").await;
    let bob = auth.token("bob", "b0b", AUDIENCE, "mcp:tools").await;

    // Streamable HTTP, a server alone: the staff see every tool, guests lose `env` (the
    // server's rule) and `crash` (the gateway's).
    let mut a = client(&gw.url("/servers/fx"), &alice);
    a.initialize().await;
    let mut b = client(&gw.url("/servers/fx"), &bob);
    b.initialize().await;
    let (_, list) = a.request(2, "tools/list", json!({})).await;
    assert_eq!(names(&list).len(), FIXTURE_TOOLS, "{list}");
    let (_, list) = b.request(2, "tools/list", json!({})).await;
    let seen = names(&list);
    assert_eq!(seen.len(), FIXTURE_TOOLS - 2, "{seen:?}");
    assert!(!seen.iter().any(|n| n == "env" || n == "crash"), "{seen:?}");
    // A denied call answers as an unknown tool would, and never reaches the child.
    let (status, v) = b.call(3, "env", json!({"name": "FIXTURE_NAME"})).await;
    assert_eq!(status, 200);
    assert!(is_unknown_tool(&v, "env"), "{v}");
    let (_, v) = b.call(4, "crash", json!({})).await;
    assert!(is_unknown_tool(&v, "crash"), "{v}");
    assert_eq!(calls_of(&b, "env").await, 0);
    assert_eq!(calls_of(&b, "crash").await, 0);
    let (_, v) = a.call(3, "env", json!({"name": "FIXTURE_NAME"})).await;
    assert_eq!(v["result"]["structuredContent"]["value"], "fx", "{v}");
    assert_eq!(calls_of(&a, "env").await, 1);

    // Through the group: the gateway's and the group's rules on the group's names, the
    // member's own rules on its own names.
    let mut ga = client(&gw.url("/servers/all"), &alice);
    ga.initialize().await;
    let mut gb = client(&gw.url("/servers/all"), &bob);
    gb.initialize().await;
    let (_, list) = ga.request(2, "tools/list", json!({})).await;
    assert_eq!(names(&list).len(), 2 * FIXTURE_TOOLS, "{list}");
    let (_, list) = gb.request(2, "tools/list", json!({})).await;
    let seen = names(&list);
    assert_eq!(seen.len(), FIXTURE_TOOLS - 2, "{seen:?}");
    assert!(seen.iter().all(|n| n.starts_with("fx__")), "{seen:?}");
    assert!(!seen.contains(&"fx__env".to_string()), "{seen:?}");
    for tool in ["fx__env", "fx__crash", "fx2__echo"] {
        let (_, v) = gb.call(5, tool, json!({})).await;
        assert!(is_unknown_tool(&v, tool), "{tool}: {v}");
    }
    let (_, v) = gb.call(6, "fx__echo", json!({"x": 1})).await;
    assert_eq!(v["result"]["structuredContent"]["x"], 1, "{v}");
    let (_, v) = ga
        .call(6, "fx2__env", json!({"name": "FIXTURE_NAME"}))
        .await;
    assert_eq!(v["result"]["structuredContent"]["value"], "fx2", "{v}");
    let (_, v) = gb.call(7, "fx__stats", json!({})).await;
    let calls = &v["result"]["structuredContent"]["calls"];
    assert!(
        calls.get("env").is_none() && calls.get("crash").is_none(),
        "{v}"
    );

    // HTTP+SSE: the same, on the session's stream.
    let bearer = format!("Bearer {bob}");
    let mut s = SseClient::connect_at(&gw, "/servers/fx/sse", &[("authorization", &bearer)])
        .await
        .expect("GET /sse with a token");
    s.initialize().await;
    let list = s.request(json!(2), "tools/list", json!({})).await;
    assert_eq!(names(&list).len(), FIXTURE_TOOLS - 2, "{list}");
    let v = s
        .request(
            json!(3),
            "tools/call",
            json!({"name": "env", "arguments": {"name": "FIXTURE_NAME"}}),
        )
        .await;
    assert!(is_unknown_tool(&v, "env"), "{v}");

    // 2026-07-28, stateless: each request judged by its own token.
    let m = Modern::at(&gw.url("/servers/fx"));
    for (token, expected) in [(&alice, FIXTURE_TOOLS), (&bob, FIXTURE_TOOLS - 2)] {
        let r = m
            .build(json!(1), "tools/list", json!({}))
            .bearer_auth(token);
        let list: Value = r.send().await.unwrap().json().await.unwrap();
        assert_eq!(names(&list).len(), expected, "{list}");
    }
    let call = json!({"name": "env", "arguments": {"name": "FIXTURE_NAME"}});
    let r = m
        .build(json!(2), "tools/call", call.clone())
        .bearer_auth(&bob);
    let v: Value = r.send().await.unwrap().json().await.unwrap();
    assert!(is_unknown_tool(&v, "env"), "{v}");
    let r = m.build(json!(2), "tools/call", call).bearer_auth(&alice);
    let v: Value = r.send().await.unwrap().json().await.unwrap();
    assert_eq!(v["result"]["structuredContent"]["value"], "fx", "{v}");

    // Counted by the rule that decided.
    let metrics = gw.metrics().await;
    for rule in ["staff-only-env", "no-crash-for-guests", "no-fx2-for-guests"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("aareguru_gateway_policy_denials_total{")
                    && l.contains(&format!("rule=\"{rule}\""))),
            "{rule} not counted:\n{metrics}"
        );
    }
}

/// A raw POST of `body` (exactly these bytes) on `c`'s session; the JSON-RPC answer.
/// A request sent as written (raw bytes: escapes, duplicate keys); its JSON answer.
pub(crate) async fn raw_call(c: &McpClient, body: &str) -> Value {
    let mut r = c.http.post(&c.url);
    for (k, v) in &c.headers {
        r = r.header(k, v);
    }
    let r = r
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-06-18")
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn rules_on_arguments_hold_for_every_encoding_and_change_with_the_file() {
    let dir = TempDir::new("policy-args");
    let mut file = rules_file(true);
    file["gateway"]["denied"] = json!("error");
    let path = write(&dir, &file);
    let gw = Gateway::start(&["--config", &path], &[]).await;
    let mut c = McpClient::new(&gw.url("/servers/fx"));
    c.initialize().await;
    let call = |args: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"echo","arguments":{args}}}}}"#
        )
    };
    let allowed = [
        r#"{"path": "/srv/public/a.txt"}"#,
        r#"{"path": "\u002fsrv\u002fpublic\u002fa.txt"}"#,
        // The last of duplicate keys is the one judged, and the only one the server gets.
        r#"{"path": "/etc/passwd", "path": "/srv/public/a.txt"}"#,
    ];
    for args in allowed {
        let v = raw_call(&c, &call(args)).await;
        assert_eq!(
            v["result"]["structuredContent"],
            json!({"path": "/srv/public/a.txt"}),
            "{args}: {v}"
        );
        assert!(!v.to_string().contains("passwd"), "{args}: {v}");
    }
    let denied = [
        r#"{"path": "/etc/passwd"}"#,
        r#"{"path": "\u002fetc\u002fpasswd"}"#,
        r#"{"path": "/srv/public/../../etc/passwd"}"#,
        r#"{"path": "/srv/public/.\u002e/secret"}"#,
        r#"{"path": "/srv/public/a.txt", "path": "/etc/passwd"}"#,
        r#"{"path": "/srv/publicity/a.txt"}"#,
        r#"{"path": 5}"#,
        r#"{"path": ["/srv/public/a.txt"]}"#,
        r#"{"path": null}"#,
    ];
    for args in denied {
        let v = raw_call(&c, &call(args)).await;
        // `denied: "error"`: a clear refusal naming the rule.
        assert_eq!(v["error"]["code"], -32003, "{args}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("echo-paths")),
            "{args}: {v}"
        );
    }
    let (_, v) = c.call(9, "stats", json!({})).await;
    assert_eq!(
        v["result"]["structuredContent"]["calls"]["echo"],
        allowed.len(),
        "only the allowed calls reached the child: {v}"
    );
    // As the child received them: what was judged, whatever parser it uses.
    let raw = v["result"]["structuredContent"]["raw_calls"].to_string();
    assert!(!raw.contains("passwd") && !raw.contains("\\u002f"), "{raw}");
    // A call every parser reads alike reaches it as sent: a number beyond 64 bits keeps its
    // digits (reading it as a double and writing it again would not).
    let big = r#"{"path": "/srv/public/b.txt", "n": 123456789012345678901234567890}"#;
    let v = raw_call(&c, &call(big)).await;
    assert!(v["result"].is_object(), "{v}");
    let (_, v) = c.call(9, "stats", json!({})).await;
    let raw = v["result"]["structuredContent"]["raw_calls"].to_string();
    assert!(raw.contains("123456789012345678901234567890"), "{raw}");

    // Without a token there are no groups: `env` is denied to this caller too; a reload that
    // drops the rule lets this very session call it.
    let (_, v) = c.call(10, "env", json!({"name": "FIXTURE_NAME"})).await;
    assert_eq!(v["error"]["code"], -32003, "{v}");
    let loaded = gw.health().await["servers_file"]["loaded"].clone();
    let mut without = rules_file(false);
    without["gateway"]["denied"] = json!("error");
    write(&dir, &without);
    gw.wait_health("rules reloaded", |h| h["servers_file"]["loaded"] != loaded)
        .await;
    let (_, v) = c.call(11, "env", json!({"name": "FIXTURE_NAME"})).await;
    assert_eq!(v["result"]["structuredContent"]["value"], "fx", "{v}");

    // A rule that names an unknown variable refuses the reload, with the rule and the column;
    // the rules in force stay.
    let mut bad = rules_file(true);
    bad["mcpServers"]["fx"]["gateway"]["rules"][0] =
        json!({"name": "typo", "deny": "mcp.tool.name == 'echo' && tool.args.path == '/'"});
    write(&dir, &bad);
    let h = gw
        .wait_health("reload refused", |h| {
            !h["servers_file"]["last_error"].is_null()
        })
        .await;
    let error = h["servers_file"]["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("rule \"typo\": unknown variable \"tool\"") && error.contains("column 28"),
        "{error}"
    );
    let (_, v) = c.call(12, "env", json!({"name": "FIXTURE_NAME"})).await;
    assert_eq!(v["result"]["structuredContent"]["value"], "fx", "{v}");
    // And at startup it refuses to start, saying the same.
    let said = refused_at_start(&write(&dir, &bad)).await;
    assert!(said.contains("rule \"typo\": unknown variable"), "{said}");
}

fn key_entry(name: &str, key: &str, extra: Value) -> Value {
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut entry = json!({"name": name, "sha256": sha});
    for (k, v) in extra.as_object().unwrap() {
        entry[k] = v.clone();
    }
    entry
}

async fn list_with_key(gw: &Gateway, key: &str) -> (u16, Vec<String>) {
    let mut c = McpClient::new(&gw.url("/servers/fx"));
    c.headers.push(("x-api-key".into(), key.into()));
    let status = c.try_initialize().await;
    if status != 200 {
        return (status, vec![]);
    }
    let (_, list) = c.request(2, "tools/list", json!({})).await;
    (200, names(&list))
}

#[tokio::test]
async fn named_keys_carry_their_scopes_and_labels_to_the_rules_and_reload_live() {
    let dir = TempDir::new("policy-keys");
    let keys_path = dir.0.join("keys.json");
    let keys = |entries: Vec<Value>| {
        std::fs::write(&keys_path, json!({ "apiKeys": entries }).to_string()).unwrap();
    };
    let ci = key_entry(
        "ci",
        "k-ci-0123456789",
        json!({"labels": {"team": "infra"}, "scopes": ["mcp:slow"]}),
    );
    let ops = key_entry(
        "ops",
        "k-ops-0123456789",
        json!({"labels": {"team": "web"}}),
    );
    let old = key_entry(
        "old",
        "k-old-0123456789",
        json!({"expires": "2020-01-01T00:00:00Z"}),
    );
    keys(vec![ci.clone(), ops.clone(), old]);
    let file = json!({
        "gateway": {"rules": [
            {"name": "infra-deploys", "deny": "mcp.tool.name == 'deploy' && key.labels.team != 'infra'"},
            {"name": "slow-needs-scope", "deny": "mcp.tool.name == 'slow' && !('mcp:slow' in scopes)"}
        ]},
        "mcpServers": {"fx": fixture("fx", json!({}))}
    });
    let path = write(&dir, &file);
    let keys_arg = keys_path.display().to_string();
    let gw = Gateway::start(&["--config", &path, "--api-keys-file", &keys_arg], &[]).await;

    // A key's labels and scopes reach the rules.
    let (status, seen) = list_with_key(&gw, "k-ci-0123456789").await;
    assert_eq!(status, 200);
    assert_eq!(seen.len(), FIXTURE_TOOLS, "{seen:?}");
    let (_, seen) = list_with_key(&gw, "k-ops-0123456789").await;
    assert!(
        !seen.iter().any(|n| n == "deploy" || n == "slow"),
        "{seen:?}"
    );
    assert_eq!(seen.len(), FIXTURE_TOOLS - 2, "{seen:?}");
    // Judged by name alone (no rule reads arguments): a duplicated name is judged as the last,
    // and the server gets only that one.
    let mut c = McpClient::new(&gw.url("/servers/fx"));
    c.headers
        .push(("x-api-key".into(), "k-ops-0123456789".into()));
    c.initialize().await;
    let (_, v) = c.call(3, "deploy", json!({})).await;
    assert!(is_unknown_tool(&v, "deploy"), "{v}");
    let twice = |first: &str, last: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"{first}","name":"{last}","arguments":{{"x":1}}}}}}"#
        )
    };
    let v = raw_call(&c, &twice("echo", "deploy")).await;
    assert!(is_unknown_tool(&v, "deploy"), "{v}");
    let v = raw_call(&c, &twice("deploy", "echo")).await;
    assert_eq!(v["result"]["structuredContent"]["x"], 1, "{v}");
    let (_, v) = c.call(5, "stats", json!({})).await;
    let stats = &v["result"]["structuredContent"];
    assert_eq!(stats["calls"], json!({"echo": 1}), "{v}");
    assert!(!stats["raw_calls"].to_string().contains("deploy"), "{v}");

    // Expired and unknown keys, and none at all: 401.
    for key in ["k-old-0123456789", "k-nobody", ""] {
        assert_eq!(list_with_key(&gw, key).await.0, 401, "{key:?}");
    }
    let r = reqwest::Client::new()
        .post(gw.url("/servers/fx/mcp"))
        .header("x-api-key", "k-old-0123456789")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("expired"));

    // Revoked by a reload, on an open session too.
    let mut c = McpClient::new(&gw.url("/servers/fx"));
    c.headers
        .push(("x-api-key".into(), "k-ci-0123456789".into()));
    c.initialize().await;
    let loaded = gw.health().await["api_keys"]["loaded"].clone();
    keys(vec![ops.clone()]);
    gw.wait_health("keys reloaded", |h| h["api_keys"]["loaded"] != loaded)
        .await;
    assert_eq!(gw.health().await["api_keys"]["keys"], 1);
    let (status, _) = c.request(3, "tools/list", json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(list_with_key(&gw, "k-ops-0123456789").await.0, 200);

    // A file with a key itself in it is refused; the keys in force stay.
    keys(vec![ops, json!({"name": "oops", "key": "k-plain"})]);
    let h = gw
        .wait_health("keys file refused", |h| {
            !h["api_keys"]["last_error"].is_null()
        })
        .await;
    assert!(
        h["api_keys"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("never the key")),
        "{h}"
    );
    assert_eq!(list_with_key(&gw, "k-ops-0123456789").await.0, 200);
    // No key ever reaches the log.
    let log = gw.log_text();
    for secret in [
        "k-ci-0123456789",
        "k-ops-0123456789",
        "k-old-0123456789",
        "k-plain",
    ] {
        assert!(!log.contains(secret), "{secret} logged");
    }
}
