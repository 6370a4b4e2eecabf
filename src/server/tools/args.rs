//! The tools' arguments: typed, with the schemas (generated from these types) that clients see,
//! and parsing that names the argument at fault.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::common::ToolError;

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

pub(super) fn parse<T: for<'de> Deserialize<'de>>(tool: &str, args: Value) -> Result<T, ToolError> {
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

pub(super) fn city_or_default(city: Option<String>) -> String {
    city.filter(|c| !c.trim().is_empty())
        .unwrap_or_else(default_city)
}
