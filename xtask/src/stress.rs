//! `cargo xtask stress`: the long collision test. Many browsers launched at once
//! (`--no-launch-lock --launch-interval 0`), many rounds; every round must succeed
//! and no two live browsers may share a DevTools port, driver port or profile.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::bail;

use crate::scratch::Scratch;
use crate::util::{build_cli, flag};

pub(crate) fn stress(args: &[String]) -> anyhow::Result<()> {
    crate::deps::ensure()?;
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
