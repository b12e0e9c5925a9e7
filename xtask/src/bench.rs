//! `cargo xtask bench`: launch strategies side by side in one run, printed as ratios
//! (this machine is noisy: absolute times mean little, ratios measured together do).
//!
//! Compared, for N accounts × 1 iteration of the demo workflow:
//! - `phase1`     — the old tool: creation lock + 2.5 s inside it;
//! - `lock-0`     — creation lock, no pause;
//! - `no-lock`    — creations overlap (`--no-launch-lock --launch-interval 0`);
//! - `sequential` — accounts one after another.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::util::{build_cli, flag};

pub(crate) fn write_project(dir: &Path, accounts: u32, profiles: &str) -> anyhow::Result<()> {
    let mut acc = String::new();
    for i in 1..=accounts {
        acc.push_str(&format!(
            "[[accounts]]\nid = {i}\nusername = \"user-{i}\"\npassword = \"pass-{i}\"\n\n"
        ));
    }
    std::fs::write(dir.join("accounts.toml"), acc)?;
    std::fs::write(
        dir.join("batch.toml"),
        format!(
            "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n\n[profiles]\n{profiles}\n"
        ),
    )?;
    let workflow = std::fs::read_to_string(crate::util::root().join("examples/demo/workflow.toml"))
        .context("reading the demo workflow")?;
    std::fs::write(dir.join("workflow.toml"), workflow)?;
    Ok(())
}

pub(crate) fn bench(args: &[String]) -> anyhow::Result<()> {
    crate::deps::ensure()?;
    let accounts: u32 = flag(args, "--accounts", 10)?;
    let cli = build_cli(true)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let site = rt.block_on(demo_site::start(([127, 0, 0, 1], 0).into()))?;
    let dir = crate::stress::tempdir()?;
    write_project(&dir, accounts, "ephemeral = true")?;
    let variants: &[(&str, &[&str])] = &[
        ("phase1", &["--concurrent", "--launch-interval", "2.5s"]),
        ("lock-0", &["--concurrent", "--launch-interval", "0"]),
        (
            "no-lock",
            &["--concurrent", "--no-launch-lock", "--launch-interval", "0"],
        ),
        ("sequential", &["--launch-interval", "0"]),
    ];
    let mut results = Vec::new();
    for (name, flags) in variants {
        let t = Instant::now();
        let out = Command::new(&cli)
            .args([
                "single",
                "--step",
                "1",
                "--quantity",
                "1",
                "--json",
                "--accounts",
                &format!("1-{accounts}"),
            ])
            .args(*flags)
            .arg("--config")
            .arg(dir.join("batch.toml"))
            .args(["--base-url", &site.base_url()])
            .arg("--output")
            .arg(dir.join("runs"))
            .output()?;
        let secs = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "{name}: batch-cli failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let peak = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == "memory_sample")
            .filter_map(|e| e["browsers_pss_bytes"].as_u64())
            .max()
            .unwrap_or(0);
        eprintln!("{name}: {secs:.1} s");
        results.push((*name, secs, peak));
    }
    rt.block_on(site.shutdown());
    let _ = std::fs::remove_dir_all(&dir);
    let base = results[0].1;
    println!(
        "\n{accounts} accounts × 1 iteration, all variants in this one run (ratio = phase1 time / variant time):"
    );
    println!(
        "{:<12} {:>8} {:>10} {:>16}",
        "variant", "seconds", "speed-up", "peak PSS (MiB)"
    );
    for (name, secs, peak) in &results {
        println!(
            "{name:<12} {secs:>8.1} {:>9.2}× {:>16}",
            base / secs,
            peak >> 20
        );
    }
    Ok(())
}
