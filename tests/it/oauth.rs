//! The gateway as an OAuth 2.1 resource server, against a real authorization server
//! (oidc-provider): protected-resource metadata, 401/403 challenges, every way a token can be
//! wrong, key rotation, scopes per server, API keys beside tokens, sessions bound to their
//! subject, opaque tokens by introspection — and tokens never in the logs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::{
    authserver::AuthServer,
    fake_upstream::{Behaviour, FakeUpstream},
    gateway_util::Gateway,
};

const BOTH: &str = "application/json, text/event-stream";

fn clients() -> Value {
    json!([
        {"client_id": "machine", "client_secret": "s3cret"},
        {"client_id": "other", "client_secret": "0ther"},
        {"client_id": "gateway", "client_secret": "g4teway", "auth": "client_secret_basic"},
    ])
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn initialize(gw: &Gateway, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(gw.url(path))
        .header("accept", BOTH)
        .header("content-type", "application/json")
        .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}}));
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.send().await.unwrap()
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A token signed with one of the issuer's own keys (`alg`), with these claims.
fn forge(auth: &AuthServer, alg: &str, claims: &Value) -> String {
    let (kid, _, pem) = auth.keys().into_iter().find(|(_, a, _)| a == alg).unwrap();
    let (algorithm, key) = match alg {
        "RS256" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        ),
        "ES256" => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        ),
        _ => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        ),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid);
    encode(&header, claims, &key).unwrap()
}

/// `tools/call` of `tool` in `session` at `url` with `token`.
async fn call_tool(url: &str, session: &str, token: &str, tool: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("accept", BOTH)
        .header("mcp-session-id", session)
        .header("authorization", format!("Bearer {token}"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": tool, "arguments": {}}}))
        .send()
        .await
        .unwrap()
}

async fn get_json(url: impl reqwest::IntoUrl) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Sends `message` to a bridge and waits for the answer with its id.
async fn ask(
    stdin: &mut tokio::process::ChildStdin,
    stdout: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    message: Value,
) -> Value {
    use tokio::io::AsyncWriteExt;
    stdin
        .write_all(format!("{message}\n").as_bytes())
        .await
        .unwrap();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("an answer within 30 s")
            .unwrap()
            .expect("the bridge is running");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v.get("id") == message.get("id") {
            return v;
        }
    }
}

/// `aareguru-mcp --connect URL` with OAuth flags, over piped stdio.
fn spawn_bridge(
    url: &str,
    browser: &str,
    store: &std::path::Path,
    extra: &[&str],
) -> (
    tokio::process::Child,
    tokio::process::ChildStdin,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(crate::util::BIN)
        .args(["--connect", url, "--oauth-browser", browser])
        .arg("--oauth-token-dir")
        .arg(store)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    (child, stdin, stdout)
}

fn initialize_message() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "host", "version": "1"}}})
}

