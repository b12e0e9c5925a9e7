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
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod args;
mod commands;
mod logging;
mod view;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    logging::init();
    raise_fd_limit();
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
