//! `batch-cli report --merge DIR... [--output DIR]`: the run directories of the
//! shards of one batch (`--shard I/N` on several hosts, each copied back here) become
//! one report, as if one host had run them all.
//!
//! Merging is strict where a silent mistake would be costly: every directory must hold
//! a finished `report.json`, and an account may appear in only one of them (two
//! shards that overlap were not slices of the same batch). Totals are recomputed from
//! the accounts, never added up from the shards' own totals.

use std::path::{Path, PathBuf};

use batch_core::exit;
use batch_core::report::{MemoryReport, Report};

/// Why a merge was refused (exit 2).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MergeError(pub(crate) String);

/// Merge reports, given with the directory each came from (for error messages).
pub(crate) fn merge(parts: &[(PathBuf, Report)]) -> Result<Report, MergeError> {
    if parts.is_empty() {
        return Err(MergeError("--merge: no run directory given".into()));
    }
    let mut out = Report {
        run_id: format!(
            "merged:{}",
            parts
                .iter()
                .map(|(_, r)| r.run_id.as_str())
                .collect::<Vec<_>>()
                .join("+")
        ),
        started_at: parts
            .iter()
            .map(|(_, r)| r.started_at.clone())
            .min()
            .unwrap_or_default(),
        finished_at: parts
            .iter()
            .map(|(_, r)| r.finished_at.clone())
            .max()
            .unwrap_or_default(),
        interrupted: parts.iter().any(|(_, r)| r.interrupted),
        exit_code: parts
            .iter()
            .map(|(_, r)| r.exit_code)
            .max_by_key(|c| severity(*c))
            .unwrap_or(exit::OK),
        memory: MemoryReport::default(),
        ..Default::default()
    };
    let mut seen: std::collections::BTreeMap<u64, &Path> = Default::default();
    for (dir, r) in parts {
        for a in &r.accounts {
            if let Some(first) = seen.insert(a.id, dir) {
                return Err(MergeError(format!(
                    "--merge: account {} is in both {} and {} (expected shards of one batch: each account in exactly one)",
                    a.id,
                    first.display(),
                    dir.display()
                )));
            }
            out.accounts.push(a.clone());
        }
        let m = &r.memory;
        out.memory.samples += m.samples;
        out.memory.waited_ms += m.waited_ms;
        out.memory.min_available_bytes =
            match (out.memory.min_available_bytes, m.min_available_bytes) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        // Peaks on different hosts do not add up to anything real: the highest one.
        out.memory.peak_browsers_pss_bytes = out
            .memory
            .peak_browsers_pss_bytes
            .max(m.peak_browsers_pss_bytes);
    }
    // Shards are contiguous slices of one ordered list: account order is id order.
    out.accounts.sort_by_key(|a| a.id);
    out.sum_totals();
    Ok(out)
}

/// Which exit code wins: an interruption over an environment failure over failed
/// iterations over success.
fn severity(code: i32) -> u8 {
    match code {
        exit::OK => 0,
        exit::SOME_FAILED => 1,
        exit::INTERRUPTED => 3,
        _ => 2,
    }
}

pub(crate) fn merge_command(dirs: &[PathBuf], output: Option<&Path>, json: bool) -> i32 {
    let mut parts = Vec::new();
    for dir in dirs {
        let path = dir.join("report.json");
        match Report::read(&path) {
            Ok(r) => parts.push((dir.clone(), r)),
            Err(e) => {
                return crate::commands::usage(format!(
                    "--merge {}: {e} (expected a finished run directory holding report.json)",
                    dir.display()
                ));
            }
        }
    }
    let merged = match merge(&parts) {
        Ok(m) => m,
        Err(MergeError(m)) => return crate::commands::usage(m),
    };
    let out = output.map_or_else(|| PathBuf::from("merged"), Path::to_path_buf);
    if let Err(e) = fsutil::private_dir(&out) {
        errln!("error: --output {}: {e}", out.display());
        return exit::ENVIRONMENT;
    }
    let path = out.join("report.json");
    if let Err(e) = merged.write(&path) {
        errln!("error: {}: {e}", path.display());
        return exit::ENVIRONMENT;
    }
    // report.html and report.xml of the whole batch: the merged report, with each
    // account's timeline, JUnit cases and screenshots from its own shard.
    let rendered = batch_core::render::write_merged_reports(&out, dirs);
    let code = crate::commands::print_report(&merged, json);
    if !json {
        outln!("merged report: {}", path.display());
    }
    match rendered {
        Ok(w) => {
            if !json {
                outln!("html: {}", w.html.display());
                outln!("junit: {}", w.xml.display());
            }
            code
        }
        Err(e) => {
            errln!("error: {e}");
            exit::ENVIRONMENT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batch_core::report::AccountReport;

    fn shard(run_id: &str, ids: &[u64], exit_code: i32) -> Report {
        let mut r = Report {
            run_id: run_id.into(),
            started_at: format!("2026-01-01T00:00:0{}Z", ids[0]),
            finished_at: format!("2026-01-01T00:01:0{}Z", ids[0]),
            exit_code,
            accounts: ids
                .iter()
                .map(|id| AccountReport {
                    id: *id,
                    status: "ok".into(),
                    iterations_ok: 2,
                    browser_launches: 1,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        r.sum_totals();
        r
    }

    #[test]
    fn totals_are_recomputed_and_the_worst_exit_wins() {
        let parts = vec![
            (PathBuf::from("b"), shard("r2", &[4, 5], exit::SOME_FAILED)),
            (PathBuf::from("a"), shard("r1", &[1, 2, 3], exit::OK)),
        ];
        let m = merge(&parts).unwrap();
        assert_eq!(
            m.accounts.iter().map(|a| a.id).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(m.totals.iterations_ok, 10);
        assert_eq!(m.totals.browser_launches, 5);
        assert_eq!(m.exit_code, exit::SOME_FAILED);
        assert_eq!(m.started_at, "2026-01-01T00:00:01Z");
        assert_eq!(m.finished_at, "2026-01-01T00:01:04Z");
        assert_eq!(m.run_id, "merged:r2+r1");
    }

    #[test]
    fn an_account_in_two_shards_is_refused() {
        let parts = vec![
            (PathBuf::from("a"), shard("r1", &[1, 2], exit::OK)),
            (PathBuf::from("b"), shard("r2", &[2, 3], exit::OK)),
        ];
        let e = merge(&parts).unwrap_err();
        assert!(e.0.contains("account 2 is in both a and b"), "{}", e.0);
        assert!(merge(&[]).is_err());
    }
}
