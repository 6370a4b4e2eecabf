//! The seven tools: their input schemas (public API, snapshot-tested) and what they answer.
//! Tools see typed arguments and the upstream client; never JSON-RPC. Every failure a person can
//! act on (unknown city, bad date, upstream down) becomes a [`ToolError`], which the handler turns
//! into an `isError: true` result.

use std::sync::Arc;

use futures::future::join_all;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::format::{celsius, flow, glossed, iso_time, local_time, num, round2, text, trim};
use crate::domain::{
    ATTRIBUTION, bernese,
    city::Station,
    danger::{self, DangerLevel},
    season::Season,
    timespec,
    trend::Trend,
};
use crate::upstream::{CityError, Upstream, UpstreamError};

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

fn default_city() -> String {
    "bern".to_string()
}

/// Arguments of the tools that take one station.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CityArgs {
    /// Station to ask about: its slug (`bern`, `thun`, `interlaken`, `olten`, …) or its name
    /// (`Bärn`, `Interlake`, `Bern, Schönau`); any case. Call `list_cities` for all stations.
    #[serde(default)]
    #[schemars(default = "default_city")]
    pub city: Option<String>,
}

/// Arguments of `get_forecast`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ForecastArgs {
    /// Station slug or name, as for `get_current_temperature`.
    #[serde(default)]
    #[schemars(default = "default_city")]
    pub city: Option<String>,
    /// How far ahead to look, in hours. The Aareguru API forecasts the water temperature only
    /// 2 hours ahead; larger values still get the 2-hour forecast plus the daily weather outlook.
    #[serde(default)]
    #[schemars(default = "default_hours", range(min = 1))]
    pub hours: Option<i64>,
}

fn default_hours() -> i64 {
    2
}

/// A time argument: text such as `-7 days` or `2024-08-19`, or Unix seconds as a number.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum TimeArg {
    Seconds(i64),
    Text(String),
}

/// Arguments of `get_historical_data`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct HistoryArgs {
    /// Station slug or name, as for `get_current_temperature`.
    pub city: String,
    /// Start of the window: `now`, `today`, `yesterday`, Unix seconds, an ISO 8601 date or
    /// date-time (`2024-08-19`, `2024-08-19T14:30`, `2024-08-19T14:30:00+02:00`; without an
    /// offset it is Swiss local time), or a relative form (`-7 days`, `-1 week`, `-12 hours`).
    pub start: TimeArg,
    /// End of the window, in the same forms as `start` (commonly `now`). Must be after `start`.
    pub end: TimeArg,
}

/// Arguments of `compare_cities`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CompareArgs {
    /// Stations to compare (slugs or names). Leave out to compare every station.
    #[serde(default)]
    pub cities: Option<Vec<String>>,
}

/// Arguments of `list_cities` (none).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct NoArgs {}

fn tool<T: JsonSchema + 'static>(name: &'static str, title: &str, description: &str) -> Tool {
    let mut schema: JsonObject = (*rmcp::handler::server::common::schema_for_type::<T>()).clone();
    // The Rust type's name and doc comment are not for clients.
    schema.remove("title");
    schema.remove("description");
    // Doc comments wrap at 100 columns; a schema description is one paragraph.
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        for prop in props.values_mut() {
            if let Some(Value::String(d)) = prop.get_mut("description") {
                *d = d.split_whitespace().collect::<Vec<_>>().join(" ");
            }
        }
    }
    Tool::new(
        name,
        format!("{description}\n\n{ATTRIBUTION}"),
        Arc::new(schema),
    )
    .with_title(title)
    .with_annotations(
        ToolAnnotations::with_title(title)
            .read_only(true)
            .destructive(false)
            .idempotent(true)
            .open_world(true),
    )
}

/// The tool list, in the order `tools/list` shows it.
pub fn catalog() -> Vec<Tool> {
    vec![
        tool::<CityArgs>(
            "get_current_temperature",
            "Current Aare water temperature",
            "Current water temperature of the Aare at one station (°C, precise value), the \
             Bernese description with an English gloss, the measurement time, a safety warning \
             when the flow is high, and a warmer station nearby when the water is below 18 °C. \
             Use for quick questions like \"how warm is the Aare in Bern?\".",
        ),
        tool::<CityArgs>(
            "get_current_conditions",
            "Full current conditions",
            "Everything known right now for one station: water temperature, flow, water level, \
             2-hour temperature forecast, weather now and the next days, sunshine, flow danger \
             level and seasonal advice. Use when planning a swim or asking \"should I go?\".",
        ),
        tool::<HistoryArgs>(
            "get_historical_data",
            "Historical measurements",
            "Time series of water temperature and flow for one station between `start` and \
             `end`, with min/max/mean where the series is recognised. Use for trends over days \
             or weeks.",
        ),
        tool::<NoArgs>(
            "list_cities",
            "List stations",
            "Every Aare measuring station: slug (use it as `city`), Bernese name, location, \
             coordinates and current water temperature.",
        ),
        tool::<CityArgs>(
            "get_flow_danger_level",
            "Flow danger level",
            "Flow (m³/s) at one station with its danger level 1 (safe) to 5 (extremely \
             dangerous), the label and safety advice. Use for \"is it safe to swim?\".",
        ),
        tool::<CompareArgs>(
            "compare_cities",
            "Compare stations",
            "Compares stations side by side (all when `cities` is left out): temperature, flow \
             and danger level for each; the warmest, coldest and safest; and a recommendation. \
             A station that cannot be fetched is reported without failing the rest.",
        ),
        tool::<ForecastArgs>(
            "get_forecast",
            "Temperature forecast",
            "Current water temperature against the 2-hour forecast, the trend (rising, falling \
             or stable within 0.3 °C) and when to go. Use for \"will it get warmer?\".",
        ),
    ]
}

