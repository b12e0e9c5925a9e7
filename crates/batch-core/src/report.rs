//! `report.json`: the run's totals and one entry per account, written atomically so
//! that a reader never sees half a report (write to a temp file, fsync, rename).
//!
//! The report is a pure fold of the journal, [`Report::from_events`]: the runner
//! writes it that way at the end of a run, and `batch-cli report RUN_DIR` rebuilds it
//! the same way for a run whose runner died before (SIGKILL, power cut). Nothing in
//! it is known only to the runner's memory. It does not read files or redact on its
//! own: the journal it folds is already redacted.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::journal::{Event, Record};

/// `exit_code` of a run whose runner died without journaling `run_finished`
/// (128 + SIGKILL, the shell's convention for a killed process).
pub const EXIT_DIED: i32 = 137;

/// The whole report (the spec's fields, plus `memory` and `interrupted`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The run directory's name.
    pub run_id: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// The process exit code this run ended with.
    pub exit_code: i32,
    /// Whether Ctrl-C / SIGTERM ended it.
    #[serde(default)]
    pub interrupted: bool,
    /// Sums over the accounts.
    pub totals: Totals,
    /// One per account, in plan order.
    pub accounts: Vec<AccountReport>,
    /// Memory peaks (see the resources module).
    #[serde(default)]
    pub memory: MemoryReport,
}

/// Sums over all accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Iterations that succeeded.
    pub iterations_ok: u64,
    /// Iterations that failed after all retries.
    pub iterations_failed: u64,
    /// Browsers started.
    pub browser_launches: u64,
    /// Retries made.
    pub retries: u64,
}

/// One account's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountReport {
    /// The account id.
    pub id: u64,
    /// `ok`, `failed` (some iterations failed), `interrupted` or `error` (could not run).
    pub status: String,
    /// Iterations that succeeded.
    pub iterations_ok: u64,
    /// Iterations that failed.
    pub iterations_failed: u64,
    /// Browsers started for this account.
    pub browser_launches: u64,
    /// Retries made for this account.
    pub retries: u64,
    /// Values recorded by `extract`/`script` with `into` (the last value per name).
    pub values: BTreeMap<String, Value>,
    /// The last error, redacted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_error: Option<String>,
    /// Highest PSS of this account's browser seen by the sampler, in bytes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub peak_browser_pss_bytes: Option<u64>,
    /// Each of its browsers that the sampler saw, with its own peak.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub browsers: Vec<BrowserReport>,
}

/// One browser of an account, as the memory sampler saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowserReport {
    /// Its launch number within the account (1, 2, …), as in `browser_created.launch`.
    pub launch: u32,
    /// Highest PSS seen, bytes.
    pub peak_pss_bytes: u64,
}

/// Memory figures over the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryReport {
    /// Lowest system available memory seen, bytes.
    pub min_available_bytes: Option<u64>,
    /// Highest sum of all browsers' PSS seen at one sample, bytes.
    pub peak_browsers_pss_bytes: Option<u64>,
    /// Samples taken.
    pub samples: u64,
    /// How long creations waited for memory in total, milliseconds.
    pub waited_ms: u64,
}

