//! [`lock_file`]: an exclusive, non-blocking `flock` on a lock file, re-checked
//! against the path afterwards.
//!
//! The classic lock-file-unlink race: holder H unlinks the lock file (while still
//! holding it) and then unlocks. A contender C that opened the path just before the
//! unlink still has the *old* inode open; once H lets go, C's flock on that inode
//! succeeds — but the path no longer names it, and a third process opening the path
//! creates a fresh file and locks that too. Both would believe they hold the lock.
//! So after locking, the path must still name the inode we locked; if not, we lost
//! the race and open again.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// How often [`lock_file`] opens again after losing the race above.
const MAX_TRIES: usize = 5;

/// What [`lock_file`] found.
#[derive(Debug)]
pub enum LockOutcome {
    /// We hold the lock on the file the path names.
    Held(File),
    /// Someone else holds it.
    Busy,
    /// The file (or its directory) does not exist, and was not to be created.
    Gone,
    /// The file was replaced under us every time we locked it.
    Replaced,
}

/// Opens (creating it 0600 if `create`) the lock file at `path` — never through a
/// symlink, close-on-exec — and takes its exclusive flock without waiting.
/// A missing directory is [`LockOutcome::Gone`] even with `create`.
pub fn lock_file(path: &Path, create: bool) -> io::Result<LockOutcome> {
    for _ in 0..MAX_TRIES {
        let file = match open_lock_file(path, create) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LockOutcome::Gone),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(LockOutcome::Busy),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        if names_same_file(&file, path)? {
            return Ok(LockOutcome::Held(file));
        }
        if !create {
            return Ok(LockOutcome::Gone);
        }
    }
    Ok(LockOutcome::Replaced)
}

/// Opens a lock file read-write: `O_NOFOLLOW` (never lock through a planted
/// symlink), mode 0600 when created; std adds `O_CLOEXEC`, so children never inherit
/// (and keep) the lock.
pub fn open_lock_file(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// Whether `path` still names the inode `file` has open.
pub fn names_same_file(file: &File, path: &Path) -> io::Result<bool> {
    let opened = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(named) => Ok(named.dev() == opened.dev() && named.ino() == opened.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_cases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.lock");
        assert!(matches!(
            lock_file(&path, false).unwrap(),
            LockOutcome::Gone
        ));
        assert!(!path.exists());
        let LockOutcome::Held(held) = lock_file(&path, true).unwrap() else {
            panic!("not held")
        };
        assert!(matches!(lock_file(&path, true).unwrap(), LockOutcome::Busy));
        drop(held);
        assert!(matches!(
            lock_file(&path, false).unwrap(),
            LockOutcome::Held(_)
        ));
        let missing_dir = dir.path().join("nope/a.lock");
        assert!(matches!(
            lock_file(&missing_dir, true).unwrap(),
            LockOutcome::Gone
        ));
    }

    #[test]
    fn a_lock_on_an_unlinked_file_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.lock");
        let check = |prepare: &dyn Fn(), expected: bool| {
            let file = open_lock_file(&path, true).unwrap();
            prepare();
            assert_eq!(names_same_file(&file, &path).unwrap(), expected);
            let _ = std::fs::remove_file(&path);
        };
        check(&|| {}, true);
        check(&|| std::fs::remove_file(&path).unwrap(), false);
        check(
            &|| {
                std::fs::remove_file(&path).unwrap();
                open_lock_file(&path, true).unwrap();
            },
            false,
        );
    }

    #[test]
    fn a_symlinked_lock_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.lock");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).unwrap();
        assert!(lock_file(&path, true).is_err());
        assert!(!dir.path().join("elsewhere").exists());
    }
}
