//! Small `/proc` queries over [`fsutil::proc`]: is a process alive, how much
//! memory a process tree really uses (PSS, because RSS sums count shared pages once per
//! process and overcount a browser about 5×).

use std::path::Path;

/// Whether `pid` names a live (not zombie) process.
pub fn process_alive(pid: u32) -> bool {
    fsutil::proc::alive(pid)
}

/// All live pids, with their process group id and parent pid.
pub(crate) fn all_processes() -> Vec<ProcEntry> {
    fsutil::proc::pids()
        .into_iter()
        .filter_map(|pid| {
            let stat = fsutil::proc::stat(pid).filter(|s| !s.is_zombie())?;
            Some(ProcEntry {
                pid,
                ppid: stat.ppid,
                start_time: stat.start_time,
            })
        })
        .collect()
}

/// One line of the process table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcEntry {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    pub(crate) start_time: u64,
}

/// Proportional set size of `root` and all its descendants, in bytes. Processes that
/// vanish while reading are skipped; `None` if `root` itself cannot be read.
pub fn tree_pss_bytes(root: u32) -> Option<u64> {
    trees_pss_bytes(&[root]).pop().flatten()
}

/// [`tree_pss_bytes`] for many roots from one scan of `/proc`: the process table is
/// read once and a parent → children map built once, so sampling N browsers costs one
/// scan plus their own processes' `smaps_rollup`, not N scans (which competed with
/// launches at 50+ browsers). Every process's `smaps_rollup` is read; a sampler that
/// calls this repeatedly should keep a [`PssCache`] instead.
pub fn trees_pss_bytes(roots: &[u32]) -> Vec<Option<u64>> {
    PssCache::default().trees_pss_bytes(roots)
}

/// A reading older than this many samples is taken again even if the process's
/// resident size did not move: PSS also changes when *other* processes start or stop
/// sharing its pages, which its own RSS does not show.
const PSS_MAX_AGE: u32 = 8;

/// [`trees_pss_bytes`] across samples, re-reading `smaps_rollup` only where it can
/// have changed.
///
/// Why: `smaps_rollup` walks the process's whole page table under its mmap lock.
/// Measured here, one read costs 1–20 ms for a Chromium process (the browser process,
/// with ~860 mappings, is the dearest), ~100 processes for 10 browsers: a 1 s sampler
/// took 2–3 CPU-seconds of a 35 CPU-second benchmark run (sys time, charged to
/// batch-cli) and stalled the browsers' own page faults while it walked. `statm` is a
/// counter read (~0.02 ms). So each process's PSS is re-read when its resident size
/// moved by more than 1/16 since the last reading, when that reading is
/// [`PSS_MAX_AGE`] samples old, or when the pid is new; otherwise the last PSS is
/// carried forward, shifted by the change in resident size (pages a busy process
/// gains are mostly its own: heap, not shared libraries).
#[derive(Debug, Default)]
pub struct PssCache {
    entries: std::collections::HashMap<u32, PssEntry>,
    reads: u64,
}

#[derive(Debug, Clone, Copy)]
struct PssEntry {
    /// Start time (clock ticks since boot): a reused pid is another process.
    start_time: u64,
    rss: u64,
    pss: u64,
    age: u32,
}

impl PssCache {
    /// How many `smaps_rollup` files this cache has read (for tests and the bench).
    pub fn smaps_reads(&self) -> u64 {
        self.reads
    }

    /// PSS per tree, like [`trees_pss_bytes`]. Entries of processes not seen in this
    /// call are dropped.
    pub fn trees_pss_bytes(&mut self, roots: &[u32]) -> Vec<Option<u64>> {
        let procs = all_processes();
        let mut children: std::collections::HashMap<u32, Vec<u32>> =
            std::collections::HashMap::new();
        let mut start: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
        for p in &procs {
            children.entry(p.ppid).or_default().push(p.pid);
            start.insert(p.pid, p.start_time);
        }
        let mut fresh = std::collections::HashMap::new();
        let out = roots
            .iter()
            .map(|&root| {
                let mut tree = vec![root];
                let mut i = 0;
                while i < tree.len() {
                    if let Some(kids) = children.get(&tree[i]) {
                        tree.extend_from_slice(kids);
                    }
                    i += 1;
                }
                let mut total = 0;
                for (n, pid) in tree.iter().enumerate() {
                    let started = start.get(pid).copied().unwrap_or_default();
                    match self.pss(*pid, started) {
                        Some(e) => {
                            total += e.pss;
                            fresh.insert(*pid, e);
                        }
                        None if n == 0 => return None,
                        None => {}
                    }
                }
                Some(total)
            })
            .collect();
        self.entries = fresh;
        out
    }

    fn pss(&mut self, pid: u32, start_time: u64) -> Option<PssEntry> {
        let rss = rss_of(pid)?;
        if let Some(carried) = self
            .entries
            .get(&pid)
            .and_then(|old| carry_forward(*old, start_time, rss))
        {
            return Some(carried);
        }
        self.reads += 1;
        Some(PssEntry {
            start_time,
            rss,
            pss: pss_of(pid)?,
            age: 0,
        })
    }
}

