//! The id lists of the command line: `--accounts 1-3,7`, `--steps all`, `--shard 2/4`.
//!
//! Main items: [`parse_account_list`], [`parse_step_list`] and [`shard`]. Lists are
//! checked against the loaded accounts and workflow, so every error can say which
//! file lacks an id. This module does not decide what runs when; it only names ids.

use std::collections::HashSet;
use std::path::Path;

use super::{AccountId, Accounts, ConfigError, Workflow};

const ITEM_EXPECTED: &str = "an id or a range like 1-5";

/// `fn("1-3,7", accounts) -> [1, 2, 3, 7]`: comma-separated ids and inclusive ranges,
/// or `all` (every account, in file order), for `--accounts`.
///
/// Keeps the order written. Every id, including each one a range covers, must be in
/// the accounts file; an id listed twice (also through overlapping ranges) is an error.
pub fn parse_account_list(arg: &str, accounts: &Accounts) -> Result<Vec<AccountId>, ConfigError> {
    let known: Vec<u64> = accounts.accounts.iter().map(|a| a.id).collect();
    resolve("--accounts", "account", arg, &known, &accounts.path)
}

/// `fn("1,3", workflow) -> [1, 3]`: the same syntax as [`parse_account_list`], for
/// `--steps` and `--step`, checked against the workflow's step ids.
///
/// The result is sorted by id, the order in which steps run; `all` is every step.
pub fn parse_step_list(arg: &str, workflow: &Workflow) -> Result<Vec<u32>, ConfigError> {
    let known: Vec<u64> = workflow.steps.iter().map(|s| u64::from(s.id)).collect();
    let mut ids = resolve("--steps", "step", arg, &known, &workflow.path)?;
    ids.sort_unstable();
    Ok(ids
        .into_iter()
        .map(|id| u32::try_from(id).expect("step ids are u32"))
        .collect())
}

/// `fn(ids, "I/N") -> slice`: the I-th (1-based) of N contiguous slices of `ids`
/// whose lengths differ by at most one (the first ones are the longer), for `--shard`.
///
/// A shard may be empty when there are fewer ids than shards.
pub fn shard(ids: &[AccountId], spec: &str) -> Result<Vec<AccountId>, ConfigError> {
    let expected = "(expected I/N with 1 <= I <= N, like 1/4)";
    let bad = |what: &str| ConfigError::arg("--shard", spec, format!("{what} {expected}"));
    let (i, n) = spec.trim().split_once('/').ok_or_else(|| bad("no \"/\""))?;
    let (Some(i), Some(n)) = (whole::<usize>(i), whole::<usize>(n)) else {
        return Err(bad("not two whole numbers"));
    };
    if n == 0 {
        return Err(bad("zero shards"));
    }
    if i == 0 || i > n {
        return Err(bad(&format!("shard {i} is out of range 1..={n}")));
    }
    let (len, index) = (ids.len(), i - 1);
    let (base, extra) = (len / n, len % n);
    let start = index * base + index.min(extra);
    let size = base + usize::from(index < extra);
    Ok(ids[start..start + size].to_vec())
}

/// Parses `arg` and checks it against `known` (file order), naming `file` when an
/// id is missing; `noun` is "account" or "step".
fn resolve(
    flag: &str,
    noun: &str,
    arg: &str,
    known: &[u64],
    file: &Path,
) -> Result<Vec<u64>, ConfigError> {
    let err = |message: String| ConfigError::arg(flag, arg, message);
    if arg.trim() == "all" {
        return Ok(known.to_vec());
    }
    if arg.trim().is_empty() {
        return Err(err(format!(
            "nothing listed (expected {noun} ids and ranges like 1-3,7, or all)"
        )));
    }
    let known_set: HashSet<u64> = known.iter().copied().collect();
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for (index, raw) in arg.split(',').enumerate() {
        let text = raw.trim();
        let (lo, hi) = parse_item(text, index + 1).map_err(err)?;
        // A range wider than the whole file necessarily names a missing id: the
        // loop stops at the first one rather than walking the whole range.
        for id in lo..=hi {
            if !known_set.contains(&id) {
                let within = if text.contains('-') {
                    format!(" (in {text:?})")
                } else {
                    String::new()
                };
                return Err(err(format!(
                    "{noun} {id}{within} is not in {} (expected one of its ids: {})",
                    file.display(),
                    compress(known)
                )));
            }
            if !seen.insert(id) {
                return Err(err(format!(
                    "{noun} {id} is listed twice (expected each {noun} at most once)"
                )));
            }
            ids.push(id);
        }
    }
    Ok(ids)
}