impl Report {
    /// The report a journal says: the plan comes from the first `run_started`, each
    /// account's counts from its iteration outcomes (an `(step, iteration)` counted
    /// once, its last outcome winning), launches from `browser_created` and
    /// `launch_failed`, retries from `retry`, values from `value_recorded`, memory from
    /// `memory_sample` and `admitted`. Covers every part of a resumed run.
    ///
    /// Status per account: `error` if its last `account_done` says so; else
    /// `interrupted` while some planned iteration has no outcome; else `failed` if an
    /// iteration or an `after` failed; else `ok`. The run's `exit_code` and
    /// `interrupted` are the last part's `run_finished`; a last part without one (the
    /// runner died) is interrupted with [`EXIT_DIED`].
    pub fn from_events(records: &[Record]) -> Report {
        let mut report = Report::default();
        let mut planned = 0u64;
        let mut accounts: Vec<Acc> = Vec::new();
        let mut last_finished: Option<(&str, i32, bool)> = None;
        let mut last_ts = "";
        for r in records {
            last_ts = &r.ts;
            let find = |accounts: &mut Vec<Acc>, id: u64| -> usize {
                match accounts.iter().position(|a| a.report.id == id) {
                    Some(i) => i,
                    None => {
                        accounts.push(Acc::new(id));
                        accounts.len() - 1
                    }
                }
            };
            match &r.event {
                Event::RunStarted(p) => {
                    if report.run_id.is_empty() {
                        report.run_id = p.run_id.clone();
                        report.started_at = r.ts.clone();
                        planned = p.steps.len() as u64 * u64::from(p.quantity);
                        for id in &p.accounts {
                            find(&mut accounts, *id);
                        }
                    }
                    // A new part: whatever the last one finished with is superseded.
                    last_finished = None;
                }
                Event::RunFinished {
                    exit_code,
                    interrupted,
                    ..
                } => last_finished = Some((&r.ts, *exit_code, *interrupted)),
                Event::IterationOk {
                    account,
                    step,
                    iteration,
                    ..
                } => {
                    let i = find(&mut accounts, *account);
                    accounts[i].outcomes.insert((*step, *iteration), true);
                }
                Event::IterationFailed {
                    account,
                    step,
                    iteration,
                    error,
                    ..
                } => {
                    let i = find(&mut accounts, *account);
                    accounts[i].outcomes.insert((*step, *iteration), false);
                    accounts[i].report.last_error = Some(error.clone());
                }
                Event::AfterFailed { account, error, .. } => {
                    let i = find(&mut accounts, *account);
                    accounts[i].after_failed = true;
                    accounts[i].report.last_error = Some(error.clone());
                }
                Event::BrowserCreated { account, .. } | Event::LaunchFailed { account, .. } => {
                    let i = find(&mut accounts, *account);
                    accounts[i].report.browser_launches += 1;
                }
                Event::Retry { account, .. } => {
                    let i = find(&mut accounts, *account);
                    accounts[i].report.retries += 1;
                }
                Event::ValueRecorded {
                    account,
                    name,
                    value,
                    ..
                } => {
                    let i = find(&mut accounts, *account);
                    accounts[i].report.values.insert(name.clone(), value.clone());
                }
                Event::AccountDone {
                    account,
                    status,
                    error,
                    ..
                } => {
                    let i = find(&mut accounts, *account);
                    accounts[i].last_status = Some(status.clone());
                    if let Some(e) = error {
                        accounts[i].report.last_error = Some(e.clone());
                    }
                }
                Event::MemorySample {
                    available_bytes,
                    browsers_pss_bytes,
                    browsers,
                    ..
                } => {
                    let m = &mut report.memory;
                    m.samples += 1;
                    if let Some(a) = available_bytes {
                        m.min_available_bytes = Some(m.min_available_bytes.map_or(*a, |x| x.min(*a)));
                    }
                    m.peak_browsers_pss_bytes = Some(
                        m.peak_browsers_pss_bytes
                            .map_or(*browsers_pss_bytes, |x| x.max(*browsers_pss_bytes)),
                    );
                    for (key, bytes) in browsers {
                        let Some((a, n)) = key.split_once('.') else {
                            continue;
                        };
                        let (Ok(a), Ok(n)) = (a.parse::<u64>(), n.parse::<u32>()) else {
                            continue;
                        };
                        let i = find(&mut accounts, a);
                        let peak = accounts[i].peaks.entry(n).or_default();
                        *peak = (*peak).max(*bytes);
                    }
                }
                Event::Admitted { waits_ms, .. } => {
                    report.memory.waited_ms += waits_ms.get("memory").copied().unwrap_or(0);
                }
                _ => {}
            }
        }
        report.finished_at = match last_finished {
            Some((ts, code, interrupted)) => {
                report.exit_code = code;
                report.interrupted = interrupted;
                ts.to_string()
            }
            None => {
                report.exit_code = EXIT_DIED;
                report.interrupted = true;
                last_ts.to_string()
            }
        };
        report.accounts = accounts.into_iter().map(|a| a.finish(planned)).collect();
        report.sum_totals();
        report
    }

    /// Recompute the totals from the accounts.
    pub fn sum_totals(&mut self) {
        let mut t = Totals::default();
        for a in &self.accounts {
            t.iterations_ok += a.iterations_ok;
            t.iterations_failed += a.iterations_failed;
            t.browser_launches += a.browser_launches;
            t.retries += a.retries;
        }
        self.totals = t;
    }

    /// Every recorded value and error redacted: the report never shows a secret, even
    /// one that got past the runner.
    pub fn redact(&mut self, secrets: &crate::config::Secrets) {
        for a in &mut self.accounts {
            if let Some(e) = &a.last_error {
                a.last_error = Some(secrets.redact(e));
            }
            a.values = a
                .values
                .iter()
                .map(|(k, v)| (secrets.redact(k), secrets.redact_value(v)))
                .collect();
        }
    }

