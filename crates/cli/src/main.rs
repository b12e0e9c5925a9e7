//! `batch-cli`: the command line over `batch-core`. This is the only crate that
//! prints or installs a tracing subscriber. It turns arguments into a [`Plan`],
//! errors into exit codes, and journal events into the human view.
//!
//! Nothing here panics on a closed stdout or stderr (`| head`, a vanished terminal):
//! every line goes through [`outln!`] / [`errln!`] or a writer that drops write
//! errors, and the run goes on to its end.
//!
//! [`Plan`]: batch_core::Plan

/// `println!` that never panics: a closed stdout (`| head -1`) only loses the text.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that never panics: a closed stderr only loses the text.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        // Above the live view's bars, if there are any, instead of through them.
        crate::view::suspend(|| {
            let _ = writeln!(std::io::stderr().lock(), $($arg)*);
        });
    }};
}

mod args;
mod commands;
mod logging;
mod merge;
mod view;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    let env = |k: &str| std::env::var(k).ok();
    let stdout_tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let stderr_tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let ui = view::Ui::decide(cli.color, cli.quiet, stdout_tty, env);
    let log_color = view::Ui::decide(cli.color, cli.quiet, stderr_tty, env).color;
    logging::init(logging::default_level(cli.verbose, cli.quiet), log_color);
    raise_fd_limit();
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
        let code = commands::dispatch(cli.command, ui).await;
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

/// Raise the soft limit on open files to the hard limit. Every account holds its
/// persistent profile's lock (one descriptor) for the whole run, and every browser a
/// few pipes and sockets: the common soft limit of 1024 would fail a 1000-account
/// batch at start-up, while the hard limit (usually 512 Ki or more) is ours to take.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::debug!("cannot raise the open-files limit from {soft} to {hard}: {e}");
    }
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
