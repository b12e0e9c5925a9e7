//! `cargo xtask bench`: the launch and pacing configurations side by side in one run,
//! printed as a table and as ratios (this machine is noisy: absolute times mean
//! little, ratios measured together do).
//!
//! Two workloads of the demo workflow (login in `before`, add-to-cart iterations),
//! N accounts × Q iterations: 10 × 5 and 5 × 10. Per workload, each configuration:
//! - `defaults` — no flags: `--launch-interval auto`, the creation lock on, and the
//!   default browser (`chromium-headless-shell` when installed);
//! - `phase1` — the old tool as its users had it: the full Chromium, the creation lock
//!   and 2.5 s inside it (the reference of the `/phase1` ratios);
//! - `full-chromium` — the defaults on the full Chromium (`headless_shell = false`);
//! - `phase1-shell` — Phase 1's pacing on the default browser;
//! - `interval-0` — creation lock, no pause (one creation at a time);
//! - `no-lock` — creations overlap freely (`--no-launch-lock --launch-interval 0`);
//! - `puppeteer-cluster` — the peer of the old measurement, in this run: a Node script
//!   (`xtask/peers/puppeteer_cluster.mjs`) with puppeteer-cluster,
//!   `Cluster.CONCURRENCY_BROWSER` and N workers (one browser per worker), one job per
//!   account, on puppeteer-core and the full Chromium;
//! - `selenium-phase1` — the old Python tool's Phase 1 replica
//!   (`xtask/peers/selenium_phase1.py`): a thread per account, `webdriver.Chrome`
//!   (ChromeDriver, full Chromium) created under one global lock with 2.5 s inside
//!   it, explicit waits;
//! - `floor` / `floor-shell` — N bare browsers (full Chromium / headless shell) at
//!   once, until each wrote `DevToolsActivePort` (the same switches batch-cli gives
//!   Chromium, no WebDriver); `ready/floor` is against the full Chromium's, `ready/shell`
//!   against the headless shell's (the default build's own floor).
//!
//! Per configuration: all browsers ready (run start → last `browser_created`), total
//! wall time, the CPU-seconds of batch-cli's whole process tree (its drivers, browsers
//! and their helpers: batch-cli reaps them all, so the kernel's waited-for-children
//! times cover them — measured equal to a cpuacct cgroup around the run within 0.2 %),
//! the runner's own peak RSS (`VmHWM`, from `run_finished`), the browsers'
//! peak PSS (sampled every second: a lower bound), failed iterations, and whether the
//! demo app counted exactly N × Q adds.
//!
//! The peers (`crate::peers`) are measured the same way where it applies: the same
//! workload against the same demo app, with the same account names; ready = the
//! script's start (its spawn, interpreter start-up included) → its last browser ready
//! (Puppeteer: a job's page open; Selenium: `webdriver.Chrome` returned), as the
//! script prints it; CPU = the same waited-for-children times, with the bench as
//! child subreaper so that the browsers' orphaned helpers are reaped and counted too;
//! RSS = node's / python's own `VmHWM`, printed by the script; PSS = the script's
//! children's trees, sampled by the bench every second with batch-cli's
//! `launcher::PssCache`; failed iterations as the script reports them; exact as for
//! batch-cli. Their npm packages are installed into `target/node-peers` and Selenium
//! into `target/py-venv` when missing. `--rounds R` repeats everything, interleaved,
//! and reports medians. `--only defaults,phase1,puppeteer-cluster` and `--workload 10x5`
//! run a subset (for experiments; a ratio whose reference row is left out prints NaN).
//!
//! `cargo xtask bench proxy [--rounds R]`: the proxy forwarder's latency and CPU per
//! request against a direct proxy (`crates/forwarder/examples/bench.rs`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::peers::PEERS;
use crate::scratch::{Outcome, Scratch};
use crate::util::{build_cli, flag};

/// The configurations: name, flags, and whether the run takes the full Chromium
/// (`[browser] headless_shell = false`) instead of the default headless shell.
/// `phase1` is the old tool as its users had it: the full browser, the creation lock
/// and 2.5 s inside it; `phase1-shell` is the same pacing on the default browser, to
/// separate what the pacing gives from what the browser build gives.
const CONFIGS: &[(&str, &[&str], bool)] = &[
    ("defaults", &["--concurrent"], false),
    (
        "phase1",
        &["--concurrent", "--launch-interval", "2.5s"],
        true,
    ),
    ("full-chromium", &["--concurrent"], true),
    (
        "phase1-shell",
        &["--concurrent", "--launch-interval", "2.5s"],
        false,
    ),
    (
        "interval-0",
        &["--concurrent", "--launch-interval", "0"],
        false,
    ),
    (
        "no-lock",
        &["--concurrent", "--no-launch-lock", "--launch-interval", "0"],
        false,
    ),
];

