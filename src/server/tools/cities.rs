//! `list_cities` and `compare_cities`: every station, side by side.

use futures::future::join_all;
use serde_json::{Value, json};

use super::common::{
    ToolError, ToolOutput, danger_json, danger_of, finish, station_json, station_label,
};
use crate::{
    domain::{city::Station, danger::DangerLevel},
    server::format::{celsius, flow, iso_time, num, trim},
    upstream::Upstream,
};

pub(super) async fn list_cities(upstream: &Upstream) -> Result<ToolOutput, ToolError> {
    let body = upstream.cities_raw().await?;
    let mut lines = vec!["Aare stations (use the slug as `city`):".to_string()];
    let mut items = vec![];
    for c in body.as_array().into_iter().flatten() {
        let Some(slug) = c.get("city").and_then(Value::as_str) else {
            continue;
        };
        let name = c.get("name").and_then(Value::as_str).unwrap_or(slug);
        let long = c.get("longname").and_then(Value::as_str).unwrap_or(name);
        let temp = num(c, &["aare"]);
        let lat = num(c, &["coordinates", "lat"]);
        let lon = num(c, &["coordinates", "lon"]);
        lines.push(format!(
            "- {slug}: {name} ({long}), {}{}",
            celsius(temp),
            match (lat, lon) {
                (Some(a), Some(o)) => format!(", at {}, {}", trim(a), trim(o)),
                _ => String::new(),
            }
        ));
        items.push(json!({
            "slug": slug, "name": name, "long_name": long,
            "coordinates": {"lat": lat, "lon": lon},
            "temperature": temp,
            "temperature_precise": num(c, &["aare_prec"]),
            "measured_at": iso_time(num(c, &["time"])),
        }));
    }
    let count = items.len();
    Ok(finish(lines, json!({"count": count, "cities": items})))
}

pub(super) async fn compare_cities(
    upstream: &Upstream,
    cities: Option<Vec<String>>,
) -> Result<ToolOutput, ToolError> {
    let stations = upstream.stations().await?;
    let mut wanted: Vec<Station> = vec![];
    let mut failures: Vec<Value> = vec![];
    match cities.filter(|c| !c.is_empty()) {
        None => wanted = stations.clone(),
        Some(list) => {
            for input in list {
                match crate::domain::city::resolve(&input, &stations) {
                    Some(s) if !wanted.iter().any(|w| w.slug == s.slug) => wanted.push(s.clone()),
                    Some(_) => {}
                    None => failures.push(json!({"city": input.trim(), "error": format!(
                        "unknown city; known stations: {}", crate::domain::city::describe_all(&stations))})),
                }
            }
        }
    }
    let fetched = join_all(wanted.iter().map(|s| upstream.current(&s.slug))).await;
    let mut rows = vec![];
    for (station, result) in wanted.iter().zip(fetched) {
        match result {
            Ok(body) => {
                let danger = danger_of(&body);
                rows.push((
                    station,
                    num(&body, &["aare", "temperature"]),
                    num(&body, &["aare", "flow"]),
                    danger,
                ));
            }
            Err(e) => failures.push(json!({"city": station.slug, "error": e.to_string()})),
        }
    }
    if rows.is_empty() {
        let reasons: Vec<String> = failures
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f["city"].as_str().unwrap_or("?"),
                    f["error"].as_str().unwrap_or("?")
                )
            })
            .collect();
        return Err(ToolError::Argument(format!(
            "no station could be compared. {}",
            reasons.join("; ")
        )));
    }
    let warmest = rows
        .iter()
        .filter(|r| r.1.is_some())
        .max_by(|a, b| a.1.unwrap().total_cmp(&b.1.unwrap()));
    let coldest = rows
        .iter()
        .filter(|r| r.1.is_some())
        .min_by(|a, b| a.1.unwrap().total_cmp(&b.1.unwrap()));
    let safest = rows.iter().filter(|r| r.3.level > 0).min_by(|a, b| {
        a.3.level
            .cmp(&b.3.level)
            .then(a.2.unwrap_or(f64::MAX).total_cmp(&b.2.unwrap_or(f64::MAX)))
    });
    // Recommend the warmest station whose flow is at most moderate.
    let recommended = rows
        .iter()
        .filter(|r| r.1.is_some() && (1..=2).contains(&r.3.level))
        .max_by(|a, b| a.1.unwrap().total_cmp(&b.1.unwrap()));

    let mut lines = vec!["Station comparison:".to_string()];
    for (s, t, f, d) in &rows {
        lines.push(format!(
            "- {}: {}, flow {}, danger level {} ({})",
            station_label(s),
            celsius(*t),
            flow(*f),
            d.level,
            d.label
        ));
    }
    for f in &failures {
        lines.push(format!(
            "- {}: not available – {}",
            f["city"].as_str().unwrap_or("?"),
            f["error"].as_str().unwrap_or("?")
        ));
    }
    let name =
        |r: Option<&(&Station, Option<f64>, Option<f64>, DangerLevel)>| r.map(|r| r.0.slug.clone());
    if let Some(w) = warmest {
        lines.push(format!(
            "Warmest: {} ({}).",
            station_label(w.0),
            celsius(w.1)
        ));
    }
    if let Some(c) = coldest {
        lines.push(format!(
            "Coldest: {} ({}).",
            station_label(c.0),
            celsius(c.1)
        ));
    }
    if let Some(s) = safest {
        lines.push(format!(
            "Safest: {} (danger level {}, {}).",
            station_label(s.0),
            s.3.level,
            flow(s.2)
        ));
    }
    let recommendation = match recommended {
        Some(r) => format!(
            "Recommendation: {} – the warmest water ({}) among stations with at most moderate flow.",
            station_label(r.0),
            celsius(r.1)
        ),
        None => "Recommendation: none of these stations has safe or moderate flow right now; better not swim in the Aare today.".to_string(),
    };
    lines.push(recommendation.clone());
    let data = json!({
        "stations": rows.iter().map(|(s, t, f, d)| json!({
            "station": station_json(s), "temperature": t, "flow": f, "danger": danger_json(d)
        })).collect::<Vec<_>>(),
        "failures": failures,
        "warmest": name(warmest),
        "coldest": name(coldest),
        "safest": name(safest),
        "recommended": name(recommended),
        "recommendation": recommendation,
    });
    Ok(finish(lines, data))
}
