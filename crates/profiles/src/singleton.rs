//! Chromium's own profile lock (`SingletonLock`, `SingletonCookie`, `SingletonSocket`;
//! see `chrome/browser/process_singleton_posix.cc`): who it names, and removing it
//! when its owner is provably dead.
//!
//! - [`singleton_owner`] reads `SingletonLock`, a symlink whose target is
//!   `<hostname>-<pid>`.
//! - [`clean_stale_singleton`] removes the `Singleton*` symlinks (and a stale
//!   `DevToolsActivePort`) when no live Chromium can be using them.
//!
//! Why this is needed: after a `kill -9` the files stay. On the same host a new
//! Chromium recovers by itself, but a lock naming *another* hostname (a container
//! whose hostname changed between runs) makes Chromium refuse the profile with exit
//! code 21 ("profile appears to be in use by another computer").
//!
//! This module never follows a symlink it removes, never touches `batch-cli.lock`,
//! and does not take the profile lock itself: callers must hold it (see
//! [`clean_stale_singleton`]).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::ProfileError;

const SINGLETON_LOCK: &str = "SingletonLock";
const SINGLETON_COOKIE: &str = "SingletonCookie";
const SINGLETON_SOCKET: &str = "SingletonSocket";
const DEVTOOLS_ACTIVE_PORT: &str = "DevToolsActivePort";
/// Chromium's per-instance socket directory in the temp dir starts with this.
const SOCKET_DIR_PREFIX: &str = ".org.chromium.Chromium.";

/// What a profile's `SingletonLock` says about who uses the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SingletonOwner {
    /// There is no `SingletonLock`.
    None,
    /// The lock names this host's hostname.
    ThisHost {
        /// The pid named by the lock.
        pid: i32,
        /// Whether a process with that pid exists now (it may not be a Chromium).
        alive: bool,
    },
    /// The lock names another hostname.
    OtherHost {
        /// The hostname named by the lock.
        host: String,
        /// The pid named by the lock (meaningless on this host).
        pid: i32,
    },
    /// `SingletonLock` exists but is not a symlink to `<hostname>-<pid>`, or this
    /// host's name cannot be read.
    Unreadable,
}

/// Reads `<dir>/SingletonLock` without following it.
pub fn singleton_owner(dir: &Path) -> SingletonOwner {
    let target = match fs::read_link(dir.join(SINGLETON_LOCK)) {
        Ok(target) => target,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return SingletonOwner::None,
        Err(_) => return SingletonOwner::Unreadable,
    };
    let Some((host, pid)) = target.to_str().and_then(parse_lock_target) else {
        return SingletonOwner::Unreadable;
    };
    let Ok(this_host) = nix::unistd::gethostname() else {
        return SingletonOwner::Unreadable;
    };
    if OsStr::new(host) == this_host {
        SingletonOwner::ThisHost {
            pid,
            alive: process_alive(pid),
        }
    } else {
        SingletonOwner::OtherHost {
            host: host.to_owned(),
            pid,
        }
    }
}

/// Splits `<hostname>-<pid>` at the *last* '-': hostnames may contain '-'.
fn parse_lock_target(target: &str) -> Option<(&str, i32)> {
    let (host, pid) = target.rsplit_once('-')?;
    if host.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // 0 and negative numbers address process groups in kill(2): never a valid owner.
    let pid: i32 = pid.parse().ok().filter(|&pid| pid > 0)?;
    Some((host, pid))
}

