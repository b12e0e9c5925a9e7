//! Proxies: an account's `proxy` field and the check every proxy passes before
//! anything launches.
//!
//! Main items: [`proxy_of`] and [`proxy_ca_of`] (what one account's browser is
//! given). Nothing here starts a forwarder or speaks to a proxy:
//! that is the `forwarder` crate, started by the runner's pool.

use std::path::{Path, PathBuf};

use super::identity::own;
use super::{Account, BrowserSettings, ConfigError};

/// The account's proxy, if it has one (validated when the accounts were loaded).
pub fn proxy_of(account: &Account) -> Option<forwarder::Upstream> {
    forwarder::Upstream::parse(own(account, "proxy")?).ok()
}

/// The CA file an account's `https://` proxy is checked against, besides the
/// system's roots: its own `proxy_ca` (relative to the accounts file's directory), or
/// `[browser] proxy_ca` (already absolute). Both were read and checked on loading.
pub fn proxy_ca_of(
    browser: &BrowserSettings,
    accounts_file: &Path,
    account: &Account,
) -> Option<PathBuf> {
    match own(account, "proxy_ca") {
        Some(own) => Some(accounts_file.parent().unwrap_or(Path::new(".")).join(own)),
        None => browser.proxy_ca.clone(),
    }
}

/// A proxy must be a URL the browser can use (`forwarder::Upstream::parse`, the same
/// parser the runner uses at launch): http, https or socks5, a host, no path, and no
/// control character (it goes into Chromium's argv, where a NUL cannot even be
/// passed) — or empty. Credentials are allowed: they reach the upstream
/// through a loopback forwarder, never a command line. The message never quotes the
/// URL (it may hold a password).
fn check_proxy(proxy: &str) -> Result<(), String> {
    if proxy.contains(char::is_control) {
        return Err(
            "a control character in the proxy URL (expected a URL such as \
                    http://127.0.0.1:3128)"
                .to_owned(),
        );
    }
    if proxy.is_empty() {
        return Ok(());
    }
    forwarder::Upstream::parse(proxy)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Every account's own `proxy`, through [`check_proxy`]; a control character in any
/// of them is reported first.
pub(super) fn check_proxies(path: &Path, accounts: &[Account]) -> Result<(), ConfigError> {
    let proxies = || {
        accounts
            .iter()
            .filter_map(|a| Some((a.id, a.fields.get("proxy")?.value.as_str())))
    };
    let control = proxies()
        .filter(|(_, p)| p.contains(char::is_control))
        .take(1);
    for (id, proxy) in control.chain(proxies()) {
        check_proxy(proxy).map_err(|message| {
            ConfigError::invalid(path, None, format!("account {id}, proxy"), message)
        })?;
    }
    Ok(())
}
