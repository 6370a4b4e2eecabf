//! Seasonal swimming advice by month, in the Europe/Zurich time zone.

use jiff::{Timestamp, tz::TimeZone};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Season {
    Winter,
    Spring,
    Summer,
    Autumn,
}

/// The Swiss time zone; bundled with the binary so it works on hosts without tzdata.
pub fn zurich() -> TimeZone {
    TimeZone::get("Europe/Zurich").unwrap_or(TimeZone::UTC)
}

impl Season {
    /// The season at `at`, judged by the month in Zurich (so 31 May 23:30 UTC is already June).
    pub fn at(at: Timestamp) -> Season {
        match at.to_zoned_datetime(zurich()).month() {
            11 | 12 | 1..=3 => Season::Winter,
            4 | 5 => Season::Spring,
            6..=8 => Season::Summer,
            _ => Season::Autumn,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Season::Winter => "winter",
            Season::Spring => "spring",
            Season::Summer => "summer",
            Season::Autumn => "autumn",
        }
    }

    pub fn advice(self) -> &'static str {
        match self {
            Season::Winter => {
                "Winter: the Aare is very cold. Only for experienced cold-water swimmers, briefly, never alone, with warm clothes ready."
            }
            Season::Spring => {
                "Spring: snowmelt keeps the water cold and the flow high. Short dips only; check the flow before you go."
            }
            Season::Summer => {
                "Summer: the main swimming season. Drift only where you know the exits, and watch the flow after storms."
            }
            Season::Autumn => {
                "Autumn: the water cools quickly and days are shorter. Swim early in the afternoon and keep it short."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Season {
        Season::at(s.parse().unwrap())
    }

    #[test]
    fn months() {
        assert_eq!(at("2024-01-15T12:00:00Z"), Season::Winter);
        assert_eq!(at("2024-03-31T12:00:00Z"), Season::Winter);
        assert_eq!(at("2024-04-01T12:00:00Z"), Season::Spring);
        assert_eq!(at("2024-05-20T12:00:00Z"), Season::Spring);
        assert_eq!(at("2024-06-10T12:00:00Z"), Season::Summer);
        assert_eq!(at("2024-08-31T12:00:00Z"), Season::Summer);
        assert_eq!(at("2024-09-01T12:00:00Z"), Season::Autumn);
        assert_eq!(at("2024-10-31T12:00:00Z"), Season::Autumn);
        assert_eq!(at("2024-11-01T12:00:00Z"), Season::Winter);
    }

    #[test]
    fn month_is_judged_in_zurich_not_utc() {
        // 22:30 UTC on 31 May is 00:30 on 1 June in Zurich (CEST).
        assert_eq!(at("2024-05-31T22:30:00Z"), Season::Summer);
        // 23:30 UTC on 31 Oct is 00:30 on 1 Nov in Zurich (CET).
        assert_eq!(at("2024-10-31T23:30:00Z"), Season::Winter);
    }
}
