//! The files a user writes — `batch.toml`, the accounts (TOML or CSV) and the
//! workflow — parsed and validated into plain data, plus the small languages inside
//! them: account lists (`1-3,7`), durations (`500ms`) and templates (`{account.username}`).
//!
//! Everything here is pure: it reads files and the environment, and never launches,
//! prints or spawns anything. Every error names the file, the line where there is one,
//! and what was expected (see [`ConfigError`]).
//!
//! THE TYPES BELOW ARE THE FIXED INTERFACE (used by the runner). Parsing and
//! validation are implemented in the submodules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use doc::section;

mod accounts;
mod actions;
#[cfg(test)]
mod bad_input;
mod doc;
mod error;
mod health;
mod identity;
mod lists;
mod project;
#[cfg(test)]
mod proptests;
mod secrets;
mod settings;
mod template;
mod units;
mod workflow;

pub use accounts::{exec_env_name, load_accounts, load_accounts_with_env};
pub use actions::{ACTIONS, ActionDef, ActionKind, KEY_NAMES, action_table};
pub use error::ConfigError;
pub use health::HealthSettings;
pub use identity::{
    ACCOUNT_FIELDS, Identity, identity_of, primary_language, proxy_ca_of, proxy_of,
};
pub use lists::{parse_account_list, parse_step_list, shard};
pub use project::{Project, load_project, load_project_with_env};
pub use secrets::{REDACTED, is_secret_name};
// The run-time redactor, kept where its users have always found it.
pub use crate::redact::{Secrets, redact, redact_values, url_userinfo};
pub use settings::load_settings;
pub use units::{parse_duration, parse_launch_interval, parse_size};
pub use workflow::{check_templates, check_templates_with_env, load_workflow};

/// `fn(name) -> Option<value>`: where `{ env = "NAME" }` and `{env.NAME}` are read
/// from. [`process_env`] in production; a map in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the process environment; a value that is not UTF-8 counts as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// An account id as written in the accounts file (`id = 3` / a CSV `id` column).
pub type AccountId = u64;

/// One account: its id and every field the file gave it (id excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The account's id.
    pub id: AccountId,
    /// Every other field, by name.
    pub fields: BTreeMap<String, FieldValue>,
}

/// One account field's value, and whether it is a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct FieldValue {
    /// The value itself (for `{ env = ... }` the variable's value).
    pub value: String,
    /// True for fields named `password`, `secret`, `token` (or containing these
    /// words, case-insensitively) and for every value read from `{ env = ... }`.
    pub secret: bool,
}

/// The accounts file, loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    /// Where they came from.
    pub path: PathBuf,
    /// In file order; ids are unique.
    pub accounts: Vec<Account>,
}

/// `--launch-interval DUR|auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchInterval {
    /// A fixed delay before each browser creation, inside the creation lock.
    Fixed(Duration),
    /// Adaptive pacing (the default): as many creations at once as the machine
    /// keeps up with, learned from launch latency and CPU pressure.
    Auto,
}

/// The whole workflow file.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// Where it came from.
    pub path: PathBuf,
    /// `base_url`, possibly overridden by `--base-url` later.
    pub base_url: String,
    /// Sorted by id; ids are unique.
    pub steps: Vec<Step>,
}

/// One numbered step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Its id.
    pub id: u32,
    /// Its name (default `step-<id>`).
    pub name: String,
    /// Once per account, whenever the account gets a browser for this step.
    pub before: Vec<Action>,
    /// `quantity` times per account.
    pub actions: Vec<Action>,
    /// Once per account, after the iterations.
    pub after: Vec<Action>,
    /// `challenge_selector`: this step's own, instead of `[health]`'s (None: the
    /// project's, if any).
    pub challenge_selector: Option<String>,
    /// `challenge_text`: likewise.
    pub challenge_text: Option<String>,
}

/// An action and the line of the workflow file it was written on.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// 1-based line in the workflow file.
    pub line: usize,
    /// What to do.
    pub kind: ActionKind,
}

