//! [`Profile`]: one locked Chromium user-data directory, persistent or ephemeral, and
//! the ephemeral side: [`ephemeral`] makes one, [`reap_ephemeral`] removes those
//! left behind by dead processes.
//!
//! A `Profile` only guarantees exclusivity among batch-cli users (everyone who takes
//! the lock); it does not start Chromium or know its command line.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::ProfileError;
use crate::lock::{self, DirLock, HeldLock};

/// Ephemeral profile directories are named `batch-cli-profile-XXXXXX`.
pub(crate) const EPHEMERAL_PREFIX: &str = "batch-cli-profile-";

/// How many fresh directories [`ephemeral`] tries when a reaper removes them under it.
const MAX_EPHEMERAL_TRIES: usize = 5;

/// A Chromium user-data directory held exclusively: nobody else (in this or another
/// process) acquires it while this value lives. Dropping it unlocks the directory,
/// and first deletes it if it is ephemeral.
#[derive(Debug)]
pub struct Profile {
    path: PathBuf,
    account: Option<String>,
    /// The lock on `batch-cli.lock`.
    lock: Option<HeldLock>,
    /// Set for an ephemeral profile: removing the directory is its job.
    temp: Option<TempDir>,
}

impl Profile {
    pub(crate) fn persistent(path: PathBuf, account: &str, lock: HeldLock) -> Self {
        Self {
            path,
            account: Some(account.to_owned()),
            lock: Some(lock),
            temp: None,
        }
    }

    /// The profile directory (absolute): what Chromium gets as `--user-data-dir`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The account of a persistent profile; `None` for an ephemeral one.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// Whether the directory is deleted when this value is dropped.
    pub fn is_ephemeral(&self) -> bool {
        self.temp.is_some()
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        // Delete an ephemeral directory while still holding its lock, so that a
        // reaper never sees it unlocked and half-deleted.
        if let Some(temp) = self.temp.take()
            && let Err(error) = temp.close()
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(profile = %self.path.display(), %error, "could not remove ephemeral profile");
        }
        drop(self.lock.take());
        tracing::debug!(profile = %self.path.display(), "profile released");
    }
}

/// A fresh ephemeral profile: a directory `batch-cli-profile-XXXXXX` (mode 0700) in
/// `parent` (created with mode 0700 if missing), locked like a persistent one and
/// deleted when the returned value is dropped.
pub fn ephemeral(parent: &Path) -> Result<Profile, ProfileError> {
    lock::make_private_dir(parent)?;
    let parent = fs::canonicalize(parent).map_err(ProfileError::io(parent))?;
    for _ in 0..MAX_EPHEMERAL_TRIES {
        let temp = tempfile::Builder::new()
            .prefix(EPHEMERAL_PREFIX)
            .rand_bytes(6)
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .map_err(ProfileError::io(&parent))?;
        // Between creating the directory and locking it, a concurrent
        // `reap_ephemeral` may take it for a dead process's leftover (it is
        // unlocked) and lock or remove it. Then we simply take a new one.
        match lock::lock_dir(temp.path(), false)? {
            DirLock::Held(file) => {
                let path = temp.path().to_owned();
                tracing::debug!(profile = %path.display(), "ephemeral profile created");
                return Ok(Profile {
                    path,
                    account: None,
                    lock: Some(file),
                    temp: Some(temp),
                });
            }
            DirLock::Busy | DirLock::Gone => {
                // The reaper owns it now; do not race it with our own removal.
                let _ = temp.keep();
            }
        }
    }
    Err(ProfileError::Vanished { path: parent })
}

/// Removes the ephemeral profile directories in `parent` left behind by dead
/// processes: each `batch-cli-profile-*` directory whose lock can be taken (a missing
/// lock file is created and taken, so that its creator cannot take it meanwhile).
/// A directory whose lock is held is never touched. Returns the removed paths.
pub fn reap_ephemeral(parent: &Path) -> Result<Vec<PathBuf>, ProfileError> {
    let entries = match fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(ProfileError::io(parent)(error)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(ProfileError::io(parent))?;
        let is_ephemeral = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(EPHEMERAL_PREFIX));
        // `DirEntry::file_type` does not follow symlinks: a symlink is never reaped.
        if !is_ephemeral || !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let path = entry.path();
        let DirLock::Held(_lock) = lock::lock_dir(&path, false)? else {
            continue;
        };
        // Removed while we hold its lock (see the `lock` module).
        match fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::debug!(profile = %path.display(), "leftover ephemeral profile removed");
                removed.push(path);
            }
            // Another reaper was quicker.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(profile = %path.display(), %error, "could not remove leftover ephemeral profile");
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn ephemeral_profile_is_private_locked_and_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let nested = parent.path().join("a").join("b");
        let profile = ephemeral(&nested).unwrap();
        let path = profile.path().to_owned();
        assert!(profile.is_ephemeral());
        assert_eq!(profile.account(), None);
        assert!(path.is_absolute());
        assert!(
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(EPHEMERAL_PREFIX)
        );
        assert_eq!(path.file_name().unwrap().len(), EPHEMERAL_PREFIX.len() + 6);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join(lock::LOCK_FILE)), 0o600);
        assert!(lock::is_locked(&path).unwrap());

        // A reaper leaves it alone while it is held.
        assert_eq!(reap_ephemeral(&nested).unwrap(), Vec::<PathBuf>::new());
        fs::write(path.join("Cookies"), "x").unwrap();
        drop(profile);
        assert!(!path.exists());
    }

    #[test]
    fn two_ephemeral_profiles_differ() {
        let parent = tempfile::tempdir().unwrap();
        let (a, b) = (
            ephemeral(parent.path()).unwrap(),
            ephemeral(parent.path()).unwrap(),
        );
        assert_ne!(a.path(), b.path());
    }

    #[test]
    fn reap_ephemeral_cases() {
        let parent = tempfile::tempdir().unwrap();
        let held = ephemeral(parent.path()).unwrap();

        // Left behind by a killed process: its lock file exists, nobody holds it.
        let dead_path = leftover_without_holder(parent.path(), "batch-cli-profile-dead01", true);
        // Never got its lock file.
        let lockless = leftover_without_holder(parent.path(), "batch-cli-profile-nolock", false);
        // Not ours: other names, a symlink with our prefix.
        let other = parent.path().join("keep-me");
        fs::create_dir(&other).unwrap();
        let link = parent.path().join("batch-cli-profile-link00");
        std::os::unix::fs::symlink(&other, &link).unwrap();

        let mut reaped = reap_ephemeral(parent.path()).unwrap();
        reaped.sort();
        let mut expected = vec![dead_path.clone(), lockless.clone()];
        expected.sort();
        assert_eq!(reaped, expected);
        assert!(held.path().exists());
        assert!(other.exists() && link.exists());
        assert_eq!(
            reap_ephemeral(&parent.path().join("missing")).unwrap(),
            Vec::<PathBuf>::new()
        );
    }

    fn leftover_without_holder(parent: &Path, name: &str, with_lock_file: bool) -> PathBuf {
        let path = parent.join(name);
        lock::make_private_dir(&path).unwrap();
        fs::write(path.join("Preferences"), "{}").unwrap();
        if with_lock_file {
            fs::write(path.join(lock::LOCK_FILE), "").unwrap();
        }
        path
    }
}
