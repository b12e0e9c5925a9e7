//! The tracing subscriber: `BATCH_LOG` — or, when it is unset, `RUST_LOG` — (default
//! `warn`, or what `-v`/`-q` say) to stderr, printed above the live view's bars (never
//! through them), with two rules the user cannot override.
//!
//! - The WebDriver client's libraries (thirtyfour, reqwest, hyper, h2, …) log whole
//!   request bodies at `debug` and `trace` — including the text typed into a password
//!   field. They are capped at `info` by a second filter after the user's, so no
//!   directive in `BATCH_LOG` or `RUST_LOG` (not even `thirtyfour::session=trace`)
//!   can raise them.
//! - A closed stderr is not an error: log lines are dropped, nothing panics.

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

/// The user's filter directives: `BATCH_LOG` if set, else `RUST_LOG` (the variable
/// every Rust program's users know), else `default` (from `-v`/`-q`). An empty
/// variable counts as unset, as `RUST_LOG=` usually means "nothing special".
pub(crate) fn user_directives(
    batch_log: Option<String>,
    rust_log: Option<String>,
    default: &str,
) -> String {
    [batch_log, rust_log]
        .into_iter()
        .flatten()
        .find(|d| !d.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Install the subscriber (once, at start-up).
pub(crate) fn init(default: &str, ansi: bool) {
    let var = |name: &str| std::env::var(name).ok();
    let directives = user_directives(var("BATCH_LOG"), var("RUST_LOG"), default);
    subscriber(&directives, default, ansi, || Quiet(std::io::stderr())).init();
}

/// The subscriber for the user's `directives`, writing to `writer`: the user's filter
/// first, then the cap on body loggers, which therefore no directive can lift.
fn subscriber<W>(
    directives: &str,
    default: &str,
    ansi: bool,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // Directives that do not parse fall back to the default rather than to silence.
    let user = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new(default));
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer)
        .with_filter(user)
        .with_filter(filter_fn(never_a_body));
    tracing_subscriber::registry().with(layer)
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
    fn batch_log_wins_then_rust_log_then_the_flags() {
        let check = |batch: Option<&str>, rust: Option<&str>, expected: &str| {
            let got = user_directives(batch.map(Into::into), rust.map(Into::into), "warn");
            assert_eq!(got, expected, "BATCH_LOG={batch:?} RUST_LOG={rust:?}");
        };
        check(None, None, "warn");
        check(Some("debug"), None, "debug");
        check(None, Some("trace"), "trace");
        check(Some("info"), Some("trace"), "info");
        check(Some(""), Some("trace"), "trace");
        check(Some(" "), Some(""), "warn");
        check(None, Some("thirtyfour=trace"), "thirtyfour=trace");
    }

    /// What the real subscriber writes for events of body-logging crates at every
    /// level, and of our own crates, under the user's `directives`.
    fn logged_under(directives: &str) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let sub = subscriber(directives, "warn", false, move || out.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::trace!(target: "thirtyfour::session::http", "BODY trace typed=pass-1");
            tracing::debug!(target: "thirtyfour::session::http", "BODY debug typed=pass-1");
            tracing::trace!(target: "reqwest::connect", "BODY reqwest");
            tracing::debug!(target: "hyper_util::client::legacy", "BODY hyper");
            tracing::info!(target: "thirtyfour", "thirtyfour info");
            tracing::debug!(target: "batch_core::runner", "ours debug");
            tracing::warn!(target: "batch_core::runner", "ours warn");
        });
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn no_directive_lifts_the_cap_on_body_loggers() {
        // (As with any `EnvFilter`, targets a directive list does not name are off
        // unless it has a bare level.)
        let check = |directives: &str, ours: (bool, bool), thirtyfour_info: bool| {
            let text = logged_under(directives);
            assert!(
                !text.contains("BODY"),
                "{directives}: a body was logged:\n{text}"
            );
            let shown = (text.contains("ours warn"), text.contains("ours debug"));
            assert_eq!(shown, ours, "{directives}:\n{text}");
            assert_eq!(
                text.contains("thirtyfour info"),
                thirtyfour_info,
                "{directives}:\n{text}"
            );
        };
        check("warn", (true, false), false);
        check("trace", (true, true), true);
        check("debug", (true, true), true);
        check(
            "thirtyfour=trace,reqwest=trace,hyper=trace",
            (false, false),
            true,
        );
        check(
            "batch_core=debug,thirtyfour=trace,reqwest=trace,hyper=trace",
            (true, true),
            true,
        );
        check(
            "debug,thirtyfour=trace,thirtyfour::session=trace,reqwest=trace,hyper_util=trace",
            (true, true),
            true,
        );
        // Nonsense falls back to the default, not to everything.
        check("[[[", (true, false), false);
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
