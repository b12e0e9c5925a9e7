//! The guarantees under real conditions: a reaper kills only what it owns, and a run
//! leaves no process — live or zombie — behind.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::harness::*;

/// `single --step 1` for `accounts`, `quantity` iterations, concurrent, no interval,
/// journal under `runs-<name>`.
fn runner(p: &Project, name: &str, accounts: &str, quantity: &str) -> tokio::process::Child {
    let output = p.path(&format!("runs-{name}"));
    p.command(&step1(
        accounts,
        &[
            "--quantity",
            quantity,
            "--concurrent",
            "--launch-interval",
            "0",
            "--output",
            output.to_str().unwrap(),
        ],
    ))
    .spawn()
    .unwrap()
}

/// The journal of the one run under `runs-<name>`.
fn journal_of(p: &Project, name: &str) -> Vec<Value> {
    let dirs: Vec<_> = std::fs::read_dir(p.path(&format!("runs-{name}")))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{name}: {dirs:?}");
    events(&dirs[0])
}

/// Poll the journal of runner `name` until an event satisfies `pred`.
async fn wait_in(p: &Project, name: &str, what: &str, pred: impl Fn(&Value) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let dir = p.path(&format!("runs-{name}"));
    loop {
        let found = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|run| {
                std::fs::read_to_string(run.path().join("events.jsonl")).is_ok_and(|text| {
                    text.lines()
                        .filter(|l| l.ends_with('}'))
                        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                        .any(|e| pred(&e))
                })
            });
        if found {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {name}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn finish(child: tokio::process::Child, name: &str) {
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} finished"))
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_neighbours_leftovers_are_reaped_and_live_runners_are_untouched() {
    const QUANTITY_A: u32 = 16;
    let p = Project::new(11).await;
    p.write("workflow.toml", &slow_workflow());
    // A works accounts 10 and 11 (profiles account-10, account-11: the old reaper
    // matched `--user-data-dir=…/account-1` as a substring of these).
    let a = runner(&p, "a", "10,11", &QUANTITY_A.to_string());
    for account in [10, 11] {
        wait_in(&p, "a", "both browsers working", |e| {
            e["event"] == "iteration_ok" && e["account"] == account
        })
        .await;
    }
    // B on account 1 is SIGKILLed mid-run.
    let b = runner(&p, "b", "1", "50");
    let b_pid = b.id().unwrap();
    wait_in(&p, "b", "working", |e| {
        e["event"] == "iteration_ok" && e["account"] == 1
    })
    .await;
    signal(b_pid, Signal::SIGKILL);
    let _ = b.wait_with_output().await;
    // C on account 2 starts while A still runs, and reaps B's record.
    let c = runner(&p, "c", "2", "1");
    finish(c, "c").await;
    finish(a, "a").await;

    let c_events = journal_of(&p, "c");
    let reaped = named(&c_events, "reaped");
    assert_eq!(reaped.len(), 1, "{c_events:?}");
    assert_eq!(reaped[0]["browsers"], 1, "B's one browser record");
    let a_events = journal_of(&p, "a");
    let a_finished = named(&a_events, "run_finished")[0]["ts"].as_str().unwrap();
    assert!(
        reaped[0]["ts"].as_str().unwrap() < a_finished,
        "C reaped while A was still running"
    );
    // A never noticed: no crash, one browser per account, exact server-side counts.
    assert!(
        named(&a_events, "browser_crashed").is_empty(),
        "{a_events:?}"
    );
    assert!(named(&a_events, "retry").is_empty());
    let launches: BTreeMap<u64, usize> =
        named(&a_events, "browser_created")
            .iter()
            .fold(BTreeMap::new(), |mut m, e| {
                *m.entry(e["account"].as_u64().unwrap()).or_default() += 1;
                m
            });
    assert_eq!(launches, BTreeMap::from([(10, 1), (11, 1)]));
    let exact: BTreeMap<u32, u64> = (1..=QUANTITY_A).map(|i| (i, 1)).collect();
    assert_eq!(p.adds("user-10"), exact);
    assert_eq!(p.adds("user-11"), exact);
    assert_eq!(p.adds("user-2"), BTreeMap::from([(1, 1)]));
    p.assert_nothing_left();
}

/// A process killed and reaped when dropped, even if the test fails.
struct Stranger(std::process::Child);

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_naming_a_reused_pid_spares_that_process() {
    let p = Project::new(1).await;
    let stranger = Stranger(
        std::process::Command::new("sleep")
            .arg("120")
            .spawn()
            .unwrap(),
    );
    let pid = stranger.0.id();
    let stat = fsutil::proc::stat(pid).unwrap();
    let boot = fsutil::proc::boot_id();
    // A dead runner's record whose driver pid has since been reused by `sleep`: same
    // pid and group, another start time.
    let record = serde_json::json!({
        "runner": {"pid": 999_999, "start_time": 1, "boot_id": boot},
        "pgid": stat.pgid,
        "processes": [{"pid": pid, "start_time": stat.start_time + 1, "boot_id": boot}],
        "profile": p.path("profiles/account-1"),
    });
    let browsers = p.runtime_dir().join("batch-cli/browsers");
    std::fs::create_dir_all(&browsers).unwrap();
    std::fs::write(
        browsers.join(format!("999999.1-{}.json", stat.pgid)),
        record.to_string(),
    )
    .unwrap();

    let run = p
        .run(&step1("1", &["--launch-interval", "0", "--json"]))
        .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let events: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reaped = named(&events, "reaped");
    assert_eq!(reaped.len(), 1, "{}", run.stdout);
    assert_eq!(reaped[0]["browsers"], 1, "the record was dropped");
    assert_eq!(
        reaped[0]["processes"],
        serde_json::json!([]),
        "nothing killed"
    );
    assert!(
        fsutil::proc::alive(pid),
        "the stranger on the reused pid lives"
    );
    assert_eq!(fsutil::proc::stat(pid).unwrap().start_time, stat.start_time);
    assert_eq!(std::fs::read_dir(&browsers).unwrap().count(), 0);
    drop(stranger);
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_leaves_no_zombie_and_no_process_behind() {
    // Whatever the runner leaves is re-parented to this test process.
    become_subreaper();
    let p = Project::new(3).await;
    let child = p
        .command(&step1(
            "1-3",
            &["--concurrent", "--no-launch-lock", "--launch-interval", "0"],
        ))
        .spawn()
        .unwrap();
    let runner_pid = child.id().unwrap();
    let out = crate::harness::finish(child, 120).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Checked at once: batch-cli exits only after every process it started is gone.
    let left = my_children();
    let marked = marked_by(runner_pid);
    let mentioning = p.live_processes();
    // Reap what the runner left before asserting, so a failure leaves no zombie.
    while nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(-1),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    )
    .is_ok_and(|s| s != nix::sys::wait::WaitStatus::StillAlive)
    {}
    assert!(left.is_empty(), "children left (zombie or live): {left:?}");
    assert!(
        marked.is_empty(),
        "processes of the runner alive: {marked:?}"
    );
    assert!(
        mentioning.is_empty(),
        "processes on the project: {mentioning:?}"
    );
    assert_eq!(p.adds("user-3"), BTreeMap::from([(1, 1)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_dir_another_user_prepared_is_refused_with_exit_3() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new(1).await;
    let prepared = p.runtime_dir().join("batch-cli");
    std::fs::create_dir_all(&prepared).unwrap();
    std::fs::set_permissions(&prepared, std::fs::Permissions::from_mode(0o777)).unwrap();
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(&prepared, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    }
    let run = p.run(&step1("1", &["--launch-interval", "0"])).await;
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("runtime directory"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&prepared.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("XDG_RUNTIME_DIR"), "{}", run.stderr);
    assert!(p.adds("user-1").is_empty(), "nothing launched");
    p.assert_nothing_left();
}
