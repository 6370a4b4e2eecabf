//! `get_current_temperature` and `get_current_conditions`: one station, now.

use serde_json::{Value, json};

use super::common::{
    ToolError, ToolOutput, danger_json, danger_of, finish, station_json, station_label,
};
use crate::{
    domain::{bernese, city::Station, season::Season, trend::Trend},
    server::format::{celsius, flow, glossed, iso_time, local_time, num, text, trim},
    upstream::Upstream,
};

pub(super) async fn current_temperature(
    upstream: &Upstream,
    city: &str,
) -> Result<ToolOutput, ToolError> {
    let station = upstream.resolve_city(city).await?;
    let body = upstream.current(&station.slug).await?;
    let temp = num(&body, &["aare", "temperature"]);
    let precise = num(&body, &["aare", "temperature_prec"]);
    let measured = num(&body, &["aare", "timestamp"]);
    let danger = danger_of(&body);
    let label = station_label(&station);

    let mut lines = vec![];
    match temp {
        Some(t) => {
            let mut line = format!("Aare at {label}: {}", celsius(Some(t)));
            if let Some(p) = precise {
                line.push_str(&format!(" (precise: {} °C)", trim(p)));
            }
            if let Some(when) = local_time(measured) {
                line.push_str(&format!(", measured {when}"));
            }
            lines.push(line + ".");
        }
        None => lines.push(format!(
            "No water temperature measurement is available for {label} right now."
        )),
    }
    let bern_text = text(&body, &["aare", "temperature_text"]);
    let gloss = bern_text.and_then(|t| bernese::gloss_temperature(t, temp));
    if let Some(t) = bern_text {
        lines.push(format!("Aareguru says: {}.", glossed(t, gloss.as_deref())));
    }
    let warning = danger.warning();
    if let Some(w) = &warning {
        lines.push(w.clone());
    }
    let warmer = match temp {
        Some(t) if t < 18.0 => warmer_station(upstream, &station.slug, t).await,
        _ => None,
    };
    if let Some((s, wt)) = &warmer {
        lines.push(format!(
            "Warmer right now: {} at {} (+{} °C).",
            station_label(s),
            celsius(Some(*wt)),
            trim(wt - temp.unwrap_or(*wt))
        ));
    }
    let data = json!({
        "station": station_json(&station),
        "temperature": temp,
        "temperature_precise": precise,
        "temperature_text": bern_text,
        "temperature_text_short": text(&body, &["aare", "temperature_text_short"]),
        "temperature_text_en": gloss,
        "measured_at": iso_time(measured),
        "measured_at_local": local_time(measured),
        "flow": num(&body, &["aare", "flow"]),
        "danger": danger_json(&danger),
        "warning": warning,
        "warmer_station": warmer.as_ref().map(|(s, t)| json!({"station": station_json(s), "temperature": t})),
    });
    Ok(finish(lines, data))
}

