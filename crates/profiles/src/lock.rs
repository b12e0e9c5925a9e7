//! The exclusive, non-blocking `flock` on `<dir>/batch-cli.lock` that makes a profile
//! directory single-holder across processes, and the private (0700) directory
//! creation it needs.
//!
//! It never waits for a lock and never deletes anything; callers decide what a busy
//! or vanished directory means.
//!
//! The lock file itself is never unlinked on its own, but the whole directory is:
//! by a reset, by an ephemeral profile's drop, by a reaper — each while holding the
//! lock. A contender that opened the lock file just before such a removal locks the
//! *removed* inode once the remover lets go, and would then hold a lock that guards
//! nothing (a new directory and lock file may already exist at the path). So after
//! locking we check that the path still names the inode we locked; if not, we lost
//! that race and start again.

use std::fs::File;
use std::io;
use std::path::Path;

use fsutil::LockOutcome;

use crate::ProfileError;

/// The lock file's name inside a profile directory.
pub(crate) const LOCK_FILE: &str = "batch-cli.lock";

/// How often [`lock_dir`] starts again after losing the race described above.
const MAX_TRIES: usize = 5;

/// The exclusive lock of one profile directory, held until this value is dropped.
#[derive(Debug)]
pub(crate) struct HeldLock(File);

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Unlock explicitly rather than by closing: a child that another thread is
        // spawning right now has a copy of this descriptor until its exec closes it
        // (O_CLOEXEC), and a flock lives until *every* copy is closed — which would
        // make an immediate re-acquire fail. LOCK_UN through any copy releases it.
        let _ = self.0.unlock();
    }
}

/// What [`lock_dir`] found.
#[derive(Debug)]
pub(crate) enum DirLock {
    /// We hold the lock.
    Held(HeldLock),
    /// Someone else holds it.
    Busy,
    /// The directory does not exist (only without `create_dir`).
    Gone,
}

/// Takes the exclusive lock of profile directory `dir` without waiting.
///
/// With `create_dir`, a missing `dir` is created (mode 0700) and never reported as
/// [`DirLock::Gone`].
pub(crate) fn lock_dir(dir: &Path, create_dir: bool) -> Result<DirLock, ProfileError> {
    let path = dir.join(LOCK_FILE);
    for _ in 0..MAX_TRIES {
        if create_dir {
            make_private_dir(dir)?;
        }
        // The lock file is always created; only a missing *directory* is `Gone`.
        // `fsutil::lock_file` re-checks that the path still names the inode it locked.
        match fsutil::lock_file(&path, true).map_err(ProfileError::io(&path))? {
            LockOutcome::Held(file) => return Ok(DirLock::Held(HeldLock(file))),
            LockOutcome::Busy => return Ok(DirLock::Busy),
            LockOutcome::Gone if create_dir => continue,
            LockOutcome::Gone => return Ok(DirLock::Gone),
            LockOutcome::Replaced => continue,
        }
    }
    Err(ProfileError::Vanished {
        path: dir.to_owned(),
    })
}

/// Whether someone holds the lock of `dir` right now. Probing takes the lock for an
/// instant when it is free; a missing lock file means nobody holds it (and it is not
/// created).
pub(crate) fn is_locked(dir: &Path) -> Result<bool, ProfileError> {
    let path = dir.join(LOCK_FILE);
    match fsutil::open_lock_file(&path, false) {
        Ok(file) => {
            let free = file.try_lock().is_ok();
            // Give a lock taken for the probe back at once (see `HeldLock`).
            drop(free.then_some(HeldLock(file)));
            Ok(!free)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(ProfileError::io(&path)(error)),
    }
}

/// Creates `dir` and missing parents with mode 0700 (see [`fsutil::private_dir`]).
pub(crate) fn make_private_dir(dir: &Path) -> Result<(), ProfileError> {
    fsutil::private_dir(dir).map_err(ProfileError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_dir_cases() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a").join("b");

        // A missing directory without `create_dir` is gone, and stays uncreated.
        assert!(matches!(lock_dir(&dir, false).unwrap(), DirLock::Gone));
        assert!(!dir.exists());
        assert!(!is_locked(&dir).unwrap());

        let DirLock::Held(held) = lock_dir(&dir, true).unwrap() else {
            panic!("not held")
        };
        assert!(is_locked(&dir).unwrap());
        assert!(matches!(lock_dir(&dir, true).unwrap(), DirLock::Busy));
        assert!(matches!(lock_dir(&dir, false).unwrap(), DirLock::Busy));
        drop(held);
        assert!(!is_locked(&dir).unwrap());
    }

    #[test]
    fn a_lock_on_a_removed_directory_guards_nothing() {
        use std::fs;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("p");
        let DirLock::Held(_first) = lock_dir(&dir, true).unwrap() else {
            panic!("not held")
        };
        // A contender opened the lock file before the directory was removed ...
        let stale = fsutil::open_lock_file(&dir.join(LOCK_FILE), false).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        // ... and a new directory appeared at the same path.
        let DirLock::Held(_second) = lock_dir(&dir, true).unwrap() else {
            panic!("not held")
        };
        assert!(!fsutil::names_same_file(&stale, &dir.join(LOCK_FILE)).unwrap());
    }

    #[test]
    fn symlinked_lock_file_is_refused() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("p");
        make_private_dir(&dir).unwrap();
        std::os::unix::fs::symlink(parent.path().join("elsewhere"), dir.join(LOCK_FILE)).unwrap();
        assert!(matches!(
            lock_dir(&dir, false),
            Err(ProfileError::Io { .. })
        ));
        assert!(!parent.path().join("elsewhere").exists());
    }
}
