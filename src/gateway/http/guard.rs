//! Who may talk to the gateway: Host and Origin allow-lists (DNS-rebinding protection), API
//! keys compared in constant time, CORS, and a per-client rate limit — applied to every request
//! by the [`Policy`] of its route.
//!
//! Owns: admission. Must not touch: sessions or what a request carries.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use subtle::ConstantTimeEq;
use warp::http::HeaderMap;

use crate::{
    config::GatewayConfig,
    gateway::policy::keys::{Keys, NamedKey},
};

/// A refusal, with the HTTP status it maps to.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 421: the Host header names a host this gateway does not serve.
    Host,
    /// 403: a browser Origin that is not allowed.
    Origin,
    /// 401: missing or wrong API key.
    Auth,
    /// 401: a named API key past its expiry.
    KeyExpired,
    /// 429: over the rate limit; retry after this many seconds.
    RateLimited(u64),
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Host => "host",
            Refusal::Origin => "origin",
            Refusal::Auth => "auth",
            Refusal::KeyExpired => "auth_expired",
            Refusal::RateLimited(_) => "rate_limit",
        }
    }
}

/// What a request must pass before its handler runs.
#[derive(Clone, Copy)]
pub enum Policy {
    /// Nothing (health, CORS preflight, errors).
    Open,
    /// Host and Origin; the API key when `--protect-metrics`.
    Metrics,
    /// Host and Origin, the API key, the rate limit: every MCP endpoint.
    Client,
    /// Host and Origin, the rate limit: the console (which checks its own credential).
    Console,
    /// A request another replica forwarded: the client's Host/Origin and key are checked again,
    /// the rate limit was applied where it arrived.
    Peer,
}

