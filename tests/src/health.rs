//! Account health (`[health]`): an account the demo app always challenges (account
//! 2 gets a captcha page instead of a session) is quarantined after the configured
//! score — without burning its other retries — while the others finish with exact
//! server counts; the next run skips it (nothing launched, no request to the server)
//! until `accounts release` clears it or its cool-down ends, and a repeat doubles
//! the cool-down. A challenge is named by `[health]` or by the workflow step itself
//! (its `challenge_selector` replacing the project's for that step).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const BATCH: &str = "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n\
[retry]\nbackoff = \"100ms\"\n[timeouts]\naction = \"2s\"\n";

/// Runs `args` and returns the run directory it made and its journal.
async fn run_once(p: &Project, args: &[&str], code: i32) -> (PathBuf, Vec<Value>, Run) {
    let before: BTreeSet<PathBuf> = p.run_dirs().into_iter().collect();
    let run = p.run(args).await;
    assert_eq!(
        run.code,
        Some(code),
        "{args:?}\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let new: Vec<PathBuf> = p
        .run_dirs()
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert_eq!(new.len(), 1, "one new run directory: {new:?}");
    let dir = new.into_iter().next().unwrap();
    let events = events(&dir);
    (dir, events, run)
}

fn challenges(p: &Project, user: &str) -> u64 {
    p.site.counts().users.get(user).map_or(0, |u| u.challenges)
}

fn logins(p: &Project, user: &str) -> u64 {
    p.site.counts().users.get(user).map_or(0, |u| u.logins)
}

fn for_account<'a>(events: &'a [Value], name: &str, account: u64) -> Vec<&'a Value> {
    named(events, name)
        .into_iter()
        .filter(|e| e["account"] == account)
        .collect()
}

