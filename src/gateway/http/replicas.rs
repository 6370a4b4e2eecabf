//! With several replicas: before a session's request is handled, find where its session is —
//! held here (and still this replica's), held by another replica (forward the request there),
//! roaming (restore it here), or gone (404). When the directory cannot say (Redis down, or
//! refilling after it lost its data), the other replicas are asked in turn whether they hold it
//! ([`IF_HELD`]): whichever does answers; only when none does is the answer `503`. Without a
//! cluster every request is served here.
//!
//! Owns: the router's half of the cluster (asking, then acting). Must not touch: the directory
//! itself ([`Cluster`] does) or backends.
//!
//! [`Cluster`]: crate::gateway::cluster::Cluster

use std::{net::IpAddr, sync::Arc};

use bytes::Bytes;

use serde_json::json;
use uuid::Uuid;
use warp::{
    http::{HeaderMap, HeaderValue, StatusCode},
    reply::Response,
};

use super::{
    forward::{self, PEER_HEADER},
    reply::{error_reply, json_reply},
    state::Http,
};
use crate::{
    config::Backend as BackendKind,
    gateway::{
        cluster::{
            Verdict,
            entry::{Peer, RoamState},
            placement::Placement,
        },
        servers::search,
        session::CloseCause,
    },
    mcp::jsonrpc::{self, Kind},
};

/// Which kind of session-bearing request this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bearer {
    SsePost,
    McpPost,
    McpGet,
    McpDelete,
}

/// A forwarded request with this header is served only by a replica that holds its session;
/// another answers at once with [`NOT_HELD`] (it neither restores nor forwards it).
pub(super) const IF_HELD: &str = "x-aareguru-if-held";
/// The answer header of a replica that does not hold the session asked for with [`IF_HELD`].
pub(super) const NOT_HELD: &str = "x-aareguru-not-held";

/// What to do with a request, cluster-wise.
pub(super) enum Place {
    /// Handle it here.
    Here,
    /// Answered already (404, 503, or a roaming session's DELETE).
    Answered(Response),
    /// Send it to this replica, presenting this secret.
    Forward(Peer, String),
    /// The directory cannot say: ask these replicas in turn (see [`IF_HELD`]).
    AskPeers(Vec<Peer>, String),
}

impl Http {
    /// Where the request for `bearer` goes. `forwarded`: a peer sent it (never forward again).
    pub(super) async fn place(
        self: &Arc<Self>,
        bearer: Bearer,
        server: Option<&str>,
        query: &str,
        headers: &HeaderMap,
        client: IpAddr,
        forwarded: bool,
    ) -> Place {
        let Some(cluster) = &self.cluster else {
            return Place::Here;
        };
        let raw = match bearer {
            Bearer::SsePost => super::headers::session_param(query),
            _ => headers
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_string()),
        };
        // No id (an initialize) or a malformed one: the handler answers.
        let Some(id) = raw.and_then(|r| Uuid::parse_str(&r).ok()) else {
            return Place::Here;
        };
        let id_str = id.to_string();
        // A stream resumed on the replica that buffered it.
        if bearer == Bearer::McpGet
            && !forwarded
            && let Some(tag) = headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once('.'))
                .map(|(tag, _)| tag)
            && tag != cluster.tag()
            && let Some(peer) = cluster.peer_by_tag(tag)
            && let Some(secret) = cluster.secret()
        {
            return Place::Forward(peer, secret);
        }
        let held = self.registry.holding(server, &id);
        if let Some((served, _)) = held {
            return match cluster.check(&id_str).await {
                Verdict::Serve => Place::Here,
                Verdict::Gone => {
                    served.sessions.close(&id, CloseCause::Superseded);
                    Place::Answered(gone())
                }
            };
        }
        if self.mcp.get(&id).is_some() {
            // Held here for another server: not found at this path (the handler says so).
            return Place::Here;
        }
        if forwarded && headers.contains_key(IF_HELD) {
            return Place::Answered(not_held());
        }
        match cluster.place(&id_str, server, forwarded).await {
            Placement::Forward(peer) => match cluster.secret() {
                Some(secret) => Place::Forward(peer, secret),
                None => Place::Answered(unplaceable()),
            },
            Placement::Adopt(state) => match bearer {
                Bearer::McpDelete => {
                    cluster.forget(&id_str).await;
                    Place::Answered(json_reply(StatusCode::OK, json!({"ended": id_str})))
                }
                Bearer::McpPost | Bearer::McpGet => {
                    match self.mcp_restore(id, server, state, client).await {
                        Ok(()) => Place::Here,
                        Err(r) => Place::Answered(*r),
                    }
                }
                // HTTP+SSE sessions never roam: their stream is on one replica.
                Bearer::SsePost => Place::Answered(gone()),
            },
            Placement::Gone(reason) => {
                tracing::debug!(session = %id_str, reason, "session not in the cluster");
                self.metrics.reject("unknown_session");
                Place::Answered(gone())
            }
            Placement::Unknown => match cluster.secret() {
                Some(secret) if !forwarded => Place::AskPeers(cluster.others(), secret),
                _ => Place::Answered(unplaceable()),
            },
        }
    }
}

