//! The head decision: whether a request gets a span at all, made before one exists, as
//! `OTEL_TRACES_SAMPLER` and `_ARG` say (`always_on`, `always_off`, `traceidratio`, and their
//! `parentbased_` forms, the default being `parentbased_always_on`). A request left out costs
//! no span, no parse of its parameters and no rewrite of its `_meta`: it goes on untouched, and
//! whoever serves it decides for itself. The SDK then keeps every span it is given.
//!
//! Owns: the sampling decision. Must not touch: spans, transports or backends.

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

/// How a trace without a parent (or any trace, without `parentbased_`) is decided.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Root {
    On,
    Off,
    /// Kept when a uniform 64-bit draw is below this.
    Below(u64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Head {
    root: Root,
    /// A parent's own decision is followed.
    parent_based: bool,
}

impl Head {
    /// The sampler `OTEL_TRACES_SAMPLER` (`sampler`) and `OTEL_TRACES_SAMPLER_ARG` (`arg`) name.
    pub fn of(sampler: Option<&str>, arg: Option<&str>) -> Result<Head, String> {
        let ratio = || -> Result<Root, String> {
            let r = match arg {
                None | Some("") => 1.0,
                Some(a) => a
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG={a:?}: a ratio from 0 to 1"))?,
            };
            Ok(match r {
                r if r >= 1.0 => Root::On,
                r if r <= 0.0 => Root::Off,
                r => Root::Below((r * u64::MAX as f64) as u64),
            })
        };
        let sampler = sampler.map(str::trim).unwrap_or("parentbased_always_on");
        let (parent_based, root) = match sampler.strip_prefix("parentbased_") {
            Some(rest) => (true, rest),
            None => (false, sampler),
        };
        let root = match root {
            "always_on" => Root::On,
            "always_off" => Root::Off,
            "traceidratio" => ratio()?,
            other => {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER={other:?}: always_on, always_off, traceidratio, or one of them after parentbased_"
                ));
            }
        };
        Ok(Head { root, parent_based })
    }

    /// Whether a request whose incoming context was sampled (`Some(true)`), not sampled
    /// (`Some(false)`) or absent (`None`) gets a span.
    pub fn sampled(&self, parent: Option<bool>) -> bool {
        match (parent, self.parent_based) {
            (Some(decided), true) => decided,
            _ => match self.root {
                Root::On => true,
                Root::Off => false,
                Root::Below(threshold) => draw() < threshold,
            },
        }
    }
}

static HEAD: OnceLock<Head> = OnceLock::new();

/// Decides with `head` from now on (once, at start).
pub fn install(head: Head) {
    let _ = HEAD.set(head);
}

/// [`Head::sampled`] of the installed sampler (every request before one is installed).
pub fn sampled(parent: Option<bool>) -> bool {
    HEAD.get().is_none_or(|h| h.sampled(parent))
}

/// A uniform 64-bit draw: SplitMix64 over a shared counter (no lock, no syscall).
fn draw() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    if STATE.load(Ordering::Relaxed) == 0 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        let _ = STATE.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_samplers_of_the_specification() {
        let on = Head::of(None, None).unwrap();
        assert!(on.sampled(None) && on.sampled(Some(true)) && !on.sampled(Some(false)));
        let off = Head::of(Some("always_off"), None).unwrap();
        assert!(!off.sampled(None) && !off.sampled(Some(true)));
        let pb_off = Head::of(Some("parentbased_always_off"), None).unwrap();
        assert!(!pb_off.sampled(None) && pb_off.sampled(Some(true)));
        let all = Head::of(Some("traceidratio"), Some("1")).unwrap();
        assert!(all.sampled(None) && all.sampled(Some(false)));
        assert!(Head::of(Some("jaeger_remote"), None).is_err());
        assert!(Head::of(Some("traceidratio"), Some("1.5")).is_err());
        assert!(Head::of(Some("traceidratio"), Some("x")).is_err());
    }

    #[test]
    fn a_ratio_keeps_its_share() {
        let head = Head::of(Some("parentbased_traceidratio"), Some("0.25")).unwrap();
        let kept = (0..40_000).filter(|_| head.sampled(None)).count();
        // 10 000 expected; the standard deviation is about 87.
        assert!((9_400..=10_600).contains(&kept), "{kept}");
        assert!(head.sampled(Some(true)) && !head.sampled(Some(false)));
    }
}
