//! What the directory holds: a session's [`Entry`] (who owns it, and for a roaming session what
//! any replica needs to serve it) and a replica's [`Peer`] record (how to reach it, which life
//! of it this is).
//!
//! Owns: the shape of the shared records. Must not touch: Redis or HTTP.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The transport a session was opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Streamable HTTP (`/mcp`).
    Mcp,
    /// HTTP+SSE (`/sse` + `/messages`): the stream lives on one replica, so the session is pinned.
    Sse,
}

/// A session in the directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The replica that opened the session (for a pinned session, the only one that can serve it).
    pub owner: String,
    /// Which life of that replica: a replica restarted with the same id is another incarnation,
    /// and its predecessor's child processes are gone.
    pub incarnation: String,
    pub transport: Transport,
    /// The server it belongs to (`/servers/<name>/`), `None` for the one at `/mcp` and `/sse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Present when the session roams: any replica serves it from this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roam: Option<RoamState>,
}

/// What a replica needs to serve a roaming session it has not seen: the client's handshake,
/// replayed to a fresh in-process server, gives the same negotiated version and capabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoamState {
    /// The `initialize` params the client sent (protocol version, capabilities, client info).
    pub initialize: Value,
    /// The protocol version the server negotiated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Resource URIs the client is subscribed to, replayed after the handshake.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<String>,
    /// Tools the session found and activated (tool search's `activate` mode), oldest first,
    /// replayed after the subscriptions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// With OAuth: the subject the session is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A live replica, as its heartbeat announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub replica: String,
    pub incarnation: String,
    /// Where the other replicas reach it (`--advertise-url`).
    pub url: String,
    pub version: String,
    /// Unix seconds of this incarnation's start.
    pub started: u64,
}

impl Peer {
    /// The short tag event ids carry in cluster mode, so a resumed stream finds its replica.
    pub fn tag(&self) -> &str {
        tag_of(&self.incarnation)
    }
}

/// The tag of an incarnation: its first 8 characters (enough to tell a few replicas apart).
pub fn tag_of(incarnation: &str) -> &str {
    &incarnation[..incarnation.len().min(8)]
}
