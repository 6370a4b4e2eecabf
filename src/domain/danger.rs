//! Flow danger levels (BAFU-style thresholds) and the safety advice that goes with each level.
//! Warnings and levels share one table, so they can never disagree.

use serde::Serialize;

/// The boundary between "moderate" and "elevated" when the upstream sends no
/// `aare.flow_scale_threshold`.
pub const DEFAULT_THRESHOLD: f64 = 220.0;

/// One of the six levels (0 when there is no flow value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DangerLevel {
    /// 0 (unknown) to 5 (extremely dangerous).
    pub level: u8,
    /// Short English label.
    pub label: &'static str,
    /// What a swimmer should do at this level.
    pub advice: &'static str,
}

const LEVELS: [DangerLevel; 6] = [
    DangerLevel {
        level: 0,
        label: "unknown",
        advice: "No flow measurement is available right now: check the water yourself and swim only where you know the exits.",
    },
    DangerLevel {
        level: 1,
        label: "safe",
        advice: "Low flow: normal conditions for the Aare. Still swim only where you can get out easily.",
    },
    DangerLevel {
        level: 2,
        label: "moderate",
        advice: "Moderate flow: the current is noticeable. Good swimmers only; know your exit points before getting in.",
    },
    DangerLevel {
        level: 3,
        label: "elevated",
        advice: "Elevated flow: strong current and possible driftwood. Experienced swimmers only, stay near the bank, never alone.",
    },
    DangerLevel {
        level: 4,
        label: "high / dangerous",
        advice: "High flow: dangerous current, debris and cold water. Swimming is not recommended.",
    },
    DangerLevel {
        level: 5,
        label: "very high / extremely dangerous",
        advice: "Very high flow or flooding: do not go into the water, keep away from the banks.",
    },
];

/// The danger level for a flow in m³/s. `threshold` is the upstream's
/// `aare.flow_scale_threshold` when it sends one.
pub fn danger_level(flow: Option<f64>, threshold: Option<f64>) -> DangerLevel {
    let Some(flow) = flow.filter(|f| f.is_finite()) else {
        return LEVELS[0];
    };
    let threshold = threshold
        .filter(|t| t.is_finite() && *t > 0.0)
        .unwrap_or(DEFAULT_THRESHOLD);
    let index = if flow < 100.0 {
        1
    } else if flow < threshold {
        2
    } else if flow < 300.0 {
        3
    } else if flow < 430.0 {
        4
    } else {
        5
    };
    LEVELS[index]
}

impl DangerLevel {
    /// A warning sentence for levels that need one (moderate and above), derived from the same
    /// table as the level itself.
    pub fn warning(&self) -> Option<String> {
        match self.level {
            2 => Some(format!("Caution – {}", self.advice)),
            3..=5 => Some(format!(
                "⚠️ Flow danger level {} ({}): {}",
                self.level, self.label, self.advice
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(flow: f64) -> u8 {
        danger_level(Some(flow), None).level
    }

    #[test]
    fn boundaries_with_default_threshold() {
        assert_eq!(level(0.0), 1);
        assert_eq!(level(99.99), 1);
        assert_eq!(level(100.0), 2);
        assert_eq!(level(219.9), 2);
        assert_eq!(level(220.0), 3);
        assert_eq!(level(299.9), 3);
        assert_eq!(level(300.0), 4);
        assert_eq!(level(429.9), 4);
        assert_eq!(level(430.0), 5);
        assert_eq!(level(2000.0), 5);
    }

    #[test]
    fn missing_flow_is_unknown_not_safe() {
        let l = danger_level(None, None);
        assert_eq!((l.level, l.label), (0, "unknown"));
        assert_eq!(danger_level(Some(f64::NAN), None).level, 0);
    }

    #[test]
    fn upstream_threshold_moves_only_the_moderate_boundary() {
        assert_eq!(danger_level(Some(180.0), Some(160.0)).level, 3);
        assert_eq!(danger_level(Some(159.0), Some(160.0)).level, 2);
        assert_eq!(danger_level(Some(250.0), Some(260.0)).level, 2);
        assert_eq!(danger_level(Some(300.0), Some(260.0)).level, 4);
        // A nonsensical threshold falls back to the default.
        assert_eq!(danger_level(Some(219.0), Some(0.0)).level, 2);
    }

    #[test]
    fn warnings_follow_levels() {
        assert!(danger_level(Some(50.0), None).warning().is_none());
        assert!(danger_level(None, None).warning().is_none());
        assert!(
            danger_level(Some(150.0), None)
                .warning()
                .unwrap()
                .starts_with("Caution")
        );
        let w = danger_level(Some(247.0), None).warning().unwrap();
        assert!(w.contains("level 3"), "{w}");
        assert!(
            danger_level(Some(500.0), None)
                .warning()
                .unwrap()
                .contains("do not go")
        );
    }
}
