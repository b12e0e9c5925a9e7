//! Per-account browser identity: user agent, languages, time zone, window size and
//! extra Chromium switches — `[browser]` defaults, overridden by account fields of
//! the same meaning (`user_agent`, `accept_language`, `timezone`, `window_size`,
//! `browser_args`).
//!
//! Main items: [`Identity`] and [`identity_of`] (what one account's browser gets), and
//! the value checks shared by `batch.toml` and the accounts file, so both refuse the
//! same values with the same words. A value is checked where it is written (the file
//! and line); a clash between the two files (a `--user-agent` switch in
//! `[browser] args` for an account that sets `user_agent`) is checked per account.

use std::path::Path;

use super::{Account, BrowserSettings};

/// Account fields that set a browser option, each checked when the accounts load.
pub const ACCOUNT_FIELDS: &[&str] = &[
    "user_agent",
    "accept_language",
    "timezone",
    "window_size",
    "browser_args",
];

/// What one account's browser is started with, beyond the common switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `--user-agent=` (None: Chromium's own).
    pub user_agent: Option<String>,
    /// Languages in order, comma-separated (`de-DE,de`): Accept-Language and
    /// `navigator.languages`.
    pub accept_language: Option<String>,
    /// An IANA time zone (`Asia/Seoul`).
    pub timezone: Option<String>,
    /// Window size in pixels.
    pub window_size: (u32, u32),
    /// `[browser] args`, then the account's `browser_args`.
    pub args: Vec<String>,
}

/// The account's own value of `field`, if it sets one (an empty CSV cell sets none).
pub(super) fn own<'a>(account: &'a Account, field: &str) -> Option<&'a str> {
    account
        .fields
        .get(field)
        .map(|f| f.value.as_str())
        .filter(|v| !v.is_empty())
}

/// `fn(defaults, account) -> Identity`: the account's fields over the `[browser]`
/// defaults. Values were validated on loading; one that somehow is not is ignored
/// rather than passed to Chromium.
pub fn identity_of(browser: &BrowserSettings, account: &Account) -> Identity {
    let pick = |field: &str, default: &Option<String>| {
        own(account, field)
            .map(str::to_owned)
            .or_else(|| default.clone())
    };
    let mut args = browser.args.clone();
    if let Some(extra) = own(account, "browser_args") {
        args.extend(extra.split_whitespace().map(str::to_owned));
    }
    Identity {
        user_agent: pick("user_agent", &browser.user_agent),
        accept_language: pick("accept_language", &browser.accept_language),
        timezone: pick("timezone", &browser.timezone),
        window_size: own(account, "window_size")
            .and_then(|s| parse_window_size(s).ok())
            .unwrap_or(browser.window_size),
        args,
    }
}

/// `Err(problem)` if `value` is not a valid value of the account field `field` (one
/// of [`ACCOUNT_FIELDS`]); `Ok` for any other field.
pub(crate) fn check_account_field(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    match field {
        "user_agent" => check_user_agent(value),
        "accept_language" => check_accept_language(value),
        "timezone" => check_timezone(value),
        "window_size" => parse_window_size(value).map(drop),
        "browser_args" => value.split_whitespace().try_for_each(check_switch),
        _ => Ok(()),
    }
}

/// Clashes between an account's identity and its switches: with `user_agent` set, a
/// `--user-agent` switch would silently decide instead (Chromium takes the last of a
/// repeated switch); likewise `accept_language` and `--lang`. `Err((field, problem))`.
pub(crate) fn check_clashes(identity: &Identity) -> Result<(), (&'static str, String)> {
    for arg in &identity.args {
        let name = switch_name(arg).unwrap_or_default();
        let clash = if name.eq_ignore_ascii_case("user-agent") && identity.user_agent.is_some() {
            Some("user_agent")
        } else if name.eq_ignore_ascii_case("lang") && identity.accept_language.is_some() {
            Some("accept_language")
        } else {
            None
        };
        if let Some(key) = clash {
            return Err((
                key,
                format!(
                    "{arg:?} in the browser switches contradicts {key}, which sets it (expected one of the two: {key}, or the switch)"
                ),
            ));
        }
    }
    Ok(())
}