pub struct Guard {
    allowed_hosts: Vec<String>,
    any_host: bool,
    allowed_origins: Vec<String>,
    any_origin: bool,
    cors_origins: Vec<String>,
    api_keys: Vec<Vec<u8>>,
    /// Named keys (`--api-keys-file`, the servers file's `apiKeys`), shared with the registry,
    /// which replaces them on reload.
    named: Arc<Keys>,
    /// With OAuth the MCP endpoints' credentials are checked by the OAuth layer (which takes
    /// API keys too).
    oauth: bool,
    protect_metrics: bool,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

const LOOPBACK_HOSTS: [&str; 4] = ["localhost", "127.0.0.1", "[::1]", "::1"];

impl Guard {
    pub fn new(config: &GatewayConfig) -> Self {
        let mut allowed_hosts = config.allowed_hosts.clone();
        // The address the operator bound is a name clients legitimately use.
        if !config.bind.ip().is_unspecified() && !config.bind.ip().is_loopback() {
            allowed_hosts.push(match config.bind.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            });
        }
        let limiter = config.rate_limit.map(|(rate, burst)| {
            let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Guard {
            any_host: allowed_hosts.iter().any(|h| h == "*"),
            allowed_hosts,
            any_origin: config.allowed_origins.iter().any(|o| o == "*"),
            allowed_origins: config.allowed_origins.clone(),
            cors_origins: config.cors_origins.clone(),
            api_keys: config
                .api_keys
                .iter()
                .map(|k| k.as_bytes().to_vec())
                .collect(),
            named: Arc::default(),
            protect_metrics: config.protect_metrics,
            oauth: config.oauth.is_some(),
            limiter,
        }
    }

    /// Checks named keys too: these.
    pub fn use_keys(&mut self, keys: Arc<Keys>) {
        self.named = keys;
    }

    fn named_keys_on(&self) -> bool {
        self.named.declared() || !self.named.is_empty()
    }

    /// The named key `presented` is: `Ok(None)` when it is none of them, `Err` when expired.
    pub fn named_key(&self, presented: &str) -> Result<Option<Arc<NamedKey>>, Refusal> {
        if !self.named_keys_on() {
            return Ok(None);
        }
        let now = jiff::Timestamp::now().as_second();
        match self.named.find(presented, now) {
            None => Ok(None),
            Some(Ok(key)) => Ok(Some(key)),
            Some(Err(name)) => {
                tracing::info!(key = %name, "an expired API key was refused");
                Err(Refusal::KeyExpired)
            }
        }
    }

    /// Whether a request may proceed under `policy`: Host, Origin, API key and rate limit, in
    /// that order, as far as the policy asks.
    pub fn admit(
        &self,
        policy: Policy,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Result<(), Refusal> {
        match policy {
            Policy::Open => Ok(()),
            Policy::Metrics => self.check_origin_and_host(headers).and_then(|()| {
                if self.protect_metrics {
                    self.check_key(headers)
                } else {
                    Ok(())
                }
            }),
            Policy::Client => self
                .check_origin_and_host(headers)
                .and_then(|()| self.check_client_key(headers))
                .and_then(|()| self.check_rate(client)),
            Policy::Console => self
                .check_origin_and_host(headers)
                .and_then(|()| self.check_rate(client)),
            Policy::Peer => self
                .check_origin_and_host(headers)
                .and_then(|()| self.check_client_key(headers)),
        }
    }

    /// Accepts `host` (a name or address, without port) as a Host of this gateway: the
    /// address the other replicas reach it by.
    pub fn allow_host(&mut self, host: &str) {
        let host = host_without_port(host);
        if !self.allowed_hosts.contains(&host) {
            self.allowed_hosts.push(host);
        }
    }

    pub fn auth_enabled(&self) -> bool {
        !self.api_keys.is_empty() || self.named_keys_on()
    }

    /// Host and Origin checks (every endpoint but /health).
    pub fn check_origin_and_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.any_host {
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(host_without_port)
                .ok_or(Refusal::Host)?;
            if !LOOPBACK_HOSTS.contains(&host.as_str()) && !self.allowed_hosts.contains(&host) {
                return Err(Refusal::Host);
            }
        }
        if let Some(origin) = headers.get("origin") {
            let origin = origin.to_str().map_err(|_| Refusal::Origin)?;
            if !self.origin_allowed(origin) {
                return Err(Refusal::Origin);
            }
        }
        Ok(())
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.any_origin
            || self.allowed_origins.contains(&origin)
            || self.cors_origins.iter().any(|o| o == "*" || *o == origin)
        {
            return true;
        }
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        matches!(scheme, "http" | "https")
            && LOOPBACK_HOSTS.contains(&host_without_port(rest).as_str())
    }

    /// An MCP endpoint's key check, left to the OAuth layer when it is on.
    fn check_client_key(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.oauth {
            Ok(())
        } else {
            self.check_key(headers)
        }
    }

    /// Whether `presented` is one of the API keys (compared in constant time).
    pub fn key_matches(&self, presented: &str) -> bool {
        let mut ok = subtle::Choice::from(0u8);
        for key in &self.api_keys {
            ok |= presented.trim().as_bytes().ct_eq(key);
        }
        bool::from(ok)
    }

    /// The API key check; a no-op when no key is configured.
    pub fn check_key(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.api_keys.is_empty() && !self.named_keys_on() {
            return Ok(());
        }
        let presented = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                    })
            })
            .map(str::trim)
            .ok_or(Refusal::Auth)?;
        // Compare against every key without stopping early, so timing reveals nothing.
        let mut ok = subtle::Choice::from(0u8);
        for key in &self.api_keys {
            ok |= presented.as_bytes().ct_eq(key);
        }
        if bool::from(ok) {
            return Ok(());
        }
        match self.named_key(presented)? {
            Some(_) => Ok(()),
            None => Err(Refusal::Auth),
        }
    }

    pub fn check_rate(&self, client: IpAddr) -> Result<(), Refusal> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            Refusal::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }

    /// Forgets rate-limit state of clients not seen recently (keeps memory bounded).
    pub fn forget_idle_clients(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
        }
    }

    /// The value for `Access-Control-Allow-Origin`, if this origin may make CORS requests.
    pub fn cors_allow(&self, headers: &HeaderMap) -> Option<String> {
        if self.cors_origins.is_empty() {
            return None;
        }
        let origin = headers.get("origin")?.to_str().ok()?;
        let lower = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.cors_origins.iter().any(|o| o == "*") {
            Some("*".into())
        } else if self.cors_origins.contains(&lower) {
            Some(origin.to_string())
        } else {
            None
        }
    }
}

