//! The console's live numbers (`--console`): calls ended and failed, and their durations in
//! log-scale buckets, read once a second into a ring of the last 15 minutes — calls/s, errors/s,
//! p50 and p99 of each second, and the sessions open. Off (the console not served), recording a
//! call costs one relaxed load.
//!
//! Owns: the live samples. Must not touch: what a call is (the calls layer says).

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use parking_lot::Mutex;
use serde::Serialize;

/// Buckets of call durations: the first ends at 50 µs, each next one 1.25 times later (the
/// last, past a minute, takes the rest). A quantile is read as its bucket's end: within 25 %.
const BUCKETS: usize = 64;
const FIRST: f64 = 50e-6;
const GROWTH: f64 = 1.25;
/// Seconds kept.
const KEPT: usize = 15 * 60;

pub struct Live {
    on: AtomicBool,
    calls: AtomicU64,
    failed: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
    read: Mutex<Read>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            on: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            read: Mutex::default(),
        }
    }
}

/// What the last tick read, and the samples so far.
#[derive(Default)]
struct Read {
    calls: u64,
    failed: u64,
    buckets: Vec<u64>,
    samples: VecDeque<Sample>,
}

/// One second.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Sample {
    /// Unix time, milliseconds.
    pub t: u64,
    pub calls: u64,
    pub errors: u64,
    /// Milliseconds; `None` without calls.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub sessions: i64,
}

impl Live {
    /// Records from now on.
    pub fn turn_on(&self) {
        self.on.store(true, Ordering::Relaxed);
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// A call ended (`ok`: answered without an error) after `took`.
    pub fn record(&self, ok: bool, took: Duration) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.buckets[bucket(took.as_secs_f64())].fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the second that ended (with `sessions` open now) into the ring; the new sample.
    pub fn tick(&self, sessions: i64) -> Sample {
        let calls = self.calls.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let mut read = self.read.lock();
        let delta: Vec<u64> = match read.buckets.len() {
            0 => buckets.clone(),
            _ => buckets
                .iter()
                .zip(&read.buckets)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        };
        let sample = Sample {
            t: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            calls: calls.saturating_sub(read.calls),
            errors: failed.saturating_sub(read.failed),
            p50: quantile(&delta, 0.5),
            p99: quantile(&delta, 0.99),
            sessions,
        };
        read.calls = calls;
        read.failed = failed;
        read.buckets = buckets;
        if read.samples.len() == KEPT {
            read.samples.pop_front();
        }
        read.samples.push_back(sample.clone());
        sample
    }

    /// The samples kept, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.read.lock().samples.iter().cloned().collect()
    }
}

fn bucket(seconds: f64) -> usize {
    if seconds <= FIRST {
        return 0;
    }
    let i = ((seconds / FIRST).ln() / GROWTH.ln()).ceil() as usize;
    i.min(BUCKETS - 1)
}

/// The end of the bucket (milliseconds) where quantile `q` of `counts` falls.
fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(FIRST * GROWTH.powi(i as i32) * 1000.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_says_its_calls_errors_and_quantiles() {
        let live = Live::default();
        live.record(true, Duration::from_millis(1));
        assert_eq!(live.tick(0).calls, 0, "off: nothing recorded");
        live.turn_on();
        for _ in 0..98 {
            live.record(true, Duration::from_millis(2));
        }
        live.record(false, Duration::from_millis(2));
        live.record(true, Duration::from_millis(500));
        let s = live.tick(3);
        assert_eq!((s.calls, s.errors, s.sessions), (100, 1, 3));
        let p50 = s.p50.unwrap();
        assert!((2.0..2.5).contains(&p50), "{p50}");
        let p99 = s.p99.unwrap();
        assert!((2.0..2.5).contains(&p99), "{p99}");
        // The next second has only what came after.
        live.record(true, Duration::from_secs(2));
        let s = live.tick(3);
        assert_eq!((s.calls, s.errors), (1, 0));
        assert!((2000.0..2500.0).contains(&s.p50.unwrap()), "{s:?}");
        assert_eq!(live.tick(0).p50, None);
        assert_eq!(live.history().len(), 4);
    }

    #[test]
    fn the_ring_keeps_fifteen_minutes() {
        let live = Live::default();
        for _ in 0..KEPT + 10 {
            live.tick(0);
        }
        assert_eq!(live.history().len(), KEPT);
    }
}
