//! Loading the accounts file: TOML `[[accounts]]` tables or a CSV with a header row.
//!
//! Main items: [`load_accounts`] (and [`load_accounts_with_env`], which reads
//! `{ env = "NAME" }` through an [`EnvLookup`]) and [`exec_env_name`], the variable an
//! `exec` program reads a field from. Values are read as written; which fields are
//! secret is the `secrets` module's rule. Nothing here decides which accounts run
//! (see the `lists` module) or whether the workflow's variables exist on them (see
//! `check_templates`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Spanned, Value};

use super::doc::{Bad, Doc, List, Table, dotted, found, in_order, integer, string};
use super::error::{file_dir, read_text};
use super::secrets::is_secret_name;
use super::{ConfigError, EnvLookup, process_env};

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

const FIELD_EXPECTED: &str = "a string, an integer, a boolean or { env = \"NAME\" }";
const ID_EXPECTED: &str = "a non-negative integer";

/// The accounts file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccounts {
    accounts: Option<Spanned<List<RawAccount>>>,
}

/// An account as written: a table, its keys and values with their positions.
type RawAccount = Table;

/// What a type error expects where the accounts go.
fn expect(shape: &str) -> Option<String> {
    matches!(shape, "accounts" | "accounts.#").then(|| "[[accounts]] tables".to_owned())
}

/// `fn("user-name") -> "BATCH_ACCOUNT_USER_NAME"`: the environment variable an `exec`
/// program reads a field from (ASCII letters and digits upper-cased, anything else `_`).
pub fn exec_env_name(field: &str) -> String {
    let name = field
        .to_ascii_uppercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    format!("BATCH_ACCOUNT_{name}")
}

/// Field names that would give an `exec` program the same variable: one value would
/// silently replace the other (`user-name` and `user_name`, or `ID` and the id).
/// `names` in file order; returns the position of the first clash and the problem.
fn env_name_clash<'n>(names: impl IntoIterator<Item = &'n str>) -> Option<(usize, String)> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (i, name) in names.into_iter().enumerate() {
        let var = exec_env_name(name);
        let problem = if var == "BATCH_ACCOUNT_ID" {
            format!(
                "field {name:?} becomes BATCH_ACCOUNT_ID for exec programs, which is the account's id (expected another field name)"
            )
        } else if let Some(first) = seen.insert(var.clone(), name) {
            format!(
                "fields {first:?} and {name:?} both become {var} for exec programs (expected field names that differ in more than letter case and punctuation)"
            )
        } else {
            continue;
        };
        return Some((i, problem));
    }
    None
}

/// The id at `line` must not be one seen before (`seen`: id → its first line).
fn unique(
    path: &Path,
    seen: &mut HashMap<AccountId, usize>,
    id: AccountId,
    line: usize,
) -> Result<(), ConfigError> {
    match seen.insert(id, line) {
        Some(first) => Err(ConfigError::invalid(
            path,
            Some(line),
            "id",
            format!("account id {id} is used twice, first at line {first} (expected unique ids)"),
        )),
        None => Ok(()),
    }
}

/// `fn(path) -> Accounts`: a `.csv` file as CSV, anything else as TOML; `{ env = "NAME" }`
/// values from the process environment.
pub fn load_accounts(path: &Path) -> Result<Accounts, ConfigError> {
    load_accounts_with_env(path, &process_env)
}

/// [`load_accounts`], reading `{ env = "NAME" }` values through `env`.
pub fn load_accounts_with_env(path: &Path, env: EnvLookup<'_>) -> Result<Accounts, ConfigError> {
    let text = read_text(
        path,
        "the accounts file ([[accounts]] tables, or a CSV file)",
    )?;
    parse_accounts(path, &text, env)
}

pub(crate) fn parse_accounts(
    path: &Path,
    text: &str,
    env: EnvLookup<'_>,
) -> Result<Accounts, ConfigError> {
    let is_csv = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("csv"));
    let accounts = if is_csv {
        parse_csv(path, text)?
    } else {
        parse_toml(path, text, env)?
    };
    super::proxy::check_proxies(path, &accounts)?;
    Ok(Accounts {
        path: path.to_path_buf(),
        accounts,
    })
}