/// The warmest other station more than 1 °C warmer than `temp`, from the `/cities` overview.
/// Best effort: if the overview cannot be fetched the suggestion is simply left out.
pub(super) async fn warmer_station(
    upstream: &Upstream,
    slug: &str,
    temp: f64,
) -> Option<(Station, f64)> {
    let body = upstream.cities_raw().await.ok()?;
    let stations = upstream.stations().await.ok()?;
    body.as_array()?
        .iter()
        .filter_map(|c| {
            let other = c.get("city")?.as_str()?;
            let t = c.get("aare")?.as_f64()?;
            (other != slug && t > temp + 1.0).then_some((other, t))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .and_then(|(other, t)| {
            let s = stations.iter().find(|s| s.slug == other)?.clone();
            Some((s, t))
        })
}

pub(super) async fn current_conditions(
    upstream: &Upstream,
    city: &str,
) -> Result<ToolOutput, ToolError> {
    let station = upstream.resolve_city(city).await?;
    let body = upstream.current(&station.slug).await?;
    let aare = |k: &str| num(&body, &["aare", k]);
    let temp = aare("temperature");
    let flow_v = aare("flow");
    let measured = aare("timestamp");
    let danger = danger_of(&body);
    let trend = Trend::between(temp, aare("forecast2h"));
    let season = Season::at(
        measured
            .and_then(|m| jiff::Timestamp::from_second(m as i64).ok())
            .unwrap_or_else(jiff::Timestamp::now),
    );
    let temp_text = text(&body, &["aare", "temperature_text"]);
    let temp_gloss = temp_text.and_then(|t| bernese::gloss_temperature(t, temp));
    let flow_text = text(&body, &["aare", "flow_text"]);
    let flow_gloss = flow_text.and_then(|t| bernese::gloss_flow(t, flow_v));
    let fc_text = text(&body, &["aare", "forecast2h_text"]);
    let fc_gloss = fc_text.and_then(bernese::gloss);

    let mut lines = vec![format!(
        "Conditions at {}{}:",
        station_label(&station),
        local_time(measured).map_or(String::new(), |t| format!(", measured {t}"))
    )];
    let mut water = format!("- Water: {}", celsius(temp));
    if let Some(t) = temp_text {
        water.push_str(&format!(" – {}", glossed(t, temp_gloss.as_deref())));
    }
    lines.push(water);
    let mut fl = format!("- Flow: {}", flow(flow_v));
    if let Some(t) = flow_text {
        fl.push_str(&format!(" – {}", glossed(t, flow_gloss.as_deref())));
    }
    lines.push(fl);
    if let Some(h) = aare("height") {
        lines.push(format!("- Water level: {} m above sea level", trim(h)));
    }
    if let Some(f) = aare("forecast2h") {
        let mut l = format!("- In 2 hours: {}", celsius(Some(f)));
        if let Some((t, d)) = trend {
            l.push_str(&format!(" ({}, {:+} °C)", t.as_str(), d));
        }
        if let Some(t) = fc_text {
            l.push_str(&format!(" – {}", glossed(t, fc_gloss)));
        }
        lines.push(l);
    }
    lines.push(format!(
        "- Danger level: {} ({}) – {}",
        danger.level, danger.label, danger.advice
    ));
    if let Some(max) = num(&body, &["aare", "historical_temp_max", "value"]) {
        lines.push(format!(
            "- Record temperature: {}{}",
            celsius(Some(max)),
            local_time(num(&body, &["aare", "historical_temp_max", "timestamp"]))
                .map_or(String::new(), |t| format!(" ({t})"))
        ));
    }

    // Weather
    let air = num(&body, &["weather", "current", "tt"]);
    let rain = num(&body, &["weather", "current", "rr"]);
    if air.is_some() || rain.is_some() {
        lines.push(format!(
            "- Weather now: air {}, rain {} mm",
            celsius(air),
            rain.map_or("no data".into(), trim)
        ));
    }
    let mut today = vec![];
    for (key, part) in [("v", "morning"), ("n", "afternoon"), ("a", "evening")] {
        let Some(p) = at_obj(&body, &["weather", "today", key]) else {
            continue;
        };
        let syt = p.get("syt").and_then(Value::as_str);
        let line = format!(
            "{part}: {}{}, rain risk {}%",
            syt.map_or(String::new(), |s| format!(
                "{}, ",
                glossed(s, bernese::gloss(s))
            )),
            celsius(p.get("tt").and_then(Value::as_f64)),
            p.get("rrisk")
                .and_then(Value::as_f64)
                .map_or("?".into(), trim)
        );
        today.push(json!({"part": part, "symbol_text": syt, "symbol_text_en": syt.and_then(bernese::gloss),
            "air_temperature": p.get("tt"), "rain_mm": p.get("rr"), "rain_risk_percent": p.get("rrisk")}));
        lines.push(format!("- Today {line}"));
    }
    let mut outlook = vec![];
    for day in body
        .pointer("/weather/forecast")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = day.get("day").and_then(Value::as_str).unwrap_or("?");
        let syt = day.get("syt").and_then(Value::as_str);
        lines.push(format!(
            "- {}: {}{} to {}, rain risk {}%",
            glossed(name, bernese::gloss(name)),
            syt.map_or(String::new(), |s| format!(
                "{}, ",
                glossed(s, bernese::gloss(s))
            )),
            celsius(day.get("tn").and_then(Value::as_f64)),
            celsius(day.get("tx").and_then(Value::as_f64)),
            day.get("rrisk")
                .and_then(Value::as_f64)
                .map_or("?".into(), trim)
        ));
        outlook.push(json!({"day": name, "day_en": bernese::gloss(name), "date": iso_time(day.get("timestamp").and_then(Value::as_f64)),
            "symbol_text": syt, "symbol_text_en": syt.and_then(bernese::gloss),
            "air_min": day.get("tn"), "air_max": day.get("tx"), "rain_mm": day.get("rr"), "rain_risk_percent": day.get("rrisk")}));
    }
    // Sun
    if let Some(total) = text(&body, &["sun", "today", "suntotal"]) {
        lines.push(format!(
            "- Sunshine today: {total} h{}",
            num(&body, &["sun", "today", "sunrelative"])
                .map_or(String::new(), |r| format!(" ({}% of possible)", trim(r)))
        ));
    }
    let sunlocations: Vec<Value> = body
        .pointer("/sun/sunlocations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|l| {
            json!({"name": l.get("name"), "sunrise": l.get("sunriselocal"), "sunset": l.get("sunsetlocal"),
                   "sun_left": l.get("timeleftstring")})
        })
        .collect();
    for l in &sunlocations {
        if let (Some(n), Some(s)) = (l["name"].as_str(), l["sunset"].as_str()) {
            lines.push(format!("- Sun at {n}: sets {s}"));
        }
    }
    if let Some(state) = text(&body, &["bueber", "state"]) {
        lines.push(format!("- Bueber (Marzili river pool) state: {state}"));
    }
    lines.push(format!("- Season: {}", season.advice()));

    let data = json!({
        "station": station_json(&station),
        "measured_at": iso_time(measured),
        "measured_at_local": local_time(measured),
        "water": {
            "temperature": temp,
            "temperature_precise": aare("temperature_prec"),
            "temperature_text": temp_text,
            "temperature_text_en": temp_gloss,
            "flow": flow_v,
            "flow_text": flow_text,
            "flow_text_en": flow_gloss,
            "height": aare("height"),
            "forecast2h": aare("forecast2h"),
            "forecast2h_text": fc_text,
            "forecast2h_text_en": fc_gloss,
            "trend": trend.map(|(t, _)| t.as_str()),
            "trend_diff": trend.map(|(_, d)| d),
            "historical_max": at_obj(&body, &["aare", "historical_temp_max"]),
        },
        "danger": danger_json(&danger),
        "weather": {
            "now": {"air_temperature": air, "rain_mm": rain},
            "today": today,
            "forecast": outlook,
        },
        "sun": {
            "today_total": text(&body, &["sun", "today", "suntotal"]),
            "today_relative_percent": num(&body, &["sun", "today", "sunrelative"]),
            "locations": sunlocations,
        },
        "bueber": at_obj(&body, &["bueber"]),
        "season": season.as_str(),
        "seasonal_advice": season.advice(),
    });
    Ok(finish(lines, data))
}

fn at_obj<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    crate::server::format::at(v, path).filter(|v| v.is_object())
}
