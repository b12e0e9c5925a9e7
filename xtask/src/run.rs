//! `cargo xtask run`: the demo, end to end, on a fresh machine.

use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{build_cli, root};

pub(crate) fn run(_args: &[String]) -> anyhow::Result<()> {
    crate::deps::ensure_browser()?;
    let cli = build_cli(false)?;
    let (rt, site) = crate::util::start_demo()?;
    println!("demo app on {}", site.base_url());
    let example = root().join("examples/demo");
    let output = root().join("runs");
    let status = Command::new(&cli)
        .args([
            "single",
            "--step",
            "1",
            "--accounts",
            "1,2,3,4,5",
            "--quantity",
            "10",
            "--concurrent",
        ])
        .arg("--config")
        .arg(example.join("batch.toml"))
        .args(["--base-url", &site.base_url()])
        .arg("--output")
        .arg(&output)
        .status()
        .with_context(|| format!("running {}", cli.display()))?;
    let counts = site.counts();
    println!("\nwhat the demo app saw (adds per user):");
    for (user, c) in &counts.users {
        let login = if c.logins == 1 { "login" } else { "logins" };
        println!(
            "  {user}: {} {login}, {} adds over {} items",
            c.logins,
            c.adds,
            c.items.len()
        );
    }
    rt.block_on(site.shutdown());
    if !status.success() {
        bail!("batch-cli exited with {status}");
    }
    println!("\nrun directories are under {}", output.display());
    Ok(())
}
