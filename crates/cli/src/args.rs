//! The command line, as clap types. Parsing only: no I/O here.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  batch-cli validate --config batch.toml
  batch-cli single --step 1 --accounts 1-5 --quantity 3 --concurrent
  batch-cli run --accounts all --steps 1-2 --max-concurrent 8 --launch-interval auto
  batch-cli run --accounts 1-100 --shard 2/4 --json > events.jsonl
  batch-cli report runs/20260101-120000-ab12      # summary; rebuilds report.html/.xml
  batch-cli completions bash > /etc/bash_completion.d/batch-cli

Environment:
  BATCH_LOG   tracing filter for stderr (default warn; -v info, -vv debug, -vvv trace)
  RUST_LOG    read instead when BATCH_LOG is unset (BATCH_LOG wins if both are set);
              neither can make the WebDriver client log request bodies or typed text
  NO_COLOR    no colour and no live progress view (plain lines), unless --color always";

const RUN_EXAMPLES: &str = "\
Examples:
  batch-cli single --step 1 --accounts 1-3 --quantity 5 --concurrent
  batch-cli single --step 2 --accounts 1,4,7 --retries 0 --headed
  batch-cli single --step 1 --accounts all --launch-interval 2.5s   # Phase 1 pacing";

/// batch-cli: drive many accounts through a browser workflow at once, each in its own
/// isolated Chromium.
#[derive(Debug, Parser)]
#[command(
    name = "batch-cli",
    version,
    propagate_version = true,
    after_help = EXAMPLES
)]
pub(crate) struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); BATCH_LOG (or
    /// RUST_LOG when BATCH_LOG is unset) overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// No live progress view: plain lines, and only errors from the log.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Colour and the live progress view: auto (a terminal, NO_COLOR unset), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true, value_name = "WHEN")]
    pub(crate) color: ColorChoice,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    /// Colour and live bars when stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour (the live view still needs a terminal).
    Always,
    /// Never colour; plain lines.
    Never,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run one step for the listed accounts.
    #[command(after_help = RUN_EXAMPLES)]
    Single {
        /// The step id (with --resume: the run's).
        #[arg(long, required_unless_present = "resume")]
        step: Option<u32>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run the listed steps (default: all) in id order, each account in its own browser.
    Run {
        /// Step ids and ranges (`1,3`, `1-2`, `all`; default all, with --resume the run's).
        #[arg(long)]
        steps: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Parse and check everything; launch nothing.
    Validate {
        /// The project file.
        #[arg(long, default_value = "batch.toml")]
        config: PathBuf,
    },
    /// Check chromium, chromedriver, ports, memory and the accounts' proxies.
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
    /// Show or clear each account's health (error score, quarantine).
    Accounts {
        #[command(subcommand)]
        action: AccountsCommand,
        /// The project file.
        #[arg(long, default_value = "batch.toml", global = true)]
        config: PathBuf,
    },
    /// Print the summary of a run (rebuilding report.json from the journal when
    /// missing or stale, and report.html/report.xml), or merge the runs of several shards.
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  batch-cli completions bash > ~/.local/share/bash-completion/completions/batch-cli\n  batch-cli completions zsh > ~/.zfunc/_batch-cli\n  batch-cli completions fish > ~/.config/fish/completions/batch-cli.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
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

#[derive(Debug, Subcommand)]
pub(crate) enum AccountsCommand {
    /// Each account: its health score, quarantined until when, and why.
    List,
    /// Clear the listed accounts' health (score and quarantine).
    Release {
        /// Account ids and ranges.
        #[arg(long)]
        accounts: String,
    },
}

/// Options every run command takes.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Account ids and inclusive ranges (`1,2,3`, `1-5`, `1-3,7`, `all`).
    #[arg(long, required_unless_present = "resume")]
    pub(crate) accounts: Option<String>,
    /// Iterations of the step per account [default: 1; with --resume the run's].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) quantity: Option<u32>,
    /// Run all accounts at the same time (default: one after another).
    #[arg(long)]
    pub(crate) concurrent: bool,
    /// The project file [default: batch.toml; with --resume the run's].
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Override the workflow's base_url.
    #[arg(long)]
    pub(crate) base_url: Option<String>,
    /// Show the browser windows.
    #[arg(long)]
    pub(crate) headed: bool,
    /// Browser creation pacing: `auto` adapts to the machine; a duration (`2.5s`, `0`)
    /// is a fixed delay before each creation, inside the creation lock [default:
    /// [launch] interval, auto].
    #[arg(long, value_name = "DUR|auto")]
    pub(crate) launch_interval: Option<String>,
    /// Let browser creations overlap.
    #[arg(long)]
    pub(crate) no_launch_lock: bool,
    /// Optional cap on accounts running at once (off by default).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_concurrent: Option<u32>,
    /// Attempts per failed iteration beyond the first [default: [retry] retries, 2].
    #[arg(long)]
    pub(crate) retries: Option<u32>,
    /// The memory reserve: a new browser waits unless this much memory stays available
    /// after it (`1GiB`, `512MiB`) [default: [resources] min_available_memory, 1GiB].
    #[arg(long, value_name = "SIZE")]
    pub(crate) min_available_memory: Option<String>,
    /// Use a remote WebDriver / Selenium Grid instead of a local ChromeDriver
    /// (overrides `[browser] webdriver_url`).
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
    /// Continue that run (its directory's name under --output) in the same
    /// directory: only iterations not journaled as done run. Other arguments may be
    /// left out; one that conflicts with the run's recorded plan is an error.
    #[arg(long, value_name = "RUN_ID")]
    pub(crate) resume: Option<String>,
    /// One JSON event per line on stdout instead of the human view.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also run accounts still cooling in quarantine (see `accounts list`).
    #[arg(long)]
    pub(crate) include_quarantined: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// The user docs that describe the command line, concatenated.
    fn docs() -> String {
        ["configuration.md", "reports.md", "distributed.md"]
            .iter()
            .map(|name| {
                let path = format!("{}/../../docs/{name}", env!("CARGO_MANIFEST_DIR"));
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
            })
            .collect()
    }

    /// `--name` in `text`, not as the start of a longer option (`--max` in `--max-concurrent`).
    fn mentions(text: &str, option: &str) -> bool {
        text.match_indices(option).any(|(i, _)| {
            let next = text[i + option.len()..].chars().next();
            !matches!(next, Some(c) if c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
    }

    /// Every subcommand and every option `--help` shows is documented (clap's own
    /// `--help`/`--version` aside), so the docs cannot fall behind the command line.
    #[test]
    fn docs_cover_every_command_and_option() {
        let docs = docs();
        let mut missing = Vec::new();
        let mut seen = 0;
        let mut stack = vec![(String::from("batch-cli"), Cli::command())];
        while let Some((path, cmd)) = stack.pop() {
            for arg in cmd.get_arguments() {
                if let Some(long) = arg.get_long() {
                    seen += 1;
                    if !mentions(&docs, &format!("--{long}")) {
                        missing.push(format!("{path} --{long}"));
                    }
                }
                if let Some(short) = arg.get_short() {
                    seen += 1;
                    if !mentions(&docs, &format!("`-{short}`")) {
                        missing.push(format!("{path} -{short}"));
                    }
                }
            }
            for sub in cmd.get_subcommands() {
                let name = sub.get_name();
                seen += 1;
                // The synopsis has a line per command: `batch-cli NAME …`, and nested
                // commands on their parent's line (`batch-cli profiles list | clean …`).
                let line_start = if path == "batch-cli" {
                    format!("batch-cli {name} ")
                } else {
                    format!("{path} ")
                };
                let documented = docs
                    .lines()
                    .filter(|l| l.starts_with(&line_start))
                    .any(|l| l.split([' ', '|']).any(|word| word == name));
                if !documented {
                    missing.push(format!("{path} {name}"));
                }
                stack.push((format!("{path} {name}"), sub.clone()));
            }
        }
        assert!(seen > 30, "only {seen} commands and options found");
        assert!(missing.is_empty(), "not in docs/*.md: {missing:?}");
    }

    /// The reverse: every option in configuration.md's run options table exists.
    #[test]
    fn documented_run_options_exist() {
        let path = format!("{}/../../docs/configuration.md", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let cmd = Cli::command();
        let single = cmd.find_subcommand("single").unwrap();
        let longs: Vec<&str> = single
            .get_arguments()
            .filter_map(|a| a.get_long())
            .collect();
        let table = &text[text.find("### Run options").expect("### Run options")..];
        let table = &table[..table[1..].find("\n#").map_or(table.len(), |i| i + 1)];
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| `--")).collect();
        assert!(rows.len() > 10, "{rows:?}");
        for row in rows {
            let option = row["| `--".len()..]
                .split([' ', '`'])
                .next()
                .unwrap_or_default();
            assert!(
                longs.contains(&option),
                "documented --{option} is not an option of single"
            );
        }
    }
}
