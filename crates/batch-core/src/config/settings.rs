//! Loading `batch.toml`: the paths of the workflow and accounts files, and the
//! `[browser]`, `[launch]`, `[profiles]`, `[ports]`, `[resources]`, `[pool]`,
//! `[retry]` and `[timeouts]` sections, each key optional with a default.
//!
//! Main items: [`load_settings`] and [`Settings::defaults_for`]. The section types
//! (in the parent module) deserialize themselves through the value parsers below,
//! each key's default in their `Default`. Relative paths are resolved against the
//! file's directory, so every path in [`Settings`] is absolute. Command-line overrides
//! (`--headed`, `--retries`, …) are applied by the caller, not here; nothing here
//! checks that the browser or driver exist (that is `doctor`'s job).

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Value;

use super::doc::{
    Bad, Doc, Seg, dotted, found, integer, positive, positive_u32, section, string, value,
};
use super::error::{file_dir, read_text};
use super::identity::{check_accept_language, check_timezone, check_user_agent};
use super::units::{parse_launch_interval, parse_size};
use super::{ConfigError, HealthSettings, LaunchInterval, ProxyDefault};

section! {
    /// `batch.toml`, loaded with defaults filled in. Paths are absolute once loaded
    /// ([`Settings::defaults_for`]; `Default` is a file that sets nothing, unresolved).
    /// Every key once, in the order error messages list them.
    pub struct Settings {
        /// The `batch.toml` path (absolute).
        #[serde(skip)]
        config_path: PathBuf = PathBuf::new();
        /// Its directory (exec programs run here; relative paths are relative to it).
        #[serde(skip)]
        root: PathBuf = PathBuf::new();
        /// `workflow` (default `workflow.toml`).
        workflow: PathBuf = "workflow.toml".into(), "path";
        /// `accounts` (default `accounts.toml`; `.csv` means CSV).
        accounts: PathBuf = "accounts.toml".into(), "path";
        /// `[browser]`.
        browser: BrowserSettings = Default::default();
        /// `[launch]`.
        launch: LaunchSettings = Default::default();
        /// `[profiles]`.
        profiles: ProfileSettings = Default::default();
        /// `[ports]`.
        ports: PortSettings = Default::default();
        /// `[resources]`.
        resources: ResourceSettings = Default::default();
        /// `[pool]`.
        pool: PoolSettings = Default::default();
        /// `[retry]`.
        retry: RetrySettings = Default::default();
        /// `[timeouts]`.
        timeouts: TimeoutSettings = Default::default();
        /// `[health]`.
        health: HealthSettings = Default::default();
    }
}

section! {
    /// `[browser]`.
    #[serde(expecting = "a [browser] section")]
    pub struct BrowserSettings {
        /// `chromium` (default: `chromium-headless-shell` when headless and installed,
        /// see `headless_shell`; else `/usr/lib/chromium/chromium`, `/usr/bin/chromium`, PATH).
        chromium: Option<PathBuf> = None, "program";
        /// `chromedriver` (default: search `/usr/bin/chromedriver`, PATH).
        chromedriver: Option<PathBuf> = None, "program";
        /// `headed` (default false).
        headed: bool = false, "boolean";
        /// `headless_shell` (default true): when `chromium` is not set and the run is
        /// headless, use `chromium-headless-shell` if it is installed.
        headless_shell: bool = true, "boolean";
        /// `args`: extra Chromium switches.
        args: Vec<String> = Vec::new(), "args";
        /// `window_size` as `"WxH"` (default 1280x800).
        window_size: (u32, u32) = (1280, 800), "window_size";
        /// `user_agent` (default: Chromium's own); an account's `user_agent` overrides it.
        user_agent: Option<String> = None, "user_agent";
        /// `accept_language`, language tags like `"de-DE,de"` (default: Chromium's own);
        /// an account's `accept_language` overrides it.
        accept_language: Option<String> = None, "accept_language";
        /// `timezone`, an IANA name like `"Asia/Seoul"` (default: the host's); an
        /// account's `timezone` overrides it.
        timezone: Option<String> = None, "timezone";
        /// `webdriver_url`: take sessions from this remote WebDriver endpoint (a Selenium
        /// Grid) instead of local Chromium (default none; `--webdriver-url` overrides it).
        webdriver_url: Option<String> = None, "webdriver_url";
        /// `proxy_ca`: a PEM file of CA certificates trusted, besides the system's, for
        /// `https://` proxies (default none); absolute after loading; an account's
        /// `proxy_ca` overrides it.
        proxy_ca: Option<PathBuf> = None, "proxy_ca";
        /// `proxy`: a proxy URL template for every account without a `proxy` of its
        /// own (default none), `{account.FIELD}` and `{env.NAME}` filled in per account.
        proxy: Option<ProxyDefault> = None, "proxy";
    }
}

