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
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    cgroup_files().and_then(|f| read_limit(&f.limit))
}

/// Limit minus non-reclaimable usage of our memory cgroup, if it has a limit.
fn cgroup_headroom() -> Option<u64> {
    let f = cgroup_files()?;
    let limit = read_limit(&f.limit)?;
    let usage: u64 = std::fs::read_to_string(&f.usage)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(&f.stat).unwrap_or_default();
    let reclaimable = stat_value(&stat, f.inactive_file_key).unwrap_or(0);
    Some(limit.saturating_sub(usage.saturating_sub(reclaimable)))
}

struct CgroupFiles {
    limit: PathBuf,
    usage: PathBuf,
    stat: PathBuf,
    inactive_file_key: &'static str,
}

/// The files of the memory cgroup this process is in (v2, else v1), trying the path
/// from `/proc/self/cgroup` first and the mount's root second (inside a cgroup
/// namespace the root *is* our cgroup).
fn cgroup_files() -> Option<CgroupFiles> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let (v2, v1) = cgroup_paths(&own);
    let root = Path::new("/sys/fs/cgroup");
    let mut candidates: Vec<(PathBuf, bool)> = Vec::new();
    if let Some(p) = &v2 {
        candidates.push((root.join(p.trim_start_matches('/')), true));
    }
    candidates.push((root.to_path_buf(), true));
    if let Some(p) = &v1 {
        candidates.push((root.join("memory").join(p.trim_start_matches('/')), false));
    }
    candidates.push((root.join("memory"), false));
    candidates.into_iter().find_map(|(dir, v2)| {
        let files = if v2 {
            CgroupFiles {
                limit: dir.join("memory.max"),
                usage: dir.join("memory.current"),
                stat: dir.join("memory.stat"),
                inactive_file_key: "inactive_file",
            }
        } else {
            CgroupFiles {
                limit: dir.join("memory.limit_in_bytes"),
                usage: dir.join("memory.usage_in_bytes"),
                stat: dir.join("memory.stat"),
                inactive_file_key: "total_inactive_file",
            }
        };
        files.limit.exists().then_some(files)
    })
}

/// `(v2 path, v1 memory path)` from `/proc/self/cgroup`.
fn cgroup_paths(text: &str) -> (Option<String>, Option<String>) {
    let mut v2 = None;
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    (v2, v1)
}

/// A limit file's value; "max" and v1's "no limit" (close to `i64::MAX`) are `None`.
fn read_limit(path: &Path) -> Option<u64> {
    parse_limit(std::fs::read_to_string(path).ok()?.trim())
}

fn parse_limit(text: &str) -> Option<u64> {
    let n: u64 = text.parse().ok()?;
    // v1 reports "unlimited" as PAGE_COUNTER_MAX pages, about 2^63.
    (n < (1 << 62)).then_some(n)
}

fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
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
        for (text, expected) in [
            (
                "0::/user.slice/x.scope\n",
                (Some("/user.slice/x.scope"), None),
            ),
            (
                "9:name=systemd:/\n4:memory:/process_api/abc\n0::/\n",
                (Some("/"), Some("/process_api/abc")),
            ),
            ("3:cpu,memory:/a\n", (None, Some("/a"))),
            ("", (None, None)),
        ] {
            let (v2, v1) = cgroup_paths(text);
            assert_eq!((v2.as_deref(), v1.as_deref()), expected, "{text:?}");
        }
        for (text, expected) in [
            ("max", None),
            ("9223372036854771712", None),
            ("2147483648", Some(2 << 30)),
            ("junk", None),
        ] {
            assert_eq!(parse_limit(text), expected, "{text}");
        }
        assert_eq!(
            stat_value(
                "anon 5\ninactive_file 300\nactive_file 2\n",
                "inactive_file"
            ),
            Some(300)
        );
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
