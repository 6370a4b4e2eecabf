//! Limits per caller (the servers file's `gateway.limits`): a rate per subject or API key, and
//! calls at once per subject, on the servers and tools their globs name. Shared by every
//! server's calls layer (`calls.rs`), so a gateway-wide limit counts a caller's calls on all of
//! them; replaced whole by a reload (counts start afresh).
//!
//! Owns: counting calls against limits. Must not touch: how a refusal is answered.

use parking_lot::{Mutex, RwLock};
use std::{collections::HashMap, sync::Arc, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};

use super::tools::glob;
use crate::{config::LimitSource, gateway::caller::Caller};

/// The limits in force.
#[derive(Default)]
pub struct Limits {
    current: RwLock<Arc<Set>>,
}

impl Limits {
    pub fn new(sources: &[LimitSource]) -> Limits {
        Limits {
            current: RwLock::new(Arc::new(Set::of(sources))),
        }
    }

    /// Puts the file's limits in force (counts start afresh; calls under way keep their slot
    /// in the old ones until they end).
    pub fn replace(&self, sources: &[LimitSource]) {
        let fresh = Set::of(sources);
        let mut current = self.current.write();
        if current.sources != sources {
            *current = Arc::new(fresh);
        }
    }

    pub fn current(&self) -> Arc<Set> {
        self.current.read().clone()
    }
}

/// One version of the limits and their counts.
#[derive(Default)]
pub struct Set {
    sources: Vec<LimitSource>,
    limits: Vec<Limit>,
}

struct Limit {
    source: LimitSource,
    rate: Option<DefaultKeyedRateLimiter<String>>,
    /// Calls under way per subject.
    at_once: Mutex<HashMap<String, u32>>,
}

/// A limit said no: its name and when to try again.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub limit: String,
    pub retry_after: Duration,
    pub what: String,
}

/// A call admitted: it holds its slots in the limits that count calls at once until dropped.
pub struct Ticket {
    set: Arc<Set>,
    held: Vec<(usize, String)>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        for (i, who) in &self.held {
            self.set.limits[*i].release(who);
        }
    }
}