fn headless_browser() -> String {
    format!(
        "python3 {}/tests/support/oidc/browser.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn tokens_are_checked_as_the_authorization_spec_says() {
    let auth = AuthServer::start(json!({"clients": clients()})).await;
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let gw = Gateway::start(
        &[
            "--oauth-issuer",
            &auth.issuer,
            "--oauth-scope",
            "mcp:tools",
            "--api-key",
            "machine-key-0123",
        ],
        &[("AAREGURU_BASE_URL", &fake.base_url())],
    )
    .await;
    let resource = gw.url("/mcp");

    // No token: 401 pointing at the metadata, which names the issuer and the resource.
    let r = initialize(&gw, "/mcp", None).await;
    assert_eq!(r.status(), 401);
    let c = challenge(&r);
    let metadata_url = gw.url("/.well-known/oauth-protected-resource/mcp");
    assert!(
        c.starts_with("Bearer ") && c.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{c}"
    );
    assert!(
        c.contains("scope=\"mcp:tools\"") && !c.contains("error="),
        "{c}"
    );
    let m: Value = get_json(&metadata_url).await;
    assert_eq!(m["resource"], resource);
    assert_eq!(m["authorization_servers"], json!([auth.issuer]));
    assert_eq!(m["scopes_supported"], json!(["mcp:tools"]));
    let root: Value = get_json(gw.url("/.well-known/oauth-protected-resource")).await;
    assert_eq!(root["resource"], resource);
    let sse_meta: Value = get_json(gw.url("/.well-known/oauth-protected-resource/sse")).await;
    assert_eq!(sse_meta["resource"], gw.url("/sse"));

    // A real token for this resource: the whole session works.
    let good = auth
        .token("machine", "s3cret", &resource, "mcp:tools")
        .await;
    let r = initialize(&gw, "/mcp", Some(&good)).await;
    assert_eq!(r.status(), 200);
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let call = |token: String, session: String| {
        let url = resource.clone();
        async move { call_tool(&url, &session, &token, "list_cities").await }
    };
    let r = call(good.clone(), session.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["result"]["structuredContent"]["count"],
        8
    );
    // HTTP+SSE with the same token (audience /mcp is this server's; /sse has its own too).
    let sse_token = auth
        .token("machine", "s3cret", &gw.url("/sse"), "mcp:tools")
        .await;
    for t in [&good, &sse_token] {
        let r = reqwest::Client::new()
            .get(gw.url("/sse"))
            .header("authorization", format!("Bearer {t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // Another subject's token on this session: refused; the owner's still works.
    let other = auth.token("other", "0ther", &resource, "mcp:tools").await;
    let r = call(other.clone(), session.clone()).await;
    assert_eq!(r.status(), 403);
    assert_eq!(call(good.clone(), session.clone()).await.status(), 200);

    // Every way a token can be wrong: 401 invalid_token, never a 500.
    let claims = |extra: Value| {
        let mut c = json!({"iss": auth.issuer, "sub": "forger", "aud": resource,
                           "exp": now() + 300, "iat": now(), "scope": "mcp:tools"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    // The forged tokens are signed with the issuer's real keys: these pass, so the refusals
    // below are for the reason each one names.
    for alg in ["RS256", "ES256", "EdDSA"] {
        let t = forge(&auth, alg, &claims(json!({})));
        assert_eq!(
            initialize(&gw, "/mcp", Some(&t)).await.status(),
            200,
            "{alg}"
        );
    }
    let rs_kid = auth
        .keys()
        .into_iter()
        .find(|(_, a, _)| a == "RS256")
        .unwrap()
        .0;
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            forge(&auth, "RS256", &claims(json!({"exp": now() - 600}))),
        ),
        (
            "not yet valid",
            forge(&auth, "RS256", &claims(json!({"nbf": now() + 600}))),
        ),
        (
            "wrong issuer",
            forge(
                &auth,
                "RS256",
                &claims(json!({"iss": "http://127.0.0.1:1"})),
            ),
        ),
        (
            "wrong audience",
            forge(
                &auth,
                "RS256",
                &claims(json!({"aud": "https://elsewhere.example/mcp"})),
            ),
        ),
        (
            "another resource's real token",
            auth.token(
                "machine",
                "s3cret",
                "https://elsewhere.example/mcp",
                "mcp:tools",
            )
            .await,
        ),
        ("no audience", {
            let mut c = claims(json!({}));
            c.as_object_mut().unwrap().remove("aud");
            forge(&auth, "RS256", &c)
        }),
        ("wrong signature", {
            let t = forge(&auth, "RS256", &claims(json!({})));
            let (head, _) = t.rsplit_once('.').unwrap();
            let other = forge(&auth, "RS256", &claims(json!({"sub": "x"})));
            format!("{head}.{}", other.rsplit_once('.').unwrap().1)
        }),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims(json!({})))
            ),
        ),
        ("HMAC with the public key", {
            let key = EncodingKey::from_secret(rs_kid.as_bytes()).unwrap();
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some(rs_kid.clone());
            encode(&h, &claims(json!({})), &key).unwrap()
        }),
        ("unknown key", {
            let t = forge(&auth, "RS256", &claims(json!({})));
            // Same signature, a kid the issuer never published.
            let (_, rest) = t.split_once('.').unwrap();
            format!(
                "{}.{rest}",
                b64(&json!({"alg": "RS256", "typ": "JWT", "kid": "no-such-key"}))
            )
        }),
        ("garbage", "not-a-token".to_string()),
    ];
    for (what, token) in &cases {
        let r = initialize(&gw, "/mcp", Some(token)).await;
        assert_eq!(r.status(), 401, "{what}");
        let c = challenge(&r);
        assert!(c.contains("error=\"invalid_token\""), "{what}: {c}");
        assert!(c.contains("resource_metadata="), "{what}: {c}");
    }

    // The scope the server needs, missing: 403 naming it.
    let admin_only = auth
        .token("machine", "s3cret", &resource, "mcp:admin")
        .await;
    let r = initialize(&gw, "/mcp", Some(&admin_only)).await;
    assert_eq!(r.status(), 403);
    let c = challenge(&r);
    assert!(
        c.contains("error=\"insufficient_scope\"") && c.contains("scope=\"mcp:tools\""),
        "{c}"
    );

    // API keys keep working beside OAuth, as a header or a bearer token.
    for (name, value) in [
        ("x-api-key", "machine-key-0123".to_string()),
        ("authorization", "Bearer machine-key-0123".to_string()),
    ] {
        let r = reqwest::Client::new()
            .post(gw.url("/mcp"))
            .header("accept", BOTH)
            .header(name, value)
            .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "k", "version": "1"}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
    }

    // Subjects are logged per session; tokens never.
    let log = gw.log_text();
    assert!(log.contains("\"subject\":\"machine\""), "subject logged");
    for t in [&good, &other, &admin_only] {
        assert!(!log.contains(t.as_str()), "a token reached the log");
    }
    for (what, token) in &cases {
        assert!(
            token.len() < 20 || !log.contains(token.as_str()),
            "{what} token in the log"
        );
    }
}

/// Tokens signed with a key the gateway has not seen yet: the issuer's keys are fetched again
/// (at most every 10 s), so a rotation at the issuer is picked up.
#[tokio::test]
async fn rotated_keys_are_fetched_again() {
    let auth = AuthServer::start(json!({"clients": clients()})).await;
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let gw = Gateway::start(
        &["--oauth-issuer", &auth.issuer],
        &[("AAREGURU_BASE_URL", &fake.base_url())],
    )
    .await;
    let resource = gw.url("/mcp");
    let before = auth
        .token("machine", "s3cret", &resource, "mcp:tools")
        .await;
    assert_eq!(initialize(&gw, "/mcp", Some(&before)).await.status(), 200);
    let auth = auth.restart(true).await;
    let after = auth
        .token("machine", "s3cret", &resource, "mcp:tools")
        .await;
    let started = std::time::Instant::now();
    loop {
        let status = initialize(&gw, "/mcp", Some(&after)).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 401);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the new key was never fetched"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The old key is gone from the issuer: its tokens are refused now.
    assert_eq!(initialize(&gw, "/mcp", Some(&before)).await.status(), 401);
}

/// An authorization server that is down is not a bad token: the gateway answers 503 with
/// Retry-After (clients keep their token and retry), counts it apart, and accepts the same
/// token once the issuer is back.
#[tokio::test]
async fn an_issuer_that_is_down_is_not_a_bad_token() {
    let mut auth = AuthServer::start(json!({"clients": clients()})).await;
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let gw = Gateway::start(
        &["--oauth-issuer", &auth.issuer],
        &[("AAREGURU_BASE_URL", &fake.base_url())],
    )
    .await;
    let token = auth
        .token("machine", "s3cret", &gw.url("/mcp"), "mcp:tools")
        .await;
    // Down before the gateway ever asked it (no metadata, no keys).
    auth.stop().await;
    let r = initialize(&gw, "/mcp", Some(&token)).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert!(r.headers().get("www-authenticate").is_none());
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"reason="oauth_issuer_unavailable""#),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"reason="oauth_invalid_token""#));
    let auth = auth.restart(false).await;
    assert_eq!(initialize(&gw, "/mcp", Some(&token)).await.status(), 200);
    // A forged token is still a bad token.
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{signed}.{flipped}{}", &sig[1..]);
    assert_eq!(initialize(&gw, "/mcp", Some(&forged)).await.status(), 401);
    drop(auth);
}

/// Opaque tokens (the issuer issues no JWTs) are introspected with the gateway's client
/// credentials; scopes per server come from the servers file.
#[tokio::test]
async fn opaque_tokens_are_introspected_and_servers_require_their_own_scopes() {
    let auth = AuthServer::start(json!({"clients": clients(), "opaque": true,
                                         "scopes": ["mcp:tools", "mcp:admin", "mcp:danger"]}))
    .await;
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let dir = crate::infra::TempDir::new("oauth-servers");
    let file = dir.0.join("servers.json");
    let bin = env!("CARGO_BIN_EXE_aareguru-mcp");
    std::fs::write(
        &file,
        json!({"mcpServers": {
            "admin": {"command": bin, "args": ["--stdio", "--base-url", fake.base_url()],
                      "gateway": {"scopes": ["mcp:admin"],
                                  "toolScopes": {"get_flow_*": ["mcp:danger"]}}}
        }})
        .to_string(),
    )
    .unwrap();
    let gw = Gateway::start(
        &[
            "--oauth-issuer",
            &auth.issuer,
            "--oauth-scope",
            "mcp:tools",
            "--oauth-client-id",
            "gateway",
            "--oauth-client-secret",
            "g4teway",
            "--config",
            file.to_str().unwrap(),
        ],
        &[("AAREGURU_BASE_URL", &fake.base_url())],
    )
    .await;
    let resource = gw.url("/mcp");
    let tools = auth
        .token("machine", "s3cret", &resource, "mcp:tools")
        .await;
    assert_eq!(tools.split('.').count(), 1, "an opaque token: {tools}");
    assert_eq!(initialize(&gw, "/mcp", Some(&tools)).await.status(), 200);
    let r = initialize(&gw, "/mcp", Some("opaque-but-unknown")).await;
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("invalid_token"));

    // The admin server needs mcp:admin too, and says so in its metadata.
    let admin_resource = gw.url("/servers/admin/mcp");
    let m: Value =
        get_json(gw.url("/.well-known/oauth-protected-resource/servers/admin/mcp")).await;
    assert_eq!(m["resource"], admin_resource);
    assert_eq!(m["scopes_supported"], json!(["mcp:tools", "mcp:admin"]));
    let narrow = auth
        .token("machine", "s3cret", &admin_resource, "mcp:tools")
        .await;
    let r = initialize(&gw, "/servers/admin/mcp", Some(&narrow)).await;
    assert_eq!(r.status(), 403);
    assert!(challenge(&r).contains("scope=\"mcp:tools mcp:admin\""));
    let wide = auth
        .token("machine", "s3cret", &admin_resource, "mcp:tools mcp:admin")
        .await;
    let r = initialize(&gw, "/servers/admin/mcp", Some(&wide)).await;
    assert_eq!(r.status(), 200);
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    // A tool with scopes of its own: its calls need them; the server's other tools do not.
    let call = |token: String, tool: &'static str| {
        let (url, session) = (admin_resource.clone(), session.clone());
        async move { call_tool(&url, &session, &token, tool).await }
    };
    assert_eq!(call(wide.clone(), "list_cities").await.status(), 200);
    let r = call(wide.clone(), "get_flow_danger_level").await;
    assert_eq!(r.status(), 403);
    assert!(
        challenge(&r).contains("scope=\"mcp:tools mcp:admin mcp:danger\""),
        "{}",
        challenge(&r)
    );
    let widest = auth
        .token(
            "machine",
            "s3cret",
            &admin_resource,
            "mcp:tools mcp:admin mcp:danger",
        )
        .await;
    assert_eq!(call(widest, "get_flow_danger_level").await.status(), 200);
    // A token for the admin server is not one for the default server (audience).
    assert_eq!(initialize(&gw, "/mcp", Some(&wide)).await.status(), 401);
}