/// Deletes `SingletonLock`, `SingletonCookie`, `SingletonSocket` and
/// `DevToolsActivePort` in `dir` when the lock's owner is provably dead, and returns
/// the paths it removed. Call it only while holding the profile's lock (a
/// [`Profile`](crate::Profile) does), which [`ProfileStore::acquire`](crate::ProfileStore::acquire) does for you.
///
/// "Provably dead":
/// - **no `SingletonLock`**: no Chromium owns the profile (a running one always
///   holds it), so leftover `SingletonCookie`/`SingletonSocket`/`DevToolsActivePort`
///   are stale.
/// - **this host, pid not alive** (`kill(pid, 0)` says ESRCH): the Chromium died
///   (crash, `kill -9`) without cleaning up.
/// - **this host, pid alive**: if `/proc/<pid>/cmdline` has `--user-data-dir=<dir>`,
///   a live Chromium really uses the profile: [`ProfileError::LiveChrome`], nothing
///   is removed. Otherwise the pid was reused by an unrelated process after the
///   Chromium died: stale.
/// - **another host**: the caller holds our exclusive lock on the profile, and every
///   batch-cli user of a profile holds that lock while its Chromium runs; so the lock
///   was left by a Chromium from an earlier life of this container, before its
///   hostname changed. Stale (and Chromium itself would refuse the profile with exit
///   code 21).
/// - **unreadable** (not a symlink, or not `<hostname>-<pid>`): nothing is proven,
///   nothing is removed.
///
/// `SingletonSocket` points into a `.org.chromium.Chromium.*` directory under the
/// system temp dir; that directory is removed too, best effort, when it is exactly
/// that. The returned list names only files in `dir`.
pub fn clean_stale_singleton(dir: &Path) -> Result<Vec<PathBuf>, ProfileError> {
    match singleton_owner(dir) {
        SingletonOwner::Unreadable => {
            tracing::debug!(profile = %dir.display(), "unreadable SingletonLock left alone");
            return Ok(Vec::new());
        }
        SingletonOwner::ThisHost { pid, alive: true } => match chrome_uses_dir(pid, dir) {
            Usage::Uses | Usage::Unknown => {
                return Err(ProfileError::LiveChrome {
                    path: dir.to_owned(),
                    pid,
                });
            }
            Usage::DoesNot => {
                tracing::debug!(profile = %dir.display(), pid, "SingletonLock names a reused pid");
            }
        },
        SingletonOwner::None
        | SingletonOwner::ThisHost { alive: false, .. }
        | SingletonOwner::OtherHost { .. } => {}
    }

    let mut removed = Vec::new();
    let socket = dir.join(SINGLETON_SOCKET);
    if let Ok(target) = fs::read_link(&socket) {
        remove_socket_dir(&target);
    }
    // The lock goes last, mirroring Chromium, which creates it first.
    for name in [
        SINGLETON_SOCKET,
        SINGLETON_COOKIE,
        SINGLETON_LOCK,
        DEVTOOLS_ACTIVE_PORT,
    ] {
        let path = dir.join(name);
        // remove_file unlinks a symlink itself, never its target.
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(ProfileError::io(path)(error)),
        }
    }
    if !removed.is_empty() {
        tracing::debug!(profile = %dir.display(), files = removed.len(), "stale chromium singleton removed");
    }
    Ok(removed)
}

/// The pid of a live Chromium (or of a process we cannot inspect) that the
/// `SingletonLock` of `dir` names and that runs on `dir`, if any.
pub(crate) fn live_chrome(dir: &Path) -> Option<i32> {
    match singleton_owner(dir) {
        SingletonOwner::ThisHost { pid, alive: true } => match chrome_uses_dir(pid, dir) {
            Usage::Uses | Usage::Unknown => Some(pid),
            Usage::DoesNot => None,
        },
        _ => None,
    }
}

/// Removes the directory holding a dead Chromium's socket, but only if it is a real
/// directory (not a symlink) directly in the system temp dir, named as Chromium
/// names them. Anything else is left alone: this runs as root.
fn remove_socket_dir(socket_target: &Path) {
    let Some(socket_dir) = socket_target.parent() else {
        return;
    };
    let named_like_chromium = socket_dir
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| name.starts_with(SOCKET_DIR_PREFIX));
    let in_temp_dir = socket_dir.parent() == Some(std::env::temp_dir().as_path());
    let real_dir = fs::symlink_metadata(socket_dir).is_ok_and(|meta| meta.is_dir());
    if !(named_like_chromium && in_temp_dir && real_dir) {
        return;
    }
    if let Err(error) = fs::remove_dir_all(socket_dir) {
        tracing::debug!(path = %socket_dir.display(), %error, "could not remove chromium socket dir");
    }
}

