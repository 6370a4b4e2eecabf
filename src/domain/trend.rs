//! The 2-hour temperature trend: rising, falling or stable within a 0.3 °C band.

use serde::Serialize;

/// Differences smaller than this (in °C) count as stable.
pub const STABLE_BAND: f64 = 0.3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trend {
    Rising,
    Falling,
    Stable,
}

impl Trend {
    /// `None` when either value is missing; 0.0 is a real temperature.
    pub fn between(current: Option<f64>, forecast: Option<f64>) -> Option<(Trend, f64)> {
        let (current, forecast) = (current?, forecast?);
        if !current.is_finite() || !forecast.is_finite() {
            return None;
        }
        let diff = forecast - current;
        // Round away float noise such as 12.7 - 12.4 = 0.29999999999999893.
        let rounded = (diff * 1000.0).round() / 1000.0;
        let trend = if rounded.abs() < STABLE_BAND {
            Trend::Stable
        } else if rounded > 0.0 {
            Trend::Rising
        } else {
            Trend::Falling
        };
        Some((trend, rounded))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Rising => "rising",
            Trend::Falling => "falling",
            Trend::Stable => "stable",
        }
    }

    /// When to go, given where the temperature is heading.
    pub fn timing_advice(self) -> &'static str {
        match self {
            Trend::Rising => {
                "The water is warming up: waiting an hour or two gives you slightly warmer water."
            }
            Trend::Falling => "The water is cooling down: go sooner rather than later.",
            Trend::Stable => {
                "The temperature will stay about the same: any time in the next two hours is as good as now."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_edges() {
        assert_eq!(
            Trend::between(Some(12.4), Some(12.7)).unwrap().0,
            Trend::Rising
        );
        assert_eq!(
            Trend::between(Some(12.7), Some(12.4)).unwrap().0,
            Trend::Falling
        );
        assert_eq!(
            Trend::between(Some(12.5), Some(12.79)).unwrap().0,
            Trend::Stable
        );
        assert_eq!(
            Trend::between(Some(12.5), Some(12.21)).unwrap().0,
            Trend::Stable
        );
        assert_eq!(
            Trend::between(Some(12.5), Some(12.5)).unwrap().0,
            Trend::Stable
        );
    }

    #[test]
    fn zero_is_a_value() {
        let (t, d) = Trend::between(Some(0.0), Some(0.5)).unwrap();
        assert_eq!((t, d), (Trend::Rising, 0.5));
        assert_eq!(
            Trend::between(Some(0.4), Some(0.0)).unwrap().0,
            Trend::Falling
        );
    }

    #[test]
    fn missing_values_give_no_trend() {
        assert!(Trend::between(None, Some(1.0)).is_none());
        assert!(Trend::between(Some(1.0), None).is_none());
    }
}
