//! `get_forecast`: the next hours at one station.

use serde_json::json;

use super::common::{ToolError, ToolOutput, finish, station_json, station_label};
use crate::{
    domain::{bernese, trend::Trend},
    server::format::{celsius, glossed, iso_time, num, text},
    upstream::Upstream,
};

pub(super) async fn forecast(
    upstream: &Upstream,
    city: &str,
    hours: Option<i64>,
) -> Result<ToolOutput, ToolError> {
    let hours = hours.unwrap_or(2);
    if hours < 1 {
        return Err(ToolError::Argument(format!(
            "`hours` must be at least 1 (got {hours}); the Aareguru API forecasts 2 hours ahead"
        )));
    }
    let station = upstream.resolve_city(city).await?;
    let body = upstream.current(&station.slug).await?;
    let temp = num(&body, &["aare", "temperature"]);
    let fc = num(&body, &["aare", "forecast2h"]);
    let trend = Trend::between(temp, fc);
    let fc_text = text(&body, &["aare", "forecast2h_text"]);
    let mut lines = vec![format!(
        "Forecast for {}: now {}, in 2 hours {}.",
        station_label(&station),
        celsius(temp),
        celsius(fc)
    )];
    match trend {
        Some((t, d)) => {
            lines.push(format!(
                "Trend: {} ({:+} °C; changes under 0.3 °C count as stable).",
                t.as_str(),
                d
            ));
            lines.push(t.timing_advice().to_string());
        }
        None => lines.push("No trend: the current value or the forecast is missing.".into()),
    }
    if let Some(t) = fc_text {
        lines.push(format!("Aareguru says: {}.", glossed(t, bernese::gloss(t))));
    }
    let note = (hours != 2).then(|| {
        if hours < 2 {
            format!("You asked for {hours} h: the API only forecasts exactly 2 hours ahead, shown above.")
        } else {
            format!(
                "You asked for {hours} h: the API forecasts the water temperature only 2 hours ahead. \
                 The daily weather outlook is in get_current_conditions."
            )
        }
    });
    if let Some(n) = &note {
        lines.push(n.clone());
    }
    let data = json!({
        "station": station_json(&station),
        "hours_requested": hours,
        "hours_available": 2,
        "current": temp,
        "forecast2h": fc,
        "forecast2h_text": fc_text,
        "forecast2h_text_en": fc_text.and_then(bernese::gloss),
        "trend": trend.map(|(t, _)| t.as_str()),
        "diff": trend.map(|(_, d)| d),
        "recommendation": trend.map(|(t, _)| t.timing_advice()),
        "note": note,
        "measured_at": iso_time(num(&body, &["aare", "timestamp"])),
    });
    Ok(finish(lines, data))
}