    /// Write `path` atomically, mode 0600.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        fsutil::write_atomic(
            path,
            &serde_json::to_vec_pretty(self).expect("report serializes"),
            0o600,
        )
    }

    /// Read a report back.
    pub fn read(path: &Path) -> std::io::Result<Report> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// What [`rebuild`] did with `report.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebuild {
    /// It already said what the journal says.
    UpToDate,
    /// There was none (the runner died before writing it): written.
    Missing,
    /// It said something else (the runner died before a later part finished):
    /// rewritten.
    Stale,
    /// A runner holds the run's lock: the run is not over, nothing was written.
    InProgress,
}

/// A run directory's report, as [`rebuild`] left it.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    /// The fold of the journal.
    pub report: Report,
    /// Bytes of a torn last journal line that were ignored.
    pub torn: Option<u64>,
    /// What happened to `report.json`.
    pub action: Rebuild,
}

/// Why [`rebuild`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The journal cannot be read or holds a bad line.
    #[error(transparent)]
    Journal(#[from] crate::journal::ReadError),
    /// The journal has no `run_started`.
    #[error("{path}: no run_started (expected the journal of a run)")]
    NotARun {
        /// The journal.
        path: std::path::PathBuf,
    },
    /// `report.json` could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The report.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Fold `<run_dir>/events.jsonl` and make `report.json` say the same (atomically),
/// unless a runner is still running the run (it holds `run.lock`).
pub fn rebuild(run_dir: &Path) -> Result<Rebuilt, RebuildError> {
    let journal = run_dir.join("events.jsonl");
    let read = crate::journal::read(&journal)?;
    let report = Report::from_events(&read.records);
    if report.run_id.is_empty() {
        return Err(RebuildError::NotARun { path: journal });
    }
    let path = run_dir.join("report.json");
    let on_disk = Report::read(&path).ok();
    let action = if on_disk.as_ref() == Some(&report) {
        Rebuild::UpToDate
    } else if matches!(
        fsutil::lock_file(&run_dir.join("run.lock"), false),
        Ok(fsutil::LockOutcome::Busy)
    ) {
        Rebuild::InProgress
    } else {
        report
            .write(&path)
            .map_err(|source| RebuildError::Write { path, source })?;
        if on_disk.is_some() {
            Rebuild::Stale
        } else {
            Rebuild::Missing
        }
    };
    Ok(Rebuilt {
        report,
        torn: read.torn,
        action,
    })
}

/// One account while folding.
struct Acc {
    report: AccountReport,
    outcomes: BTreeMap<(u32, u32), bool>,
    after_failed: bool,
    last_status: Option<String>,
    peaks: BTreeMap<u32, u64>,
}

impl Acc {
    fn new(id: u64) -> Acc {
        Acc {
            report: AccountReport {
                id,
                ..Default::default()
            },
            outcomes: BTreeMap::new(),
            after_failed: false,
            last_status: None,
            peaks: BTreeMap::new(),
        }
    }

    fn finish(mut self, planned: u64) -> AccountReport {
        let r = &mut self.report;
        r.iterations_ok = self.outcomes.values().filter(|ok| **ok).count() as u64;
        r.iterations_failed = self.outcomes.len() as u64 - r.iterations_ok;
        r.status = if self.last_status.as_deref() == Some("error") {
            "error"
        } else if (self.outcomes.len() as u64) < planned {
            "interrupted"
        } else if r.iterations_failed > 0 || self.after_failed {
            "failed"
        } else {
            "ok"
        }
        .into();
        r.peak_browser_pss_bytes = self.peaks.values().copied().max();
        r.browsers = self
            .peaks
            .iter()
            .map(|(launch, peak)| BrowserReport {
                launch: *launch,
                peak_pss_bytes: *peak,
            })
            .collect();
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_sums_and_the_file_round_trips() {
        let mut r = Report {
            run_id: "r".into(),
            ..Default::default()
        };
        for (id, ok, failed) in [(1, 3, 0), (2, 1, 2)] {
            r.accounts.push(AccountReport {
                id,
                status: "ok".into(),
                iterations_ok: ok,
                iterations_failed: failed,
                browser_launches: 1,
                ..Default::default()
            });
        }
        r.sum_totals();
        assert_eq!(
            r.totals,
            Totals {
                iterations_ok: 4,
                iterations_failed: 2,
                browser_launches: 2,
                retries: 0
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("report.json");
        r.write(&p).unwrap();
        assert_eq!(Report::read(&p).unwrap(), r);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
