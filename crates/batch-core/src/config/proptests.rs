//! Property tests of the config layer's parsers: the account-list parser, the
//! template engine, the duration and size parsers and the three file loaders never
//! panic, round-trip where that makes sense, and never show a secret in an error.
//!
//! They run with the unit tests (256 cases each by default, well under a second);
//! `cargo xtask fuzz --secs N` runs them again and again with many more cases
//! (`PROPTEST_CASES`) for a time box.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use super::accounts::parse_accounts;
use super::settings::parse_settings;
use super::workflow::parse_workflow;
use super::{
    Account, Accounts, FieldValue, Part, Template, Vars, parse_account_list, parse_duration,
    parse_size, shard,
};

fn accounts(ids: &[u64]) -> Accounts {
    Accounts {
        path: PathBuf::from("/p/accounts.toml"),
        accounts: ids
            .iter()
            .map(|&id| Account {
                id,
                fields: BTreeMap::new(),
            })
            .collect(),
    }
}

/// Text made of the characters the small languages care about, so that generated
/// inputs get past the first character more often than random Unicode would.
fn config_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("{{".to_owned()),
        Just("}}".to_owned()),
        Just("{account.".to_owned()),
        Just("{env.".to_owned()),
        Just("{base_url}".to_owned()),
        Just("{iteration}".to_owned()),
        Just("-".to_owned()),
        Just(",".to_owned()),
        Just(".".to_owned()),
        Just("all".to_owned()),
        "[0-9]{1,22}",
        "(ms|s|m|h|KiB|MB|GiB|TiB|b)",
        "\\PC{0,3}",
        Just("\0".to_owned()),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn account_lists_never_panic(arg in config_text(), ids in prop::collection::btree_set(0u64..50, 0..20)) {
        let ids: Vec<u64> = ids.into_iter().collect();
        let _ = parse_account_list(&arg, &accounts(&ids));
        let _ = shard(&ids, &arg);
    }

    #[test]
    fn account_lists_round_trip(
        ids in prop::collection::btree_set(0u64..1000, 1..40),
        pick in prop::collection::vec(any::<prop::sample::Index>(), 1..20),
    ) {
        let ids: Vec<u64> = ids.into_iter().collect();
        // A selection of distinct ids in a random order, written back as a list.
        let mut chosen: Vec<u64> = Vec::new();
        for i in pick {
            let id = ids[i.index(ids.len())];
            if !chosen.contains(&id) {
                chosen.push(id);
            }
        }
        let arg: Vec<String> = chosen.iter().map(u64::to_string).collect();
        let got = parse_account_list(&arg.join(","), &accounts(&ids)).unwrap();
        prop_assert_eq!(got, chosen);
        prop_assert_eq!(parse_account_list("all", &accounts(&ids)).unwrap(), ids.clone());
        // A range over ids that are all there is every id in it.
        let (lo, hi) = (ids[0], ids[0] + 3);
        let dense: Vec<u64> = (lo..=hi).collect();
        prop_assert_eq!(parse_account_list(&format!("{lo}-{hi}"), &accounts(&dense)).unwrap(), dense);
    }

    #[test]
    fn shards_partition_the_list(ids in prop::collection::vec(any::<u64>(), 0..50), n in 1usize..20) {
        let all: Vec<u64> = (1..=n).flat_map(|i| shard(&ids, &format!("{i}/{n}")).unwrap()).collect();
        prop_assert_eq!(all, ids);
    }

    #[test]
    fn templates_never_panic_and_show_their_source(s in config_text()) {
        if let Ok(t) = Template::parse(&s) {
            prop_assert_eq!(t.to_string(), s);
            let account = Account { id: 1, fields: BTreeMap::new() };
            let vars = Vars { base_url: "http://h", account: &account, iteration: 2, step: 3, data: None };
            let _ = t.render_with_env(&vars, &|_| None);
        }
    }

    #[test]
    fn templates_round_trip(parts in prop::collection::vec(part(), 0..8)) {
        // Written out with literal braces escaped, parsed back: the same parts
        // (adjacent literals merged), rendered with every secret as ***.
        let source: String = parts.iter().map(|p| match p {
            Part::Lit(s) => s.replace('{', "{{").replace('}', "}}"),
            other => other.to_string(),
        }).collect();
        let t = Template::parse(&source).unwrap();
        let mut merged: Vec<Part> = Vec::new();
        for p in parts {
            match (merged.last_mut(), p) {
                (_, Part::Lit(s)) if s.is_empty() => {}
                (Some(Part::Lit(prev)), Part::Lit(s)) => prev.push_str(&s),
                (_, p) => merged.push(p),
            }
        }
        prop_assert_eq!(&t.parts, &merged);
        let field = |value: &str, secret| FieldValue { value: value.to_owned(), secret };
        // Every field holds a TOTP secret (a valid one, since `{totp.F}` may read it).
        let seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        let fields = merged.iter().filter_map(|p| match p {
            Part::Account(f) | Part::Totp(f) if f != "id" => Some((f.clone(), field(seed, true))),
            _ => None,
        }).collect();
        let account = Account { id: 9, fields };
        // Every data column is given, and secret.
        let row = crate::config::DataRow {
            line: 2,
            account: None,
            fields: merged.iter().filter_map(|p| match p {
                Part::Data(f) => Some((f.clone(), field("d", true))),
                _ => None,
            }).collect(),
        };
        let vars = Vars { base_url: "http://h", account: &account, iteration: 2, step: 3, data: Some(&row) };
        let r = t.render_with_env(&vars, &|_| Some("SECRETVALUE".to_owned())).unwrap();
        // Exactly the secret parts (every field here is one, and every code) are ***.
        let redacted: String = merged.iter().map(|p| match p {
            Part::Lit(s) => s.as_str(),
            Part::BaseUrl => "http://h",
            Part::Iteration => "2",
            Part::StepId => "3",
            Part::Account(f) if f == "id" => "9",
            Part::Account(_) | Part::Env(_) | Part::Totp(_) | Part::Data(_) => "***",
        }).collect();
        prop_assert_eq!(r.redacted, redacted);
    }

    #[test]
    fn durations_and_sizes_never_panic(s in config_text()) {
        let _ = parse_duration(&s);
        let _ = parse_size(&s);
        let _ = super::parse_launch_interval(&s);
    }

    #[test]
    fn durations_round_trip(ms in 0u64..1_000_000_000_000, frac in 0u32..1000) {
        prop_assert_eq!(parse_duration(&format!("{ms}ms")), Ok(Duration::from_millis(ms)));
        let secs = ms / 1000;
        prop_assert_eq!(
            parse_duration(&format!("{secs}.{frac:03}s")),
            Ok(Duration::from_millis(secs * 1000 + u64::from(frac)))
        );
    }

    #[test]
    fn sizes_round_trip(n in any::<u64>(), k in 0u64..(1 << 20)) {
        prop_assert_eq!(parse_size(&n.to_string()), Ok(n));
        prop_assert_eq!(parse_size(&format!("{k}KiB")), Ok(k << 10));
        prop_assert_eq!(parse_size(&format!("{k}MB")), Ok(k * 1_000_000));
    }

    #[test]
    fn loaders_never_panic_on_any_text(text in "\\PC{0,200}") {
        load_all(&text);
    }

    #[test]
    fn loaders_never_panic_on_toml_like_text(text in toml_like()) {
        load_all(&text);
    }

    #[test]
    fn unknown_keys_are_named_exactly(key in "[a-z`, .\"\\\\]{1,10}", section in prop::sample::select(&["", "[browser]\n", "[pool]\n"])) {
        // Found by reading the message translation: a key holding "`, " was cut short.
        prop_assume!(!["chromium", "chromedriver", "headed", "args", "window_size", "retire_after", "max_browser_memory", "workflow", "accounts"].contains(&key.as_str()));
        let text = format!("{section}{} = 1\n", toml::Value::String(key.clone()));
        let e = parse_settings(Path::new("/p/batch.toml"), &text).unwrap_err().to_string();
        prop_assert!(e.contains(&format!("unknown key {key:?} (expected one of: ")), "{}", e);
    }

    #[test]
    fn account_files_round_trip_and_errors_hide_secrets(
        rows in prop::collection::btree_map(0u64..10_000, ("[a-z]{1,8}", "[A-Za-z0-9]{12}"), 1..6),
        cut in any::<prop::sample::Index>(),
        junk in prop_oneof![Just("\""), Just("]"), Just("="), Just("\n"), Just(","), Just("{")],
    ) {
        let toml: String = rows.iter().map(|(id, (user, pw))| {
            format!("[[accounts]]\nid = {id}\nusername = \"{user}\"\npassword = \"{pw}\"\n")
        }).collect();
        let csv: String = std::iter::once("id,username,password\n".to_owned())
            .chain(rows.iter().map(|(id, (user, pw))| format!("{id},{user},{pw}\n")))
            .collect();
        for (name, text) in [("accounts.toml", &toml), ("accounts.csv", &csv)] {
            let got = parse_accounts(Path::new(name), text, &|_| None).unwrap();
            let back: Vec<(u64, String, String)> = got.accounts.iter().map(|a| {
                (a.id, a.fields["username"].value.clone(), a.fields["password"].value.clone())
            }).collect();
            let want: Vec<(u64, String, String)> = rows.iter().map(|(id, (u, p))| (*id, u.clone(), p.clone())).collect();
            prop_assert_eq!(back, want);
            // The same file broken at a random place: whatever the error, no password in it.
            let at = cut.index(text.len());
            let broken = format!("{}{junk}{}", &text[..at], &text[at..]);
            if let Err(e) = parse_accounts(Path::new(name), &broken, &|_| None) {
                let shown = e.to_string();
                for (_, pw) in rows.values() {
                    prop_assert!(!shown.contains(pw.as_str()), "{} shows a password", shown);
                }
            }
        }
    }
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        "\\PC{0,6}".prop_map(Part::Lit),
        Just(Part::BaseUrl),
        Just(Part::Iteration),
        Just(Part::StepId),
        "[a-z_][a-z0-9_-]{0,6}".prop_map(Part::Account),
        "[A-Z_][A-Z0-9_]{0,6}".prop_map(Part::Env),
        "[a-z_][a-z0-9_-]{0,6}"
            .prop_filter("not the id", |f| f != "id")
            .prop_map(Part::Totp),
        "[a-z_][a-z0-9_-]{0,6}".prop_map(Part::Data),
    ]
}

