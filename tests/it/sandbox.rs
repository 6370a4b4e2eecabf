//! The sandbox: a hostile server behind the gateway tries what a malicious one would — read
//! the servers file, a token store and `/etc/shadow`, another child's environment, write
//! outside its directory, connect to a local port, fork 10 000 times, allocate 4 GiB, ptrace
//! the gateway — and every try fails inside the child while the gateway and the other sessions
//! keep serving; the children that hit a limit are reported with its cause.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    gateway_util::{Gateway, McpClient, example, health_server},
    infra::TempDir,
    servers::write,
};

/// What the hostile server's `attempt` said: `DONE: …` or `REFUSED: …`; `None` if it gave no
/// answer (the child died).
async fn attempt(c: &McpClient, args: Value) -> Option<String> {
    let (status, v) = c.call(1, "attempt", args).await;
    assert_eq!(status, 200, "{v}");
    v["result"]["content"][0]["text"]
        .as_str()
        .map(str::to_string)
}

async fn refused(c: &McpClient, args: Value) -> String {
    let said = attempt(c, args.clone()).await.unwrap_or_default();
    assert!(
        said.starts_with("REFUSED"),
        "{args} was not refused: {said}"
    );
    said
}

async fn session(gw: &Gateway, server: &str, token: &str) -> McpClient {
    let mut c = McpClient::new(&gw.url(&format!("/servers/{server}")));
    c.headers = vec![("x-token".into(), token.into())];
    c.initialize().await;
    c
}

async fn whoami(c: &McpClient) -> Value {
    let said = attempt(c, json!({"what": "whoami"})).await.unwrap();
    serde_json::from_str(said.strip_prefix("DONE: ").unwrap()).unwrap()
}

fn config(home: &std::path::Path) -> Value {
    let hostile = example("hostile_server");
    json!({"gateway": {"backend": "per-session"},
    "mcpServers": {
        "hostile": {"command": hostile,
            "gateway": {"envFromHeaders": {"X-Token": "TOKEN"}},
            "sandbox": {"limits": {"memory": "512MiB", "cpu": "2s", "fileSize": "1MiB"}}},
        "bomb": {"command": hostile,
            "sandbox": {"runAs": "nobody", "limits": {"processes": 64}}},
        "pooled": {"command": hostile, "gateway": {"prespawn": 2}, "sandbox": {}},
        "shared": {"command": hostile, "gateway": {"backend": "shared"},
            "sandbox": {"limits": {"cpu": "1s"}}},
        "open": {"command": hostile, "sandbox": {
            "readOnly": [home.join("data"), home.join("missing")], "readWrite": [home.join("out")],
            "network": "all"}}
    }})
}

