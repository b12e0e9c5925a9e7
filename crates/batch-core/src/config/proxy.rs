//! Proxies: an account's `proxy` field, `[browser] proxy` (the template an account
//! without one gets), and the check every proxy passes before anything launches.
//!
//! Main items: [`proxy_of`] and [`proxy_ca_of`] (what one account's browser is given)
//! and [`ProxyDefault`]. An account's `proxy = "none"` ([`NO_PROXY`]) means no proxy,
//! whatever the default says. Nothing here starts a forwarder or speaks to a proxy:
//! that is the `forwarder` crate, started by the runner's pool.

use std::path::{Path, PathBuf};

use super::identity::own;
use super::template::{Part, Template, Vars};
use super::{Account, Accounts, BrowserSettings, ConfigError, EnvLookup, FieldValue, Settings};

/// An account's `proxy = "none"`: no proxy for it, even with a `[browser] proxy`.
pub const NO_PROXY: &str = "none";

/// `[browser] proxy`: a template rendered once per account that has no `proxy` of its
/// own — `"http://{account.username}-session-{account.id}:{env.GATE_PASSWORD}@…"` for
/// a gateway that tells sessions apart by user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyDefault {
    /// The template; `{account.FIELD}` and `{env.NAME}` are its only variables.
    pub template: Template,
    /// Its line in `batch.toml`, for messages (set by the file's loader).
    pub line: usize,
}

impl ProxyDefault {
    /// `fn(&str) -> ProxyDefault`, its line not yet known. A variable with no value at
    /// the moment a browser starts (`{iteration}`, `{step.id}`, `{base_url}`, a
    /// one-time code) is refused.
    pub(crate) fn parse(s: &str) -> Result<ProxyDefault, String> {
        if s.trim().is_empty() {
            let expected = "a proxy URL like \"http://127.0.0.1:3128\", or no proxy key";
            return Err(format!("an empty proxy (expected {expected})"));
        }
        let template = Template::parse(s)?;
        let per_account = |p: &&Part| matches!(p, Part::Account(_) | Part::Env(_));
        if let Some(part) = template.variables().find(|p| !per_account(p)) {
            return Err(format!(
                "{part} has no value for a proxy, which is chosen once per account (expected \
                 {{account.FIELD}} or {{env.NAME}})"
            ));
        }
        Ok(ProxyDefault { template, line: 0 })
    }
}

