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
            })
        })
        .collect()
}

/// One line of the process table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcEntry {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
}

/// Proportional set size of `root` and all its descendants, in bytes. Processes that
/// vanish while reading are skipped; `None` if `root` itself cannot be read.
pub fn tree_pss_bytes(root: u32) -> Option<u64> {
    trees_pss_bytes(&[root]).pop().flatten()
}

/// [`tree_pss_bytes`] for many roots from one scan of `/proc`: the process table is
/// read once and a parent → children map built once, so sampling N browsers costs one
/// scan plus their own processes' `smaps_rollup`, not N scans (which competed with
/// launches at 50+ browsers).
pub fn trees_pss_bytes(roots: &[u32]) -> Vec<Option<u64>> {
    let procs = all_processes();
    let mut children: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    roots
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
                match pss_of(*pid) {
                    Some(b) => total += b,
                    None if n == 0 => return None,
                    None => {}
                }
            }
            Some(total)
        })
        .collect()
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
