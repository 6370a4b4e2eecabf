//! aareguru-mcp: an MCP server for the Aareguru API (Aare river temperature, flow and weather for
//! Swiss bathing spots).
//!
//! - [`config`]: command-line flags and environment variables, validated into a `Config`.
//! - [`logging`]: tracing to stderr (stdout is the protocol in stdio mode).
//! - [`domain`]: the rules (danger levels, trend, seasons, Bernese glosses, city names, times).
//! - [`upstream`]: the Aareguru HTTP client with its shared TTL cache.
//! - [`server`]: the rmcp server handler: tools, resources, prompts.
//! - [`stdio`]: runs the server on stdin/stdout.
//! - [`gateway`]: the HTTP gateway (Streamable HTTP and HTTP+SSE) in front of MCP servers.
//! - [`bridge`]: `--connect`, a stdio server forwarding to a remote MCP server over HTTP.

pub mod bridge;
pub mod cli;
pub mod config;
pub mod domain;
pub mod gateway;
pub mod logging;
pub mod mcp;
pub mod server;
pub mod stdio;
pub mod upstream;
