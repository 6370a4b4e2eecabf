//! The console's doors (`--console`), over real HTTP: without a credential only the login page
//! and its assets; a wrong, unknown or scope-less credential is refused; a good one becomes an
//! HttpOnly, SameSite=Strict cookie and nothing else; state changes need the CSRF token; a
//! cross-site request is refused; every answer carries the Content-Security-Policy.

use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Value, json};

use crate::{
    gateway_util::{Gateway, McpClient},
    infra::TempDir,
    servers::{fixture, write},
};

fn key_entry(name: &str, key: &str, scopes: &[&str]) -> Value {
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({"name": name, "sha256": sha, "scopes": scopes})
}

const CSP: &str = "default-src 'none'; script-src 'self'";

async fn get(gw: &Gateway, path: &str, cookie: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let mut r = reqwest::Client::new().get(gw.url(path));
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    let r = r.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

/// The JSON answer to `request` sent with the login's `cookie`.
async fn json_of(request: reqwest::RequestBuilder, cookie: &str) -> Value {
    let r = request.header("cookie", cookie).send().await.unwrap();
    r.json().await.unwrap()
}

async fn login(gw: &Gateway, credential: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url("/console/login"))
        .json(&json!({ "credential": credential }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn nothing_of_the_console_without_an_admin_credential() {
    let dir = TempDir::new("console");
    let config = json!({
        "gateway": {"apiKeys": [
            key_entry("ops", "k-ops-0123456789", &["admin"]),
            key_entry("ci", "k-ci-0123456789", &["mcp:tools"])
        ]},
        "mcpServers": {"fx": fixture("fx", json!({}))}
    });
    let path = write(&dir, &config);
    let audit = dir.0.join("audit.log").display().to_string();
    let gw = Gateway::start(
        &["--config", &path, "--console", "--audit-log", &audit],
        &[],
    )
    .await;

    // Without a credential: the login page and its own assets, nothing else.
    let (status, headers, body) = get(&gw, "/console/", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("id=\"login\""), "{body}");
    assert!(!body.contains("<script>"), "no inline script: {body}");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with(CSP)
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    for open in ["/console/assets/login.js", "/console/assets/console.css"] {
        assert_eq!(get(&gw, open, None).await.0, 200, "{open}");
    }
    for closed in [
        "/console/assets/app.js",
        "/console/assets/index.html",
        "/console/api/me",
        "/console/api/overview",
    ] {
        let (status, headers, body) = get(&gw, closed, None).await;
        assert_eq!(status, 401, "{closed}: {body}");
        assert!(headers.contains_key("content-security-policy"), "{closed}");
        // A made-up cookie is no better.
        let (status, _, _) = get(&gw, closed, Some("aareguru_console=bm9wZQ")).await;
        assert_eq!(status, 401, "{closed} with a wrong cookie");
    }
    assert_eq!(get(&gw, "/servers/fx/console/", None).await.0, 404);

    // Wrong credentials, a key without the console's scope, and a form post: refused, no cookie.
    for (credential, want) in [("wrong", 401), ("k-ci-0123456789", 403)] {
        let r = login(&gw, credential).await;
        assert_eq!(r.status(), want, "{credential}");
        assert!(!r.headers().contains_key("set-cookie"));
    }
    let r = reqwest::Client::new()
        .post(gw.url("/console/login"))
        .form(&[("credential", "k-ops-0123456789")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert!(!r.headers().contains_key("set-cookie"));
    // A credential too long for a cookie is refused with why, not cut short.
    let r = login(&gw, &"k".repeat(4000)).await;
    assert_eq!(r.status(), 413);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("too long to keep in a cookie")
    );
    // Without --console-client-id there is no login through an authorization server.
    let (status, _, body) = get(&gw, "/console/oauth", None).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, r#"{"oauth":null}"#));
    for path in [
        "/console/oauth/start",
        "/console/oauth/callback?code=c&state=s",
    ] {
        assert_eq!(get(&gw, path, None).await.0, 404, "{path}");
    }

    // The admin key: a cookie that holds it, HttpOnly and SameSite=Strict, and nothing in a URL.
    let r = login(&gw, "k-ops-0123456789").await;
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("k-ops-0123456789"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["subject"], "api-key:ops");
    let csrf = me["csrf"].as_str().unwrap().to_string();
    let (status, _, body) = get(&gw, "/console/", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(body.contains("assets/app.js"), "{body}");
    let (status, _, body) = get(&gw, "/console/api/overview", Some(&cookie)).await;
    assert_eq!(status, 200);
    let overview: Value = serde_json::from_str(&body).unwrap();
    assert!(
        overview["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "fx"),
        "{overview}"
    );

    // Open sessions, with what their clients said; one ended from the console is gone for
    // its client.
    let mut mcp = McpClient::new(&gw.url("/servers/fx"));
    mcp.headers
        .push(("x-api-key".into(), "k-ci-0123456789".into()));
    mcp.initialize().await;
    assert_eq!(mcp.call(1, "echo", json!({"x": 1})).await.0, 200);
    let id = mcp.session.clone().unwrap();
    let (status, _, body) = get(&gw, "/console/api/sessions", Some(&cookie)).await;
    assert_eq!(status, 200);
    let sessions: Value = serde_json::from_str(&body).unwrap();
    let ours = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{sessions}"));
    assert_eq!(ours["server"], "fx", "{ours}");
    assert_eq!(ours["transport"], "streamable-http", "{ours}");
    assert_eq!(ours["client"], "it 1", "{ours}");
    assert_eq!(ours["protocol"], "2025-06-18", "{ours}");
    assert_eq!(ours["subject"], "api-key:ci", "{ours}");
    assert_eq!(ours["requests"], 2, "{ours}");
    // The live stream: the history, then a sample a second that counts the calls made.
    let mut stream = reqwest::Client::new()
        .get(gw.url("/console/api/live"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let kind = stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    for i in 0..5 {
        assert_eq!(mcp.call(10 + i, "echo", json!({"i": i})).await.0, 200);
    }
    let (mut text, mut counted) = (String::new(), 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while counted < 5 && std::time::Instant::now() < deadline {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(3), stream.chunk())
            .await
            .expect("a sample within 3 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        counted = text
            .split("\n\n")
            .filter(|e| e.contains("event:sample"))
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data:")))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .map(|s| s["calls"].as_u64().unwrap_or(0))
            .sum();
    }
    assert!(text.starts_with("event:history"), "{text}");
    assert!(counted >= 5, "{text}");
    drop(stream);
    // The recent calls, from the audit log.
    let (status, _, body) = get(&gw, "/console/api/calls", Some(&cookie)).await;
    assert_eq!(status, 200);
    let calls: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(calls["audit"], true);
    let echoes = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "echo" && c["outcome"] == "ok" && c["subject"] == "api-key:ci")
        .count();
    assert!(echoes >= 6, "{calls}");
    let end = |token: &str| {
        reqwest::Client::new()
            .delete(gw.url(&format!("/console/api/sessions/{id}")))
            .header("cookie", &cookie)
            .header("x-csrf-token", token)
            .send()
    };
    assert_eq!(end("0000").await.unwrap().status(), 403);
    assert_eq!(mcp.call(2, "echo", json!({"x": 2})).await.0, 200);
    assert_eq!(end(&csrf).await.unwrap().status(), 200);
    assert_eq!(mcp.call(3, "echo", json!({"x": 3})).await.0, 404);
    assert_eq!(end(&csrf).await.unwrap().status(), 404);

    // A state change without the CSRF token, or from another site, is refused.
    let logout = |token: Option<&str>, origin: Option<&str>| {
        let mut r = reqwest::Client::new()
            .post(gw.url("/console/logout"))
            .header("cookie", &cookie);
        if let Some(t) = token {
            r = r.header("x-csrf-token", t);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    assert_eq!(logout(None, None).await.unwrap().status(), 403);
    assert_eq!(logout(Some("0000"), None).await.unwrap().status(), 403);
    assert_eq!(
        logout(Some(&csrf), Some("https://evil.example"))
            .await
            .unwrap()
            .status(),
        403
    );
    let r = logout(Some(&csrf), None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test]
async fn the_console_needs_a_way_to_log_in() {
    let out = std::process::Command::new(crate::util::BIN)
        .args(["--sse", "--port", "0", "--console"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--console needs a way to log in"), "{err}");
}

/// A cookie whose token cannot be checked now (its issuer unreachable) is not a wrong
/// credential: the page says the authorization server cannot be reached, once.
#[tokio::test]
async fn an_unreachable_issuer_is_said_on_the_login_page() {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gw = Gateway::start(&["--console", "--oauth-issuer", &issuer], &[]).await;
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let claims = json!({"iss": issuer, "sub": "ann", "aud": gw.url("/mcp"), "exp": 4102444800u64});
    let token = format!(
        "{}.{}.c2ln",
        part(json!({"alg": "RS256", "kid": "k"})),
        part(claims)
    );
    let cookie = format!("aareguru_console={}", URL_SAFE_NO_PAD.encode(&token));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = |path: &str| client.get(gw.url(path)).header("cookie", &cookie).send();
    let r = page("/console/").await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "./?login_error=unavailable");
    // There: the login page (which shows the reason), not another redirect.
    let r = page("/console/?login_error=unavailable").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("id=\"login\""));
    // The app's requests say why too.
    let r = page("/console/api/me").await.unwrap();
    assert_eq!(r.status(), 503);
    // A token of an issuer nobody trusts is wrong, not unanswered: the login page at once.
    let other =
        json!({"iss": "http://127.0.0.1:9", "sub": "ann", "aud": "x", "exp": 4102444800u64});
    let forged = format!("{}.{}.c2ln", part(json!({"alg": "RS256"})), part(other));
    let r = client
        .get(gw.url("/console/"))
        .header(
            "cookie",
            format!("aareguru_console={}", URL_SAFE_NO_PAD.encode(&forged)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("id=\"login\""));
}

/// With `--redis`, the replica serving the page shows every replica's sessions and ends one
/// wherever it is held; a request another replica sends is answered with the local view only
/// (no loops); a replica that does not answer is named, not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replicas_sessions_on_one_page() {
    let redis = crate::infra::Redis::start().await;
    let url = redis.url();
    let fixture = crate::gateway_util::example("fixture_server");
    let replica = |id: &'static str| {
        let (url, fixture) = (url.clone(), fixture.clone());
        async move {
            let args = [
                "--redis",
                &url,
                "--replica-id",
                id,
                "--api-key",
                "k-admin-0123456789",
                "--console",
                "--backend",
                "per-session",
                "--",
                &fixture,
            ];
            Gateway::start(&args, &[]).await
        }
    };
    let a = replica("a").await;
    let b = replica("b").await;
    crate::cluster::wait_peers(&[&a, &b], 2).await;
    let r = login(&a, "k-admin-0123456789").await;
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = r.json::<Value>().await.unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    // A session on b, seen from a.
    let mut mcp = McpClient::new(&b.base);
    mcp.headers
        .push(("x-api-key".into(), "k-admin-0123456789".into()));
    mcp.initialize().await;
    let id = mcp.session.clone().unwrap();
    let (status, _, body) = get(&a, "/console/api/sessions", Some(&cookie)).await;
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["replica"], "a");
    assert_eq!(view["unreachable"], json!([]), "{view}");
    let ours = view["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap_or_else(|| panic!("b's session listed on a: {view}"));
    assert_eq!(ours["replica"], "b", "{ours}");
    // Asked as a replica (with the cluster secret), a answers for itself only.
    let secret = redis.cli(&["GET", "aareguru-mcp:secret"]).await;
    let http = reqwest::Client::new();
    let local = json_of(
        http.get(a.url("/console/api/sessions"))
            .header("x-aareguru-cluster", &secret),
        &cookie,
    )
    .await;
    assert!(
        local["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != id.as_str()),
        "{local}"
    );
    // Ended from a, held by b: gone for its client.
    let ended = json_of(
        http.delete(a.url(&format!("/console/api/sessions/{id}")))
            .header("x-csrf-token", &csrf),
        &cookie,
    )
    .await;
    assert_eq!(ended, json!({"ended": id, "replica": "b"}));
    assert_eq!(mcp.call(2, "echo", json!({})).await.0, 404);
    // b killed: a still answers, and names b while it is still a peer.
    drop(b);
    let (status, _, body) = get(&a, "/console/api/sessions", Some(&cookie)).await;
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    let peers = a.health().await["cluster"]["peers"].clone();
    if peers
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["replica"] == "b")
    {
        let unreachable = view["unreachable"].to_string();
        assert!(unreachable.contains("b ("), "{view}");
    }
}
