//! Time arguments for history queries: `now`, Unix seconds, ISO 8601 dates and date-times (with or
//! without offset; without one, Swiss local time), and relative forms (`-7 days`, `-1 week`,
//! `12 hours ago`, `yesterday`). Everything resolves to a Unix timestamp, which is what is sent
//! upstream.

use jiff::{Span, Timestamp, ZonedDateTime, civil};

use super::season::zurich;

/// What went wrong, phrased so a person can fix the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot read {input:?} as a time: {reason}. Use `now`, `today`, `yesterday`, Unix seconds \
(e.g. 1724083800), an ISO 8601 date or date-time (2024-08-19, 2024-08-19T14:30, \
2024-08-19T14:30:00+02:00; without an offset it is Swiss local time) or a relative form \
(-7 days, -1 week, -12 hours, 3 days ago)"
)]
pub struct TimeError {
    pub input: String,
    pub reason: String,
}

fn error(input: &str, reason: impl Into<String>) -> TimeError {
    TimeError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// Parses `input` relative to `now` (which also fixes the time zone for local forms).
pub fn parse(input: &str, now: &ZonedDateTime) -> Result<Timestamp, TimeError> {
    let text = input.trim();
    let lower = text.to_lowercase();
    if lower.is_empty() {
        return Err(error(input, "it is empty"));
    }
    let start_of = |days_back: i64| -> Result<Timestamp, TimeError> {
        now.date()
            .checked_sub(Span::new().days(days_back))
            .and_then(|d| d.to_zoned_datetime(now.time_zone().clone()))
            .map(|z| z.timestamp())
            .map_err(|e| error(input, e.to_string()))
    };
    match lower.as_str() {
        "now" => return Ok(now.timestamp()),
        "today" => return start_of(0),
        "yesterday" => return start_of(1),
        "tomorrow" => return start_of(-1),
        _ => {}
    }
    if lower.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = lower
            .parse()
            .map_err(|_| error(input, "the number is too large"))?;
        // 13-digit values are milliseconds (JavaScript's Date.now()); seconds that large are
        // thousands of years away.
        let seconds = if n >= 100_000_000_000 { n / 1000 } else { n };
        return Timestamp::from_second(seconds).map_err(|e| error(input, e.to_string()));
    }
    if let Some(ts) = parse_relative(&lower, now).transpose() {
        return ts.map_err(|reason| error(input, reason));
    }
    parse_absolute(text, now).ok_or_else(|| error(input, "it is not a recognised date or time"))
}

fn parse_absolute(text: &str, now: &ZonedDateTime) -> Option<Timestamp> {
    // With an offset or `Z`: an exact instant.
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Some(ts);
    }
    let tz = now.time_zone().clone();
    if let Ok(dt) = text.parse::<civil::DateTime>() {
        return dt.to_zoned_datetime(tz).ok().map(|z| z.timestamp());
    }
    if let Ok(date) = text.parse::<civil::Date>() {
        return date.to_zoned_datetime(tz).ok().map(|z| z.timestamp());
    }
    None
}

/// `Ok(None)` when `lower` is not a relative form at all; `Err` when it is one with a problem.
fn parse_relative(lower: &str, now: &ZonedDateTime) -> Result<Option<Timestamp>, String> {
    let (body, ago) = match lower.strip_suffix("ago") {
        Some(rest) => (rest.trim_end(), true),
        None => (lower, false),
    };
    let (sign, body) = match body.as_bytes().first() {
        Some(b'-') => (-1, body[1..].trim_start()),
        Some(b'+') => (1, body[1..].trim_start()),
        // An unsigned "7 days" means 7 days back, like "7 days ago".
        _ => (-1, body),
    };
    if ago && sign == 1 && lower.starts_with('+') {
        return Err("`+` and `ago` contradict each other".into());
    }
    let digits_end = body
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(body.len());
    if digits_end == 0 {
        return Ok(None);
    }
    let Ok(amount) = body[..digits_end].parse::<i64>() else {
        return Err("the number is too large".into());
    };
    let unit = body[digits_end..].trim();
    let amount = amount * sign;
    let span = match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => Span::new().try_seconds(amount),
        "m" | "min" | "mins" | "minute" | "minutes" => Span::new().try_minutes(amount),
        "h" | "hr" | "hrs" | "hour" | "hours" => Span::new().try_hours(amount),
        "d" | "day" | "days" => Span::new().try_days(amount),
        "w" | "wk" | "wks" | "week" | "weeks" => Span::new().try_weeks(amount),
        "mo" | "month" | "months" => Span::new().try_months(amount),
        "y" | "yr" | "yrs" | "year" | "years" => Span::new().try_years(amount),
        "" => {
            return Err(
                "the unit is missing (seconds, minutes, hours, days, weeks, months or years)"
                    .into(),
            );
        }
        other if digits_end > 0 && other.chars().all(|c| c.is_alphabetic()) => {
            return Err(format!("{other:?} is not a unit this understands"));
        }
        _ => return Ok(None),
    }
    .map_err(|e| e.to_string())?;
    // Calendar units are applied in the local zone so "-1 day" across a DST change is still
    // the same wall-clock time yesterday.
    now.checked_add(span)
        .map(|z| Some(z.timestamp()))
        .map_err(|e| e.to_string())
}