/// The bridge as an OAuth client: a stdio host's `initialize` through `--connect` to a gateway
/// that wants OAuth waits while the bridge discovers the authorization server, registers,
/// runs the authorization code flow with PKCE through its loopback listener (the "browser"
/// answers the login pages headlessly), stores the tokens 0600, refreshes the short-lived
/// access token, and reuses what it stored after a restart without any browser.
#[tokio::test]
async fn the_bridge_authorizes_refreshes_and_remembers() {
    use std::os::unix::fs::PermissionsExt;

    use tokio::io::AsyncWriteExt;

    let auth = AuthServer::start(json!({"clients": clients(), "ttl": 4})).await;
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let gw = Gateway::start(
        &["--oauth-issuer", &auth.issuer, "--oauth-scope", "mcp:tools"],
        &[("AAREGURU_BASE_URL", &fake.base_url())],
    )
    .await;
    let tokens = crate::infra::TempDir::new("bridge-tokens");
    let store = tokens.0.join("oauth");
    let mcp_url = gw.url("/mcp");
    let start = |browser: String| spawn_bridge(&mcp_url, &browser, &store, &[]);
    let init = initialize_message();
    let call = |id: u64, city: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "get_flow_danger_level", "arguments": {"city": city}}})
    };

    let (mut child, mut stdin, mut stdout) = start(headless_browser());
    let r = ask(&mut stdin, &mut stdout, init.clone()).await;
    assert_eq!(r["result"]["serverInfo"]["name"], "aareguru-mcp", "{r}");
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();
    let r = ask(&mut stdin, &mut stdout, call(1, "bern")).await;
    assert_eq!(
        r["result"]["structuredContent"]["station"]["slug"], "bern",
        "{r}"
    );

    // Stored for the user only.
    let files: Vec<_> = std::fs::read_dir(&store).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&store), 0o700);
    assert_eq!(mode(&files[0].path()), 0o600);
    let saved = |p: &std::path::Path| -> Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let first = saved(&files[0].path())["tokens"]["access_token"].clone();
    assert!(saved(&files[0].path())["tokens"]["refresh_token"].is_string());

    // The access token lives 4 s: refreshed before it is used again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r = ask(&mut stdin, &mut stdout, call(2, "thun")).await;
    assert_eq!(
        r["result"]["structuredContent"]["station"]["slug"], "thun",
        "{r}"
    );
    let second = saved(&files[0].path())["tokens"]["access_token"].clone();
    assert_ne!(first, second, "refreshed");
    drop(stdin);
    let _ = child.wait().await;

    // A new bridge uses what is stored, refreshing the expired access token: no browser (this
    // one would fail the authorization).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_child, mut stdin, mut stdout) = start("false".into());
    let r = ask(&mut stdin, &mut stdout, init).await;
    assert_eq!(r["result"]["serverInfo"]["name"], "aareguru-mcp", "{r}");
    let third = saved(&files[0].path())["tokens"]["access_token"].clone();
    assert_ne!(second, third, "refreshed by the new bridge");

    // Nobody authorizes: the host's request fails with a JSON-RPC error saying so, in time.
    let empty = crate::infra::TempDir::new("bridge-no-tokens");
    let (_child, mut stdin, mut stdout) = spawn_bridge(
        &gw.url("/mcp"),
        "false",
        &empty.0,
        &["--oauth-timeout", "2s"],
    );
    let init = initialize_message();
    let r = ask(&mut stdin, &mut stdout, init).await;
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no authorization within"), "{r}");
}