/// A browser-option field (`user_agent`, `timezone`, …) must hold a value the
/// browser can be given; any other field is free. A secret value is never quoted —
/// and never accepted in a browser option: those reach Chromium's command line
/// (readable by every local user in /proc) or the driver's environment, both of
/// which are kept free of secrets (the proxy, the one field that must carry
/// credentials, goes through a loopback forwarder instead).
fn check_account_field(name: &str, value: &str, secret: bool, dir: &Path) -> Result<(), String> {
    if name == "proxy_ca" && !value.is_empty() {
        // Read now, not at the first launch: a missing or broken CA file is bad input.
        return forwarder::Trust::with_ca_file(&dir.join(value))
            .map(drop)
            .map_err(|e| {
                let m = e.to_string();
                if secret { m.replace(value, "***") } else { m }
            });
    }
    if secret && !value.is_empty() && super::identity::ACCOUNT_FIELDS.contains(&name) {
        return Err(
            "a secret value (from { env = ... } or a secret field name): browser options \
             reach Chromium's command line or environment, which never hold a secret \
             (expected a plain value)"
                .to_owned(),
        );
    }
    super::identity::check_account_field(name, value).map_err(|m| {
        if secret {
            m.replace(&format!("{value:?}"), "***")
                .replace(value, "***")
        } else {
            m
        }
    })
}

fn parse_toml(path: &Path, text: &str, env: EnvLookup<'_>) -> Result<Vec<Account>, ConfigError> {
    let doc = Doc::new(path, text);
    let raw: RawAccounts = doc.parse(&dotted, expect).map_err(|mut e| {
        // The file's one top-level key is better said as what the file holds.
        if let ConfigError::Invalid { message, .. } = &mut e
            && message.starts_with("unknown key")
        {
            let key = message.split('"').nth(1).unwrap_or_default();
            *message = format!("unknown key {key:?} (expected only [[accounts]] tables)");
        }
        e
    })?;
    let no_accounts = "no accounts (expected [[accounts]] tables, each with an id)";
    let Some(list) = raw.accounts else {
        return Err(ConfigError::invalid(path, None, "", no_accounts));
    };
    if list.get_ref().0.is_empty() {
        return Err(doc.err(Bad::new(list.span(), "accounts", no_accounts)));
    }
    let mut seen = HashMap::new();
    let mut accounts = Vec::with_capacity(list.get_ref().0.len());
    let dir = file_dir(path);
    for item in &list.get_ref().0 {
        let account = toml_account(item, env, dir).map_err(|b| doc.err(b))?;
        // toml_account has checked that there is an id.
        let line = doc.line(item.get_ref()["id"].span().start);
        unique(path, &mut seen, account.id, line)?;
        accounts.push(account);
    }
    Ok(accounts)
}

fn toml_account(
    item: &Spanned<RawAccount>,
    env: EnvLookup<'_>,
    dir: &Path,
) -> Result<Account, Bad> {
    let Some(id_value) = item.get_ref().get("id") else {
        let message = format!("account without an id (expected id = {ID_EXPECTED})");
        return Err(Bad::new(item.span(), "", message));
    };
    let id = integer(id_value.get_ref(), 0, i64::MAX, ID_EXPECTED)
        .map_err(|m| Bad::new(id_value.span(), "id", m))? as AccountId;
    let entries: Vec<_> = (in_order(item.get_ref()).into_iter())
        .filter(|(k, _)| k.get_ref() != "id")
        .collect();
    let mut fields = BTreeMap::new();
    if let Some((i, message)) = env_name_clash(entries.iter().map(|(k, _)| k.get_ref().as_str())) {
        let key = &entries[i].0;
        let field = format!("account {id}, {}", key.get_ref());
        return Err(Bad::new(key.span(), field, message));
    }
    for (key, value) in entries {
        let name = key.get_ref();
        let bad = |m: String| Bad::new(value.span(), format!("account {id}, {name}"), m);
        let (value, secret) = match value.get_ref() {
            Value::String(s) => (s.clone(), is_secret_name(name)),
            Value::Integer(n) => (n.to_string(), is_secret_name(name)),
            Value::Boolean(b) => (b.to_string(), is_secret_name(name)),
            Value::Table(t) if t.len() == 1 && t.contains_key("env") => {
                let var =
                    string(&t["env"], "{ env = \"NAME\" } with NAME a string").map_err(bad)?;
                let v = env(var).ok_or_else(|| {
                    bad(format!(
                        "environment variable {var} is not set (expected it set, as {{ env = {var:?} }} asks)"
                    ))
                })?;
                (v, true)
            }
            Value::Table(_) => {
                return Err(bad(format!(
                    "a table other than {{ env = \"NAME\" }} (expected {FIELD_EXPECTED})"
                )));
            }
            other => return Err(bad(found(other, FIELD_EXPECTED))),
        };
        check_account_field(name, &value, secret, dir).map_err(bad)?;
        fields.insert(name.clone(), FieldValue { value, secret });
    }
    Ok(Account { id, fields })
}

