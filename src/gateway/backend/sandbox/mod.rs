//! Spawn-time walls around a child: what it is given from the gateway's environment
//! ([`env`]).
//!
//! Owns: what a child is given and allowed before it runs. Must not touch: spawning or reaping
//! it.

mod env;

pub use env::{DEFAULT_INHERITED, inherited, valid_pattern};
