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
    // Orphans of our browsers (Chrome's children after a group kill, its crashpad
    // handlers) are re-parented to us, so that we can reap them and exit only after
    // every process we started is gone.
    if let Err(error) = launcher::become_subreaper() {
        tracing::warn!(%error, "cannot become a child subreaper");
    }
    // Worker threads live as long as the runtime: browsers are spawned from them, and
    // PR_SET_PDEATHSIG fires when the spawning *thread* exits.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let code = runtime.block_on(async {
        let reaper = tokio::spawn(reap_adopted_periodically());
        let code = commands::dispatch(cli.command).await;
        reaper.abort();
        code
    });
    // Dropping the runtime waits for nothing that matters: every browser is already closed.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    // No tokio child is waited for any more: kill and reap whatever is left.
    let finished = launcher::finish_descendants(std::time::Duration::from_secs(5));
    if !finished.left.is_empty() {
        tracing::warn!(left = ?finished.left, "processes still running at exit");
    }
    tracing::debug!(?finished, "descendants finished");
    std::process::exit(code);
}

/// Reap adopted orphans during a run, so a long run with many browser replacements
/// does not pile up zombies (see `launcher::reap_adopted`).
async fn reap_adopted_periodically() {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // /proc reads block: keep them off the runtime's workers.
        let _ = tokio::task::spawn_blocking(launcher::reap_adopted).await;
    }
}
