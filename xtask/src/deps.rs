//! Making sure Debian's Chromium and ChromeDriver are installed (never downloading a
//! browser of our own): `apt-get install chromium chromium-driver chromium-headless-shell` when root,
//! otherwise exact instructions. Also Selenium for the Python attach example, into a
//! venv under `target/py-venv` (from PyPI, pinned in the example's requirements.txt),
//! and puppeteer-core for the Node example under `target/node-puppeteer` (npm).
//! Then the Selenium Grid server jar the Grid tests need, from its npm package into
//! `target/grid-cache` (when Java is there: without Java those tests say so and skip).

use std::path::Path;
use std::process::Command;

use anyhow::bail;

/// What the demo (`cargo xtask run`) needs: the browser and its driver.
/// The headless shell is what headless runs use by default when it is installed
/// (`[browser] headless_shell`): about half the CPU of the full browser here.
const BROWSER: &[(&str, &str)] = &[
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/chromedriver", "chromium-driver"),
    (
        "/usr/bin/chromium-headless-shell",
        "chromium-headless-shell",
    ),
];

/// What the tests need on top of it.
const NEEDED: &[(&str, &str)] = &[
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/chromedriver", "chromium-driver"),
    // Both builds are tested: the shell is the default, the full browser is headed
    // runs' and `headless_shell = false`'s.
    (
        "/usr/bin/chromium-headless-shell",
        "chromium-headless-shell",
    ),
    // The Selenium Grid's server (tests/src/grid.rs).
    ("/usr/bin/java", "openjdk-17-jre-headless"),
    // The live-view tests drive a real terminal (tests/src/reports.rs).
    ("/usr/bin/tmux", "tmux"),
];

/// Everything `cargo xtask test` needs.
pub(crate) fn ensure() -> anyhow::Result<()> {
    apt(NEEDED)?;
    grid_jar()?;
    python_selenium()?;
    node_puppeteer()
}

/// Only what the demo run needs: a new user's `cargo xtask run` installs no Java,
/// Selenium or npm packages.
pub(crate) fn ensure_browser() -> anyhow::Result<()> {
    apt(BROWSER)
}

/// Where `examples/puppeteer-node`'s dependencies are installed for the tests.
pub(crate) fn node_dir() -> std::path::PathBuf {
    crate::util::root().join("target").join("node-puppeteer")
}

fn node_puppeteer() -> anyhow::Result<()> {
    let manifest = crate::util::root().join("examples/puppeteer-node/package.json");
    npm_install(&manifest, &node_dir(), "puppeteer-core", &[])
}

/// `npm install` of the packages `manifest` (a package.json) names into `dir`, only
/// when they are missing: `module` is not in `dir/node_modules` or the manifest
/// changed since. `extra` are more arguments to npm. Never downloads a browser
/// (`PUPPETEER_SKIP_DOWNLOAD`: only `puppeteer-core` is meant, never `puppeteer`).
pub(crate) fn npm_install(
    manifest: &Path,
    dir: &Path,
    module: &str,
    extra: &[&str],
) -> anyhow::Result<()> {
    let wanted = std::fs::read_to_string(manifest)?;
    let installed = dir
        .join("node_modules")
        .join(module)
        .join("package.json")
        .exists()
        && std::fs::read_to_string(dir.join("package.json"))
            .ok()
            .as_deref()
            == Some(&wanted);
    if installed {
        return Ok(());
    }
    eprintln!("installing {module} into {} with npm…", dir.display());
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("package.json"), &wanted)?;
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent"])
        .args(extra)
        .env("PUPPETEER_SKIP_DOWNLOAD", "1")
        .current_dir(dir)
        .status()?;
    if !status.success() {
        bail!("npm install in {} failed ({status})", dir.display());
    }
    Ok(())
}

/// The venv the end-to-end tests run `examples/selenium-python` with.
pub(crate) fn py_venv() -> std::path::PathBuf {
    crate::util::root().join("target").join("py-venv")
}

pub(crate) fn python_selenium() -> anyhow::Result<()> {
    let venv = py_venv();
    let python = venv.join("bin").join("python");
    let has = |p: &Path| {
        Command::new(p)
            .args(["-c", "import selenium"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has(&python) {
        return Ok(());
    }
    eprintln!("installing selenium into {} with pip…", venv.display());
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?;
    if !status.success() {
        bail!("python3 -m venv {} failed ({status})", venv.display());
    }
    let requirements = crate::util::root().join("examples/selenium-python/requirements.txt");
    let status = Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .status()?;
    if !status.success() || !has(&python) {
        bail!(
            "pip install -r {} failed ({status})",
            requirements.display()
        );
    }
    Ok(())
}

fn apt(needed: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(p, _)| !Path::new(p).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
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
    Ok(())
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
