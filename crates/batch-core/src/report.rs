//! `report.json`: the run's totals and one entry per account, written atomically so
//! that a reader never sees half a report (write to a temp file, fsync, rename).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
