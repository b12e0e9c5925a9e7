//! The on-disk registry of live browsers, so that a later process can reap what a
//! killed one left — and only that.
//!
//! Layout under the directory given to [`Registry::open`] (the runtime directory,
//! see [`fsutil::runtime_dir`]):
//! - `runners/<pid>.<start>.lock` — held (flock) by each live runner for its whole
//!   life; `<start>` is the runner's start time, so a runner whose pid was reused is
//!   never taken for alive. The kernel drops the lock when the process dies, however
//!   it dies, so "lock free" proves "runner dead". The file is created under a temp
//!   name, locked, and only then renamed into place: no reaper ever sees it unlocked.
//! - `browsers/<pid>.<start>-<pgid>.json` — one per live browser: the runner's
//!   identity, the browser's process group, the identities (pid + start time + boot
//!   id) of its driver and Chrome, and its profile. Removed when the browser closes.
//! - `execs/<pid>.<start>-<token>.json` — one per running `exec` program: the
//!   runner's identity and the exec's [`ExecToken`] (see [`crate::token`]). Written
//!   before the program starts, removed once it and everything carrying its token
//!   are dead.
//! - `tmp/<pid>.<start>-<n>/` — one per live browser: its driver's and Chrome's
//!   `TMPDIR` ([`Registry::private_tmp`]). Chrome keeps its profile's
//!   `SingletonSocket` and its scoped temp dirs there, and leaves them behind when it
//!   is killed (measured: a SIGTERM'd Chromium leaves its `org.chromium.Chromium.*`
//!   dir in `/tmp`); the directory goes when the browser closes, or, for a dead
//!   runner, at the next reap.
//!
//! What [`Registry::reap`] kills for the record of a dead runner (same boot only; a
//! record from a previous boot is just dropped), among live processes:
//! - a recorded process whose start time still matches (a reused pid does not);
//! - a process carrying the dead runner's exact `BATCH_CLI_RUNNER=<pid>.<start>.<boot>`
//!   environment element: [`driver`](crate::driver) sets it on every ChromeDriver,
//!   and Chrome and Chrome's crashpad handlers (which leave the process group and the
//!   session) inherit it;
//! - a process in the browser's process group whose argv has the exact element
//!   `--user-data-dir=<profile>` (never a substring: `account-1` is not `account-10`)
//!   and that started after the driver;
//! - for the record of a dead runner's exec: a process of our user carrying that
//!   exec's exact `BATCH_EXEC_TOKEN=<token>` environment element (one that escaped
//!   the exec's process group with `setsid`, which the group kill of the exec's
//!   supervisor missed), and the process groups such processes lead.
//!
//! Nothing else is touched: not a live runner's browsers, not a stranger on a reused
//! pid, not another user's processes (their environ is unreadable).

use std::ffi::{OsStr, OsString};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use fsutil::proc::{Identity, Stat};
use serde::{Deserialize, Serialize};

use crate::LaunchError;
use crate::token::{ExecToken, kill_carriers};

/// The environment variable that marks every process a runner's launcher starts.
pub(crate) const RUNNER_ENV: &str = "BATCH_CLI_RUNNER";

/// A temp runner lock file older than this, and unlocked, is litter of a runner
/// killed while registering.
const STALE_TEMP: Duration = Duration::from_secs(60);

/// How long a reap keeps looking for a dead runner's exec token carriers that fork
/// while it kills them.
const CARRIER_SCAN: Duration = Duration::from_secs(2);

/// The longest private `TMPDIR` handed to Chrome. Chromium binds its profile's
/// `SingletonSocket` at `$TMPDIR/org.chromium.Chromium.XXXXXX/SingletonSocket` (45
/// bytes more), and a Unix socket path holds at most 107 bytes: measured here, full
/// Chromium with a 76-byte `TMPDIR` dies at start (SIGTRAP), with a 26-byte one it
/// runs. A longer private dir is not used (the inherited `TMPDIR` stays).
const MAX_TMP_LEN: usize = 107 - 45;

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

static ME: LazyLock<Identity> = LazyLock::new(Identity::current);

/// This process's identity as a runner.
pub(crate) fn me() -> &'static Identity {
    &ME
}

