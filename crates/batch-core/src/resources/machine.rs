//! What the machine has to give: available memory that respects a cgroup limit, and
//! CPU pressure.
//!
//! Available memory is the smaller of the kernel's `MemAvailable` and, inside a
//! memory cgroup with a limit (a container), the limit minus what the cgroup uses
//! beyond reclaimable page cache — a container's browsers are OOM-killed at its
//! limit long before the host's `MemAvailable` runs low.
//!
//! CPU pressure is the share of recent wall time in which some task waited for a CPU
//! (`/proc/pressure/cpu`, "some"), measured over the last second from the cumulative
//! counter so it reacts within a launch rather than over `avg10`'s ten seconds. Where
//! PSI is missing (old kernels, some containers) the 1-minute load average per core
//! stands in: load ≤ cores reads 0, load ≥ 2 × cores reads 1, linear between.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fsutil::cgroup::MemoryCgroup;

/// Available memory in bytes, fresh; `None` if the kernel does not say.
pub fn available_memory() -> Option<u64> {
    let host = fsutil::proc::mem_available()?;
    Some(match cgroup_headroom() {
        Some(room) => host.min(room),
        None => host,
    })
}

/// The memory cgroup's limit, if it has one (for `doctor` and the docs).
pub fn cgroup_memory_limit() -> Option<u64> {
    MemoryCgroup::own()?.limit()
}

/// Limit minus non-reclaimable usage of our memory cgroup, if it has a limit.
fn cgroup_headroom() -> Option<u64> {
    let c = MemoryCgroup::own()?;
    let limit = c.limit()?;
    let usage = c.usage()?;
    Some(limit.saturating_sub(usage.saturating_sub(c.reclaimable())))
}

/// CPU pressure over the last second; see the module docs. Cheap to call often.
#[derive(Debug)]
pub struct CpuPressure {
    cores: usize,
    /// `(when, cumulative stall µs)`, oldest first, covering about the last second.
    history: Mutex<VecDeque<(Instant, u64)>>,
}

const WINDOW: Duration = Duration::from_secs(1);

impl CpuPressure {
    /// A reader for a machine with `cores` CPUs.
    pub fn new(cores: usize) -> Self {
        CpuPressure {
            cores: cores.max(1),
            history: Mutex::new(VecDeque::new()),
        }
    }

    /// 0..=1, or `None` if neither PSI nor the load average can be read.
    pub fn read(&self) -> Option<f64> {
        match std::fs::read_to_string("/proc/pressure/cpu")
            .ok()
            .and_then(|t| psi_some(&t))
        {
            Some((avg10, total)) => Some(self.windowed(Instant::now(), total).unwrap_or(avg10)),
            None => {
                let load: f64 = std::fs::read_to_string("/proc/loadavg")
                    .ok()?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                Some(load_pressure(load, self.cores))
            }
        }
    }

    /// The stall share between the oldest sample in the window and now.
    fn windowed(&self, now: Instant, total_us: u64) -> Option<f64> {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        while h.len() > 1
            && h.get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= WINDOW)
        {
            h.pop_front();
        }
        let result = h.front().and_then(|(t, v)| {
            let dt = now.duration_since(*t).as_secs_f64();
            (dt >= 0.05).then(|| (total_us.saturating_sub(*v) as f64 / 1e6 / dt).clamp(0.0, 1.0))
        });
        h.push_back((now, total_us));
        result
    }
}

/// `(avg10 as 0..=1, total µs)` of the "some" line.
fn psi_some(text: &str) -> Option<(f64, u64)> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let avg10: f64 = field("avg10")?.parse().ok()?;
    let total: u64 = field("total")?.parse().ok()?;
    Some((avg10 / 100.0, total))
}

fn load_pressure(load: f64, cores: usize) -> f64 {
    let per_core = load / cores as f64;
    (per_core - 1.0).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(
            psi_some(
                "some avg10=12.50 avg60=1.00 avg300=0.00 total=4200\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
            ),
            Some((0.125, 4200))
        );
        for (load, cores, expected) in [(0.5, 2, 0.0), (2.0, 2, 0.0), (3.0, 2, 0.5), (9.0, 2, 1.0)]
        {
            assert_eq!(load_pressure(load, cores), expected, "{load} on {cores}");
        }
    }

    #[test]
    fn pressure_is_measured_over_the_window() {
        let p = CpuPressure::new(2);
        let t0 = Instant::now();
        assert_eq!(p.windowed(t0, 0), None, "one point is no window");
        // Stalled half of the next 400 ms.
        assert_eq!(
            p.windowed(t0 + Duration::from_millis(400), 200_000),
            Some(0.5)
        );
        // All of the next 200 ms: over the 600 ms window, 400 of 600 ms.
        let v = p
            .windowed(t0 + Duration::from_millis(600), 400_000)
            .unwrap();
        assert!((v - 400.0 / 600.0).abs() < 1e-9, "{v}");
        // Two seconds later the old points have left the window.
        let v = p
            .windowed(t0 + Duration::from_millis(2600), 400_000)
            .unwrap();
        assert_eq!(v, 0.0);
    }

    #[test]
    fn the_real_machine_answers() {
        let a = available_memory().expect("MemAvailable is readable here");
        assert!(a > 0);
        let p = CpuPressure::new(2);
        assert!(p.read().is_some_and(|v| (0.0..=1.0).contains(&v)));
    }
}
