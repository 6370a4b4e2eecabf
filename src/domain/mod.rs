//! The Aareguru domain rules, free of I/O: flow danger levels, the temperature trend, seasonal
//! advice, glosses for the Bernese texts, station name resolution and history time arguments.
//! Tools call these; nothing here knows about MCP, HTTP or JSON-RPC.
//!
//! Owns: the rules. Must not touch: I/O of any kind.

pub mod bernese;
pub mod city;
pub mod danger;
pub mod season;
pub mod timespec;
pub mod trend;

/// The attribution the Aareguru API asks for (free for non-commercial use with a link to
/// aare.guru and to BAFU).
pub const ATTRIBUTION: &str = "Data: Aareguru (https://aare.guru) with measurements from BAFU, \
the Swiss Federal Office for the Environment (https://www.hydrodaten.admin.ch).";
