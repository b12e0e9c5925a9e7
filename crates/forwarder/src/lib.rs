//! A per-browser loopback forwarding proxy that adds the upstream proxy's
//! credentials, so a password never reaches Chromium's command line (readable by
//! every user in `/proc`), nor anyone's environment.
//!
//! Main items: [`Upstream::parse`] (the one parser of proxy URLs, also used for
//! validation before launch), [`Forwarder::start`] (RAII: listening on
//! `127.0.0.1:<ephemeral>` until dropped), [`needs_forwarder`]. With the `testing`
//! feature, `testing::AuthProxy`, a small authenticating upstream proxy.
//!
//! It does not launch browsers, decide which account gets which proxy, or speak TLS.

mod forward;
mod peer;
#[cfg(feature = "testing")]
pub mod testing;
mod upstream;

pub use forward::{Forwarder, Stats};
pub use upstream::{Credentials, ParseError, Scheme, Upstream};

/// True when Chromium cannot use `upstream` by itself: it ignores credentials in
/// `--proxy-server` (and never does SOCKS5 authentication), so any proxy with
/// credentials goes through a [`Forwarder`].
pub fn needs_forwarder(upstream: &Upstream) -> bool {
    upstream.credentials.is_some()
}

#[cfg(all(test, feature = "testing"))]
mod tests;
