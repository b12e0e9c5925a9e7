//! Loading the accounts file: TOML `[[accounts]]` tables or a CSV with a header row.
//!
//! Main items: [`load_accounts`] (and [`load_accounts_with_env`], which reads
//! `{ env = "NAME" }` through an [`EnvLookup`]), and [`is_secret_name`], the rule for
//! which fields are secrets. Values are read as written; nothing here decides which
//! accounts run (see the `lists` module) or whether the workflow's variables exist
//! on them (see `check_templates`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use toml::de::DeValue;

use super::doc::{Doc, entries, type_name};
use super::error::read_text;
use super::template::{EnvLookup, process_env};
use super::{Account, AccountId, Accounts, ConfigError, FieldValue};

const FIELD_EXPECTED: &str = "a string, an integer, a boolean or { env = \"NAME\" }";
const ID_EXPECTED: &str = "id = a positive integer";

/// True for field names that hold secrets: containing `password`, `secret` or
/// `token`, in any letter case.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
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
    let is_csv = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("csv"));
    let accounts = if is_csv {
        parse_csv(path, &text)?
    } else {
        parse_toml(path, &text, env)?
    };
    check_proxies(path, &accounts)?;
    Ok(Accounts {
        path: path.to_path_buf(),
        accounts,
    })
}

/// Every `proxy` must be a proxy URL the browser can use (`forwarder::Upstream::parse`,
/// the same parser the runner uses at launch): http, https or socks5, a host, no
/// path. Credentials are allowed — they reach the upstream through a loopback
/// forwarder, never a command line. The message never quotes the URL (it may hold
/// a password).
fn check_proxies(path: &Path, accounts: &[Account]) -> Result<(), ConfigError> {
    for a in accounts {
        let Some(proxy) = a.fields.get("proxy").filter(|p| !p.value.is_empty()) else {
            continue;
        };
        if let Err(e) = forwarder::Upstream::parse(&proxy.value) {
            return Err(ConfigError::invalid(
                path,
                None,
                format!("account {}, proxy", a.id),
                e.to_string(),
            ));
        }
    }
    Ok(())
}

fn parse_toml(path: &Path, text: &str, env: EnvLookup<'_>) -> Result<Vec<Account>, ConfigError> {
    let (doc, root) = Doc::parse(path, text)?;
    let mut list = None;
    for (key, value) in entries(root.get_ref()) {
        if key.get_ref() == "accounts" {
            list = Some(value);
        } else {
            return Err(doc.err(
                key.span(),
                "",
                format!(
                    "unknown key {:?} (expected only [[accounts]] tables)",
                    key.get_ref().as_ref()
                ),
            ));
        }
    }
    let Some(list) = list else {
        return Err(ConfigError::invalid(
            path,
            None,
            "",
            "no accounts (expected [[accounts]] tables, each with an id)",
        ));
    };
    let items = doc.array(list, "accounts", "[[accounts]] tables")?;
    if items.is_empty() {
        return Err(doc.err(
            list.span(),
            "accounts",
            "no accounts (expected [[accounts]] tables, each with an id)",
        ));
    }
    let mut seen: HashMap<AccountId, usize> = HashMap::new();
    let mut accounts = Vec::with_capacity(items.len());
    for item in items {
        let table = doc.table(item, "accounts", "[[accounts]] tables")?;
        let Some(id_value) = table.get("id") else {
            return Err(doc.err(
                item.span(),
                "",
                format!("account without an id (expected {ID_EXPECTED})"),
            ));
        };
        let id = doc.integer(
            id_value,
            "id",
            1,
            i128::from(u64::MAX),
            "a positive integer",
        )?;
        let id = AccountId::try_from(id).expect("range checked");
        if let Some(first) = seen.insert(id, doc.line_of(id_value.span())) {
            return Err(doc.err(
                id_value.span(),
                "id",
                format!(
                    "account id {id} is used twice, first at line {first} (expected unique ids)"
                ),
            ));
        }
        let mut fields = BTreeMap::new();
        for (key, value) in entries(table) {
            let name: &str = key.get_ref();
            if name == "id" {
                continue;
            }
            let field = format!("account {id}, {name}");
            let field_value = match value.get_ref() {
                DeValue::String(s) => s.to_string(),
                DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) => n.to_string(),
                    Err(_) => return Err(doc.type_err(value, field, FIELD_EXPECTED)),
                },
                DeValue::Boolean(b) => b.to_string(),
                DeValue::Table(t) => {
                    let var = match t.get("env") {
                        Some(v) if t.len() == 1 => {
                            doc.string(v, &field, "{ env = \"NAME\" } with NAME a string")?
                        }
                        _ => {
                            return Err(doc.err(
                                value.span(),
                                field,
                                format!(
                                    "a table other than {{ env = \"NAME\" }} (expected {FIELD_EXPECTED})"
                                ),
                            ));
                        }
                    };
                    let Some(v) = env(var) else {
                        return Err(doc.err(
                            value.span(),
                            field,
                            format!(
                                "environment variable {var} is not set (expected it set, as \
                                 {{ env = {var:?} }} asks)"
                            ),
                        ));
                    };
                    fields.insert(
                        name.to_owned(),
                        FieldValue {
                            value: v,
                            secret: true,
                        },
                    );
                    continue;
                }
                other => {
                    return Err(doc.err(
                        value.span(),
                        field,
                        format!("found {} (expected {FIELD_EXPECTED})", type_name(other)),
                    ));
                }
            };
            fields.insert(
                name.to_owned(),
                FieldValue {
                    value: field_value,
                    secret: is_secret_name(name),
                },
            );
        }
        accounts.push(Account { id, fields });
    }
    Ok(accounts)
}