impl BrowserSettings {
    /// Which Chromium to look for when `chromium` is not set, for a run that is
    /// `headed` (this section's or `--headed`): the headless shell cannot show
    /// windows, so a headed run always takes the full browser.
    pub fn prefer(&self, headed: bool) -> launcher::Prefer {
        if self.headless_shell && !headed && !self.headed {
            launcher::Prefer::HeadlessShell
        } else {
            launcher::Prefer::Chromium
        }
    }
}

section! {
    /// `[launch]`.
    #[derive(Copy)]
    #[serde(expecting = "a [launch] section")]
    pub struct LaunchSettings {
        /// `lock` (default true).
        lock: bool = true, "boolean";
        /// `interval` (default `"auto"`; a duration such as `"2.5s"` for a fixed pause).
        interval: LaunchInterval = LaunchInterval::Auto, "interval";
        /// `max_concurrent` (default none: no cap).
        max_concurrent: Option<usize> = None, "max_concurrent";
    }
}

section! {
    /// `[profiles]`.
    #[serde(expecting = "a [profiles] section")]
    pub struct ProfileSettings {
        /// `root` (default `profiles/` beside batch.toml), absolute once loaded.
        root: PathBuf = "profiles".into(), "path";
        /// `ephemeral` (default false).
        ephemeral: bool = false, "boolean";
    }
}

section! {
    /// `[ports]`.
    #[serde(expecting = "a [ports] section")]
    pub struct PortSettings {
        /// `range = "20000-40000"` (default none: the kernel chooses).
        range: Option<(u16, u16)> = None, "port_range";
    }
}

section! {
    /// `[resources]`.
    #[derive(Copy)]
    #[serde(expecting = "a [resources] section")]
    pub struct ResourceSettings {
        /// `min_available_memory = "1GiB"` / `"512MiB"` in bytes (default 1 GiB):
        /// below it new browser creations wait.
        min_available_memory: u64 = 1 << 30, "size";
        /// `sample_interval` (default `2s`).
        sample_interval: Duration = Duration::from_secs(2), "positive_duration";
    }
}

section! {
    /// `[pool]`: when an account's browser is retired and replaced.
    #[derive(Copy)]
    #[serde(expecting = "a [pool] section")]
    pub struct PoolSettings {
        /// `retire_after = N` iterations (default: never).
        retire_after: Option<u32> = None, "retire_after";
        /// `max_browser_memory = "2GiB"` (default 2 GiB; `0` turns it off): a browser whose
        /// PSS has grown past it is replaced after its current iteration.
        max_browser_memory: Option<u64> = Some(2 << 30), "size_or_off";
    }
}

section! {
    /// `[retry]`.
    #[derive(Copy)]
    #[serde(expecting = "a [retry] section")]
    pub struct RetrySettings {
        /// `retries` (default 2).
        retries: u32 = 2, "retries";
        /// `backoff` (default `500ms`): first delay, doubled per attempt.
        backoff: Duration = Duration::from_millis(500), "duration";
    }
}

section! {
    /// `[timeouts]`.
    #[derive(Copy)]
    #[serde(expecting = "a [timeouts] section")]
    pub struct TimeoutSettings {
        /// `action` (default `10s`): default for waiting actions.
        action: Duration = Duration::from_secs(10), "positive_duration";
        /// `webdriver` (default `30s`): any single WebDriver request.
        webdriver: Duration = Duration::from_secs(30), "positive_duration";
        /// `launch` (default `30s`): starting one browser.
        launch: Duration = Duration::from_secs(30), "positive_duration";
    }
}

/// `batch.toml` as written: [`Settings`] before its paths are resolved.
type Raw = Settings;

impl Settings {
    /// The settings of a `batch.toml` at `config_path` that sets nothing: every default,
    /// with relative paths resolved against its directory. Reads nothing but the
    /// directory's canonical path.
    pub fn defaults_for(config_path: &Path) -> Settings {
        resolve(config_path, Raw::default())
    }
}

/// `raw` with every path made absolute against the directory of `config_path`.
fn resolve(config_path: &Path, mut raw: Raw) -> Settings {
    let root = absolute_dir(config_path);
    let file_name = config_path
        .file_name()
        .map_or_else(|| "batch.toml".into(), ToOwned::to_owned);
    let browser = &mut raw.browser;
    // A bare program name is kept for a PATH search; anything with a `/` is a path.
    for program in [&mut browser.chromium, &mut browser.chromedriver]
        .into_iter()
        .flatten()
    {
        if program.to_string_lossy().contains('/') {
            *program = root.join(&*program);
        }
    }
    if let Some(ca) = &mut browser.proxy_ca {
        *ca = root.join(&*ca);
    }
    for path in [&mut raw.workflow, &mut raw.accounts, &mut raw.profiles.root] {
        *path = root.join(&*path);
    }
    raw.config_path = root.join(file_name);
    raw.root = root;
    raw
}