#[tokio::test]
async fn a_hostile_server_is_refused_everything_and_the_others_keep_serving() {
    let dir = TempDir::new("sandbox");
    let home = dir.0.join("home");
    let tokens = home.join(".config/aareguru-mcp/oauth");
    std::fs::create_dir_all(&tokens).unwrap();
    std::fs::write(tokens.join("remote.json"), r#"{"access_token": "at"}"#).unwrap();
    for d in ["data", "out"] {
        std::fs::create_dir_all(home.join(d)).unwrap();
    }
    std::fs::write(home.join("data/readme"), "open to read").unwrap();
    let path = write(&dir, &config(&home));
    let gw = Gateway::start(
        &["--config", &path],
        &[
            ("HOME", home.to_str().unwrap()),
            ("AAREGURU_MCP_OAUTH_CLIENT_SECRET", "gateway-secret"),
        ],
    )
    .await;
    let gateway_pid = gw.child.id().unwrap();
    let port = gw.base.rsplit(':').next().unwrap().to_string();

    let a = session(&gw, "hostile", "token-of-a").await;
    let b = session(&gw, "hostile", "token-of-b").await;
    let (me_a, me_b) = (whoami(&a).await, whoami(&b).await);
    let tmp_a = me_a["tmpdir"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&tmp_a).is_dir());

    // Each gets its own token, not the other's, not the gateway's secrets.
    let said = attempt(&a, json!({"what": "env", "name": "TOKEN"})).await;
    assert_eq!(said.as_deref(), Some("DONE: token-of-a"));
    refused(
        &a,
        json!({"what": "env", "name": "AAREGURU_MCP_OAUTH_CLIENT_SECRET"}),
    )
    .await;
    // Files that are not its own.
    for file in [
        path.clone(),
        tokens.join("remote.json").display().to_string(),
        "/etc/shadow".into(),
    ] {
        refused(&a, json!({"what": "read", "path": file})).await;
    }
    // Other processes' environments: the gateway's, the other session's child's.
    refused(&a, json!({"what": "environ", "pid": gateway_pid})).await;
    refused(&a, json!({"what": "environ", "pid": me_b["pid"]})).await;
    refused(&b, json!({"what": "environ", "pid": me_a["pid"]})).await;
    // Writing anywhere but its own temporary directory.
    for file in ["/tmp/written-by-a-child", &format!("{}/x", home.display())] {
        refused(&a, json!({"what": "write", "path": file})).await;
    }
    assert!(!std::path::Path::new("/tmp/written-by-a-child").exists());
    let said = attempt(
        &a,
        json!({"what": "write", "path": format!("{tmp_a}/mine")}),
    )
    .await;
    assert_eq!(said.as_deref(), Some("DONE: wrote it"));
    // The network, the gateway's own port included; the gateway itself.
    refused(
        &a,
        json!({"what": "connect", "port": port.parse::<u16>().unwrap()}),
    )
    .await;
    refused(&a, json!({"what": "ptrace"})).await;
    // 4 GiB of memory.
    refused(&a, json!({"what": "alloc", "bytes": 4u64 << 30})).await;
    // A fork bomb, as another user whose processes are counted.
    let bomb = session(&gw, "bomb", "-").await;
    assert_eq!(whoami(&bomb).await["uid"], 65534);
    let said = refused(&bomb, json!({"what": "fork", "count": 10_000})).await;
    assert!(said.contains("after"), "{said}");

    // A child spawned ahead for the warm pool is walled in the same way.
    let pooled = session(&gw, "pooled", "-").await;
    assert!(whoami(&pooled).await["tmpdir"].is_string());
    refused(&pooled, json!({"what": "read", "path": "/etc/shadow"})).await;
    refused(&pooled, json!({"what": "environ", "pid": gateway_pid})).await;

    // A server given a directory and the network reaches them, and still nothing else.
    let open = session(&gw, "open", "-").await;
    let readme = home.join("data/readme").display().to_string();
    let said = attempt(&open, json!({"what": "read", "path": readme})).await;
    assert_eq!(said.as_deref(), Some("DONE: read 12 bytes"));
    let out = home.join("out/file").display().to_string();
    let said = attempt(&open, json!({"what": "write", "path": out})).await;
    assert_eq!(said.as_deref(), Some("DONE: wrote it"));
    let said = attempt(
        &open,
        json!({"what": "connect", "port": port.parse::<u16>().unwrap()}),
    )
    .await;
    assert_eq!(said.as_deref(), Some("DONE: connected"));
    refused(&open, json!({"what": "read", "path": path})).await;

    // Limits end the children that hit them, each reported with its cause.
    assert_eq!(attempt(&a, json!({"what": "spin"})).await, None);
    let c = session(&gw, "hostile", "c").await;
    assert_eq!(
        attempt(&c, json!({"what": "big_file", "bytes": 4 << 20})).await,
        None
    );
    let d = session(&gw, "hostile", "d").await;
    assert_eq!(
        attempt(&d, json!({"what": "oom", "bytes": 1u64 << 30})).await,
        None
    );
    let health = gw
        .wait_health("three limit kills", |h| {
            let k = &h["sandbox"]["limit_kills"];
            k["cpu"] == 1 && k["file_size"] == 1 && k["memory"] == 1
        })
        .await;
    assert_eq!(health["sandbox"]["seccomp"], true);
    // Each server says how it is walled in; a listed path that does not exist is pointed out.
    let server = |name: &str| health_server(&health, name).unwrap()["sandbox"].clone();
    assert_eq!(server("hostile")["network"], "none");
    assert_eq!(server("hostile")["limits"]["cpu_seconds"], 2);
    assert_eq!(server("open")["network"], "all");
    assert_eq!(server("bomb")["run_as"], "nobody");
    let notes = health["servers_file"]["notes"].to_string();
    assert!(notes.contains("missing does not exist"), "{notes}");
    let metrics = gw.metrics().await;
    for cause in ["limit_cpu", "limit_file_size", "limit_memory"] {
        assert!(
            metrics.contains(&format!("cause=\"{cause}\"")),
            "{cause} missing from /metrics"
        );
    }
    let log = gw.log_text();
    assert!(
        log.contains("child ended by its sandbox's cpu limit"),
        "{log}"
    );
    // The ended child's temporary directory is gone; the others still serve.
    let gone = async {
        while std::path::Path::new(&tmp_a).exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), gone)
        .await
        .expect("the temporary directory of an ended child was not removed");
    let said = attempt(&b, json!({"what": "env", "name": "TOKEN"})).await;
    assert_eq!(said.as_deref(), Some("DONE: token-of-b"));
    let e = session(&gw, "hostile", "e").await;
    assert!(whoami(&e).await["pid"].is_u64());

    // A shared child killed by its limit is replaced; its sessions go on with the new one.
    let s = session(&gw, "shared", "-").await;
    let first = whoami(&s).await["pid"].clone();
    assert_eq!(attempt(&s, json!({"what": "spin"})).await, None);
    gw.wait_health("two cpu kills", |h| h["sandbox"]["limit_kills"]["cpu"] == 2)
        .await;
    let again = async {
        loop {
            let s = McpClient::new(&gw.url("/servers/shared"));
            let mut s = s;
            if s.try_initialize().await == 200
                && let Some(said) = attempt(&s, json!({"what": "whoami"})).await
            {
                return said;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let said = tokio::time::timeout(Duration::from_secs(20), again)
        .await
        .expect("the shared child was not replaced");
    assert!(!said.contains(&format!("\"pid\":{first}")), "{said}");
}

#[tokio::test]
async fn sandbox_mistakes_refuse_the_start_with_the_reason() {
    let dir = TempDir::new("sandbox-bad");
    let bad = |sandbox: Value| json!({"mcpServers": {"s": {"command": "x", "sandbox": sandbox}}});
    for (sandbox, says) in [
        (json!("deno"), "not a preset"),
        (json!({"network": ["example.com:443"]}), "not by host"),
        (json!({"limits": {"memory": "lots"}}), "memory"),
    ] {
        let path = write(&dir, &bad(sandbox));
        let said = crate::servers::refused_at_start(&path).await;
        assert!(said.contains(says), "{said}");
    }
    // A sandbox on a server that runs in the gateway's own process has no child to wall in.
    let out = tokio::process::Command::new(crate::util::BIN)
        .args(["--sse", "--port", "0", "--sandbox", "node"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--backend per-session"));
}
