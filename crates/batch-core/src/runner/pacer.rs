//! `--launch-interval auto`: how many browser creations may overlap, learned from what
//! the machine is doing rather than guessed.
//!
//! The controller is TCP's congestion window applied to browser launches, because the
//! problem has the same shape: more overlap is faster until the shared resource (here
//! two CPU cores) saturates, after which every launch only gets slower, and past a
//! point they time out.
//!
//! - Every finished launch is a sample: its latency, how many creations were in flight
//!   while it ran, and the CPU pressure at its end.
//! - The *stretch* of a launch is its latency normalised to the CPU share it had
//!   (`latency × cores / max(overlap, cores)`), divided by the best such figure seen
//!   (the baseline: what one launch costs on this machine right now). A CPU-bound
//!   burst of ten launches on two cores each takes ~5× longer than one alone, but its
//!   stretch stays near 1: that is sharing, not overload. Thrashing (memory, I/O,
//!   another program eating the CPU) shows as stretch well above 1.
//! - Grow while launches are *fast* (stretch ≤ [`FAST`]) and either the CPU is not
//!   saturated or launches are not slowing at all: +1 per good launch below the
//!   slow-start threshold (doubling per round, from five per core: launches wait on
//!   IPC and disk as well as CPU, and ten at once on two cores measured 1.6–2× the bare
//!   floor against 3–4× one at a time), +1 per round above it.
//! - Shrink by half when a launch is *slow* (stretch ≥ [`SLOW`], or above the latency
//!   budget, or failed), at most once per cooldown — the slow launch's own latency, so
//!   one congestion event is answered once — and remember the new threshold.
//! - Between the two bands nothing changes: that gap is the hysteresis that keeps the
//!   limit from flapping on a noisy machine.
//!
//! There is no cap on *accounts* here: this only bounds creations in flight at once,
//! and the ceiling ([`Pacer::ceiling`]) is far above what two cores can use.

use std::time::Duration;

/// Stretch at or below which a launch counts as fast.
pub(crate) const FAST: f64 = 1.5;
/// Stretch at or above which a launch counts as slow.
pub(crate) const SLOW: f64 = 3.0;
/// CPU pressure (share of time some task waited for a CPU) above which growth needs
/// launches that are not slowing at all.
pub(crate) const HIGH_PRESSURE: f64 = 0.8;
/// Stretch below which launches count as "not slowing at all".
const STEADY: f64 = 1.2;

/// One finished launch, as the pacer sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Time from admission to a verified browser (or to the failure).
    pub(crate) latency: Duration,
    /// The most creations in flight at once while it ran (itself included).
    pub(crate) overlap: usize,
    /// Whether it produced a browser.
    pub(crate) ok: bool,
    /// CPU pressure (0..=1) when it finished, if the machine tells.
    pub(crate) pressure: Option<f64>,
    /// When it finished, on the scheduler's clock.
    pub(crate) at: Duration,
}

/// What a sample did to the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Unchanged; the reason growth was held, if it was.
    Held(Option<Hold>),
    /// Raised to this.
    Grew(usize),
    /// Lowered to this.
    Shrank(usize),
}

/// Why the limit did not grow after a fast-enough launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// The CPU is saturated and launches are slowing.
    Cpu,
    /// Launches are neither fast nor slow (the hysteresis band).
    Band,
    /// Already at the ceiling.
    Ceiling,
}

/// The adaptive overlap limit; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    cores: usize,
    limit: usize,
    ceiling: usize,
    ssthresh: usize,
    /// Best per-CPU-share latency seen, in seconds.
    baseline: Option<f64>,
    /// Launches slower than this shrink the limit whatever their stretch: the
    /// guard against launch timeouts when hundreds of accounts start at once.
    budget: Duration,
    /// Good launches since the last change (for growth above the threshold).
    good: usize,
    /// No second shrink before this time.
    cooldown_until: Duration,
    /// Why the last fast-enough launch did not grow the limit.
    held: Option<Hold>,
}

impl Pacer {
    /// Start at `start` overlapping creations on a machine of `cores`; `budget` is the
    /// latency above which a launch counts as slow whatever else it shows.
    pub(crate) fn new(cores: usize, start: usize, budget: Duration) -> Pacer {
        let cores = cores.max(1);
        Pacer {
            cores,
            limit: start.max(1),
            ceiling: 32 * cores,
            ssthresh: usize::MAX,
            baseline: None,
            budget,
            good: 0,
            cooldown_until: Duration::ZERO,
            held: None,
        }
    }

    /// How many creations may be in flight now.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The highest limit the pacer will ever allow.
    #[cfg(test)]
    pub(crate) fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// Why growth is being held, if it is (for the journal's `cpu` reason).
    pub(crate) fn held(&self) -> Option<Hold> {
        self.held
    }

