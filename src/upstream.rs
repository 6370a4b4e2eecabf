//! The Aareguru API client: one reqwest client, `app`/`version` on every request, a request
//! timeout, and a TTL cache shared by everything in this process where concurrent misses for one
//! URL make a single upstream request and failures are never cached.
//!
//! Owns: HTTP to the Aareguru API and its cache. Must not touch: MCP — tools call this.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use moka::future::Cache;
use serde_json::Value;

use crate::{
    config::UpstreamConfig,
    domain::city::{self, Station},
};

/// Why an upstream call failed; each variant reads as an actionable sentence.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error(
        "the Aareguru API did not answer within {} s; it may be overloaded, try again in a minute",
        .0.as_secs_f64()
    )]
    Timeout(Duration),
    #[error(
        "the Aareguru API at {base} could not be reached ({detail}); check the network or AAREGURU_BASE_URL"
    )]
    Unreachable { base: String, detail: String },
    #[error("the Aareguru API answered HTTP {status} for {path}; try again later")]
    Status { status: u16, path: String },
    #[error("the Aareguru API sent a response for {path} that is not valid JSON ({detail})")]
    InvalidBody { path: String, detail: String },
    #[error("the Aareguru API sent a response for {path} without the expected data ({detail})")]
    UnexpectedShape { path: String, detail: String },
}