impl Http {
    /// What event ids start with: the replica's tag in a cluster (so a resumed stream is found
    /// on the replica that buffered it), nothing otherwise.
    pub(super) fn event_tag(&self) -> Arc<str> {
        match &self.cluster {
            Some(c) => format!("{}.", c.tag()).into(),
            None => "".into(),
        }
    }

    /// A roaming session's requests run wherever they arrived, so its `notifications/cancelled`
    /// goes to every other replica too (asked with [`IF_HELD`]: one that holds a copy passes it
    /// to its copy, which stops the request if it runs there; none restores the session for
    /// it). Sent once, by the replica the client reached.
    pub(super) fn cancel_elsewhere(
        self: &Arc<Self>,
        server: Option<&str>,
        headers: &HeaderMap,
        client: IpAddr,
        line: &Bytes,
        kind: &Kind,
    ) {
        let (Some(cluster), Kind::Notification { method }) = (&self.cluster, kind) else {
            return;
        };
        if method != "notifications/cancelled" || headers.contains_key(PEER_HEADER) {
            return;
        }
        let roams = self
            .registry
            .serving(server)
            .is_some_and(|s| s.config.backend == BackendKind::InProcess);
        let (Some(secret), true) = (cluster.secret(), roams) else {
            return;
        };
        let path = server.map_or_else(|| "/mcp".to_string(), |s| format!("/servers/{s}/mcp"));
        let mut headers = headers.clone();
        headers.insert(IF_HELD, HeaderValue::from_static("1"));
        let (http, cluster, line) = (self.clone(), cluster.clone(), line.clone());
        tokio::spawn(async move {
            for peer in cluster.others() {
                let request = forward::Request {
                    method: &warp::http::Method::POST,
                    path: &path,
                    query: "",
                    headers: &headers,
                    body: line.clone(),
                    client,
                };
                let _ = http
                    .forwarder
                    .forward(&cluster, &peer, &secret, request)
                    .await;
            }
        });
    }
}

fn gone() -> Response {
    error_reply(
        StatusCode::NOT_FOUND,
        "unknown or expired session; initialize a new one",
    )
}

/// This replica does not hold the session a peer asked for with [`IF_HELD`].
fn not_held() -> Response {
    let mut r = error_reply(
        StatusCode::NOT_FOUND,
        "this replica does not hold the session",
    );
    r.headers_mut()
        .insert(NOT_HELD, HeaderValue::from_static("1"));
    r
}

/// Neither Redis nor any other replica can say where the session is.
pub(super) fn unplaceable() -> Response {
    let mut r = error_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "the session directory (Redis) is unreachable and this session is not held by this replica; try again",
    );
    r.headers_mut()
        .insert("retry-after", HeaderValue::from(1u32));
    r
}
/// What a replica sends a fresh in-process server to restore roaming session `state`: the
/// client's handshake, its subscriptions, and the tools tool search had activated for it.
pub(super) fn replay(state: &RoamState) -> Vec<Bytes> {
    let mut replay = vec![
        jsonrpc::message(
            Some("\"aareguru-roam-0\""),
            "initialize",
            Some(&state.initialize),
        ),
        jsonrpc::message(None, "notifications/initialized", None),
    ];
    for (i, uri) in state.subscriptions.iter().enumerate() {
        let id = format!("\"aareguru-roam-{}\"", i + 1);
        replay.push(jsonrpc::message(
            Some(&id),
            "resources/subscribe",
            Some(&json!({ "uri": uri })),
        ));
    }
    if !state.active.is_empty() {
        replay.push(jsonrpc::message(
            None,
            search::ACTIVATE,
            Some(&json!({ "names": state.active })),
        ));
    }
    replay
}
