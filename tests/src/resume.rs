//! `--resume` and the journal as the source of truth: a runner killed (SIGKILL) or
//! interrupted (Ctrl-C, SIGTERM) mid-run is resumed in the same run directory, and
//! the demo app's per-user counts show that no iteration journaled as done ran twice
//! and none is missing; `batch-cli report` rebuilds a killed run's report.json; a
//! conflicting argument is exit 2 with nothing launched; a failure carries its page.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::harness::*;

const QUANTITY: u32 = 6;

/// The journal's complete lines (the last one may be mid-write while a run is live).
fn lines(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Wait until the journal has at least `n` `iteration_ok` lines after its
/// `part`-th `run_started` (1-based).
async fn wait_for_oks(dir: &Path, part: usize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let events = lines(dir);
        let starts: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e["event"] == "run_started")
            .map(|(i, _)| i)
            .collect();
        if let Some(&from) = starts.get(part - 1) {
            let oks = events[from..]
                .iter()
                .filter(|e| e["event"] == "iteration_ok")
                .count();
            if oks >= n {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} iteration_ok in part {part}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(account, iteration)` journaled ok, in journal order (duplicates kept).
fn oks(events: &[Value]) -> Vec<(u64, u32)> {
    named(events, "iteration_ok")
        .iter()
        .map(|e| {
            (
                e["account"].as_u64().unwrap(),
                e["iteration"].as_u64().unwrap() as u32,
            )
        })
        .collect()
}

/// What a strike (kill or interrupt) left: the iterations journaled done, and the
/// server's adds per account and item at that moment (the runner already gone).
struct Strike {
    done: BTreeSet<(u64, u32)>,
    adds: Vec<BTreeMap<u32, u64>>,
}

fn strike(p: &Project, dir: &Path) -> Strike {
    Strike {
        done: oks(&lines(dir)).into_iter().collect(),
        adds: (1..=3u64).map(|a| p.adds(&format!("user-{a}"))).collect(),
    }
}

/// The whole run is complete: every iteration journaled ok exactly once; the server
/// saw each item at least once; an iteration journaled done before a strike was
/// added exactly once and never again after it (no journaled iteration ran twice);
/// at each strike at most one iteration per account was in flight — the
/// at-least-once one, the only kind that may have been added more than once.
fn check_complete(p: &Project, dir: &Path, strikes: &[Strike]) {
    let events = events(dir);
    let all = oks(&events);
    let distinct: BTreeSet<(u64, u32)> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        distinct.len(),
        "an iteration journaled twice: {all:?}"
    );
    let expected: BTreeSet<(u64, u32)> = (1..=2u64)
        .flat_map(|a| (1..=QUANTITY).map(move |i| (a, i)))
        .collect();
    assert_eq!(distinct, expected, "every iteration journaled ok");
    for account in 1..=2u64 {
        let adds = p.adds(&format!("user-{account}"));
        let count = |m: &BTreeMap<u32, u64>, i: u32| m.get(&i).copied().unwrap_or(0);
        for i in 1..=QUANTITY {
            assert!(
                count(&adds, i) >= 1,
                "account {account}: item {i} never added ({adds:?})"
            );
        }
        let mut repeats = 0;
        for (k, s) in strikes.iter().enumerate() {
            let then = &s.adds[account as usize - 1];
            for i in 1..=QUANTITY {
                if s.done.contains(&(account, i)) {
                    assert_eq!(
                        count(&adds, i),
                        count(then, i),
                        "account {account}: item {i} was journaled done at strike {}, yet ran again ({then:?} then, {adds:?} now)",
                        k + 1
                    );
                } else if count(then, i) > 0 {
                    // Added but not journaled: in flight at this strike.
                    repeats += 1;
                }
            }
        }
        assert!(
            repeats <= strikes.len(),
            "account {account}: more in flight than one per strike ({adds:?})"
        );
        for i in 1..=QUANTITY {
            assert!(
                count(&adds, i) <= 1 + strikes.len() as u64,
                "account {account}: item {i} added {} times",
                count(&adds, i)
            );
        }
    }
    let report = report(dir);
    assert_eq!(report["exit_code"], 0, "{report}");
    assert_eq!(report["totals"]["iterations_ok"], 2 * QUANTITY);
    assert_eq!(report["totals"]["iterations_failed"], 0);
    for a in report["accounts"].as_array().unwrap() {
        assert_eq!(a["status"], "ok", "{a}");
    }
}

fn run_args(extra: &[&'static str]) -> Vec<&'static str> {
    let q: &'static str = Box::leak(QUANTITY.to_string().into_boxed_str());
    let mut v = step1(
        "1-2",
        &[
            "--quantity",
            q,
            "--concurrent",
            "--launch-interval",
            "0",
            "--json",
        ],
    );
    v.extend_from_slice(extra);
    v
}

fn run_id(dir: &Path) -> String {
    dir.file_name().unwrap().to_str().unwrap().to_string()
}

fn started_parts(dir: &Path) -> usize {
    named(&lines(dir), "run_started").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_run_is_rebuilt_and_resumed_without_repeating_or_missing_an_iteration() {
    let p = Project::new(2).await;
    p.write("workflow.toml", &slow_workflow());
    let child = p.command(&run_args(&[])).spawn().unwrap();
    let pid = child.id().unwrap();
    // Wait for the run directory, then for two iterations done.
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.run_dirs().is_empty() {
        assert!(Instant::now() < deadline, "no run directory");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = p.run_dir();
    wait_for_oks(&dir, 1, 3).await;
    signal(pid, Signal::SIGKILL);
    let out = finish(child, 30).await;
    assert_eq!(out.status.code(), None, "killed");
    // The killed runner's browsers die with it (parent-death signal).
    p.assert_nothing_left();
    assert!(
        !dir.join("report.json").exists(),
        "a killed runner wrote no report"
    );
    let killed = strike(&p, &dir);
    let done_before = killed.done.clone();
    assert!(done_before.len() >= 3 && done_before.len() < 2 * QUANTITY as usize);
    for (a, i) in &done_before {
        assert_eq!(
            killed.adds[*a as usize - 1].get(i),
            Some(&1),
            "journaled done, and added once"
        );
    }

    // `batch-cli report` rebuilds report.json from the journal.
    let dir_arg = dir.display().to_string();
    let rebuilt = p.run(&["report", &dir_arg]).await;
    assert_eq!(rebuilt.code, Some(0), "{}", rebuilt.stderr);
    assert!(
        rebuilt.stderr.contains("was missing: rebuilt"),
        "{}",
        rebuilt.stderr
    );
    assert!(rebuilt.stdout.contains("exit 137"), "{}", rebuilt.stdout);
    let r = report(&dir);
    assert_eq!(r["interrupted"], true);
    assert_eq!(r["exit_code"], 137);
    assert_eq!(r["totals"]["iterations_ok"], done_before.len());
    let again = p.run(&["report", &dir_arg]).await;
    assert!(
        !again.stderr.contains("rebuilt"),
        "a current report is left: {}",
        again.stderr
    );

    // A conflicting --quantity: exit 2 naming both values, nothing launched or journaled.
    let before = std::fs::read(dir.join("events.jsonl")).unwrap();
    let id = run_id(&dir);
    let conflict = p.run(&["single", "--resume", &id, "--quantity", "3"]).await;
    assert_eq!(conflict.code, Some(2), "{}", conflict.stderr);
    assert!(
        conflict.stderr.contains(&format!(
            "--quantity: 3 conflicts with the run's recorded quantity {QUANTITY}"
        )),
        "{}",
        conflict.stderr
    );
    assert_eq!(std::fs::read(dir.join("events.jsonl")).unwrap(), before);
    assert_eq!(
        p.site.counts().users["user-1"].logins,
        1,
        "nothing launched"
    );

    // Resume with the run id alone (plus the harness's --config/--output/--base-url,
    // which agree with the recorded ones).
    let resumed = p.run(&["single", "--resume", &id, "--json"]).await;
    assert_eq!(
        resumed.code,
        Some(0),
        "{}\n{}",
        resumed.stdout,
        resumed.stderr
    );
    assert_eq!(p.run_dirs().len(), 1, "the same run directory");
    assert_eq!(started_parts(&dir), 2);
    // --json printed this part's lines, exactly as journaled.
    let printed: Vec<Value> = resumed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let journal = lines(&dir);
    assert_eq!(printed[..], journal[journal.len() - printed.len()..]);
    assert_eq!(printed[0]["event"], "run_started");
    assert_eq!(printed[0]["resumed"], true);
    let strikes = [killed];
    check_complete(&p, &dir, &strikes);
    // `before` ran again for each account with work left: a second login.
    for u in ["user-1", "user-2"] {
        assert_eq!(p.site.counts().users[u].logins, 2, "{u}");
    }

    // The runner's own report is the journal's fold: `report` finds it current.
    let current = p.run(&["report", &dir_arg]).await;
    assert_eq!(current.code, Some(0), "{}", current.stderr);
    assert!(!current.stderr.contains("rebuilt"), "{}", current.stderr);
    assert!(current.stdout.contains("exit 0"), "{}", current.stdout);

    // Resuming a complete run launches nothing and changes nothing.
    let adds = (p.adds("user-1"), p.adds("user-2"));
    let idle = p.run(&["single", "--resume", &id, "--json"]).await;
    assert_eq!(idle.code, Some(0), "{}", idle.stderr);
    let events = events(&dir);
    let last_start = events
        .iter()
        .rposition(|e| e["event"] == "run_started")
        .unwrap();
    assert!(
        named(&events[last_start..], "browser_created").is_empty(),
        "no browser for accounts with nothing left"
    );
    assert_eq!((p.adds("user-1"), p.adds("user-2")), adds);
    check_complete(&p, &dir, &strikes);
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_interrupted_by_sigint_sigterm_and_sighup_resumes_each_time_and_completes() {
    let p = Project::new(2).await;
    p.write("workflow.toml", &slow_workflow());
    let child = p.command(&run_args(&[])).spawn().unwrap();
    let pid = child.id().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.run_dirs().is_empty() {
        assert!(Instant::now() < deadline, "no run directory");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = p.run_dir();
    let id = run_id(&dir);
    wait_for_oks(&dir, 1, 2).await;
    // Ctrl-C: a clean shutdown, exit 130, a report saying so.
    signal(pid, Signal::SIGINT);
    let out = finish(child, 60).await;
    assert_eq!(out.status.code(), Some(130));
    p.assert_nothing_left();
    assert_eq!(report(&dir)["interrupted"], true);
    let first = strike(&p, &dir);

    // First resume, stopped by SIGTERM once it has done one more iteration.
    let child = p
        .command(&["single", "--resume", &id, "--json"])
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    wait_for_oks(&dir, 2, 1).await;
    signal(pid, Signal::SIGTERM);
    let out = finish(child, 60).await;
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.assert_nothing_left();
    let second = strike(&p, &dir);
    assert!(second.done.is_superset(&first.done) && second.done.len() > first.done.len());
    let r = report(&dir);
    assert_eq!(r["exit_code"], 130);
    assert_eq!(
        r["totals"]["iterations_ok"],
        second.done.len(),
        "the report covers both parts"
    );

    // Second resume, stopped by SIGHUP (the terminal went away).
    let child = p
        .command(&["single", "--resume", &id, "--json"])
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    wait_for_oks(&dir, 3, 1).await;
    signal(pid, Signal::SIGHUP);
    let out = finish(child, 60).await;
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.assert_nothing_left();
    let third = strike(&p, &dir);
    assert!(third.done.is_superset(&second.done) && third.done.len() > second.done.len());

    // Third resume: runs to the end.
    let last = p.run(&["single", "--resume", &id]).await;
    assert_eq!(last.code, Some(0), "{}\n{}", last.stdout, last.stderr);
    assert_eq!(started_parts(&dir), 4);
    check_complete(&p, &dir, &[first, second, third]);
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_iteration_carries_its_page_url_title_and_screenshot() {
    let p = Project::new(1).await;
    p.write(
        "workflow.toml",
        r##"
base_url = "http://127.0.0.1:9"
[[steps]]
id = 1
before = [{ goto = "{base_url}/login" }]
actions = [
  { goto = "{base_url}/login?next={account.password}" },
  { wait_for = "#does-not-exist", timeout = "300ms" },
]
"##,
    );
    let run = p
        .run(&step1("1", &["--retries", "1", "--launch-interval", "0"]))
        .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let dir = p.run_dir();
    let events = events(&dir);
    let failed = named(&events, "iteration_failed");
    assert_eq!(failed.len(), 1);
    let f = failed[0];
    let url = f["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/login?next=", p.site.base_url())),
        "{f}"
    );
    assert!(
        url.contains("***") && !url.contains("pass-1"),
        "redacted: {url}"
    );
    assert!(f["title"].is_string(), "{f}");
    let shot = f["screenshot"].as_str().unwrap();
    assert!(
        Path::new(shot).starts_with(&dir) && Path::new(shot).exists(),
        "{shot}"
    );
    let shots = named(&events, "failure_screenshot");
    assert_eq!(shots.len(), 2, "one per attempt");
    assert_eq!(shots[1]["path"], f["screenshot"]);
    assert_eq!(shots[1]["url"], f["url"]);
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert!(!text.contains("pass-1"));
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_resume_skips_finished_accounts_and_keeps_plan_order() {
    let p = Project::new(3).await;
    p.write("workflow.toml", &slow_workflow());
    let child = p
        .command(&step1(
            "1-3",
            &["--quantity", "2", "--launch-interval", "0", "--json"],
        ))
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    // Account 1 done, account 2 one iteration in: kill.
    wait_for_event(&p, "account 2's first iteration", |e| {
        e["event"] == "iteration_ok" && e["account"] == 2
    })
    .await;
    signal(pid, Signal::SIGKILL);
    let _ = finish(child, 30).await;
    p.assert_nothing_left();
    let dir = p.run_dir();
    let killed = strike(&p, &dir);
    assert!(killed.done.contains(&(1, 2)) && killed.done.contains(&(2, 1)));
    let logins_1 = p.site.counts().users["user-1"].logins;

    let resumed = p.run(&["single", "--resume", &run_id(&dir)]).await;
    assert_eq!(
        resumed.code,
        Some(0),
        "{}\n{}",
        resumed.stdout,
        resumed.stderr
    );
    let events = events(&dir);
    let part2 = &events[events
        .iter()
        .rposition(|e| e["event"] == "run_started")
        .unwrap()..];
    let created: Vec<u64> = named(part2, "browser_created")
        .iter()
        .map(|e| e["account"].as_u64().unwrap())
        .collect();
    assert_eq!(
        created,
        [2, 3],
        "account 1 had nothing left; plan order kept"
    );
    assert_eq!(p.site.counts().users["user-1"].logins, logins_1);
    // Account 2's done iteration was not redone; everything else ran.
    assert_eq!(p.adds("user-1"), killed.adds[0], "account 1 untouched");
    assert_eq!(p.adds("user-2").get(&1), killed.adds[1].get(&1));
    for u in ["user-2", "user-3"] {
        for i in 1..=2 {
            assert!(p.adds(u).get(&i).copied().unwrap_or(0) >= 1, "{u} item {i}");
        }
    }
    let r = report(&dir);
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["totals"]["iterations_ok"], 6);
    let ids: Vec<u64> = r["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    p.assert_nothing_left();
}