/// Runs tool `name`; `None` when there is no such tool (a protocol error, not a tool error).
pub async fn call(
    upstream: &Upstream,
    name: &str,
    arguments: Option<JsonObject>,
) -> Option<Result<ToolOutput, ToolError>> {
    let args = Value::Object(arguments.unwrap_or_default());
    Some(match name {
        "get_current_temperature" => match parse::<CityArgs>(name, args) {
            Ok(a) => current_temperature(upstream, &city_or_default(a.city)).await,
            Err(e) => Err(e),
        },
        "get_current_conditions" => match parse::<CityArgs>(name, args) {
            Ok(a) => current_conditions(upstream, &city_or_default(a.city)).await,
            Err(e) => Err(e),
        },
        "get_historical_data" => match parse::<HistoryArgs>(name, args) {
            Ok(a) => historical_data(upstream, a).await,
            Err(e) => Err(e),
        },
        "list_cities" => list_cities(upstream).await,
        "get_flow_danger_level" => match parse::<CityArgs>(name, args) {
            Ok(a) => flow_danger_level(upstream, &city_or_default(a.city)).await,
            Err(e) => Err(e),
        },
        "compare_cities" => match parse::<CompareArgs>(name, args) {
            Ok(a) => compare_cities(upstream, a.cities).await,
            Err(e) => Err(e),
        },
        "get_forecast" => match parse::<ForecastArgs>(name, args) {
            Ok(a) => forecast(upstream, &city_or_default(a.city), a.hours).await,
            Err(e) => Err(e),
        },
        _ => return None,
    })
}

fn parse<T: for<'de> Deserialize<'de>>(tool: &str, args: Value) -> Result<T, ToolError> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        // serde's "data did not match any variant of untagged enum TimeArg" says nothing useful.
        let msg = if msg.contains("untagged enum TimeArg") {
            "expected a string such as \"-7 days\" or \"2024-08-19\", or Unix seconds as an integer"
                .to_string()
        } else {
            msg
        };
        if path == "." {
            ToolError::Argument(format!("invalid arguments for {tool}: {msg}"))
        } else {
            ToolError::Argument(format!("invalid argument `{path}` for {tool}: {msg}"))
        }
    })
}

fn city_or_default(city: Option<String>) -> String {
    city.filter(|c| !c.trim().is_empty())
        .unwrap_or_else(default_city)
}