/// What the full-Chromium rows add to the scratch project's `batch.toml`.
const FULL_CHROMIUM: &str = "\n[browser]\nheadless_shell = false\n";

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    ready: f64,
    total: f64,
    cpu: f64,
    rss_mib: f64,
    pss_mib: f64,
    failed: u64,
    exact: bool,
}

pub(crate) fn bench(args: &[String]) -> anyhow::Result<()> {
    if args.first().map(String::as_str) == Some("proxy") {
        // The forwarder's overhead against a direct proxy, in-process (no browser):
        // crates/forwarder/examples/bench.rs.
        let rounds: u32 = flag(args, "--rounds", 5)?;
        let rounds = rounds.to_string();
        let cargo = crate::util::cargo();
        return crate::util::sh(
            &cargo,
            &[
                "run",
                "--quiet",
                "--release",
                "-p",
                "forwarder",
                "--features",
                "testing",
                "--example",
                "bench",
                "--",
                "--rounds",
                &rounds,
            ],
        );
    }
    crate::deps::ensure_browser()?;
    let rounds: u32 = flag(args, "--rounds", 1)?;
    let only = Only::parse(args)?;
    let peers: Vec<&str> = PEERS.into_iter().filter(|p| only.takes(p)).collect();
    crate::peers::prepare(&peers)?;
    let scratch = Scratch::new(build_cli(true)?, 10)?;
    let workloads: Vec<(u32, u32)> = [(10u32, 5u32), (5, 10)]
        .into_iter()
        .filter(|w| only.workload.is_none_or(|o| o == *w))
        .collect();
    // results[workload][row] = figures per round: the configurations, the peers, the
    // two floors (see `Row`).
    let mut results: Vec<Vec<Vec<Figures>>> = vec![vec![Vec::new(); ROWS]; 2];
    for round in 1..=rounds {
        for (w, &(n, q)) in workloads.iter().enumerate() {
            for (c, (name, flags, full)) in CONFIGS.iter().enumerate() {
                if !only.takes(name) {
                    continue;
                }
                let before = scratch.adds();
                let t = Instant::now();
                let cpu0 = children_cpu_seconds();
                let out = if *full {
                    scratch.run_variant(FULL_CHROMIUM, n, q, flags)?
                } else {
                    scratch.run_with(n, q, flags)?
                };
                let total = t.elapsed().as_secs_f64();
                let cpu = children_cpu_seconds() - cpu0;
                if out.code.is_none() {
                    bail!("{name}: batch-cli was killed: {}", out.stderr);
                }
                let f = Figures {
                    cpu,
                    ..figures(&out, total, scratch.adds() - before == u64::from(n * q))
                };
                eprintln!(
                    "round {round}, {n}×{q}, {name}: ready {:.1} s, total {:.1} s, CPU {:.1} s, exit {:?}",
                    f.ready, f.total, f.cpu, out.code
                );
                results[w][c].push(f);
            }
            for (k, name) in PEERS.iter().enumerate() {
                if !only.takes(name) {
                    continue;
                }
                let before = scratch.adds();
                let run = crate::peers::run(name, n, q, &scratch.base_url())?;
                let f = Figures {
                    ready: run.ready,
                    total: run.total,
                    cpu: run.cpu,
                    rss_mib: run.rss_mib,
                    pss_mib: run.pss_mib,
                    failed: run.failed,
                    exact: scratch.adds() - before == u64::from(n * q),
                };
                eprintln!(
                    "round {round}, {n}×{q}, {name}: ready {:.1} s, total {:.1} s, CPU {:.1} s, exit {:?}",
                    f.ready, f.total, f.cpu, run.code
                );
                results[w][Row::Peer(k).index()].push(f);
            }
            for (k, shell) in [(0, false), (1, true)] {
                if !only.takes(FLOORS[k]) {
                    continue;
                }
                let ready = floor(n, shell)?;
                eprintln!("round {round}, {n}×{q}, {}: {ready:.2} s", FLOORS[k]);
                results[w][Row::Floor(k).index()].push(Figures {
                    ready,
                    cpu: f64::NAN,
                    exact: true,
                    ..Figures::default()
                });
            }
        }
    }
    for (w, &(n, q)) in workloads.iter().enumerate() {
        print_table(n, q, rounds, &results[w]);
    }
    Ok(())
}