/// "now" in Switzerland, the reference for relative and local forms.
pub fn now_in_zurich() -> ZonedDateTime {
    Timestamp::now().to_zoned_datetime(zurich())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> ZonedDateTime {
        // Monday 2024-08-19 18:10 CEST.
        "2024-08-19T18:10:00+02:00[Europe/Zurich]".parse().unwrap()
    }

    fn p(s: &str) -> i64 {
        parse(s, &now())
            .unwrap_or_else(|e| panic!("{e}"))
            .as_second()
    }

    const NOW: i64 = 1_724_083_800;

    #[test]
    fn now_and_unix_seconds() {
        assert_eq!(p("now"), NOW);
        assert_eq!(p(" NOW "), NOW);
        assert_eq!(p("1724083800"), NOW);
        assert_eq!(p("1724083800123"), NOW);
        assert_eq!(p("0"), 0);
    }

    #[test]
    fn iso_forms_with_and_without_offset() {
        assert_eq!(p("2024-08-19T16:10:00Z"), NOW);
        assert_eq!(p("2024-08-19T18:10:00+02:00"), NOW);
        assert_eq!(p("2024-08-19T17:10:00+01:00"), NOW);
        // No offset: Swiss local time (CEST in August).
        assert_eq!(p("2024-08-19T18:10"), NOW);
        assert_eq!(p("2024-08-19 18:10:00"), NOW);
        // A date alone is local midnight.
        assert_eq!(p("2024-08-19"), NOW - (18 * 3600 + 10 * 60));
        // Winter dates use CET (+01:00).
        assert_eq!(p("2024-01-01"), 1_704_063_600);
    }

    #[test]
    fn relative_forms() {
        assert_eq!(p("-12 hours"), NOW - 12 * 3600);
        assert_eq!(p("-12h"), NOW - 12 * 3600);
        assert_eq!(p("-7 days"), NOW - 7 * 86400);
        assert_eq!(p("-1 week"), NOW - 7 * 86400);
        assert_eq!(p("3 days ago"), NOW - 3 * 86400);
        assert_eq!(p("7 days"), NOW - 7 * 86400);
        assert_eq!(p("+2 hours"), NOW + 2 * 3600);
        assert_eq!(p("-30 min"), NOW - 1800);
        assert_eq!(p("yesterday"), NOW - (18 * 3600 + 10 * 60) - 86400);
        assert_eq!(p("today"), NOW - (18 * 3600 + 10 * 60));
    }

    #[test]
    fn relative_days_keep_wall_clock_across_dst() {
        // DST ended on 2024-10-27 at 03:00. From 2024-10-27 12:00 CET, a day earlier is
        // 2024-10-26 12:00 CEST: 25 hours before.
        let now: ZonedDateTime = "2024-10-27T12:00:00+01:00[Europe/Zurich]".parse().unwrap();
        let back = parse("-1 day", &now).unwrap();
        assert_eq!(now.timestamp().as_second() - back.as_second(), 25 * 3600);
    }

    #[test]
    fn errors_say_what_is_accepted() {
        for bad in [
            "",
            "soon",
            "-7 fortnights",
            "2024-13-45",
            "-7",
            "+3 days ago",
        ] {
            let e = parse(bad, &now()).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("Use `now`"), "{bad}: {msg}");
        }
        assert!(
            parse("-7 fortnights", &now())
                .unwrap_err()
                .reason
                .contains("fortnights")
        );
    }
}
