//! The files a user writes — `batch.toml`, the accounts (TOML or CSV) and the
//! workflow — parsed and validated into plain data, plus the small languages inside
//! them: account lists (`1-3,7`), durations (`500ms`) and templates (`{account.username}`).
//!
//! Everything here is pure: it reads files and the environment, and never launches,
//! prints or spawns anything. Every error names the file, the line where there is one,
//! and what was expected (see [`ConfigError`]).
//!
//! Each file's types live next to their parser (`Settings` in `settings`, `Accounts`
//! in `accounts`, `Workflow` in `workflow`, `Template` in `template`, …) and are
//! re-exported here: `config::X` is the interface the runner and the CLI use.

mod accounts;
mod actions;
#[cfg(test)]
mod bad_input;
mod data;
mod doc;
mod error;
mod health;
mod identity;
mod lists;
mod project;
#[cfg(test)]
mod proptests;
mod proxy;
mod secrets;
mod settings;
mod template;
mod units;
mod workflow;

pub use accounts::{
    Account, AccountId, Accounts, FieldValue, exec_env_name, load_accounts, load_accounts_with_env,
};
pub use actions::{
    ACTIONS, ActionDef, ActionKind, KEY_NAMES, action_table, press_parts, upload_path,
};
pub use data::{ACCOUNT_COLUMN, DataRow, StepData, data_env_name, load_data};
pub use error::ConfigError;
pub use health::HealthSettings;
pub use identity::{ACCOUNT_FIELDS, Identity, identity_of, primary_language};
pub use lists::{parse_account_list, parse_step_list, shard};
pub use project::{Project, load_project, load_project_with_env};
pub use proxy::{NO_PROXY, ProxyDefault, proxy_ca_of, proxy_of};
pub use secrets::{REDACTED, is_secret_name};
// The run-time redactor, kept where its users have always found it.
pub use crate::redact::{Secrets, redact, redact_values, url_userinfo};
pub use settings::{
    BrowserSettings, LaunchSettings, PoolSettings, PortSettings, ProfileSettings, ResourceSettings,
    RetrySettings, Settings, TimeoutSettings, load_settings,
};
pub use template::{Part, Rendered, Template, Vars};
pub use units::{LaunchInterval, parse_duration, parse_launch_interval, parse_size};
pub use workflow::{
    Action, Step, Workflow, check_templates, check_templates_with_env, load_workflow,
};

/// `fn(name) -> Option<value>`: where `{ env = "NAME" }` and `{env.NAME}` are read
/// from. [`process_env`] in production; a map in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the process environment; a value that is not UTF-8 counts as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
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