/// The switch's name: `--name=value` / `-name` → `name`.
pub(super) fn switch_name(arg: &str) -> Option<&str> {
    let name = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    Some(name.split_once('=').map_or(name, |(n, _)| n).trim())
}

/// One extra Chromium switch: printable, a switch, and not one batch-cli manages.
pub(crate) fn check_switch(arg: &str) -> Result<(), String> {
    if let Some((switch, hint)) = super::settings::managed_switch(arg) {
        return Err(format!(
            "{arg:?} overrides --{switch}, which batch-cli manages ({hint}; expected other switches)"
        ));
    }
    // Chromium's argv: a NUL cannot be passed, and no control character is meant.
    if arg.contains(char::is_control) {
        return Err("a control character (expected printable switches)".to_owned());
    }
    Ok(())
}

/// A user agent goes into Chromium's argv and every request's header: printable,
/// not blank.
pub(crate) fn check_user_agent(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err(
            "an empty user agent (expected a User-Agent string like \"Mozilla/5.0 …\")".into(),
        );
    }
    if s.contains(char::is_control) {
        return Err(
            "a control character in the user agent (expected a printable User-Agent string)".into(),
        );
    }
    Ok(())
}

/// Languages as Chromium's `intl.accept_languages` takes them: language tags
/// (BCP 47 shape: letters, then `-` and letters or digits), comma-separated, without
/// `;q=` weights — Chromium adds those itself (measured: `de-DE,de` is sent as
/// `de-DE,de;q=0.9`; weights written in are sent doubled).
pub(crate) fn check_accept_language(s: &str) -> Result<(), String> {
    let expected = "language tags separated by commas, like \"de-DE,de\" (no ;q= weights)";
    for tag in s.split(',').map(str::trim) {
        let mut parts = tag.split('-');
        let first = parts.next().unwrap_or_default();
        let ok = (1..=8).contains(&first.len())
            && first.chars().all(|c| c.is_ascii_alphabetic())
            && parts.all(|p| {
                (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if !ok {
            return Err(format!(
                "{tag:?} is not a language tag (expected {expected})"
            ));
        }
    }
    Ok(())
}

/// The first language of an `accept_language` list: Chromium's `--lang`.
pub fn primary_language(accept_language: &str) -> &str {
    accept_language.split(',').next().unwrap_or_default().trim()
}

/// An IANA time zone name. Chromium given an unknown zone silently runs in
/// `Etc/Unknown` (measured with `TZ=Bogus/Zone`), so the name must be one this host's
/// time zone database knows (`/usr/share/zoneinfo`), where there is one.
pub(crate) fn check_timezone(s: &str) -> Result<(), String> {
    let expected = "an IANA time zone name like \"Asia/Seoul\" or \"UTC\"";
    // An empty name, or one starting with `/`, has an empty part.
    let shaped = !s.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c));
    if !shaped {
        return Err(format!("{s:?} is not a time zone (expected {expected})"));
    }
    let db = Path::new("/usr/share/zoneinfo");
    if db.is_dir() && !db.join(s).is_file() {
        return Err(format!(
            "{s:?} is not a time zone this host knows (expected {expected}, as listed under /usr/share/zoneinfo)"
        ));
    }
    Ok(())
}

/// `"WIDTHxHEIGHT"`, both positive.
pub(crate) fn parse_window_size(s: &str) -> Result<(u32, u32), String> {
    let expected = "WIDTHxHEIGHT, like \"1280x800\"";
    let size = s.split_once(['x', 'X']).and_then(|(w, h)| {
        let w: u32 = w.trim().parse().ok()?;
        let h: u32 = h.trim().parse().ok()?;
        (w > 0 && h > 0).then_some((w, h))
    });
    size.ok_or_else(|| format!("{s:?} is not a window size (expected {expected})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldValue;

    fn account(fields: &[(&str, &str)]) -> Account {
        Account {
            id: 1,
            fields: fields
                .iter()
                .map(|(k, v)| {
                    let value = FieldValue {
                        value: (*v).to_owned(),
                        secret: false,
                    };
                    ((*k).to_owned(), value)
                })
                .collect(),
        }
    }

    #[test]
    fn account_fields_override_the_defaults() {
        let browser = BrowserSettings {
            user_agent: Some("Default/1".into()),
            accept_language: Some("en-US,en".into()),
            args: vec!["--mute-audio".into()],
            ..BrowserSettings::default()
        };
        let plain = identity_of(&browser, &account(&[]));
        assert_eq!(plain.user_agent.as_deref(), Some("Default/1"));
        assert_eq!(plain.accept_language.as_deref(), Some("en-US,en"));
        assert_eq!((plain.timezone, plain.window_size), (None, (1280, 800)));
        assert_eq!(plain.args, ["--mute-audio"]);
        let own = identity_of(
            &browser,
            &account(&[
                ("user_agent", "Mine/2"),
                ("accept_language", "ko-KR,ko"),
                ("timezone", "Asia/Seoul"),
                ("window_size", "800x600"),
                ("browser_args", "--disable-notifications  --force-dark-mode"),
            ]),
        );
        assert_eq!(own.user_agent.as_deref(), Some("Mine/2"));
        assert_eq!(own.accept_language.as_deref(), Some("ko-KR,ko"));
        assert_eq!(own.timezone.as_deref(), Some("Asia/Seoul"));
        assert_eq!(own.window_size, (800, 600));
        assert_eq!(
            own.args,
            [
                "--mute-audio",
                "--disable-notifications",
                "--force-dark-mode"
            ]
        );
        // An empty CSV cell sets nothing.
        let empty = identity_of(&browser, &account(&[("user_agent", "")]));
        assert_eq!(empty.user_agent.as_deref(), Some("Default/1"));
        assert_eq!(primary_language("ko-KR, ko"), "ko-KR");
    }

    #[test]
    fn values_are_checked() {
        for (field, value, problem) in [
            ("user_agent", "Mozilla/5.0 (X11) Test/1", None),
            ("user_agent", "  ", Some("an empty user agent")),
            ("user_agent", "a\nb", Some("a control character")),
            ("accept_language", "de-DE,de", None),
            ("accept_language", "ko-KR, ko, en", None),
            ("accept_language", "zh-Hant-TW", None),
            ("accept_language", "de;q=0.9", Some("is not a language tag")),
            (
                "accept_language",
                "de,,en",
                Some("\"\" is not a language tag"),
            ),
            (
                "accept_language",
                "english language",
                Some("is not a language tag"),
            ),
            ("timezone", "Asia/Seoul", None),
            ("timezone", "UTC", None),
            (
                "timezone",
                "Bogus/Zone",
                Some("not a time zone this host knows"),
            ),
            ("timezone", "../etc/passwd", Some("is not a time zone")),
            ("timezone", "/etc/localtime", Some("is not a time zone")),
            ("window_size", "800x600", None),
            ("window_size", "0x600", Some("is not a window size")),
            ("browser_args", "--mute-audio --force-dark-mode", None),
            (
                "browser_args",
                "--mute-audio --user-data-dir=/x",
                Some("overrides --user-data-dir"),
            ),
            (
                "browser_args",
                "--proxy-server=http://p:1",
                Some("overrides --proxy-server"),
            ),
            (
                "browser_args",
                "--remote-debugging-port=1",
                Some("overrides --remote-debugging-port"),
            ),
            ("username", "anything\n", None),
        ] {
            let got = check_account_field(field, value);
            match problem {
                None => assert!(got.is_ok(), "{field}={value:?}: {got:?}"),
                Some(p) => {
                    let e = got.expect_err(value);
                    assert!(e.contains(p), "{field}={value:?}: {e}");
                }
            }
        }
    }

    #[test]
    fn dedicated_keys_and_their_switches_clash() {
        let browser = BrowserSettings {
            args: vec!["--lang=fr".into()],
            ..BrowserSettings::default()
        };
        // No accept_language: the switch is the user's way of choosing the language.
        assert!(check_clashes(&identity_of(&browser, &account(&[]))).is_ok());
        let with = identity_of(&browser, &account(&[("accept_language", "de")]));
        let (key, e) = check_clashes(&with).unwrap_err();
        assert_eq!(key, "accept_language");
        assert!(
            e.contains("\"--lang=fr\" in the browser switches contradicts accept_language"),
            "{e}"
        );
        let ua = identity_of(
            &BrowserSettings::default(),
            &account(&[("user_agent", "X/1"), ("browser_args", "--User-Agent=Y")]),
        );
        assert_eq!(check_clashes(&ua).unwrap_err().0, "user_agent");
    }
}
