//! Integration tests: the real `aareguru-mcp` binary driven over stdio against a fake Aareguru
//! API served over real HTTP. One test binary, so it links once.

mod audit;
mod authserver;
mod bridge;
mod cluster;
mod console;
mod drops;
#[path = "../support/fake_upstream.rs"]
mod fake_upstream;
mod federation;
mod gateway;
mod gateway_util;
mod infra;
mod layout;
mod limits;
mod modern;
mod modern_asks;
mod oauth;
mod policy;
mod pool;
mod restarts;
mod sandbox;
mod search;
mod servers;
mod shared;
mod stdio;
mod streamable;
mod util;