fn status(dir: &std::path::Path, account: u64) -> String {
    let r = report(dir);
    r["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == account)
        .unwrap_or_else(|| panic!("account {account} in {r}"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn accounts_cmd(p: &Project, args: &[&str]) -> String {
    let run = p.run(args).await;
    assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
    run.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenged_account_is_quarantined_skipped_released_and_cools_down() {
    let p = Project::new(3).await;
    p.site.set_challenged("user-2", true);
    p.write(
        "batch.toml",
        &format!("{BATCH}[health]\nmax_score = 3\ncooldown = \"1h\"\n"),
    );
    let run_args = step1(
        "1-3",
        &["--quantity", "2", "--concurrent", "--retries", "5"],
    );

    // 1. The score path: each failed attempt counts 1; at 3 the account is set aside,
    //    with 3 of its 6 attempts unspent; the others finish, exactly.
    let (dir, ev, _) = run_once(&p, &run_args, 1).await;
    assert_eq!(challenges(&p, "user-2"), 3, "three attempts, not six");
    assert_eq!(logins(&p, "user-2"), 0);
    assert_eq!(for_account(&ev, "retry", 2).len(), 2);
    let q = for_account(&ev, "account_quarantined", 2);
    assert_eq!(q.len(), 1, "{ev:?}");
    assert_eq!(q[0]["score"], 3);
    assert_eq!(q[0]["cooldown_ms"], 3_600_000);
    assert!(
        q[0]["reason"].as_str().unwrap().contains("#welcome"),
        "{}",
        q[0]
    );
    // Only the failed iteration is journaled; the second never ran.
    assert_eq!(for_account(&ev, "iteration_failed", 2).len(), 1);
    assert_eq!(status(&dir, 2), "quarantined");
    for user in ["user-1", "user-3"] {
        assert_eq!(p.adds(user), BTreeMap::from([(1, 1), (2, 1)]), "{user}");
        assert_eq!(logins(&p, user), 1, "{user}");
    }
    assert_eq!(
        (status(&dir, 1), status(&dir, 3)),
        ("ok".into(), "ok".into())
    );
    // The state file: beside the profiles, private.
    let state = p.path("profiles/health.json");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let list = accounts_cmd(&p, &["accounts", "list"]).await;
    let line2 = list
        .lines()
        .find(|l| l.starts_with("2 "))
        .unwrap_or_default();
    assert!(
        line2.contains("3/3") && line2.contains("#welcome"),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("1 ") && l.contains("0/3")),
        "{list}"
    );

    // 1b. `--resume` of that run: account 2's second iteration has no outcome, but
    //     it is cooling — skipped, nothing launched; the others have nothing left.
    let run_id = dir.file_name().unwrap().to_str().unwrap().to_owned();
    let resumed = p.run(&["single", "--resume", &run_id]).await;
    assert_eq!(resumed.code, Some(1), "{}", resumed.stderr);
    let ev = events(&dir);
    let part2 = ev
        .iter()
        .rposition(|e| e["event"] == "run_started")
        .unwrap();
    let part2 = &ev[part2..];
    assert_eq!(
        for_account(part2, "quarantine_skipped", 2).len(),
        1,
        "{part2:?}"
    );
    assert!(named(part2, "browser_created").is_empty(), "{part2:?}");
    assert_eq!(challenges(&p, "user-2"), 3);
    assert_eq!(status(&dir, 2), "quarantined");

    // 2. The next run skips account 2 (nothing launched, the server saw nothing of
    //    it) and runs the others; not every account ran: exit 1.
    let (dir, ev, _) = run_once(&p, &run_args, 1).await;
    assert_eq!(challenges(&p, "user-2"), 3, "skipped: no request");
    let skipped = for_account(&ev, "quarantine_skipped", 2);
    assert_eq!(skipped.len(), 1, "{ev:?}");
    assert_eq!(skipped[0]["until"], q[0]["until"]);
    assert!(for_account(&ev, "browser_created", 2).is_empty());
    assert_eq!(status(&dir, 2), "quarantined");
    for user in ["user-1", "user-3"] {
        assert_eq!(p.adds(user), BTreeMap::from([(1, 2), (2, 2)]), "{user}");
    }

    // 3. `accounts release` clears it; now with a challenge key and a short
    //    cool-down: the captcha is a full score at once — one attempt, no retries.
    let out = accounts_cmd(&p, &["accounts", "release", "--accounts", "2"]).await;
    assert!(out.contains("account 2: released"), "{out}");
    p.write(
        "batch.toml",
        &format!(
            "{BATCH}[health]\nmax_score = 3\ncooldown = \"6s\"\nchallenge_selector = \"#captcha\"\n"
        ),
    );
    let only2 = step1("2", &["--retries", "5"]);
    let (_, ev, _) = run_once(&p, &only2, 1).await;
    assert_eq!(challenges(&p, "user-2"), 4, "released: it ran, once");
    assert!(for_account(&ev, "retry", 2).is_empty());
    let q = for_account(&ev, "account_quarantined", 2);
    assert_eq!(
        (q[0]["score"].as_u64(), q[0]["cooldown_ms"].as_u64()),
        (Some(3), Some(6000))
    );
    assert!(
        q[0]["reason"].as_str().unwrap().contains("#captcha"),
        "{}",
        q[0]
    );

    // 4. Still cooling: skipped again.
    let (_, ev, _) = run_once(&p, &only2, 1).await;
    assert_eq!(for_account(&ev, "quarantine_skipped", 2).len(), 1, "{ev:?}");
    assert_eq!(challenges(&p, "user-2"), 4);

    // 5. `--include-quarantined` runs it anyway (on probation: one failure, and the
    //    cool-down doubles).
    let mut include = only2.clone();
    include.push("--include-quarantined");
    let (_, ev, _) = run_once(&p, &include, 1).await;
    assert_eq!(challenges(&p, "user-2"), 5);
    let q = for_account(&ev, "account_quarantined", 2);
    assert_eq!(q[0]["cooldown_ms"], 12_000, "{ev:?}");

    // 6. Once the cool-down is over, the next run runs it again — and once the
    //    server lets it in, it succeeds and its health is cleared.
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let until_ms = saved["accounts"]["2"]["until_ms"].as_u64().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(until_ms > now_ms, "still cooling when checked");
    tokio::time::sleep(Duration::from_millis(until_ms - now_ms + 200)).await;
    p.site.set_challenged("user-2", false);
    let (dir, ev, _) = run_once(&p, &only2, 0).await;
    assert!(for_account(&ev, "quarantine_skipped", 2).is_empty());
    assert_eq!(logins(&p, "user-2"), 1);
    assert_eq!(p.adds("user-2"), BTreeMap::from([(1, 1)]));
    assert_eq!(status(&dir, 2), "ok");
    let list = accounts_cmd(&p, &["accounts", "list"]).await;
    assert!(
        list.lines()
            .any(|l| l.starts_with("2 ") && l.contains("0/3")),
        "{list}"
    );

    // 7. The step names its own challenge: the project's selector is one the
    //    captcha page does not have, the step's is `#captcha`. Challenged again,
    //    account 2 is quarantined by the step's selector after one attempt (the
    //    project's alone would have let the score path take three).
    p.site.set_challenged("user-2", true);
    p.write(
        "batch.toml",
        &format!(
            "{BATCH}[health]\nmax_score = 3\ncooldown = \"6s\"\nchallenge_selector = \"#not-on-this-page\"\n"
        ),
    );
    p.write(
        "workflow.toml",
        &WORKFLOW.replace(
            "name = \"add-to-cart\"\n",
            "name = \"add-to-cart\"\nchallenge_selector = \"#captcha\"\n",
        ),
    );
    let (dir, ev, _) = run_once(&p, &only2, 1).await;
    assert_eq!(challenges(&p, "user-2"), 6, "one attempt");
    assert!(for_account(&ev, "retry", 2).is_empty(), "{ev:?}");
    let q = for_account(&ev, "account_quarantined", 2);
    assert_eq!(q.len(), 1, "{ev:?}");
    assert_eq!(
        q[0]["reason"], "challenge: #captcha on the page",
        "{}",
        q[0]
    );
    assert_eq!(q[0]["score"], 3);
    assert_eq!(status(&dir, 2), "quarantined");
    p.assert_nothing_left();
}
