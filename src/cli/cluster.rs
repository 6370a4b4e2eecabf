//! The flags of a gateway replica (`--sse --redis URL`) and their checks.

use std::net::SocketAddr;

use anyhow::bail;

use crate::config::ClusterConfig;

/// Cluster flags: several gateway replicas behind one load balancer, sharing a Redis.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Cluster (--sse --redis URL)")]
pub struct ClusterArgs {
    /// Join the cluster of gateways that share this Redis (e.g. redis://127.0.0.1:6379/0): any
    /// replica then takes any request, forwarding it to the replica holding the session, and
    /// sessions of the built-in server in process roam between replicas.
    #[arg(long = "redis", env = "AAREGURU_MCP_REDIS", value_name = "URL")]
    pub redis: Option<String>,

    /// The address the other replicas use to reach this one (default: the bound address;
    /// required when binding 0.0.0.0 or ::), e.g. http://10.0.0.5:8000. `auto`: this machine's
    /// address on the route to Redis, with --port (for replicas that cannot be told their own
    /// address, such as a compose service's).
    #[arg(long, env = "AAREGURU_MCP_ADVERTISE_URL", value_name = "URL")]
    pub advertise_url: Option<String>,

    /// This replica's name in the cluster (default: host:port of the advertise URL). A replica
    /// restarted with the same id is recognised as a new life of it.
    #[arg(long, env = "AAREGURU_MCP_REPLICA_ID", value_name = "ID")]
    pub replica_id: Option<String>,

    /// Prefix of the keys this cluster keeps in Redis (several clusters can share one Redis).
    #[arg(
        long,
        env = "AAREGURU_MCP_REDIS_PREFIX",
        default_value = "aareguru-mcp"
    )]
    pub redis_prefix: String,

    /// Secret the replicas present to each other when forwarding (default: one generated and
    /// kept in Redis, so every replica of the cluster shares it).
    #[arg(long, env = "AAREGURU_MCP_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// The cluster secret read from this file (a mounted container or Kubernetes secret), in
    /// place of --cluster-secret; surrounding whitespace is ignored.
    #[arg(
        long,
        env = "AAREGURU_MCP_CLUSTER_SECRET_FILE",
        value_name = "FILE",
        conflicts_with = "cluster_secret"
    )]
    pub cluster_secret_file: Option<std::path::PathBuf>,
}

pub(super) fn cluster_config(
    mut a: ClusterArgs,
    bind: SocketAddr,
) -> anyhow::Result<Option<ClusterConfig>> {
    if let Some(path) = a.cluster_secret_file.take() {
        let secret = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("--cluster-secret-file {}: {e}", path.display()))?;
        a.cluster_secret = Some(secret);
    }
    let Some(url) = a.redis.map(|u| u.trim().to_string()) else {
        if a.advertise_url.is_some() || a.replica_id.is_some() || a.cluster_secret.is_some() {
            bail!("--advertise-url, --replica-id and --cluster-secret(-file) need --redis URL");
        }
        return Ok(None);
    };
    if !["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        bail!("--redis must be a redis:// (or rediss://, redis+unix://) URL, got {url:?}");
    }
    let advertise_url = match a
        .advertise_url
        .map(|u| u.trim().trim_end_matches('/').to_string())
    {
        Some(u) if u == "auto" => Some(auto_advertise(&url, bind.port())?),
        Some(u) => {
            check_advertise(&u)?;
            Some(u)
        }
        None if bind.ip().is_unspecified() => bail!(
            "--host {} cannot be reached by the other replicas; set --advertise-url to this replica's address (e.g. http://10.0.0.5:{})",
            bind.ip(),
            bind.port()
        ),
        None => None,
    };
    let replica_id = a.replica_id.map(|r| r.trim().to_string());
    if replica_id
        .as_ref()
        .is_some_and(|r| r.is_empty() || !r.bytes().all(|b| b.is_ascii_graphic()))
    {
        bail!("--replica-id must be visible ASCII without spaces");
    }
    if a.cluster_secret
        .as_ref()
        .is_some_and(|s| s.trim().len() < 16)
    {
        bail!("--cluster-secret (or its file) must be at least 16 characters");
    }
    Ok(Some(ClusterConfig {
        redis_url: url,
        prefix: a.redis_prefix.trim().to_string(),
        advertise_url,
        replica_id,
        secret: a.cluster_secret.map(|s| s.trim().to_string()),
    }))
}

