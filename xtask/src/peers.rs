//! `cargo xtask bench`'s peer rows: the same workload (the demo workflow's step 1,
//! N accounts × Q iterations, against the bench's demo app) run by other tools, so
//! that batch-cli is compared with them in the same run rather than with old figures.
//!
//! - `puppeteer-cluster` — `xtask/peers/puppeteer_cluster.mjs`: puppeteer-cluster with
//!   `Cluster.CONCURRENCY_BROWSER` and N workers (one browser per worker), one job
//!   per account, on puppeteer-core (npm, installed into `target/node-peers` when
//!   missing, by [`crate::deps::npm_install`]);
//! - `selenium-phase1` — `xtask/peers/selenium_phase1.py`: the old Python tool's Phase 1
//!   replica, one thread per account, `webdriver.Chrome` (Debian's ChromeDriver) created
//!   under one global lock with 2.5 s inside it, explicit waits; on the Selenium that
//!   `cargo xtask deps` installs into `target/py-venv`.
//!
//! Both drive Debian's full Chromium (never a downloaded browser), headless, with
//! `--disable-background-networking --disable-component-update --disable-sync
//! --no-first-run` (and `--no-sandbox` as root), each browser with its own profile in
//! a temporary directory. A script prints one `peer-summary {json}` line — iterations
//! done and failed, when its last browser became ready (epoch ms), its own peak RSS
//! (`VmHWM`) — and exits 1 when anything failed. The bench samples its browsers' PSS
//! (see [`sample_pss`]) and counts its tree's CPU (see [`run`]). It runs in its own process group;
//! afterwards that group and every process still naming the temporary directory
//! (Puppeteer starts its browsers in groups of their own) are killed, so nothing is
//! left behind even when the script fails; what had to be killed is reported, since
//! its CPU time is then missing from the bench's CPU column.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};

/// The peer rows' names, in table order.
pub(crate) const PEERS: [&str; 2] = ["puppeteer-cluster", "selenium-phase1"];

/// How long a peer may take before it is killed and the bench fails.
const DEADLINE: Duration = Duration::from_secs(600);

/// What one peer run reported, plus its wall time as the bench saw it.
pub(crate) struct PeerRun {
    /// Seconds from spawning the script until it exited (and was reaped).
    pub(crate) total: f64,
    /// CPU-seconds of the script's whole process tree, orphans included.
    pub(crate) cpu: f64,
    /// Seconds from spawning it until its last browser was ready (NaN if none was).
    pub(crate) ready: f64,
    /// The script's own peak RSS (node / python `VmHWM`), MiB.
    pub(crate) rss_mib: f64,
    /// The browsers' highest sampled PSS, MiB (see [`sample_pss`]).
    pub(crate) pss_mib: f64,
    pub(crate) failed: u64,
    pub(crate) code: Option<i32>,
}

/// Installs what the selected peers need, when missing.
pub(crate) fn prepare(names: &[&str]) -> anyhow::Result<()> {
    if names.contains(&"puppeteer-cluster") {
        // `--legacy-peer-deps`: puppeteer-cluster declares `puppeteer` (which downloads
        // a browser) as a peer; the script hands it puppeteer-core instead.
        crate::deps::npm_install(
            &peers_dir().join("package.json"),
            &node_dir(),
            "puppeteer-cluster",
            &["--legacy-peer-deps"],
        )?;
    }
    if names.contains(&"selenium-phase1") {
        crate::deps::python_selenium()?;
    }
    Ok(())
}

fn peers_dir() -> PathBuf {
    crate::util::root().join("xtask").join("peers")
}

fn node_dir() -> PathBuf {
    crate::util::root().join("target").join("node-peers")
}

