//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use crate::util::{build_cli, cargo, sh};

pub(crate) fn test(args: &[String]) -> anyhow::Result<()> {
    crate::deps::ensure()?;
    let cargo = cargo();
    sh(&cargo, &["fmt", "--all", "--", "--check"])?;
    sh(
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--quiet",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // The end-to-end tests run the real binary.
    build_cli(false)?;
    let extra: Vec<&str> = args.iter().map(String::as_str).collect();
    let litter_before = chromium_litter();
    if has_nextest(&cargo) {
        // .config/nextest.toml puts the real-Chromium tests in a bounded group.
        let mut a = vec!["nextest", "run", "--workspace", "--no-fail-fast"];
        a.extend(&extra);
        sh(&cargo, &a)?;
        sh(&cargo, &["test", "--workspace", "--doc", "--quiet"])?;
        // A short run of the collision stress (the long one: `cargo xtask stress`).
        crate::stress::stress(&[
            "--accounts".into(),
            "20".into(),
            "--rounds".into(),
            "2".into(),
        ])?;
    } else {
        let mut a = vec!["test", "--workspace", "--", "--test-threads=2"];
        a.extend(&extra);
        sh(&cargo, &a)?;
    }
    let left: Vec<String> = (chromium_litter().difference(&litter_before))
        .map(|p| p.display().to_string())
        .collect();
    if !left.is_empty() {
        anyhow::bail!(
            "the tests left {} Chromium temp entr(ies) in the system temp dir: {} (every \
             browser the launcher starts has a private TMPDIR; whatever else a test starts \
             Chrome or ChromeDriver with needs one too)",
            left.len(),
            left.join(", ")
        );
    }
    Ok(())
}

/// Chromium's and ChromeDriver's own entries in the system temp dir
/// (`org.chromium.Chromium.*`, `.org.chromium.Chromium.*`): what a killed Chrome
/// leaves where it was given no private `TMPDIR`.
fn chromium_litter() -> std::collections::BTreeSet<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Default::default();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.trim_start_matches('.').starts_with("org.chromium.")
        })
        .map(|e| e.path())
        .collect()
}

fn has_nextest(cargo: &str) -> bool {
    std::process::Command::new(cargo)
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