/// The station's display line: "Bern (Bärn, Bern, Schönau)".
fn station_label(s: &Station) -> String {
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

fn station_json(s: &Station) -> Value {
    json!({"slug": s.slug, "name": s.name, "long_name": s.long_name})
}

fn danger_of(body: &Value) -> DangerLevel {
    danger::danger_level(
        num(body, &["aare", "flow"]),
        num(body, &["aare", "flow_scale_threshold"]),
    )
}

fn danger_json(d: &DangerLevel) -> Value {
    json!({"level": d.level, "label": d.label, "advice": d.advice})
}

fn finish(mut lines: Vec<String>, data: Value) -> ToolOutput {
    lines.push(String::new());
    lines.push(ATTRIBUTION.to_string());
    ToolOutput {
        text: lines.join("\n"),
        data,
    }
}

async fn current_temperature(upstream: &Upstream, city: &str) -> Result<ToolOutput, ToolError> {
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
async fn warmer_station(upstream: &Upstream, slug: &str, temp: f64) -> Option<(Station, f64)> {
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

async fn current_conditions(upstream: &Upstream, city: &str) -> Result<ToolOutput, ToolError> {
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
    super::format::at(v, path).filter(|v| v.is_object())
}

async fn flow_danger_level(upstream: &Upstream, city: &str) -> Result<ToolOutput, ToolError> {
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

async fn list_cities(upstream: &Upstream) -> Result<ToolOutput, ToolError> {
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

async fn compare_cities(
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

async fn forecast(
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

async fn historical_data(upstream: &Upstream, args: HistoryArgs) -> Result<ToolOutput, ToolError> {
    let now = timespec::now_in_zurich();
    let resolve = |which: &str, arg: &TimeArg| -> Result<jiff::Timestamp, ToolError> {
        let parsed = match arg {
            TimeArg::Seconds(s) => timespec::parse(&s.to_string(), &now),
            TimeArg::Text(t) => timespec::parse(t, &now),
        };
        parsed.map_err(|e| ToolError::Argument(format!("`{which}`: {e}")))
    };
    let start = resolve("start", &args.start)?;
    let end = resolve("end", &args.end)?;
    if start >= end {
        return Err(ToolError::Argument(format!(
            "`start` ({}) must be before `end` ({}); for the last week use start \"-7 days\" and end \"now\"",
            local_time(Some(start.as_second() as f64)).unwrap_or_default(),
            local_time(Some(end.as_second() as f64)).unwrap_or_default()
        )));
    }
    let station = upstream.resolve_city(&args.city).await?;
    let body = upstream
        .get(
            "history",
            &[
                ("city", station.slug.clone()),
                ("start", start.as_second().to_string()),
                ("end", end.as_second().to_string()),
            ],
        )
        .await?;
    let summary = summarise_history(&body);
    let from = local_time(Some(start.as_second() as f64)).unwrap_or_default();
    let to = local_time(Some(end.as_second() as f64)).unwrap_or_default();
    let mut lines = vec![format!(
        "History for {} from {from} to {to}.",
        station_label(&station)
    )];
    match summary.as_object().filter(|s| !s.is_empty()) {
        Some(series) => {
            for (name, s) in series {
                lines.push(format!(
                    "- {name}: {} values, min {}, max {}, mean {}",
                    s["count"], s["min"], s["max"], s["mean"]
                ));
            }
        }
        None => lines.push(
            "The response has no series in a shape this summarises; the raw data follows.".into(),
        ),
    }
    lines.push(String::new());
    lines.push("Raw data from the Aareguru API:".into());
    lines.push(serde_json::to_string(&*body).unwrap_or_default());
    let data = json!({
        "station": station_json(&station),
        "start": start.to_string(),
        "end": end.to_string(),
        "start_unix": start.as_second(),
        "end_unix": end.as_second(),
        "summary": summary,
        "data": &*body,
    });
    Ok(finish(lines, data))
}

/// min/max/mean/count for every `data.<series>` that is a list of `[timestamp, value]` pairs
/// (the shape one known client parses); an empty object for any other shape.
pub fn summarise_history(body: &Value) -> Value {
    let mut out = serde_json::Map::new();
    let Some(series) = body.get("data").and_then(Value::as_object) else {
        return Value::Object(out);
    };
    for (name, points) in series {
        let Some(points) = points.as_array() else {
            continue;
        };
        let pairs: Vec<Option<f64>> = points
            .iter()
            .filter_map(|p| {
                let p = p.as_array().filter(|p| p.len() == 2)?;
                p[0].as_f64()?;
                Some(p[1].as_f64())
            })
            .collect();
        if pairs.is_empty() || pairs.len() != points.len() {
            continue;
        }
        let values: Vec<f64> = pairs.into_iter().flatten().collect();
        let stats = if values.is_empty() {
            json!({"count": 0, "min": null, "max": null, "mean": null})
        } else {
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            json!({"count": values.len(), "min": round2(min), "max": round2(max), "mean": round2(mean)})
        };
        out.insert(name.clone(), stats);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_summary_of_the_known_shape() {
        let body = json!({"status": "ok", "data": {
            "temperature": [[1, 12.0], [2, null], [3, 14.5], [4, 0.0]],
            "flow": [[1, 100], [2, 200]],
            "other": "x"
        }});
        let s = summarise_history(&body);
        assert_eq!(
            s["temperature"],
            json!({"count": 3, "min": 0.0, "max": 14.5, "mean": 8.83})
        );
        assert_eq!(s["flow"]["mean"], json!(150.0));
        assert!(s.get("other").is_none());
    }

    #[test]
    fn history_summary_of_unknown_shapes_is_empty() {
        assert_eq!(summarise_history(&json!([1, 2])), json!({}));
        assert_eq!(summarise_history(&json!({"data": [{"t": 1}]})), json!({}));
        assert_eq!(
            summarise_history(&json!({"data": {"x": [{"t": 1}]}})),
            json!({})
        );
    }

    #[test]
    fn argument_errors_name_the_field() {
        let e = parse::<CityArgs>("t", json!({"city": 42})).unwrap_err();
        assert!(e.to_string().contains("`city`"), "{e}");
        let e = parse::<HistoryArgs>("t", json!({"city": "bern", "start": true, "end": "now"}))
            .unwrap_err();
        assert!(
            e.to_string().contains("`start`") && e.to_string().contains("-7 days"),
            "{e}"
        );
        let e = parse::<HistoryArgs>("t", json!({"city": "bern"})).unwrap_err();
        assert!(e.to_string().contains("missing field `start`"), "{e}");
    }

    #[test]
    fn every_tool_has_a_described_object_schema() {
        let tools = catalog();
        assert_eq!(tools.len(), 7);
        for t in tools {
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
            assert!(t.description.as_deref().unwrap().contains("aare.guru"));
        }
    }
}
