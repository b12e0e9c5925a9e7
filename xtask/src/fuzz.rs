//! `cargo xtask fuzz [--secs N] [--cases C]`: the config layer's property tests
//! (`batch-core`'s `config::proptests`: account lists, templates, durations, sizes,
//! the three file loaders) run round after round for a time box, each round with
//! `C` cases per property (`PROPTEST_CASES`) and a fresh seed (`PROPTEST_RNG_SEED`,
//! printed, so a failing round can be run again). A long proptest run rather than
//! cargo-fuzz: it needs no nightly toolchain and checks the same properties as the
//! unit tests, only with many more inputs.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::util::{cargo, flag, root, sh};

pub(crate) fn fuzz(args: &[String]) -> anyhow::Result<()> {
    let secs: u64 = flag(args, "--secs", 60)?;
    let cases: u64 = flag(args, "--cases", 2000)?;
    let filter = "config::proptests";
    sh(
        &cargo(),
        &["test", "--quiet", "-p", "batch-core", "--lib", "--no-run"],
    )?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut rounds = 0u64;
    let mut properties: Vec<String> = Vec::new();
    while rounds == 0 || Instant::now() < deadline {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64 ^ rounds;
        let out = Command::new(cargo())
            .args([
                "test",
                "--quiet",
                "-p",
                "batch-core",
                "--lib",
                filter,
                "--",
                "--test-threads",
                "2",
            ])
            .env("PROPTEST_CASES", cases.to_string())
            .env("PROPTEST_RNG_SEED", seed.to_string())
            .current_dir(root())
            .output()
            .context("cannot run cargo test")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        rounds += 1;
        if !out.status.success() {
            eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
            bail!(
                "round {rounds} failed (PROPTEST_RNG_SEED={seed} PROPTEST_CASES={cases} reproduces it)"
            );
        }
        if properties.is_empty() {
            // `cargo test --quiet` prints only dots; ask for the names once.
            let list = Command::new(cargo())
                .args([
                    "test",
                    "--quiet",
                    "-p",
                    "batch-core",
                    "--lib",
                    filter,
                    "--",
                    "--list",
                ])
                .current_dir(root())
                .output()?;
            properties = String::from_utf8_lossy(&list.stdout)
                .lines()
                .filter_map(|l| l.strip_suffix(": test"))
                .map(str::to_owned)
                .collect();
        }
        eprintln!(
            "round {rounds}: {} properties × {cases} cases ok (seed {seed})",
            properties.len()
        );
    }
    println!(
        "fuzz: {rounds} rounds in {:.0?}: {} properties × {} cases each = {} cases, no failure",
        started.elapsed(),
        properties.len(),
        rounds * cases,
        rounds * cases * properties.len() as u64
    );
    for p in &properties {
        println!("  {p}");
    }
    Ok(())
}
