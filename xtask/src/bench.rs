//! `cargo xtask bench`: launch strategies side by side in one run, printed as ratios
//! (this machine is noisy: absolute times mean little, ratios measured together do).
//!
//! Compared, for N accounts × 1 iteration of the demo workflow:
//! - `phase1` — the old tool: creation lock + 2.5 s inside it;
//! - `lock-0` — creation lock, no pause;
//! - `no-lock` — creations overlap (`--no-launch-lock --launch-interval 0`);
//! - `sequential` — accounts one after another.

use std::time::Instant;

use anyhow::bail;

use crate::scratch::Scratch;
use crate::util::{build_cli, flag};

pub(crate) fn bench(args: &[String]) -> anyhow::Result<()> {
    crate::deps::ensure()?;
    let accounts: u32 = flag(args, "--accounts", 10)?;
    let scratch = Scratch::new(build_cli(true)?, accounts)?;
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
        let out = scratch.run(flags)?;
        let secs = t.elapsed().as_secs_f64();
        if out.code != Some(0) {
            bail!("{name}: batch-cli failed: {}", out.stderr);
        }
        let peak = out
            .named("memory_sample")
            .iter()
            .filter_map(|e| e["browsers_pss_bytes"].as_u64())
            .max()
            .unwrap_or(0);
        eprintln!("{name}: {secs:.1} s");
        results.push((*name, secs, peak));
    }
    let base = results[0].1;
    println!(
        "\n{accounts} accounts × 1 iteration, all variants in this one run (speed-up = phase1 time / variant time):"
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
