//! Forwarding a request to the replica that holds its session, and streaming the answer back
//! unchanged — JSON, `202`, or an SSE stream that stays open as long as the client reads it.
//!
//! The forwarded request carries the client's own headers (its credentials are checked again
//! by the owner), the cluster secret in [`PEER_HEADER`] (so the owner trusts it came from a
//! replica, skips the rate limit already applied here, and never forwards it again), and
//! `X-Forwarded-For`.
//!
//! Owns: proxying one request. Must not touch: placement (the cluster decides) or sessions.

use std::{
    net::IpAddr,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tracing::Instrument;
use warp::{
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode},
    reply::Response,
};

use crate::{
    gateway::{
        cluster::{Cluster, entry::Peer},
        metrics::Metrics,
    },
    telemetry::spans,
};

/// The header replicas present the cluster secret in.
pub const PEER_HEADER: &str = "x-aareguru-cluster";
/// The header naming the replica a request was forwarded by (for logs).
pub const FORWARDED_BY: &str = "x-aareguru-forwarded-by";

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Forwards requests to the other replicas over one pool of connections.
pub struct Forwarder {
    http: reqwest::Client,
    metrics: std::sync::Arc<Metrics>,
}

/// One request to forward.
pub struct Request<'a> {
    pub method: &'a Method,
    /// The path as this gateway serves it (without the public prefix).
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    pub client: IpAddr,
}

/// Why a forward produced no answer from the peer.
#[derive(Debug)]
pub enum ForwardFailure {
    /// The peer could not be reached at all (it is gone): the session is gone too.
    Unreachable(String),
    /// The peer went away while answering (a call in flight).
    Broken(String),
}

/// An answer's body, chunk by chunk from the peer; `Sync` as warp's streaming reply needs.
struct Chunks(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

impl Forwarder {
    pub fn new(metrics: std::sync::Arc<Metrics>) -> Forwarder {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            // Answers may be long-lived SSE streams: no overall timeout.
            .build()
            .expect("a plain HTTP client builds");
        Forwarder { http, metrics }
    }

    /// A short request to another replica (the console asking for its view), presenting
    /// `secret`: its status and JSON answer, within `timeout`.
    pub async fn ask(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<(StatusCode, serde_json::Value), String> {
        let mut r = self.http.request(method, url).timeout(timeout);
        for (name, value) in headers {
            r = r.header(*name, *value);
        }
        let answer = r.send().await.map_err(|e| error_chain(&e))?;
        let status = answer.status();
        let body = answer.json().await.map_err(|e| error_chain(&e))?;
        Ok((status, body))
    }

    /// Sends the request to `peer`, presenting `secret`, and relays its answer.
    pub async fn forward(
        &self,
        cluster: &Cluster,
        peer: &Peer,
        secret: &str,
        req: Request<'_>,
    ) -> Result<Response, ForwardFailure> {
        let Request {
            method,
            path,
            query,
            headers,
            body,
            client,
        } = req;
        let mut url = format!("{}{path}", peer.url);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let mut out = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            let n = name.as_str();
            if HOP_BY_HOP.contains(&n) || n == "content-length" || n == PEER_HEADER {
                continue;
            }
            out.append(name.clone(), value.clone());
        }
        let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {client}"),
            None => client.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
            out.insert("x-forwarded-for", v);
        }
        if let Ok(v) = HeaderValue::from_str(secret) {
            out.insert(HeaderName::from_static(PEER_HEADER), v);
        }
        if let Ok(v) = HeaderValue::from_str(cluster.replica()) {
            out.insert(HeaderName::from_static(FORWARDED_BY), v);
        }
        // With --otel: a client span of its own, carried on in the body and the header.
        let parent = headers.get("traceparent").and_then(|v| v.to_str().ok());
        let state = headers.get("tracestate").and_then(|v| v.to_str().ok());
        let (span, body) = match spans::forwarded(&body, parent, state, spans::host_of(&peer.url)) {
            Some((span, body, header)) => {
                if let Ok(v) = HeaderValue::from_str(&header) {
                    out.insert("traceparent", v);
                }
                (span, body)
            }
            None => (tracing::Span::none(), body),
        };
        let started = Instant::now();
        let sent = self
            .http
            .request(method.clone(), &url)
            .headers(out)
            .body(body)
            .send()
            .instrument(span)
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.metrics.cluster_forward_failures.inc();
                let detail = error_chain(&e);
                return Err(if e.is_connect() {
                    ForwardFailure::Unreachable(detail)
                } else {
                    ForwardFailure::Broken(detail)
                });
            }
        };
        let took = started.elapsed();
        self.metrics
            .cluster_forward_duration
            .observe(took.as_secs_f64());
        cluster.counted_forward(took);
        let status =
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut answer_headers = HeaderMap::new();
        for (name, value) in resp.headers() {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                answer_headers.append(name.clone(), value.clone());
            }
        }
        let streamed = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if !streamed {
            // A JSON answer or an empty 202: whole, without a relay task.
            let body = resp
                .bytes()
                .await
                .map_err(|e| ForwardFailure::Broken(error_chain(&e)))?;
            let mut r = Response::new(body.into());
            *r.status_mut() = status;
            *r.headers_mut() = answer_headers;
            return Ok(r);
        }
        // An SSE stream: relayed as it comes; a client that goes away drops the receiver, which
        // ends the relay and the connection to the peer.
        let (tx, rx) = mpsc::channel(16);
        let mut body = resp.bytes_stream();
        tokio::spawn(async move {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(std::io::Error::other);
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        let mut r = warp::reply::Reply::into_response(warp::reply::stream(Chunks(rx)));
        *r.status_mut() = status;
        *r.headers_mut() = answer_headers;
        Ok(r)
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
