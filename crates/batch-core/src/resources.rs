//! Watching memory: a sampler off the hot path, and a gate new browser creations pass.
//!
//! Figures come from the system's *available* memory (`/proc/meminfo`) and each browser's
//! process-tree PSS (`/proc/PID/smaps_rollup`): RSS sums count shared pages once per
//! process and overcount a browser about 5×. A sample costs tens of milliseconds
//! (hundreds under load), so the sampler runs every few seconds in its own task, and
//! the gate reads only the cheap system figure.
//!
//! There is deliberately no cap on the number of browsers: the gate only makes a new
//! creation *wait* while available memory is below the threshold.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::journal::{Event, Journal};
use crate::report::MemoryReport;

/// Shared memory state: live browsers to sample, peaks seen, the threshold.
#[derive(Debug, Clone)]
pub struct Memory {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    threshold: u64,
    control_file: Option<std::path::PathBuf>,
    browsers: BTreeMap<u64, u32>,
    peaks: BTreeMap<u64, u64>,
    report: MemoryReport,
}

/// System available memory in bytes, fresh (`MemAvailable` of `/proc/meminfo`).
pub fn available_memory() -> Option<u64> {
    fsutil::proc::mem_available().filter(|a| *a > 0)
}

impl Memory {
    /// New state with the low-memory threshold in bytes.
    pub fn new(threshold: u64) -> Self {
        Memory {
            inner: Arc::new(Mutex::new(Inner {
                threshold,
                control_file: None,
                browsers: BTreeMap::new(),
                peaks: BTreeMap::new(),
                report: MemoryReport::default(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The threshold in force: the control file's value if it holds a valid size,
    /// else the configured one.
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
    /// overrides the threshold while the run goes on — so a user whose run is waiting
    /// for memory can let it continue without restarting it.
    pub fn set_control_file(&self, path: std::path::PathBuf) {
        self.lock().control_file = Some(path);
    }

    /// Change the threshold (takes effect at the gate's next check).
    pub fn set_threshold(&self, bytes: u64) {
        self.lock().threshold = bytes;
    }

    /// Start sampling an account's browser (by its driver pid, the root of its tree).
    pub fn track(&self, account: u64, root_pid: u32) {
        self.lock().browsers.insert(account, root_pid);
    }

    /// Stop sampling an account's browser.
    pub fn untrack(&self, account: u64) {
        self.lock().browsers.remove(&account);
    }

    /// The figures for the report.
    pub fn report(&self) -> MemoryReport {
        self.lock().report.clone()
    }

    /// Highest PSS seen for an account's browser.
    pub fn peak_of(&self, account: u64) -> Option<u64> {
        self.lock().peaks.get(&account).copied()
    }

    /// Take one sample now and journal it as `memory_sample`.
    pub fn sample(&self, journal: &Journal) {
        let roots: Vec<(u64, u32)> = self.lock().browsers.iter().map(|(a, p)| (*a, *p)).collect();
        let available = available_memory();
        // Reading smaps_rollup is the slow part: done without holding the lock.
        let per: Vec<(u64, u64)> = roots
            .iter()
            .filter_map(|(a, pid)| launcher::tree_pss_bytes(*pid).map(|b| (*a, b)))
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
            for (a, b) in &per {
                let peak = inner.peaks.entry(*a).or_default();
                *peak = (*peak).max(*b);
            }
        }
        let browsers: serde_json::Map<String, serde_json::Value> = per
            .iter()
            .map(|(a, b)| (a.to_string(), (*b).into()))
            .collect();
        journal.emit(
            Event::new("memory_sample")
                .with("available_bytes", available)
                .with("browsers_pss_bytes", total)
                .with("browsers", browsers),
        );
    }

    /// Sample every `interval` until the returned handle is aborted.
    pub fn spawn_sampler(
        &self,
        journal: Journal,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (me2, j2) = (me.clone(), journal.clone());
                // /proc reads block: keep them off the runtime's workers.
                let _ = tokio::task::spawn_blocking(move || me2.sample(&j2)).await;
            }
        })
    }

    /// Wait until available memory is at least the threshold. Journals
    /// `memory_wait` (once, with the figures) if it has to wait, and `memory_ok` when
    /// it may go on.
    pub async fn wait_for_room(&self, journal: &Journal, account: u64) {
        let started = Instant::now();
        let mut announced = false;
        loop {
            let threshold = self.threshold();
            let available = available_memory();
            // If the figure cannot be read, waiting would never end: go on.
            if available.is_none_or(|a| a >= threshold) {
                break;
            }
            if !announced {
                announced = true;
                journal.emit(
                    Event::new("memory_wait")
                        .account(account)
                        .with("available_bytes", available)
                        .with("threshold_bytes", threshold)
                        .with(
                            "reason",
                            "available memory is below the threshold; browser creation waits",
                        ),
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if announced {
            let waited = started.elapsed().as_millis() as u64;
            self.lock().report.waited_ms += waited;
            journal.emit(
                Event::new("memory_ok")
                    .account(account)
                    .with("waited_ms", waited),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> (tempfile::TempDir, Journal, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let j = Journal::open(&path, Arc::new(|_| {})).unwrap();
        (dir, j, path)
    }

    #[test]
    fn samples_record_our_own_tree_and_system_memory() {
        let (_d, j, path) = journal();
        let m = Memory::new(0);
        m.track(7, std::process::id());
        m.sample(&j);
        let r = m.report();
        assert_eq!(r.samples, 1);
        assert!(r.min_available_bytes.unwrap() > 0);
        assert!(m.peak_of(7).unwrap() > 0);
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("\"memory_sample\""));
    }

    #[tokio::test]
    async fn the_gate_waits_while_the_threshold_is_too_high_and_goes_on_when_lowered() {
        let (_d, j, path) = journal();
        let m = Memory::new(u64::MAX);
        let waiter = {
            let (m, j) = (m.clone(), j.clone());
            tokio::spawn(async move { m.wait_for_room(&j, 1).await })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&path)
            .unwrap()
            .contains("memory_wait")
        {
            assert!(Instant::now() < deadline, "no memory_wait event");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!waiter.is_finished());
        m.set_threshold(0);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("memory_ok")
        );
    }
}
