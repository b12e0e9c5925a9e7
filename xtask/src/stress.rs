//! `cargo xtask stress`: the long collision test. Many browsers launched at once
//! (`--no-launch-lock --launch-interval 0`), many rounds; every round must succeed
//! and no two live browsers may share a DevTools port, driver port or profile.

use std::collections::HashSet;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::util::{build_cli, flag};

pub(crate) fn stress(args: &[String]) -> anyhow::Result<()> {
    crate::deps::ensure()?;
    let accounts: u32 = flag(args, "--accounts", 20)?;
    let rounds: u32 = flag(args, "--rounds", 50)?;
    let cli = build_cli(false)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let site = rt.block_on(demo_site::start(([127, 0, 0, 1], 0).into()))?;
    let dir = tempdir()?;
    crate::bench::write_project(&dir, accounts, "ephemeral = true")?;
    let mut launch_ms = Vec::new();
    let started = Instant::now();
    let mut failures = 0;
    for round in 1..=rounds {
        let out = Command::new(&cli)
            .args([
                "single",
                "--step",
                "1",
                "--quantity",
                "1",
                "--concurrent",
                "--no-launch-lock",
            ])
            .args([
                "--launch-interval",
                "0",
                "--json",
                "--accounts",
                &format!("1-{accounts}"),
            ])
            .arg("--config")
            .arg(dir.join("batch.toml"))
            .args(["--base-url", &site.base_url()])
            .arg("--output")
            .arg(dir.join("runs"))
            .output()
            .context("running batch-cli")?;
        let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let created: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e["event"] == "browser_created")
            .collect();
        let distinct = |key: &str| {
            created
                .iter()
                .map(|e| e[key].to_string())
                .collect::<HashSet<_>>()
                .len()
        };
        let ok = out.status.code() == Some(0)
            && created.len() == accounts as usize
            && distinct("port") == created.len()
            && distinct("driver_port") == created.len()
            && distinct("profile") == created.len();
        launch_ms.extend(created.iter().filter_map(|e| e["launch_ms"].as_u64()));
        if !ok {
            failures += 1;
            eprintln!(
                "round {round}: FAILED (exit {:?}, {} browsers)",
                out.status.code(),
                created.len()
            );
        } else {
            eprintln!(
                "round {round}/{rounds}: {accounts} browsers, all ports and profiles distinct"
            );
        }
    }
    rt.block_on(site.shutdown());
    launch_ms.sort_unstable();
    let median = launch_ms.get(launch_ms.len() / 2).copied().unwrap_or(0);
    println!(
        "stress: {rounds} rounds × {accounts} browsers at once: {failures} failed rounds, {} launches, median launch {median} ms, total {:.0} s",
        launch_ms.len(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    if failures > 0 {
        bail!("{failures} of {rounds} rounds failed");
    }
    Ok(())
}

pub(crate) fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("batch-cli-xtask-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
