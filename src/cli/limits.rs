//! The servers file's `gateway.limits`: per caller, how many calls (a rate) and how many at
//! once, on the servers and tools their globs name —
//!
//! ```json
//! {"name": "forecasts", "per": "key", "servers": ["aareguru"], "tools": ["*forecast*"],
//!  "rate": "10/min", "burst": 3, "concurrent": 2}
//! ```
//!
//! Owns: reading limits into [`LimitSource`]s. Must not touch: how they are counted.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use crate::config::LimitSource;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    name: Option<String>,
    /// `subject` (the default) or `key` (the API key's name; callers without one by subject).
    per: Option<String>,
    #[serde(default)]
    servers: Vec<String>,
    #[serde(default)]
    tools: Vec<String>,
    /// `N/s`, `N/min` or `N/h`.
    rate: Option<String>,
    burst: Option<u32>,
    concurrent: Option<u32>,
}

/// The file's limits, checked.
pub fn sources(specs: Vec<LimitSpec>) -> anyhow::Result<Vec<LimitSource>> {
    let mut out: Vec<LimitSource> = vec![];
    for (i, spec) in specs.into_iter().enumerate() {
        let name = match spec.name.map(|n| n.trim().to_string()) {
            Some(n) if !n.is_empty() => n,
            Some(_) => bail!("limits[{i}]: the name is empty"),
            None => format!("limits#{}", i + 1),
        };
        let at = format!("limits[{i}] ({name})");
        if out.iter().any(|l| l.name == name) {
            bail!("{at}: two limits named {name:?}");
        }
        let per_key = match spec.per.as_deref() {
            None | Some("subject") => false,
            Some("key") => true,
            Some(other) => bail!("{at}: per {other:?} is not \"subject\" or \"key\""),
        };
        let rate = match &spec.rate {
            Some(text) => {
                let (count, window) = rate(text).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
                let burst = spec.burst.unwrap_or(count);
                if burst == 0 {
                    bail!("{at}: burst must be at least 1");
                }
                Some((burst, window / count))
            }
            None if spec.burst.is_some() => bail!("{at}: burst needs a rate"),
            None => None,
        };
        if spec.concurrent == Some(0) {
            bail!("{at}: concurrent must be at least 1");
        }
        if rate.is_none() && spec.concurrent.is_none() {
            bail!("{at}: give a rate, a concurrent number, or both");
        }
        for glob in spec.servers.iter().chain(&spec.tools) {
            if glob.trim().is_empty() {
                bail!("{at}: an empty glob");
            }
        }
        out.push(LimitSource {
            name,
            per_key,
            servers: spec.servers,
            tools: spec.tools,
            rate,
            concurrent: spec.concurrent,
        });
    }
    Ok(out)
}

/// `N/s`, `N/min`, `N/h` → (N, the window).
fn rate(text: &str) -> Result<(u32, Duration), String> {
    let bad = || format!("rate {text:?} is not N/s, N/min or N/h");
    let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!("rate {text:?}: at least one call"));
    }
    let window = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    Ok((n, window))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(json: &str) -> Vec<LimitSpec> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn limits_are_named_checked_and_their_rates_read() {
        let l = sources(specs(
            r#"[{"rate": "60/min"}, {"name": "f", "per": "key", "tools": ["*forecast*"], "rate": "10/s", "burst": 3, "concurrent": 2}]"#,
        ))
        .unwrap();
        assert_eq!(l[0].name, "limits#1");
        assert_eq!(l[0].rate, Some((60, Duration::from_secs(1))));
        assert!(!l[0].per_key);
        assert_eq!(l[1].rate, Some((3, Duration::from_millis(100))));
        assert_eq!((l[1].per_key, l[1].concurrent), (true, Some(2)));
        for (bad, says) in [
            (r#"[{"name": "x"}]"#, "give a rate"),
            (r#"[{"rate": "5/day"}]"#, "is not N/s"),
            (r#"[{"rate": "0/s"}]"#, "at least one call"),
            (r#"[{"concurrent": 0}]"#, "at least 1"),
            (r#"[{"per": "ip", "rate": "1/s"}]"#, "is not \"subject\""),
            (r#"[{"burst": 3}]"#, "burst needs a rate"),
            (
                r#"[{"name": "a", "rate": "1/s"}, {"name": "a", "rate": "2/s"}]"#,
                "two limits",
            ),
        ] {
            let e = sources(specs(bad)).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
