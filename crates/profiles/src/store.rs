//! [`ProfileStore`]: the root directory of persistent per-account profiles
//! (`<root>/account-<key>`), and what can be done with them: acquire, list, reset,
//! clean. [`ProfileInfo`] is one line of a listing.
//!
//! The store keeps no state besides its root: everything it knows comes from the
//! directories and their locks, so several stores (and processes) on one root agree.
//! It does not decide where the root is; the caller does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::lock::{self, DirLock};
use crate::singleton::{clean_stale_singleton, live_chrome};
use crate::{Profile, ProfileError};

/// A persistent profile of account `<key>` lives in `<root>/account-<key>`.
const ACCOUNT_PREFIX: &str = "account-";
const MAX_ACCOUNT_LEN: usize = 128;

/// `acquire(account) -> Profile`: the root of persistent per-account Chromium
/// profiles, each used by at most one holder at a time across processes.
#[derive(Debug, Clone)]
pub struct ProfileStore {
    root: PathBuf,
}

/// One persistent profile, as [`ProfileStore::list`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileInfo {
    /// The account key (the directory name without `account-`).
    pub account: String,
    /// The profile directory.
    pub path: PathBuf,
    /// The bytes of all files in it (symlinks not followed).
    pub size_bytes: u64,
    /// Whether someone holds its lock right now.
    pub in_use: bool,
    /// The newest modification time of anything in it.
    pub modified: Option<SystemTime>,
}

impl ProfileStore {
    /// Opens (creating with mode 0700 if missing) the profile root `root`. Paths
    /// handed out afterwards are absolute.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ProfileError> {
        let root = root.into();
        lock::make_private_dir(&root)?;
        let root = fs::canonicalize(&root).map_err(ProfileError::io(&root))?;
        Ok(Self { root })
    }

    /// The (absolute) profile root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the persistent profile of `account` lives (whether or not it exists).
    pub fn path_of(&self, account: &str) -> Result<PathBuf, ProfileError> {
        validate_account(account)?;
        Ok(self.root.join(format!("{ACCOUNT_PREFIX}{account}")))
    }

    /// The persistent profile of `account`, created (mode 0700) if missing and
    /// exclusively locked; stale Chromium `Singleton*` files are then removed (see
    /// [`clean_stale_singleton`]).
    ///
    /// Never waits: [`ProfileError::InUse`] at once if anyone (this process or
    /// another) holds it, and then the directory is not touched.
    /// [`ProfileError::LiveChrome`] if a Chromium outside batch-cli runs on it.
    pub fn acquire(&self, account: &str) -> Result<Profile, ProfileError> {
        let path = self.path_of(account)?;
        let file = match lock::lock_dir(&path, true)? {
            DirLock::Held(file) => file,
            DirLock::Busy => {
                return Err(ProfileError::InUse {
                    account: account.to_owned(),
                    path,
                });
            }
            DirLock::Gone => return Err(ProfileError::Vanished { path }),
        };
        // Held from here on: an early return below unlocks it again.
        let profile = Profile::persistent(path, account, file);
        clean_stale_singleton(profile.path())?;
        tracing::debug!(account, profile = %profile.path().display(), "profile acquired");
        Ok(profile)
    }

    /// Every persistent profile under the root, ordered by account (numeric keys
    /// numerically). Checking `in_use` takes a free lock for an instant.
    pub fn list(&self) -> Result<Vec<ProfileInfo>, ProfileError> {
        let mut infos = Vec::new();
        for (account, path) in self.account_dirs()? {
            let (size_bytes, modified) = tree_stats(&path);
            let in_use = lock::is_locked(&path)?;
            infos.push(ProfileInfo {
                account,
                path,
                size_bytes,
                in_use,
                modified,
            });
        }
        infos.sort_by(|a, b| account_order(&a.account).cmp(&account_order(&b.account)));
        Ok(infos)
    }

    /// Deletes the persistent profile of `account` (which logs the account out), while
    /// holding its lock. `Ok(false)` if there was none; [`ProfileError::InUse`] if it
    /// is held; [`ProfileError::LiveChrome`] if a Chromium outside batch-cli runs on it.
    pub fn reset(&self, account: &str) -> Result<bool, ProfileError> {
        let path = self.path_of(account)?;
        match fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(ProfileError::io(path)(error)),
        }
        let _lock = match lock::lock_dir(&path, false)? {
            DirLock::Held(file) => file,
            DirLock::Busy => {
                return Err(ProfileError::InUse {
                    account: account.to_owned(),
                    path,
                });
            }
            DirLock::Gone => return Ok(false),
        };
        if let Some(pid) = live_chrome(&path) {
            return Err(ProfileError::LiveChrome { path, pid });
        }
        fs::remove_dir_all(&path).map_err(ProfileError::io(&path))?;
        tracing::debug!(account, profile = %path.display(), "profile reset");
        Ok(true)
    }

    /// Removes stale Chromium `Singleton*` files (see [`clean_stale_singleton`]) from
    /// every profile nobody holds; profiles in use, or with a live Chromium outside
    /// batch-cli, are skipped. Returns the removed files.
    pub fn clean(&self) -> Result<Vec<PathBuf>, ProfileError> {
        let mut removed = Vec::new();
        for (account, path) in self.account_dirs()? {
            let DirLock::Held(_lock) = lock::lock_dir(&path, false)? else {
                continue;
            };
            match clean_stale_singleton(&path) {
                Ok(files) => removed.extend(files),
                Err(ProfileError::LiveChrome { pid, .. }) => {
                    tracing::debug!(account, pid, profile = %path.display(), "live chromium, not cleaned");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }

    /// `(account, path)` of every `account-<key>` directory under the root.
    fn account_dirs(&self) -> Result<Vec<(String, PathBuf)>, ProfileError> {
        let mut dirs = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(ProfileError::io(&self.root))? {
            let entry = entry.map_err(ProfileError::io(&self.root))?;
            let Some(account) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_prefix(ACCOUNT_PREFIX))
                .map(str::to_owned)
            else {
                continue;
            };
            let path = entry.path();
            if validate_account(&account).is_ok() && path.is_dir() {
                dirs.push((account, path));
            }
        }
        Ok(dirs)
    }
}

/// Account keys become directory names: keep them to a safe alphabet.
fn validate_account(account: &str) -> Result<(), ProfileError> {
    let reason = if account.is_empty() {
        "it is empty"
    } else if account.len() > MAX_ACCOUNT_LEN {
        "it is longer than 128 bytes"
    } else if !account
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        "only ASCII letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(ProfileError::InvalidAccount {
        account: account.to_owned(),
        reason,
    })
}

