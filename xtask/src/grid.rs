//! `cargo xtask grid start|stop|status [--dir DIR] [--nodes N]`: a real Selenium Grid 4
//! (hub + nodes on 127.0.0.1, Debian's chromium) for trying `--webdriver-url` by hand.
//! State lives in `DIR` (default `target/grid`); `stop` ends the JVMs and every
//! browser they started. The logic is `gridctl.rs`, shared with the e2e tests.

use anyhow::{Context, bail};

use crate::gridctl::{self, Grid};
use crate::util::root;

pub(crate) fn grid(args: &[String]) -> anyhow::Result<()> {
    let mut dir = root().join("target").join("grid");
    let mut nodes = 2usize;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => dir = it.next().context("--dir needs a directory")?.into(),
            "--nodes" => {
                nodes = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n >= 1)
                    .context("--nodes needs a number >= 1")?
            }
            other => bail!("grid: unknown argument {other:?} (expected --dir DIR or --nodes N)"),
        }
    }
    match args.first().map(String::as_str) {
        Some("start") => {
            if !gridctl::java_available() {
                bail!("java is not installed: `apt-get install -y openjdk-17-jre-headless`");
            }
            let jar = gridctl::ensure_jar(&root()).map_err(anyhow::Error::msg)?;
            let g = Grid::start(&jar, &dir, nodes).map_err(anyhow::Error::msg)?;
            println!("grid up: {}", g.hub_url);
            for n in &g.nodes {
                println!("  {} {} (pid {})", n.name, n.uri, n.pid);
            }
            println!(
                "try: batch-cli run --accounts all --concurrent --webdriver-url {}\nstop: cargo xtask grid stop{}",
                g.hub_url,
                if args.iter().any(|a| a == "--dir") {
                    format!(" --dir {}", dir.display())
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Some("stop") => {
            let g = Grid::load(&dir).map_err(anyhow::Error::msg)?;
            g.stop();
            let left = g.processes();
            if !left.is_empty() {
                bail!("processes of the Grid still alive: {left:?}");
            }
            println!("grid stopped; nothing of it is left");
            Ok(())
        }
        Some("status") => {
            let g = Grid::load(&dir).map_err(anyhow::Error::msg)?;
            let s = g.status().map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(())
        }
        _ => bail!("usage: cargo xtask grid start|stop|status [--dir DIR] [--nodes N]"),
    }
}
