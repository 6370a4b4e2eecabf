//! What the soak watches on the gateway: memory, file descriptors, threads and tasks, child
//! processes and sessions — sampled from /proc and /metrics — and whether any of them trends up.

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub t: f64,
    pub rss_kib: f64,
    pub fds: f64,
    pub threads: f64,
    pub tasks: f64,
    pub children: f64,
    pub sessions: f64,
}

pub const NAMES: [&str; 6] = ["rss_kib", "fds", "threads", "tasks", "children", "sessions"];

impl Sample {
    pub fn get(&self, name: &str) -> f64 {
        match name {
            "rss_kib" => self.rss_kib,
            "fds" => self.fds,
            "threads" => self.threads,
            "tasks" => self.tasks,
            "children" => self.children,
            _ => self.sessions,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "rss_kib": self.rss_kib, "fds": self.fds, "threads": self.threads,
            "tasks": self.tasks, "children": self.children, "sessions": self.sessions,
        })
    }

    pub fn line(&self) -> String {
        format!(
            "rss {:.1} MiB, fds {}, threads {}, tasks {}, children {}, sessions {}",
            self.rss_kib / 1024.0,
            self.fds,
            self.threads,
            self.tasks,
            self.children,
            self.sessions
        )
    }
}

fn status_field(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0.0)
}

/// Process ids of every descendant of `pid`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = vec![];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat"))
                && let Some(rest) = stat.rsplit_once(')').map(|x| x.1)
                && let Some(ppid) = rest.split_whitespace().nth(1).and_then(|x| x.parse().ok())
            {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out.remove(0);
    out
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// One sample; `pid` is the gateway's when the soak started it (else only /metrics counts).
pub async fn sample(http: &reqwest::Client, base: &str, pid: Option<u32>, t: f64) -> Sample {
    let metrics = match http.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let mut s = Sample {
        t,
        tasks: metric(&metrics, "aareguru_gateway_runtime_tasks"),
        sessions: metric(&metrics, "aareguru_gateway_sessions_active"),
        children: metric(&metrics, "aareguru_gateway_children_alive"),
        ..Sample::default()
    };
    if let Some(pid) = pid {
        s.rss_kib = status_field(pid, "VmRSS:");
        s.threads = status_field(pid, "Threads:");
        s.fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()) as f64;
        s.children = descendants(pid).len() as f64;
    }
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// How much a gauge may grow between the first and last third after warm-up before it counts
/// as a trend: an absolute floor (noise of a busy population) or a share of its level.
fn allowance(name: &str, level: f64) -> f64 {
    let (floor, share): (f64, f64) = match name {
        "rss_kib" => (8192.0, 0.20),
        "fds" => (48.0, 0.25),
        "threads" => (4.0, 0.25),
        "tasks" => (150.0, 0.25),
        "children" => (12.0, 0.25),
        _ => (24.0, 0.25),
    };
    floor.max(level * share)
}

/// Growth of each gauge after warm-up (median of the last third minus median of the first),
/// and the gauges whose growth is a trend: past their allowance overall, and rising through
/// both halves (the middle third above the first, the last above the middle, each by a third
/// of the allowance) — a leak under steady load climbs all the way, while a population that
/// churns (children killed and restarted, pools refilled) can end one third high and not the
/// next.
pub fn trends(samples: &[Sample], warmup: f64) -> (Value, Vec<String>) {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= warmup).collect();
    let mut growth = serde_json::Map::new();
    let mut up = vec![];
    if after.len() < 6 {
        return (Value::Object(growth), up);
    }
    let third = after.len() / 3;
    let median_of =
        |part: &[&Sample], name: &str| median(part.iter().map(|s| s.get(name)).collect());
    for name in NAMES {
        let first = median_of(&after[..third], name);
        let middle = median_of(&after[third..after.len() - third], name);
        let last = median_of(&after[after.len() - third..], name);
        let g = last - first;
        growth.insert(
            name.into(),
            json!({"first": first, "middle": middle, "last": last, "growth": g}),
        );
        let allowed = allowance(name, first);
        if is_trend(first, middle, last, allowed) {
            up.push(format!("{name} grew from {first} to {middle} to {last}"));
        }
    }
    (Value::Object(growth), up)
}

/// Growth past `allowed` that rose through both halves.
fn is_trend(first: f64, middle: f64, last: f64, allowed: f64) -> bool {
    last - first > allowed && middle - first > allowed / 3.0 && last - middle > allowed / 3.0
}

#[cfg(test)]
mod tests {
    use super::is_trend;

    #[test]
    fn a_trend_climbs_all_the_way() {
        // A leak: steady growth.
        assert!(is_trend(50.0, 60.0, 70.0, 12.0));
        // Churn: flat, then one high third (the CI run that failed on children 50 -> 66).
        assert!(!is_trend(50.0, 50.0, 66.0, 12.0));
        // Up and back down a little: not a trend either.
        assert!(!is_trend(50.0, 70.0, 66.0, 12.0));
        assert!(!is_trend(50.0, 55.0, 58.0, 12.0));
    }
}
