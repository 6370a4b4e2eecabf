//! The seven tools: their input schemas (public API, snapshot-tested) and what they answer, one
//! file per tool family, with what they share in `common.rs`.
//! Tools see typed arguments and the upstream client; never JSON-RPC. Every failure a person can
//! act on (unknown city, bad date, upstream down) becomes a [`ToolError`], which the handler turns
//! into an `isError: true` result.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::{
    domain::ATTRIBUTION,
    upstream::{CityError, Upstream, UpstreamError},
};

mod cities;
mod common;
mod current;
mod danger;
mod forecast;
mod history;

pub use self::history::summarise_history;
use self::{
    cities::{compare_cities, list_cities},
    current::{current_conditions, current_temperature},
    danger::flow_danger_level,
    forecast::forecast,
    history::historical_data,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
