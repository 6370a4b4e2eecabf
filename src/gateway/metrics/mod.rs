//! Prometheus metrics of the gateway (text exposition on `/metrics`): [`Metrics`] holds every
//! family, [`ServerMetrics`] is one server's view of them, [`labels`] the label sets.
//!
//! Owns: what is counted and how it is named. Must not touch: what is being counted.

mod all;
pub mod labels;
pub mod live;
mod server;

pub use self::{
    all::Metrics,
    labels::*,
    server::{MemberMetrics, ServerMetrics},
};
