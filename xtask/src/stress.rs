//! `cargo xtask stress`: the long collision test. Many browsers launched at once
//! (`--no-launch-lock --launch-interval 0`), many rounds; every round must succeed
//! and no two live browsers may share a DevTools port, driver port or profile.
//!
//! `cargo xtask stress --many N [--hold SECS]`: scale without a cap. N accounts at
//! once with the defaults (adaptive pacing, memory admission), each logging in,
//! adding an item and holding its browser for SECS; every account must finish, and
//! the memory samples show how many browsers were up at once and how low available
//! memory went against the reserve. It fails if an account is not ok, the app's count
//! is off, a browser crashed, available memory went below the reserve or — inside a
//! memory cgroup — anything was OOM-killed during the run.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::bail;

use fsutil::cgroup::MemoryCgroup;

use crate::scratch::Scratch;
use crate::util::{build_cli, flag};

pub(crate) fn stress(args: &[String]) -> anyhow::Result<()> {
    crate::deps::ensure_browser()?;
    let many: u32 = flag(args, "--many", 0)?;
    if many > 0 {
        return stress_many(many, flag(args, "--hold", 10)?);
    }
    let accounts: u32 = flag(args, "--accounts", 20)?;
    let rounds: u32 = flag(args, "--rounds", 50)?;
    let scratch = Scratch::new(build_cli(false)?, accounts)?;
    let mut launch_ms = Vec::new();
    let started = Instant::now();
    let mut failures = 0;
    for round in 1..=rounds {
        let out = scratch.run(&["--concurrent", "--no-launch-lock", "--launch-interval", "0"])?;
        let created = out.named("browser_created");
        let distinct = |key: &str| {
            created
                .iter()
                .map(|e| e[key].to_string())
                .collect::<HashSet<_>>()
                .len()
        };
        let ok = out.code == Some(0)
            && created.len() == accounts as usize
            && distinct("port") == created.len()
            && distinct("driver_port") == created.len()
            && distinct("profile") == created.len();
        launch_ms.extend(created.iter().filter_map(|e| e["launch_ms"].as_u64()));
        if ok {
            eprintln!(
                "round {round}/{rounds}: {accounts} browsers, all ports and profiles distinct"
            );
        } else {
            failures += 1;
            eprintln!(
                "round {round}: FAILED (exit {:?}, {} browsers): {}",
                out.code,
                created.len(),
                out.stderr.trim()
            );
        }
    }
    launch_ms.sort_unstable();
    let pct = |p: usize| {
        launch_ms
            .get(launch_ms.len() * p / 100)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "stress: {rounds} rounds × {accounts} browsers at once: {failures} failed rounds, {} launches, \
         launch time median {} ms, p95 {} ms, max {} ms; total {:.0} s",
        launch_ms.len(),
        pct(50),
        pct(95),
        launch_ms.last().copied().unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    if failures > 0 {
        bail!("{failures} of {rounds} rounds failed");
    }
    Ok(())
}

/// See the module docs: N accounts at once, each holding its browser `hold` seconds.
fn stress_many(accounts: u32, hold: u32) -> anyhow::Result<()> {
    let scratch = Scratch::new(build_cli(true)?, accounts)?;
    scratch.append(
        "workflow.toml",
        &format!(
            r##"
[[steps]]
id = 99
name = "hold"
before = [
  {{ goto = "{{base_url}}/login" }},
  {{ fill = "#username", text = "{{account.username}}" }},
  {{ fill = "#password", text = "{{account.password}}" }},
  {{ click = "#submit" }},
  {{ wait_for = "#welcome" }},
]
actions = [
  {{ goto = "{{base_url}}/item/{{iteration}}" }},
  {{ click = "#add" }},
  {{ wait_text = "#done", contains = "added {{iteration}}" }},
  {{ sleep = "{hold}s" }},
]
"##
        ),
    )?;
    let before = scratch.adds();
    // Inside a memory cgroup (a container, or one made for this run: docs/benchmarks.md)
    // the kernel's own counters say whether the limit was hit and anyone OOM-killed.
    let cgroup = MemoryCgroup::own().filter(|c| c.limit().is_some());
    let kills_before = cgroup.as_ref().and_then(MemoryCgroup::oom_kills);
    let started = Instant::now();
    let out = scratch.run_step(99, accounts, 1, &["--concurrent"])?;
    let secs = started.elapsed().as_secs_f64();
    let run_started = out.named("run_started");
    let done_ok = out
        .named("account_done")
        .iter()
        .filter(|e| e["status"] == "ok")
        .count();
    let samples = out.named("memory_sample");
    let most_up = samples
        .iter()
        .filter_map(|e| e["browsers"].as_object().map(|m| m.len()))
        .max()
        .unwrap_or(0);
    let min_available = samples
        .iter()
        .filter_map(|e| e["available_bytes"].as_u64())
        .min();
    let waits = out.named("admission_wait");
    // Creations that waited for memory at all (a waiter journals `admission_wait`
    // each time its reason changes, so those lines count more than once).
    let memory_waits = out
        .named("admitted")
        .iter()
        .filter(|e| e["waits_ms"].get("memory").is_some())
        .count();
    let reserve = waits
        .iter()
        .find_map(|e| e["threshold_bytes"].as_u64())
        .unwrap_or(1 << 30);
    let crashed = out.named("browser_crashed").len();
    let adds = scratch.adds() - before;
    println!(
        "stress --many {accounts} (hold {hold} s): exit {:?}, {done_ok}/{accounts} accounts ok, \
         {adds} adds seen by the app, {crashed} browser crashes, at most {most_up} browsers up at once, \
         {memory_waits} creations waited for memory, min available {} MiB (reserve {} MiB), total {secs:.0} s",
        out.code,
        min_available.map_or(-1, |b| (b >> 20) as i64),
        reserve >> 20,
    );
    let mut oom_kills = 0;
    if let Some(c) = &cgroup {
        let mib = |b: Option<u64>| b.map_or("?".to_string(), |b| (b >> 20).to_string());
        oom_kills = c.oom_kills().unwrap_or(0) - kills_before.unwrap_or(0);
        println!(
            "cgroup {}: limit {} MiB, peak use {} MiB, limit reached {} times, {oom_kills} OOM kills during the run",
            c.dir().display(),
            mib(c.limit()),
            mib(c.peak()),
            c.limit_hits().map_or("?".to_string(), |n| n.to_string()),
        );
    }
    let mut failed = Vec::new();
    if run_started.is_empty() || out.code != Some(0) {
        failed.push(format!("exit {:?}: {}", out.code, out.stderr.trim()));
    }
    if done_ok != accounts as usize || adds != u64::from(accounts) {
        failed.push(format!(
            "{done_ok} accounts ok and {adds} adds, of {accounts}"
        ));
    }
    if crashed > 0 {
        failed.push(format!("{crashed} browsers crashed"));
    }
    if min_available.is_some_and(|m| m < reserve) {
        failed.push("available memory went below the reserve".to_string());
    }
    if oom_kills > 0 {
        failed.push(format!("{oom_kills} processes OOM-killed"));
    }
    if !failed.is_empty() {
        bail!("stress --many failed: {}", failed.join("; "));
    }
    Ok(())
}
