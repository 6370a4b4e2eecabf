//! What the tools share: how a station, a danger level and a whole answer are written.

use serde_json::{Value, json};

use crate::{
    domain::{
        ATTRIBUTION,
        city::Station,
        danger::{self, DangerLevel},
    },
    server::format::num,
    upstream::{CityError, UpstreamError},
};

/// What a tool answers: a text for people and models, and the same facts as structured JSON.
#[derive(Debug)]
pub struct ToolOutput {
    pub text: String,
    pub data: Value,
}

/// A failure the caller can fix or retry; its message is the whole explanation.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    City(#[from] CityError),
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("{0}")]
    Argument(String),
}

/// The station's display line: "Bern (Bärn, Bern, Schönau)".
pub(super) fn station_label(s: &Station) -> String {
    let mut name = s.slug.clone();
    if let Some(first) = name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    if s.name == s.long_name {
        format!("{name} ({})", s.name)
    } else {
        format!("{name} ({}, {})", s.name, s.long_name)
    }
}

pub(super) fn station_json(s: &Station) -> Value {
    json!({"slug": s.slug, "name": s.name, "long_name": s.long_name})
}

pub(super) fn danger_of(body: &Value) -> DangerLevel {
    danger::danger_level(
        num(body, &["aare", "flow"]),
        num(body, &["aare", "flow_scale_threshold"]),
    )
}

pub(super) fn danger_json(d: &DangerLevel) -> Value {
    json!({"level": d.level, "label": d.label, "advice": d.advice})
}

pub(super) fn finish(mut lines: Vec<String>, data: Value) -> ToolOutput {
    lines.push(String::new());
    lines.push(ATTRIBUTION.to_string());
    ToolOutput {
        text: lines.join("\n"),
        data,
    }
}
