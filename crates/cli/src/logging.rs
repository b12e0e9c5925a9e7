//! The tracing subscriber: `BATCH_LOG` (default `warn`, or what `-v`/`-q` say) to
//! stderr, printed above the live view's bars (never through them), with two rules
//! the user cannot override.
//!
//! - The WebDriver client's libraries (thirtyfour, reqwest, hyper, h2, …) log whole
//!   request bodies at `debug` and `trace` — including the text typed into a password
//!   field. They are capped at `info` by a second filter after the user's, so no
//!   directive in `BATCH_LOG` (not even `thirtyfour::session=trace`) can raise them.
//! - A closed stderr is not an error: log lines are dropped, nothing panics.
//!
//! `RUST_LOG` is not read.

use std::io::Write;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::prelude::*;

/// Crates whose debug output carries request or response bodies.
const BODY_LOGGERS: &[&str] = &[
    "thirtyfour",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "http",
    "tower",
    "tower_http",
    "rustls",
];

/// True if the event may be logged whatever the user asked: nothing above `info`
/// from a crate that logs bodies.
pub(crate) fn never_a_body(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    let crate_name = target.split("::").next().unwrap_or(target);
    !BODY_LOGGERS.contains(&crate_name) || *meta.level() <= Level::INFO
}

/// The filter without `BATCH_LOG`: `-q` errors only, else `warn`, `-v` `info`, `-vv`
/// `debug`, `-vvv` `trace`.
pub(crate) fn default_level(verbose: u8, quiet: bool) -> &'static str {
    match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    }
}

/// Install the subscriber (once, at start-up).
pub(crate) fn init(default: &str, ansi: bool) {
    let user = EnvFilter::try_from_env("BATCH_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(|| Quiet(std::io::stderr()))
        .with_filter(user)
        .with_filter(filter_fn(never_a_body));
    tracing_subscriber::registry().with(layer).init();
}

/// A writer that reports success whatever happened: log lines on a closed stderr
/// are lost, and nothing (tracing-subscriber's own error report included) panics.
struct Quiet<W>(W);

impl<W: Write> Write for Quiet<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // tracing-subscriber writes each event with one call: one suspend per line.
        crate::view::suspend(|| {
            let _ = self.0.write_all(buf);
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_loggers_are_capped_at_info() {
        // Metadata cannot be built by hand; check through a real callsite per level.
        macro_rules! meta {
            ($target:expr, $level:expr) => {{
                static CS: tracing::callsite::DefaultCallsite =
                    tracing::callsite::DefaultCallsite::new(&META);
                static META: Metadata<'static> = tracing::metadata!(
                    name: "t",
                    target: $target,
                    level: $level,
                    fields: &[],
                    callsite: &CS,
                    kind: tracing::metadata::Kind::EVENT,
                );
                &META
            }};
        }
        assert!(!never_a_body(meta!(
            "thirtyfour::session::http",
            Level::DEBUG
        )));
        assert!(!never_a_body(meta!("reqwest::connect", Level::TRACE)));
        assert!(!never_a_body(meta!("hyper_util::client", Level::DEBUG)));
        assert!(never_a_body(meta!("thirtyfour", Level::INFO)));
        assert!(never_a_body(meta!("h2", Level::WARN)));
        assert!(never_a_body(meta!("batch_core::runner", Level::TRACE)));
        assert!(never_a_body(meta!("hyperlink", Level::DEBUG)));
    }

    #[test]
    fn a_closed_stderr_is_not_an_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
        }
        let mut w = Quiet(Closed);
        assert_eq!(w.write(b"line\n").unwrap(), 5);
        w.flush().unwrap();
    }
}
