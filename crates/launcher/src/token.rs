//! Environment tokens: how the processes an `exec` program started are found again
//! after they left its process group and its session.
//!
//! A process group holds a program and everything it starts until one of them calls
//! `setsid()` or `setpgid()` (`setsid sleep 300 &`, `setsid -f`, a daemon's double
//! fork): killing the group misses that one. The environment is inherited through all
//! of it, so each exec gets a random [`ExecToken`] as the environment element
//! `BATCH_EXEC_TOKEN=<32 hex digits>`, and [`kill_carriers`] kills every process of
//! our user whose environment has that exact element, and the process groups those
//! processes lead. (Jenkins' ProcessTreeKiller finds a build's processes by the
//! `BUILD_ID` in their environment the same way.) The token is no secret — a program
//! can read its own environment — but 128 random bits do not collide, so a token
//! names one exec of one run and nothing else.
//!
//! The [`Registry`](crate::Registry) records the tokens of running execs
//! ([`Registry::record_exec`](crate::Registry::record_exec)), so that the next run's
//! reap kills what a killed runner's execs left, and only that.
//!
//! What this cannot find: a process that clears or rewrites its environment
//! (`env -i`, a daemon that sanitizes it, `sudo`), or that runs as another user.
//!
//! This module does not spawn anything: the `exec` action sets the variable.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The environment variable that carries an exec's token.
pub const EXEC_TOKEN_ENV: &str = "BATCH_EXEC_TOKEN";

/// One exec's token: 128 random bits as 32 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecToken(String);