/// The last reading carried to a new resident size `rss`, or `None` when the process
/// must be read again: another process under the same pid, a reading
/// [`PSS_MAX_AGE`] samples old, or RSS moved by more than 1/16.
fn carry_forward(old: PssEntry, start_time: u64, rss: u64) -> Option<PssEntry> {
    (old.start_time == start_time
        && old.age + 1 < PSS_MAX_AGE
        && rss.abs_diff(old.rss) <= old.rss / 16)
        .then(|| PssEntry {
            rss,
            pss: (old.pss + rss).saturating_sub(old.rss),
            age: old.age + 1,
            ..old
        })
}

/// Resident set size from `/proc/PID/statm` (a counter read, unlike `smaps_rollup`).
fn rss_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096, |n| n as u64)
    })
}

fn pss_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(
        Path::new("/proc")
            .join(pid.to_string())
            .join("smaps_rollup"),
    )
    .ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The `socket:[inode]` links of TCP sockets listening on `port` (IPv4 or IPv6).
fn listening_sockets(port: u16) -> Vec<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| listening_inode(l, port))
                .collect::<Vec<_>>()
        })
        .map(|inode| format!("socket:[{inode}]"))
        .collect()
}

fn holds_any(pid: u32, sockets: &[String]) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| sockets.iter().any(|w| l.as_os_str() == w.as_str()))
        })
    })
}

/// Whether `pid` holds the TCP socket listening on `port`.
pub(crate) fn holds_listener(pid: u32, port: u16) -> bool {
    let sockets = listening_sockets(port);
    !sockets.is_empty() && holds_any(pid, &sockets)
}

/// Some process holding the socket listening on `port` (for error messages: a
/// listening socket can be shared by several processes).
pub(crate) fn listener_owner(port: u16) -> Option<u32> {
    let sockets = listening_sockets(port);
    if sockets.is_empty() {
        return None;
    }
    all_processes()
        .into_iter()
        .map(|p| p.pid)
        .find(|pid| holds_any(*pid, &sockets))
}

/// `  0: 0100007F:A86B 00000000:0000 0A ... inode` → the inode if it listens on `port`.
fn listening_inode(line: &str, port: u16) -> Option<String> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let local_port = u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()?;
    (local_port == port && *cols.get(3)? == "0A")
        .then(|| cols.get(9).map(|s| s.to_string()))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_alive_and_has_memory() {
        let me = std::process::id();
        assert!(process_alive(me));
        assert!(tree_pss_bytes(me).unwrap() > 0);
        assert!(all_processes().iter().any(|p| p.pid == me));
    }

    #[test]
    fn a_reading_is_carried_forward_only_while_rss_holds_and_it_is_young() {
        let old = PssEntry {
            start_time: 7,
            rss: 1600,
            pss: 1000,
            age: 0,
        };
        let carried = |start, rss| carry_forward(old, start, rss).map(|e| (e.pss, e.age));
        // Unchanged, or within 1/16 (100 of 1600) either way: PSS shifted by the change.
        assert_eq!(carried(7, 1600), Some((1000, 1)));
        assert_eq!(carried(7, 1700), Some((1100, 1)));
        assert_eq!(carried(7, 1500), Some((900, 1)));
        // Moved by more than 1/16, or another process under the pid: read again.
        assert_eq!(carried(7, 1701), None);
        assert_eq!(carried(7, 1499), None);
        assert_eq!(carried(8, 1600), None);
        // Old enough: read again even though nothing moved.
        let mut e = old;
        let mut carried_times = 0;
        while let Some(next) = carry_forward(e, 7, 1600) {
            e = next;
            carried_times += 1;
        }
        assert_eq!(carried_times, PSS_MAX_AGE - 1);
        // PSS never goes below zero when RSS falls.
        let tiny = PssEntry { pss: 10, ..old };
        assert_eq!(carry_forward(tiny, 7, 1500).map(|e| e.pss), Some(0));
    }

    #[test]
    fn the_cache_reads_a_new_process_and_a_grown_one_and_drops_the_gone() {
        let me = std::process::id();
        let mut cache = PssCache::default();
        let first = cache.trees_pss_bytes(&[me])[0].unwrap();
        assert!(first > 0);
        assert_eq!(cache.smaps_reads(), 1);
        // Grow to well past 1/16 more resident memory: read again, and the figure grew.
        let rss = rss_of(me).unwrap() as usize;
        let mut big = vec![0u8; rss];
        for i in (0..big.len()).step_by(4096) {
            big[i] = 1;
        }
        let grown = cache.trees_pss_bytes(&[me])[0].unwrap();
        assert_eq!(cache.smaps_reads(), 2);
        assert!(
            grown > first + (rss as u64) / 2,
            "{grown} vs {first} + {rss}"
        );
        std::hint::black_box(&big);
        // A pid that is gone reads as None, and its entries are dropped.
        assert_eq!(cache.trees_pss_bytes(&[u32::MAX]), vec![None]);
        assert!(cache.entries.is_empty());
    }

    #[test]
    fn a_reaped_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }

    #[test]
    fn finds_the_owner_of_a_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(listener_owner(port), Some(std::process::id()));
        assert!(holds_listener(std::process::id(), port));
        assert!(!holds_listener(1, port));
        drop(l);
        assert!(!holds_listener(std::process::id(), port));
        assert_eq!(listener_owner(port), None);
    }
}
