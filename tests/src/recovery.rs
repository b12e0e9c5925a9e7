//! Phase 2: collisions impossible by construction, crash recovery, no orphans.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::harness::*;

fn all_iterations_seen(p: &Project, user: &str, quantity: u32) {
    let adds = p.adds(user);
    for i in 1..=quantity {
        assert!(
            adds.get(&i).copied().unwrap_or(0) >= 1,
            "{user}: item {i} never added ({adds:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_browsers_at_once_never_share_a_port_or_profile() {
    let p = Project::new(10).await;
    for round in 1..=3 {
        let run = p
            .run(&step1(
                "1-10",
                &[
                    "--concurrent",
                    "--no-launch-lock",
                    "--launch-interval",
                    "0",
                    "--json",
                ],
            ))
            .await;
        assert_eq!(run.code, Some(0), "round {round}: {}", run.stderr);
        let events: Vec<Value> = run
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let created = named(&events, "browser_created");
        assert_eq!(created.len(), 10, "round {round}");
        for key in ["port", "driver_port", "profile", "pid"] {
            let distinct: HashSet<String> = created.iter().map(|e| e[key].to_string()).collect();
            assert_eq!(distinct.len(), 10, "round {round}: {key} collided");
        }
        assert!(
            named(&events, "launch_lock_acquired").is_empty(),
            "no lock events without the lock"
        );
        assert_eq!(named(&events, "iteration_failed").len(), 0);
    }
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_small_port_range_never_collide() {
    let p = Project::new(6).await;
    p.write("batch.toml", "[ports]\nrange = \"47310-47325\"\n");
    let a = p.command(&step1(
        "1-3",
        &[
            "--concurrent",
            "--no-launch-lock",
            "--launch-interval",
            "0",
            "--json",
        ],
    ));
    let b = p.command(&step1(
        "4-6",
        &[
            "--concurrent",
            "--no-launch-lock",
            "--launch-interval",
            "0",
            "--json",
        ],
    ));
    let (mut a, mut b) = (a, b);
    let (ra, rb) = tokio::join!(a.output(), b.output());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        ra.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ra.stderr)
    );
    assert_eq!(
        rb.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rb.stderr)
    );
    let mut ports = Vec::new();
    for out in [&ra, &rb] {
        for e in String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
        {
            if e["event"] == "browser_created" {
                ports.push(e["port"].as_u64().unwrap());
                ports.push(e["driver_port"].as_u64().unwrap());
            }
        }
    }
    assert_eq!(ports.len(), 12);
    assert!(
        ports.iter().all(|p| (47310..=47325).contains(p)),
        "{ports:?}"
    );
    let distinct: HashSet<_> = ports.iter().collect();
    assert_eq!(
        distinct.len(),
        12,
        "ports collided across processes: {ports:?}"
    );
    p.assert_nothing_left();
}

/// Kill something of account 1's first browser mid-run; the run must still succeed.
async fn survives(strike: impl Fn(&Value, &Project)) {
    survives_with("", strike).await
}