/// The same over HTTP+SSE (the token on the stream and on every POST), and a second
/// authorization (tokens gone, registration kept) reuses the registered client.
#[tokio::test]
async fn the_bridge_authorizes_over_sse_and_reuses_its_registration() {
    use tokio::io::AsyncWriteExt;

    let auth = AuthServer::start(json!({"clients": clients()})).await;
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let gw = Gateway::start(
        &["--oauth-issuer", &auth.issuer, "--oauth-scope", "mcp:tools"],
        &[("AAREGURU_BASE_URL", &fake.base_url())],
    )
    .await;
    let dir = crate::infra::TempDir::new("bridge-sse-tokens");
    let (mut child, mut stdin, mut stdout) =
        spawn_bridge(&gw.url("/sse"), &headless_browser(), &dir.0, &[]);
    let r = ask(&mut stdin, &mut stdout, initialize_message()).await;
    assert_eq!(r["result"]["serverInfo"]["name"], "aareguru-mcp", "{r}");
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();
    let r = ask(
        &mut stdin,
        &mut stdout,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "list_cities", "arguments": {}}}),
    )
    .await;
    assert_eq!(r["result"]["structuredContent"]["count"], 8, "{r}");
    drop(stdin);
    let _ = child.wait().await;

    let file = std::fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let client_id = saved["client"]["client_id"].clone();
    assert!(client_id.is_string(), "{saved}");
    saved.as_object_mut().unwrap().remove("tokens");
    std::fs::write(&file, saved.to_string()).unwrap();
    let (_child, mut stdin, mut stdout) =
        spawn_bridge(&gw.url("/sse"), &headless_browser(), &dir.0, &[]);
    let r = ask(&mut stdin, &mut stdout, initialize_message()).await;
    assert_eq!(r["result"]["serverInfo"]["name"], "aareguru-mcp", "{r}");
    let again: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(
        again["tokens"]["access_token"].is_string(),
        "authorized again"
    );
    assert_eq!(
        again["client"]["client_id"], client_id,
        "the registration was reused"
    );
}