/// Whether a process with this pid exists (`kill(pid, 0)`; EPERM means it exists).
fn process_alive(pid: i32) -> bool {
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

/// Does process `pid` run with `--user-data-dir` naming `dir`?
enum Usage {
    Uses,
    DoesNot,
    /// Its command line cannot be read (e.g. `/proc` mounted with `hidepid`).
    Unknown,
}

fn chrome_uses_dir(pid: i32, dir: &Path) -> Usage {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let args = match fs::read(proc_dir.join("cmdline")) {
        Ok(raw) => fsutil::proc::split_nul(&raw),
        // It exited since we looked: nobody uses the profile.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Usage::DoesNot,
        Err(_) => return Usage::Unknown,
    };
    let cwd = fs::read_link(proc_dir.join("cwd")).ok();
    let uses = user_data_dirs(&args).any(|value| {
        let value = Path::new(value);
        // A relative --user-data-dir is relative to that process's working directory.
        let value = match &cwd {
            Some(cwd) if value.is_relative() => cwd.join(value),
            _ => value.to_owned(),
        };
        same_dir(&value, dir)
    });
    if uses { Usage::Uses } else { Usage::DoesNot }
}

/// Values of `--user-data-dir=` (or `-user-data-dir=`, which Chromium also accepts on
/// POSIX) among a process's arguments.
fn user_data_dirs(args: &[std::ffi::OsString]) -> impl Iterator<Item = &OsStr> {
    fsutil::proc::values_of(args, "--user-data-dir=")
        .chain(fsutil::proc::values_of(args, "-user-data-dir="))
}

/// Same directory: same device and inode if both exist, else the same path text.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => a.components().eq(b.components()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{dead_pid, fake_chromium};
    use std::os::unix::fs::symlink;

    #[test]
    fn parse_lock_target_cases() {
        let check = |target: &str, expected: Option<(&str, i32)>| {
            assert_eq!(parse_lock_target(target), expected, "target {target:?}");
        };
        check("vm-123", Some(("vm", 123)));
        check("my-build-host-4567", Some(("my-build-host", 4567)));
        check("host.example.com-1", Some(("host.example.com", 1)));
        check("nodash", None);
        check("-123", None);
        check("host-", None);
        check("host-0", None);
        check("host-+5", None);
        check("host--5", Some(("host-", 5)));
        check("host-12a", None);
        check("host-99999999999", None);
    }

    #[test]
    fn user_data_dirs_cases() {
        let check = |cmdline: &[u8], expected: &[&str]| {
            let args = fsutil::proc::split_nul(cmdline);
            let got: Vec<_> = user_data_dirs(&args)
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                got,
                expected,
                "cmdline {:?}",
                String::from_utf8_lossy(cmdline)
            );
        };
        check(
            b"chromium\0--user-data-dir=/p/a\0--headless=new\0",
            &["/p/a"],
        );
        check(b"chromium\0-user-data-dir=rel\0", &["rel"]);
        check(b"chromium\0--user-data-dir\0/p/a\0", &[]);
        check(b"sleep\x0030\0", &[]);
        check(b"", &[]);
    }

    #[test]
    fn owner_and_usage_of_processes() {
        let dir = tempfile::tempdir().unwrap();
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        let check = |target: Option<String>, expected: SingletonOwner| {
            let lock = dir.path().join(SINGLETON_LOCK);
            let _ = fs::remove_file(&lock);
            if let Some(target) = &target {
                symlink(target, &lock).unwrap();
            }
            assert_eq!(singleton_owner(dir.path()), expected, "target {target:?}");
        };
        let own = i32::try_from(std::process::id()).unwrap();
        let dead = dead_pid();
        check(None, SingletonOwner::None);
        check(
            Some(format!("{host}-{own}")),
            SingletonOwner::ThisHost {
                pid: own,
                alive: true,
            },
        );
        check(
            Some(format!("{host}-{dead}")),
            SingletonOwner::ThisHost {
                pid: dead,
                alive: false,
            },
        );
        check(
            Some(format!("{host}-elsewhere-7")),
            SingletonOwner::OtherHost {
                host: format!("{host}-elsewhere"),
                pid: 7,
            },
        );
        check(Some("garbage".to_owned()), SingletonOwner::Unreadable);
        fs::write(dir.path().join(SINGLETON_LOCK), "not a symlink").unwrap();
        assert_eq!(singleton_owner(dir.path()), SingletonOwner::Unreadable);

        let chromium = fake_chromium(
            &format!("--user-data-dir={}", dir.path().display()),
            dir.path(),
        );
        let pid = chromium.pid();
        assert!(matches!(chrome_uses_dir(pid, dir.path()), Usage::Uses));
        assert!(matches!(chrome_uses_dir(own, dir.path()), Usage::DoesNot));
        assert!(matches!(chrome_uses_dir(dead, dir.path()), Usage::DoesNot));
    }
}