/// A CSV reader's error in `path`, with its line (accounts files and step data files).
pub(super) fn csv_error(path: &Path, e: csv::Error) -> ConfigError {
    let line = e.position().map(|p| p.line() as usize);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "a row with {len} values, but the header has {expected_len} columns (expected one \
             value per column)"
        ),
        _ => format!("invalid CSV: {e} (expected comma-separated values)"),
    };
    ConfigError::invalid(path, line, "", message)
}

/// What is wrong with a CSV header row, if anything: a column without a name, or a
/// name twice (accounts files and step data files alike).
pub(super) fn header_problem(headers: &csv::StringRecord) -> Option<String> {
    headers.iter().enumerate().find_map(|(i, name)| {
        if name.is_empty() {
            let column = i + 1;
            Some(format!(
                "column {column} has no name in the header (expected a name for every column)"
            ))
        } else if headers.iter().take(i).any(|n| n == name) {
            Some(format!(
                "column {name:?} appears twice in the header (expected unique column names)"
            ))
        } else {
            None
        }
    })
}

fn parse_csv(path: &Path, text: &str) -> Result<Vec<Account>, ConfigError> {
    let csv_err = |e| csv_error(path, e);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::Headers)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(csv_err)?.clone();
    let clash = || env_name_clash(headers.iter().filter(|&n| n != "id"));
    if let Some(message) = header_problem(&headers).or_else(|| clash().map(|(_, m)| m)) {
        return Err(ConfigError::invalid(path, Some(1), "", message));
    }
    let Some(id_column) = headers.iter().position(|n| n == "id") else {
        return Err(ConfigError::invalid(
            path,
            None,
            "",
            "no \"id\" column in the header (expected a header row like id,username,password)",
        ));
    };
    let mut seen = HashMap::new();
    let mut accounts = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        // The cell is not quoted back: in a misaligned row it could be a password.
        let Some(id) = super::lists::whole(record.get(id_column).unwrap_or("")) else {
            return Err(ConfigError::invalid(
                path,
                Some(line),
                "id",
                "the id column does not hold a non-negative integer (expected a non-negative integer)",
            ));
        };
        unique(path, &mut seen, id, line)?;
        let mut fields = BTreeMap::new();
        for (i, (name, value)) in headers.iter().zip(record.iter()).enumerate() {
            let secret = is_secret_name(name);
            check_account_field(name, value, secret, file_dir(path)).map_err(|m| {
                ConfigError::invalid(path, Some(line), format!("account {id}, {name}"), m)
            })?;
            // An empty cell means "no such field for this account" (no proxy, say).
            if i != id_column && !value.is_empty() {
                let value = value.to_owned();
                fields.insert(name.to_owned(), FieldValue { value, secret });
            }
        }
        accounts.push(Account { id, fields });
    }
    if accounts.is_empty() {
        return Err(ConfigError::invalid(
            path,
            None,
            "",
            "no accounts (expected a row per account after the header)",
        ));
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` to `name` in a fresh temp dir and loads it with a fixed environment.
    fn load(name: &str, text: &str) -> (tempfile::TempDir, Result<Accounts, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let env = |name: &str| match name {
            "ACC_TEST_PASSWORD" => Some("from-env-secret".to_owned()),
            "ACC_TEST_PROXY" => Some("http://u:hunter2@127.0.0.1:3128".to_owned()),
            _ => None,
        };
        let accounts = load_accounts_with_env(&path, &env);
        (dir, accounts)
    }

    /// An account's `proxy_ca` is read when the file loads, relative to the file's
    /// directory; a missing or non-PEM one names the file, line, account and field.
    #[test]
    fn an_accounts_proxy_ca_is_read_on_loading() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        let ca = forwarder::testing::TestCa::new("ca");
        std::fs::write(dir.path().join("certs/ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("certs/text.pem"), "hello\n").unwrap();
        let env = |_: &str| None;
        for (name, text, expected) in [
            (
                "a.toml",
                "[[accounts]]\nid = 1\nproxy = \"https://u:p@127.0.0.1:1\"\nproxy_ca = \"certs/ca.pem\"\n",
                Ok(()),
            ),
            ("a.csv", "id,proxy_ca\n1,certs/ca.pem\n2,\n", Ok(())),
            (
                "b.toml",
                "[[accounts]]\nid = 1\n\nproxy_ca = \"certs/text.pem\"\n",
                Err("b.toml:4: account 1, proxy_ca: "),
            ),
            (
                "b.csv",
                "id,proxy_ca\n1,certs/ca.pem\n2,certs/gone.pem\n",
                Err("b.csv:3: account 2, proxy_ca: "),
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let got = load_accounts_with_env(&path, &env);
            match (got, expected) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(prefix)) => {
                    let e = e.to_string();
                    let file = dir.path().join("certs").display().to_string();
                    assert!(e.contains(prefix) && e.contains(&file), "{name}: {e}");
                }
                (got, _) => panic!("{name}: {got:?}"),
            }
        }
    }

    /// docs/configuration.md's accounts key table has the file's top-level tables (read
    /// from serde) and the names the code gives a meaning of its own.
    #[test]
    fn docs_list_every_accounts_key() {
        let path = format!("{}/../../docs/configuration.md", env!("CARGO_MANIFEST_DIR"));
        let docs = std::fs::read_to_string(&path).unwrap();
        let top = super::super::introspect::fields_of::<RawAccounts>();
        assert!(top.contains(&"accounts"), "{top:?}");
        for row in top.iter().map(|k| format!("[[{k}]]")).chain([
            "id".into(),
            "proxy".into(),
            "proxy_ca".into(),
        ]) {
            assert!(
                docs.contains(&format!("\n| `{row}` |")),
                "docs/configuration.md has no row for the accounts key `{row}`"
            );
        }
    }

    /// `(id, [(field, value, secret)])` per account.
    type Expected<'a> = Vec<(AccountId, Vec<(&'a str, &'a str, bool)>)>;

    fn check(name: &str, text: &str, expected: Result<Expected<'_>, (Option<usize>, &str)>) {
        let (_dir, got) = load(name, text);
        match (got, expected) {
            (Ok(accounts), Ok(expected)) => {
                let got: Expected<'_> = accounts
                    .accounts
                    .iter()
                    .map(|a| {
                        let fields = a
                            .fields
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.value.as_str(), v.secret))
                            .collect();
                        (a.id, fields)
                    })
                    .collect();
                assert_eq!(got, expected, "file:\n{text}");
            }
            (Err(e), Err((line, message))) => {
                let shown = e.to_string();
                assert_eq!(e.line(), line, "{shown}");
                assert!(shown.contains(message), "{shown:?} lacks {message:?}");
                assert!(shown.contains(name), "{shown:?} lacks the file name");
                for secret in ["from-env-secret", "pass-2", "hunter2"] {
                    assert!(!shown.contains(secret), "{shown:?} shows a secret");
                }
            }
            (got, expected) => panic!("file:\n{text}\ngot {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn toml_accounts() {
        check(
            "accounts.toml",
            r#"
[[accounts]]
id = 1
username = "user-1"
password = { env = "ACC_TEST_PASSWORD" }
proxy = "http://127.0.0.1:3128"

[[accounts]]
id = 2
username = "user-2"
password = "pass-2"
pin = 1234
vip = true
Api_Token = "t"
my_secret_word = "s"
"#,
            Ok(vec![
                (
                    1,
                    vec![
                        ("password", "from-env-secret", true),
                        ("proxy", "http://127.0.0.1:3128", false),
                        ("username", "user-1", false),
                    ],
                ),
                (
                    2,
                    vec![
                        ("Api_Token", "t", true),
                        ("my_secret_word", "s", true),
                        ("password", "pass-2", true),
                        ("pin", "1234", false),
                        ("username", "user-2", false),
                        ("vip", "true", false),
                    ],
                ),
            ]),
        );
        // File order is kept, whatever the ids.
        check(
            "a.toml",
            "[[accounts]]\nid = 5\n[[accounts]]\nid = 0x3\n",
            Ok(vec![(5, vec![]), (3, vec![])]),
        );
        // An env value is secret whatever the field's name.
        check(
            "a.toml",
            "[[accounts]]\nid = 1\nnote = { env = \"ACC_TEST_PASSWORD\" }\n",
            Ok(vec![(1, vec![("note", "from-env-secret", true)])]),
        );
    }

    #[test]
    fn the_documented_example_loads() {
        let example = crate::config::settings::tests::docs_example("## Accounts");
        let path = std::path::PathBuf::from("accounts.toml");
        let env = |n: &str| (n == "USER1_PASSWORD").then(|| "s3cret".to_owned());
        let got = parse_accounts(&path, &example, &env).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<AccountId> = got.accounts.iter().map(|a| a.id).collect();
        assert_eq!(ids, [1, 2]);
        assert!(got.accounts[0].fields["password"].secret);
    }

    #[test]
    fn toml_errors() {
        let e = |line: usize, message| Err((Some(line), message));
        check(
            "accounts.toml",
            "[[accounts]]\nid = 1\npassword = { env = \"ACC_UNSET_VARIABLE\" }\n",
            e(
                3,
                "accounts.toml:3: account 1, password: environment variable ACC_UNSET_VARIABLE is not set",
            ),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = 1\n\n[[accounts]]\nid = 2\n\n[[accounts]]\nid = 1\n",
            e(
                8,
                "id: account id 1 is used twice, first at line 2 (expected unique ids)",
            ),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nusername = \"x\"\n",
            e(
                1,
                "account without an id (expected id = a non-negative integer)",
            ),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = -1\n",
            e(
                2,
                "id: -1 is out of range (expected a non-negative integer)",
            ),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = -4\n",
            e(2, "out of range"),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = \"1\"\n",
            e(2, "id: found a string (expected a non-negative integer)"),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = 1\nweight = 1.5\n",
            e(
                3,
                "account 1, weight: found a float (expected a string, an integer",
            ),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = 1\ntags = [\"a\"]\n",
            e(3, "found an array"),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = 1\npassword = { env = \"X\", default = \"hunter2\" }\n",
            e(3, "a table other than { env = \"NAME\" }"),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = 1\npassword = { env = 5 }\n",
            e(
                3,
                "found an integer (expected { env = \"NAME\" } with NAME a string)",
            ),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = 1\npassword = \"hunter2\n",
            e(3, "invalid TOML at column 20"),
        );
        check(
            "accounts.toml",
            "[[acounts]]\nid = 1\n",
            e(
                1,
                "unknown key \"acounts\" (expected only [[accounts]] tables)",
            ),
        );
        check("accounts.toml", "", Err((None, "no accounts")));
        check("accounts.toml", "accounts = []", e(1, "no accounts"));
        check(
            "accounts.toml",
            "accounts = 3",
            e(
                1,
                "accounts: found an integer (expected [[accounts]] tables)",
            ),
        );
    }

    #[test]
    fn proxies_are_checked_without_showing_them() {
        // Credentials are fine now (they go through the forwarder), in TOML or env.
        for text in [
            "[[accounts]]\nid = 2\nproxy = \"http://user:hunter2@127.0.0.1:3128\"\n",
            "[[accounts]]\nid = 2\nproxy = \"socks5://user:hunter2@127.0.0.1:1080\"\n",
            "[[accounts]]\nid = 2\nproxy = { env = \"ACC_TEST_PROXY\" }\n",
            "[[accounts]]\nid = 2\nproxy = \"https://user:hunter2@127.0.0.1:3128\"\n",
        ] {
            let (_dir, got) = load("accounts.toml", text);
            assert!(got.is_ok(), "{text}: {got:?}");
        }
        check(
            "accounts.toml",
            "[[accounts]]\nid = 1\nproxy = \"http://127.0.0.1:3128\"\n[[accounts]]\nid = 2\n\
             proxy = \"ftp://user:hunter2@127.0.0.1:3128\"\n",
            Err((
                None,
                "account 2, proxy: unsupported proxy scheme \"ftp\" (expected http, https or socks5)",
            )),
        );
        check(
            "accounts.csv",
            "id,proxy\n1,socks5://127.0.0.1:1080\n2,https://hunter2:x@proxy:443\n",
            Ok(vec![
                (1, vec![("proxy", "socks5://127.0.0.1:1080", false)]),
                (2, vec![("proxy", "https://hunter2:x@proxy:443", false)]),
            ]),
        );
        check(
            "accounts.csv",
            "id,proxy\n1,127.0.0.1:3128\n",
            Err((
                None,
                "account 1, proxy: not a proxy URL (expected scheme://",
            )),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = 3\nproxy = \"http://u:hunter2@proxy:1/path\"\n",
            Err((None, "account 3, proxy: a proxy URL has no path")),
        );
    }

    #[test]
    fn csv_accounts() {
        check(
            "accounts.csv",
            "id, username ,password,proxy\n1,user-1,pass-1,\n2,user-2,\"pass,2\",http://p\n",
            Ok(vec![
                (
                    1,
                    vec![("password", "pass-1", true), ("username", "user-1", false)],
                ),
                (
                    2,
                    vec![
                        ("password", "pass,2", true),
                        ("proxy", "http://p", false),
                        ("username", "user-2", false),
                    ],
                ),
            ]),
        );
        check("UPPER.CSV", "id\n3\n", Ok(vec![(3, vec![])]));
        // Ids start wherever the export started: 0 is an id.
        check(
            "a.csv",
            "id,u\n0,x\n1,y\n",
            Ok(vec![
                (0, vec![("u", "x", false)]),
                (1, vec![("u", "y", false)]),
            ]),
        );
    }

    #[test]
    fn id_zero_and_exec_variable_clashes() {
        let e = |line: usize, message| Err((Some(line), message));
        check(
            "a.toml",
            "[[accounts]]\nid = 0\nu = \"x\"\n",
            Ok(vec![(0, vec![("u", "x", false)])]),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = 1\nuser_name = \"a\"\nuser-name = \"b\"\n",
            e(
                4,
                "accounts.toml:4: account 1, user-name: fields \"user_name\" and \"user-name\" both become BATCH_ACCOUNT_USER_NAME for exec programs",
            ),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = 1\nEmail = \"a\"\nemail = \"b\"\n",
            e(4, "both become BATCH_ACCOUNT_EMAIL"),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = 1\nID = \"a\"\n",
            e(
                3,
                "account 1, ID: field \"ID\" becomes BATCH_ACCOUNT_ID for exec programs, which is the account's id",
            ),
        );
        check(
            "accounts.csv",
            "id,first.name,first_name\n1,a,b\n",
            e(
                1,
                "fields \"first.name\" and \"first_name\" both become BATCH_ACCOUNT_FIRST_NAME",
            ),
        );
        check(
            "accounts.csv",
            "id,proxy\n1,\"http://127.0.0.1:3128\n\"\n",
            Err((
                None,
                "account 1, proxy: a control character in the proxy URL",
            )),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = 1\nproxy = \"http://127.0.0.1:3128\\u0000\"\n",
            Err((
                None,
                "account 1, proxy: a control character in the proxy URL",
            )),
        );
        assert_eq!(exec_env_name("user-name.2é"), "BATCH_ACCOUNT_USER_NAME_2_");
    }

    #[test]
    fn csv_errors() {
        let e = |line: usize, message| Err((Some(line), message));
        check(
            "accounts.csv",
            "username,password\nu,hunter2\n",
            Err((
                None,
                "accounts.csv: no \"id\" column in the header (expected a header row like id,username,password)",
            )),
        );
        check(
            "accounts.csv",
            "id,username\n1,a\n2,b\n1,c\n",
            e(4, "account id 1 is used twice, first at line 2"),
        );
        check(
            "accounts.csv",
            "id,password\nhunter2,1\n",
            e(2, "id: the id column does not hold a non-negative integer"),
        );
        check(
            "accounts.csv",
            "id,password\n1,hunter2,extra\n",
            e(2, "a row with 3 values, but the header has 2 columns"),
        );
        check(
            "accounts.csv",
            "id,a,a\n1,2,3\n",
            e(1, "column \"a\" appears twice"),
        );
        check(
            "accounts.csv",
            "id,,b\n1,2,3\n",
            e(1, "column 2 has no name"),
        );
        check("accounts.csv", "id,username\n", Err((None, "no accounts")));
    }

    #[test]
    fn missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let e = load_accounts(&path).unwrap_err();
        assert!(matches!(e, ConfigError::NotFound { .. }));
        assert_eq!(
            e.to_string(),
            format!(
                "{}: no such file (expected the accounts file ([[accounts]] tables, or a CSV file))",
                path.display()
            )
        );
    }

    #[test]
    fn secret_names() {
        for (name, secret) in [
            ("password", true),
            ("PASSWORD", true),
            ("db_Password2", true),
            ("client_secret", true),
            ("token", true),
            ("username", false),
            ("proxy", false),
            ("pass", false),
        ] {
            assert_eq!(is_secret_name(name), secret, "{name}");
        }
    }
}