/// `Example.COM:8000` → `example.com`; `[::1]:8000` → `[::1]`.
fn host_without_port(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => host[..=end].to_string(),
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => {
            h.to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn guard(args: &[&str]) -> Guard {
        let mut argv = vec!["aareguru-mcp", "--sse"];
        argv.extend_from_slice(args);
        let cfg = Cli::try_parse_from(argv).unwrap().into_config().unwrap();
        match cfg.mode {
            crate::config::Mode::Sse(g) => Guard::new(&g),
            _ => unreachable!(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                warp::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn hosts() {
        let g = guard(&[]);
        assert!(
            g.check_origin_and_host(&headers(&[("host", "127.0.0.1:8000")]))
                .is_ok()
        );
        assert!(
            g.check_origin_and_host(&headers(&[("host", "LOCALHOST")]))
                .is_ok()
        );
        assert!(
            g.check_origin_and_host(&headers(&[("host", "[::1]:8000")]))
                .is_ok()
        );
        assert_eq!(
            g.check_origin_and_host(&headers(&[("host", "evil.example:8000")])),
            Err(Refusal::Host)
        );
        assert_eq!(g.check_origin_and_host(&headers(&[])), Err(Refusal::Host));
        let g = guard(&["--allowed-host", "mcp.example.com"]);
        assert!(
            g.check_origin_and_host(&headers(&[("host", "mcp.example.com:443")]))
                .is_ok()
        );
        let g = guard(&["--host", "10.1.2.3"]);
        assert!(
            g.check_origin_and_host(&headers(&[("host", "10.1.2.3:8000")]))
                .is_ok()
        );
    }

    #[test]
    fn origins() {
        let g = guard(&[]);
        let ok = |o: &str| {
            g.check_origin_and_host(&headers(&[("host", "localhost"), ("origin", o)]))
                .is_ok()
        };
        assert!(ok("http://localhost:6274"));
        assert!(ok("http://127.0.0.1"));
        assert!(!ok("https://evil.example"));
        assert!(!ok("http://localhost.evil.example"));
        assert!(!ok("null"));
        let g = guard(&["--allowed-origin", "https://app.example.com/"]);
        assert!(
            g.check_origin_and_host(&headers(&[
                ("host", "localhost"),
                ("origin", "https://app.example.com")
            ]))
            .is_ok()
        );
    }

    #[test]
    fn api_keys() {
        let g = guard(&[]);
        assert!(g.check_key(&headers(&[])).is_ok());
        let g = guard(&["--api-key", "s3cret", "--api-key", "other"]);
        assert_eq!(g.check_key(&headers(&[])), Err(Refusal::Auth));
        assert!(g.check_key(&headers(&[("x-api-key", "s3cret")])).is_ok());
        assert!(
            g.check_key(&headers(&[("authorization", "Bearer other")]))
                .is_ok()
        );
        assert_eq!(
            g.check_key(&headers(&[("x-api-key", "s3cre")])),
            Err(Refusal::Auth)
        );
        assert_eq!(
            g.check_key(&headers(&[("authorization", "Basic s3cret")])),
            Err(Refusal::Auth)
        );
    }

    #[test]
    fn rate_limit() {
        let g = guard(&["--rate-limit", "1", "--rate-burst", "2"]);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(g.check_rate(ip).is_ok());
        assert!(g.check_rate(ip).is_ok());
        assert!(matches!(g.check_rate(ip), Err(Refusal::RateLimited(s)) if s >= 1));
        // Another client has its own budget.
        assert!(g.check_rate("127.0.0.2".parse().unwrap()).is_ok());
    }
}
