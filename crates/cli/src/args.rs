//! The command line, as clap types. Parsing only: no I/O here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// batch-cli: drive many accounts through a browser workflow at once, each in its own
/// isolated Chromium.
#[derive(Debug, Parser)]
#[command(name = "batch-cli", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run one step for the listed accounts.
    Single {
        /// The step id.
        #[arg(long)]
        step: u32,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run the listed steps (default: all) in id order, each account in its own browser.
    Run {
        /// Step ids and ranges (`1,3`, `1-2`, `all`).
        #[arg(long, default_value = "all")]
        steps: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Parse and check everything; launch nothing.
    Validate {
        /// The project file.
        #[arg(long, default_value = "batch.toml")]
        config: PathBuf,
    },
    /// Check chromium, chromedriver, ports and memory.
    Doctor {
        /// The project file (optional: its [browser] paths are used if it exists).
        #[arg(long, default_value = "batch.toml")]
        config: PathBuf,
        /// Check this remote WebDriver / Selenium Grid instead of the local browser.
        #[arg(long, value_name = "URL")]
        webdriver_url: Option<String>,
    },
    /// Manage the persistent per-account profiles.
    Profiles {
        #[command(subcommand)]
        action: ProfilesCommand,
        /// The project file.
        #[arg(long, default_value = "batch.toml", global = true)]
        config: PathBuf,
    },
    /// Print the summary of a finished run, or merge the runs of several shards.
    Report {
        /// The run directory.
        #[arg(required_unless_present = "merge")]
        run_dir: Option<PathBuf>,
        /// Print report.json as is.
        #[arg(long)]
        json: bool,
        /// Merge these run directories (one per `--shard`) into one report.
        #[arg(long, value_name = "DIR", num_args = 1.., conflicts_with = "run_dir")]
        merge: Vec<PathBuf>,
        /// Where the merged report goes (default `./merged`).
        #[arg(long, value_name = "DIR", requires = "merge")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProfilesCommand {
    /// List profiles: account, size, in use, last used.
    List,
    /// Remove stale Chrome lock files from profiles not in use.
    Clean,
    /// Delete the listed accounts' profiles (logs them out).
    Reset {
        /// Account ids and ranges.
        #[arg(long)]
        accounts: String,
    },
}

/// Options every run command takes.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Account ids and inclusive ranges (`1,2,3`, `1-5`, `1-3,7`, `all`).
    #[arg(long)]
    pub(crate) accounts: String,
    /// Iterations of the step per account.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) quantity: u32,
    /// Run all accounts at the same time (default: one after another).
    #[arg(long)]
    pub(crate) concurrent: bool,
    /// The project file.
    #[arg(long, default_value = "batch.toml")]
    pub(crate) config: PathBuf,
    /// Override the workflow's base_url.
    #[arg(long)]
    pub(crate) base_url: Option<String>,
    /// Show the browser windows.
    #[arg(long)]
    pub(crate) headed: bool,
    /// Delay before each browser creation, inside the creation lock (`2.5s`, `0`).
    #[arg(long, value_name = "DUR|auto")]
    pub(crate) launch_interval: Option<String>,
    /// Let browser creations overlap.
    #[arg(long)]
    pub(crate) no_launch_lock: bool,
    /// Optional cap on accounts running at once (off by default).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_concurrent: Option<u32>,
    /// Attempts per failed iteration beyond the first.
    #[arg(long)]
    pub(crate) retries: Option<u32>,
    /// Stop creating browsers while available memory is below this (`1GiB`, `512MiB`).
    #[arg(long, value_name = "SIZE")]
    pub(crate) min_available_memory: Option<String>,
    /// Use a remote WebDriver / Selenium Grid instead of a local ChromeDriver.
    #[arg(long, value_name = "URL")]
    pub(crate) webdriver_url: Option<String>,
    /// Carry each account's cookies and localStorage from one browser to the next
    /// (always on with --webdriver-url, where no profile directory exists).
    #[arg(long)]
    pub(crate) storage_state: bool,
    /// Run only the I-th (1-based) of N equal slices of the account list.
    #[arg(long, value_name = "I/N")]
    pub(crate) shard: Option<String>,
    /// Where run directories go.
    #[arg(long, default_value = "runs")]
    pub(crate) output: PathBuf,
    /// Continue that run in the same directory.
    #[arg(long, value_name = "RUN_ID")]
    pub(crate) resume: Option<String>,
    /// One JSON event per line on stdout instead of the human view.
    #[arg(long)]
    pub(crate) json: bool,
}