/// The absolute, canonical (where it exists) directory holding `file`.
fn absolute_dir(file: &Path) -> PathBuf {
    let dir = file_dir(file);
    dir.canonicalize()
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
}

/// `fn(path) -> Settings`: reads `batch.toml` (which must exist) over the defaults.
pub fn load_settings(path: &Path) -> Result<Settings, ConfigError> {
    let text = read_text(path, "the project file (batch.toml)")?;
    parse_settings(path, &text)
}

pub(crate) fn parse_settings(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    let doc = Doc::new(path, text);
    let mut raw: Raw = doc.parse(&dotted, |_| None)?;
    let key = |k: &str| Seg::Key(k.into());
    if let Some(proxy) = &mut raw.browser.proxy {
        let span = doc
            .span_at(&[key("browser"), key("proxy")])
            .unwrap_or_default();
        proxy.line = doc.line(span.start);
    }
    let fail = |at: &[Seg], field: String, problem: String| {
        let span = doc.span_at(at).unwrap_or_default();
        Err(doc.err(Bad::new(span, field, problem)))
    };
    // Checked here rather than in `args` so that the error names the entry's own line.
    for (i, arg) in raw.browser.args.iter().enumerate() {
        if let Err(problem) = super::identity::check_switch(arg) {
            let at = [key("browser"), key("args"), Seg::Index(i)];
            return fail(&at, "browser.args".into(), problem);
        }
    }
    // `[browser] args` against the dedicated keys of the same section; an account's
    // own values are checked against the switches when the accounts load.
    let no_fields = super::Account {
        id: 0,
        fields: Default::default(),
    };
    let defaults = super::identity::identity_of(&raw.browser, &no_fields);
    if let Err((k, problem)) = super::identity::check_clashes(&defaults) {
        return fail(&[key("browser"), key(k)], format!("browser.{k}"), problem);
    }
    let settings = resolve(path, raw);
    // Read now, not at the first launch: a missing or broken CA file is bad input.
    if let Some(ca) = &settings.browser.proxy_ca
        && let Err(e) = forwarder::Trust::with_ca_file(ca)
    {
        let at = [key("browser"), key("proxy_ca")];
        return fail(&at, "browser.proxy_ca".into(), e.to_string());
    }
    Ok(settings)
}

value! {
    boolean -> bool = |v| v.as_bool().ok_or_else(|| found(v, "true or false"));
    path -> PathBuf = |v| non_empty(v, "a path string");
    program -> Option<PathBuf> = |v| non_empty(v, "a program name or path").map(Some);
    args -> Vec<String> = |v| {
        let expected = "an array of strings, like [\"--lang=en\"]";
        let items = v.as_array().ok_or_else(|| found(v, expected))?;
        items.iter().map(|a| string(a, expected).map(str::to_owned)).collect()
    };
    window_size -> (u32, u32) = |v| {
        super::identity::parse_window_size(string(v, "WIDTHxHEIGHT, like \"1280x800\"")?)
    };
    user_agent -> Option<String> =
        |v| checked(v, "a User-Agent string", check_user_agent);
    accept_language -> Option<String> =
        |v| checked(v, "language tags like \"de-DE,de\"", check_accept_language);
    timezone -> Option<String> =
        |v| checked(v, "an IANA time zone name like \"Asia/Seoul\"", check_timezone);
    webdriver_url -> Option<String> = |v| {
        let s = string(v, "a WebDriver URL like \"http://127.0.0.1:4444\"")?;
        // The same check as `--webdriver-url`, its message without the flag's name.
        crate::plan::check_webdriver_url(s)
            .map(Some)
            .map_err(|m| m.trim_start_matches("--webdriver-url ").to_owned())
    };
    proxy_ca -> Option<PathBuf> =
        |v| non_empty(v, "a path to a PEM file of CA certificates").map(Some);
    proxy -> Option<ProxyDefault> = |v| {
        let s = string(v, "a proxy URL like \"http://127.0.0.1:3128\", {account.FIELD} and {env.NAME} allowed")?;
        ProxyDefault::parse(s).map(Some)
    };
    interval -> LaunchInterval = |v| {
        let s = string(v, "a duration like \"2.5s\", or \"auto\"")?;
        parse_launch_interval(s).map_err(|m| format!("{s:?}: {m}"))
    };
    max_concurrent -> Option<usize> = |v| positive_u32(v).map(|n| Some(n as usize));
    retire_after -> Option<u32> = |v| positive_u32(v).map(Some);
    port_range -> Option<(u16, u16)> = |v| read_port_range(v).map(Some);
    size -> u64 = read_size;
    size_or_off -> Option<u64> = |v| read_size(v).map(|b| (b > 0).then_some(b));
    positive_duration -> Duration = |v| positive(v, "duration", "2s");
    duration -> Duration = super::doc::duration;
    retries -> u32 = |v| {
        integer(v, 0, u32::MAX.into(), "a whole number, 0 or more").map(|n| n as u32)
    };
}