/// Runs peer `name` on N accounts × Q iterations against `base_url`.
///
/// CPU: the bench's waited-for children's times (`cutime + cstime`) around the run,
/// as for batch-cli's rows. Node and Python reap their browsers, but not the
/// browsers' own orphans: Chromium's zygotes outlive the browser process by a moment
/// and are re-parented, taking their renderers' CPU time with them (measured: about a
/// third of the tree's CPU lost). batch-cli is a child subreaper and reaps them
/// itself; for a peer the bench is that subreaper (`launcher::become_subreaper`,
/// `launcher::reap_adopted`) and waits, after the script has exited, until its
/// orphans are gone and reaped.
pub(crate) fn run(name: &str, n: u32, q: u32, base_url: &str) -> anyhow::Result<PeerRun> {
    let chromium = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("Debian's chromium is not installed")?;
    let dir = tempfile::Builder::new()
        .prefix("batch-bench-peer-")
        .tempdir()?;
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles)?;
    let mut cmd = match name {
        "puppeteer-cluster" => {
            // Node resolves packages from the script's directory.
            let script = dir.path().join("puppeteer_cluster.mjs");
            std::fs::copy(peers_dir().join("puppeteer_cluster.mjs"), &script)?;
            std::os::unix::fs::symlink(
                node_dir().join("node_modules"),
                dir.path().join("node_modules"),
            )?;
            let mut c = Command::new("node");
            c.arg(script);
            c
        }
        "selenium-phase1" => {
            let mut c = Command::new(crate::deps::py_venv().join("bin").join("python"));
            c.arg(peers_dir().join("selenium_phase1.py"));
            c
        }
        _ => bail!("no peer {name:?}"),
    };
    cmd.arg(base_url)
        .args([n.to_string(), q.to_string()])
        .arg(&profiles)
        .arg(&chromium);
    if name == "selenium-phase1" {
        cmd.arg("/usr/bin/chromedriver").env("SE_OFFLINE", "true");
    }
    // What the peer's Chromes leave in their temp dir (socket dirs, profiles of a
    // driver's own) goes with this one, not into /tmp.
    cmd.env("TMPDIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);

    launcher::become_subreaper().context("becoming a child subreaper")?;
    launcher::reap_adopted();
    let cpu0 = crate::bench::children_cpu_seconds();
    let spawned_at = SystemTime::now();
    let t = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    let leftovers = Leftovers {
        pgid: child.id(),
        marker: dir.path().to_path_buf(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let pss = sample_pss(child.id(), stop.clone());
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if t.elapsed() > DEADLINE {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let total = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let pss_bytes = pss.join().unwrap_or(0);
    if status.is_none() {
        leftovers.kill();
        let _ = child.wait();
    }
    // The script's orphans, re-parented to us, finish exiting: reap them (and so
    // count their CPU) before reading it. Whatever is still running then is killed.
    let settle = Instant::now() + Duration::from_secs(10);
    while !adopted_alive().is_empty() && Instant::now() < settle {
        launcher::reap_adopted();
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = leftovers.kill();
    std::thread::sleep(Duration::from_millis(100));
    launcher::reap_adopted();
    let cpu = crate::bench::children_cpu_seconds() - cpu0;
    let (stdout, stderr) = (join(out), join(err));
    if killed > 0 {
        eprintln!(
            "{name}: killed {killed} process(es) it left behind (their CPU time is missing from the CPU column)"
        );
    }
    let Some(status) = status else {
        bail!(
            "{name}: still running after {} s, killed; stderr:\n{}",
            DEADLINE.as_secs(),
            tail(&stderr)
        );
    };
    let summary: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peer-summary "))
        .and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| {
            format!(
                "{name} ({status}) printed no peer-summary line; stderr:\n{}",
                tail(&stderr)
            )
        })?;
    if !status.success() {
        eprintln!("{name} failed ({status}); stderr:\n{}", tail(&stderr));
    }
    let spawned_ms = spawned_at
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs_f64()
        * 1000.0;
    Ok(PeerRun {
        total,
        cpu,
        ready: summary["last_ready_ms"]
            .as_f64()
            .map_or(f64::NAN, |r| (r - spawned_ms) / 1000.0),
        rss_mib: summary["vmhwm_kib"]
            .as_f64()
            .map_or(f64::NAN, |k| k / 1024.0),
        pss_mib: pss_bytes as f64 / 1048576.0,
        failed: summary["iterations_failed"].as_u64().unwrap_or(u64::MAX),
        code: status.code(),
    })
}

/// The peak, over 1 s samples while the script runs, of the PSS of its children's
/// process trees — its browsers (Puppeteer) or its ChromeDrivers with their browsers
/// (Selenium), as batch-cli's `browsers_pss_bytes` counts a driver's tree — read with
/// batch-cli's own [`launcher::PssCache`]. The sampler's cost is the bench's, not
/// the peer's (batch-cli's own sampler is charged to batch-cli).
fn sample_pss(script: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut cache = launcher::PssCache::default();
        let mut peak = 0;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                let roots = children_of(script);
                let total: u64 = cache.trees_pss_bytes(&roots).into_iter().flatten().sum();
                peak = peak.max(total);
                next += Duration::from_secs(1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    })
}

/// Live children of `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let parent = parent.to_string();
    pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                let rest = s.rfind(')').and_then(|i| s.get(i + 2..)).unwrap_or("");
                let mut f = rest.split_whitespace();
                f.next() != Some("Z") && f.next() == Some(parent.as_str())
            })
        })
        .collect()
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}

fn join(h: std::thread::JoinHandle<String>) -> String {
    h.join().unwrap_or_default()
}

/// The last lines of a script's stderr, for a failure message.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The peer's process group and whatever still names its temporary directory.
struct Leftovers {
    pgid: u32,
    marker: PathBuf,
}

