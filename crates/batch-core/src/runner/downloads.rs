//! Where a browser's downloads land, and how `wait_download` finds a finished one.
//!
//! Every phase of an account's step — its `before`, each iteration, its `after` — has
//! a directory of its own, `downloads/<account>/step<S>-<phase>/` in the run
//! directory, and the browser is pointed at it before the phase's first action
//! ([`launcher::Browser::allow_downloads`]). One directory per phase because Chrome
//! does not number a second download of the same name: it replaces the first, so a
//! shared directory would keep one `export.csv` of ten iterations. A phase that runs
//! again (a retry, `before` on a replaced browser) starts with its directory emptied,
//! so a failed attempt's file cannot pass for the retry's.
//!
//! This module does not talk to the browser, and it does not see downloads of a
//! remote browser (they land on its node); the plan refuses `wait_download` there.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Which part of a step an action list is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Before,
    Iteration(u32),
    After,
}

impl Phase {
    /// The `{iteration}` of its actions: 0 outside the iterations.
    pub(crate) fn iteration(self) -> u32 {
        match self {
            Phase::Iteration(i) => i,
            Phase::Before | Phase::After => 0,
        }
    }
}

/// `downloads/<account>/step<S>-<before|N|after>`, relative to the run directory.
pub(crate) fn relative_dir(account: u64, step: u32, phase: Phase) -> PathBuf {
    let phase = match phase {
        Phase::Before => "before".to_owned(),
        Phase::Iteration(i) => i.to_string(),
        Phase::After => "after".to_owned(),
    };
    Path::new("downloads")
        .join(account.to_string())
        .join(format!("step{step}-{phase}"))
}

/// Empty a phase's directory before the phase runs (again). Chrome creates it, 0700,
/// at the first download; a phase without downloads leaves nothing.
pub(crate) fn clear(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// One phase's downloads: its directory and the files `wait_download` already took.
#[derive(Debug)]
pub(crate) struct Downloads {
    /// Absolute.
    pub(crate) dir: PathBuf,
    /// As shown in values and messages: relative to the run directory.
    pub(crate) shown: PathBuf,
    taken: Vec<OsString>,
}

/// Chrome writes a download to `<something>.crdownload` and renames it when done.
const PARTIAL_SUFFIX: &str = ".crdownload";

impl Downloads {
    pub(crate) fn new(run_dir: &Path, shown: PathBuf) -> Self {
        Downloads {
            dir: run_dir.join(&shown),
            shown,
            taken: Vec::new(),
        }
    }

    /// The oldest finished file matching `pattern` not taken yet, if there is one and
    /// no download is still in progress. Chrome writes `<name>.crdownload` and renames
    /// it when done (measured here; older versions used `Unconfirmed <n>.crdownload`),
    /// so a pattern like `export-*` matches the partial file, and while one exists
    /// the awaited file may be the one still coming.
    pub(crate) fn finished(&self, pattern: &glob::Pattern) -> std::io::Result<Option<OsString>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut best: Option<(SystemTime, OsString)> = None;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let text = name.to_string_lossy();
            if text.ends_with(PARTIAL_SUFFIX) {
                return Ok(None);
            }
            let meta = entry.metadata()?;
            if !meta.is_file() || !pattern.matches(&text) || self.taken.contains(&name) {
                continue;
            }
            let modified = meta.modified()?;
            if best
                .as_ref()
                .is_none_or(|(t, n)| (modified, &name) < (*t, n))
            {
                best = Some((modified, name));
            }
        }
        Ok(best.map(|(_, name)| name))
    }

    /// Mark `name` taken, so the next `wait_download` of the phase waits for another.
    pub(crate) fn take(&mut self, name: OsString) -> PathBuf {
        let shown = self.shown.join(&name);
        self.taken.push(name);
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> glob::Pattern {
        glob::Pattern::new(p).unwrap()
    }

    #[test]
    fn phases_have_directories_of_their_own() {
        let check = |phase, expected: &str| {
            assert_eq!(relative_dir(7, 2, phase), Path::new(expected), "{phase:?}");
        };
        check(Phase::Before, "downloads/7/step2-before");
        check(Phase::Iteration(1), "downloads/7/step2-1");
        check(Phase::Iteration(12), "downloads/7/step2-12");
        check(Phase::After, "downloads/7/step2-after");
        assert_eq!(Phase::Before.iteration(), 0);
        assert_eq!(Phase::Iteration(3).iteration(), 3);
        assert_eq!(Phase::After.iteration(), 0);
    }

    #[test]
    fn finds_finished_files_oldest_first_and_each_once() {
        let run = tempfile::tempdir().unwrap();
        let mut d = Downloads::new(run.path(), relative_dir(1, 1, Phase::Iteration(1)));
        let csv = pattern("export-*.csv");
        // No directory yet: nothing downloaded, not an error.
        assert_eq!(d.finished(&csv).unwrap(), None);
        std::fs::create_dir_all(&d.dir).unwrap();
        std::fs::write(d.dir.join("other.txt"), "x").unwrap();
        assert_eq!(d.finished(&csv).unwrap(), None, "no match");
        let old = d.dir.join("export-b.csv");
        std::fs::write(&old, "1").unwrap();
        let t = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(t)
            .unwrap();
        std::fs::write(d.dir.join("export-a.csv"), "2").unwrap();
        // A download in progress hides every match: it may be the one awaited.
        std::fs::write(d.dir.join("Unconfirmed 1.crdownload"), "").unwrap();
        assert_eq!(d.finished(&csv).unwrap(), None, "one still in progress");
        std::fs::remove_file(d.dir.join("Unconfirmed 1.crdownload")).unwrap();
        let first = d.finished(&csv).unwrap().expect("two finished");
        assert_eq!(first, "export-b.csv", "the older one first");
        assert_eq!(d.take(first), Path::new("downloads/1/step1-1/export-b.csv"));
        let second = d.finished(&csv).unwrap().expect("one left");
        assert_eq!(second, "export-a.csv");
        d.take(second);
        assert_eq!(d.finished(&csv).unwrap(), None, "both taken");
        // A directory is not a download.
        std::fs::create_dir(d.dir.join("export-dir.csv")).unwrap();
        assert_eq!(d.finished(&csv).unwrap(), None);
    }

    #[test]
    fn clearing_empties_a_phase_and_tolerates_none() {
        let run = tempfile::tempdir().unwrap();
        let dir = run.path().join(relative_dir(1, 1, Phase::Before));
        clear(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.csv"), "x").unwrap();
        clear(&dir).unwrap();
        assert!(!dir.exists());
    }
}