/// `BATCH_CLI_RUNNER=<tag>` for the runner `who`: the exact environment element.
pub(crate) fn marker_of(who: &Identity) -> OsString {
    OsString::from(format!("{RUNNER_ENV}={}", who.tag()))
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
    /// Browser records of dead runners removed.
    pub records: usize,
    /// Exec records of dead runners removed.
    pub execs: usize,
    /// Profiles the dead runners' browsers used.
    pub profiles: Vec<PathBuf>,
    /// Private temp dirs of dead runners' browsers removed.
    pub temp_dirs: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    runner: Identity,
    pgid: u32,
    /// Driver first, then Chrome.
    processes: Vec<Identity>,
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

/// A browser's private `TMPDIR` ([`Registry::private_tmp`]); removed, with what Chrome
/// left in it, on drop — after the browser's processes are gone.
#[derive(Debug)]
pub(crate) struct PrivateTmp {
    path: PathBuf,
}

impl PrivateTmp {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A private `TMPDIR` for a browser launched without a registry (`doctor`,
    /// tests): a fresh directory in the system's temp dir, removed on drop the same
    /// way (a kill of this process leaves only it). `None` where Chrome's socket
    /// would not fit.
    pub(crate) fn standalone() -> Result<Option<PrivateTmp>, LaunchError> {
        let base = std::env::temp_dir();
        // `batch-cli-tmp-` and tempfile's 6 random characters.
        if base.as_os_str().len() + "/batch-cli-tmp-XXXXXX".len() > MAX_TMP_LEN {
            return Ok(None);
        }
        let dir = tempfile::Builder::new()
            .prefix("batch-cli-tmp-")
            .tempdir()
            .map_err(io(&base))?;
        Ok(Some(PrivateTmp { path: dir.keep() }))
    }
}

impl Drop for PrivateTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExecEntry {
    runner: Identity,
    token: ExecToken,
}

/// A running exec's entry in the registry ([`Registry::record_exec`]); removing it
/// on drop. Drop it only once the exec's token carriers are dead.
#[derive(Debug)]
pub struct ExecRecord {
    path: PathBuf,
}

impl Drop for ExecRecord {
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

/// `<pid>.<start>`: how every file and directory of a runner is named (its lock,
/// its records, its browsers' temp dirs), so a reaper can find the runner's lock.
fn stem(who: &Identity) -> String {
    format!("{}.{}", who.pid, who.start_time)
}

/// The name of the lock of the runner whose [`stem`] is `stem`.
fn lock_name(stem: &str) -> String {
    format!("{stem}.lock")
}

fn runner_lock_name(who: &Identity) -> String {
    lock_name(&stem(who))
}

impl Registry {
    /// Register this process as a live runner under `dir`, which is created (0700)
    /// and must be trusted from `/` down (see [`fsutil::check_trusted_path`]): a
    /// directory another user prepared is refused with [`LaunchError::RuntimeDir`].
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, LaunchError> {
        let dir = dir.into();
        let trusted = fsutil::private_dir(&dir).and_then(|()| fsutil::check_trusted_path(&dir));
        if let Err(source) = trusted {
            return Err(fsutil::RuntimeDirError { path: dir, source }.into());
        }
        for sub in ["runners", "browsers", "execs", "tmp"] {
            let sub = dir.join(sub);
            fsutil::private_dir(&sub).map_err(io(&sub))?;
        }
        let runners = dir.join("runners");
        // Create under a temp name, lock, then rename into place: a reaper never sees
        // our lock file unlocked, so it can never remove it from under us.
        let temp = tempfile::Builder::new()
            .prefix(".new-")
            .tempfile_in(&runners)
            .map_err(io(&runners))?;
        temp.as_file().lock().map_err(io(temp.path()))?;
        let path = runners.join(runner_lock_name(me()));
        let file = temp.persist(&path).map_err(|e| LaunchError::Io {
            path: path.clone(),
            source: e.error,
        })?;
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
        let runner = me().clone();
        let path = self
            .dir
            .join("browsers")
            .join(format!("{}-{pgid}.json", stem(&runner)));
        let processes = std::iter::once(driver_pid)
            .chain(chrome_pid)
            .filter_map(Identity::of)
            .collect();
        let rec = Record {
            runner,
            pgid,
            processes,
            profile: profile.to_path_buf(),
        };
        let bytes = serde_json::to_vec(&rec).expect("record serializes");
        fsutil::write_atomic(&path, &bytes, 0o600).map_err(io(&path))?;
        Ok(RecordGuard { path })
    }

    /// A fresh private `TMPDIR` for one browser's driver and Chrome, named for this
    /// runner so that a later reap can tell whether its owner is dead. `None` when
    /// the path would be too long for Chrome's socket (see [`MAX_TMP_LEN`]).
    pub(crate) fn private_tmp(&self) -> Result<Option<PrivateTmp>, LaunchError> {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{n}", stem(me()));
        let path = self.dir.join("tmp").join(name);
        if path.as_os_str().len() > MAX_TMP_LEN {
            tracing::debug!(path = %path.display(), "runtime dir too long for a private TMPDIR");
            return Ok(None);
        }
        fsutil::private_dir(&path).map_err(io(&path))?;
        Ok(Some(PrivateTmp { path }))
    }

    /// Record a running exec's token, before the program starts, so that if this
    /// process dies the next reap kills what carries it (see [`crate::token`]).
    pub fn record_exec(&self, token: &ExecToken) -> Result<ExecRecord, LaunchError> {
        let runner = me().clone();
        let path =
            (self.dir.join("execs")).join(format!("{}-{}.json", stem(&runner), token.value()));
        let entry = ExecEntry {
            runner,
            token: token.clone(),
        };
        let bytes = serde_json::to_vec(&entry).expect("record serializes");
        fsutil::write_atomic(&path, &bytes, 0o600).map_err(io(&path))?;
        Ok(ExecRecord { path })
    }

    /// Kill what dead runners left (their drivers, Chromes and crashpad handlers, and
    /// what their execs started) and drop their records. Live runners' browsers and
    /// execs, including this process's, are never touched; see the module docs for
    /// how processes are identified.
    pub fn reap(&self) -> Result<ReapReport, LaunchError> {
        let browsers = self.dir.join("browsers");
        let mut report = ReapReport::default();
        let mut dead = Vec::new();
        let entries = std::fs::read_dir(&browsers).map_err(io(&browsers))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // A temp file of an atomic write; litter once its writer is dead.
                if is_old(&path) {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            let Ok(rec) = std::fs::read(&path)
                .map_err(drop)
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(drop))
            else {
                continue;
            };
            if rec.runner == *me() || self.runner_alive(&rec.runner) {
                continue;
            }
            if rec.runner.this_boot() {
                report.profiles.push(rec.profile.clone());
                dead.push(rec);
            }
            report.records += 1;
            let _ = std::fs::remove_file(&path);
        }
        if !dead.is_empty() {
            report.killed = kill_leftovers(&dead);
        }
        let tokens = self.dead_exec_tokens(&mut report)?;
        // A carrier may also have been a browser's leftover: count each pid once.
        for pid in kill_carriers(&tokens, CARRIER_SCAN) {
            if !report.killed.contains(&pid) {
                report.killed.push(pid);
            }
        }
        report.temp_dirs = self.remove_dead_temp_dirs();
        self.remove_dead_runner_locks();
        Ok(report)
    }

    /// The tokens of dead runners' execs (this boot's), their records removed.
    fn dead_exec_tokens(&self, report: &mut ReapReport) -> Result<Vec<ExecToken>, LaunchError> {
        let execs = self.dir.join("execs");
        let mut tokens = Vec::new();
        let entries = std::fs::read_dir(&execs).map_err(io(&execs))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                if is_old(&path) {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            let Ok(rec) = std::fs::read(&path)
                .map_err(drop)
                .and_then(|b| serde_json::from_slice::<ExecEntry>(&b).map_err(drop))
            else {
                continue;
            };
            if rec.runner == *me() || self.runner_alive(&rec.runner) {
                continue;
            }
            if rec.runner.this_boot() && rec.token.is_valid() {
                tokens.push(rec.token);
            }
            report.execs += 1;
            let _ = std::fs::remove_file(&path);
        }
        Ok(tokens)
    }

    /// The private temp dirs of dead runners' browsers (`<pid>.<start>-<n>`, the
    /// runner's lock free or gone), with what their Chromes left; how many.
    fn remove_dead_temp_dirs(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(self.dir.join("tmp")) else {
            return 0;
        };
        let mine = stem(me());
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((runner, n)) = name.rsplit_once('-') else {
                continue;
            };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            let ours = runner
                .split_once('.')
                .is_some_and(|(p, s)| digits(p) && digits(s));
            if !ours || !digits(n) || runner == mine {
                continue;
            }
            let lock = self.dir.join("runners").join(lock_name(runner));
            // The lock is taken before a runner makes any temp dir, so a dir without a
            // held lock is a dead runner's.
            if !lock_held(&lock) && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Lock files of dead runners are litter; a live runner's stays locked.
    fn remove_dead_runner_locks(&self) {
        let Ok(runners) = std::fs::read_dir(self.dir.join("runners")) else {
            return;
        };
        for e in runners.flatten() {
            let path = e.path();
            let is_temp = e.file_name().to_string_lossy().starts_with('.');
            if is_temp && !is_old(&path) {
                continue;
            }
            if path.file_name() == Some(OsStr::new(&runner_lock_name(me()))) {
                continue;
            }
            // Only a free lock is removed, and a runner's final name is only ever
            // created locked (by rename): a free one will never be taken again.
            if let Ok(f) = File::open(&path)
                && f.try_lock().is_ok()
            {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    fn runner_alive(&self, runner: &Identity) -> bool {
        if !runner.this_boot() {
            return false;
        }
        lock_held(&self.dir.join("runners").join(runner_lock_name(runner)))
    }
}

/// Whether a live runner holds the lock file `path`.
fn lock_held(path: &Path) -> bool {
    match File::open(path) {
        // A free lock: its owner is dead.
        Ok(f) => matches!(f.try_lock_shared(), Err(TryLockError::WouldBlock)),
        // Records and temp dirs are made only after the runner's lock is in place.
        Err(_) => false,
    }
}

fn is_old(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| {
            SystemTime::now()
                .duration_since(t)
                .is_ok_and(|age| age > STALE_TEMP)
        })
}

/// One live process, as the reaper sees it.
#[derive(Debug)]
struct Seen {
    pid: u32,
    stat: Stat,
    args: Vec<OsString>,
    environ: Vec<OsString>,
}

/// Whether `p` is a leftover of the (dead runner's) record `rec`; see the module docs.
fn is_leftover(rec: &Record, p: &Seen) -> bool {
    if p.stat.is_zombie() || !rec.runner.this_boot() {
        return false;
    }
    let recorded = rec
        .processes
        .iter()
        .any(|id| id.pid == p.pid && id.matches(&p.stat));
    let marked = fsutil::proc::has_element(&p.environ, &marker_of(&rec.runner));
    let driver_start = rec.processes.first().map_or(u64::MAX, |d| d.start_time);
    let mut profile_arg = OsString::from("--user-data-dir=");
    profile_arg.push(&rec.profile);
    let on_profile = p.stat.pgid == rec.pgid
        && p.stat.start_time >= driver_start
        && fsutil::proc::has_element(&p.args, &profile_arg);
    recorded || marked || on_profile
}

fn kill_leftovers(dead: &[Record]) -> Vec<u32> {
    let mut killed = Vec::new();
    for pid in fsutil::proc::pids() {
        if pid == std::process::id() {
            continue;
        }
        let Some(stat) = fsutil::proc::stat(pid) else {
            continue;
        };
        let seen = Seen {
            pid,
            stat,
            args: fsutil::proc::args(pid).unwrap_or_default(),
            environ: fsutil::proc::environ(pid).unwrap_or_default(),
        };
        if dead.iter().any(|rec| is_leftover(rec, &seen)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            tracing::debug!(pid, "reaped a dead runner's leftover");
            killed.push(pid);
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(pid: u32, start_time: u64) -> Identity {
        Identity {
            pid,
            start_time,
            boot_id: fsutil::proc::boot_id().to_owned(),
        }
    }

    fn stat(pgid: u32, start_time: u64, state: char) -> Stat {
        Stat {
            comm: "chromium".into(),
            state,
            ppid: 1,
            pgid,
            sid: pgid,
            start_time,
        }
    }

    fn elements(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn leftover_cases() {
        let dead_runner = identity(500, 1000);
        let rec = Record {
            runner: dead_runner.clone(),
            pgid: 600,
            processes: vec![identity(600, 2000), identity(610, 2100)],
            profile: PathBuf::from("/p/profiles/account-1"),
        };
        let marker = marker_of(&dead_runner).into_string().unwrap();
        let other_marker = marker_of(&identity(501, 1000)).into_string().unwrap();
        let check = |pid: u32, stat: Stat, args: &[&str], env: &[&str], expected: bool| {
            let seen = Seen {
                pid,
                stat,
                args: elements(args),
                environ: elements(env),
            };
            assert_eq!(is_leftover(&rec, &seen), expected, "{seen:?}");
        };
        // Recorded processes, still the same ones.
        check(600, stat(600, 2000, 'S'), &[], &[], true);
        check(610, stat(600, 2100, 'S'), &[], &[], true);
        // The same pid with another start time: reused by a stranger.
        check(610, stat(42, 9999, 'S'), &["sleep", "100"], &[], false);
        check(600, stat(600, 2001, 'S'), &[], &[], false);
        // Zombies are not killed (and cannot be).
        check(600, stat(600, 2000, 'Z'), &[], &[], false);
        // Crashpad: own group and session, but the dead runner's exact marker.
        check(
            700,
            stat(700, 2200, 'S'),
            &["chrome_crashpad_handler"],
            &[&marker],
            true,
        );
        // Another runner's marker, or a marker that merely starts the same.
        check(701, stat(701, 2200, 'S'), &[], &[&other_marker], false);
        check(
            702,
            stat(702, 2200, 'S'),
            &[],
            &[&format!("{marker}0")],
            false,
        );
        // In the group, on the profile: exact argv element only.
        let on = "--user-data-dir=/p/profiles/account-1";
        check(620, stat(600, 2300, 'S'), &["chromium", on], &[], true);
        check(
            621,
            stat(600, 2300, 'S'),
            &["chromium", "--user-data-dir=/p/profiles/account-10"],
            &[],
            false,
        );
        check(
            622,
            stat(600, 2300, 'S'),
            &["chromium", &format!("{on}0")],
            &[],
            false,
        );
        check(
            623,
            stat(600, 2300, 'S'),
            &[
                "chromium",
                "--x",
                "--user-data-dir",
                "/p/profiles/account-1",
            ],
            &[],
            false,
        );
        // On the profile but in another group (e.g. a new runner's browser on it).
        check(624, stat(800, 2300, 'S'), &["chromium", on], &[], false);
        // In the group, on the profile, but older than the driver: not ours.
        check(625, stat(600, 1500, 'S'), &["chromium", on], &[], false);
    }

    #[test]
    fn a_record_from_another_boot_is_dropped_without_killing() {
        let old = Identity {
            boot_id: "a-previous-boot".into(),
            ..identity(500, 1000)
        };
        let me = Identity::current();
        let rec = Record {
            runner: old.clone(),
            pgid: me.pid,
            processes: vec![Identity {
                boot_id: old.boot_id.clone(),
                ..me.clone()
            }],
            profile: PathBuf::from("/p"),
        };
        let seen = Seen {
            pid: me.pid,
            stat: fsutil::proc::stat(me.pid).unwrap(),
            args: elements(&["x", "--user-data-dir=/p"]),
            environ: vec![marker_of(&old)],
        };
        assert!(!is_leftover(&rec, &seen));

        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("rt")).unwrap();
        let path = reg.dir().join("browsers").join("500.1000-1.json");
        std::fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
        let report = reg.reap().unwrap();
        assert_eq!(report.records, 1);
        assert!(report.killed.is_empty());
        assert!(report.profiles.is_empty());
        assert!(!path.exists());
    }

    /// Private temp dirs: this runner's and a live runner's stay, a dead runner's go
    /// (with what is inside), and a name that is not a runner's is never touched.
    #[test]
    fn reap_removes_dead_runners_temp_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("rt")).unwrap();
        let tmp = reg.dir().join("tmp");
        let mine = reg.private_tmp().unwrap().expect("a short runtime dir");
        assert!(mine.path().starts_with(&tmp));
        let mode = std::fs::metadata(mine.path()).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
        // A live runner: its lock held through another open file.
        let live_lock = File::create(reg.dir().join("runners").join("77.88.lock")).unwrap();
        live_lock.lock().unwrap();
        let (dead, dead_lock_free, live, stranger) = (
            tmp.join("55.66-0"),
            tmp.join("99.11-3"),
            tmp.join("77.88-1"),
            tmp.join("notes-1"),
        );
        std::fs::write(reg.dir().join("runners").join("99.11.lock"), "").unwrap();
        for d in [&dead, &dead_lock_free, &live, &stranger] {
            std::fs::create_dir_all(d.join("org.chromium.Chromium.x")).unwrap();
        }
        let report = reg.reap().unwrap();
        assert_eq!(report.temp_dirs, 2);
        assert!(!dead.exists() && !dead_lock_free.exists());
        assert!(live.exists() && stranger.exists() && mine.path().exists());
        let path = mine.path().to_path_buf();
        drop(mine);
        assert!(
            !path.exists(),
            "a browser's temp dir goes when it is dropped"
        );
    }

    /// Under a runtime dir so long that Chrome's socket would not fit, no private
    /// `TMPDIR` is made (Chrome keeps the inherited one and starts).
    #[test]
    fn no_private_temp_dir_where_chromes_socket_would_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("r".repeat(MAX_TMP_LEN));
        let reg = Registry::open(&long).unwrap();
        assert!(reg.private_tmp().unwrap().is_none());
        assert_eq!(std::fs::read_dir(long.join("tmp")).unwrap().count(), 0);
    }

    /// A process killed and reaped when dropped, even if the test fails. `read` is a
    /// shell builtin: killing the shell leaves no grandchild holding the output open.
    struct Stand(std::process::Child);

    impl Stand {
        fn new(args: &[&str]) -> Self {
            let child = std::process::Command::new("sh")
                .args(["-c", "read line"])
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            // /proc/PID/cmdline is empty for a moment after the exec.
            let pid = child.id();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while fsutil::proc::args(pid).unwrap_or_default().len() < 3 {
                assert!(std::time::Instant::now() < deadline, "sh never ran");
                std::thread::sleep(Duration::from_millis(5));
            }
            Stand(child)
        }
    }

    impl Drop for Stand {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn reap_kills_a_dead_runners_browser_and_spares_live_ones_and_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("rt")).unwrap();
        let profile = dir.path().join("account-1");
        let arg = format!("--user-data-dir={}", profile.display());
        // A dead runner's "Chrome" (in the test's group, on the profile), a neighbour
        // on account-10, and a stranger whose pid the record names with a wrong
        // start time.
        let mut leftover = Stand::new(&[&arg]);
        let neighbour = Stand::new(&[&format!("{arg}0")]);
        let stranger = Stand::new(&["unrelated"]);
        let group = fsutil::proc::stat(leftover.0.id()).unwrap().pgid;
        let dead_runner = identity(999_999, 1);
        let stranger_id = Identity::of(stranger.0.id()).unwrap();
        let rec = Record {
            runner: dead_runner,
            pgid: group,
            processes: vec![
                identity(group, 0),
                Identity {
                    start_time: stranger_id.start_time + 1,
                    ..stranger_id
                },
            ],
            profile: profile.clone(),
        };
        let browsers = reg.dir().join("browsers");
        std::fs::write(
            browsers.join("999999.1-1.json"),
            serde_json::to_vec(&rec).unwrap(),
        )
        .unwrap();
        // Our own record must survive the reap.
        let mine = reg.record(1, 1, None, &dir.path().join("mine")).unwrap();

        let report = reg.reap().unwrap();
        let status = leftover.0.wait().unwrap();
        assert!(!status.success(), "the leftover was killed");
        assert_eq!(report.records, 1);
        assert_eq!(report.killed, vec![leftover.0.id()]);
        assert_eq!(report.profiles, vec![profile]);
        assert!(
            fsutil::proc::alive(neighbour.0.id()),
            "account-10 untouched"
        );
        assert!(fsutil::proc::alive(stranger.0.id()), "reused pid untouched");
        assert!(mine.path.exists());
        drop(mine);
        assert_eq!(std::fs::read_dir(&browsers).unwrap().count(), 0);
    }

    /// `sleep 300` in a session of its own carrying `token` (an exec's escaped
    /// background process), killed and reaped when dropped.
    fn carrier(token: &ExecToken) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("/bin/sleep");
        cmd.arg("300").env(crate::EXEC_TOKEN_ENV, token.value());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while fsutil::proc::args(child.id()).unwrap_or_default().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "sleep never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    struct Reaped(std::process::Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn reap_kills_what_carries_a_dead_runners_exec_token_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("rt")).unwrap();
        let (dead_token, live_token) = (ExecToken::random().unwrap(), ExecToken::random().unwrap());
        let mut escaped = Reaped(carrier(&dead_token));
        let ours = Reaped(carrier(&live_token));
        let stranger = Reaped(carrier(&ExecToken::random().unwrap()));
        // A dead runner's exec record, and one of another boot with our live token.
        let execs = reg.dir().join("execs");
        let write = |name: &str, entry: &ExecEntry| {
            std::fs::write(execs.join(name), serde_json::to_vec(entry).unwrap()).unwrap();
        };
        write(
            "999999.1-dead.json",
            &ExecEntry {
                runner: identity(999_999, 1),
                token: dead_token,
            },
        );
        write(
            "999998.1-old.json",
            &ExecEntry {
                runner: Identity {
                    boot_id: "a-previous-boot".into(),
                    ..identity(999_998, 1)
                },
                token: live_token.clone(),
            },
        );
        // This (live) runner's own exec record.
        let mine = reg.record_exec(&live_token).unwrap();

        let report = reg.reap().unwrap();
        assert_eq!(report.killed, vec![escaped.0.id()]);
        assert_eq!(report.execs, 2);
        assert_eq!(report.records, 0);
        assert!(
            !escaped.0.wait().unwrap().success(),
            "the carrier was killed"
        );
        assert!(
            fsutil::proc::alive(ours.0.id()),
            "a live runner's exec untouched"
        );
        assert!(
            fsutil::proc::alive(stranger.0.id()),
            "another token untouched"
        );
        assert!(mine.path.exists());
        let left: Vec<_> = std::fs::read_dir(&execs).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        drop(mine);
        assert_eq!(std::fs::read_dir(&execs).unwrap().count(), 0);
    }

    #[test]
    fn runners_are_alive_by_identity() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("rt")).unwrap();
        let me = me().clone();
        assert!(reg.runner_alive(&me));
        let check = |who: Identity, expected: bool| {
            assert_eq!(reg.runner_alive(&who), expected, "{who:?}");
        };
        check(identity(999_999, 1), false);
        // Our pid with another start time: a runner that died, its pid reused by us.
        check(
            Identity {
                start_time: me.start_time + 1,
                ..me.clone()
            },
            false,
        );
        check(
            Identity {
                boot_id: "another".into(),
                ..me.clone()
            },
            false,
        );
        // A dead runner's lock file is removed by a reap; ours stays.
        let stale = reg.dir().join("runners/999999.1.lock");
        std::fs::write(&stale, "").unwrap();
        reg.reap().unwrap();
        assert!(!stale.exists());
        assert!(
            reg.dir()
                .join("runners")
                .join(runner_lock_name(&me))
                .exists()
        );
        assert!(reg.runner_alive(&me));
    }

    // --- Registration against concurrent reapers, across processes: the test binary
    // re-executes itself as registrants and reapers (the same test, told its role by
    // the environment). ---

    const RACE_ROLE: &str = "REGISTRY_RACE_ROLE";
    const RACE_DIR: &str = "REGISTRY_RACE_DIR";
    const RACE_TEST: &str = "registry::tests::registering_is_never_undone_by_concurrent_reapers";
    /// Only reached when a child misbehaves; a healthy one answers in milliseconds.
    const RACE_DEADLINE: Duration = Duration::from_secs(30);

    /// A registrant or a reaper process, killed and reaped when dropped (even if the
    /// test fails). A thread forwards its stdout lines so that every wait has a
    /// deadline.
    struct RaceChild {
        child: std::process::Child,
        lines: std::sync::mpsc::Receiver<String>,
    }

    impl RaceChild {
        fn spawn(role: &str, dir: &Path) -> Self {
            use std::io::BufRead;
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([RACE_TEST, "--exact", "--nocapture", "--test-threads=1"])
                .env(RACE_ROLE, role)
                .env(RACE_DIR, dir)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let (sender, lines) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
            RaceChild { child, lines }
        }

        /// The rest of the first line starting (after libtest's prefix, if any) with
        /// `mark`; panics if the child ends first or stays silent.
        fn after(&self, mark: &str) -> String {
            let deadline = std::time::Instant::now() + RACE_DEADLINE;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let line = self
                    .lines
                    .recv_timeout(left)
                    .unwrap_or_else(|e| panic!("no {mark:?} from the child: {e}"));
                if let Some(at) = line.find(mark) {
                    return line[at + mark.len()..].trim().to_owned();
                }
            }
        }

        /// Every line until the child exits (after its stdin was closed).
        fn finish(mut self) -> Vec<String> {
            drop(self.child.stdin.take());
            let deadline = std::time::Instant::now() + RACE_DEADLINE;
            let mut rest = Vec::new();
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(line) => rest.push(line),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(e) => panic!("the child did not finish: {e}"),
                }
            }
            let status = self.child.wait().unwrap();
            assert!(
                status.success(),
                "child failed: {status}\n{}",
                rest.join("\n")
            );
            rest
        }
    }

    impl Drop for RaceChild {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Kills the registrants' stand-in browsers when dropped, whatever happened.
    #[derive(Default)]
    struct Browsers(Vec<u32>);

    impl Drop for Browsers {
        fn drop(&mut self) {
            for pid in &self.0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// The registrant: register, start a stand-in browser the way the driver is
    /// started (own process group, the runner marker) and record it, report, then
    /// hold until stdin closes.
    fn registrant(dir: &Path) {
        use std::os::unix::process::CommandExt;
        let reg = Registry::open(dir).unwrap();
        let mut browser = std::process::Command::new("sleep")
            .arg("120")
            .process_group(0)
            .env(RUNNER_ENV, me().tag())
            .spawn()
            .unwrap();
        let pid = browser.id();
        let profile = dir.join("profiles").join(format!("account-{}", me().pid));
        let record = reg.record(pid, pid, None, &profile).unwrap();
        println!("REGISTERED {} {} {pid}", me().pid, me().start_time);
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        drop(record);
        let _ = browser.kill();
        let _ = browser.wait();
    }

    /// The reaper: register, then reap as fast as it can until stdin closes; reports
    /// every pid it killed and how many reaps it made.
    fn reaper(dir: &Path) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let reg = Registry::open(dir).unwrap();
        println!("REAPING");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopper = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            stopper.store(true, Ordering::Relaxed);
        });
        let mut reaps = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for pid in reg.reap().unwrap().killed {
                println!("KILLED {pid}");
            }
            reaps += 1;
        }
        println!("REAPS {reaps}");
    }

    /// Registering can never be undone by a concurrent reaper. Rounds of registrant
    /// processes register and record a browser while reaper processes reap without
    /// pause; half of each round is then SIGKILLed (dead runners, whose browsers the
    /// reapers must kill). At the end every live registrant still has its lock file
    /// and its record, its browser was never killed, and every dead one's browser is
    /// gone. Registration that a reaper could undo (a lock file created under its
    /// final name and locked a moment later) fails this within a few rounds.
    #[test]
    fn registering_is_never_undone_by_concurrent_reapers() {
        if let Some(dir) = std::env::var_os(RACE_DIR) {
            let dir = PathBuf::from(dir);
            match std::env::var(RACE_ROLE).as_deref() {
                Ok("registrant") => registrant(&dir),
                Ok("reaper") => reaper(&dir),
                other => panic!("unknown role {other:?}"),
            }
            return;
        }
        const ROUNDS: usize = 10;
        const PER_ROUND: usize = 12;
        const REAPERS: usize = 3;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rt");
        let mut browsers = Browsers::default();
        let reapers: Vec<_> = (0..REAPERS)
            .map(|_| RaceChild::spawn("reaper", &dir))
            .collect();
        for r in &reapers {
            r.after("REAPING");
        }
        // (registrant, its pid and start time, its browser's pid)
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for _ in 0..ROUNDS {
            let round: Vec<_> = (0..PER_ROUND)
                .map(|_| RaceChild::spawn("registrant", &dir))
                .collect();
            for (i, child) in round.into_iter().enumerate() {
                let said = child.after("REGISTERED ");
                let fields: Vec<u64> = said.split(' ').map(|f| f.parse().unwrap()).collect();
                let (pid, start, browser) = (fields[0] as u32, fields[1], fields[2] as u32);
                browsers.0.push(browser);
                if i % 2 == 0 {
                    live.push((child, pid, start, browser));
                } else {
                    // A runner killed while its browser runs: SIGKILL, then reaped by
                    // the guard; its lock is free from then on.
                    drop(child);
                    dead.push(browser);
                }
            }
        }
        // Every dead runner's browser is killed by the reapers.
        let deadline = std::time::Instant::now() + RACE_DEADLINE;
        while dead.iter().any(|pid| fsutil::proc::alive(*pid)) {
            assert!(
                std::time::Instant::now() < deadline,
                "dead runners' browsers left running"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut killed = Vec::new();
        let mut reaps = 0;
        for r in reapers {
            for line in r.finish() {
                if let Some(at) = line.find("KILLED ") {
                    killed.push(line[at + 7..].trim().parse::<u32>().unwrap());
                } else if let Some(at) = line.find("REAPS ") {
                    reaps += line[at + 6..].trim().parse::<u64>().unwrap();
                }
            }
        }
        // And one more reap after all the registrations: a lock file removed from
        // under a registrant would show now at the latest.
        let reg = Registry::open(&dir).unwrap();
        killed.extend(reg.reap().unwrap().killed);
        assert!(reaps > (ROUNDS * PER_ROUND) as u64, "only {reaps} reaps");
        for (_, pid, start, browser) in &live {
            let lock = dir.join("runners").join(format!("{pid}.{start}.lock"));
            assert!(lock.exists(), "runner {pid}: its lock file was removed");
            let record = dir
                .join("browsers")
                .join(format!("{pid}.{start}-{browser}.json"));
            assert!(record.exists(), "runner {pid}: its record was removed");
            assert!(
                fsutil::proc::alive(*browser),
                "runner {pid}: its browser {browser} was killed"
            );
            assert!(!killed.contains(browser), "runner {pid}: {browser} killed");
        }
        for (child, ..) in live {
            child.finish();
        }
        let mut expected = dead.clone();
        expected.sort_unstable();
        killed.sort_unstable();
        killed.dedup();
        assert_eq!(
            killed, expected,
            "exactly the dead runners' browsers were killed"
        );
    }

    #[test]
    fn a_runtime_dir_another_user_prepared_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Registry::open(&shared).unwrap_err();
        assert!(matches!(err, LaunchError::RuntimeDir(_)), "{err}");
        assert!(
            err.to_string().contains("writable by group or others"),
            "{err}"
        );
        if nix::unistd::geteuid().is_root() {
            let theirs = dir.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let err = Registry::open(&theirs).unwrap_err().to_string();
            assert!(err.contains("owned by uid 65534"), "{err}");
        }
        let under_link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &under_link).unwrap();
        assert!(Registry::open(under_link.join("rt")).is_err());
    }
}
