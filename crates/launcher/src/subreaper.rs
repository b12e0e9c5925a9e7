//! Making the runner the reaper of everything it starts, so that it can exit only
//! after every process it started is gone and reaped.
//!
//! Why: a browser is killed as a process group (SIGKILL to all at once), so Chrome's
//! children die after their parent and are re-parented — and so are Chrome's
//! crashpad handlers, which double-fork into their own session at start-up. Without a
//! subreaper they go to PID 1 (which in some containers never reaps them: measured,
//! 12 zombies and 12 live Chromium processes under PID 1 at the moment a clean
//! 10-browser run exited). With [`become_subreaper`] they are re-parented to us.
//!
//! Reaping them must not steal the exit status of a child that `tokio::process`
//! owns (ChromeDriver, `exec` programs, version probes): tokio waits on those by pid,
//! and a pid reaped behind its back could be reused before tokio kills it. So during
//! the run [`reap_adopted`] reaps only zombies that cannot be tokio's: tokio's
//! children stay in our session and are either process-group leaders (drivers) or
//! in our own group (`exec` programs), while adopted Chrome processes are in a
//! driver's group and crashpad handlers in a session of their own (as are the
//! processes of an `exec` program that left its group with `setsid`, once
//! [`kill_carriers`](crate::kill_carriers) killed them). At the very end,
//! once the runtime is gone, [`finish_descendants`] kills and reaps whatever is left.
//!
//! Limitation: an `exec` program that calls `setsid()` or `setpgid()` itself would
//! look adopted once it exits; it is then reaped here and its own wait fails.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::registry::{marker_of, me};

/// Ask the kernel to re-parent our orphaned descendants to us instead of to PID 1
/// (`PR_SET_CHILD_SUBREAPER`). Call once, early in `main`.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with these arguments only sets a flag on the calling process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether a zombie child with this stat was adopted (an orphan of a descendant),
/// given our own process group and session; see the module docs.
fn adopted(stat: &fsutil::proc::Stat, pid: u32, our_pgid: u32, our_sid: u32) -> bool {
    stat.sid != our_sid || (stat.pgid != pid && stat.pgid != our_pgid)
}

/// Reap the zombies re-parented to us that no `tokio::process::Child` owns; returns
/// how many. Cheap (one `/proc` scan): call it periodically during a run.
pub fn reap_adopted() -> usize {
    let us = std::process::id();
    let pgid = nix::unistd::getpgrp().as_raw() as u32;
    let Ok(sid) = nix::unistd::getsid(None) else {
        return 0;
    };
    let mut reaped = 0;
    for pid in fsutil::proc::pids() {
        let Some(stat) = fsutil::proc::stat(pid) else {
            continue;
        };
        if stat.ppid == us && stat.is_zombie() && adopted(&stat, pid, pgid, sid.as_raw() as u32) {
            let flags = Some(WaitPidFlag::WNOHANG);
            if matches!(waitpid(Pid::from_raw(pid as i32), flags), Ok(s) if s != WaitStatus::StillAlive)
            {
                reaped += 1;
            }
        }
    }
    reaped
}

/// What [`finish_descendants`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Live processes it had to kill (ours, still running at exit).
    pub killed: usize,
    /// Zombies it reaped.
    pub reaped: usize,
    /// Pids still there at the deadline (should be empty).
    pub left: Vec<u32>,
}

/// At the very end of `main`, after the async runtime is gone (no `tokio::process`
/// child is waited for any more): kill every process still running that we started
/// — our direct children and everything carrying our runner marker (Chrome's
/// crashpad handlers included) — and reap every child until none is left, or until
/// `timeout`.
pub fn finish_descendants(timeout: Duration) -> Finished {
    let us = std::process::id();
    let marker = marker_of(me());
    let deadline = Instant::now() + timeout;
    let mut killed = BTreeSet::new();
    let mut done = Finished::default();
    loop {
        let mut running = Vec::new();
        for pid in fsutil::proc::pids() {
            if pid == us {
                continue;
            }
            let Some(stat) = fsutil::proc::stat(pid) else {
                continue;
            };
            if stat.is_zombie() {
                continue;
            }
            let ours = stat.ppid == us
                || fsutil::proc::environ(pid)
                    .is_some_and(|env| fsutil::proc::has_element(&env, &marker));
            if ours {
                if killed.insert(pid) {
                    tracing::debug!(pid, "killing a process left at exit");
                }
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                running.push(pid);
            }
        }
        let mut no_children = false;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => done.reaped += 1,
                Err(Errno::EINTR) => continue,
                Err(_) => {
                    no_children = true;
                    break;
                }
            }
        }
        if no_children && running.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            done.left = running;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done.killed = killed.len();
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopted_cases() {
        let (our_pgid, our_sid) = (100, 90);
        let check = |pid: u32, pgid: u32, sid: u32, expected: bool| {
            let stat = fsutil::proc::Stat {
                comm: "x".into(),
                state: 'Z',
                ppid: 1,
                pgid,
                sid,
                start_time: 0,
            };
            assert_eq!(
                adopted(&stat, pid, our_pgid, our_sid),
                expected,
                "pid {pid} pgid {pgid} sid {sid}"
            );
        };
        // A driver: its own group leader, in our session: tokio's.
        check(500, 500, 90, false);
        // An exec program: in our group and session: tokio's.
        check(600, 100, 90, false);
        // A Chrome process re-parented from a killed browser: in the driver's group.
        check(510, 500, 90, true);
        // A crashpad handler: its own session.
        check(700, 700, 700, true);
    }
}