/// Numeric keys first, in numeric order; then the others, alphabetically.
fn account_order(account: &str) -> (bool, u128, &str) {
    match account.parse::<u128>() {
        Ok(number) => (false, number, account),
        Err(_) => (true, 0, account),
    }
}

/// Total size of the files under `dir` and the newest modification time, without
/// following symlinks. Chromium may be writing meanwhile: entries that vanish or
/// cannot be read are skipped.
fn tree_stats(dir: &Path) -> (u64, Option<SystemTime>) {
    let mut size = 0;
    let mut newest = fs::metadata(dir).and_then(|meta| meta.modified()).ok();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                size += meta.len();
            }
            if let Ok(modified) = meta.modified() {
                newest = newest.max(Some(modified));
            }
        }
    }
    (size, newest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{dead_pid, fake_chromium};
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn exists(path: &Path) -> bool {
        fs::symlink_metadata(path).is_ok()
    }

    fn store() -> (tempfile::TempDir, ProfileStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ProfileStore::open(dir.path().join("profiles")).unwrap();
        (dir, store)
    }

    #[test]
    fn acquire_is_exclusive_until_drop() {
        let (_dir, store) = store();
        let first = store.acquire("7").unwrap();
        assert_eq!(first.account(), Some("7"));
        assert!(!first.is_ephemeral());
        assert_eq!(first.path(), store.root().join("account-7"));

        // Another store on the same root opens its own lock file: flock conflicts per
        // open file description, exactly as it does across processes.
        let other = ProfileStore::open(store.root()).unwrap();
        let error = other.acquire("7").unwrap_err();
        assert!(
            matches!(&error, ProfileError::InUse { account, path } if account == "7" && path == first.path())
        );
        assert_eq!(
            error.to_string(),
            format!(
                "profile of account 7 is in use: {} is locked by another holder",
                first.path().display()
            )
        );
        // The first holder is unaffected, and other accounts are independent.
        assert!(first.path().join(lock::LOCK_FILE).exists());
        let _eight = other.acquire("8").unwrap();

        drop(first);
        let again = other.acquire("7").unwrap();
        assert_eq!(again.path(), store.root().join("account-7"));
    }

    #[test]
    fn reacquire_right_after_drop_while_children_are_spawned() {
        // A child being spawned holds copies of our descriptors until its exec; the
        // lock must still be free the moment a `Profile` is dropped.
        let (_dir, store) = store();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    dead_pid();
                }
            });
            let outcome = std::panic::catch_unwind(|| {
                for round in 0..300 {
                    let profile = store.acquire("1").unwrap();
                    drop(profile);
                    assert!(
                        store.acquire("1").is_ok(),
                        "round {round}: still locked after drop"
                    );
                    assert!(!store.list().unwrap()[0].in_use);
                }
            });
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            outcome.unwrap();
        });
    }

    #[test]
    fn persistent_profile_survives_and_is_private() {
        let (dir, store) = store();
        assert_eq!(mode(store.root()), 0o700);
        let profile = store.acquire("1").unwrap();
        assert_eq!(mode(profile.path()), 0o700);
        assert_eq!(mode(&profile.path().join(lock::LOCK_FILE)), 0o600);
        fs::write(profile.path().join("Cookies"), "session").unwrap();
        drop(profile);

        let reopened = ProfileStore::open(dir.path().join("profiles")).unwrap();
        let profile = reopened.acquire("1").unwrap();
        assert_eq!(
            fs::read_to_string(profile.path().join("Cookies")).unwrap(),
            "session"
        );

        // A directory made by hand with a wider mode is tightened on acquire.
        let loose = store.root().join("account-2");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
        let _two = store.acquire("2").unwrap();
        assert_eq!(mode(&loose), 0o700);
    }

    #[test]
    fn invalid_accounts_are_rejected() {
        let (_dir, store) = store();
        let check = |account: &str, expected: Result<(), &str>| {
            let got = store.acquire(account).map(drop).map_err(|e| e.to_string());
            assert_eq!(got, expected.map_err(str::to_owned), "account {account:?}");
        };
        check("1", Ok(()));
        check("user-1.test_A", Ok(()));
        check(&"a".repeat(128), Ok(()));
        check("", Err("invalid account key \"\": it is empty"));
        check(
            &"a".repeat(129),
            Err(&format!(
                "invalid account key {:?}: it is longer than 128 bytes",
                "a".repeat(129)
            )),
        );
        let alphabet = "only ASCII letters, digits, '.', '_' and '-' are allowed";
        check(
            "../x",
            Err(&format!("invalid account key \"../x\": {alphabet}")),
        );
        check(
            "a b",
            Err(&format!("invalid account key \"a b\": {alphabet}")),
        );
        check("é", Err(&format!("invalid account key \"é\": {alphabet}")));
    }

    /// Who the `SingletonLock` planted in a profile names.
    enum Owner {
        NoLock,
        DeadPid,
        OwnPid,
        OtherHost,
        Garbage,
        /// A live process with `--user-data-dir=<the profile>`, absolute or relative.
        LiveChromium {
            relative: bool,
        },
        /// A live process with `--user-data-dir=<another dir>`.
        ChromiumElsewhere,
    }

    #[derive(Debug, PartialEq)]
    enum Expect {
        Cleaned,
        Kept,
        LiveChrome,
    }

    const SINGLETON_FILES: [&str; 4] = [
        "SingletonLock",
        "SingletonCookie",
        "SingletonSocket",
        "DevToolsActivePort",
    ];

    fn check_singleton(owner: Owner, expected: Expect) {
        let (_dir, store) = store();
        let path = store.path_of("x").unwrap();
        lock::make_private_dir(&path).unwrap();
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        let socket_dir = tempfile::Builder::new()
            .prefix(".org.chromium.Chromium.")
            .tempdir()
            .unwrap();
        symlink(
            socket_dir.path().join("SingletonSocket"),
            path.join("SingletonSocket"),
        )
        .unwrap();
        symlink("1234567890", path.join("SingletonCookie")).unwrap();
        fs::write(
            path.join("DevToolsActivePort"),
            "9222\n/devtools/browser/x\n",
        )
        .unwrap();
        let mut chromium = None;
        let target = match owner {
            Owner::NoLock => None,
            Owner::DeadPid => Some(format!("{host}-{}", dead_pid())),
            Owner::OwnPid => Some(format!("{host}-{}", std::process::id())),
            Owner::OtherHost => Some(format!("{host}-elsewhere-123")),
            Owner::Garbage => Some("garbage".to_owned()),
            Owner::LiveChromium { relative } => {
                let arg = if relative {
                    "account-x".to_owned()
                } else {
                    path.display().to_string()
                };
                let running = fake_chromium(&format!("--user-data-dir={arg}"), store.root());
                let target = format!("{host}-{}", running.pid());
                chromium = Some(running);
                Some(target)
            }
            Owner::ChromiumElsewhere => {
                let running = fake_chromium("--user-data-dir=/somewhere/else", store.root());
                let target = format!("{host}-{}", running.pid());
                chromium = Some(running);
                Some(target)
            }
        };
        if let Some(target) = &target {
            symlink(target, path.join("SingletonLock")).unwrap();
        }

        let got = store.acquire("x");
        let remaining: Vec<_> = SINGLETON_FILES
            .iter()
            .filter(|name| exists(&path.join(name)))
            .collect();
        match (&got, expected) {
            (Ok(_), Expect::Cleaned) => {
                assert_eq!(remaining, Vec::<&&str>::new(), "lock {target:?}");
                assert!(
                    !socket_dir.path().exists(),
                    "socket dir of a dead chromium is removed"
                );
            }
            (Ok(_), Expect::Kept) => assert_eq!(remaining.len(), 4, "lock {target:?}"),
            (
                Err(ProfileError::LiveChrome {
                    path: error_path,
                    pid,
                }),
                Expect::LiveChrome,
            ) => {
                assert_eq!(error_path, &path);
                assert_eq!(Some(*pid), chromium.as_ref().map(|c| c.pid()));
                assert_eq!(remaining.len(), 4, "nothing removed under a live chromium");
                assert!(socket_dir.path().exists());
                // The profile lock was given back; once that Chromium is gone the
                // profile is usable and cleaned.
                drop(chromium.take());
                drop(got);
                assert!(store.acquire("x").is_ok());
                assert!(!exists(&path.join("SingletonLock")));
            }
            (got, expected) => panic!("lock {target:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn stale_singleton_cases() {
        check_singleton(Owner::NoLock, Expect::Cleaned);
        check_singleton(Owner::DeadPid, Expect::Cleaned);
        check_singleton(Owner::OwnPid, Expect::Cleaned);
        check_singleton(Owner::OtherHost, Expect::Cleaned);
        check_singleton(Owner::ChromiumElsewhere, Expect::Cleaned);
        check_singleton(Owner::Garbage, Expect::Kept);
        check_singleton(Owner::LiveChromium { relative: false }, Expect::LiveChrome);
        check_singleton(Owner::LiveChromium { relative: true }, Expect::LiveChrome);
    }

    #[test]
    fn list_shows_profiles_and_who_holds_them() {
        let (_dir, store) = store();
        assert_eq!(store.list().unwrap(), Vec::new());
        let held = store.acquire("10").unwrap();
        let free = store.acquire("2").unwrap();
        fs::write(free.path().join("Preferences"), [0u8; 1000]).unwrap();
        drop(free);
        // Not profiles: other names, files.
        fs::create_dir(store.root().join("something-else")).unwrap();
        fs::write(store.root().join("account-file"), "").unwrap();

        let listed = store.list().unwrap();
        let summary: Vec<_> = listed
            .iter()
            .map(|p| (p.account.as_str(), p.in_use))
            .collect();
        assert_eq!(summary, [("2", false), ("10", true)]);
        assert_eq!(listed[0].path, store.root().join("account-2"));
        assert_eq!(listed[0].size_bytes, 1000);
        assert!(listed[0].modified.is_some());
        assert_eq!(listed[1].path, held.path());
        // Listing did not disturb the holder.
        assert!(matches!(
            store.acquire("10"),
            Err(ProfileError::InUse { .. })
        ));
    }

    #[test]
    fn reset_cases() {
        let (_dir, store) = store();
        assert!(!store.reset("1").unwrap(), "a missing profile is no error");

        let held = store.acquire("1").unwrap();
        fs::write(held.path().join("Cookies"), "session").unwrap();
        assert!(
            matches!(store.reset("1"), Err(ProfileError::InUse { account, .. }) if account == "1")
        );
        assert!(held.path().join("Cookies").exists());
        drop(held);

        assert!(store.reset("1").unwrap());
        assert!(!exists(&store.root().join("account-1")));
        let fresh = store.acquire("1").unwrap();
        assert!(!fresh.path().join("Cookies").exists());
        drop(fresh);

        // A Chromium outside batch-cli on the profile: refused.
        let path = store.path_of("1").unwrap();
        let chromium = fake_chromium(&format!("--user-data-dir={}", path.display()), store.root());
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        symlink(
            format!("{host}-{}", chromium.pid()),
            path.join("SingletonLock"),
        )
        .unwrap();
        assert!(
            matches!(store.reset("1"), Err(ProfileError::LiveChrome { pid, .. }) if pid == chromium.pid())
        );
        assert!(path.exists());
    }

    #[test]
    fn clean_skips_profiles_in_use() {
        let (_dir, store) = store();
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        let stale = format!("{host}-{}", dead_pid());
        let held = store.acquire("1").unwrap();
        drop(store.acquire("2").unwrap());
        for account in ["1", "2"] {
            symlink(
                &stale,
                store.path_of(account).unwrap().join("SingletonLock"),
            )
            .unwrap();
        }

        let removed = store.clean().unwrap();
        assert_eq!(removed, [store.path_of("2").unwrap().join("SingletonLock")]);
        assert!(
            exists(&held.path().join("SingletonLock")),
            "a held profile is not touched"
        );
        assert_eq!(store.clean().unwrap(), Vec::<PathBuf>::new());
    }
}
