//! Project automation, the cargo-xtask way: `cargo xtask <command>`.
//!
//! - `run` — install what is missing, build, serve the demo app, and run five demo
//!   accounts × 10 iterations concurrently through real Chromium.
//! - `test` — install check, `cargo fmt --check`, clippy `-D warnings`, the whole
//!   test suite (real-Chromium tests in a bounded nextest group), doctests.
//! - `stress` — the long collision stress run (many browsers at once, many rounds).
//! - `bench` — side-by-side launch benchmarks that print ratios.
//! - `fuzz` — the config layer's property tests, many more cases, for a time box.
//! - `grid` — a real Selenium Grid 4 on loopback (hub + two nodes), started and stopped.
//!
//! One module per command; as few dependencies as possible.

mod bench;
mod deps;
mod fuzz;
mod grid;
mod gridctl;
mod peers;
mod run;
mod scratch;
mod stress;
mod test;
mod util;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .map(|(c, r)| (c.as_str(), r))
        .unwrap_or(("help", &[]));
    match cmd {
        "run" => run::run(rest),
        "test" => test::test(rest),
        "stress" => stress::stress(rest),
        "bench" => bench::bench(rest),
        "deps" => deps::ensure(),
        "fuzz" => fuzz::fuzz(rest),
        "grid" => grid::grid(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <run|test|stress|bench|fuzz|deps|grid>\n\
                 \x20 run     run the built-in demo (5 accounts × 10 iterations, concurrent)\n\
                 \x20 test    fmt check, clippy, the whole test suite with real Chromium\n\
                 \x20 stress  [--accounts N] [--rounds R]  collision stress run (default 20 × 50)\n\
                 \x20 stress  --many N [--hold SECS]  N accounts at once with the defaults\n\
                 \x20 bench   [--rounds R] [--only NAME,…] [--workload NxQ]  pacing configurations and peers side by side, as ratios\n\
                 \x20 fuzz    [--secs N] [--cases C]  config property tests, C cases a round, for N s\n\
                 \x20 bench   proxy [--rounds R]  the proxy forwarder against a direct proxy\n\
                 \x20 deps    install what the tests need if missing: Debian's chromium, chromium-driver, Java and tmux, selenium (target/py-venv), puppeteer-core (target/node-puppeteer), the Grid's jar\n\
                 \x20 grid    start|stop|status [--dir DIR] [--nodes N]  a local Selenium Grid 4 (hub + nodes)"
            );
            std::process::exit(if cmd == "help" || cmd == "--help" {
                0
            } else {
                2
            });
        }
    }
}