    /// Learn from one finished launch.
    pub(crate) fn observe(&mut self, s: Sample) -> Change {
        let secs = s.latency.as_secs_f64().max(1e-3);
        let share = self.cores as f64 / s.overlap.max(self.cores) as f64;
        let per_unit = secs * share;
        if s.ok {
            self.baseline = Some(self.baseline.map_or(per_unit, |b| b.min(per_unit)));
        }
        let stretch = per_unit / self.baseline.unwrap_or(per_unit);
        let slow = !s.ok || stretch >= SLOW || s.latency > self.budget;
        if slow {
            self.good = 0;
            if s.at < self.cooldown_until {
                return Change::Held(None);
            }
            self.cooldown_until = s.at + s.latency;
            let to = (self.limit / 2).max(1);
            self.ssthresh = to;
            self.held = None;
            return if to < self.limit {
                self.limit = to;
                Change::Shrank(to)
            } else {
                Change::Held(None)
            };
        }
        let pressured = s.pressure.is_some_and(|p| p >= HIGH_PRESSURE);
        let hold = if stretch > FAST {
            Some(Hold::Band)
        } else if pressured && stretch > STEADY {
            Some(Hold::Cpu)
        } else if self.limit >= self.ceiling {
            Some(Hold::Ceiling)
        } else {
            None
        };
        self.held = hold;
        if hold.is_some() {
            return Change::Held(hold);
        }
        self.good += 1;
        // Slow start: +1 per good launch (doubling per round). Above the threshold:
        // +1 per round (a limit's worth of good launches).
        if self.limit < self.ssthresh || self.good >= self.limit {
            self.good = 0;
            self.limit += 1;
            Change::Grew(self.limit)
        } else {
            Change::Held(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn sample(latency_ms: u64, overlap: usize, pressure: f64, at_ms: u64) -> Sample {
        Sample {
            latency: MS(latency_ms),
            overlap,
            ok: true,
            pressure: Some(pressure),
            at: MS(at_ms),
        }
    }

    /// Feed samples in order; return the limit after each.
    fn limits(p: &mut Pacer, samples: &[Sample]) -> Vec<usize> {
        samples
            .iter()
            .map(|s| {
                p.observe(*s);
                p.limit()
            })
            .collect()
    }

    #[test]
    fn decisions() {
        struct Case {
            name: &'static str,
            samples: Vec<Sample>,
            limits: Vec<usize>,
        }
        let failed = |at| Sample {
            ok: false,
            ..sample(400, 2, 0.1, at)
        };
        let cases = [
            Case {
                name: "fast launches on an idle machine grow the limit by one each (slow start)",
                samples: vec![
                    sample(400, 1, 0.0, 400),
                    sample(450, 2, 0.2, 800),
                    sample(800, 3, 0.5, 1600),
                ],
                limits: vec![3, 4, 5],
            },
            Case {
                name: "a CPU-bound burst shares the CPU: latency grows with overlap, stretch does not, so it keeps growing",
                samples: vec![
                    sample(400, 1, 0.0, 400),
                    sample(2000, 10, 1.0, 2400),
                    sample(4000, 20, 1.0, 4400),
                ],
                limits: vec![3, 4, 5],
            },
            Case {
                name: "launches slowing on a saturated CPU hold the limit (cpu)",
                samples: vec![sample(400, 1, 0.0, 400), sample(560, 2, 0.95, 1000)],
                limits: vec![3, 3],
            },
            Case {
                name: "between fast and slow nothing changes (hysteresis band)",
                samples: vec![
                    sample(400, 1, 0.0, 400),
                    sample(800, 2, 0.1, 1200),
                    sample(1000, 2, 0.1, 2200),
                ],
                limits: vec![3, 3, 3],
            },
            Case {
                name: "a slow launch halves the limit, once per cooldown",
                samples: vec![
                    sample(400, 1, 0.0, 400),
                    sample(400, 1, 0.0, 800),
                    sample(400, 1, 0.0, 1200),
                    sample(400, 1, 0.0, 1600),
                    sample(400, 1, 0.0, 2000),
                    sample(400, 1, 0.0, 2400),
                    // 8 now. Slow (stretch 4):
                    sample(1600, 2, 0.5, 4000),
                    // Inside the cooldown (until 5600): no second halving.
                    sample(1600, 2, 0.5, 4500),
                    // After it: halves again.
                    sample(1600, 2, 0.5, 6000),
                ],
                limits: vec![3, 4, 5, 6, 7, 8, 4, 4, 2],
            },
            Case {
                name: "above the slow-start threshold it grows by one per round",
                samples: vec![
                    sample(400, 1, 0.0, 400),
                    sample(400, 1, 0.0, 800),
                    sample(400, 1, 0.0, 1200),  // 5
                    sample(2000, 1, 0.0, 3200), // slow: 2, threshold 2
                    sample(400, 2, 0.0, 3700),  // 1 good of 2
                    sample(400, 2, 0.0, 4100),  // 2 of 2: 3
                    sample(400, 2, 0.0, 4500),  // 1 of 3
                ],
                limits: vec![3, 4, 5, 2, 2, 3, 3],
            },
            Case {
                name: "a failed launch shrinks, never below one",
                samples: vec![failed(400), failed(1000), failed(2000)],
                limits: vec![1, 1, 1],
            },
            Case {
                name: "a launch over the latency budget shrinks even when its stretch is fine",
                samples: vec![sample(400, 1, 0.0, 400), sample(12_000, 60, 1.0, 13_000)],
                limits: vec![3, 1],
            },
        ];
        for c in cases {
            let mut p = Pacer::new(2, 2, Duration::from_secs(10));
            assert_eq!(limits(&mut p, &c.samples), c.limits, "{}", c.name);
        }
    }

    #[test]
    fn the_hold_reason_is_kept_for_the_journal() {
        let mut p = Pacer::new(2, 2, Duration::from_secs(10));
        p.observe(sample(400, 1, 0.0, 400));
        assert_eq!(
            p.observe(sample(560, 2, 0.95, 1000)),
            Change::Held(Some(Hold::Cpu))
        );
        assert_eq!(p.held(), Some(Hold::Cpu));
        assert_eq!(p.observe(sample(400, 2, 0.1, 1400)), Change::Grew(4));
        assert_eq!(p.held(), None);
    }

    #[test]
    fn it_never_passes_the_ceiling() {
        let mut p = Pacer::new(1, 1, Duration::from_secs(10));
        for i in 0..200 {
            p.observe(sample(400, 1, 0.0, 400 * (i + 1)));
        }
        assert_eq!(p.limit(), p.ceiling());
        assert_eq!(p.held(), Some(Hold::Ceiling));
    }
}
