//! A real OAuth authorization server for the tests: `oidc-provider` (npm) run by
//! `tests/support/oidc/server.mjs` on a loopback port with its own config and keys in a temp
//! dir. The package is installed into `target/oidc/` on first use (npm reaches the registry here;
//! `.ci/run` installs it beforehand too).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::infra::TempDir;

const OIDC_PROVIDER: &str = "9.13.3";
/// The Node.js that runs it when the machine's is too old (npm's package of the official build).
const NODE: &str = "22.23.5";

/// Node.js for oidc-provider, which needs `URL.parse` (Node.js 22 by its own word; 20.18 has
/// it, Debian 12's 18 has not): the machine's `node` when it has it, else the official build
/// from npm's `node-linux-<arch>` package, installed into `target/oidc/runtime` (once).
fn node(dir: &Path) -> PathBuf {
    let new_enough = std::process::Command::new("node")
        .args([
            "-e",
            "process.exit(typeof URL.parse === 'function' ? 0 : 1)",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if new_enough {
        return PathBuf::from("node");
    }
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x64",
    };
    let runtime = dir.join("runtime");
    let binary = runtime.join(format!("node_modules/node-linux-{arch}/bin/node"));
    let current = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.stdout == format!("v{NODE}\n").as_bytes());
    if !current {
        std::fs::create_dir_all(&runtime).unwrap();
        npm_install(&runtime, &format!("node-linux-{arch}@{NODE}"));
    }
    binary
}

/// `npm install` of `package` into `prefix`, quietly; fails the test if it fails.
fn npm_install(prefix: &Path, package: &str) {
    let status = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(prefix)
        .arg(package)
        .status()
        .expect("npm (Node.js) is needed to run the OAuth tests' authorization server");
    assert!(status.success(), "npm install {package} failed");
}

/// `target/oidc`, with oidc-provider installed, and the Node.js to run it (once per test run).
fn install() -> (PathBuf, PathBuf) {
    static DIR: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/oidc");
        let installed = dir.join("node_modules/oidc-provider/package.json");
        let current = std::fs::read_to_string(&installed)
            .is_ok_and(|p| p.contains(&format!("\"version\": \"{OIDC_PROVIDER}\"")));
        if !current {
            // Node.js runs the server; the tests' headless "browser" is Python.
            if !crate::infra::on_path("npm") || !crate::infra::on_path("python3") {
                crate::infra::install_packages(&["nodejs", "npm", "python3"]);
            }
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("package.json"),
                r#"{"name":"aareguru-oidc","private":true,"type":"module"}"#,
            )
            .unwrap();
            npm_install(&dir, &format!("oidc-provider@{OIDC_PROVIDER}"));
        }
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oidc/server.mjs"),
            dir.join("server.mjs"),
        )
        .unwrap();
        let node = node(&dir);
        (dir, node)
    })
    .clone()
}

/// A running authorization server.
pub struct AuthServer {
    child: Child,
    pub issuer: String,
    pub dir: TempDir,
    config: Value,
}

impl AuthServer {
    /// Starts with `config` (see server.mjs); `clients` get the client-credentials grant.
    pub async fn start(config: Value) -> AuthServer {
        let dir = TempDir::new("oidc");
        Self::start_in(dir, config).await
    }

    async fn start_in(dir: TempDir, config: Value) -> AuthServer {
        let (home, node) = install();
        std::fs::write(dir.0.join("config.json"), config.to_string()).unwrap();
        let log = dir.0.join("server.log");
        let mut child = Command::new(node)
            .arg(home.join("server.mjs"))
            .arg(&dir.0)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("node");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("listening on ") {
                    return url.to_string();
                }
            }
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the authorization server ended before listening; it said:\n{said}");
        })
        .await
        .expect("the authorization server started");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        AuthServer {
            child,
            issuer,
            dir,
            config,
        }
    }

    /// Stops it (until [`AuthServer::restart`]).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }

    /// Stops and starts it again on the same port; with `rotate`, with new signing keys.
    pub async fn restart(mut self, rotate: bool) -> AuthServer {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
        if rotate {
            std::fs::remove_file(self.dir.0.join("keys.json")).unwrap();
        }
        let port: u16 = self.issuer.rsplit(':').next().unwrap().parse().unwrap();
        let mut config = self.config.clone();
        config["port"] = json!(port);
        let dir = std::mem::replace(&mut self.dir, TempDir(PathBuf::new()));
        Self::start_in(dir, config).await
    }

    /// A client-credentials access token for `resource` with `scope`.
    pub async fn token(&self, client: &str, secret: &str, resource: &str, scope: &str) -> String {
        let r: Value = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&client_id={client}&client_secret={secret}&resource={}&scope={}",
                urlencode(resource),
                urlencode(scope)
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {r}"))
            .to_string()
    }

    /// The issuer's private signing keys: (kid, alg, PKCS#8 PEM).
    pub fn keys(&self) -> Vec<(String, String, String)> {
        let pems: Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.0.join("pems.json")).unwrap())
                .unwrap();
        pems.as_object()
            .unwrap()
            .iter()
            .map(|(kid, v)| {
                (
                    kid.clone(),
                    v["alg"].as_str().unwrap().to_string(),
                    v["pem"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