/// A parsed template string: literal text and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The source text as written.
    pub source: String,
    /// The parts, in order.
    pub parts: Vec<Part>,
}

/// A piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text (`{{`/`}}` already unescaped).
    Lit(String),
    /// `{base_url}`.
    BaseUrl,
    /// `{account.FIELD}` (`{account.id}` is the id).
    Account(String),
    /// `{iteration}` (1-based; 0 in `before`/`after`).
    Iteration,
    /// `{step.id}`.
    StepId,
    /// `{env.NAME}` — always treated as a secret.
    Env(String),
}

/// What a template is rendered against.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// The base URL in force.
    pub base_url: &'a str,
    /// The account.
    pub account: &'a Account,
    /// The iteration (0 outside `actions`).
    pub iteration: u32,
    /// The step id.
    pub step: u32,
}

/// A rendered template: the real value, and the same with every secret as `***`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// What the browser gets.
    pub value: String,
    /// What any output, log, journal or report may show.
    pub redacted: String,
}

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
        workflow: PathBuf = "workflow.toml".into(), "settings::path";
        /// `accounts` (default `accounts.toml`; `.csv` means CSV).
        accounts: PathBuf = "accounts.toml".into(), "settings::path";
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
        chromium: Option<PathBuf> = None, "settings::program";
        /// `chromedriver` (default: search `/usr/bin/chromedriver`, PATH).
        chromedriver: Option<PathBuf> = None, "settings::program";
        /// `headed` (default false).
        headed: bool = false, "settings::boolean";
        /// `headless_shell` (default true): when `chromium` is not set and the run is
        /// headless, use `chromium-headless-shell` if it is installed.
        headless_shell: bool = true, "settings::boolean";
        /// `args`: extra Chromium switches.
        args: Vec<String> = Vec::new(), "settings::args";
        /// `window_size` as `"WxH"` (default 1280x800).
        window_size: (u32, u32) = (1280, 800), "settings::window_size";
        /// `user_agent` (default: Chromium's own); an account's `user_agent` overrides it.
        user_agent: Option<String> = None, "settings::user_agent";
        /// `accept_language`, language tags like `"de-DE,de"` (default: Chromium's own);
        /// an account's `accept_language` overrides it.
        accept_language: Option<String> = None, "settings::accept_language";
        /// `timezone`, an IANA name like `"Asia/Seoul"` (default: the host's); an
        /// account's `timezone` overrides it.
        timezone: Option<String> = None, "settings::timezone";
        /// `webdriver_url`: take sessions from this remote WebDriver endpoint (a Selenium
        /// Grid) instead of local Chromium (default none; `--webdriver-url` overrides it).
        webdriver_url: Option<String> = None, "settings::webdriver_url";
        /// `proxy_ca`: a PEM file of CA certificates trusted, besides the system's, for
        /// `https://` proxies (default none); absolute after loading; an account's
        /// `proxy_ca` overrides it.
        proxy_ca: Option<PathBuf> = None, "settings::proxy_ca";
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
        lock: bool = true, "settings::boolean";
        /// `interval` (default `"auto"`; a duration such as `"2.5s"` for a fixed pause).
        interval: LaunchInterval = LaunchInterval::Auto, "settings::interval";
        /// `max_concurrent` (default none: no cap).
        max_concurrent: Option<usize> = None, "settings::max_concurrent";
    }
}

section! {
    /// `[profiles]`.
    #[serde(expecting = "a [profiles] section")]
    pub struct ProfileSettings {
        /// `root` (default `profiles/` beside batch.toml), absolute once loaded.
        root: PathBuf = "profiles".into(), "settings::path";
        /// `ephemeral` (default false).
        ephemeral: bool = false, "settings::boolean";
    }
}

section! {
    /// `[ports]`.
    #[serde(expecting = "a [ports] section")]
    pub struct PortSettings {
        /// `range = "20000-40000"` (default none: the kernel chooses).
        range: Option<(u16, u16)> = None, "settings::port_range";
    }
}

