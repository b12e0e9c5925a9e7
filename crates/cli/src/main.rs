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
