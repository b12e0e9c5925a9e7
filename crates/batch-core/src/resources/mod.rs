//! Watching memory: a sampler off the hot path, per-browser peaks, the learned cost of
//! one browser, and the reserve that admission keeps free.
//!
//! Figures come from available memory ([`available_memory`], cgroup-aware) and each
//! browser's process-tree PSS (`/proc/PID/smaps_rollup`): RSS sums count shared pages
//! once per process and overcount a browser about 5×. A sample reads the process table
//! once for all browsers and re-reads a process's `smaps_rollup` only when its resident
//! size moved or its reading is a few samples old ([`launcher::PssCache`]); even so a
//! sample costs milliseconds (more under load), so the sampler runs every few seconds
//! on a blocking thread, and admission reads only the cheap figures kept here.
//!
//! A browser is expected to grow to [`Memory::browser_cost`], the mean of every
//! browser's peak PSS: a young browser (just launched, before its pages load) is far
//! below it, so [`Memory::growth`] is what the live browsers are still expected to
//! take. Without it, admission let browsers in while the young ones were small, and
//! their growth then took available memory below the reserve (100 accounts in a 4 GiB
//! cgroup: lowest 848 MiB against a 1 GiB reserve).
//!
//! What this does not do: decide anything. The scheduler (`runner::scheduler`) admits
//! a creation only while available memory stays above the reserve plus the live
//! browsers' growth plus [`Memory::browser_cost`] for every launch in flight and this
//! one; there is no cap on browsers.

mod machine;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use machine::{CpuPressure, available_memory, cgroup_memory_limit};

use crate::journal::{Event, Journal};
use crate::report::MemoryReport;

/// What one browser is assumed to cost before any has been measured: the upper end of
/// an idle headless browser with its driver here (255–370 MiB PSS).
pub const PRIOR_BROWSER_COST: u64 = 400 << 20;

/// One browser: the account it serves and its launch number within the account.
pub type BrowserKey = (u64, u32);

