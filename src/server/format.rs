//! Reading the upstream's loosely typed JSON (any field may be null or missing) and formatting
//! values for people: numbers, Swiss local times, glossed Bernese texts.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::domain::season::zurich;

/// A number at `path` (`["aare", "temperature"]`), `None` when missing, null or not numeric.
pub fn num(v: &Value, path: &[&str]) -> Option<f64> {
    at(v, path)?.as_f64().filter(|f| f.is_finite())
}

/// A string at `path`, `None` when missing, null, empty or not a string.
pub fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path)?.as_str().filter(|s| !s.trim().is_empty())
}

pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    (!cur.is_null()).then_some(cur)
}

/// "12.5 °C", or "no data".
pub fn celsius(t: Option<f64>) -> String {
    t.map_or_else(|| "no data".to_string(), |t| format!("{} °C", trim(t)))
}

/// "247 m³/s", or "no data".
pub fn flow(f: Option<f64>) -> String {
    f.map_or_else(|| "no data".to_string(), |f| format!("{} m³/s", trim(f)))
}

/// A number without trailing zeros: 12.50 → "12.5", 247.0 → "247".
pub fn trim(x: f64) -> String {
    let s = format!("{:.2}", x);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Unix seconds as "2023-05-09 13:20 CEST" in Swiss local time.
pub fn local_time(unix: Option<f64>) -> Option<String> {
    let ts = Timestamp::from_second(unix? as i64).ok()?;
    Some(
        ts.to_zoned_datetime(zurich())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string(),
    )
}

/// Unix seconds as RFC 3339 in UTC, for machine-readable output.
pub fn iso_time(unix: Option<f64>) -> Value {
    unix.and_then(|u| Timestamp::from_second(u as i64).ok())
        .map_or(Value::Null, |ts| json!(ts.to_string()))
}

/// `"Uschaflig chaut" (unbearably cold)` or just the quoted text when no gloss exists.
pub fn glossed(bernese: &str, gloss: Option<&str>) -> String {
    match gloss {
        Some(g) => format!("\"{bernese}\" ({g})"),
        None => format!("\"{bernese}\""),
    }
}

/// Rounds to two decimals for structured output (keeps JSON free of float noise).
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_and_zeros() {
        let v = json!({"aare": {"temperature": 0.0, "flow": null, "text": ""}});
        assert_eq!(num(&v, &["aare", "temperature"]), Some(0.0));
        assert_eq!(num(&v, &["aare", "flow"]), None);
        assert_eq!(num(&v, &["aare", "missing"]), None);
        assert_eq!(text(&v, &["aare", "text"]), None);
        assert_eq!(celsius(Some(0.0)), "0 °C");
        assert_eq!(celsius(None), "no data");
    }

    #[test]
    fn times_are_swiss() {
        assert_eq!(
            local_time(Some(1683631200.0)).unwrap(),
            "2023-05-09 13:20 CEST"
        );
        assert_eq!(
            local_time(Some(1704067200.0)).unwrap(),
            "2024-01-01 01:00 CET"
        );
        assert_eq!(iso_time(Some(1683631200.0)), json!("2023-05-09T11:20:00Z"));
    }
}