/// A machine with a key instead of a secret: the bridge authenticates to oidc-provider's token
/// endpoint with JWTs it signs (private_key_jwt) and gets tokens by the client-credentials
/// grant; a key the authorization server does not know gets the host a clear error.
#[tokio::test]
async fn the_bridge_authenticates_a_machine_with_its_key() {
    let auth = AuthServer::start(json!({"clients": [
        {"client_id": "keyed", "auth": "private_key_jwt"},
        {"client_id": "stranger", "auth": "private_key_jwt"},
    ]}))
    .await;
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let gw = Gateway::start(
        &["--oauth-issuer", &auth.issuer, "--oauth-scope", "mcp:tools"],
        &[("AAREGURU_BASE_URL", &fake.base_url())],
    )
    .await;
    let key = auth.dir.0.join("client-keyed.pem");
    let bridge = |id: &str, key: &std::path::Path| {
        let store = crate::infra::TempDir::new("bridge-keyed");
        let args = [
            "--oauth-client-credentials",
            "--oauth-client-id",
            id,
            "--oauth-private-key",
            key.to_str().unwrap(),
        ];
        let spawned = spawn_bridge(&gw.url("/mcp"), "false", &store.0, &args);
        (store, spawned)
    };

    let (_store, (_child, mut stdin, mut stdout)) = bridge("keyed", &key);
    let r = ask(&mut stdin, &mut stdout, initialize_message()).await;
    assert_eq!(r["result"]["serverInfo"]["name"], "aareguru-mcp", "{r}");
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "get_flow_danger_level", "arguments": {"city": "thun"}}});
    let r = ask(&mut stdin, &mut stdout, call).await;
    assert_eq!(
        r["result"]["structuredContent"]["station"]["slug"], "thun",
        "{r}"
    );

    // Another client's key: the authorization server refuses the assertion.
    let (_store, (_child, mut stdin, mut stdout)) = bridge("stranger", &key);
    let r = ask(&mut stdin, &mut stdout, initialize_message()).await;
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("refused the token request"), "{r}");

    // A file that is no key: the bridge says so and stops at once.
    let junk = auth.dir.0.join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let out = tokio::process::Command::new(crate::util::BIN)
        .args(["--connect", &gw.url("/mcp"), "--oauth-client-credentials"])
        .args(["--oauth-client-id", "keyed", "--oauth-private-key"])
        .arg(&junk)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a PEM"), "{stderr}");
}

