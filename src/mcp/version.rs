//! MCP protocol revisions and the rules that depend on them. Revisions are ISO dates, so they
//! compare as strings.
//!
//! Owns: which revisions exist and what each changed. Must not touch: any transport.

/// Revisions that use `initialize`, oldest first.
pub const HANDSHAKE: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The newest revision with `initialize`.
pub const NEWEST_HANDSHAKE: &str = HANDSHAKE[HANDSHAKE.len() - 1];

/// Revisions whose clients speak Streamable HTTP.
pub const STREAMABLE_HTTP: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];

/// From this revision on, clients send `MCP-Protocol-Version` on every HTTP request.
pub const PROTOCOL_HEADER_FROM: &str = "2025-06-18";

/// From this revision on, a Streamable HTTP stream may start with a priming event (an id and
/// empty data); older clients treat empty data as an error.
pub const PRIMING_FROM: &str = "2025-11-25";

/// Revisions without `initialize`: every request carries its revision and the client's
/// capabilities (the stateless generation).
pub const MODERN: [&str; 1] = ["2026-07-28"];