/// One item of a list (`7` or `1-5`) as an inclusive range; `position` is 1-based.
fn parse_item(text: &str, position: usize) -> Result<(u64, u64), String> {
    let not_an_id =
        || format!("item {text:?} at position {position} is not an id (expected {ITEM_EXPECTED})");
    match text {
        "" => Err(format!(
            "empty item at position {position} (expected {ITEM_EXPECTED})"
        )),
        "all" => Err(format!(
            "\"all\" at position {position} is not alone (expected all by itself, or ids and \
             ranges)"
        )),
        _ => match text.split_once('-') {
            None => whole(text).map(|id| (id, id)).ok_or_else(not_an_id),
            Some((lo, hi)) => match (
                whole(lo).ok_or_else(not_an_id)?,
                whole(hi).ok_or_else(not_an_id)?,
            ) {
                (lo, hi) if lo > hi => Err(format!(
                    "range {text:?} at position {position} is reversed (expected the lower id \
                     first, like 1-5)"
                )),
                range => Ok(range),
            },
        },
    }
}

/// A whole number written with ASCII digits only (no sign), surrounding spaces aside.
pub(super) fn whole<T: std::str::FromStr>(s: &str) -> Option<T> {
    let s = s.trim();
    s.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| s.parse().ok())?
}

/// `[1, 2, 3, 7]` as `1-3,7` (sorted), cut short after a dozen items.
fn compress(ids: &[u64]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for id in sorted {
        match runs.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(id) => *hi = id,
            _ => runs.push((id, id)),
        }
    }
    let mut items: Vec<String> = (runs.iter().take(12))
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    if runs.len() > 12 {
        items.push("…".to_owned());
    }
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(",")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::config::{Account, Action, ActionKind, Step, Template};

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

    fn check(arg: &str, expected: Result<&[u64], &str>) {
        let accounts = accounts(&[1, 2, 3, 4, 5, 7, 10]);
        let got = parse_account_list(arg, &accounts).map_err(|e| e.to_string());
        match (&got, &expected) {
            (Ok(g), Ok(e)) => assert_eq!(g.as_slice(), *e, "arg {arg:?}"),
            (Err(g), Err(e)) => assert_eq!(g, e, "arg {arg:?}"),
            _ => panic!("arg {arg:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn account_lists() {
        check("1,2,3", Ok(&[1, 2, 3]));
        check("1-5", Ok(&[1, 2, 3, 4, 5]));
        check("1-3,7", Ok(&[1, 2, 3, 7]));
        check("7,1-2", Ok(&[7, 1, 2]));
        check(" 10 , 4-4 ", Ok(&[10, 4]));
        check("all", Ok(&[1, 2, 3, 4, 5, 7, 10]));
        check(
            "1,,x",
            Err(
                "--accounts \"1,,x\": empty item at position 2 (expected an id or a range like 1-5)",
            ),
        );
        check(
            "1,x",
            Err(
                "--accounts \"1,x\": item \"x\" at position 2 is not an id (expected an id or a range like 1-5)",
            ),
        );
        check(
            "+1",
            Err(
                "--accounts \"+1\": item \"+1\" at position 1 is not an id (expected an id or a range like 1-5)",
            ),
        );
        check(
            "1-",
            Err(
                "--accounts \"1-\": item \"1-\" at position 1 is not an id (expected an id or a range like 1-5)",
            ),
        );
        check(
            "1,",
            Err("--accounts \"1,\": empty item at position 2 (expected an id or a range like 1-5)"),
        );
        check(
            "5-1",
            Err(
                "--accounts \"5-1\": range \"5-1\" at position 1 is reversed (expected the lower id first, like 1-5)",
            ),
        );
        check(
            "1,1",
            Err(
                "--accounts \"1,1\": account 1 is listed twice (expected each account at most once)",
            ),
        );
        check(
            "1-3,2",
            Err(
                "--accounts \"1-3,2\": account 2 is listed twice (expected each account at most once)",
            ),
        );
        check(
            "9",
            Err(
                "--accounts \"9\": account 9 is not in /p/accounts.toml (expected one of its ids: 1-5,7,10)",
            ),
        );
        check(
            "4-8",
            Err(
                "--accounts \"4-8\": account 6 (in \"4-8\") is not in /p/accounts.toml (expected one of its ids: 1-5,7,10)",
            ),
        );
        check(
            "1-18446744073709551615",
            Err(
                "--accounts \"1-18446744073709551615\": account 6 (in \"1-18446744073709551615\") is not in /p/accounts.toml (expected one of its ids: 1-5,7,10)",
            ),
        );
        check(
            "1,all",
            Err(
                "--accounts \"1,all\": \"all\" at position 2 is not alone (expected all by itself, or ids and ranges)",
            ),
        );
        check(
            "",
            Err(
                "--accounts \"\": nothing listed (expected account ids and ranges like 1-3,7, or all)",
            ),
        );
    }

    #[test]
    fn step_lists() {
        let step = |id| Step {
            id,
            name: format!("step-{id}"),
            before: vec![],
            actions: vec![Action {
                line: 1,
                kind: ActionKind::AssertUrl {
                    substr: Template::parse("x").unwrap(),
                },
            }],
            after: vec![],
            challenge_selector: None,
            challenge_text: None,
            data: None,
        };
        let workflow = Workflow {
            path: PathBuf::from("/p/workflow.toml"),
            base_url: String::new(),
            steps: vec![step(1), step(2), step(5)],
        };
        let check = |arg: &str, expected: Result<&[u32], &str>| {
            let got = parse_step_list(arg, &workflow).map_err(|e| e.to_string());
            match (&got, &expected) {
                (Ok(g), Ok(e)) => assert_eq!(g.as_slice(), *e, "arg {arg:?}"),
                (Err(g), Err(e)) => assert_eq!(g, e, "arg {arg:?}"),
                _ => panic!("arg {arg:?}: got {got:?}, expected {expected:?}"),
            }
        };
        check("all", Ok(&[1, 2, 5]));
        check("5,1", Ok(&[1, 5]));
        check("1-2", Ok(&[1, 2]));
        check(
            "3",
            Err(
                "--steps \"3\": step 3 is not in /p/workflow.toml (expected one of its ids: 1-2,5)",
            ),
        );
        check(
            "2,2",
            Err("--steps \"2,2\": step 2 is listed twice (expected each step at most once)"),
        );
        check(
            "x",
            Err(
                "--steps \"x\": item \"x\" at position 1 is not an id (expected an id or a range like 1-5)",
            ),
        );
    }

    #[test]
    fn shards() {
        let ids: Vec<u64> = (1..=10).collect();
        let check = |spec: &str, expected: Result<&[u64], &str>| {
            let got = shard(&ids, spec).map_err(|e| e.to_string());
            match (&got, &expected) {
                (Ok(g), Ok(e)) => assert_eq!(g.as_slice(), *e, "spec {spec:?}"),
                (Err(g), Err(e)) => assert_eq!(g, e, "spec {spec:?}"),
                _ => panic!("spec {spec:?}: got {got:?}, expected {expected:?}"),
            }
        };
        check("1/1", Ok(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
        check("1/3", Ok(&[1, 2, 3, 4]));
        check("2/3", Ok(&[5, 6, 7]));
        check("3/3", Ok(&[8, 9, 10]));
        check("2/2", Ok(&[6, 7, 8, 9, 10]));
        check("10/10", Ok(&[10]));
        check("12/12", Ok(&[]));
        check(
            "0/3",
            Err(
                "--shard \"0/3\": shard 0 is out of range 1..=3 (expected I/N with 1 <= I <= N, like 1/4)",
            ),
        );
        check(
            "4/3",
            Err(
                "--shard \"4/3\": shard 4 is out of range 1..=3 (expected I/N with 1 <= I <= N, like 1/4)",
            ),
        );
        check(
            "1/0",
            Err("--shard \"1/0\": zero shards (expected I/N with 1 <= I <= N, like 1/4)"),
        );
        check(
            "3",
            Err("--shard \"3\": no \"/\" (expected I/N with 1 <= I <= N, like 1/4)"),
        );
        check(
            "a/b",
            Err("--shard \"a/b\": not two whole numbers (expected I/N with 1 <= I <= N, like 1/4)"),
        );
        // Every id lands in exactly one shard, in order.
        for n in 1..=12 {
            let all: Vec<u64> = (1..=n)
                .flat_map(|i| shard(&ids, &format!("{i}/{n}")).unwrap())
                .collect();
            assert_eq!(all, ids, "n = {n}");
        }
    }
}
