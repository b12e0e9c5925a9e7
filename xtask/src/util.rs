//! Shared helpers: the workspace root, running cargo, finding the built binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The workspace root (xtask lives in `<root>/xtask`).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

/// Run a command in the workspace root, echoing it; fail on a non-zero exit.
pub(crate) fn sh(program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Build `batch-cli` (debug) and return its path.
pub(crate) fn build_cli(release: bool) -> anyhow::Result<PathBuf> {
    let mut args = vec!["build", "--quiet", "-p", "cli"];
    if release {
        args.push("--release");
    }
    sh(&cargo(), &args)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join("batch-cli"))
}

/// `--name value` from an argument list.
pub(crate) fn flag<T: std::str::FromStr>(
    args: &[String],
    name: &str,
    default: T,
) -> anyhow::Result<T> {
    match args.iter().position(|a| a == name) {
        Some(i) => {
            let v = args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| anyhow::anyhow!("{name} {v:?}: expected a number"))
        }
        None => Ok(default),
    }
}

/// The demo app on a free loopback port, served by its own runtime (keep both alive).
pub(crate) fn start_demo() -> anyhow::Result<(tokio::runtime::Runtime, demo_site::DemoSite)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let site = rt
        .block_on(demo_site::start(([127, 0, 0, 1], 0).into()))
        .context("starting the demo app")?;
    Ok((rt, site))
}