/// The running sampler task.
#[derive(Debug)]
pub struct Sampler {
    stop: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Stop sampling and wait for a sample in progress to be journaled, so that no
    /// `memory_sample` can follow `run_finished` (aborting the task would not stop a
    /// sample already running on a blocking thread).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}

/// Shared memory state: live browsers to sample, peaks seen, the reserve.
#[derive(Debug, Clone)]
pub struct Memory {
    inner: Arc<Mutex<Inner>>,
    /// Last PSS readings per process, so a sample re-reads `smaps_rollup` only where
    /// the resident size moved (see [`launcher::PssCache`]: a full read of every
    /// browser process each second cost ~7 % of the benchmark's CPU-seconds).
    pss: Arc<Mutex<launcher::PssCache>>,
}

#[derive(Debug)]
struct Inner {
    threshold: u64,
    control_file: Option<std::path::PathBuf>,
    browsers: BTreeMap<BrowserKey, u32>,
    latest: BTreeMap<BrowserKey, u64>,
    peaks: BTreeMap<BrowserKey, u64>,
    cost: Option<u64>,
    report: MemoryReport,
}

impl Memory {
    /// New state with the reserve (`min_available_memory`) in bytes.
    pub fn new(threshold: u64) -> Self {
        Memory {
            inner: Arc::new(Mutex::new(Inner {
                threshold,
                control_file: None,
                browsers: BTreeMap::new(),
                latest: BTreeMap::new(),
                peaks: BTreeMap::new(),
                cost: None,
                report: MemoryReport::default(),
            })),
            pss: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reserve in force: the control file's value if it holds a valid size, else
    /// the configured one.
    pub fn threshold(&self) -> u64 {
        let (threshold, file) = {
            let inner = self.lock();
            (inner.threshold, inner.control_file.clone())
        };
        file.and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|text| crate::config::parse_size(text.trim()).ok())
            .unwrap_or(threshold)
    }

    /// A file (in the run directory) whose content, a size such as `512MiB` or `0`,
    /// overrides the reserve while the run goes on — so a user whose run is waiting
    /// for memory can let it continue without restarting it.
    pub fn set_control_file(&self, path: std::path::PathBuf) {
        self.lock().control_file = Some(path);
    }

    /// Change the reserve (takes effect at admission's next check).
    pub fn set_threshold(&self, bytes: u64) {
        self.lock().threshold = bytes;
    }

    /// What one more browser is expected to cost: the mean of every browser's peak PSS
    /// so far (live and closed), or [`PRIOR_BROWSER_COST`] until one has been measured.
    pub fn browser_cost(&self) -> u64 {
        self.lock().cost.unwrap_or(PRIOR_BROWSER_COST)
    }

    /// What the live browsers are still expected to take: for each, the cost less its
    /// latest PSS (the whole cost for one not sampled yet; nothing for one above it).
    pub fn growth(&self) -> u64 {
        let inner = self.lock();
        let cost = inner.cost.unwrap_or(PRIOR_BROWSER_COST);
        inner
            .browsers
            .keys()
            .map(|k| cost.saturating_sub(inner.latest.get(k).copied().unwrap_or(0)))
            .sum()
    }

    /// Start sampling a browser (by its driver pid, the root of its process tree).
    pub fn track(&self, key: BrowserKey, root_pid: u32) {
        self.lock().browsers.insert(key, root_pid);
    }

    /// Stop sampling a browser (its peak stays).
    pub fn untrack(&self, key: BrowserKey) {
        let mut inner = self.lock();
        inner.browsers.remove(&key);
        inner.latest.remove(&key);
    }

    /// The figures for the report.
    pub fn report(&self) -> MemoryReport {
        self.lock().report.clone()
    }

    /// Highest PSS seen of any of an account's browsers.
    pub fn peak_of(&self, account: u64) -> Option<u64> {
        let inner = self.lock();
        inner
            .peaks
            .range((account, 0)..=(account, u32::MAX))
            .map(|(_, b)| *b)
            .max()
    }

    /// Highest PSS seen of each browser, in key order.
    pub fn browser_peaks(&self) -> Vec<(BrowserKey, u64)> {
        self.lock().peaks.iter().map(|(k, b)| (*k, *b)).collect()
    }

    /// A live browser's PSS at the latest sample.
    pub fn latest_of(&self, key: BrowserKey) -> Option<u64> {
        self.lock().latest.get(&key).copied()
    }

    /// Take one sample now and journal it as `memory_sample`.
    pub fn sample(&self, journal: &Journal) {
        let roots: Vec<(BrowserKey, u32)> =
            self.lock().browsers.iter().map(|(k, p)| (*k, *p)).collect();
        let available = available_memory();
        // Reading /proc is the slow part: once for all browsers, without the lock.
        let pids: Vec<u32> = roots.iter().map(|(_, p)| *p).collect();
        let pss = self
            .pss
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .trees_pss_bytes(&pids);
        let per: Vec<(BrowserKey, u64)> = roots
            .iter()
            .zip(pss)
            .filter_map(|((k, _), b)| Some((*k, b?)))
            .collect();
        let total: u64 = per.iter().map(|(_, b)| b).sum();
        {
            let mut inner = self.lock();
            let r = &mut inner.report;
            r.samples += 1;
            if let Some(a) = available {
                r.min_available_bytes = Some(r.min_available_bytes.map_or(a, |m| m.min(a)));
            }
            r.peak_browsers_pss_bytes =
                Some(r.peak_browsers_pss_bytes.map_or(total, |m| m.max(total)));
            for (k, b) in &per {
                let peak = inner.peaks.entry(*k).or_default();
                *peak = (*peak).max(*b);
                // Only browsers still tracked (one may have closed while we read).
                if inner.browsers.contains_key(k) {
                    inner.latest.insert(*k, *b);
                }
            }
            if !inner.peaks.is_empty() {
                let peaks: u64 = inner.peaks.values().sum();
                inner.cost = Some(peaks / inner.peaks.len() as u64);
            }
        }
        let browsers = per
            .iter()
            .map(|((a, n), b)| (format!("{a}.{n}"), *b))
            .collect();
        journal.emit(Event::MemorySample {
            available_bytes: available,
            browsers_pss_bytes: total,
            browser_cost_bytes: self.browser_cost(),
            browsers,
        });
    }

    /// Sample every `interval` until [`Sampler::stop`].
    pub fn spawn_sampler(&self, journal: Journal, interval: Duration) -> Sampler {
        let me = self.clone();
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let (me2, j2) = (me.clone(), journal.clone());
                // /proc reads block: keep them off the runtime's workers.
                let _ = tokio::task::spawn_blocking(move || me2.sample(&j2)).await;
            }
        });
        Sampler { stop, handle }
    }

    /// Count time creations waited for memory (for the report).
    pub fn add_wait(&self, waited: Duration) {
        self.lock().report.waited_ms += waited.as_millis() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> (tempfile::TempDir, Journal, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let j = Journal::open(
            &path,
            Arc::new(|_| {}),
            Default::default(),
            Default::default(),
        )
        .unwrap();
        (dir, j, path)
    }

    #[test]
    fn samples_record_each_tree_and_learn_the_cost() {
        let (_d, j, path) = journal();
        let m = Memory::new(0);
        assert_eq!(
            m.browser_cost(),
            PRIOR_BROWSER_COST,
            "the prior until measured"
        );
        // Our own process stands in for two browsers of account 7.
        m.track((7, 1), std::process::id());
        m.track((7, 2), std::process::id());
        m.sample(&j);
        let r = m.report();
        assert_eq!(r.samples, 1);
        assert!(r.min_available_bytes.unwrap() > 0);
        let one = m.latest_of((7, 1)).unwrap();
        assert!(one > 0);
        assert_eq!(m.browser_cost(), r.peak_browsers_pss_bytes.unwrap() / 2);
        let owed: u64 = [(7, 1), (7, 2)]
            .map(|k| m.browser_cost().saturating_sub(m.latest_of(k).unwrap()))
            .iter()
            .sum();
        assert_eq!(m.growth(), owed, "each owes what it lacks of the cost");
        assert!(owed < m.browser_cost());
        assert_eq!(m.browser_peaks().len(), 2);
        assert!(m.peak_of(7).unwrap() >= one);
        assert_eq!(m.peak_of(8), None);
        m.untrack((7, 1));
        assert_eq!(m.latest_of((7, 1)), None);
        assert!(m.peak_of(7).is_some(), "peaks outlive the browser");
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("\"memory_sample\"") && text.contains("\"7.2\""));
    }

    /// The cost is the mean of peaks (a young browser's small reading does not lower
    /// it), and what live browsers have not reached yet is reserved as growth.
    #[test]
    fn the_cost_is_the_mean_peak_and_young_browsers_owe_growth() {
        let m = Memory::new(0);
        let set = |latest: &[(BrowserKey, u64)], peaks: &[(BrowserKey, u64)]| {
            let mut inner = m.lock();
            inner.browsers = latest.iter().map(|(k, _)| (*k, 1)).collect();
            inner.latest = latest.iter().copied().collect();
            inner.peaks = peaks.iter().copied().collect();
            let sum: u64 = inner.peaks.values().sum();
            inner.cost = Some(sum / inner.peaks.len() as u64);
        };
        const MIB: u64 = 1 << 20;
        // Two grown browsers (one closed since), one young at 20 MiB.
        set(
            &[((1, 1), 100 * MIB), ((3, 1), 20 * MIB)],
            &[((1, 1), 100 * MIB), ((2, 1), 80 * MIB), ((3, 1), 30 * MIB)],
        );
        assert_eq!(m.browser_cost(), 70 * MIB);
        assert_eq!(m.growth(), 50 * MIB, "only the young one owes: 70 - 20");
        // One tracked but not sampled yet owes the whole cost.
        m.lock().browsers.insert((4, 1), 1);
        assert_eq!(m.growth(), 120 * MIB);
    }

    #[test]
    fn the_control_file_overrides_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let m = Memory::new(1 << 30);
        let file = dir.path().join("min_available_memory");
        m.set_control_file(file.clone());
        assert_eq!(m.threshold(), 1 << 30, "no file yet");
        std::fs::write(&file, "512MiB\n").unwrap();
        assert_eq!(m.threshold(), 512 << 20);
        std::fs::write(&file, "nonsense").unwrap();
        assert_eq!(m.threshold(), 1 << 30, "an invalid file is ignored");
    }
}