/// A non-empty path.
fn non_empty(v: &Value, expected: &str) -> Result<PathBuf, String> {
    match string(v, expected)? {
        "" => Err(format!("an empty path (expected {expected})")),
        s => Ok(s.into()),
    }
}

/// A string that `check` accepts.
fn checked(v: &Value, expected: &str, check: Check) -> Result<Option<String>, String> {
    let s = string(v, expected)?;
    check(s).map(|()| Some(s.to_owned()))
}

type Check = fn(&str) -> Result<(), String>;

/// `"LOW-HIGH"`, refused here if the port allocator would refuse it later (after
/// profiles were locked): inverted, below 1024, above 65535, or too small for one
/// browser (each needs a driver port and a DevTools port).
fn read_port_range(v: &Value) -> Result<(u16, u16), String> {
    let expected = "\"LOW-HIGH\" with 1024 <= LOW < HIGH <= 65535, like \"20000-40000\"";
    let s = string(v, expected)?;
    let bad = |why: &str| format!("{s:?} {why} (expected {expected})");
    let port = |p: &str| p.trim().parse::<u32>().ok();
    let (lo, hi) = (s.split_once('-'))
        .and_then(|(lo, hi)| Some((port(lo)?, port(hi)?)))
        .ok_or_else(|| bad("is not a port range"))?;
    let (Ok(lo), Ok(hi)) = (u16::try_from(lo), u16::try_from(hi)) else {
        return Err(bad("is not a port range: ports end at 65535"));
    };
    if let Err(ports::PortError::InvalidRange { reason, .. }) = ports::validate_range(&(lo..=hi)) {
        return Err(bad(&format!("is not a usable port range: {reason}")));
    }
    if hi - lo + 1 < 2 {
        return Err(bad(
            "is too small: every browser needs two ports (its driver's and its DevTools port)",
        ));
    }
    Ok((lo, hi))
}

/// A size: `"512MiB"`, `"1GiB"`, or a number of bytes.
fn read_size(v: &Value) -> Result<u64, String> {
    let expected = "a size like \"1GiB\" or \"512MiB\", or a number of bytes";
    match v {
        Value::Integer(_) => integer(v, 0, i64::MAX, expected).map(|n| n as u64),
        Value::String(s) => parse_size(s).map_err(|m| format!("{s:?}: {m}")),
        _ => Err(found(v, expected)),
    }
}

/// Chromium switches batch-cli sets itself, per browser, and verifies; a
/// `[browser] args` entry overriding one would break a guarantee (unique, verified
/// ports; one profile per account; per-account proxies) — so it is refused, with
/// what to use instead.
const MANAGED_SWITCHES: &[(&str, &str)] = &[
    (
        "remote-debugging-port",
        "batch-cli chooses and verifies each browser's DevTools port; use [ports] range to restrict it",
    ),
    (
        "remote-debugging-address",
        "the DevTools endpoint is always 127.0.0.1",
    ),
    (
        "remote-debugging-pipe",
        "batch-cli talks to Chromium through its verified DevTools port",
    ),
    (
        "user-data-dir",
        "each account has its own profile; use [profiles] root to move them",
    ),
    (
        "proxy-server",
        "set `proxy` per account in the accounts file, or [browser] proxy for all",
    ),
    (
        "headless",
        "headless is the default; use --headed or [browser] headed = true for windows",
    ),
];

