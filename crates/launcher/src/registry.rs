//! The on-disk registry of live browsers, so a later process can reap what a killed
//! one left — and only that.
//!
//! Layout under [`runtime_dir`]:
//! - `runners/<pid>.lock` — held (flock) by each live runner for its whole life. The
//!   kernel drops the lock when the process dies, however it dies, so "lock free"
//!   proves "runner dead" without trusting pids.
//! - `browsers/<runner-pid>-<pgid>.json` — one per live browser: its process group,
//!   driver and Chrome pids and profile. Removed when the browser is closed.
//!
//! [`Registry::reap`] kills only processes that are in a recorded group *and* are
//! ChromeDriver or Chromium, or that run on a recorded profile directory; a reused
//! pid of an unrelated program is left alone.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::LaunchError;
use crate::proc::{all_processes, cmdline};

/// This user's runtime directory for batch-cli: `$XDG_RUNTIME_DIR/batch-cli`, else
/// `/tmp/batch-cli-<uid>`. Not created here.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.is_dir() => d.join("batch-cli"),
        _ => std::env::temp_dir().join(format!("batch-cli-{}", nix::unistd::getuid())),
    }
}

/// A live runner's registration; see the module docs.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    _runner_lock: File,
}

/// What [`Registry::reap`] found and removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReapReport {
    /// Pids killed.
    pub killed: Vec<u32>,
    /// Records of dead runners removed.
    pub records: usize,
    /// Profiles the dead runners' browsers used.
    pub profiles: Vec<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    runner: u32,
    pgid: u32,
    driver_pid: u32,
    chrome_pid: Option<u32>,
    profile: PathBuf,
}

/// A browser's entry in the registry; removing it on drop.
#[derive(Debug)]
pub(crate) struct RecordGuard {
    path: PathBuf,
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LaunchError + '_ {
    move |source| LaunchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Create `dir` (and parents) mode 0700, and refuse one that another user owns or
/// others can write: the runtime dir may live in the shared /tmp, and we execute a
/// script from it.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), LaunchError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o022 != 0 {
        return Err(LaunchError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "not a private directory of this user (expected owner = us, no group/other write)",
            ),
        });
    }
    Ok(())
}

impl Registry {
    /// Register this process as a live runner under `dir` (created 0700).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, LaunchError> {
        let dir = dir.into();
        for sub in ["runners", "browsers"] {
            create_private_dir(&dir.join(sub))?;
        }
        let path = dir
            .join("runners")
            .join(format!("{}.lock", std::process::id()));
        let file = File::create(&path).map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(Registry {
            dir,
            _runner_lock: file,
        })
    }

    /// The directory this registry lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn record(
        &self,
        pgid: u32,
        driver_pid: u32,
        chrome_pid: Option<u32>,
        profile: &Path,
    ) -> Result<RecordGuard, LaunchError> {
        let runner = std::process::id();
        let path = self
            .dir
            .join("browsers")
            .join(format!("{runner}-{pgid}.json"));
        let rec = Record {
            runner,
            pgid,
            driver_pid,
            chrome_pid,
            profile: profile.to_path_buf(),
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&rec).expect("record serializes"))
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(RecordGuard { path })
    }

    /// Kill what dead runners left (their drivers and Chromes) and drop their records.
    /// Live runners' browsers, including this process's, are never touched.
    pub fn reap(&self) -> Result<ReapReport, LaunchError> {
        let browsers = self.dir.join("browsers");
        let mut report = ReapReport::default();
        let entries = std::fs::read_dir(&browsers).map_err(io(&browsers))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<Record>(&bytes) else {
                // A torn write from a runner killed mid-rename: nothing to act on.
                if path.extension().is_some_and(|e| e == "tmp")
                    && !self.runner_alive(runner_of(&path))
                {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            };
            if rec.runner == std::process::id() || self.runner_alive(Some(rec.runner)) {
                continue;
            }
            report.killed.extend(kill_leftovers(&rec));
            report.profiles.push(rec.profile.clone());
            report.records += 1;
            let _ = std::fs::remove_file(&path);
        }
        // Lock files of dead runners are litter; remove them (a live one stays locked).
        if let Ok(runners) = std::fs::read_dir(self.dir.join("runners")) {
            for e in runners.flatten() {
                let pid = e
                    .path()
                    .file_stem()
                    .and_then(|s| s.to_str()?.parse::<u32>().ok());
                if pid.is_some_and(|p| p != std::process::id()) && !self.runner_alive(pid) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(report)
    }

    fn runner_alive(&self, runner: Option<u32>) -> bool {
        let Some(runner) = runner else { return false };
        let path = self.dir.join("runners").join(format!("{runner}.lock"));
        match File::open(&path) {
            // Free lock: its owner is dead (or never finished registering).
            Ok(f) => f.try_lock_shared().is_err(),
            Err(_) => false,
        }
    }
}

fn runner_of(path: &Path) -> Option<u32> {
    path.file_name()?.to_str()?.split('-').next()?.parse().ok()
}

fn kill_leftovers(rec: &Record) -> Vec<u32> {
    let profile_arg = format!("--user-data-dir={}", rec.profile.display());
    let mut killed = Vec::new();
    for p in all_processes() {
        let Some(cmd) = cmdline(p.pid) else { continue };
        let ours_by_group =
            p.pgid == rec.pgid && (cmd.contains("chromedriver") || cmd.contains("chrom"));
        let ours_by_profile = cmd.contains(&profile_arg);
        if ours_by_group || ours_by_profile {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed.push(p.pid);
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reap_kills_a_dead_runners_browser_and_spares_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        // A fake "browser" of a dead runner: a process whose argv names the profile.
        let profile = dir.path().join("profile-x");
        // `read` is a shell builtin: killing the shell leaves no grandchild that
        // would hold the test's output open.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "read line",
                &format!("--user-data-dir={}", profile.display()),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let dead_runner = 999_999; // no lock file: dead
        let rec = Record {
            runner: dead_runner,
            pgid: 0,
            driver_pid: 0,
            chrome_pid: None,
            profile: profile.clone(),
        };
        std::fs::write(
            dir.path()
                .join("browsers")
                .join(format!("{dead_runner}-1.json")),
            serde_json::to_vec(&rec).unwrap(),
        )
        .unwrap();
        // Our own record must survive the reap.
        let mine = reg.record(1, 1, None, &dir.path().join("mine")).unwrap();

        let report = reg.reap().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the leftover was killed");
        assert_eq!(report.records, 1);
        assert_eq!(report.killed, vec![child.id()]);
        assert_eq!(report.profiles, vec![profile]);
        assert!(mine.path.exists());
        drop(mine);
        assert_eq!(
            std::fs::read_dir(dir.path().join("browsers"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(create_private_dir(&shared).is_err());
        assert!(create_private_dir(&dir.path().join("mine")).is_ok());
    }

    #[test]
    fn a_live_runner_is_seen_as_alive() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        assert!(reg.runner_alive(Some(std::process::id())));
        assert!(!reg.runner_alive(Some(999_999)));
    }
}
