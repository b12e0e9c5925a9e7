//! The reports a person and CI read, and the live view on a terminal:
//! - `report.html` opened from disk in headless Chromium (started by our own
//!   `launcher`): per-account rows, the timeline SVGs, no console error, no network
//!   request; a screenshot of it is kept under `target/test-artifacts/`;
//! - `report.xml` parses as JUnit and its counts match `report.json`;
//! - `batch-cli report RUN_DIR` rebuilds both and prints the summary;
//! - the live progress view in a real terminal (tmux): bars appear, the spec's lock
//!   lines stay whole, the final summary is printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use thirtyfour::prelude::*;

use crate::harness::{Project, WORKFLOW, named, report};

/// The demo workflow, plus a value recorded per iteration and a planned failure of
/// iteration 2 for user-2 (an error message with markup in it, to see it escaped).
fn workflow() -> String {
    WORKFLOW.replace(
        "{ wait_text = \"#done\", contains = \"added {iteration}\" },",
        r##"{ wait_text = "#done", contains = "added {iteration}" },
  { extract = "#done", into = "last_added" },
  { script = '''if ({iteration} === 2 && "{account.username}" === "user-2") {{ throw new Error("planned <b>failure</b>"); }}''' },"##,
    )
}

/// Where artifacts of this test binary go: `target/test-artifacts/reports/`.
fn artifacts() -> PathBuf {
    let dir = crate::harness::cli_path()
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/batch-cli")
        .join("test-artifacts")
        .join("reports");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Counts of a JUnit report: (tests, failures, errors, Σ iterations_ok,
/// Σ iterations_failed, Σ retries, failing suites).
fn junit_counts(xml: &str) -> (usize, usize, usize, u64, u64, u64, Vec<String>) {
    let r = quick_junit::Report::deserialize_from_str(xml).expect("report.xml parses as JUnit");
    let prop = |c: &quick_junit::TestCase, name: &str| -> u64 {
        c.properties
            .iter()
            .find(|p| p.name.as_str() == name)
            .unwrap_or_else(|| panic!("property {name} on {}", c.name.as_str()))
            .value
            .as_str()
            .parse()
            .unwrap()
    };
    let cases = || r.test_suites.iter().flat_map(|s| &s.test_cases);
    let failing = r
        .test_suites
        .iter()
        .filter(|s| s.failures > 0)
        .map(|s| s.name.to_string())
        .collect();
    (
        r.tests,
        r.failures,
        r.errors,
        cases().map(|c| prop(c, "iterations_ok")).sum(),
        cases().map(|c| prop(c, "iterations_failed")).sum(),
        cases().map(|c| prop(c, "retries")).sum(),
        failing,
    )
}

/// Records console errors, uncaught errors and CSP violations from the first script
/// of every document on (injected by DevTools, so the page's CSP does not stop it).
const COLLECTOR: &str = r#"
window.__problems = [];
window.addEventListener('error', e => window.__problems.push('error: ' + (e.message || (e.target && e.target.outerHTML))), true);
document.addEventListener('securitypolicyviolation', e => window.__problems.push('csp: ' + e.violatedDirective + ' ' + e.blockedURI));
for (const k of ['error', 'warn']) {
  const orig = console[k];
  console[k] = (...args) => { window.__problems.push(k + ': ' + args.join(' ')); orig.apply(console, args); };
}
"#;

async fn problems(driver: &WebDriver) -> Vec<String> {
    let v = driver
        .execute("return window.__problems || ['collector missing'];", vec![])
        .await
        .unwrap();
    serde_json::from_value(v.json().clone()).unwrap()
}

async fn resource_requests(driver: &WebDriver) -> Vec<String> {
    let v = driver
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v.json().clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_html_opens_from_disk_and_junit_matches_the_report() {
    let p = Project::new(2).await;
    p.write("workflow.toml", &workflow());
    let run = p
        .run(&crate::harness::step1(
            "1-2",
            &["--quantity", "3", "--concurrent", "--retries", "1"],
        ))
        .await;
    assert_eq!(run.code, Some(1), "one iteration failed: {run:?}");
    let dir = p.run_dir();
    let rep = report(&dir);
    assert_eq!(rep["totals"]["iterations_ok"], 5);
    assert_eq!(rep["totals"]["iterations_failed"], 1);
    assert_eq!(rep["totals"]["retries"], 1);
    // The server saw the adds the report claims (iteration 2 of user-2 added its item
    // before the planned failure, and again on the retry).
    assert_eq!(p.adds("user-1").values().sum::<u64>(), 3);
    assert_eq!(p.adds("user-2").get(&2), Some(&2));

    // report.xml: JUnit whose counts are report.json's.
    let xml = std::fs::read_to_string(dir.join("report.xml")).expect("report.xml written");
    let (tests, failures, errors, ok, failed, retries, failing) = junit_counts(&xml);
    assert_eq!(tests, 2, "accounts × steps");
    assert_eq!((failures, errors), (1, 0));
    assert_eq!(ok, rep["totals"]["iterations_ok"].as_u64().unwrap());
    assert_eq!(failed, rep["totals"]["iterations_failed"].as_u64().unwrap());
    assert_eq!(retries, rep["totals"]["retries"].as_u64().unwrap());
    assert_eq!(failing, ["account 2"]);
    assert!(xml.contains("1 of 3 iterations failed"), "{xml}");
    assert!(xml.contains("planned &lt;b&gt;failure"), "{xml}");

    // Per-account log files: that account's lines only.
    let log2 = std::fs::read_to_string(dir.join("logs/account-2.log")).unwrap();
    assert!(
        log2.contains("[account 2] browser creation lock acquired"),
        "{log2}"
    );
    assert!(log2.contains("step 1 iteration 2 FAILED"), "{log2}");
    assert!(!log2.contains("[account 1]"), "{log2}");

    // `report` rebuilds both from the run directory and prints the summary.
    std::fs::remove_file(dir.join("report.html")).unwrap();
    std::fs::remove_file(dir.join("report.xml")).unwrap();
    let dir_s = dir.display().to_string();
    let again = p.run(&["report", &dir_s]).await;
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(
        again.stdout.contains("totals: 5 iterations ok, 1 failed"),
        "{again:?}"
    );
    assert!(again.stdout.contains("html: "), "{again:?}");
    assert_eq!(
        junit_counts(&std::fs::read_to_string(dir.join("report.xml")).unwrap()),
        (
            tests,
            failures,
            errors,
            ok,
            failed,
            retries,
            vec!["account 2".to_string()]
        )
    );

    // report.html in a real browser, from file://.
    let html_path = dir.join("report.html");
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        html.contains("data:image/png;base64,"),
        "failure screenshot inline"
    );
    assert!(!html.contains("planned <b>"), "the error is escaped");
    let profile = tempfile::tempdir().unwrap();
    let mut spec = launcher::LaunchSpec::new(
        launcher::Binaries::locate(None, None).expect("chromium and chromedriver"),
        profile.path(),
    );
    spec.window_size = (1280, 1000);
    let browser = launcher::Browser::launch(&spec).await.expect("a browser");
    let driver = browser.driver();
    driver
        .cdp()
        .send_raw(
            "Page.addScriptToEvaluateOnNewDocument",
            serde_json::json!({ "source": COLLECTOR }),
        )
        .await
        .unwrap();

    // The collector catches what it is there for: a page with a script error and a
    // blocked load is seen as such (so an empty list below means something).
    let control = profile.path().join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><meta http-equiv=\"Content-Security-Policy\" content=\"img-src 'none'\">\
         <img src=\"http://127.0.0.1:9/x.png\"><script>notDefined()</script>",
    )
    .unwrap();
    driver
        .goto(format!("file://{}", control.display()))
        .await
        .unwrap();
    let seen = wait_for_problems(driver, 2).await;
    assert!(
        seen.iter().any(|p| p.contains("notDefined")) && seen.iter().any(|p| p.starts_with("csp")),
        "{seen:?}"
    );

    driver
        .goto(format!("file://{}", html_path.display()))
        .await
        .unwrap();
    let rows = driver
        .find_all(By::Css("#accounts tr.account"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let mut ids = Vec::new();
    for row in &rows {
        ids.push(row.attr("data-account").await.unwrap().unwrap());
    }
    assert_eq!(ids, ["1", "2"]);
    let row2 = rows[1].text().await.unwrap();
    assert!(row2.contains("failed"), "{row2}");
    assert!(
        row2.contains("planned <b>failure</b>"),
        "shown as text: {row2}"
    );
    assert!(
        row2.contains("last_added = added 3"),
        "recorded value: {row2}"
    );
    let svgs = driver.find_all(By::Css("svg.timeline")).await.unwrap();
    assert_eq!(svgs.len(), 2, "a timeline per account");
    for (kind, account, at_least) in [
        ("ok", "1", 3),
        ("launch", "1", 1),
        ("failed", "2", 1),
        ("attempt", "2", 1),
    ] {
        let n = driver
            .find_all(By::Css(format!(
                "svg.timeline[data-account='{account}'] rect.{kind}"
            )))
            .await
            .unwrap()
            .len();
        assert!(n >= at_least, "account {account}: {n} rect.{kind}");
    }
    // The failures table: the retried attempt and the failed iteration of account 2.
    let failures = driver
        .find_all(By::Css("#failures tr.failure[data-account='2']"))
        .await
        .unwrap();
    assert_eq!(failures.len(), 2);
    assert!(
        failures[1]
            .text()
            .await
            .unwrap()
            .contains("iteration failed")
    );
    let shots = driver.find_all(By::Css("#screenshots img")).await.unwrap();
    assert!(!shots.is_empty(), "the failure screenshot is on the page");
    let natural: i64 = driver
        .execute(
            "return document.querySelector('#screenshots img').naturalWidth;",
            vec![],
        )
        .await
        .unwrap()
        .json()
        .as_i64()
        .unwrap();
    assert!(natural > 0, "the inline PNG decodes");
    assert_eq!(
        problems(driver).await,
        Vec::<String>::new(),
        "no console error"
    );
    assert_eq!(
        resource_requests(driver).await,
        Vec::<String>::new(),
        "no request for anything"
    );

    let png = driver.screenshot_as_png().await.unwrap();
    let shot = artifacts().join("report-html.png");
    std::fs::write(&shot, png).unwrap();
    println!("report.html screenshot: {}", shot.display());
    browser.close().await;
    p.assert_nothing_left();
}

async fn wait_for_problems(driver: &WebDriver, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = problems(driver).await;
        if seen.len() >= n || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private tmux server; killed on drop, whatever the test did.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn capture(&self, history: bool) -> String {
        let mut c = self.cmd();
        c.args(["capture-pane", "-p", "-t", "live"]);
        if history {
            c.args(["-S", "-"]);
        }
        let out = c.output().expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a terminal showed while `batch-cli` ran in it.
struct Screen {
    /// The first frame that showed a bar per account and the total, if any did.
    bars: Option<String>,
    /// The last frame (the run over).
    last: String,
    /// Everything, scrollback included.
    all: String,
}

/// Run `batch-cli single --step 1 --accounts 1-N ARGS` for the project in a 150×40
/// tmux terminal with the environment `env` (plus the project's runtime dir), watch
/// the screen until it exits.
async fn in_terminal(p: &Project, accounts: u32, env: &str, args: &[&str]) -> Screen {
    in_terminal_of(p, accounts, 40, env, args).await
}

/// [`in_terminal`] with a terminal of `rows` lines; `bars` is then the first frame
/// with the total.
async fn in_terminal_of(p: &Project, accounts: u32, rows: u32, env: &str, args: &[&str]) -> Screen {
    let cli = crate::harness::cli_path();
    let config = p.path("batch.toml");
    let output = p.path("runs");
    let base = p.site.base_url();
    let range = format!("1-{accounts}");
    let mut argv: Vec<&str> = vec![
        cli.to_str().unwrap(),
        "single",
        "--step",
        "1",
        "--accounts",
        &range,
        "--config",
        config.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--base-url",
        &base,
    ];
    argv.extend_from_slice(args);
    let argv: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
    // The exit status is printed last; the shell then waits so the pane stays.
    let script = format!(
        "env -u NO_COLOR TERM=xterm-256color XDG_RUNTIME_DIR={} {env} {}; echo EXIT=$?; sleep 300",
        sh_quote(p.runtime_dir().to_str().unwrap()),
        argv.join(" ")
    );
    let tmux = Tmux {
        // A server of its own per call: a killed one may still be exiting.
        socket: {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            format!(
                "batch-cli-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
        },
    };
    let started = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "live",
            "-x",
            "150",
            "-y",
            &rows.to_string(),
            &script,
        ])
        .status()
        .expect("tmux starts");
    assert!(started.success());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut bars = None;
    let last = loop {
        let screen = tmux.capture(false);
        // A tall terminal shows every account's row; a short one (the compact view)
        // only the active ones.
        if bars.is_none()
            && (rows < 40
                || (1..=accounts).all(|i| {
                    screen
                        .lines()
                        .any(|l| l.starts_with(&format!("account {i} [")))
                }))
            && screen
                .lines()
                .any(|l| l.starts_with("total [") && l.contains("iterations"))
        {
            bars = Some(screen.clone());
        }
        if screen.contains("EXIT=") {
            break screen;
        }
        assert!(Instant::now() < deadline, "the run did not end: {screen}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let all = tmux.capture(true);
    Screen { bars, last, all }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_view_in_a_terminal_keeps_lock_lines_whole() {
    let p = Project::new(3).await;
    p.write("workflow.toml", &workflow());
    // Bars appear while it runs: every account's row and the total, on the screen.
    let Screen {
        bars: saw_bars,
        last: final_screen,
        all,
    } = in_terminal(
        &p,
        3,
        "",
        &["--quantity", "3", "--concurrent", "--retries", "0"],
    )
    .await;
    let bars = saw_bars.unwrap_or_else(|| panic!("no bars seen; last screen:\n{final_screen}"));
    assert!(bars.contains("iteration"), "{bars}");
    assert!(all.contains("EXIT=1"), "one iteration failed:\n{all}");
    let lines: Vec<&str> = all.lines().map(str::trim_end).collect();
    for i in 1..=3 {
        for what in [
            "browser creation lock acquired",
            "browser created",
            "browser creation lock released",
        ] {
            let want = format!("[account {i}] {what}");
            assert_eq!(
                lines.iter().filter(|l| **l == want).count(),
                1,
                "{want:?} whole on its own line once:\n{all}"
            );
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[account 2] step 1 iteration 2 FAILED")),
        "the failure is printed above the bars:\n{all}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("run finished (exit 1): 8 iterations ok, 1 failed")),
        "the final summary:\n{all}"
    );
    assert!(lines.iter().any(|l| l.starts_with("report: ")), "{all}");
    // The bars are gone at the end; what stays is the log above them.
    assert!(
        !final_screen.lines().any(|l| l.starts_with("total [")),
        "bars cleared at the end:\n{final_screen}"
    );
    let events = crate::harness::events(&p.run_dir());
    assert_eq!(named(&events, "iteration_failed").len(), 1);
    assert_eq!(
        named(&events, "run_finished")[0]["iterations_ok"],
        Value::from(8)
    );
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_lines_in_a_terminal_with_no_color_or_quiet() {
    let p = Project::new(1).await;
    for (env, args) in [("NO_COLOR=1", &[][..]), ("", &["--quiet"][..])] {
        let screen = in_terminal(&p, 1, env, args).await;
        assert!(
            screen.bars.is_none() && !screen.all.contains("total ["),
            "{env} {args:?}: no bars\n{}",
            screen.all
        );
        let lines: Vec<&str> = screen.all.lines().map(str::trim_end).collect();
        // Today's plain view, line for line (iteration_ok lines are not in the live view).
        let start = lines
            .iter()
            .position(|l| l.starts_with("run ") && l.contains(" started: "))
            .unwrap_or_else(|| panic!("{env} {args:?}:\n{}", screen.all));
        assert_eq!(
            lines[start + 1..start + 6],
            [
                "[account 1] browser creation lock acquired",
                "[account 1] browser created",
                "[account 1] browser creation lock released",
                "[account 1] step 1 iteration 1 ok",
                "[account 1] done: ok — 1 ok, 0 failed, 1 browser launch(es), 0 retries",
            ],
            "{env} {args:?}:\n{}",
            screen.all
        );
        assert!(screen.all.contains("EXIT=0"), "{}", screen.all);
    }
    p.assert_nothing_left();
}

/// `batch-cli ARGS` with nothing added (no project): (exit code, stdout, stderr).
fn bare(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(crate::harness::cli_path())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("batch-cli runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn completions_and_help_with_examples() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = bare(&["completions", shell]);
        assert_eq!(code, Some(0), "{err}");
        for word in ["single", "report", "max-concurrent", "color"] {
            assert!(out.contains(word), "{shell} completion lacks {word}");
        }
    }
    let (code, _, err) = bare(&["completions", "tcsh"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("tcsh"), "{err}");
    let (code, out, _) = bare(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("Examples:") && out.contains("NO_COLOR"),
        "{out}"
    );
    let (_, out, _) = bare(&["single", "--help"]);
    assert!(
        out.contains("batch-cli single --step 1 --accounts 1-3"),
        "{out}"
    );
    let (code, _, err) = bare(&["report", "/nonexistent", "--color", "sometimes"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("sometimes") && err.contains("--color"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_accounts_fold_into_a_compact_view() {
    // 5 accounts + a counts line + the total do not fit 7 rows: only the active
    // account gets a row (sequential: one at a time), the others are counted.
    let p = Project::new(5).await;
    let screen = in_terminal_of(&p, 5, 7, "", &[]).await;
    let first = screen
        .bars
        .unwrap_or_else(|| panic!("no total bar seen:\n{}", screen.all));
    assert!(
        first
            .lines()
            .any(|l| l.contains("waiting") && l.contains("(5 accounts)")),
        "the counts line:\n{first}"
    );
    let account_rows = first.lines().filter(|l| l.starts_with("account ")).count();
    assert!(account_rows <= 3, "at most the rows that fit:\n{first}");
    let lines: Vec<&str> = screen.all.lines().map(str::trim_end).collect();
    for i in 1..=5 {
        let want = format!("[account {i}] browser creation lock acquired");
        assert_eq!(
            lines.iter().filter(|l| **l == want).count(),
            1,
            "{want:?}:\n{}",
            screen.all
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("run finished (exit 0): 5 iterations ok")),
        "{}",
        screen.all
    );
    p.assert_nothing_left();
}
