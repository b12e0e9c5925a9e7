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
    /// `ok`, `failed` (some iterations failed), `quarantined` (set aside by `[health]`:
    /// see `crate::health`), `interrupted` or `error` (could not run).
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
    /// Each time its forwarder went on from a proxy it could not reach to the next of
    /// the account's list, in order (proxies without credentials).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub proxy_failovers: Vec<ProxyFailover>,
    /// `optional` actions skipped because their element (or download) did not come.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub actions_skipped: u64,
}

/// One move of an account's forwarder to the next proxy of its list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyFailover {
    /// The proxy it could not reach.
    pub from: String,
    /// The proxy it went on through.
    pub to: String,
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
                Event::ActionSkipped { account, .. } => {
                    let i = find(&mut accounts, *account);
                    accounts[i].report.actions_skipped += 1;
                }
                Event::ProxyFailover { account, from, to } => {
                    let i = find(&mut accounts, *account);
                    let (from, to) = (from.clone(), to.clone());
                    accounts[i]
                        .report
                        .proxy_failovers
                        .push(ProxyFailover { from, to });
                }
                Event::ValueRecorded {
                    account,
                    name,
                    value,
                    ..
                } => {
                    let i = find(&mut accounts, *account);
                    accounts[i]
                        .report
                        .values
                        .insert(name.clone(), value.clone());
                }
                Event::AccountQuarantined {
                    account, reason, ..
                }
                | Event::QuarantineSkipped {
                    account, reason, ..
                } => {
                    let i = find(&mut accounts, *account);
                    accounts[i].report.last_error = Some(format!("quarantined: {reason}"));
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
                        m.min_available_bytes =
                            Some(m.min_available_bytes.map_or(*a, |x| x.min(*a)));
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

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    let action = if let Some(kept) = on_disk.as_ref().filter(|d| agrees(d, &report)) {
        // (A runner that survived its journal — disk full, exit 3 — knew its exit
        // code; the journal, cut short, does not.)
        let report = kept.clone();
        return Ok(Rebuilt {
            report,
            torn: read.torn,
            action: Rebuild::UpToDate,
        });
    } else if on_disk.as_ref() == Some(&report) {
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

/// `on_disk` says what the journal says. When the journal's last part has no
/// `run_finished` but `on_disk` was written after its last line (same `finished_at`,
/// same accounts), the runner outlived its journal (it stopped on a write error) and
/// wrote the report itself: its `exit_code` and `interrupted` stand.
fn agrees(on_disk: &Report, folded: &Report) -> bool {
    on_disk == folded
        || (folded.exit_code == EXIT_DIED
            && Report {
                exit_code: folded.exit_code,
                interrupted: folded.interrupted,
                ..on_disk.clone()
            } == *folded)
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
        } else if self.last_status.as_deref() == Some("quarantined") {
            // Set aside (this part's last word on it): its iterations left did not run.
            "quarantined"
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

    use crate::journal::{Event, Record, RunStarted};

    fn started(quantity: u32, resumed: bool) -> Event {
        Event::RunStarted(RunStarted {
            run_id: "r1".into(),
            run_dir: "/runs/r1".into(),
            mode: "single".into(),
            accounts: vec![1, 2],
            steps: vec![1],
            quantity,
            concurrent: true,
            max_concurrent: None,
            launch_lock: true,
            launch_interval: "auto".into(),
            launch_interval_ms: None,
            retries: 2,
            headed: false,
            base_url: "http://h".into(),
            config: "/p/batch.toml".into(),
            min_available_memory_bytes: None,
            resumed,
            webdriver_url: None,
            storage_state: false,
            argv: vec![],
        })
    }

    fn created(account: u64) -> Event {
        Event::BrowserCreated {
            account,
            pid: Some(1),
            port: Some(2),
            driver_port: Some(3),
            driver_pid: Some(4),
            session_id: "s".into(),
            profile: Some("/p".into()),
            chromium: None,
            node: None,
            launch: 1,
            user_agent: None,
            accept_language: None,
            timezone: None,
            window_size: None,
            launch_ms: 5,
            admission_wait_ms: 0,
        }
    }

    fn ok(account: u64, iteration: u32) -> Event {
        Event::IterationOk {
            account,
            step: 1,
            iteration,
            attempt: 1,
        }
    }

    fn failed(account: u64, iteration: u32, error: &str) -> Event {
        Event::IterationFailed {
            account,
            step: 1,
            iteration,
            attempts: 3,
            kind: "action_failed".into(),
            error: error.into(),
            url: None,
            title: None,
            screenshot: None,
        }
    }

    fn retry(account: u64) -> Event {
        Event::Retry {
            account,
            step: 1,
            iteration: 1,
            attempt: 2,
            kind: "browser_gone".into(),
            error: "gone".into(),
            backoff_ms: 0,
        }
    }

    fn finished(exit_code: i32, interrupted: bool) -> Event {
        Event::RunFinished {
            exit_code,
            interrupted,
            iterations_ok: 0,
            iterations_failed: 0,
            browser_launches: 0,
            retries: 0,
            runner_peak_rss_bytes: None,
        }
    }

    fn value(account: u64, name: &str, v: &str) -> Event {
        Event::ValueRecorded {
            account,
            step: 1,
            iteration: 1,
            name: name.into(),
            value: v.into(),
        }
    }

    fn records(events: Vec<Event>) -> Vec<Record> {
        events
            .into_iter()
            .enumerate()
            .map(|(n, event)| Record {
                ts: format!("2026-01-01T00:00:{n:02}.000Z"),
                event,
            })
            .collect()
    }

    /// (account, status, ok, failed, launches, retries) per account.
    type Row = (u64, &'static str, u64, u64, u64, u64);

    fn check(events: Vec<Event>, exit_code: i32, interrupted: bool, rows: &[Row]) -> Report {
        let r = Report::from_events(&records(events));
        assert_eq!((r.exit_code, r.interrupted), (exit_code, interrupted));
        let got: Vec<Row> = r
            .accounts
            .iter()
            .map(|a| {
                let status: &'static str = match a.status.as_str() {
                    "ok" => "ok",
                    "failed" => "failed",
                    "interrupted" => "interrupted",
                    "error" => "error",
                    "quarantined" => "quarantined",
                    other => panic!("status {other}"),
                };
                (
                    a.id,
                    status,
                    a.iterations_ok,
                    a.iterations_failed,
                    a.browser_launches,
                    a.retries,
                )
            })
            .collect();
        assert_eq!(got, rows);
        assert_eq!(r.run_id, "r1");
        assert_eq!(r.started_at, "2026-01-01T00:00:00.000Z");
        r
    }

    #[test]
    fn a_finished_run_folds_to_its_counts_and_statuses() {
        let r = check(
            vec![
                started(2, false),
                created(1),
                created(2),
                value(1, "v", "first"),
                ok(1, 1),
                value(1, "v", "second"),
                ok(1, 2),
                ok(2, 1),
                failed(2, 2, "boom"),
                finished(1, false),
            ],
            1,
            false,
            &[(1, "ok", 2, 0, 1, 0), (2, "failed", 1, 1, 1, 0)],
        );
        assert_eq!(r.accounts[0].values["v"], "second", "the last value wins");
        assert_eq!(r.accounts[1].last_error.as_deref(), Some("boom"));
        assert_eq!(r.finished_at, "2026-01-01T00:00:09.000Z");
        assert_eq!(
            r.totals,
            Totals {
                iterations_ok: 3,
                iterations_failed: 1,
                browser_launches: 2,
                retries: 0
            }
        );
    }

    fn done(account: u64, status: &str) -> Event {
        Event::AccountDone {
            account,
            status: status.into(),
            iterations_ok: 0,
            iterations_failed: 0,
            browser_launches: 0,
            retries: 0,
            error: None,
        }
    }

    #[test]
    fn quarantined_accounts_fold_to_quarantined_until_a_later_part_runs_them() {
        let quarantined = Event::AccountQuarantined {
            account: 2,
            reason: "challenge: #captcha on the page".into(),
            score: 3,
            until: "2026-01-01T01:00:00Z".into(),
            cooldown_ms: 3_600_000,
        };
        let skipped = Event::QuarantineSkipped {
            account: 3,
            reason: "boom".into(),
            score: 3,
            until: "2026-01-01T01:00:00Z".into(),
        };
        let part1 = vec![
            started(2, false),
            created(1),
            created(2),
            ok(1, 1),
            ok(1, 2),
            failed(2, 1, "no #welcome"),
            quarantined,
            done(2, "quarantined"),
            skipped,
            done(3, "quarantined"),
            finished(1, false),
        ];
        let r = check(
            part1.clone(),
            1,
            false,
            &[
                (1, "ok", 2, 0, 1, 0),
                (2, "quarantined", 0, 1, 1, 0),
                (3, "quarantined", 0, 0, 0, 0),
            ],
        );
        assert_eq!(
            r.accounts[1].last_error.as_deref(),
            Some("quarantined: challenge: #captcha on the page")
        );
        assert_eq!(
            r.accounts[2].last_error.as_deref(),
            Some("quarantined: boom")
        );
        // A resumed part that runs account 2's iterations decides its status anew.
        let mut resumed = part1;
        resumed.extend([
            started(2, false),
            created(2),
            ok(2, 1),
            ok(2, 2),
            done(2, "ok"),
            finished(1, false),
        ]);
        check(
            resumed,
            1,
            false,
            &[
                (1, "ok", 2, 0, 1, 0),
                (2, "ok", 2, 0, 2, 0),
                (3, "quarantined", 0, 0, 0, 0),
            ],
        );
    }

    #[test]
    fn a_crash_and_its_retry_count_once_per_iteration() {
        check(
            vec![
                started(1, false),
                created(1),
                Event::BrowserCrashed {
                    account: 1,
                    pid: Some(1),
                    node: None,
                    kind: "browser_gone".into(),
                    error: "gone".into(),
                },
                retry(1),
                created(1),
                ok(1, 1),
                created(2),
                ok(2, 1),
                finished(0, false),
            ],
            0,
            false,
            &[(1, "ok", 1, 0, 2, 1), (2, "ok", 1, 0, 1, 0)],
        );
    }

    /// Skipped optional actions are counted per account, shown on its row, and left
    /// out of both where there were none.
    #[test]
    fn skipped_optional_actions_are_counted_per_account() {
        let skipped = |account: u64, line: usize| Event::ActionSkipped {
            account,
            step: 1,
            iteration: 1,
            line,
            action: "click".into(),
        };
        let r = check(
            vec![
                started(1, false),
                created(1),
                skipped(1, 7),
                skipped(1, 9),
                ok(1, 1),
                created(2),
                ok(2, 1),
                finished(0, false),
            ],
            0,
            false,
            &[(1, "ok", 1, 0, 1, 0), (2, "ok", 1, 0, 1, 0)],
        );
        assert_eq!(r.accounts[0].actions_skipped, 2);
        assert_eq!(r.accounts[1].actions_skipped, 0);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["accounts"][0]["actions_skipped"], 2);
        assert!(
            json["accounts"][1].get("actions_skipped").is_none(),
            "{json}"
        );
        let view = crate::render::RunView {
            report: r.clone(),
            ..Default::default()
        };
        let html = crate::render::render_html(&view);
        assert_eq!(
            html.matches("optional action(s) skipped").count(),
            1,
            "{html}"
        );
        assert!(html.contains("2 optional action(s) skipped"), "{html}");
    }

    /// A forwarder's moves along an account's proxy list, in order, on its row; an
    /// account whose proxy never moved has none.
    #[test]
    fn proxy_failovers_are_listed_per_account_in_order() {
        let failover = |from: &str, to: &str| Event::ProxyFailover {
            account: 1,
            from: from.into(),
            to: to.into(),
        };
        let r = check(
            vec![
                started(1, false),
                failover("http://a:1", "http://b:2"),
                created(1),
                ok(1, 1),
                failover("http://b:2", "http://a:1"),
                created(2),
                ok(2, 1),
                finished(0, false),
            ],
            0,
            false,
            &[(1, "ok", 1, 0, 1, 0), (2, "ok", 1, 0, 1, 0)],
        );
        let moves: Vec<(&str, &str)> = (r.accounts[0].proxy_failovers.iter())
            .map(|f| (f.from.as_str(), f.to.as_str()))
            .collect();
        assert_eq!(
            moves,
            [("http://a:1", "http://b:2"), ("http://b:2", "http://a:1")]
        );
        assert!(r.accounts[1].proxy_failovers.is_empty());
        let json = serde_json::to_value(&r).unwrap();
        assert!(
            json["accounts"][1].get("proxy_failovers").is_none(),
            "{json}"
        );
        let view = crate::render::RunView {
            report: r.clone(),
            ..Default::default()
        };
        let html = crate::render::render_html(&view);
        assert!(
            html.contains("went on through <code>http://b:2</code>"),
            "{html}"
        );
    }

    #[test]
    fn a_killed_run_is_interrupted_and_a_torn_line_is_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut text: String = records(vec![started(2, false), created(1), ok(1, 1)])
            .iter()
            .map(|r| format!("{}\n", r.event.to_json(&r.ts)))
            .collect();
        // SIGKILL (or a power cut) in the middle of the next line.
        let torn = ok(1, 2).to_json("2026-01-01T00:00:03.000Z").to_string();
        text.push_str(&torn[..torn.len() / 2]);
        std::fs::write(&path, text).unwrap();
        let read = crate::journal::read(&path).unwrap();
        assert!(read.torn.is_some());
        let r = Report::from_events(&read.records);
        assert_eq!((r.exit_code, r.interrupted), (EXIT_DIED, true));
        assert_eq!(
            r.finished_at, "2026-01-01T00:00:02.000Z",
            "the last whole line"
        );
        assert_eq!(r.accounts[0].status, "interrupted");
        assert_eq!(r.accounts[0].iterations_ok, 1);
        assert_eq!(r.accounts[1].status, "interrupted", "never started");
    }

    #[test]
    fn a_resumed_run_covers_both_parts() {
        // Part 1 is killed after account 1's first iteration, and after account 2
        // failed for good; part 2 (resumed) does the rest and finishes.
        let r = check(
            vec![
                started(2, false),
                created(1),
                created(2),
                ok(1, 1),
                retry(2),
                failed(2, 1, "boom"),
                ok(2, 2),
                started(2, true),
                created(1),
                ok(1, 2),
                finished(1, false),
            ],
            1,
            false,
            &[(1, "ok", 2, 0, 2, 0), (2, "failed", 1, 1, 1, 1)],
        );
        assert_eq!(r.finished_at, "2026-01-01T00:00:10.000Z");
        // Part 1 finished (Ctrl-C), part 2 was killed: the run is not over.
        let r = Report::from_events(&records(vec![
            started(2, false),
            ok(1, 1),
            finished(130, true),
            started(2, true),
            ok(1, 2),
        ]));
        assert_eq!((r.exit_code, r.interrupted), (EXIT_DIED, true));
        assert_eq!(r.accounts[0].iterations_ok, 2);
        assert_eq!(r.accounts[0].status, "ok", "all of account 1 is done");
    }

    #[test]
    fn after_failures_panics_and_memory_are_folded() {
        let r = check(
            vec![
                started(1, false),
                ok(1, 1),
                Event::AfterFailed {
                    account: 1,
                    step: 1,
                    kind: "action_failed".into(),
                    error: "after".into(),
                },
                Event::AccountDone {
                    account: 2,
                    status: "error".into(),
                    iterations_ok: 0,
                    iterations_failed: 0,
                    browser_launches: 0,
                    retries: 0,
                    error: Some("internal error (panic)".into()),
                },
                Event::MemorySample {
                    available_bytes: Some(100),
                    browsers_pss_bytes: 30,
                    browser_cost_bytes: 30,
                    browsers: [("1.1".to_string(), 30)].into(),
                },
                Event::MemorySample {
                    available_bytes: Some(80),
                    browsers_pss_bytes: 50,
                    browser_cost_bytes: 25,
                    browsers: [("1.1".to_string(), 20), ("1.2".to_string(), 30)].into(),
                },
                Event::Admitted {
                    account: 1,
                    waited_ms: 7,
                    reason: Some("memory".into()),
                    waits_ms: [("memory".to_string(), 7)].into(),
                    in_flight: 0,
                    limit: None,
                },
                finished(1, false),
            ],
            1,
            false,
            &[(1, "failed", 1, 0, 0, 0), (2, "error", 0, 0, 0, 0)],
        );
        assert_eq!(
            r.accounts[1].last_error.as_deref(),
            Some("internal error (panic)")
        );
        assert_eq!(
            r.memory,
            MemoryReport {
                min_available_bytes: Some(80),
                peak_browsers_pss_bytes: Some(50),
                samples: 2,
                waited_ms: 7
            }
        );
        assert_eq!(r.accounts[0].peak_browser_pss_bytes, Some(30));
        assert_eq!(
            r.accounts[0].browsers,
            [
                BrowserReport {
                    launch: 1,
                    peak_pss_bytes: 30
                },
                BrowserReport {
                    launch: 2,
                    peak_pss_bytes: 30
                }
            ]
        );
    }

    #[test]
    fn rebuild_writes_a_missing_or_stale_report_and_leaves_a_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("events.jsonl");
        let lines = |events: Vec<Event>| -> String {
            records(events)
                .iter()
                .map(|r| format!("{}\n", r.event.to_json(&r.ts)))
                .collect()
        };
        // Part 1 finished and wrote its report.
        let part1 = vec![started(2, false), ok(1, 1), finished(130, true)];
        std::fs::write(&journal, lines(part1.clone())).unwrap();
        let first = rebuild(dir.path()).unwrap();
        assert_eq!(first.action, Rebuild::Missing);
        assert_eq!(
            Report::read(&dir.path().join("report.json")).unwrap(),
            first.report
        );
        assert_eq!(first.report.exit_code, 130);
        assert_eq!(rebuild(dir.path()).unwrap().action, Rebuild::UpToDate);
        // A resumed part 2 was SIGKILLed: report.json is part 1's, stale.
        let mut both = part1;
        both.extend([started(2, true), ok(1, 2)]);
        std::fs::write(&journal, lines(both)).unwrap();
        let stale = rebuild(dir.path()).unwrap();
        assert_eq!(stale.action, Rebuild::Stale);
        let on_disk = Report::read(&dir.path().join("report.json")).unwrap();
        assert_eq!(
            (on_disk.exit_code, on_disk.totals.iterations_ok),
            (EXIT_DIED, 2)
        );
        // A runner that outlived its journal (disk full) wrote exit 3 after the
        // journal's last line: that stands.
        let mut outlived = on_disk.clone();
        outlived.exit_code = 3;
        outlived.interrupted = false;
        outlived.write(&dir.path().join("report.json")).unwrap();
        let kept = rebuild(dir.path()).unwrap();
        assert_eq!((kept.action, kept.report.exit_code), (Rebuild::UpToDate, 3));
        let stale = first.report.clone();
        // A runner holding the run's lock: nothing is rewritten.
        let held = fsutil::lock_file(&dir.path().join("run.lock"), true).unwrap();
        assert!(matches!(held, fsutil::LockOutcome::Held(_)));
        stale.write(&dir.path().join("report.json")).unwrap();
        assert_eq!(rebuild(dir.path()).unwrap().action, Rebuild::InProgress);
        assert_eq!(
            Report::read(&dir.path().join("report.json")).unwrap(),
            stale
        );
    }
}