fn figures(out: &Outcome, total: f64, exact: bool) -> Figures {
    let ts = |e: &serde_json::Value| {
        time::OffsetDateTime::parse(
            e["ts"].as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )
        .ok()
    };
    let start = out.events.first().and_then(ts);
    let ready = out
        .named("browser_created")
        .iter()
        .filter_map(|e| ts(e))
        .max();
    let finished = out.named("run_finished");
    let finished = finished.first();
    Figures {
        ready: match (start, ready) {
            (Some(s), Some(r)) => (r - s).as_seconds_f64(),
            _ => f64::NAN,
        },
        total,
        cpu: f64::NAN,
        rss_mib: finished
            .and_then(|e| e["runner_peak_rss_bytes"].as_u64())
            .map_or(f64::NAN, |b| b as f64 / 1048576.0),
        pss_mib: out
            .named("memory_sample")
            .iter()
            .filter_map(|e| e["browsers_pss_bytes"].as_u64())
            .max()
            .map_or(0.0, |b| b as f64 / 1048576.0),
        failed: finished
            .and_then(|e| e["iterations_failed"].as_u64())
            .unwrap_or(u64::MAX),
        exact,
    }
}

/// A row of the table: the configurations, then the peers, then the floors.
#[derive(Clone, Copy)]
enum Row {
    Config(usize),
    Peer(usize),
    Floor(usize),
}

impl Row {
    fn index(self) -> usize {
        match self {
            Row::Config(c) => c,
            Row::Peer(k) => CONFIGS.len() + k,
            Row::Floor(k) => CONFIGS.len() + PEERS.len() + k,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Row::Config(c) => CONFIGS[c].0,
            Row::Peer(k) => PEERS[k],
            Row::Floor(k) => FLOORS[k],
        }
    }
}

const ROWS: usize = CONFIGS.len() + PEERS.len() + FLOORS.len();

/// CPU-seconds (user + system) of this process's children that have been waited for,
/// with their own waited-for descendants: `cutime + cstime` of `/proc/self/stat`.
pub(crate) fn children_cpu_seconds() -> f64 {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.get(s.rfind(')')? + 2..)?.to_string();
            let f: Vec<u64> = rest
                .split_whitespace()
                .skip(13)
                .take(2)
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() == 2).then(|| f[0] + f[1])
        });
    // /proc reports in USER_HZ, which Linux fixes at 100 for user space.
    ticks.map_or(f64::NAN, |t| t as f64 / 100.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// `a / b` as a ratio column, or "—" when a row it needs was not run (`--only`).
fn ratio(a: f64, b: f64) -> String {
    let r = a / b;
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "—".to_string()
    }
}

fn print_table(n: u32, q: u32, rounds: u32, rows: &[Vec<Figures>]) {
    let med = |r: Row, f: fn(&Figures) -> f64| median(rows[r.index()].iter().map(f).collect());
    let floor = med(Row::Floor(0), |f| f.ready);
    let shell_floor = med(Row::Floor(1), |f| f.ready);
    let phase1_total = med(Row::Config(1), |f| f.total);
    let phase1_cpu = med(Row::Config(1), |f| f.cpu);
    println!(
        "\n{n} accounts × {q} iterations (medians of {rounds} round(s), all in this one run):"
    );
    println!(
        "{:<17} {:>9} {:>9} {:>12} {:>12} {:>13} {:>7} {:>11} {:>10} {:>12} {:>7} {:>6}",
        "config",
        "ready s",
        "total s",
        "ready/floor",
        "ready/shell",
        "total/phase1",
        "CPU s",
        "CPU/phase1",
        "RSS MiB",
        "peak PSS MiB",
        "failed",
        "exact"
    );
    let runs = (0..CONFIGS.len())
        .map(Row::Config)
        .chain((0..PEERS.len()).map(Row::Peer));
    for r in runs {
        if rows[r.index()].is_empty() {
            continue;
        }
        let failed: u64 = rows[r.index()].iter().map(|f| f.failed).sum();
        let exact = rows[r.index()].iter().all(|f| f.exact);
        let (ready, total) = (med(r, |f| f.ready), med(r, |f| f.total));
        let cpu = med(r, |f| f.cpu);
        let pss = med(r, |f| f.pss_mib);
        let pss = if pss.is_nan() {
            "—".to_string()
        } else {
            format!("{pss:.0}")
        };
        println!(
            "{:<17} {ready:>9.2} {total:>9.2} {:>12} {:>12} {:>13} {cpu:>7.1} {:>11} {:>10.1} {pss:>12} {failed:>7} {:>6}",
            r.name(),
            ratio(ready, floor),
            ratio(ready, shell_floor),
            ratio(total, phase1_total),
            ratio(cpu, phase1_cpu),
            med(r, |f| f.rss_mib),
            if exact { "yes" } else { "NO" },
        );
    }
    for r in (0..FLOORS.len()).map(Row::Floor) {
        if rows[r.index()].is_empty() {
            continue;
        }
        let ready = med(r, |f| f.ready);
        println!(
            "{:<17} {ready:>9.2} {:>9} {:>12} {:>12}",
            r.name(),
            "—",
            ratio(ready, floor),
            ratio(ready, shell_floor),
        );
    }
    let at = |name: &str| Row::Config(CONFIGS.iter().position(|c| c.0 == name).expect("a config"));
    let (defaults, full) = (at("defaults"), at("full-chromium"));
    println!(
        "the browser build alone: defaults/full-chromium CPU {}, total {}; \
         the pacing alone: defaults/phase1-shell total {}",
        ratio(med(defaults, |f| f.cpu), med(full, |f| f.cpu)),
        ratio(med(defaults, |f| f.total), med(full, |f| f.total)),
        ratio(
            med(defaults, |f| f.total),
            med(at("phase1-shell"), |f| f.total)
        ),
    );
}