impl Leftovers {
    /// SIGKILLs the script's group, then every process whose command line names the
    /// temporary directory, with its group (a browser's helpers share its group but
    /// not always its profile switch). Returns how many live processes it found.
    fn kill(&self) -> usize {
        let me = std::process::id();
        let own = process_group(me);
        let marker = self.marker.as_os_str().as_encoded_bytes();
        let mut groups = BTreeSet::from([self.pgid]);
        let mut loose = BTreeSet::new();
        for pid in pids() {
            let named = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker));
            if !named || pid == me {
                continue;
            }
            match process_group(pid) {
                Some(g) if Some(g) != own && g != 0 => groups.insert(g),
                _ => loose.insert(pid),
            };
        }
        let alive: BTreeSet<u32> = groups
            .iter()
            .flat_map(|&g| members(g))
            .chain(loose.iter().copied())
            .collect();
        for &g in &groups {
            // `kill -9 -PGID`; quietly nothing when the group is gone.
            let _ = Command::new("kill")
                .args(["-9", "--", &format!("-{g}")])
                .stderr(Stdio::null())
                .status();
        }
        for &p in &loose {
            let _ = Command::new("kill")
                .args(["-9", &p.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        alive.len()
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        // Also on an early return: `kill` is idempotent.
        self.kill();
    }
}

/// Our children that are still running (after the script exited: its orphans).
fn adopted_alive() -> Vec<u32> {
    children_of(std::process::id())
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The process group of `pid` (field 5 of `/proc/PID/stat`).
fn process_group(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.get(s.rfind(')')? + 2..)?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Live processes (not zombies) in group `pgid`.
fn members(pgid: u32) -> Vec<u32> {
    pids()
        .into_iter()
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                let rest = s.rfind(')').and_then(|i| s.get(i + 2..)).unwrap_or("");
                let mut f = rest.split_whitespace();
                let state = f.next();
                let group = f.nth(1).and_then(|g| g.parse::<u32>().ok());
                state != Some("Z") && group == Some(pgid)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_group_is_read_from_proc() {
        // This test process is in some group, and is a live member of it.
        let g = process_group(std::process::id()).expect("own stat");
        assert!(members(g).contains(&std::process::id()));
    }

    #[test]
    fn the_scripts_are_where_the_runner_looks() {
        for f in [
            "package.json",
            "puppeteer_cluster.mjs",
            "selenium_phase1.py",
        ] {
            assert!(peers_dir().join(f).exists(), "{f}");
        }
    }

    #[test]
    fn a_peer_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("sleep 30 & sleep 30");
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let l = Leftovers {
            pgid: child.id(),
            marker: dir.path().to_path_buf(),
        };
        assert!(
            l.kill() >= 2,
            "the shell (unless it exec'd) and its two sleeps were alive"
        );
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(200));
        assert!(members(child.id()).is_empty());
    }

    /// Both peers on 2 accounts × 2 against an in-process demo app: every iteration
    /// done, counted by the app, CPU counted, nothing left running. Needs Chromium,
    /// ChromeDriver and the peers' packages (`cargo xtask bench` installs them).
    #[test]
    #[ignore = "real Chromium; run with --run-ignored only"]
    fn both_peers_do_the_workload_and_leave_nothing() {
        prepare(&PEERS).unwrap();
        let (_rt, site) = crate::util::start_demo().unwrap();
        let adds = || -> u64 {
            site.counts()
                .users
                .values()
                .map(|u| u.items.values().sum::<u64>())
                .sum()
        };
        for name in PEERS {
            let before = adds();
            let run = run(name, 2, 2, &site.base_url()).unwrap();
            assert_eq!((run.failed, run.code), (0, Some(0)), "{name}");
            assert_eq!(adds() - before, 4, "{name}");
            assert!(
                run.ready > 0.0 && run.ready < run.total,
                "{name}: {}",
                run.ready
            );
            assert!(
                run.cpu > 0.5 && run.rss_mib > 5.0,
                "{name}: {} {}",
                run.cpu,
                run.rss_mib
            );
            assert!(run.pss_mib > 50.0, "{name}: {}", run.pss_mib);
            assert!(adopted_alive().is_empty(), "{name}");
            eprintln!(
                "{name}: ready {:.2} s, total {:.2} s, CPU {:.2} s, RSS {:.1} MiB, PSS {:.0} MiB",
                run.ready, run.total, run.cpu, run.rss_mib, run.pss_mib
            );
        }
    }

    /// A peer whose every page load fails (nothing listens on the port) reports every
    /// iteration failed, exits 1, and leaves nothing running.
    #[test]
    #[ignore = "real Chromium; run with --run-ignored only"]
    fn a_failing_peer_says_so_and_leaves_nothing() {
        prepare(&PEERS).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for name in PEERS {
            let run = run(name, 2, 3, &format!("http://127.0.0.1:{port}")).unwrap();
            assert_eq!((run.failed, run.code), (6, Some(1)), "{name}");
            assert!(adopted_alive().is_empty(), "{name}");
        }
    }
}
