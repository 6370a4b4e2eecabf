//! Infrastructure operators put in front of or beside the gateway, started for real on loopback
//! ports with configs in a temp dir: `redis-server`, nginx (round-robin) and HAProxy (stick
//! tables). `.ci/run` installs them from Debian's packages; a machine without them fails these
//! tests with the command to install them, never skips them.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

/// The path of `program`, or a failure that says how to get it.
pub fn require(program: &str) -> String {
    let find = || {
        ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"]
            .iter()
            .map(|dir| format!("{dir}/{program}"))
            .find(|path| std::path::Path::new(path).exists())
    };
    if let Some(path) = find() {
        return path;
    }
    install_packages(&["redis-server", "nginx-light", "haproxy"]);
    find().unwrap_or_else(|| {
        panic!(
            "{program} is not installed and could not be installed here; the cluster tests run \
             real infrastructure: `apt-get install -y redis-server nginx-light haproxy`"
        )
    })
}

/// On a fresh Debian machine, `cargo test` installs what its tests run (the cluster tests'
/// infrastructure, Node.js for the authorization server): as root, or with `sudo -n`, as
/// `.ci/run` does. Each list is tried once per test process; a failure shows in the
/// caller's own message.
pub fn install_packages(packages: &[&str]) {
    static DONE: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());
    let mut done = DONE.lock();
    let key = packages.join(" ");
    if done.contains(&key) {
        return;
    }
    done.push(key.clone());
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let script = format!(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
         --no-install-recommends {key}"
    );
    let mut cmd = if root {
        std::process::Command::new("sh")
    } else {
        let mut c = std::process::Command::new("sudo");
        c.args(["-n", "sh"]);
        c
    };
    eprintln!("installing {key} for the tests");
    let _ = cmd.args(["-c", &script]).status();
}

/// Sends `signal` to process `pid` (no `kill` binary: a minimal Debian has none), and
/// fails the test if it could not be sent.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(
        sent,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// Whether `program` is on the PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "aareguru-it-{what}-{}-{}",
            std::process::id(),
            uuid_ish()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_ish() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// Waits until something accepts connections on `port`.
pub async fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A `redis-server` of the test's own.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl Redis {
    pub async fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: TempDir::new("redis"),
        };
        r.run().await;
        r
    }

    async fn run(&mut self) {
        let child = Command::new(require("redis-server"))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_port(self.port, "redis-server").await;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops it hard (as a crash or a network cut would look).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Starts it again on the same port (empty: nothing was saved).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.run().await;
    }

    /// One command through `redis-cli` (for assertions on the directory).
    pub async fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(require("redis-cli"))
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .await
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// A load balancer (nginx or HAProxy) in front of the gateways.
pub struct Balancer {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Balancer {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last `lines` lines of nginx's error log (HAProxy logs nowhere here), for failures.
    pub fn error_log(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self._dir.0.join("error.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// nginx, round-robin over `upstreams` (host:port), no stickiness — the case the cluster
    /// must pass on its own. The proxy settings are the ones the README recommends, among them
    /// an idle upstream connection kept 1 s (`keepalive_timeout`), less than the replicas' drain
    /// delay: nginx closes the connections a stopping replica's answers did not close before
    /// that replica closes them under a request nginx may be sending (a reset, a 502).
    pub async fn nginx(upstreams: &[String]) -> Balancer {
        Self::nginx_retrying(upstreams, "error timeout").await
    }

    /// nginx as [`Self::nginx`], retrying on another replica in the cases `next_upstream` names
    /// (`proxy_next_upstream`; the README adds `non_idempotent` for a roaming cluster, so a call
    /// in flight on a replica that dies is made again on another).
    pub async fn nginx_retrying(upstreams: &[String], next_upstream: &str) -> Balancer {
        let dir = TempDir::new("nginx");
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {u} max_fails=1 fail_timeout=5s;\n"))
            .collect();
        let d = dir.0.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             upstream gateways {{\n{servers}    keepalive 64;\n    keepalive_timeout 1s;\n  }}\n\
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://gateways;\n\
             proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n\
             proxy_buffering off;\n      proxy_read_timeout 1h;\n\
             proxy_next_upstream {next_upstream};\n    }}\n  }}\n}}\n"
        );
        let file = dir.0.join("nginx.conf");
        std::fs::write(&file, conf).unwrap();
        let child = Command::new(require("nginx"))
            .arg("-p")
            .arg(&dir.0)
            .arg("-e")
            .arg(dir.0.join("error.log"))
            .arg("-c")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        wait_port(port, "nginx").await;
        Balancer {
            port,
            child,
            _dir: dir,
        }
    }

    /// HAProxy, round-robin for new sessions and stick tables for the rest: the session id is
    /// learnt from the `Mcp-Session-Id` answer header and matched on the request header
    /// (Streamable HTTP) or the `session_id` query parameter (HTTP+SSE POSTs). The server side
    /// closes after each answer (`option http-server-close`): HAProxy keeps no idle connection a
    /// stopping replica could close under a request it reuses it for (HAProxy then closes the
    /// client's connection under that request). `maxconn` stays low enough for the descriptors
    /// it needs (two per connection) to fit a hard limit of 4096, as in a container: HAProxy
    /// does not start when they do not.
    pub async fn haproxy(upstreams: &[String]) -> Balancer {
        let dir = TempDir::new("haproxy");
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| format!("  server g{i} {u}\n"))
            .collect();
        let conf = format!(
            "global\n  maxconn 1500\n  nbthread 1\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n\
             retries 3\n  option redispatch\n  option http-server-close\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  default_backend gateways\n\
             backend gateways\n  balance roundrobin\n\
             stick-table type string len 64 size 200k expire 30m\n\
             stick on req.hdr(mcp-session-id)\n  stick on url_param(session_id)\n\
             stick store-response res.hdr(mcp-session-id)\n{servers}"
        );
        let file = dir.0.join("haproxy.cfg");
        std::fs::write(&file, conf).unwrap();
        let log = std::fs::File::create(dir.0.join("haproxy.log")).unwrap();
        let child = Command::new(require("haproxy"))
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start haproxy");
        if tokio::time::timeout(Duration::from_secs(15), wait_port(port, "haproxy"))
            .await
            .is_err()
        {
            let said = std::fs::read_to_string(dir.0.join("haproxy.log")).unwrap_or_default();
            panic!("haproxy did not start on port {port}; it said:\n{said}");
        }
        Balancer {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Balancer {
    /// SIGTERM, not SIGKILL: nginx's master then takes its workers down with it (killed hard,
    /// they would be orphaned and keep running).
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill only sends a signal to the process we started.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
}
