//! What to run: the command line and `batch.toml` merged into one plain value.

use std::path::PathBuf;

use crate::config::{AccountId, LaunchInterval, Project};

/// `single --step N` or `run --steps LIST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// One step.
    Single(u32),
    /// These steps, in id order.
    Run(Vec<u32>),
}

impl Mode {
    /// The step ids to run, in order.
    pub fn steps(&self) -> Vec<u32> {
        match self {
            Mode::Single(s) => vec![*s],
            Mode::Run(v) => v.clone(),
        }
    }
}

/// A run, fully decided. Built by the caller (the CLI) after validation.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The loaded project (settings, workflow with `base_url` already overridden, accounts).
    pub project: Project,
    /// Which steps.
    pub mode: Mode,
    /// Which accounts, in order.
    pub accounts: Vec<AccountId>,
    /// Iterations of each step per account (≥ 1).
    pub quantity: u32,
    /// All accounts at once, or one after another.
    pub concurrent: bool,
    /// Optional cap on accounts running at once.
    pub max_concurrent: Option<usize>,
    /// Creations through the creation lock (with `auto`: an adaptive number at once).
    pub launch_lock: bool,
    /// A fixed pause before each creation (inside the lock), or adaptive pacing.
    pub launch_interval: LaunchInterval,
    /// Show browser windows.
    pub headed: bool,
    /// Attempts per failed iteration beyond the first.
    pub retries: u32,
    /// Where run directories go.
    pub output: PathBuf,
    /// Open every session on this remote WebDriver endpoint (a Selenium Grid) instead
    /// of starting ChromeDriver and Chromium here (`--webdriver-url`).
    pub webdriver_url: Option<String>,
    /// Carry each account's logged-in state (cookies, localStorage) from one browser
    /// to the next as a storage state file (on by default for remote runs).
    pub storage_state: bool,
    /// The command line as given (recorded in the journal, which redacts the
    /// credentials of any URL in it).
    pub argv: Vec<String>,
}
