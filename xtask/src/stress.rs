//! `cargo xtask stress`: the long collision test. Many browsers launched at once
//! (`--no-launch-lock --launch-interval 0`), many rounds; every round must succeed
//! and no two live browsers may share a DevTools port, driver port or profile.
//!
//! `cargo xtask stress --many N [--hold SECS]`: scale without a cap. N accounts at
//! once with the defaults (adaptive pacing, memory admission), each logging in,
//! adding an item and holding its browser for SECS; every account must finish, and
//! the memory samples show how many browsers were up at once and how low available
//! memory went against the reserve.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::bail;

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
    let memory_waits = waits.iter().filter(|e| e["reason"] == "memory").count();
    let reserve = waits
        .iter()
        .find_map(|e| e["threshold_bytes"].as_u64())
        .unwrap_or(1 << 30);
    let crashed = out.named("browser_crashed").len();
    let adds = scratch.adds() - before;
    println!(
        "stress --many {accounts} (hold {hold} s): exit {:?}, {done_ok}/{accounts} accounts ok, \
         {adds} adds seen by the app, {crashed} browser crashes, at most {most_up} browsers up at once, \
         {memory_waits} memory waits, min available {} MiB (reserve {} MiB), total {secs:.0} s",
        out.code,
        min_available.map_or(-1, |b| (b >> 20) as i64),
        reserve >> 20,
    );
    if run_started.is_empty()
        || out.code != Some(0)
        || done_ok != accounts as usize
        || adds != u64::from(accounts)
    {
        bail!("stress --many failed: {}", out.stderr.trim());
    }
    Ok(())
}
