//! `get_flow_danger_level`: the BAFU-style danger level of one station, with advice.

use serde_json::json;

use super::common::{
    ToolError, ToolOutput, danger_json, danger_of, finish, station_json, station_label,
};
use crate::{
    domain::{
        bernese,
        danger::{self},
    },
    server::format::{flow, glossed, iso_time, local_time, num, text, trim},
    upstream::Upstream,
};

pub(super) async fn flow_danger_level(
    upstream: &Upstream,
    city: &str,
) -> Result<ToolOutput, ToolError> {
    let station = upstream.resolve_city(city).await?;
    let body = upstream.current(&station.slug).await?;
    let flow_v = num(&body, &["aare", "flow"]);
    let threshold = num(&body, &["aare", "flow_scale_threshold"]);
    let danger = danger_of(&body);
    let flow_text = text(&body, &["aare", "flow_text"]);
    let gloss = flow_text.and_then(|t| bernese::gloss_flow(t, flow_v));
    let measured = num(&body, &["aare", "timestamp"]);
    let mut lines = vec![format!(
        "Flow at {}: {}{}.",
        station_label(&station),
        flow(flow_v),
        local_time(measured).map_or(String::new(), |t| format!(", measured {t}"))
    )];
    if let Some(t) = flow_text {
        lines.push(format!("Aareguru says: {}.", glossed(t, gloss.as_deref())));
    }
    lines.push(format!(
        "Danger level {} of 5: {}.",
        danger.level, danger.label
    ));
    lines.push(danger.advice.to_string());
    lines.push(format!(
        "Scale: below 100 m³/s safe, below {} moderate, below 300 elevated, below 430 high, from 430 very high.",
        trim(threshold.unwrap_or(danger::DEFAULT_THRESHOLD))
    ));
    let data = json!({
        "station": station_json(&station),
        "flow": flow_v,
        "flow_text": flow_text,
        "flow_text_en": gloss,
        "measured_at": iso_time(measured),
        "threshold": threshold.unwrap_or(danger::DEFAULT_THRESHOLD),
        "danger": danger_json(&danger),
    });
    Ok(finish(lines, data))
}
