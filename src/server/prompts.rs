//! The three prompts: ready-made requests that tell the model which tools to call and what to
//! write. Arguments arrive as strings; bad ones are protocol errors (invalid params), since a
//! prompt has no error result of its own.

use std::collections::HashMap;

use rmcp::{
    ErrorData as McpError,
    model::{GetPromptResult, Prompt, PromptArgument, PromptMessage, Role},
};

fn arg(name: &str, description: &str, required: bool) -> PromptArgument {
    PromptArgument::new(name)
        .with_description(description)
        .with_required(required)
}

pub fn list() -> Vec<Prompt> {
    vec![
        Prompt::new(
            "daily-swimming-report",
            Some("A swimming report for one station today: temperature, flow safety, weather and (optionally) the 2-hour forecast."),
            Some(vec![
                arg("city", "Station slug or name (default: bern)", false),
                arg("include_forecast", "true or false: include the 2-hour forecast (default: true)", false),
            ]),
        )
        .with_title("Daily swimming report"),
        Prompt::new(
            "compare-swimming-spots",
            Some("Compare all stations and recommend where to swim now."),
            Some(vec![
                arg("min_temperature", "Only recommend stations at least this warm, in °C (default: none)", false),
                arg("safety_only", "true or false: only consider stations with danger level 2 or lower (default: false)", false),
            ]),
        )
        .with_title("Compare swimming spots"),
        Prompt::new(
            "weekly-trend-analysis",
            Some("Analyse how water temperature and flow developed over the last days at one station."),
            Some(vec![
                arg("city", "Station slug or name (default: bern)", false),
                arg("days", "How many days back to look, 1 to 365 (default: 7)", false),
            ]),
        )
        .with_title("Weekly trend analysis"),
    ]
}

pub fn get(name: &str, args: Option<HashMap<String, String>>) -> Result<GetPromptResult, McpError> {
    let args = args.unwrap_or_default();
    let get = |k: &str| args.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let city = get("city").unwrap_or("bern");
    let (description, text) = match name {
        "daily-swimming-report" => {
            let forecast = flag(get("include_forecast"), "include_forecast", true)?;
            let mut text = format!(
                "Write today's swimming report for the Aare at {city}.\n\
                 1. Call get_current_conditions with city \"{city}\" for water temperature, flow, weather and sun.\n\
                 2. Call get_flow_danger_level with city \"{city}\" and state the danger level and its advice plainly.\n"
            );
            if forecast {
                text.push_str(&format!(
                    "3. Call get_forecast with city \"{city}\" and say whether to go now or later.\n"
                ));
            }
            text.push_str(
                "Keep it short and friendly. Translate the Bernese texts using the English glosses \
                 the tools provide. Put safety first: if the danger level is 3 or higher, say \
                 clearly that swimming is not recommended. End with the data attribution \
                 (aare.guru, BAFU).",
            );
            (format!("Daily swimming report for {city}"), text)
        }
        "compare-swimming-spots" => {
            let min = match get("min_temperature") {
                None => None,
                Some(v) => Some(v.parse::<f64>().ok().filter(|t| t.is_finite()).ok_or_else(|| {
                    McpError::invalid_params(
                        format!("min_temperature must be a number in °C, such as 18 or 17.5 (got {v:?})"),
                        None,
                    )
                })?),
            };
            let safety_only = flag(get("safety_only"), "safety_only", false)?;
            let mut text = String::from(
                "Find the best place to swim in the Aare right now.\n\
                 1. Call compare_cities without arguments to get every station's temperature, flow and danger level.\n",
            );
            if let Some(m) = min {
                text.push_str(&format!(
                    "2. Only recommend stations with water at {m} °C or warmer.\n"
                ));
            }
            if safety_only {
                text.push_str("3. Only consider stations with danger level 1 or 2.\n");
            }
            text.push_str(
                "Present a short ranked list with temperature, flow and danger level, then one \
                 clear recommendation. If nothing qualifies, say so. End with the data \
                 attribution (aare.guru, BAFU).",
            );
            ("Compare swimming spots".to_string(), text)
        }
        "weekly-trend-analysis" => {
            let days = match get("days") {
                None => 7,
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|d| (1..=365).contains(d))
                    .ok_or_else(|| {
                        McpError::invalid_params(
                            format!("days must be a whole number from 1 to 365 (got {v:?})"),
                            None,
                        )
                    })?,
            };
            let text = format!(
                "Analyse the last {days} days of the Aare at {city}.\n\
                 1. Call get_historical_data with city \"{city}\", start \"-{days} days\" and end \"now\".\n\
                 2. Call get_current_conditions with city \"{city}\" for today's values.\n\
                 Describe how water temperature and flow changed (min, max, mean, direction), \
                 note any flow peaks that made swimming dangerous, and compare today with the \
                 period. End with the data attribution (aare.guru, BAFU)."
            );
            (format!("{days}-day trend analysis for {city}"), text)
        }
        other => {
            return Err(McpError::invalid_params(
                format!(
                    "unknown prompt {other:?}; available: daily-swimming-report, \
                     compare-swimming-spots, weekly-trend-analysis"
                ),
                None,
            ));
        }
    };
    let mut result = GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]);
    result.description = Some(description);
    Ok(result)
}

fn flag(value: Option<&str>, name: &str, default: bool) -> Result<bool, McpError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "yes" | "1" | "on") => Ok(true),
        Some("false" | "no" | "0" | "off") => Ok(false),
        Some(other) => Err(McpError::invalid_params(
            format!("{name} must be true or false (got {other:?})"),
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn text_of(r: &GetPromptResult) -> String {
        serde_json::to_value(&r.messages[0]).unwrap()["content"]["text"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn daily_report_mentions_forecast_only_when_asked() {
        let with = get("daily-swimming-report", args(&[("city", "thun")])).unwrap();
        assert!(text_of(&with).contains("get_forecast with city \"thun\""));
        let without = get(
            "daily-swimming-report",
            args(&[("city", "thun"), ("include_forecast", "false")]),
        )
        .unwrap();
        assert!(!text_of(&without).contains("get_forecast"));
    }

    #[test]
    fn bad_arguments_are_invalid_params() {
        for (name, a) in [
            ("weekly-trend-analysis", args(&[("days", "0")])),
            ("weekly-trend-analysis", args(&[("days", "many")])),
            (
                "compare-swimming-spots",
                args(&[("min_temperature", "warm")]),
            ),
            ("compare-swimming-spots", args(&[("safety_only", "maybe")])),
            ("nope", None),
        ] {
            let e = get(name, a).unwrap_err();
            assert_eq!(e.code.0, -32602, "{name}");
        }
    }

    #[test]
    fn weekly_analysis_uses_relative_start() {
        let r = get("weekly-trend-analysis", args(&[("days", "14")])).unwrap();
        assert!(text_of(&r).contains("start \"-14 days\""));
        assert!(text_of(&r).contains("city \"bern\""));
    }
}
