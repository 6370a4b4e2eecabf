//! The `outputSchema` of every tool: the shape of its `structuredContent` (public API, in the
//! golden `tools/list`). Every key a tool writes is required; a value the upstream may leave out
//! is nullable, because the tools write `null` rather than drop the key. Objects stay open
//! (`additionalProperties` is not restricted), so adding a field later is not a breaking change.
//!
//! The integration tests validate every tool's answer against these schemas for every recorded
//! upstream body.

use serde_json::{Map, Value, json};

fn nullable(ty: &str) -> Value {
    json!({"type": [ty, "null"]})
}

fn number() -> Value {
    nullable("number")
}

fn string() -> Value {
    nullable("string")
}

/// An object with exactly these keys, all required.
fn object(props: &[(&str, Value)]) -> Value {
    let properties: Map<String, Value> = props
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    let required: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
    json!({"type": "object", "properties": properties, "required": required})
}

fn or_null(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

/// A raw upstream object passed through as it came (or `null` when absent).
fn upstream_object(description: &str) -> Value {
    json!({"type": ["object", "null"], "description": description})
}

fn station() -> Value {
    object(&[
        ("slug", json!({"type": "string"})),
        ("name", json!({"type": "string"})),
        ("long_name", json!({"type": "string"})),
    ])
}

fn danger() -> Value {
    object(&[
        (
            "level",
            json!({"type": "integer", "minimum": 0, "maximum": 5,
                   "description": "1 (safe) to 5 (extremely dangerous); 0 when the flow is unknown"}),
        ),
        ("label", json!({"type": "string"})),
        ("advice", json!({"type": "string"})),
    ])
}

fn iso_time() -> Value {
    json!({"type": ["string", "null"], "format": "date-time"})
}

fn trend() -> Value {
    json!({"enum": ["rising", "falling", "stable", null]})
}

fn current_temperature() -> Value {
    object(&[
        ("station", station()),
        ("temperature", number()),
        ("temperature_precise", number()),
        ("temperature_text", string()),
        ("temperature_text_short", string()),
        ("temperature_text_en", string()),
        ("measured_at", iso_time()),
        ("measured_at_local", string()),
        ("flow", number()),
        ("danger", danger()),
        ("warning", string()),
        (
            "warmer_station",
            or_null(object(&[
                ("station", station()),
                ("temperature", json!({"type": "number"})),
            ])),
        ),
    ])
}

fn current_conditions() -> Value {
    let part = object(&[
        ("part", json!({"type": "string"})),
        ("symbol_text", string()),
        ("symbol_text_en", string()),
        ("air_temperature", number()),
        ("rain_mm", number()),
        ("rain_risk_percent", number()),
    ]);
    let day = object(&[
        ("day", json!({"type": "string"})),
        ("day_en", string()),
        ("date", iso_time()),
        ("symbol_text", string()),
        ("symbol_text_en", string()),
        ("air_min", number()),
        ("air_max", number()),
        ("rain_mm", number()),
        ("rain_risk_percent", number()),
    ]);
    let sun_location = object(&[
        ("name", string()),
        ("sunrise", string()),
        ("sunset", string()),
        ("sun_left", string()),
    ]);
    object(&[
        ("station", station()),
        ("measured_at", iso_time()),
        ("measured_at_local", string()),
        (
            "water",
            object(&[
                ("temperature", number()),
                ("temperature_precise", number()),
                ("temperature_text", string()),
                ("temperature_text_en", string()),
                ("flow", number()),
                ("flow_text", string()),
                ("flow_text_en", string()),
                ("height", number()),
                ("forecast2h", number()),
                ("forecast2h_text", string()),
                ("forecast2h_text_en", string()),
                ("trend", trend()),
                ("trend_diff", number()),
                (
                    "historical_max",
                    upstream_object("the upstream's record temperature object, as it came"),
                ),
            ]),
        ),
        ("danger", danger()),
        (
            "weather",
            object(&[
                (
                    "now",
                    object(&[("air_temperature", number()), ("rain_mm", number())]),
                ),
                ("today", json!({"type": "array", "items": part})),
                ("forecast", json!({"type": "array", "items": day})),
            ]),
        ),
        (
            "sun",
            object(&[
                ("today_total", string()),
                ("today_relative_percent", number()),
                ("locations", json!({"type": "array", "items": sun_location})),
            ]),
        ),
        (
            "bueber",
            upstream_object("the Marzili river pool's state object, as the upstream sent it"),
        ),
        (
            "season",
            json!({"enum": ["winter", "spring", "summer", "autumn"]}),
        ),
        ("seasonal_advice", json!({"type": "string"})),
    ])
}

fn historical_data() -> Value {
    let stats = object(&[
        ("count", json!({"type": "integer", "minimum": 0})),
        ("min", number()),
        ("max", number()),
        ("mean", number()),
    ]);
    object(&[
        ("station", station()),
        ("start", json!({"type": "string", "format": "date-time"})),
        ("end", json!({"type": "string", "format": "date-time"})),
        ("start_unix", json!({"type": "integer"})),
        ("end_unix", json!({"type": "integer"})),
        (
            "summary",
            json!({"type": "object", "additionalProperties": stats,
                   "description": "min/max/mean/count per recognised series (e.g. temperature, flow)"}),
        ),
        (
            "data",
            json!({"description": "the upstream's /history body, as it came"}),
        ),
    ])
}

fn list_cities() -> Value {
    let city = object(&[
        ("slug", json!({"type": "string"})),
        ("name", json!({"type": "string"})),
        ("long_name", json!({"type": "string"})),
        (
            "coordinates",
            object(&[("lat", number()), ("lon", number())]),
        ),
        ("temperature", number()),
        ("temperature_precise", number()),
        ("measured_at", iso_time()),
    ]);
    object(&[
        ("count", json!({"type": "integer", "minimum": 0})),
        ("cities", json!({"type": "array", "items": city})),
    ])
}

fn flow_danger_level() -> Value {
    object(&[
        ("station", station()),
        ("flow", number()),
        ("flow_text", string()),
        ("flow_text_en", string()),
        ("measured_at", iso_time()),
        ("threshold", json!({"type": "number"})),
        ("danger", danger()),
    ])
}

fn compare_cities() -> Value {
    let row = object(&[
        ("station", station()),
        ("temperature", number()),
        ("flow", number()),
        ("danger", danger()),
    ]);
    let failure = object(&[
        ("city", json!({"type": "string"})),
        ("error", json!({"type": "string"})),
    ]);
    object(&[
        ("stations", json!({"type": "array", "items": row})),
        ("failures", json!({"type": "array", "items": failure})),
        ("warmest", string()),
        ("coldest", string()),
        ("safest", string()),
        ("recommended", string()),
        ("recommendation", json!({"type": "string"})),
    ])
}

fn forecast() -> Value {
    object(&[
        ("station", station()),
        ("hours_requested", json!({"type": "integer"})),
        ("hours_available", json!({"const": 2})),
        ("current", number()),
        ("forecast2h", number()),
        ("forecast2h_text", string()),
        ("forecast2h_text_en", string()),
        ("trend", trend()),
        ("diff", number()),
        ("recommendation", string()),
        ("note", string()),
        ("measured_at", iso_time()),
    ])
}

/// The output schema of tool `name` (every tool of the catalog has one).
pub(super) fn output_schema(name: &str) -> Option<Value> {
    Some(match name {
        "get_current_temperature" => current_temperature(),
        "get_current_conditions" => current_conditions(),
        "get_historical_data" => historical_data(),
        "list_cities" => list_cities(),
        "get_flow_danger_level" => flow_danger_level(),
        "compare_cities" => compare_cities(),
        "get_forecast" => forecast(),
        _ => return None,
    })
}