/// `--only NAME,NAME` (configurations, peers and floors) and `--workload NxQ`: a subset of
/// the table, for experiments. A ratio whose reference row was left out prints NaN.
struct Only {
    names: Option<Vec<String>>,
    workload: Option<(u32, u32)>,
}

impl Only {
    fn parse(args: &[String]) -> anyhow::Result<Only> {
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .map(|i| {
                    args.get(i + 1)
                        .with_context(|| format!("{name} needs a value"))
                })
                .transpose()
        };
        let known: Vec<&str> = CONFIGS
            .iter()
            .map(|c| c.0)
            .chain(PEERS)
            .chain(FLOORS)
            .collect();
        let names = match value("--only")? {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(|n| {
                        if known.contains(&n) {
                            Ok(n.to_string())
                        } else {
                            bail!("--only {n:?}: expected some of {}", known.join(", "))
                        }
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
            ),
        };
        let workload = match value("--workload")? {
            None => None,
            Some(w) => match w.split_once('x').map(|(n, q)| (n.parse(), q.parse())) {
                Some((Ok(n @ (5 | 10)), Ok(q))) if n * q == 50 => Some((n, q)),
                _ => bail!("--workload {w:?}: expected 10x5 or 5x10"),
            },
        };
        Ok(Only { names, workload })
    }

    fn takes(&self, name: &str) -> bool {
        self.names
            .as_ref()
            .is_none_or(|n| n.iter().any(|x| x == name))
    }
}

/// The floors: N bare browsers of each build at once.
const FLOORS: [&str; 2] = ["floor", "floor-shell"];

/// N bare Chromium processes started at once; seconds until every one has written
/// `DevToolsActivePort` into its fresh profile. Each runs in its own process group,
/// killed (and its profile removed) before returning.
fn floor(n: u32, shell: bool) -> anyhow::Result<f64> {
    let candidates: &[&str] = if shell {
        &["/usr/lib/chromium/chromium-headless-shell"]
    } else {
        &["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
    };
    let chromium = candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .with_context(|| format!("none of {candidates:?} is installed"))?;
    let root = tempfile::Builder::new()
        .prefix("batch-bench-floor-")
        .tempdir()?;
    let dirs: Vec<PathBuf> = (0..n).map(|i| root.path().join(format!("p{i}"))).collect();
    let mut group = Group(Vec::new());
    let t = Instant::now();
    for d in &dirs {
        let mut cmd = Command::new(&chromium);
        // Killed at the end: its socket dir goes with `root`, not into /tmp.
        cmd.args(floor_switches(d))
            .env("TMPDIR", root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        group.0.push(cmd.spawn().context("starting chromium")?);
    }
    let deadline = t + Duration::from_secs(60);
    for d in &dirs {
        while !std::fs::read_to_string(d.join("DevToolsActivePort"))
            .is_ok_and(|s| s.lines().nth(1).is_some_and(|l| !l.is_empty()))
        {
            if Instant::now() > deadline {
                bail!(
                    "chromium did not write {}/DevToolsActivePort in 60 s",
                    d.display()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let ready = t.elapsed().as_secs_f64();
    drop(group);
    Ok(ready)
}

/// The switches batch-cli's launcher gives Chromium (crates/launcher/src/browser.rs),
/// minus WebDriver, plus the kernel-chosen DevTools port.
fn floor_switches(profile: &Path) -> Vec<String> {
    let mut v: Vec<String> = [
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-breakpad",
        "--window-size=1280,800",
        "--headless=new",
        "--remote-debugging-port=0",
    ]
    .map(String::from)
    .to_vec();
    if crate::deps::is_root() {
        v.push("--no-sandbox".into());
    }
    v.push(format!("--user-data-dir={}", profile.display()));
    v.push("about:blank".into());
    v
}

/// Kills each child's whole process group (Chromium's helpers too) and reaps it.
struct Group(Vec<Child>);

impl Drop for Group {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SIGKILL to the group: `kill -9 -PGID`.
            let _ = Command::new("kill")
                .args(["-9", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.wait();
        }
        // Give the helpers a moment to die before the profiles are removed.
        std::thread::sleep(Duration::from_millis(300));
    }
}
