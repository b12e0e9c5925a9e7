//! Running an `exec` program contained: it and everything it starts live in one
//! process group and carry one environment token, and all of it dies with the
//! iteration — on success, failure, timeout, cancellation, and the runner's own death.
//!
//! - The program runs under a tiny `/bin/sh` supervisor that leads a new process
//!   group and carries `PR_SET_PDEATHSIG = SIGTERM`; its trap answers that signal
//!   with `kill -KILL 0`, so a killed runner takes the whole group — grandchildren
//!   included — with it. (A parent-death signal on the program itself would only
//!   kill the program, not what it started.) The supervisor is spawned from the
//!   calling task's thread, a runtime worker that lives as long as the runtime: the
//!   signal fires when the *spawning thread* exits, so never from `spawn_blocking`.
//! - [`Contained::run`] waits for the program's *exit*, not for EOF on its pipes: a
//!   background grandchild holding stdout open cannot turn a success into a timeout.
//!   After the exit it reads what is buffered for at most [`GRACE`], then kills the
//!   group.
//! - On timeout, or when the future is dropped (the account was cancelled), a
//!   [`Containment`] guard kills the group with `SIGKILL`.
//! - A process that left the group (`setsid`, `setsid -f`, a double fork) is found by
//!   its environment: every exec gets a random [`launcher::ExecToken`] as
//!   `BATCH_EXEC_TOKEN`, and whenever the group is killed, so is every process of ours
//!   that carries that exact token ([`launcher::kill_carriers`]); the runner, a child
//!   subreaper, reaps them. The token is recorded in the registry while the program
//!   runs ([`Contained::record`]), so if the runner dies the next run's start-up reap
//!   kills what carries it. A process that clears its environment escapes this.
//! - Output is bounded: only the last [`TAIL_BYTES`] of stdout and of stderr are
//!   kept in memory.
//!
//! This module does not render templates, build the environment or write logs; the
//! `exec` action in `actions.rs` does.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use launcher::{ExecRecord, ExecToken, Registry};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// How much of each stream is kept: the last 64 KiB.
pub(crate) const TAIL_BYTES: usize = 64 * 1024;

/// How long to read what is left in the pipes after the program exited.
pub(crate) const GRACE: Duration = Duration::from_millis(250);

/// How long to keep looking for token carriers that fork while they are killed.
const CARRIER_SCAN: Duration = Duration::from_secs(2);

/// The supervisor: run the program in the background so that `wait` can be
/// interrupted by the trap, and exit with its status. (Being an asynchronous command
/// of a non-interactive shell, the program starts with SIGINT and SIGQUIT ignored;
/// nothing sends it those, as its group is not the terminal's.)
const SUPERVISOR: &str = "trap 'kill -KILL 0' TERM; \"$@\" & wait $!";

/// The last [`TAIL_BYTES`] of a stream.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    bytes: VecDeque<u8>,
    /// How many earlier bytes were dropped.
    pub(crate) dropped: u64,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend(chunk);
        let over = self.bytes.len().saturating_sub(TAIL_BYTES);
        if over > 0 {
            self.bytes.drain(..over);
            self.dropped += over as u64;
        }
    }

    /// The kept bytes as text (lossy).
    pub(crate) fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }
}

/// How a contained program ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// `None`: it ran out of time and its group was killed.
    pub(crate) status: Option<ExitStatus>,
    pub(crate) stdout: Tail,
    pub(crate) stderr: Tail,
}

/// Ends an exec when dropped: `SIGKILL` to its process group, then to every process
/// carrying its token, and only then its registry record goes.
#[derive(Debug)]
pub(crate) struct Containment {
    group: i32,
    token: ExecToken,
    record: Option<ExecRecord>,
}

impl Drop for Containment {
    fn drop(&mut self) {
        // Never killpg(0): that is our own process group.
        if self.group > 1 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // What left the group: one /proc scan when nothing did.
        let killed = launcher::kill_carriers(std::slice::from_ref(&self.token), CARRIER_SCAN);
        if !killed.is_empty() {
            tracing::debug!(?killed, "killed an exec's processes outside its group");
        }
        self.record = None;
    }
}

