//! `get_historical_data`: a station's record over a time range, summarised.

use serde_json::{Value, json};

use super::{
    args::{HistoryArgs, TimeArg},
    common::{ToolError, ToolOutput, finish, station_json, station_label},
};
use crate::{
    domain::timespec,
    server::format::{local_time, round2},
    upstream::Upstream,
};

pub(super) async fn historical_data(
    upstream: &Upstream,
    args: HistoryArgs,
) -> Result<ToolOutput, ToolError> {
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
}