/// The account's proxies, in the order they are tried (none: empty). Validated when
/// the project was loaded; the `[browser] proxy` default is one of its fields by then.
/// A field may list several, separated by white space: the browser uses the first
/// it can reach.
pub fn proxy_of(account: &Account) -> Vec<forwarder::Upstream> {
    let proxy = own(account, "proxy").filter(|p| *p != NO_PROXY);
    let urls = proxy.into_iter().flat_map(str::split_whitespace);
    urls.filter_map(|u| forwarder::Upstream::parse(u).ok())
        .collect()
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
/// passed) — or empty, or `none`; or several such URLs separated by white space,
/// all SOCKS5 or all HTTP(S) (a list is tried in order, and a request is written
/// differently for the two). Credentials are allowed: they reach the upstream
/// through a loopback forwarder, never a command line. The message never quotes the
/// URL (it may hold a password).
fn check_proxy(proxy: &str) -> Result<(), String> {
    if proxy.contains(char::is_control) {
        let expected = "a URL such as http://127.0.0.1:3128";
        return Err(format!(
            "a control character in the proxy URL (expected {expected})"
        ));
    }
    if proxy.is_empty() || proxy == NO_PROXY {
        return Ok(());
    }
    let urls: Vec<&str> = proxy.split_whitespace().collect();
    let mut socks = None;
    for (i, url) in urls.iter().enumerate() {
        let at = |m: String| match urls.len() {
            1 => m,
            _ => format!("the {} of {} proxies: {m}", ordinal(i + 1), urls.len()),
        };
        if *url == NO_PROXY {
            return Err(at(
                "\"none\" in a list (expected \"none\" alone, or proxy URLs)".into(),
            ));
        }
        let upstream = forwarder::Upstream::parse(url).map_err(|e| at(e.to_string()))?;
        let is_socks = upstream.scheme == forwarder::Scheme::Socks5;
        if *socks.get_or_insert(is_socks) != is_socks {
            return Err(at(
                "socks5 and http(s) proxies in one list (expected proxies of one kind: a list \
                 is tried in order)"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// "1st", "2nd", "3rd", "4th", … for the small numbers of a list.
fn ordinal(n: usize) -> String {
    match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => format!("{n}th"),
        (1, _) => format!("{n}st"),
        (2, _) => format!("{n}nd"),
        (3, _) => format!("{n}rd"),
        _ => format!("{n}th"),
    }
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

/// Gives every account without a `proxy` of its own (no field, or an empty CSV cell)
/// the `[browser] proxy` default, rendered for it, as if the accounts file said so:
/// the forwarder, the run's secrets and an `exec` program's `BATCH_ACCOUNT_PROXY` see
/// it the same way. The field is secret when the template puts a secret in
/// (`{env.NAME}`, a secret field). Every account is rendered and checked, as the
/// accounts file is checked whole: a default that cannot serve one account is bad
/// input even for a run that leaves it out.
pub(super) fn apply_default(
    settings: &Settings,
    accounts: &mut Accounts,
    env: EnvLookup<'_>,
) -> Result<(), ConfigError> {
    let Some(default) = &settings.browser.proxy else {
        return Ok(());
    };
    let err = |message: String| {
        let path = settings.config_path.as_path();
        ConfigError::invalid(path, Some(default.line), "browser.proxy", message)
    };
    for a in &mut accounts.accounts {
        if own(a, "proxy").is_some() {
            continue;
        }
        let vars = Vars {
            base_url: "",
            account: a,
            iteration: 0,
            step: 0,
            data: None,
        };
        let rendered = default.template.render_with_env(&vars, env).map_err(err)?;
        check_proxy(&rendered.value).map_err(|m| err(format!("for account {}: {m}", a.id)))?;
        let secret = !default.template.is_secret_free(a);
        let value = rendered.value;
        a.fields
            .insert("proxy".into(), FieldValue { value, secret });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_project_with_env;

    /// A project whose `[browser]` has `browser` and whose accounts file is `accounts`
    /// (`.toml` or `.csv` by `name`), loaded with `GATE_PW` set.
    fn load(browser: &str, name: &str, accounts: &str) -> Result<Accounts, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let batch = format!("accounts = \"{name}\"\n[browser]\n{browser}\n");
        std::fs::write(d.join("batch.toml"), batch).unwrap();
        std::fs::write(
            d.join("workflow.toml"),
            "[[steps]]\nid = 1\nactions = [{ click = \"#a\" }]\n",
        )
        .unwrap();
        std::fs::write(d.join(name), accounts).unwrap();
        let env = |n: &str| (n == "GATE_PW").then(|| "gate-pw-7".to_owned());
        load_project_with_env(&d.join("batch.toml"), &env).map(|p| p.accounts)
    }

    /// An account's id, its `proxy` field after loading (`None`: no field) with
    /// whether it is secret, and what its browser is given.
    type Row = (u64, Option<(String, bool)>, Option<String>);

    fn proxies(accounts: &Accounts) -> Vec<Row> {
        let a = accounts.accounts.iter();
        a.map(|a| {
            let field = a.fields.get("proxy").map(|f| (f.value.clone(), f.secret));
            let given = proxy_of(a).first().map(|u| u.without_credentials());
            (a.id, field, given)
        })
        .collect()
    }

    #[test]
    fn the_default_serves_each_account_without_a_proxy_of_its_own() {
        let toml = "[[accounts]]\nid = 1\nusername = \"u1\"\n\
                    [[accounts]]\nid = 2\nusername = \"u2\"\nproxy = \"socks5://127.0.0.1:1080\"\n\
                    [[accounts]]\nid = 3\nusername = \"u3\"\nproxy = \"none\"\n";
        let csv = "id,username,proxy\n1,u1,\n2,u2,socks5://127.0.0.1:1080\n3,u3,none\n";
        let some = |v: &str, secret| Some((v.to_owned(), secret));
        let url = |v: &str| Some(v.to_owned());
        for (browser, file, text, want) in [
            // No default: only the account's own proxy; `none` is no proxy.
            (
                "",
                "a.toml",
                toml,
                vec![
                    (1, None, None),
                    (
                        2,
                        some("socks5://127.0.0.1:1080", false),
                        url("socks5://127.0.0.1:1080"),
                    ),
                    (3, some("none", false), None),
                ],
            ),
            // A default with the account's name in it; not secret.
            (
                "proxy = \"http://{account.username}-s{account.id}@127.0.0.1:3128\"",
                "a.toml",
                toml,
                vec![
                    (
                        1,
                        some("http://u1-s1@127.0.0.1:3128", false),
                        url("http://127.0.0.1:3128"),
                    ),
                    (
                        2,
                        some("socks5://127.0.0.1:1080", false),
                        url("socks5://127.0.0.1:1080"),
                    ),
                    (3, some("none", false), None),
                ],
            ),
            // A password from the environment makes the field secret; an empty CSV cell
            // takes the default.
            (
                "proxy = \"http://{account.username}:{env.GATE_PW}@127.0.0.1:3128\"",
                "a.csv",
                csv,
                vec![
                    (
                        1,
                        some("http://u1:gate-pw-7@127.0.0.1:3128", true),
                        url("http://127.0.0.1:3128"),
                    ),
                    (
                        2,
                        some("socks5://127.0.0.1:1080", false),
                        url("socks5://127.0.0.1:1080"),
                    ),
                    (3, some("none", false), None),
                ],
            ),
        ] {
            let got = load(browser, file, text).unwrap();
            assert_eq!(proxies(&got), want, "{browser} {file}");
        }
    }

    /// A field may list proxies, tried in order; each is given to the browser.
    #[test]
    fn a_field_may_list_proxies_in_order() {
        let toml =
            "[[accounts]]\nid = 1\nproxy = \"http://u:pw@127.0.0.1:1  https://127.0.0.1:2\"\n";
        let got = load("", "a.toml", toml).unwrap();
        let given: Vec<String> = proxy_of(&got.accounts[0])
            .iter()
            .map(|u| u.without_credentials())
            .collect();
        assert_eq!(given, ["http://127.0.0.1:1", "https://127.0.0.1:2"]);
        let csv = "id,proxy\n1,socks5://127.0.0.1:1 socks5://127.0.0.1:2 socks5://127.0.0.1:3\n";
        assert_eq!(
            proxy_of(&load("", "a.csv", csv).unwrap().accounts[0]).len(),
            3
        );
        assert_eq!(
            (1..=4)
                .chain([11, 12, 13, 21, 22, 101])
                .map(ordinal)
                .collect::<Vec<_>>(),
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"
            ]
        );
    }

    /// The default's line is the key's; messages never show the rendered URL.
    #[test]
    fn a_default_that_fails_one_account_names_the_line_and_the_account() {
        let accounts =
            "[[accounts]]\nid = 1\nport = \"3128\"\n[[accounts]]\nid = 4\nport = \"x\"\n";
        let browser = "\n\nproxy = \"http://u:{env.GATE_PW}@127.0.0.1:{account.port}\"";
        let e = load(browser, "a.toml", accounts).unwrap_err().to_string();
        assert!(
            e.contains("batch.toml:5: browser.proxy: for account 4: ")
                && !e.contains("gate-pw-7")
                && !e.contains("127.0.0.1"),
            "{e}"
        );
    }
}