/// `Some((switch, hint))` if `arg` is (a spelling of) a managed switch:
/// `--name`, `-name`, `--name=value`.
pub(crate) fn managed_switch(arg: &str) -> Option<(&'static str, &'static str)> {
    let name = super::identity::switch_name(arg)?;
    MANAGED_SWITCHES
        .iter()
        .find(|(m, _)| name.eq_ignore_ascii_case(m))
        .copied()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes `text` as `batch.toml` in a fresh temp dir, beside a CA certificate
    /// `proxy-ca.pem` (the documented example names it), and loads it.
    fn load(text: &str) -> (tempfile::TempDir, PathBuf, Result<Settings, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let path = dir.path().join("batch.toml");
        std::fs::write(&path, text).unwrap();
        let ca = forwarder::testing::TestCa::new("docs ca");
        std::fs::write(dir.path().join("proxy-ca.pem"), ca.pem()).unwrap();
        let settings = load_settings(&path);
        (dir, root, settings)
    }

    #[test]
    fn defaults() {
        let (_dir, root, got) = load("");
        let s = got.unwrap();
        assert_eq!(s, Settings::defaults_for(&root.join("batch.toml")));
        assert_eq!(s.config_path, root.join("batch.toml"));
        assert_eq!(s.root, root);
        assert_eq!(s.workflow, root.join("workflow.toml"));
        assert_eq!(s.accounts, root.join("accounts.toml"));
        assert_eq!(s.profiles.root, root.join("profiles"));
        assert_eq!(s.browser.window_size, (1280, 800));
        let b = &s.browser;
        assert_eq!(
            (
                &b.user_agent,
                &b.accept_language,
                &b.timezone,
                &b.webdriver_url
            ),
            (&None, &None, &None, &None)
        );
        assert!(!s.browser.headed && s.launch.lock && !s.profiles.ephemeral);
        assert_eq!(s.launch.interval, LaunchInterval::Auto);
        assert_eq!(s.launch.max_concurrent, None);
        assert_eq!(
            s.pool,
            PoolSettings {
                retire_after: None,
                max_browser_memory: Some(2 << 30)
            }
        );
        assert_eq!(s.ports.range, None);
        assert_eq!(s.resources.min_available_memory, 1 << 30);
        assert_eq!(s.resources.sample_interval, Duration::from_secs(2));
        assert_eq!(
            (s.retry.retries, s.retry.backoff),
            (2, Duration::from_millis(500))
        );
        let t = s.timeouts;
        assert_eq!(
            (t.action, t.webdriver, t.launch),
            (
                Duration::from_secs(10),
                Duration::from_secs(30),
                Duration::from_secs(30)
            )
        );
    }

    /// The first ```toml block after `heading` in docs/configuration.md.
    pub(crate) fn docs_example(heading: &str) -> String {
        let path = format!("{}/../../docs/configuration.md", env!("CARGO_MANIFEST_DIR"));
        let docs = std::fs::read_to_string(&path).unwrap();
        let rest = &docs[docs.find(heading).expect(heading)..];
        let start = rest.find("```toml\n").expect("a toml block") + 8;
        rest[start..start + rest[start..].find("```").unwrap()].to_owned()
    }

    /// Every key the docs show exists, with the type the docs show.
    #[test]
    fn the_documented_example_loads() {
        let example = docs_example("## `batch.toml`");
        assert!(example.contains("[timeouts]"), "{example}");
        let (_dir, _root, got) = load(&example);
        let s = got.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.launch.max_concurrent, Some(8));
        assert_eq!(s.ports.range, Some((20000, 40000)));
    }

    /// Every key `batch.toml` accepts, as the docs write it (`workflow`,
    /// `browser.headed`), read from the serde definitions themselves. A section added
    /// to [`Raw`] fails here until it is added to this match (and so to the docs).
    fn code_keys() -> Vec<String> {
        use super::super::introspect::fields_of;
        let mut keys = Vec::new();
        for &top in fields_of::<Raw>() {
            let section = match top {
                "workflow" | "accounts" => {
                    keys.push(top.to_owned());
                    continue;
                }
                "browser" => fields_of::<BrowserSettings>(),
                "launch" => fields_of::<LaunchSettings>(),
                "profiles" => fields_of::<ProfileSettings>(),
                "ports" => fields_of::<PortSettings>(),
                "resources" => fields_of::<ResourceSettings>(),
                "pool" => fields_of::<PoolSettings>(),
                "retry" => fields_of::<RetrySettings>(),
                "timeouts" => fields_of::<TimeoutSettings>(),
                "health" => fields_of::<crate::config::HealthSettings>(),
                other => panic!(
                    "batch.toml has a new key {other:?}: add it here and to docs/configuration.md"
                ),
            };
            keys.extend(section.iter().map(|k| format!("{top}.{k}")));
        }
        keys
    }

    /// The rows of docs/configuration.md's key table: (key, default cell).
    fn docs_key_rows() -> Vec<(String, String)> {
        let path = format!("{}/../../docs/configuration.md", env!("CARGO_MANIFEST_DIR"));
        let docs = std::fs::read_to_string(&path).unwrap();
        let header = "| key | default | meaning |\n|---|---|---|\n";
        let start = docs.find(header).expect("the key table") + header.len();
        docs[start..]
            .lines()
            .take_while(|l| l.starts_with('|'))
            .map(|row| {
                let cells: Vec<&str> = row.split(" | ").collect();
                let key = cells[0].trim_start_matches("| ").trim_matches('`');
                (key.to_owned(), cells[1].to_owned())
            })
            .collect()
    }

    /// The docs list exactly the keys the code accepts, and the documented example
    /// sets every one of them.
    #[test]
    fn docs_list_every_key() {
        let code = code_keys();
        assert!(code.contains(&"timeouts.launch".to_owned()), "{code:?}");
        let docs: Vec<String> = docs_key_rows().into_iter().map(|(k, _)| k).collect();
        assert_eq!(docs, code, "docs/configuration.md's key table vs the code");

        let example: toml::Table = docs_example("## `batch.toml`").parse().unwrap();
        let mut shown = Vec::new();
        for (k, v) in &example {
            match v.as_table() {
                Some(t) => shown.extend(t.keys().map(|sub| format!("{k}.{sub}"))),
                None => shown.push(k.clone()),
            }
        }
        let mut code_sorted = code.clone();
        code_sorted.sort();
        shown.sort();
        assert_eq!(
            shown, code_sorted,
            "the documented batch.toml example vs the code"
        );
    }

    /// The default column, where it is a TOML value, is the code's default: a
    /// `batch.toml` that writes each of them loads to exactly the defaults.
    #[test]
    fn docs_defaults_are_the_code_defaults() {
        let mut top = String::new();
        let mut sections: std::collections::BTreeMap<String, String> = Default::default();
        let mut literal = 0;
        for (key, default) in docs_key_rows() {
            let Some(value) = default.strip_prefix('`').and_then(|d| d.strip_suffix('`')) else {
                assert!(default.starts_with("none"), "{key}: default {default:?}");
                continue;
            };
            literal += 1;
            match key.split_once('.') {
                Some((section, k)) => {
                    let body = sections.entry(section.to_owned()).or_default();
                    body.push_str(&format!("{k} = {value}\n"));
                }
                None => top.push_str(&format!("{key} = {value}\n")),
            }
        }
        assert!(
            literal >= 15,
            "only {literal} defaults are written as values"
        );
        for (section, body) in &sections {
            top.push_str(&format!("[{section}]\n{body}"));
        }
        let (_dir, root, got) = load(&top);
        let s = got.unwrap_or_else(|e| panic!("{e}\n{top}"));
        assert_eq!(s, Settings::defaults_for(&root.join("batch.toml")), "{top}");
    }

    #[test]
    fn proxy_ca_is_made_absolute_and_read() {
        let (_dir, root, got) = load("[browser]\nproxy_ca = \"proxy-ca.pem\"\n");
        assert_eq!(
            got.unwrap().browser.proxy_ca,
            Some(root.join("proxy-ca.pem"))
        );
        let (_dir, _root, got) = load("[browser]\nproxy_ca = \"\"\n");
        let e = got.unwrap_err().to_string();
        assert!(
            e.contains("batch.toml:2: browser.proxy_ca: an empty path"),
            "{e}"
        );
        let (_dir, _root, got) = load("[browser]\nproxy_ca = \"batch.toml\"\n");
        let e = got.unwrap_err().to_string();
        assert!(
            e.contains("batch.toml:2: browser.proxy_ca: ") && e.contains("no PEM certificate"),
            "{e}"
        );
    }

    #[test]
    fn relative_config_path_is_made_absolute() {
        let s = Settings::defaults_for(Path::new("batch.toml"));
        assert!(s.root.is_absolute() && s.config_path.is_absolute() && s.workflow.is_absolute());
    }

    #[test]
    fn overrides() {
        let (_dir, root, got) = load(
            r#"
workflow = "flows/shop.toml"
accounts = "/etc/batch/accounts.csv"

[browser]
chromium = "/opt/chrome/chrome"
chromedriver = "bin/chromedriver"
headed = true
args = ["--lang=en", "--mute-audio"]
window_size = "1920x1080"
user_agent = "Mozilla/5.0 (X11; Linux x86_64) Test/1"
timezone = "Europe/Berlin"
webdriver_url = "http://127.0.0.1:4444/"

[launch]
lock = false
interval = "auto"
max_concurrent = 8

[profiles]
root = "../profiles"
ephemeral = true

[ports]
range = "20000-40000"

[resources]
min_available_memory = "512MiB"
sample_interval = "500ms"

[pool]
retire_after = 20
max_browser_memory = "0"

[retry]
retries = 0
backoff = "0"

[timeouts]
action = "5s"
webdriver = "1m"
launch = "45s"
"#,
        );
        let s = got.unwrap();
        assert_eq!(s.workflow, root.join("flows/shop.toml"));
        assert_eq!(s.accounts, PathBuf::from("/etc/batch/accounts.csv"));
        assert_eq!(
            s.browser.chromium,
            Some(PathBuf::from("/opt/chrome/chrome"))
        );
        assert_eq!(s.browser.chromedriver, Some(root.join("bin/chromedriver")));
        assert!(s.browser.headed);
        assert_eq!(s.browser.args, ["--lang=en", "--mute-audio"]);
        assert_eq!(s.browser.window_size, (1920, 1080));
        assert_eq!(
            s.browser.user_agent.as_deref(),
            Some("Mozilla/5.0 (X11; Linux x86_64) Test/1")
        );
        assert_eq!(s.browser.accept_language, None);
        assert_eq!(s.browser.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(
            s.browser.webdriver_url.as_deref(),
            Some("http://127.0.0.1:4444")
        );
        assert_eq!(
            s.launch,
            LaunchSettings {
                lock: false,
                interval: LaunchInterval::Auto,
                max_concurrent: Some(8)
            }
        );
        assert_eq!(
            s.profiles,
            ProfileSettings {
                root: root.join("../profiles"),
                ephemeral: true
            }
        );
        assert_eq!(s.ports.range, Some((20000, 40000)));
        assert_eq!(s.resources.min_available_memory, 512 << 20);
        assert_eq!(s.resources.sample_interval, Duration::from_millis(500));
        assert_eq!(
            s.pool,
            PoolSettings {
                retire_after: Some(20),
                max_browser_memory: None
            }
        );
        assert_eq!((s.retry.retries, s.retry.backoff), (0, Duration::ZERO));
        assert_eq!(s.timeouts.webdriver, Duration::from_secs(60));

        let (_dir, _root, got) =
            load("[browser]\nchromium = \"chromium\"\n[resources]\nmin_available_memory = 1000\n");
        let s = got.unwrap();
        assert_eq!(s.browser.chromium, Some(PathBuf::from("chromium")));
        assert_eq!(s.resources.min_available_memory, 1000);
    }

    #[test]
    fn managed_switches_are_refused_with_their_line() {
        for (arg, switch) in [
            (
                "--remote-debugging-port=9222",
                Some("remote-debugging-port"),
            ),
            ("--remote-debugging-port", Some("remote-debugging-port")),
            ("-remote-debugging-port=1", Some("remote-debugging-port")),
            (
                "--remote-debugging-address=0.0.0.0",
                Some("remote-debugging-address"),
            ),
            ("--remote-debugging-pipe", Some("remote-debugging-pipe")),
            ("--user-data-dir=/tmp/p", Some("user-data-dir")),
            ("--User-Data-Dir=/tmp/p", Some("user-data-dir")),
            ("--proxy-server=http://p:3128", Some("proxy-server")),
            ("--headless", Some("headless")),
            ("--headless=old", Some("headless")),
            ("--lang=en", None),
            ("--remote-debugging-portal", None),
            ("--proxy-bypass-list=*.local", None),
            ("user-data-dir", None),
        ] {
            assert_eq!(managed_switch(arg).map(|(s, _)| s), switch, "{arg}");
            let text = format!("[browser]\nargs = [\"--mute-audio\", {arg:?}]\n");
            let (_dir, _root, got) = load(&text);
            match switch {
                Some(s) => {
                    let e = got.expect_err(arg).to_string();
                    assert!(
                        e.contains("batch.toml:2: browser.args:")
                            && e.contains(&format!("overrides --{s}, which batch-cli manages")),
                        "{arg}: {e}"
                    );
                }
                None => assert!(got.is_ok(), "{arg}: {:?}", got.err()),
            }
        }
    }

    #[test]
    fn port_ranges_the_allocator_would_refuse_are_input_errors() {
        for (range, expected) in [
            ("20000-40000", Ok((20000, 40000))),
            ("1024-1025", Ok((1024, 1025))),
            ("65534-65535", Ok((65534, 65535))),
            (" 30000 - 30010 ", Ok((30000, 30010))),
            ("40000-20000", Err("the start is after the end")),
            ("80-8080", Err("ports below 1024 are privileged")),
            ("1-2", Err("ports below 1024 are privileged")),
            ("30000-30000", Err("is too small")),
            ("60000-70000", Err("ports end at 65535")),
            ("0-100000", Err("ports end at 65535")),
            ("20000", Err("is not a port range")),
            ("a-b", Err("is not a port range")),
        ] {
            let (_dir, _root, got) = load(&format!("\n[ports]\nrange = {range:?}\n"));
            match expected {
                Ok(r) => assert_eq!(got.unwrap().ports.range, Some(r), "{range}"),
                Err(why) => {
                    let e = got.expect_err(range);
                    let shown = e.to_string();
                    assert_eq!(e.line(), Some(3), "{shown}");
                    assert!(
                        shown.contains("batch.toml:3: ports.range:") && shown.contains(why),
                        "{range}: {shown}"
                    );
                }
            }
        }
    }

    #[test]
    fn errors() {
        let check = |text: &str, line: Option<usize>, message: &str| {
            let (_dir, _root, got) = load(text);
            let e = got.expect_err(text);
            let shown = e.to_string();
            assert!(shown.contains("batch.toml"), "{shown}");
            assert!(shown.contains(message), "{shown:?}\nlacks {message:?}");
            assert_eq!(e.line(), line, "{shown}");
        };
        check(
            "workflow = \"w.toml\"\nworkflows = \"x\"\n",
            Some(2),
            "batch.toml:2: unknown key \"workflows\" (expected one of: workflow, accounts, browser,",
        );
        check(
            "[browser]\nheadless = true\n",
            Some(2),
            "browser: unknown key \"headless\" (expected one of: chromium, chromedriver, headed, headless_shell, args, window_size, user_agent, accept_language, timezone, webdriver_url, proxy_ca, proxy)",
        );
        check("[brwoser]\n", Some(1), "unknown key \"brwoser\"");
        check(
            "[browser]\n\"a`, b\" = 1\n",
            Some(2),
            "browser: unknown key \"a`, b\" (expected one of: chromium,",
        );
        check(
            "browser = 1\n",
            Some(1),
            "browser: found an integer (expected a [browser] section)",
        );
        check(
            "[browser]\nheaded = \"yes\"\n",
            Some(2),
            "browser.headed: found a string (expected true or false)",
        );
        check(
            "[browser]\nwindow_size = \"big\"\n",
            Some(2),
            "browser.window_size: \"big\" is not a window size (expected WIDTHxHEIGHT",
        );
        check(
            "[browser]\nuser_agent = 5\n",
            Some(2),
            "browser.user_agent: found an integer (expected a User-Agent string)",
        );
        check(
            "[browser]\naccept_language = \"en_US\"\n",
            Some(2),
            "browser.accept_language: \"en_US\" is not a language tag (expected language tags separated by commas",
        );
        check(
            "[browser]\ntimezone = \"UTC+9\"\n",
            Some(2),
            "browser.timezone: \"UTC+9\" is not a time zone this host knows",
        );
        check(
            "[browser]\nwebdriver_url = \"http://:4444\"\n",
            Some(2),
            "browser.webdriver_url: \"http://:4444\": no host (expected an http:// or https:// URL of a WebDriver endpoint",
        );
        check(
            "[browser]\naccept_language = \"de\"\nargs = [\"--lang=fr\"]\n",
            Some(2),
            "browser.accept_language: \"--lang=fr\" in the browser switches contradicts accept_language",
        );
        check(
            "[browser]\nargs = [\"a\", 2]\n",
            Some(2),
            "browser.args: found an integer (expected an array of strings",
        );
        check(
            "\n[launch]\ninterval = \"2.5\"\n",
            Some(3),
            "batch.toml:3: launch.interval: \"2.5\": neither auto nor a duration (expected auto or a number and a unit",
        );
        check(
            "[launch]\nmax_concurrent = 0\n",
            Some(2),
            "launch.max_concurrent: 0 is out of range (expected a positive integer)",
        );
        check(
            "[pool]\nretire_after = 0\n",
            Some(2),
            "pool.retire_after: 0 is out of range (expected a positive integer)",
        );
        check(
            "[pool]\nmax_browser_memory = \"lots\"\n",
            Some(2),
            "pool.max_browser_memory: \"lots\"",
        );
        check(
            "[pool]\nidle = 1\n",
            Some(2),
            "pool: unknown key \"idle\" (expected one of: retire_after, max_browser_memory)",
        );
        check(
            "[ports]\nrange = \"1-70000\"\n",
            Some(2),
            "not a port range",
        );
        check(
            "[browser]\nargs = [\n  \"--lang=en\",\n  \"--remote-debugging-port=9222\",\n]\n",
            Some(4),
            "batch.toml:4: browser.args: \"--remote-debugging-port=9222\" overrides --remote-debugging-port, which batch-cli manages",
        );
        check(
            "[resources]\nmin_available_memory = \"1 gig\"\n",
            Some(2),
            "resources.min_available_memory: \"1 gig\": unknown unit \" gig\"",
        );
        check(
            "[resources]\nsample_interval = \"0s\"\n",
            Some(2),
            "resources.sample_interval: a zero duration",
        );
        check(
            "[retry]\nretries = -1\n",
            Some(2),
            "retry.retries: -1 is out of range (expected a whole number, 0 or more)",
        );
        check(
            "[timeouts]\naction = \"10\"\n",
            Some(2),
            "timeouts.action: \"10\": no unit (expected",
        );
        check(
            "[timeouts]\nidle = \"10s\"\n",
            Some(2),
            "timeouts: unknown key \"idle\" (expected one of: action, webdriver, launch)",
        );
        check(
            "[profiles]\nroot = \"\"\n",
            Some(2),
            "profiles.root: an empty path",
        );
        check(
            "workflow = [\n",
            Some(1),
            "invalid TOML at column 13: unclosed array",
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.toml");
        let e = load_settings(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: no such file (expected the project file (batch.toml))",
                path.display()
            )
        );
    }
}
