//! A per-browser loopback forwarding proxy that adds the upstream proxy's
//! credentials, so a password never reaches Chromium's command line (readable by
//! every user in `/proc`), nor anyone's environment.
//!
//! Main items: [`Upstream::parse`] (the one parser of proxy URLs, also used for
//! validation before launch), [`Forwarder::start`] (RAII: listening on
//! `127.0.0.1:<ephemeral>` until dropped; TLS to an `https://` upstream, checked
//! against [`Trust`]: the system's roots plus an optional CA file; with
//! [`Forwarder::start_list`], several upstreams, the next used when one cannot be
//! reached), [`needs_forwarder`].
//! With the `testing` feature, `testing::AuthProxy` (a small authenticating upstream
//! proxy, over TLS too), `testing::Socks5Proxy` and `testing::TestCa`.
//!
//! It does not launch browsers, decide which account gets which proxy, or accept TLS
//! from its own clients (Chromium reaches it over loopback).

mod forward;
mod peer;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;
mod upstream;

pub use forward::{Forwarder, OnFailover, Stats};
pub use tls::{CaError, Trust};
pub use upstream::{Credentials, ParseError, Scheme, Upstream};

/// True when Chromium cannot use `upstream` by itself: it ignores credentials in
/// `--proxy-server` (and never does SOCKS5 authentication), so any proxy with
/// credentials goes through a [`Forwarder`]; so does an `https://` proxy whose
/// certificate is to be checked against a CA file of the user's (`own_ca`), which
/// Chromium would not trust.
pub fn needs_forwarder(upstream: &Upstream, own_ca: bool) -> bool {
    upstream.credentials.is_some() || (upstream.scheme == Scheme::Https && own_ca)
}

#[cfg(all(test, feature = "testing"))]
mod tests;