/// `program args…`, ready to get its environment and directory, then [`Contained::run`].
pub(crate) struct Contained {
    cmd: Command,
    token: ExecToken,
    record: Option<ExecRecord>,
}

impl Contained {
    /// The supervised command line for `program args…`, with a fresh token in its
    /// environment; fails only if the kernel gives no random bytes.
    pub(crate) fn new<S: AsRef<OsStr>>(
        program: &str,
        args: impl IntoIterator<Item = S>,
    ) -> std::io::Result<Self> {
        let token = ExecToken::random()?;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SUPERVISOR)
            .arg("batch-cli-exec")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .env(launcher::EXEC_TOKEN_ENV, token.value())
            .kill_on_drop(true);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid,
        // signal), touching no memory of the parent.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The runner died before the prctl: nobody would ever signal us.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the runner is gone"));
                }
                // A signal ignored on entry cannot be trapped by sh: restore defaults
                // (a runner started from a background job ignores SIGINT, maybe more).
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGHUP, libc::SIG_DFL);
                Ok(())
            });
        }
        Ok(Contained {
            cmd,
            token,
            record: None,
        })
    }

    /// Record the token in `registry` before the program starts, so that if this
    /// process dies the next run's reap kills whatever carries it.
    pub(crate) fn record(&mut self, registry: &Registry) -> Result<(), launcher::LaunchError> {
        self.record = Some(registry.record_exec(&self.token)?);
        Ok(())
    }

    /// The command, to add environment variables and the working directory.
    pub(crate) fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Run to exit or `timeout`; the group is gone when this returns — or when the
    /// future is dropped.
    pub(crate) async fn run(mut self, timeout: Duration) -> std::io::Result<Outcome> {
        let mut child = self.cmd.spawn()?;
        // The supervisor leads the group: its pid is the group's id.
        let group = Containment {
            group: child.id().map_or(0, |p| p as i32),
            token: self.token,
            record: self.record,
        };
        let (so, se) = (child.stdout.take(), child.stderr.take());
        let (mut stdout, mut stderr) = (Tail::default(), Tail::default());
        let status = {
            let pumps = async { tokio::join!(pump(so, &mut stdout), pump(se, &mut stderr)) };
            tokio::pin!(pumps);
            let deadline = tokio::time::Instant::now() + timeout;
            let mut drained = false;
            let status = loop {
                tokio::select! {
                    st = child.wait() => break Some(st?),
                    _ = &mut pumps, if !drained => drained = true,
                    _ = tokio::time::sleep_until(deadline) => break None,
                }
            };
            if status.is_some() && !drained {
                // A grandchild may hold the pipes: take what is there, briefly.
                drained = tokio::time::timeout(GRACE, &mut pumps).await.is_ok();
            }
            // Dropping it ends it. The /proc scan blocks: off the runtime's workers.
            // (Were this future dropped meanwhile, the blocking task would still
            // finish; were the task refused, the dropped closure ends it here.)
            let _ = tokio::task::spawn_blocking(move || drop(group)).await;
            if !drained {
                // Every writer is dead now: what is left in the pipes comes at once.
                let _ = tokio::time::timeout(GRACE, &mut pumps).await;
            }
            status
        };
        if status.is_none() {
            // Reap the supervisor (SIGKILLed with its group).
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        Ok(Outcome {
            status,
            stdout,
            stderr,
        })
    }
}

async fn pump(pipe: Option<impl AsyncRead + Unpin>, tail: &mut Tail) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.push(&buf[..n]);
    }
}

/// Where `program` would be found (a path with a `/` is relative to `dir`; a bare
/// name is searched in `PATH`), if it exists as an executable file.
pub(crate) fn resolve(program: &str, dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = dir.join(program);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| dir.join(d).join(program))
        .find(|p| executable(p))
}

