//! The foundation: accounts through the demo workflow, Phase 1's creation lock, the
//! journal, the report, exit codes, secrets.

use std::collections::BTreeMap;

use crate::harness::*;

/// `launch_lock_acquired` → `browser_created` → `launch_lock_released`, never two
/// holders at once; returns the holder order.
fn assert_lock_serialized(events: &[serde_json::Value]) -> Vec<u64> {
    let mut holder: Option<u64> = None;
    let mut order = Vec::new();
    for e in events {
        let account = e["account"].as_u64();
        match e["event"].as_str().unwrap() {
            "launch_lock_acquired" => {
                assert_eq!(
                    holder, None,
                    "account {account:?} acquired the lock while {holder:?} held it"
                );
                holder = account;
                order.push(account.unwrap());
            }
            "browser_created" => assert_eq!(holder, account, "browser created outside the lock"),
            "launch_lock_released" => {
                assert_eq!(holder, account, "released by a non-holder");
                holder = None;
            }
            _ => {}
        }
    }
    assert_eq!(holder, None, "lock still held at the end");
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_accounts_concurrent_the_server_sees_every_add_and_the_report_agrees() {
    let p = Project::new(5).await;
    let run = p
        .run(&step1(
            "1-5",
            &[
                "--quantity",
                "3",
                "--concurrent",
                "--launch-interval",
                "100ms",
            ],
        ))
        .await;
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );

    // What the server saw: each user added items 1, 2, 3 exactly once, and logged in once.
    for i in 1..=5 {
        let user = format!("user-{i}");
        assert_eq!(
            p.adds(&user),
            BTreeMap::from([(1, 1), (2, 1), (3, 1)]),
            "{user}"
        );
        assert_eq!(p.site.counts().users[&user].logins, 1, "{user}");
    }

    let dir = p.run_dir();
    let events = events(&dir);
    assert_eq!(events.first().unwrap()["event"], "run_started");
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    let order = assert_lock_serialized(&events);
    assert_eq!(order.len(), 5);
    for e in named(&events, "browser_created") {
        assert!(e["pid"].as_u64().unwrap() > 0);
        assert!(e["port"].is_u64(), "port is an integer: {e}");
        assert!(e["driver_port"].is_u64());
        assert!(std::path::Path::new(e["profile"].as_str().unwrap()).is_absolute());
        assert!(e["ts"].as_str().unwrap().ends_with('Z'));
    }
    // Work overlapped: some account finished an iteration before the last browser existed.
    let last_created = events
        .iter()
        .rposition(|e| e["event"] == "browser_created")
        .unwrap();
    let first_ok = events
        .iter()
        .position(|e| e["event"] == "iteration_ok")
        .unwrap();
    assert!(
        first_ok < last_created,
        "accounts worked while others were still being created"
    );

    let report = report(&dir);
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["totals"]["iterations_ok"], 15);
    assert_eq!(report["totals"]["iterations_failed"], 0);
    assert_eq!(report["totals"]["browser_launches"], 5);
    assert_eq!(report["accounts"].as_array().unwrap().len(), 5);
    // Memory was sampled and its peaks reported.
    assert!(
        report["memory"]["samples"].as_u64().unwrap() >= 1,
        "{}",
        report["memory"]
    );
    assert!(report["memory"]["min_available_bytes"].as_u64().unwrap() > 0);
    assert!(!named(&events, "memory_sample").is_empty());
    assert_eq!(named(&events, "iteration_ok").len(), 15);
    // The human view printed the spec's lines.
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_view_prints_the_lock_lines_and_2_5s_reproduces_phase1() {
    let p = Project::new(2).await;
    // The old tool's Phase 1: the creation lock with 2.5 s inside it.
    let run = p
        .run(&step1(
            "1,2",
            &["--concurrent", "--launch-interval", "2.5s"],
        ))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    for n in [1, 2] {
        for line in [
            "browser creation lock acquired",
            "browser created",
            "browser creation lock released",
        ] {
            let want = format!("[account {n}] {line}");
            assert!(
                run.stdout.lines().any(|l| l == want),
                "missing {want:?} in:\n{}",
                run.stdout
            );
        }
    }
    let events = events(&p.run_dir());
    assert_eq!(events[0]["launch_interval_ms"], 2500);
    assert_eq!(events[0]["launch_lock"], true);
    // Each creation waited the interval inside the lock: acquired → created ≥ 2.5 s.
    let ts = |e: &serde_json::Value| {
        time::OffsetDateTime::parse(
            e["ts"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    for n in [1u64, 2] {
        let acquired = events
            .iter()
            .find(|e| e["event"] == "launch_lock_acquired" && e["account"] == n)
            .unwrap();
        let created = events
            .iter()
            .find(|e| e["event"] == "browser_created" && e["account"] == n)
            .unwrap();
        assert!(
            ts(created) - ts(acquired) >= time::Duration::milliseconds(2500),
            "account {n}"
        );
    }
    // And the creations are spaced at least 2.5 s apart, one at a time.
    let created: Vec<_> = named(&events, "browser_created")
        .into_iter()
        .map(ts)
        .collect();
    assert_eq!(created.len(), 2);
    assert!(created[1] - created[0] >= time::Duration::milliseconds(2500));
    assert_eq!(assert_lock_serialized(&events).len(), 2);
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_mode_runs_accounts_one_after_another() {
    let p = Project::new(2).await;
    let run = p
        .run(&step1(
            "2,1",
            &["--quantity", "2", "--launch-interval", "0", "--json"],
        ))
        .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let events = events(&p.run_dir());
    // --json prints exactly the journal's objects, in the same order.
    let printed: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed, events);
    let done_2 = events
        .iter()
        .position(|e| e["event"] == "account_done" && e["account"] == 2)
        .unwrap();
    let created_1 = events
        .iter()
        .position(|e| e["event"] == "browser_created" && e["account"] == 1)
        .unwrap();
    assert!(
        done_2 < created_1,
        "account 1 started only after account 2 was done"
    );
    assert_eq!(p.adds("user-1"), BTreeMap::from([(1, 1), (2, 1)]));
    assert_eq!(p.adds("user-2"), BTreeMap::from([(1, 1), (2, 1)]));
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_workflow_exits_1_with_failures_journaled_reported_and_screenshotted() {
    let p = Project::new(2).await;
    p.write(
        "workflow.toml",
        r##"
base_url = "http://127.0.0.1:9"
[[steps]]
id = 1
before = [{ goto = "{base_url}/login" }]
actions = [
  { goto = "{base_url}/login" },
  { wait_for = "#does-not-exist", timeout = "300ms" },
]
"##,
    );
    let run = p
        .run(&step1(
            "1-2",
            &[
                "--quantity",
                "2",
                "--concurrent",
                "--launch-interval",
                "0",
                "--retries",
                "1",
            ],
        ))
        .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let dir = p.run_dir();
    let events = events(&dir);
    let failed = named(&events, "iteration_failed");
    assert_eq!(failed.len(), 4);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("#does-not-exist"),
        "{}",
        failed[0]
    );
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("workflow.toml:"),
        "names the file and line"
    );
    assert_eq!(
        named(&events, "retry").len(),
        4,
        "one retry per failed iteration"
    );
    let report = report(&dir);
    assert_eq!(report["exit_code"], 1);
    assert_eq!(report["totals"]["iterations_failed"], 4);
    assert_eq!(report["totals"]["iterations_ok"], 0);
    assert_eq!(report["totals"]["retries"], 4);
    assert_eq!(report["accounts"][0]["status"], "failed");
    let shots = std::fs::read_dir(dir.join("screenshots/1"))
        .unwrap()
        .count();
    assert_eq!(shots, 4, "a screenshot at each failed attempt");
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_goes_through_all_steps_with_csv_accounts_and_records_extracted_values() {
    let p = Project::new(0).await;
    p.write("batch.toml", "accounts = \"accounts.csv\"\n");
    p.write(
        "accounts.csv",
        "id,username,password\n1,user-1,pass-1\n2,user-2,pass-2\n",
    );
    p.write(
        "workflow.toml",
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/demo/workflow.toml"
        ))
        .unwrap(),
    );
    let run = p
        .run(&[
            "run",
            "--accounts",
            "all",
            "--quantity",
            "2",
            "--concurrent",
            "--launch-interval",
            "0",
        ])
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let dir = p.run_dir();
    let report = report(&dir);
    assert_eq!(
        report["totals"]["iterations_ok"], 8,
        "2 accounts × 2 steps × 2 iterations: {}",
        run.stdout
    );
    assert_eq!(
        report["totals"]["browser_launches"], 2,
        "one browser per account across steps: {}",
        run.stdout
    );
    assert_eq!(
        report["accounts"][1]["values"]["welcome"],
        "Welcome, user-2"
    );
    assert_eq!(p.adds("user-1"), BTreeMap::from([(1, 1), (2, 1)]));
    // `report` prints the summary of a finished run.
    let shown = p.run(&["report", dir.to_str().unwrap()]).await;
    assert_eq!(shown.code, Some(0));
    assert!(shown.stdout.contains("8 iterations ok"), "{}", shown.stdout);
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_output_journal_report_or_errors() {
    let p = Project::new(0).await;
    let secret = "s3cr3t-from-env-7f2a";
    p.write(
        "accounts.toml",
        "[[accounts]]\nid = 1\nusername = \"user-1\"\npassword = { env = \"E2E_SECRET_PW\" }\ntoken = \"tok-9c1d-literal\"\n",
    );
    // A failing action with the secret templated into a URL and a wait text.
    p.write(
        "workflow.toml",
        r##"
base_url = "http://127.0.0.1:9"
[[steps]]
id = 1
actions = [
  { goto = "{base_url}/echo?pw={account.password}&t={account.token}" },
  { extract = "#echo", into = "echoed" },
  { wait_text = "#echo", contains = "never {account.password}", timeout = "200ms" },
]
"##,
    );
    let mut cmd = p.command(&step1("1", &["--retries", "0", "--launch-interval", "0"]));
    cmd.env("E2E_SECRET_PW", secret);
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let dir = p.run_dir();
    let mut everything = String::from_utf8_lossy(&out.stdout).into_owned();
    everything += &String::from_utf8_lossy(&out.stderr);
    everything += &std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    everything += &std::fs::read_to_string(dir.join("report.json")).unwrap();
    for s in [secret, "tok-9c1d-literal"] {
        assert!(!everything.contains(s), "secret {s:?} leaked");
    }
    assert!(everything.contains("***"), "secrets show as ***");
    // The page really got the secret (it echoed it back), yet the report shows ***.
    let report = report(&dir);
    assert!(
        report["accounts"][0]["values"]["echoed"]
            .as_str()
            .unwrap()
            .contains("***")
    );
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_browser_is_exit_3_and_nothing_runs() {
    let p = Project::new(1).await;
    p.write(
        "batch.toml",
        "[browser]\nchromium = \"/nonexistent/chromium\"\n",
    );
    let run = p.run(&["single", "--step", "1", "--accounts", "1"]).await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("/nonexistent/chromium"),
        "{}",
        run.stderr
    );
    assert!(p.run_dirs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_doctor_pass_on_the_demo() {
    let p = Project::new(3).await;
    let v = p.run(&["validate"]).await;
    assert_eq!(v.code, Some(0), "{}", v.stderr);
    assert!(
        v.stdout.contains("(3 accounts, 1 step, 8 actions)"),
        "{}",
        v.stdout
    );
    let d = p.run(&["doctor"]).await;
    assert_eq!(d.code, Some(0), "{}\n{}", d.stdout, d.stderr);
    assert!(d.stdout.contains("browser start"), "{}", d.stdout);
    assert!(!d.stdout.contains("FAIL"), "{}", d.stdout);
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_programs_drive_the_same_browser_through_their_environment() {
    let p = Project::new(1).await;
    p.write(
        "accounts.toml",
        "[[accounts]]\nid = 1\nusername = \"user-1\"\npassword = \"pass-1\"\nregion = \"eu\"\n",
    );
    // The program asks the runner's own WebDriver session where the browser is.
    p.write(
        "where.py",
        "import json, os, urllib.request\n\
         url = os.environ['BATCH_WEBDRIVER_URL'] + '/session/' + os.environ['BATCH_SESSION_ID'] + '/url'\n\
         current = json.load(urllib.request.urlopen(url, timeout=10))['value']\n\
         keys = sorted(k for k in os.environ if k.startswith('BATCH_'))\n\
         out = {k: os.environ[k] for k in keys}\n\
         out['current_url'] = current\n\
         open('seen-' + os.environ['BATCH_ITERATION'] + '.json', 'w').write(json.dumps(out))\n",
    );
    p.write(
        "workflow.toml",
        r##"
base_url = "http://127.0.0.1:9"
[[steps]]
id = 1
actions = [
  { goto = "{base_url}/echo?it={iteration}" },
  { exec = ["python3", "where.py", "{account.region}"] },
  { exec = ["sh", "-c", "exit $((BATCH_ITERATION - 1))"] },
]
"##,
    );
    let run = p
        .run(&step1(
            "1",
            &[
                "--quantity",
                "2",
                "--retries",
                "0",
                "--launch-interval",
                "0",
            ],
        ))
        .await;
    // Iteration 2's second program exits 1: that iteration fails, the run exits 1.
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("seen-1.json")).unwrap()).unwrap();
    assert_eq!(
        seen["current_url"],
        format!("{}/echo?it=1", p.site.base_url()),
        "the program saw the same browser"
    );
    assert_eq!(seen["BATCH_ACCOUNT_ID"], "1");
    assert_eq!(seen["BATCH_STEP_ID"], "1");
    assert_eq!(
        seen["BATCH_DOWNLOAD_DIR"]
            .as_str()
            .map(std::path::PathBuf::from),
        Some(p.run_dir().join("downloads/1/step1-1")),
        "the iteration's own download directory"
    );
    assert_eq!(seen["BATCH_ACCOUNT_USERNAME"], "user-1");
    assert_eq!(
        seen["BATCH_ACCOUNT_PASSWORD"], "pass-1",
        "secrets reach programs through the environment"
    );
    assert_eq!(seen["BATCH_ACCOUNT_REGION"], "eu");
    assert!(
        seen["BATCH_DEBUGGER_ADDRESS"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        seen["BATCH_CDP_URL"]
            .as_str()
            .unwrap()
            .starts_with("ws://127.0.0.1:")
    );
    let events = events(&p.run_dir());
    let failed = named(&events, "iteration_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["iteration"], 2);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("exit status: 1"),
        "{}",
        failed[0]
    );
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_caps_live_browsers_without_a_default_cap() {
    let p = Project::new(4).await;
    // Each account holds its browser ≥ 2 s, so two of them certainly overlap.
    p.write(
        "workflow.toml",
        &WORKFLOW.replace(
            "{ click = \"#add\" },",
            "{ click = \"#add\" },\n  { sleep = \"2s\" },",
        ),
    );
    let run = p
        .run(&step1(
            "1-4",
            &[
                "--concurrent",
                "--max-concurrent",
                "2",
                "--launch-interval",
                "0",
                "--json",
            ],
        ))
        .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let events = events(&p.run_dir());
    let (mut live, mut peak) = (0i32, 0);
    for e in &events {
        match e["event"].as_str().unwrap() {
            "browser_created" => live += 1,
            "account_done" => live -= 1,
            _ => {}
        }
        peak = peak.max(live);
    }
    assert_eq!(
        peak, 2,
        "at most two accounts at once, and the cap was reached"
    );
    assert_eq!(events[0]["max_concurrent"], 2);
    for i in 1..=4 {
        assert_eq!(p.adds(&format!("user-{i}")), BTreeMap::from([(1, 1)]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_persist_logins_and_can_be_listed_and_reset() {
    let p = Project::new(2).await;
    // Step 1 logs in; a second run whose workflow never logs in still finds the session.
    let first = p.run(&step1("1,2", &["--launch-interval", "0"])).await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    p.write(
        "workflow.toml",
        "base_url = \"http://127.0.0.1:9\"\n[[steps]]\nid = 1\nactions = [\n  { goto = \"{base_url}/home\" },\n  { wait_for = \"#welcome\", timeout = \"3s\" },\n]\n",
    );
    let second = p
        .run(&step1("1", &["--launch-interval", "0", "--retries", "0"]))
        .await;
    assert_eq!(
        second.code,
        Some(0),
        "the login survived in the persistent profile: {}",
        second.stdout
    );

    let list = p.run(&["profiles", "list"]).await;
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    assert!(
        list.stdout.contains("account-1") || list.stdout.lines().any(|l| l.starts_with('1')),
        "{}",
        list.stdout
    );
    let reset = p.run(&["profiles", "reset", "--accounts", "1"]).await;
    assert_eq!(reset.code, Some(0), "{}", reset.stderr);
    assert!(!p.path("profiles/account-1").exists());
    assert!(p.path("profiles/account-2").exists());
    // After the reset the account is logged out again.
    let third = p
        .run(&step1("1", &["--launch-interval", "0", "--retries", "0"]))
        .await;
    assert_eq!(third.code, Some(1), "a reset profile has no login");
    let clean = p.run(&["profiles", "clean"]).await;
    assert_eq!(clean.code, Some(0), "{}", clean.stderr);
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_before_fails_the_steps_iterations_without_repeating_them() {
    let p = Project::new(0).await;
    p.write(
        "accounts.toml",
        "[[accounts]]\nid = 1\nusername = \"user-1\"\npassword = \"wrong\"\n",
    );
    p.write(
        "workflow.toml",
        &WORKFLOW.replace(
            "{ wait_for = \"#welcome\" }",
            "{ wait_for = \"#welcome\", timeout = \"1s\" }",
        ),
    );
    let run = p
        .run(&step1(
            "1",
            &[
                "--quantity",
                "3",
                "--retries",
                "1",
                "--launch-interval",
                "0",
            ],
        ))
        .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let events = events(&p.run_dir());
    let failed = named(&events, "iteration_failed");
    assert_eq!(
        failed.len(),
        3,
        "every iteration of the step counts as failed"
    );
    assert!(
        failed
            .iter()
            .all(|e| e["error"].as_str().unwrap().starts_with("before: "))
    );
    assert_eq!(failed[0]["attempts"], 2);
    assert_eq!(failed[1]["attempts"], 0, "not retried again");
    // The server saw exactly the two real attempts to log in.
    assert_eq!(p.site.counts().users["user-1"].failed_logins, 2);
    assert!(p.adds("user-1").is_empty());
    p.assert_nothing_left();
}
