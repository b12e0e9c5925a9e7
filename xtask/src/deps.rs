//! Making sure Debian's Chromium and ChromeDriver are installed (never downloading a
//! browser of our own): `apt-get install chromium chromium-driver` when root,
//! otherwise exact instructions. Then the Selenium Grid server jar the Grid tests
//! need, from its npm package into `target/grid-cache` (when Java is there: without
//! Java those tests say so and skip).

use std::path::Path;
use std::process::Command;

use anyhow::bail;

const NEEDED: &[(&str, &str)] = &[
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/chromedriver", "chromium-driver"),
];

pub(crate) fn ensure() -> anyhow::Result<()> {
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(p, _)| !Path::new(p).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return grid_jar();
    }
    if !is_root() {
        bail!(
            "missing {}: install them with\n    sudo apt-get update && sudo apt-get install -y {}",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("installing {} with apt-get…", missing.join(", "));
    let status = Command::new("apt-get").arg("update").arg("-qq").status()?;
    if !status.success() {
        bail!("apt-get update failed ({status})");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !status.success() {
        bail!("apt-get install {} failed ({status})", missing.join(" "));
    }
    grid_jar()
}

/// The Selenium server jar for the Grid end-to-end tests.
fn grid_jar() -> anyhow::Result<()> {
    if !crate::gridctl::java_available() {
        eprintln!(
            "note: no Java runtime: the Selenium Grid tests will skip (install openjdk-17-jre-headless to run them)"
        );
        return Ok(());
    }
    let jar = crate::gridctl::ensure_jar(&crate::util::root()).map_err(anyhow::Error::msg)?;
    eprintln!("selenium grid: {}", jar.display());
    Ok(())
}

pub(crate) fn is_root() -> bool {
    // `id -u` keeps xtask free of a libc dependency.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
