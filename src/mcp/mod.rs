//! What every mode shares about MCP itself: JSON-RPC messages (classification, raw ids, error
//! responses), line framing and the queue into a server's input (the stdio transport), and
//! protocol revisions.
//!
//! Owns: the wire format below the transports. Must not touch: processes, sessions, HTTP,
//! configuration — the stdio server, the gateway and the bridge all build on this, never the
//! other way round.

pub mod asks;
pub mod jsonrpc;
pub mod lines;
pub mod modern;
pub mod names;
pub mod params;
pub mod queue;
pub mod splice;
pub mod strict;
pub mod version;

#[cfg(test)]
mod proptests;