async fn survives_with(batch_toml: &str, strike: impl Fn(&Value, &Project)) {
    let p = Project::new(2).await;
    p.write("workflow.toml", &slow_workflow());
    p.write("batch.toml", batch_toml);
    let child = p
        .command(&step1(
            "1,2",
            &["--quantity", "4", "--concurrent", "--launch-interval", "0"],
        ))
        .spawn()
        .unwrap();
    let first = wait_for_event(&p, "account 1's first iteration", |e| {
        e["event"] == "iteration_ok" && e["account"] == 1
    })
    .await;
    let _ = first;
    let created = wait_for_event(&p, "account 1's browser", |e| {
        e["event"] == "browser_created" && e["account"] == 1
    })
    .await;
    strike(&created, &p);
    let out = crate::harness::finish(child, 180).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = p.run_dir();
    let events = events(&dir);
    let crashed = named(&events, "browser_crashed");
    assert_eq!(crashed.len(), 1, "{crashed:?}");
    assert_eq!(crashed[0]["account"], 1);
    assert!(named(&events, "retry").iter().any(|e| e["account"] == 1));
    let launches: BTreeMap<u64, usize> =
        named(&events, "browser_created")
            .iter()
            .fold(BTreeMap::new(), |mut m, e| {
                *m.entry(e["account"].as_u64().unwrap()).or_default() += 1;
                m
            });
    assert_eq!(
        launches,
        BTreeMap::from([(1, 2), (2, 1)]),
        "only account 1 got a new browser"
    );
    let report = report(&dir);
    assert_eq!(report["totals"]["iterations_ok"], 8);
    assert_eq!(report["accounts"][0]["browser_launches"], 2);
    all_iterations_seen(&p, "user-1", 4);
    all_iterations_seen(&p, "user-2", 4);
    // The replacement browser used the same persistent profile.
    let profiles: HashSet<&str> = named(&events, "browser_created")
        .iter()
        .filter(|e| e["account"] == 1)
        .map(|e| e["profile"].as_str().unwrap())
        .collect();
    assert_eq!(profiles.len(), 1);
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_chrome_mid_run_is_recovered() {
    survives(|created, _| signal_pid_of(created, "pid", Signal::SIGKILL)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_chromedriver_mid_run_is_recovered() {
    survives(|created, _| signal_pid_of(created, "driver_pid", Signal::SIGKILL)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renderer_crash_mid_run_is_recovered() {
    survives(|created, _| {
        // Navigate account 1's tab to chrome://crash through its own driver session.
        let url = format!(
            "http://127.0.0.1:{}/session/{}/url",
            created["driver_port"],
            created["session_id"].as_str().unwrap()
        );
        let _ = std::process::Command::new("python3")
            .args(["-c", "import sys,urllib.request as u\ntry: u.urlopen(u.Request(sys.argv[1], data=b'{\"url\":\"chrome://crash\"}', headers={'content-type':'application/json'}), timeout=10)\nexcept Exception as e: print(e)", &url])
            .status();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_chromedriver_is_detected_and_replaced() {
    // SIGSTOP: the driver is alive but never answers — only a deadline can tell.
    survives_with("[timeouts]\nwebdriver = \"2s\"\n", |created, _| {
        signal_pid_of(created, "driver_pid", Signal::SIGSTOP)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_run_exits_130_with_everything_closed_and_the_journal_valid() {
    interrupted_cleanly(Signal::SIGINT, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_exits_130_with_everything_closed() {
    interrupted_cleanly(Signal::SIGTERM, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_mid_run_exits_130_with_everything_closed_and_the_journal_valid() {
    // The terminal went away: handled like SIGTERM.
    interrupted_cleanly(Signal::SIGHUP, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_to_the_whole_process_group_exits_130_with_everything_closed() {
    // What a terminal's Ctrl-C does: SIGINT to every process of the foreground group.
    interrupted_cleanly(Signal::SIGINT, true).await;
}

async fn interrupted_cleanly(sig: Signal, whole_group: bool) {
    let p = Project::new(2).await;
    p.write("workflow.toml", &slow_workflow());
    let mut cmd = p.command(&step1(
        "1,2",
        &["--quantity", "50", "--concurrent", "--launch-interval", "0"],
    ));
    if whole_group {
        cmd.process_group(0);
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id().unwrap();
    wait_for_event(&p, "both browsers", |e| {
        e["event"] == "iteration_ok" && e["account"] == 2
    })
    .await;
    wait_for_event(&p, "both browsers", |e| {
        e["event"] == "iteration_ok" && e["account"] == 1
    })
    .await;
    if whole_group {
        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
    } else {
        signal(pid, sig);
    }
    let out = crate::harness::finish(child, 30).await;
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.assert_nothing_left();
    // The interrupted browsers' private TMPDIRs went with them.
    let tmp = p.runtime_dir().join("batch-cli").join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert!(left.is_empty(), "{}: {left:?}", tmp.display());
    let dir = p.run_dir();
    let events = events(&dir);
    let last = events.last().unwrap();
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["exit_code"], 130);
    let report = report(&dir);
    assert_eq!(report["exit_code"], 130);
    assert_eq!(report["accounts"][0]["status"], "interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_runner_leaves_nothing_running_and_the_next_run_reaps_its_records() {
    let p = Project::new(2).await;
    p.write("workflow.toml", &slow_workflow());
    let child = p
        .command(&step1(
            "1,2",
            &["--quantity", "50", "--concurrent", "--launch-interval", "0"],
        ))
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    wait_for_event(&p, "account 2 working", |e| {
        e["event"] == "iteration_ok" && e["account"] == 2
    })
    .await;
    wait_for_event(&p, "account 1 working", |e| {
        e["event"] == "iteration_ok" && e["account"] == 1
    })
    .await;
    signal(pid, Signal::SIGKILL);
    let _ = child.wait_with_output().await;
    // PR_SET_PDEATHSIG on the driver and on Chromium: the whole tree dies with the runner.
    p.assert_nothing_left();
    // What the killed Chromes left in their private TMPDIRs (one per browser) is
    // still there: nobody was alive to remove it.
    let tmp = p.runtime_dir().join("batch-cli").join("tmp");
    let temp_dirs = || std::fs::read_dir(&tmp).unwrap().count();
    assert_eq!(temp_dirs(), 2, "{}", tmp.display());
    // The next run finds the dead runner's records and reaps them before starting.
    let run = p
        .run(&step1("1", &["--launch-interval", "0", "--json"]))
        .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let reaped: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "reaped")
        .collect();
    assert_eq!(reaped.len(), 1, "{}", run.stdout);
    assert_eq!(reaped[0]["browsers"], 2);
    assert_eq!(reaped[0]["temp_dirs"], 2);
    // The next run's own browser removed its temp dir when it closed.
    assert_eq!(temp_dirs(), 0, "{}", tmp.display());
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_cannot_take_an_account_in_use_and_the_first_is_unharmed() {
    let p = Project::new(2).await;
    p.write("workflow.toml", &slow_workflow());
    let first = p
        .command(&step1("1", &["--quantity", "4", "--launch-interval", "0"]))
        .spawn()
        .unwrap();
    wait_for_event(&p, "account 1 working", |e| {
        e["event"] == "browser_created" && e["account"] == 1
    })
    .await;
    let second = p
        .run(&step1(
            "2,1",
            &[
                "--launch-interval",
                "0",
                "--output",
                p.path("runs2").to_str().unwrap(),
            ],
        ))
        .await;
    assert_eq!(second.code, Some(2), "{}", second.stderr);
    assert!(second.stderr.contains("account 1"), "{}", second.stderr);
    assert!(second.stderr.contains("in use"), "{}", second.stderr);
    let out = tokio::time::timeout(Duration::from_secs(120), first.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    all_iterations_seen(&p, "user-1", 4);
    assert!(
        p.adds("user-2").is_empty(),
        "the refused run launched nothing"
    );
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_singleton_lock_from_another_hostname_is_recovered() {
    let p = Project::new(1).await;
    let profile = p.path("profiles/account-1");
    std::fs::create_dir_all(&profile).unwrap();
    std::os::unix::fs::symlink("some-other-container-4242", profile.join("SingletonLock")).unwrap();
    std::os::unix::fs::symlink(
        "/tmp/.org.chromium.Chromium.gone/SingletonSocket",
        profile.join("SingletonSocket"),
    )
    .unwrap();
    let run = p.run(&step1("1", &["--launch-interval", "0"])).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(p.adds("user-1"), BTreeMap::from([(1, 1)]));
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creations_wait_for_memory_and_go_on_when_the_threshold_is_lowered() {
    let p = Project::new(1).await;
    let child = p
        .command(&step1(
            "1",
            &[
                "--launch-interval",
                "0",
                "--min-available-memory",
                "1000000GiB",
            ],
        ))
        .spawn()
        .unwrap();
    let wait = wait_for_event(&p, "a memory wait", |e| {
        e["event"] == "admission_wait" && e["reason"] == "memory"
    })
    .await;
    assert_eq!(wait["account"], 1);
    assert!(wait["threshold_bytes"].as_u64().unwrap() > wait["available_bytes"].as_u64().unwrap());
    assert!(wait["needed_bytes"].as_u64().unwrap() > wait["threshold_bytes"].as_u64().unwrap());
    assert!(p.adds("user-1").is_empty(), "nothing ran while waiting");
    // Lower the threshold of the running batch: its control file.
    std::fs::write(p.run_dir().join("min_available_memory"), "0").unwrap();
    let out = crate::harness::finish(child, 60).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = events(&p.run_dir());
    let admitted = named(&events, "admitted");
    assert_eq!(admitted.len(), 1);
    assert_eq!(admitted[0]["reason"], "memory", "{}", admitted[0]);
    assert!(admitted[0]["waits_ms"]["memory"].as_u64().unwrap() > 0);
    assert!(
        report(&p.run_dir())["memory"]["waited_ms"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(p.adds("user-1"), BTreeMap::from([(1, 1)]));
    p.assert_nothing_left();
}

#[test]
fn the_slow_workflow_really_pauses() {
    assert!(slow_workflow().contains("sleep = \"400ms\""));
}

/// Send `sig` to the pid a `browser_created` event names under `key`.
fn signal_pid_of(created: &Value, key: &str, sig: Signal) {
    signal(created[key].as_u64().unwrap() as u32, sig)
}
