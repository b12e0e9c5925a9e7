//! `/proc` readers, one copy for the whole workspace: [`stat`] (state, parent,
//! group, session, start time), [`args`] and [`environ`] (NUL-separated, compared
//! element by element, never as one joined string), [`uid`], [`pids`], [`boot_id`],
//! [`mem_available`], and [`Identity`]: a process named so that a reused pid never
//! passes for it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// What `/proc/PID/stat` says about a process (fields after the `(comm)` part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The command name (at most 15 bytes, as the kernel keeps it).
    pub comm: String,
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// The parent pid.
    pub ppid: u32,
    /// The process group id.
    pub pgid: u32,
    /// The session id.
    pub sid: u32,
    /// Field 22: start time in clock ticks after boot.
    pub start_time: u64,
}

impl Stat {
    /// A zombie (exited, not yet reaped) or dead process.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parses one `/proc/PID/stat` line; `comm` may hold spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is field 3 (state); field N is fields[N - 3].
    Some(Stat {
        comm,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        sid: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// `/proc/PID/stat` of `pid`, `None` if there is no such process.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether `pid` names a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| !s.is_zombie())
}

/// The user `pid` runs as (the owner of `/proc/PID`: its effective uid, or root's for
/// a process that made itself non-dumpable), `None` if there is no such process.
pub fn uid(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    Some(std::fs::metadata(format!("/proc/{pid}")).ok()?.uid())
}

/// Every pid in `/proc` right now (processes, not threads).
pub fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Splits NUL-separated `/proc` data (cmdline, environ) into its elements.
pub fn split_nul(raw: &[u8]) -> Vec<OsString> {
    raw.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsStr::from_bytes(s).to_owned())
        .collect()
}

/// The argv of `pid`, one element each; `None` if unreadable (gone, another user's
/// with `hidepid`); empty for a zombie or a kernel thread.
pub fn args(pid: u32) -> Option<Vec<OsString>> {
    Some(split_nul(
        &std::fs::read(format!("/proc/{pid}/cmdline")).ok()?,
    ))
}

/// The environment of `pid` (`NAME=value` elements); `None` if unreadable — which
/// it is for another user's process.
pub fn environ(pid: u32) -> Option<Vec<OsString>> {
    Some(split_nul(
        &std::fs::read(format!("/proc/{pid}/environ")).ok()?,
    ))
}

/// Whether one element of `list` is exactly `wanted` (`--user-data-dir=/p/account-1`
/// never matches `--user-data-dir=/p/account-10`).
pub fn has_element(list: &[OsString], wanted: &OsStr) -> bool {
    list.iter().any(|e| e == wanted)
}

/// The values of every `PREFIX<value>` element of `list`, in order.
pub fn values_of<'a>(list: &'a [OsString], prefix: &'a str) -> impl Iterator<Item = &'a OsStr> {
    list.iter().filter_map(move |e| {
        e.as_bytes()
            .strip_prefix(prefix.as_bytes())
            .map(OsStr::from_bytes)
    })
}

static BOOT_ID: LazyLock<String> = LazyLock::new(|| {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
});

/// This boot's id (`/proc/sys/kernel/random/boot_id`); empty if unreadable.
pub fn boot_id() -> &'static str {
    &BOOT_ID
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// This process's peak resident set (`VmHWM` of `/proc/self/status`), in bytes.
pub fn own_peak_rss() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A process as it can be named across time: pid, start time and boot id. A pid is
/// reused after its process is reaped; the triple is not (a new process with that
/// pid starts later, and a reboot changes the boot id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// The pid.
    pub pid: u32,
    /// `/proc/PID/stat` field 22 (clock ticks after boot).
    pub start_time: u64,
    /// `/proc/sys/kernel/random/boot_id` when the identity was taken.
    pub boot_id: String,
}

impl Identity {
    /// The identity of the live process `pid`, if it exists now.
    pub fn of(pid: u32) -> Option<Identity> {
        let s = stat(pid)?;
        Some(Identity {
            pid,
            start_time: s.start_time,
            boot_id: boot_id().to_owned(),
        })
    }

    /// This process.
    pub fn current() -> Identity {
        Identity::of(std::process::id()).expect("/proc/self/stat is readable")
    }

    /// Whether this identity was taken during the current boot.
    pub fn this_boot(&self) -> bool {
        self.boot_id == boot_id()
    }

    /// Whether `stat` (read for `self.pid` now) is this very process, still alive.
    pub fn matches(&self, stat: &Stat) -> bool {
        self.this_boot() && stat.start_time == self.start_time && !stat.is_zombie()
    }

    /// Whether this very process is alive now (not a reused pid, not a zombie).
    pub fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| self.matches(&s))
    }

    /// `pid.start_time.boot` — a name for files and environment markers.
    pub fn tag(&self) -> String {
        format!("{}.{}.{}", self.pid, self.start_time, self.boot_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cases() {
        let line = "42 (a b) c) S 1 40 39 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, "a b) c");
        assert_eq!(
            (s.state, s.ppid, s.pgid, s.sid, s.start_time),
            ('S', 1, 40, 39, 777)
        );
        assert!(!s.is_zombie());
        assert!(parse_stat("42 (x) Z 1").is_none(), "truncated");
        let me = stat(std::process::id()).unwrap();
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw() as u32);
        assert_eq!(
            uid(std::process::id()),
            Some(nix::unistd::geteuid().as_raw())
        );
        assert_eq!(uid(u32::MAX), None);
        assert_eq!(me.pgid, nix::unistd::getpgrp().as_raw() as u32);
    }

    #[test]
    fn exact_elements_never_match_as_substrings() {
        let args = split_nul(b"chromium\0--user-data-dir=/p/account-10\0--headless=new\0");
        let check = |wanted: &str, expected: bool| {
            assert_eq!(has_element(&args, OsStr::new(wanted)), expected, "{wanted}");
        };
        check("--user-data-dir=/p/account-10", true);
        check("--user-data-dir=/p/account-1", false);
        check("--user-data-dir=/p/account-100", false);
        check("--headless", false);
        let dirs: Vec<_> = values_of(&args, "--user-data-dir=").collect();
        assert_eq!(dirs, [OsStr::new("/p/account-10")]);
    }

    #[test]
    fn identities_tell_reused_pids_and_other_boots_apart() {
        let me = Identity::current();
        assert!(me.alive());
        assert!(!boot_id().is_empty());
        let check = |identity: Identity, expected: bool| {
            assert_eq!(identity.alive(), expected, "{identity:?}");
        };
        check(me.clone(), true);
        check(
            Identity {
                start_time: me.start_time + 1,
                ..me.clone()
            },
            false,
        );
        check(
            Identity {
                boot_id: "another-boot".into(),
                ..me.clone()
            },
            false,
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        check(Identity { pid, ..me.clone() }, false);
        assert!(!alive(pid));
        assert!(mem_available().unwrap() > 0);
        assert!(own_peak_rss().unwrap() > 0);
    }
}
