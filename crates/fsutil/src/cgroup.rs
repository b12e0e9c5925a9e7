//! The memory cgroup this process is in (v2, else v1): its limit and use, and what the
//! kernel recorded in it — peak use, how often the limit was hit, OOM kills.
//!
//! It only reads: it never creates, joins or limits a cgroup. One copy for the runner
//! (available memory inside a container) and the stress runs (which must fail on an
//! OOM kill they would otherwise not see).

use std::path::{Path, PathBuf};

/// A memory cgroup's directory and which interface it speaks.
#[derive(Debug, Clone)]
pub struct MemoryCgroup {
    dir: PathBuf,
    v2: bool,
}

impl MemoryCgroup {
    /// Ours: the path from `/proc/self/cgroup` first and the mount's root second (inside
    /// a cgroup namespace the root *is* our cgroup), v2 before v1; the first whose limit
    /// file exists. `None` when no memory cgroup is visible.
    pub fn own() -> Option<MemoryCgroup> {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let (v2, v1) = paths(&own);
        let root = Path::new("/sys/fs/cgroup");
        let v2 = v2.map(|p| root.join(p.trim_start_matches('/')));
        let v1 = v1.map(|p| root.join("memory").join(p.trim_start_matches('/')));
        [v2, Some(root.to_path_buf()), v1, Some(root.join("memory"))]
            .into_iter()
            .flatten()
            .find_map(MemoryCgroup::at)
    }

    /// The memory cgroup at `dir` (a v2 one if it has `memory.max`, else a v1 one if it
    /// has `memory.limit_in_bytes`), e.g. one a stress test made.
    pub fn at(dir: PathBuf) -> Option<MemoryCgroup> {
        [true, false]
            .into_iter()
            .map(|v2| MemoryCgroup {
                dir: dir.clone(),
                v2,
            })
            .find(|c| {
                c.dir
                    .join(c.pick("memory.max", "memory.limit_in_bytes"))
                    .exists()
            })
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file's name for this cgroup's interface.
    fn pick<'a>(&self, v2: &'a str, v1: &'a str) -> &'a str {
        if self.v2 { v2 } else { v1 }
    }

    fn text(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name)).ok()
    }

    fn number(&self, name: &str) -> Option<u64> {
        self.text(name)?.trim().parse().ok()
    }

    /// The limit in bytes; `None` for "max" (v2) or v1's "no limit".
    pub fn limit(&self) -> Option<u64> {
        parse_limit(
            self.text(self.pick("memory.max", "memory.limit_in_bytes"))?
                .trim(),
        )
    }

    /// What the cgroup uses now, page cache included.
    pub fn usage(&self) -> Option<u64> {
        self.number(self.pick("memory.current", "memory.usage_in_bytes"))
    }

    /// Inactive page cache, which the kernel reclaims before it OOM-kills anyone.
    pub fn reclaimable(&self) -> u64 {
        let stat = self.text("memory.stat").unwrap_or_default();
        keyed(&stat, self.pick("inactive_file", "total_inactive_file")).unwrap_or(0)
    }

    /// The highest use the kernel recorded (v2 `memory.peak`, v1
    /// `memory.max_usage_in_bytes`); `None` where the kernel does not keep it.
    pub fn peak(&self) -> Option<u64> {
        self.number(self.pick("memory.peak", "memory.max_usage_in_bytes"))
    }

    /// How many times use reached the limit (v2 `memory.events` `max`, v1
    /// `memory.failcnt`).
    pub fn limit_hits(&self) -> Option<u64> {
        if self.v2 {
            keyed(&self.text("memory.events")?, "max")
        } else {
            self.number("memory.failcnt")
        }
    }

    /// How many processes the OOM killer took in it (`oom_kill` of v2 `memory.events`,
    /// v1 `memory.oom_control`).
    pub fn oom_kills(&self) -> Option<u64> {
        keyed(
            &self.text(self.pick("memory.events", "memory.oom_control"))?,
            "oom_kill",
        )
    }
}

/// `(v2 path, v1 memory path)` from `/proc/self/cgroup`.
fn paths(text: &str) -> (Option<String>, Option<String>) {
    let mut v2 = None;
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    (v2, v1)
}

/// A limit file's value; "max" and v1's "no limit" (close to `i64::MAX`) are `None`.
fn parse_limit(text: &str) -> Option<u64> {
    let n: u64 = text.parse().ok()?;
    // v1 reports "unlimited" as PAGE_COUNTER_MAX pages, about 2^63.
    (n < (1 << 62)).then_some(n)
}

/// The value of `key` in a `key value` per line file (`memory.stat`, `memory.events`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        for (text, expected) in [
            (
                "0::/user.slice/x.scope\n",
                (Some("/user.slice/x.scope"), None),
            ),
            (
                "9:name=systemd:/\n4:memory:/process_api/abc\n0::/\n",
                (Some("/"), Some("/process_api/abc")),
            ),
            ("3:cpu,memory:/a\n", (None, Some("/a"))),
            ("", (None, None)),
        ] {
            let (v2, v1) = paths(text);
            assert_eq!((v2.as_deref(), v1.as_deref()), expected, "{text:?}");
        }
        for (text, expected) in [
            ("max", None),
            ("9223372036854771712", None),
            ("2147483648", Some(2 << 30)),
            ("junk", None),
        ] {
            assert_eq!(parse_limit(text), expected, "{text}");
        }
        for (text, key, expected) in [
            (
                "anon 5\ninactive_file 300\nactive_file 2\n",
                "inactive_file",
                Some(300),
            ),
            ("low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n", "max", Some(7)),
            (
                "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
                "oom_kill",
                Some(3),
            ),
            ("oom_kill_disable 0\n", "oom_kill", None),
        ] {
            assert_eq!(keyed(text, key), expected, "{key} in {text:?}");
        }
    }

    /// Whatever cgroup this test runs in, the readers agree with each other.
    #[test]
    fn own_cgroup_reads_consistently() {
        let Some(c) = MemoryCgroup::own() else {
            return;
        };
        if let (Some(limit), Some(peak)) = (c.limit(), c.peak()) {
            assert!(peak <= limit + (1 << 20), "peak {peak} above limit {limit}");
        }
        if let Some(usage) = c.usage() {
            assert!(
                usage > 0,
                "{}: a cgroup holding this test uses memory",
                c.dir.display()
            );
        }
    }
}
