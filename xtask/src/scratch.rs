//! A throw-away demo project for `bench` and `stress`: N demo accounts, the demo
//! workflow, ephemeral profiles, the demo app on a free port, and a way to run
//! `batch-cli --json` against it and read back its events.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// The project, its demo app and the binary under test. Removed on drop.
pub(crate) struct Scratch {
    dir: PathBuf,
    cli: PathBuf,
    rt: tokio::runtime::Runtime,
    site: Option<demo_site::DemoSite>,
    accounts: u32,
}

/// One `batch-cli` run: exit code, journal events (from `--json`), stderr.
pub(crate) struct Outcome {
    pub(crate) code: Option<i32>,
    pub(crate) events: Vec<serde_json::Value>,
    pub(crate) stderr: String,
}

impl Outcome {
    /// Events named `name`.
    pub(crate) fn named(&self, name: &str) -> Vec<&serde_json::Value> {
        self.events.iter().filter(|e| e["event"] == name).collect()
    }
}

impl Scratch {
    pub(crate) fn new(cli: PathBuf, accounts: u32) -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("batch-cli-xtask-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        write_project(&dir, accounts)?;
        let (rt, site) = crate::util::start_demo()?;
        Ok(Scratch {
            dir,
            cli,
            rt,
            site: Some(site),
            accounts,
        })
    }

    /// `batch-cli single --step 1 --quantity 1 --accounts 1-N --json FLAGS`.
    pub(crate) fn run(&self, flags: &[&str]) -> anyhow::Result<Outcome> {
        self.run_with(self.accounts, 1, flags)
    }

    /// The demo app's base URL (for the bench's peers, which drive it themselves).
    pub(crate) fn base_url(&self) -> String {
        self.site
            .as_ref()
            .expect("site lives until drop")
            .base_url()
    }

    /// Total adds the demo app has counted so far, over all users.
    pub(crate) fn adds(&self) -> u64 {
        let site = self.site.as_ref().expect("site lives until drop");
        site.counts()
            .users
            .values()
            .map(|u| u.items.values().sum::<u64>())
            .sum()
    }

    /// `batch-cli single --step 1 --quantity Q --accounts 1-N --json FLAGS`.
    pub(crate) fn run_with(
        &self,
        accounts: u32,
        quantity: u32,
        flags: &[&str],
    ) -> anyhow::Result<Outcome> {
        self.run_step(1, accounts, quantity, flags)
    }

    /// As [`Scratch::run_with`], with `extra` appended to a copy of `batch.toml`
    /// (e.g. a `[browser]` section) used for this run only.
    pub(crate) fn run_variant(
        &self,
        extra: &str,
        accounts: u32,
        quantity: u32,
        flags: &[&str],
    ) -> anyhow::Result<Outcome> {
        let base = std::fs::read_to_string(self.dir.join("batch.toml"))?;
        std::fs::write(self.dir.join("batch-variant.toml"), base + extra)?;
        self.run_in("batch-variant.toml", 1, accounts, quantity, flags)
    }

    /// Append to a file of the project (e.g. one more step to the workflow).
    pub(crate) fn append(&self, name: &str, text: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join(name))?;
        f.write_all(text.as_bytes())?;
        Ok(())
    }

    /// `batch-cli single --step S --quantity Q --accounts 1-N --json FLAGS`.
    pub(crate) fn run_step(
        &self,
        step: u32,
        accounts: u32,
        quantity: u32,
        flags: &[&str],
    ) -> anyhow::Result<Outcome> {
        self.run_in("batch.toml", step, accounts, quantity, flags)
    }

    fn run_in(
        &self,
        config: &str,
        step: u32,
        accounts: u32,
        quantity: u32,
        flags: &[&str],
    ) -> anyhow::Result<Outcome> {
        let site = self.site.as_ref().expect("site lives until drop");
        let out = Command::new(&self.cli)
            .args(["single", "--step", &step.to_string(), "--json"])
            .args(["--quantity", &quantity.to_string()])
            .args(["--accounts", &format!("1-{accounts}")])
            .args(flags)
            .arg("--config")
            .arg(self.dir.join(config))
            .args(["--base-url", &site.base_url()])
            .arg("--output")
            .arg(self.dir.join("runs"))
            .output()
            .context("running batch-cli")?;
        Ok(Outcome {
            code: out.status.code(),
            events: String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(site) = self.site.take() {
            self.rt.block_on(site.shutdown());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_project(dir: &Path, accounts: u32) -> anyhow::Result<()> {
    let acc: String = (1..=accounts)
        .map(|i| {
            format!("[[accounts]]\nid = {i}\nusername = \"user-{i}\"\npassword = \"pass-{i}\"\n\n")
        })
        .collect();
    std::fs::write(dir.join("accounts.toml"), acc)?;
    std::fs::write(
        dir.join("batch.toml"),
        "[profiles]\nephemeral = true\n[resources]\nsample_interval = \"1s\"\n",
    )?;
    let workflow = std::fs::read_to_string(crate::util::root().join("examples/demo/workflow.toml"))
        .context("reading the demo workflow")?;
    std::fs::write(dir.join("workflow.toml"), workflow)?;
    Ok(())
}
