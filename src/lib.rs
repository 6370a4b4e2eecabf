//! aareguru-mcp: an MCP server for the Aareguru API (Aare river temperature, flow and weather for
//! Swiss bathing spots), a gateway that serves stdio MCP servers to remote clients, and a bridge
//! that serves remote MCP servers to stdio hosts.
//!
//! # Map
//!
//! ```text
//! main.rs ─ cli ─▶ config            flags → plain data → run the mode
//!
//! --stdio    stdio ─▶ server ─▶ upstream ─▶ domain        the Aareguru MCP server
//!
//! --sse      gateway ─▶ http ─▶ session ─▶ backend        the HTTP gateway
//!                 http/     router + guard (policies), sse.rs, streamable.rs (+ streams.rs),
//!                           modern.rs (2026-07-28 requests on /mcp),
//!                           headers.rs (request parsing), health.rs, reply.rs
//!                 session   the session table; talks to the Backend/Link traits only
//!                 stateless/ protocol revision 2026-07-28: one request at a time, no session
//!                           (natively in-process, passed through or translated for children)
//!                 backend/  per_session.rs, inprocess.rs, shared.rs + mux/ (a pure state
//!                           machine), own.rs (the relay), process.rs (spawn, process groups),
//!                           sandbox.rs (a child's environment)
//!
//! --connect  bridge ─▶ client ─▶ streamable.rs | sse.rs, modern.rs, reconnect.rs, events.rs, oauth/
//!            (the gateway's remote servers use client too: backend/remote.rs)
//!
//! shared by every mode: mcp (JSON-RPC, line framing, protocol versions), logging, signals,
//!   telemetry (--otel: trace context, spans, duration metrics, OTLP export)
//! ```
//!
//! Doors open one way, along the arrows: a backend never sees HTTP, a transport never sees a
//! process, the client never sees the gateway or stdio, and `config` sees nothing. Each module's first
//! lines say what it owns and what it must not touch; `tests/it/layout.rs` checks the doors.

pub mod bridge;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod gateway;
pub mod healthcheck;
pub mod logging;
pub mod mcp;
pub mod resend;
pub mod server;
pub mod signals;
pub mod stdio;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod upstream;