fn parse_csv(path: &Path, text: &str) -> Result<Vec<Account>, ConfigError> {
    let csv_err = |e: csv::Error| {
        let line = e.position().map(|p| p.line() as usize);
        let message = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!(
                "a row with {len} values, but the header has {expected_len} columns (expected \
                 one value per column)"
            ),
            _ => format!("invalid CSV: {e} (expected comma-separated values)"),
        };
        ConfigError::invalid(path, line, "", message)
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::Headers)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(csv_err)?.clone();
    let mut id_column = None;
    for (i, name) in headers.iter().enumerate() {
        if name.is_empty() {
            return Err(ConfigError::invalid(
                path,
                Some(1),
                "",
                format!(
                    "column {} has no name in the header (expected a name for every column)",
                    i + 1
                ),
            ));
        }
        if headers.iter().take(i).any(|n| n == name) {
            return Err(ConfigError::invalid(
                path,
                Some(1),
                "",
                format!(
                    "column {name:?} appears twice in the header (expected unique column names)"
                ),
            ));
        }
        if name == "id" {
            id_column = Some(i);
        }
    }
    let Some(id_column) = id_column else {
        return Err(ConfigError::invalid(
            path,
            None,
            "",
            "no \"id\" column in the header (expected a header row like id,username,password)",
        ));
    };
    let mut seen: HashMap<AccountId, usize> = HashMap::new();
    let mut accounts = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let id_cell = record.get(id_column).unwrap_or("").trim();
        // The cell is not quoted back: in a misaligned row it could be a password.
        let id = match id_cell.parse::<AccountId>() {
            Ok(id) if id > 0 && id_cell.bytes().all(|b| b.is_ascii_digit()) => id,
            _ => {
                return Err(ConfigError::invalid(
                    path,
                    Some(line),
                    "id",
                    "the id column does not hold a positive integer (expected a positive integer)",
                ));
            }
        };
        if let Some(first) = seen.insert(id, line) {
            return Err(ConfigError::invalid(
                path,
                Some(line),
                "id",
                format!(
                    "account id {id} is used twice, first at line {first} (expected unique ids)"
                ),
            ));
        }
        let fields = headers
            .iter()
            .zip(record.iter())
            .enumerate()
            // An empty cell means "no such field for this account" (no proxy, say).
            .filter(|&(i, (_, value))| i != id_column && !value.is_empty())
            .map(|(_, (name, value))| {
                let secret = is_secret_name(name);
                (
                    name.to_owned(),
                    FieldValue {
                        value: value.to_owned(),
                        secret,
                    },
                )
            })
            .collect();
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
                "account without an id (expected id = a positive integer)",
            ),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = 0\n",
            e(2, "id: 0 is out of range"),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = -4\n",
            e(2, "out of range"),
        );
        check(
            "accounts.toml",
            "[[accounts]]\nid = \"1\"\n",
            e(2, "id: found a string (expected a positive integer)"),
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
            Err((
                None,
                "account 2, proxy: credentials for an https:// proxy are not supported yet",
            )),
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
            e(2, "id: the id column does not hold a positive integer"),
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