section! {
    /// `[resources]`.
    #[derive(Copy)]
    #[serde(expecting = "a [resources] section")]
    pub struct ResourceSettings {
        /// `min_available_memory = "1GiB"` / `"512MiB"` in bytes (default 1 GiB):
        /// below it new browser creations wait.
        min_available_memory: u64 = 1 << 30, "settings::size";
        /// `sample_interval` (default `2s`).
        sample_interval: Duration = Duration::from_secs(2), "settings::positive_duration";
    }
}

section! {
    /// `[pool]`: when an account's browser is retired and replaced.
    #[derive(Copy)]
    #[serde(expecting = "a [pool] section")]
    pub struct PoolSettings {
        /// `retire_after = N` iterations (default: never).
        retire_after: Option<u32> = None, "settings::retire_after";
        /// `max_browser_memory = "2GiB"` (default 2 GiB; `0` turns it off): a browser whose
        /// PSS has grown past it is replaced after its current iteration.
        max_browser_memory: Option<u64> = Some(2 << 30), "settings::size_or_off";
    }
}

section! {
    /// `[retry]`.
    #[derive(Copy)]
    #[serde(expecting = "a [retry] section")]
    pub struct RetrySettings {
        /// `retries` (default 2).
        retries: u32 = 2, "settings::retries";
        /// `backoff` (default `500ms`): first delay, doubled per attempt.
        backoff: Duration = Duration::from_millis(500), "settings::duration";
    }
}

section! {
    /// `[timeouts]`.
    #[derive(Copy)]
    #[serde(expecting = "a [timeouts] section")]
    pub struct TimeoutSettings {
        /// `action` (default `10s`): default for waiting actions.
        action: Duration = Duration::from_secs(10), "settings::positive_duration";
        /// `webdriver` (default `30s`): any single WebDriver request.
        webdriver: Duration = Duration::from_secs(30), "settings::positive_duration";
        /// `launch` (default `30s`): starting one browser.
        launch: Duration = Duration::from_secs(30), "settings::positive_duration";
    }
}

impl std::fmt::Debug for FieldValue {
    // Secrets never reach a log, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.secret {
            f.write_str("FieldValue(***)")
        } else {
            write!(f, "FieldValue({:?})", self.value)
        }
    }
}

#[cfg(test)]
pub(crate) mod introspect {
    //! Test-only: the key names a derived `Deserialize` struct accepts, read from serde
    //! itself, so that the docs tests compare the docs with the code's own list of keys
    //! rather than with a copy that could drift.
    //!
    //! A derived `Deserialize` for a struct calls `deserialize_struct(name, FIELDS, …)`;
    //! [`fields_of`] hands it a deserializer that captures `FIELDS` and stops there.

    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, Visitor};

    /// `fn::<T>() -> ["workflow", "accounts", …]`: the keys `T` accepts, in declaration order.
    pub(crate) fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
        match T::deserialize(Capture) {
            Err(Stop::Fields(fields)) => fields,
            Err(Stop::Other(m)) => panic!("{} is not a struct: {m}", std::any::type_name::<T>()),
            Ok(_) => unreachable!("Capture never yields a value"),
        }
    }

    struct Capture;

    #[derive(Debug)]
    enum Stop {
        Fields(&'static [&'static str]),
        Other(String),
    }

    impl fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{self:?}")
        }
    }

    impl std::error::Error for Stop {}

    impl de::Error for Stop {
        fn custom<M: fmt::Display>(m: M) -> Self {
            Stop::Other(m.to_string())
        }
    }

    impl<'de> de::Deserializer<'de> for Capture {
        type Error = Stop;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop::Other("not deserialized as a struct".into()))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            Err(Stop::Fields(fields))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Two {
            a: u8,
            #[serde(rename = "b-b")]
            b: u8,
        }

        #[test]
        fn reads_the_serde_names() {
            assert_eq!(fields_of::<Two>(), ["a", "b-b"]);
        }
    }
}