/// Append one exec's record to `path` (created 0600 in a 0700 directory).
pub(crate) fn append_log(path: &Path, record: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(record.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sh(script: &str) -> Contained {
        Contained::new("sh", ["-c", script]).unwrap()
    }

    /// Whether `pid` is a live process (zombies count as gone).
    fn alive(pid: i32) -> bool {
        u32::try_from(pid).is_ok_and(fsutil::proc::alive)
    }

    fn pid_in(dir: &Path, name: &str) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(t) = std::fs::read_to_string(dir.join(name))
                && let Ok(p) = t.trim().parse()
            {
                return p;
            }
            assert!(Instant::now() < deadline, "{name} never written");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn gone(pid: i32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_grandchild_holding_the_pipes_does_not_make_a_success_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = sh("echo out; echo err >&2; sleep 300 & echo $! > bg.pid; exit 0");
        c.command().current_dir(dir.path());
        let started = Instant::now();
        let out = c.run(Duration::from_secs(60)).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(out.status.unwrap().success());
        assert_eq!(out.stdout.text(), "out\n");
        assert_eq!(out.stderr.text(), "err\n");
        assert!(
            gone(pid_in(dir.path(), "bg.pid")),
            "the grandchild was killed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = sh("sleep 300 & echo $! > bg.pid; echo $$ > main.pid; sleep 300");
        c.command().current_dir(dir.path());
        let out = c.run(Duration::from_millis(500)).await.unwrap();
        assert!(out.status.is_none());
        assert!(gone(pid_in(dir.path(), "bg.pid")));
        assert!(gone(pid_in(dir.path(), "main.pid")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_future_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = sh("sleep 300 & echo $! > bg.pid; sleep 300");
        c.command().current_dir(dir.path());
        let task = tokio::spawn(c.run(Duration::from_secs(300)));
        let bg = pid_in(dir.path(), "bg.pid");
        task.abort();
        let _ = task.await;
        assert!(gone(bg));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_supervisor_kills_the_group_when_told_its_parent_died() {
        // PR_SET_PDEATHSIG delivers SIGTERM to the supervisor; deliver it by hand.
        let dir = tempfile::tempdir().unwrap();
        let mut c = sh("sleep 300 & echo $! > bg.pid; sleep 300");
        c.command().current_dir(dir.path());
        let task = tokio::spawn(c.run(Duration::from_secs(300)));
        let bg = pid_in(dir.path(), "bg.pid");
        let group = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(bg))).unwrap();
        nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM).unwrap();
        let out = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the program ended with its supervisor")
            .unwrap()
            .unwrap();
        assert!(!out.status.unwrap().success());
        assert!(gone(bg));
    }

    /// Leaves three processes outside the program's group, each in a session of its
    /// own, and writes their pids: `setsid` in the background, `setsid -f`, and a
    /// double fork + `setsid`. Then `tail` (exit 0, or hang past the timeout).
    fn escapes(tail: &str) -> String {
        format!(
            "setsid sh -c 'echo $$ > a.pid; exec sleep 300' & \
             setsid -f sh -c 'echo $$ > b.pid; exec sleep 300'; \
             ( ( setsid sh -c 'echo $$ > c.pid; exec sleep 300' & ) & ); \
             while [ ! -s a.pid ] || [ ! -s b.pid ] || [ ! -s c.pid ]; do sleep 0.02; done; {tail}"
        )
    }

    const ESCAPED: [&str; 3] = ["a.pid", "b.pid", "c.pid"];

    /// Kills the escaped processes whatever happened.
    struct KillPids<'a>(&'a Path);

    impl Drop for KillPids<'_> {
        fn drop(&mut self) {
            for name in ESCAPED.iter().chain(&["other.pid"]) {
                if let Ok(t) = std::fs::read_to_string(self.0.join(name))
                    && let Ok(pid) = t.trim().parse::<i32>()
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }

    /// The escaped processes really left the group and the session, and are gone now.
    fn escaped_and_gone(dir: &Path) {
        for name in ESCAPED {
            let pid = pid_in(dir, name);
            assert!(gone(pid), "{name}: {pid} still running");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_that_left_the_group_die_with_a_successful_exec() {
        let dir = tempfile::tempdir().unwrap();
        let _kill = KillPids(dir.path());
        // Checked while they run: each is in a session (and group) of its own.
        let mut c = sh(&escapes(
            "for f in a b c; do p=$(cat $f.pid); \
             [ \"$(cut -d' ' -f6 /proc/$p/stat)\" = \"$p\" ] || exit 7; done; exit 0",
        ));
        c.command().current_dir(dir.path());
        let out = c.run(Duration::from_secs(60)).await.unwrap();
        assert!(out.status.unwrap().success(), "{}", out.stderr.text());
        escaped_and_gone(dir.path());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_that_left_the_group_die_with_a_timed_out_exec() {
        let dir = tempfile::tempdir().unwrap();
        let _kill = KillPids(dir.path());
        let mut c = sh(&escapes("sleep 300"));
        c.command().current_dir(dir.path());
        let out = c.run(Duration::from_secs(3)).await.unwrap();
        assert!(out.status.is_none());
        escaped_and_gone(dir.path());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_that_left_the_group_die_with_a_cancelled_exec_and_no_one_else() {
        let dir = tempfile::tempdir().unwrap();
        let _kill = KillPids(dir.path());
        // A process of ours with another exec's token, started the same way.
        let mut other = sh("setsid sh -c 'echo $$ > other.pid; exec sleep 300' & wait");
        other.command().current_dir(dir.path());
        let other_task = tokio::spawn(other.run(Duration::from_secs(300)));
        let stranger = pid_in(dir.path(), "other.pid");

        let registry = Registry::open(dir.path().join("rt")).unwrap();
        let mut c = sh(&escapes("sleep 300"));
        c.command().current_dir(dir.path());
        c.record(&registry).unwrap();
        let task = tokio::spawn(c.run(Duration::from_secs(300)));
        for name in ESCAPED {
            pid_in(dir.path(), name);
        }
        let records = || {
            std::fs::read_dir(registry.dir().join("execs"))
                .unwrap()
                .count()
        };
        assert_eq!(records(), 1, "recorded while it runs");
        task.abort();
        let _ = task.await;
        escaped_and_gone(dir.path());
        assert_eq!(records(), 0, "the record goes with it");
        assert!(alive(stranger), "another exec's process is untouched");
        other_task.abort();
        let _ = other_task.await;
        assert!(gone(stranger));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn output_is_bounded_and_exit_codes_pass_through() {
        let c = sh("head -c 300000 /dev/zero | tr '\\0' x; echo; echo last; exit 3");
        let out = c.run(Duration::from_secs(30)).await.unwrap();
        assert_eq!(out.status.unwrap().code(), Some(3));
        assert!(out.stdout.text().len() <= TAIL_BYTES);
        assert!(out.stdout.text().ends_with("x\nlast\n"));
        assert_eq!(out.stdout.dropped as usize, 300000 + 6 - TAIL_BYTES);
    }

    #[test]
    fn programs_are_resolved_like_the_shell_would() {
        let dir = tempfile::tempdir().unwrap();
        assert!(resolve("sh", dir.path()).is_some());
        assert!(resolve("surely-no-such-program-here", dir.path()).is_none());
        assert!(resolve("./x.sh", dir.path()).is_none());
        std::fs::write(dir.path().join("x.sh"), "#!/bin/sh\n").unwrap();
        assert!(resolve("./x.sh", dir.path()).is_none(), "not executable");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("x.sh"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        assert_eq!(
            resolve("./x.sh", dir.path()),
            Some(dir.path().join("./x.sh"))
        );
    }

    #[test]
    fn logs_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs").join("account-1.log");
        append_log(&log, "a\n").unwrap();
        append_log(&log, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "a\nb\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&log), 0o600);
        assert_eq!(mode(log.parent().unwrap()), 0o700);
    }
}
