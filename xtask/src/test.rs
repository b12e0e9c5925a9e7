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
    Ok(())
}

fn has_nextest(cargo: &str) -> bool {
    std::process::Command::new(cargo)
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
