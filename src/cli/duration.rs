//! Durations in flags: "10s", "500ms", "2m", "1h 30m" or bare seconds.

use std::time::Duration;

use anyhow::{Context, bail};

/// "10s", "500ms", "2m", "1h 30m" (jiff's friendly format) or bare seconds ("10").
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
        bail!("a duration cannot be negative");
    }
    let d: jiff::SignedDuration = s
        .parse()
        .with_context(|| format!("{s:?} is not a duration; use e.g. 10s, 500ms or 2m"))?;
    Duration::try_from(d).map_err(|_| anyhow::anyhow!("a duration cannot be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
