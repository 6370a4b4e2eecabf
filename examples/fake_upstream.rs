//! The fake Aareguru API as a program, for interop scripts and for trying the server without
//! internet: `cargo run --example fake_upstream -- [PORT] [MODE]`
//! (PORT may be ADDR:PORT, e.g. `0.0.0.0:9100` in a container; else 127.0.0.1 is bound).
//!
//! MODE is `normal` (default), `error`, `status-503`, `hang` or `garbage`; switch it at run time
//! with `GET /__control?mode=hang` (add `&city=thun` to affect one station, `&delay_ms=200` to
//! slow every answer). `GET /__stats` lists the requests received. Prints `listening on ADDR`
//! on stdout once ready.

#[path = "../tests/support/fake_upstream.rs"]
mod fake_upstream;

use std::net::SocketAddr;

use fake_upstream::{Behaviour, FakeUpstream};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .map_or(SocketAddr::from(([127, 0, 0, 1], 0)), |a| {
            a.parse::<SocketAddr>()
                .or_else(|_| {
                    a.parse::<u16>()
                        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
                })
                .unwrap_or_else(|_| panic!("PORT or ADDR:PORT, got {a:?}"))
        });
    let behaviour = args
        .next()
        .map(|m| Behaviour::parse(&m).unwrap_or_else(|| panic!("unknown mode {m:?}")))
        .unwrap_or(Behaviour::Normal);
    let fake = FakeUpstream::start_on(addr, behaviour).await;
    // This program is not an MCP server: its stdout is a readiness line for the scripts.
    #[allow(clippy::disallowed_macros)]
    {
        println!("listening on {}", fake.addr);
    }
    let _ = tokio::signal::ctrl_c().await;
}