/// `--advertise-url auto`: the local address this machine uses to reach Redis (a connected UDP
/// socket sends nothing; it only asks the kernel for the route), with the listening port.
/// Redis's name is looked up for up to 10 s, since a container may start before its DNS entry.
fn auto_advertise(redis_url: &str, port: u16) -> anyhow::Result<String> {
    if port == 0 {
        bail!("--advertise-url auto needs a fixed --port, not 0");
    }
    let Some(rest) = redis_url
        .strip_prefix("redis://")
        .or_else(|| redis_url.strip_prefix("rediss://"))
    else {
        bail!("--advertise-url auto needs a redis:// or rediss:// URL (over TCP)");
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let target = if hostport.ends_with(']') || !hostport.contains(':') {
        format!("{hostport}:6379")
    } else {
        hostport.to_string()
    };
    let mut last = String::new();
    for _ in 0..20 {
        match route_to(&target) {
            Ok(ip) => {
                let host = match ip {
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                    std::net::IpAddr::V4(v4) => v4.to_string(),
                };
                return Ok(format!("http://{host}:{port}"));
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    bail!("--advertise-url auto: no route to Redis at {target}: {last}")
}

fn route_to(target: &str) -> std::io::Result<std::net::IpAddr> {
    use std::net::{ToSocketAddrs, UdpSocket};
    let addr = target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("the name has no address"))?;
    let socket = if addr.is_ipv4() {
        UdpSocket::bind("0.0.0.0:0")?
    } else {
        UdpSocket::bind("[::]:0")?
    };
    socket.connect(addr)?;
    Ok(socket.local_addr()?.ip())
}

/// An advertise URL is an absolute http(s) URL whose host other machines can reach.
pub fn check_advertise(url: &str) -> anyhow::Result<()> {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        bail!("--advertise-url must be an http:// or https:// URL, got {url:?}");
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_matches(|c| c == '[' || c == ']');
    if name.is_empty() || name == "0.0.0.0" || name == "::" {
        bail!("--advertise-url {url:?} names no address other replicas can reach");
    }
    if name.contains('$') {
        bail!(
            "--advertise-url {url:?} holds a variable nobody expanded (a runtime that does not \
             expand $(NAME) in the environment as Kubernetes does?)"
        );
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
    {
        bail!("--advertise-url {url:?}: {name:?} is not a host name or an IP address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::{cli::Cli, config::Mode};

    fn cluster(args: &[&str]) -> Result<Option<crate::config::ClusterConfig>, String> {
        let mut all = vec!["aareguru-mcp", "--sse"];
        all.extend_from_slice(args);
        let cfg = Cli::try_parse_from(all)
            .map_err(|e| e.to_string())?
            .into_config()
            .map_err(|e| e.to_string())?;
        match cfg.mode {
            Mode::Sse(g) => Ok(g.cluster),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_replica_needs_an_address_the_others_can_reach() {
        assert!(cluster(&[]).unwrap().is_none());
        let c = cluster(&["--redis", "redis://127.0.0.1:6379/0"])
            .unwrap()
            .unwrap();
        assert_eq!(c.advertise_url, None, "the bound loopback address will do");
        assert_eq!(c.prefix, "aareguru-mcp");
        let err = cluster(&["--redis", "redis://r/0", "--host", "0.0.0.0"]).unwrap_err();
        assert!(err.contains("--advertise-url"), "{err}");
        let c = cluster(&[
            "--redis",
            "redis://r/0",
            "--host",
            "0.0.0.0",
            "--advertise-url",
            "http://10.0.0.5:8000/",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.advertise_url.as_deref(), Some("http://10.0.0.5:8000"));
        for bad in [
            "http://0.0.0.0:8000",
            "http://[::]:8000",
            "10.0.0.5:8000",
            "http://:8000",
            "http://$(POD_IP):8000",
            "http://pod ip:8000",
        ] {
            let err = cluster(&["--redis", "redis://r/0", "--advertise-url", bad]).unwrap_err();
            assert!(err.contains("advertise"), "{bad}: {err}");
        }
    }

    #[test]
    fn cluster_flags_are_checked() {
        assert!(
            cluster(&["--redis", "http://r:6379"])
                .unwrap_err()
                .contains("redis://")
        );
        let err = cluster(&["--advertise-url", "http://10.0.0.5:8000"]).unwrap_err();
        assert!(err.contains("need --redis"), "{err}");
        let err = cluster(&["--redis", "redis://r/0", "--cluster-secret", "short"]).unwrap_err();
        assert!(err.contains("16"), "{err}");
        let err = cluster(&["--redis", "redis://r/0", "--replica-id", "a b"]).unwrap_err();
        assert!(err.contains("replica-id"), "{err}");
        let c = cluster(&[
            "--redis",
            "rediss://r:6380/1",
            "--replica-id",
            "pod-7",
            "--redis-prefix",
            "blue",
            "--cluster-secret",
            "0123456789abcdef",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                c.replica_id.as_deref(),
                c.prefix.as_str(),
                c.secret.as_deref()
            ),
            (Some("pod-7"), "blue", Some("0123456789abcdef"))
        );
    }

    #[test]
    fn advertise_auto_takes_the_address_on_the_route_to_redis() {
        let on = |redis: &str, port: &str| {
            cluster(&[
                "--redis",
                redis,
                "--host",
                "0.0.0.0",
                "--port",
                port,
                "--advertise-url",
                "auto",
            ])
        };
        let c = on("redis://:pw@127.0.0.1:6390/0", "8123").unwrap().unwrap();
        assert_eq!(c.advertise_url.as_deref(), Some("http://127.0.0.1:8123"));
        let c = on("redis://localhost/0", "8124").unwrap().unwrap();
        let url = c.advertise_url.unwrap();
        assert!(
            url == "http://127.0.0.1:8124" || url == "http://[::1]:8124",
            "{url}"
        );
        let err = on("redis://127.0.0.1:6390/0", "0").unwrap_err();
        assert!(err.contains("fixed --port"), "{err}");
        let err = on("redis+unix:///run/redis.sock", "8000").unwrap_err();
        assert!(err.contains("over TCP"), "{err}");
    }

    #[test]
    fn the_cluster_secret_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("aareguru-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cluster-secret");
        std::fs::write(&file, "  0123456789abcdef0123\n").unwrap();
        let path = file.to_str().unwrap();
        let c = cluster(&["--redis", "redis://r/0", "--cluster-secret-file", path])
            .unwrap()
            .unwrap();
        assert_eq!(c.secret.as_deref(), Some("0123456789abcdef0123"));
        std::fs::write(&file, "short\n").unwrap();
        let err = cluster(&["--redis", "redis://r/0", "--cluster-secret-file", path]).unwrap_err();
        assert!(err.contains("16"), "{err}");
        let missing = dir.join("missing");
        let err = cluster(&[
            "--redis",
            "redis://r/0",
            "--cluster-secret-file",
            missing.to_str().unwrap(),
        ])
        .unwrap_err();
        assert!(
            err.contains("--cluster-secret-file") && err.contains("missing"),
            "{err}"
        );
        let err = cluster(&[
            "--redis",
            "redis://r/0",
            "--cluster-secret",
            "0123456789abcdef",
            "--cluster-secret-file",
            path,
        ])
        .unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
        let err = cluster(&["--cluster-secret-file", path]).unwrap_err();
        assert!(err.contains("need --redis"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
