//! What the tools share: how a station, a danger level and a whole answer are written.

use serde_json::{Value, json};

use super::ToolOutput;
use crate::{
    domain::{
        ATTRIBUTION,
        city::Station,
        danger::{self, DangerLevel},
    },
    server::format::num,
};

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