impl Set {
    fn of(sources: &[LimitSource]) -> Set {
        let limits = sources
            .iter()
            .map(|s| Limit {
                source: s.clone(),
                rate: s.rate.and_then(|(burst, period)| {
                    let quota = Quota::with_period(period)?
                        .allow_burst(std::num::NonZeroU32::new(burst.max(1))?);
                    Some(RateLimiter::keyed(quota))
                }),
                at_once: Mutex::default(),
            })
            .collect();
        Set {
            sources: sources.to_vec(),
            limits,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Whether any limit may count calls to `server`.
    pub fn covers(&self, server: &str) -> bool {
        self.limits.iter().any(|l| l.covers_server(server))
    }

    /// Counts a call of `name` on `server` by `caller` against every limit that covers it:
    /// admitted (holding its slots), or the first limit it exceeds. A refused call takes no
    /// slot and uses up no rate.
    pub fn admit(
        self: &Arc<Self>,
        server: &str,
        name: &str,
        caller: Option<&Caller>,
    ) -> Result<Option<Ticket>, Refusal> {
        let applying: Vec<usize> = (0..self.limits.len())
            .filter(|i| self.limits[*i].covers(server, name))
            .collect();
        if applying.is_empty() {
            return Ok(None);
        }
        let mut ticket = Ticket {
            set: self.clone(),
            held: vec![],
        };
        // Calls at once first: a slot is given back if a rate then refuses.
        for &i in &applying {
            let limit = &self.limits[i];
            let Some(max) = limit.source.concurrent else {
                continue;
            };
            let who = caller.map(|c| c.subject.clone()).unwrap_or_default();
            let mut at_once = limit.at_once.lock();
            let n = at_once.entry(who.clone()).or_default();
            if *n >= max {
                return Err(Refusal {
                    limit: limit.source.name.clone(),
                    retry_after: Duration::from_secs(1),
                    what: format!("{max} calls at once"),
                });
            }
            *n += 1;
            drop(at_once);
            ticket.held.push((i, who));
        }
        for &i in &applying {
            let limit = &self.limits[i];
            let Some(rate) = &limit.rate else {
                continue;
            };
            let who = limit.key_of(caller);
            if let Err(not_until) = rate.check_key(&who) {
                let clock = governor::clock::DefaultClock::default();
                let (burst, period) = limit.source.rate.unwrap_or_default();
                return Err(Refusal {
                    limit: limit.source.name.clone(),
                    retry_after: not_until.wait_time_from(clock.now()),
                    what: format!("{burst} calls, one more every {period:?}"),
                });
            }
            if rate.len() > 100_000 {
                rate.retain_recent();
            }
        }
        Ok(Some(ticket))
    }
}

impl Limit {
    fn covers_server(&self, server: &str) -> bool {
        let s = &self.source;
        s.servers.is_empty() || s.servers.iter().any(|g| glob(g, server))
    }

    fn covers(&self, server: &str, name: &str) -> bool {
        let s = &self.source;
        self.covers_server(server) && (s.tools.is_empty() || s.tools.iter().any(|g| glob(g, name)))
    }

    /// Whom a rate counts: the API key's name (`per: key`), else the subject.
    fn key_of(&self, caller: Option<&Caller>) -> String {
        let Some(c) = caller else {
            return String::new();
        };
        match (&c.key, self.source.per_key) {
            (Some(key), true) => format!("key:{}", key.name),
            _ => format!("sub:{}", c.subject),
        }
    }

    fn release(&self, who: &str) {
        let mut at_once = self.at_once.lock();
        if let Some(n) = at_once.get_mut(who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                at_once.remove(who);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(subject: &str) -> Caller {
        Caller {
            subject: subject.into(),
            ..Caller::default()
        }
    }

    fn source(name: &str) -> LimitSource {
        LimitSource {
            name: name.into(),
            per_key: false,
            servers: vec![],
            tools: vec![],
            rate: None,
            concurrent: None,
        }
    }

    #[test]
    fn a_rate_counts_each_subject_apart_and_says_when_to_retry() {
        let set = Arc::new(Set::of(&[LimitSource {
            tools: vec!["get_*".into()],
            rate: Some((2, Duration::from_secs(30))),
            ..source("two")
        }]));
        let (a, b) = (caller("a"), caller("b"));
        assert!(set.admit("s", "get_x", Some(&a)).unwrap().is_some());
        assert!(set.admit("s", "get_x", Some(&a)).is_ok());
        let refused = set.admit("s", "get_y", Some(&a)).err().unwrap();
        assert_eq!(refused.limit, "two");
        assert!(refused.retry_after > Duration::from_secs(20), "{refused:?}");
        assert!(set.admit("s", "get_x", Some(&b)).is_ok());
        // Other tools are not counted.
        assert!(set.admit("s", "other", Some(&a)).unwrap().is_none());
    }

    #[test]
    fn calls_at_once_are_given_back_when_they_end_and_when_a_rate_refuses() {
        let set = Arc::new(Set::of(&[
            LimitSource {
                concurrent: Some(2),
                ..source("two-at-once")
            },
            LimitSource {
                servers: vec!["slow".into()],
                rate: Some((3, Duration::from_secs(60))),
                ..source("rate")
            },
        ]));
        let a = caller("a");
        let t1 = set.admit("fast", "x", Some(&a)).unwrap();
        let t2 = set.admit("fast", "x", Some(&a)).unwrap();
        assert_eq!(
            set.admit("fast", "x", Some(&a)).err().unwrap().limit,
            "two-at-once"
        );
        assert!(set.admit("fast", "x", Some(&caller("b"))).is_ok());
        drop(t1);
        let t3 = set.admit("fast", "x", Some(&a)).unwrap();
        drop((t2, t3));
        // Three calls of `slow` use its rate up; the fourth, refused, holds no slot.
        for _ in 0..3 {
            drop(set.admit("slow", "x", Some(&a)).unwrap());
        }
        assert_eq!(
            set.admit("slow", "x", Some(&a)).err().unwrap().limit,
            "rate"
        );
        assert!(set.limits[0].at_once.lock().is_empty());
    }
}