/// Lines of keys, sections and values the loaders know, in random order, with values
/// of every TOML type: most get past the syntax check into the loaders' own checks.
fn toml_like() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        "(workflow|accounts|base_url|id|name|username|password|proxy|lock|interval|range|retries|backoff|action|args|actions|before|after)",
        "[a-z_]{1,6}",
    ];
    let value = prop_oneof![
        Just("\"auto\"".to_owned()),
        Just("\"2.5s\"".to_owned()),
        Just("\"http://127.0.0.1:1\"".to_owned()),
        Just("\"20000-40000\"".to_owned()),
        Just("[{ click = \"#a\" }, { goto = \"{base_url}/{iteration}\" }]".to_owned()),
        Just("[{ exec = [\"tool\", \"{account.password}\"], timeout = \"0s\" }]".to_owned()),
        Just("{ env = \"HOME\" }".to_owned()),
        Just("[\"--headless\"]".to_owned()),
        "-?[0-9]{1,20}",
        Just("true".to_owned()),
        Just("1.5".to_owned()),
        Just("1979-05-27".to_owned()),
        "\"\\PC{0,8}\"",
    ];
    let line = prop_oneof![
        (key.clone(), value).prop_map(|(k, v)| format!("{k} = {v}")),
        key.clone().prop_map(|k| format!("[{k}]")),
        Just("[[steps]]".to_owned()),
        Just("[[accounts]]".to_owned()),
        Just("[browser]".to_owned()),
        Just("[launch]".to_owned()),
    ];
    prop::collection::vec(line, 0..14).prop_map(|lines| lines.join("\n"))
}

fn load_all(text: &str) {
    let _ = parse_settings(Path::new("/p/batch.toml"), text);
    let _ = parse_workflow(Path::new("/p/workflow.toml"), text);
    let _ = parse_accounts(Path::new("/p/accounts.toml"), text, &|_| None);
    let _ = parse_accounts(Path::new("/p/accounts.csv"), text, &|_| None);
}