/// The client. Cheap to clone; clones share the HTTP connection pool and the cache.
#[derive(Clone)]
pub struct Upstream {
    /// Built on first use: loading the platform's root certificates takes milliseconds, and a
    /// session that never calls upstream (or a gateway child that just started) should not pay.
    http: Arc<OnceLock<Result<reqwest::Client, String>>>,
    config: Arc<UpstreamConfig>,
    /// Parsed bodies keyed by full URL (with query); `None` when caching is off.
    cache: Option<Cache<String, Arc<Value>>>,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> anyhow::Result<Self> {
        let cache = (!config.cache_ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(1024)
                .time_to_live(config.cache_ttl)
                .build()
        });
        let mut config = config;
        config.base_url = config.base_url.trim_end_matches('/').to_string();
        Ok(Self {
            http: Arc::default(),
            config: Arc::new(config),
            cache,
        })
    }

    fn http(&self) -> Result<&reqwest::Client, UpstreamError> {
        self.http
            .get_or_init(|| {
                reqwest::Client::builder()
                    .timeout(self.config.timeout)
                    .connect_timeout(self.config.timeout.min(Duration::from_secs(5)))
                    .user_agent(concat!("aareguru-mcp/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|detail| UpstreamError::Unreachable {
                base: self.config.base_url.clone(),
                detail: format!("cannot set up the HTTP client: {detail}"),
            })
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// `GET {base}/v2018/{endpoint}?{query}&app=..&version=..` as JSON, through the cache.
    pub async fn get(
        &self,
        endpoint: &str,
        query: &[(&str, String)],
    ) -> Result<Arc<Value>, UpstreamError> {
        let mut url = format!("{}/v2018/{}", self.config.base_url, endpoint);
        let mut sep = '?';
        for (k, v) in query.iter().map(|(k, v)| (*k, v.as_str())).chain([
            ("app", self.config.app.as_str()),
            ("version", self.config.version.as_str()),
        ]) {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(&encode(v));
            sep = '&';
        }
        match &self.cache {
            None => self.fetch(&url, endpoint).await,
            Some(cache) => cache
                .try_get_with_by_ref(&url, self.fetch(&url, endpoint))
                .await
                .map_err(|e: Arc<UpstreamError>| (*e).clone()),
        }
    }

    async fn fetch(&self, url: &str, endpoint: &str) -> Result<Arc<Value>, UpstreamError> {
        let path = format!("/v2018/{endpoint}");
        tracing::debug!(%url, "upstream request");
        let started = std::time::Instant::now();
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let span = crate::telemetry::spans::upstream_get(url, &host);
        let http = self.http()?;
        // A kept-alive connection the API closed as the GET went out is tried once more.
        let sent = crate::resend::send(http.get(url), "an upstream request");
        let response = tracing::Instrument::instrument(sent, span.clone())
            .await
            .map_err(|e| self.classify(e))?;
        let status = response.status();
        crate::telemetry::spans::http_status(&span, status.as_u16());
        if !status.is_success() {
            tracing::warn!(%path, status = status.as_u16(), "upstream error status");
            return Err(UpstreamError::Status {
                status: status.as_u16(),
                path,
            });
        }
        let body = response.bytes().await.map_err(|e| self.classify(e))?;
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            tracing::warn!(%path, error = %e, "upstream sent invalid JSON");
            UpstreamError::InvalidBody {
                path: path.clone(),
                detail: e.to_string(),
            }
        })?;
        tracing::debug!(%path, elapsed_ms = started.elapsed().as_millis() as u64, bytes = body.len(), "upstream answered");
        Ok(Arc::new(value))
    }

    fn classify(&self, e: reqwest::Error) -> UpstreamError {
        if e.is_timeout() {
            UpstreamError::Timeout(self.config.timeout)
        } else {
            // The innermost cause says the useful part ("Connection refused").
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail = s.to_string();
                source = s.source();
            }
            UpstreamError::Unreachable {
                base: self.config.base_url.clone(),
                detail,
            }
        }
    }

    /// `/v2018/cities` as a raw body (validated to be a list).
    pub async fn cities_raw(&self) -> Result<Arc<Value>, UpstreamError> {
        let body = self.get("cities", &[]).await?;
        if !body.is_array() {
            return Err(UpstreamError::UnexpectedShape {
                path: "/v2018/cities".into(),
                detail: "expected a list of stations".into(),
            });
        }
        Ok(body)
    }

    /// The stations known upstream, for validating and resolving city names.
    pub async fn stations(&self) -> Result<Vec<Station>, UpstreamError> {
        let body = self.cities_raw().await?;
        let stations: Vec<Station> = body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let slug = c.get("city")?.as_str()?.to_string();
                let text = |k: &str| {
                    c.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or(&slug)
                        .to_string()
                };
                Some(Station {
                    name: text("name"),
                    long_name: text("longname"),
                    slug,
                })
            })
            .collect();
        if stations.is_empty() {
            return Err(UpstreamError::UnexpectedShape {
                path: "/v2018/cities".into(),
                detail: "the station list is empty".into(),
            });
        }
        Ok(stations)
    }

    /// Resolves a user-typed city to a station, or says which stations exist.
    pub async fn resolve_city(&self, input: &str) -> Result<Station, CityError> {
        let stations = self.stations().await.map_err(CityError::Upstream)?;
        city::resolve(input, &stations)
            .cloned()
            .ok_or_else(|| CityError::Unknown {
                input: input.trim().to_string(),
                known: city::describe_all(&stations),
            })
    }

    /// `/v2018/current?city=slug`, checked to carry an `aare` object.
    pub async fn current(&self, slug: &str) -> Result<Arc<Value>, UpstreamError> {
        let body = self.get("current", &[("city", slug.to_string())]).await?;
        if !body.get("aare").is_some_and(Value::is_object) {
            return Err(UpstreamError::UnexpectedShape {
                path: "/v2018/current".into(),
                detail: "no `aare` section".into(),
            });
        }
        Ok(body)
    }
}

/// A city argument that could not be turned into a station.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CityError {
    #[error(
        "unknown city {input:?}. Known stations: {known}. Use the slug (e.g. `bern`) or the station's name."
    )]
    Unknown { input: String, known: String },
    #[error("could not check the city name: {0}")]
    Upstream(UpstreamError),
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_get_on_a_connection_the_server_just_closed_is_sent_again() {
        let (base, server) = crate::test_support::hangs_up_on_reuse("[]").await;
        let upstream = Upstream::new(UpstreamConfig {
            base_url: base,
            app: "test".into(),
            version: "1".into(),
            timeout: Duration::from_secs(5),
            cache_ttl: Duration::ZERO,
        })
        .unwrap();
        assert!(upstream.cities_raw().await.is_ok());
        assert!(upstream.cities_raw().await.is_ok());
        server.await.unwrap();
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("bern"), "bern");
        assert_eq!(encode("a b&c=d/ä"), "a%20b%26c%3Dd%2F%C3%A4");
        assert_eq!(encode("0.1.0"), "0.1.0");
    }
}
