//! `batch-cli`: the command line over `batch-core`. This is the only crate that
//! prints or installs a tracing subscriber. It turns arguments into a [`Plan`],
//! errors into exit codes, and journal events into the human view.
//!
//! [`Plan`]: batch_core::Plan

mod args;
mod commands;
mod view;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATCH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Worker threads live as long as the runtime: browsers are spawned from them, and
    // PR_SET_PDEATHSIG fires when the spawning *thread* exits.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let code = runtime.block_on(commands::dispatch(cli.command));
    // Dropping the runtime waits for nothing that matters: every browser is already closed.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}