/// A remote member behind OAuth: one gateway (the resource server, trusting oidc-provider) is
/// a remote server of another, whose servers file gives it client credentials there. The
/// second gets its own token (client credentials, kept in memory for all its sessions), alone
/// and inside a group; the caller's token is never what reaches the remote.
#[tokio::test]
async fn a_remote_member_behind_oauth_gets_the_gateways_own_token() {
    let mut all = clients();
    all.as_array_mut()
        .unwrap()
        .push(json!({"client_id": "keyed", "auth": "private_key_jwt"}));
    let auth = AuthServer::start(json!({"clients": all})).await;
    let key = auth.dir.0.join("client-keyed.pem");
    let fake = FakeUpstream::start(Behaviour::Normal).await;
    let far = Gateway::start(
        &["--oauth-issuer", &auth.issuer, "--oauth-scope", "mcp:tools"],
        &[("AAREGURU_BASE_URL", &fake.base_url())],
    )
    .await;
    let dir = crate::infra::TempDir::new("remote-oauth");
    let config = json!({
        "mcpServers": {
            "far": {"type": "http", "url": far.url("/mcp"),
                    "gateway": {"oauth": {"clientId": "machine", "clientSecret": "${MACHINE_SECRET}",
                                          "scopes": ["mcp:tools"]}}},
            "wrong": {"type": "http", "url": far.url("/mcp"),
                      "gateway": {"oauth": {"clientId": "machine", "clientSecret": "not-it"}}},
            "none": {"type": "http", "url": far.url("/mcp")},
            // A key instead of a secret (private_key_jwt), its path from the environment.
            "keyed": {"type": "http", "url": far.url("/mcp"),
                      "gateway": {"oauth": {"clientId": "keyed", "privateKey": "${KEY_FILE}",
                                            "scopes": ["mcp:tools"]}}},
        },
        "groups": {"g": {"members": ["far"]}}
    });
    let path = dir.0.join("servers.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut gw = Gateway::start(
        &["--config", path.to_str().unwrap()],
        &[
            ("MACHINE_SECRET", "s3cret"),
            ("KEY_FILE", key.to_str().unwrap()),
        ],
    )
    .await;

    let session = |base: String| async move {
        let mut c = crate::gateway_util::McpClient::new(&base);
        c.headers
            .push(("authorization".into(), "Bearer not-for-the-remote".into()));
        let status = c.try_initialize().await;
        (status, c)
    };
    for (path, tool) in [
        ("/servers/far", "list_cities"),
        ("/servers/g", "far__list_cities"),
        ("/servers/keyed", "list_cities"),
    ] {
        let (status, c) = session(gw.url(path)).await;
        assert_eq!(status, 200, "{path}");
        let (status, v) = c.call(1, tool, json!({})).await;
        assert_eq!(status, 200, "{path}: {v}");
        assert_eq!(v["result"]["structuredContent"]["count"], 8, "{path}: {v}");
    }
    // A secret the authorization server refuses, and no credentials at all (no one is there to
    // open a browser): the session is refused with the reason.
    for path in ["/servers/wrong", "/servers/none"] {
        let c = crate::gateway_util::McpClient::new(&gw.url(path));
        let r = c
            .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}}))
            .await;
        let body = r.text().await.unwrap();
        assert!(body.contains("error"), "{path}: {body}");
        if path.ends_with("none") {
            assert!(body.contains("client credentials"), "{path}: {body}");
        }
    }
    gw.stop_reading_log().await;
    let log = gw.log_text();
    assert!(!log.contains("s3cret"), "a secret was logged");
    assert!(!log.contains("PRIVATE KEY"), "a key was logged");

    // A file that is no key refuses the servers file at start, naming where.
    let junk = dir.0.join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let bad = json!({"mcpServers": {"keyed": {"type": "http", "url": far.url("/mcp"),
        "gateway": {"oauth": {"clientId": "keyed", "privateKey": junk.to_str().unwrap()}}}}});
    let bad_path = dir.0.join("bad.json");
    std::fs::write(&bad_path, bad.to_string()).unwrap();
    let err = crate::servers::refused_at_start(bad_path.to_str().unwrap()).await;
    assert!(
        err.contains("privateKey") && err.contains("mcpServers.keyed"),
        "{err}"
    );
}