impl ExecToken {
    /// A fresh token from the kernel's random source (`getrandom(2)`).
    pub fn random() -> std::io::Result<ExecToken> {
        let mut bytes = [0u8; 16];
        let mut filled = 0;
        while filled < bytes.len() {
            // SAFETY: the pointer and length name the unfilled rest of `bytes`.
            let n = unsafe {
                libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            filled += n as usize;
        }
        Ok(ExecToken(
            bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ))
    }

    /// The token's value (what goes after `BATCH_EXEC_TOKEN=`).
    pub fn value(&self) -> &str {
        &self.0
    }

    /// `BATCH_EXEC_TOKEN=<value>`: the exact environment element carriers have.
    pub fn element(&self) -> OsString {
        OsString::from(format!("{EXEC_TOKEN_ENV}={}", self.0))
    }

    /// Whether this is a well-formed token (a record read back from disk).
    pub(crate) fn is_valid(&self) -> bool {
        self.0.len() == 32
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

/// SIGKILL every live process of our user whose environment carries one of `tokens`
/// exactly, and every process group such a process leads (which takes members that
/// dropped the variable); scan again until a scan finds none, or `within` is over (a
/// carrier may fork while we scan). Returns the carriers' pids. Zombies are left to
/// whoever reaps them — the runner, a child subreaper, for its own execs.
pub fn kill_carriers(tokens: &[ExecToken], within: Duration) -> Vec<u32> {
    if tokens.is_empty() {
        return Vec::new();
    }
    let elements: Vec<OsString> = tokens.iter().map(ExecToken::element).collect();
    let us = std::process::id();
    let our_uid = nix::unistd::geteuid().as_raw();
    let our_pgid = nix::unistd::getpgrp().as_raw() as u32;
    let deadline = Instant::now() + within;
    let mut killed = BTreeSet::new();
    loop {
        let mut found = false;
        for pid in fsutil::proc::pids() {
            // Cheapest test first; the environment next, which most processes fail
            // (a zombie's or a kernel thread's reads empty).
            if pid == us || fsutil::proc::uid(pid) != Some(our_uid) {
                continue;
            }
            let Some(env) = fsutil::proc::environ(pid) else {
                continue;
            };
            if !elements.iter().any(|e| fsutil::proc::has_element(&env, e)) {
                continue;
            }
            let Some(stat) = fsutil::proc::stat(pid).filter(|s| !s.is_zombie()) else {
                continue;
            };
            found = true;
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            // Never our own group (a carrier could have joined it: same session).
            if stat.pgid == pid && stat.pgid != our_pgid {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            if killed.insert(pid) {
                tracing::debug!(pid, "killed a process carrying an exec token");
            }
        }
        if !found || Instant::now() >= deadline {
            break;
        }
        // Let the killed ones die before looking again.
        std::thread::sleep(Duration::from_millis(5));
    }
    killed.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    /// A process killed and reaped when dropped, even if the test fails.
    struct Held(std::process::Child);

    impl Drop for Held {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// `sleep 300` in a session of its own, with `env` as its whole environment.
    fn escaped(env: &[(&str, &str)]) -> Held {
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("300")
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        // The environment is the parent's until the exec.
        let deadline = Instant::now() + Duration::from_secs(5);
        while fsutil::proc::args(pid).unwrap_or_default().first()
            != Some(&OsString::from("/bin/sleep"))
        {
            assert!(Instant::now() < deadline, "sleep never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        Held(child)
    }

    #[test]
    fn a_carrier_takes_the_group_it_leads_with_it() {
        let token = ExecToken::random().unwrap();
        let leader = Command::new("/bin/sleep")
            .arg("300")
            .env(EXEC_TOKEN_ENV, token.value())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut leader = Held(leader);
        // A member of its group that cleared its environment.
        let member = Command::new("/bin/sleep")
            .arg("300")
            .env_clear()
            .process_group(leader.0.id() as i32)
            .spawn()
            .unwrap();
        let mut member = Held(member);
        let deadline = Instant::now() + Duration::from_secs(5);
        while fsutil::proc::args(leader.0.id()).unwrap_or_default().len() < 2 {
            assert!(Instant::now() < deadline, "sleep never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        let killed = kill_carriers(std::slice::from_ref(&token), Duration::from_secs(5));
        assert_eq!(killed, vec![leader.0.id()]);
        assert!(!leader.0.wait().unwrap().success());
        assert!(!member.0.wait().unwrap().success(), "the member died too");
    }

    #[test]
    fn tokens_are_128_random_bits_in_hex() {
        let a = ExecToken::random().unwrap();
        let b = ExecToken::random().unwrap();
        assert!(a.is_valid(), "{a:?}");
        assert_ne!(a, b);
        assert_eq!(
            a.element(),
            OsString::from(format!("BATCH_EXEC_TOKEN={}", a.value()))
        );
        let check = |s: &str, expected: bool| {
            assert_eq!(ExecToken(s.into()).is_valid(), expected, "{s:?}");
        };
        check(&"0123456789abcdef".repeat(2), true);
        check(&"0123456789ABCDEF".repeat(2), false);
        check(&"0".repeat(31), false);
        check(&"0".repeat(33), false);
        check(&format!("{}/", "0".repeat(31)), false);
    }

    #[test]
    fn only_exact_carriers_of_the_token_are_killed() {
        let token = ExecToken::random().unwrap();
        let other = ExecToken::random().unwrap();
        let value = token.value().to_owned();
        let mut carrier = escaped(&[(EXEC_TOKEN_ENV, &value), ("X", "1")]);
        let stranger = escaped(&[(EXEC_TOKEN_ENV, other.value())]);
        let no_token = escaped(&[("X", "1")]);
        let longer = escaped(&[(EXEC_TOKEN_ENV, &format!("{value}0"))]);
        let elsewhere = escaped(&[("OTHER_TOKEN", &value)]);
        let killed = kill_carriers(std::slice::from_ref(&token), Duration::from_secs(5));
        assert_eq!(killed, vec![carrier.0.id()]);
        assert!(!carrier.0.wait().unwrap().success());
        for held in [&stranger, &no_token, &longer, &elsewhere] {
            assert!(fsutil::proc::alive(held.0.id()), "{} killed", held.0.id());
        }
        assert!(kill_carriers(&[], Duration::from_secs(1)).is_empty());
    }
}
