//! The seven tools: their input schemas (public API, snapshot-tested) and what they answer, one
//! file per tool family, with what they share in `common.rs`.
//! Tools see typed arguments and the upstream client; never JSON-RPC. Every failure a person can
//! act on (unknown city, bad date, upstream down) becomes a [`ToolError`], which the handler turns
//! into an `isError: true` result.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde_json::Value;

use crate::{domain::ATTRIBUTION, upstream::Upstream};

mod args;
mod cities;
mod common;
mod current;
mod danger;
mod forecast;
mod history;
mod schemas;

pub use self::{
    args::{CityArgs, CompareArgs, ForecastArgs, HistoryArgs, NoArgs, TimeArg},
    common::{ToolError, ToolOutput},
    history::summarise_history,
};
use self::{
    args::{city_or_default, parse},
    cities::{compare_cities, list_cities},
    current::{current_conditions, current_temperature},
    danger::flow_danger_level,
    forecast::forecast,
    history::historical_data,
};

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
    let mut tool = Tool::new(
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
    );
    if let Some(Value::Object(output)) = schemas::output_schema(name) {
        tool = tool.with_raw_output_schema(Arc::new(output));
    }
    tool
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
            let output = t.output_schema.as_ref().expect("an output schema");
            assert_eq!(output["type"], "object", "{}", t.name);
            assert!(t.description.as_deref().unwrap().contains("aare.guru"));
        }
    }
}
