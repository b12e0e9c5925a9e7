//! The guarantees under real conditions: secrets in every form a browser gives them
//! back in, debug logging, a closed stdout or stderr.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::harness::*;

/// Every awkward character at once: space, `@`, `/`, `#`, `'`, `"`, `\`, non-ASCII.
const API_KEY: &str = "Key7 zz@q/x#y'z\"w\\v é密";

fn pct(s: &str, keep: impl Fn(u8) -> bool, lower: bool) -> String {
    s.bytes()
        .map(|b| match (keep(b), lower) {
            (true, _) => char::from(b).to_string(),
            (false, false) => format!("%{b:02X}"),
            (false, true) => format!("%{b:02x}"),
        })
        .collect()
}

fn json_escaped(s: &str) -> String {
    let j = serde_json::to_string(s).unwrap();
    j[1..j.len() - 1].to_owned()
}

/// The forms a browser, a URL or a JSON encoder may give `secret` back in.
fn forms(secret: &str) -> Vec<(&'static str, String)> {
    let component = |s: &str| {
        pct(
            s,
            |b| b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b),
            false,
        )
    };
    vec![
        ("raw", secret.to_owned()),
        ("encodeURIComponent", component(secret)),
        (
            "encodeURI",
            pct(
                secret,
                |b| b.is_ascii_alphanumeric() || b"-_.!~*'();/?:@&=+$,#".contains(&b),
                false,
            ),
        ),
        (
            "lower-case hex",
            pct(secret, |b| b.is_ascii_alphanumeric(), true),
        ),
        (
            "form-encoded",
            pct(
                secret,
                |b| b.is_ascii_alphanumeric() || b"*-._ ".contains(&b),
                false,
            )
            .replace(' ', "+"),
        ),
        (
            "URL query",
            pct(
                secret,
                |b| b > 0x20 && b < 0x7f && !b"\"#<>'".contains(&b),
                false,
            ),
        ),
        ("JSON-escaped", json_escaped(secret)),
        ("JSON then percent", component(&json_escaped(secret))),
    ]
}

/// Every file under `dir`, as text (lossy for binary files).
fn all_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
                out.push((path, text));
            }
        }
    }
    out
}

fn assert_no_form_of(secret: &str, what: &str, text: &str) {
    for (name, form) in forms(secret) {
        assert!(
            !text.contains(&form),
            "{what} shows the secret {name} ({form:?}):\n{text}"
        );
    }
}

/// The log filters a user may set, each with whether `DEBUG` lines must show (proof
/// that the filter was read): none may show a request body (the typed password) or
/// the key in any form.
const LOG_FILTERS: &[(&[(&str, &str)], bool)] = &[
    // Debug everywhere, and an attempt to raise the WebDriver client's own logging.
    (
        &[(
            "BATCH_LOG",
            "debug,thirtyfour=trace,thirtyfour::session=trace,reqwest=trace,hyper=trace,hyper_util=trace",
        )],
        true,
    ),
    // RUST_LOG is read when BATCH_LOG is unset: everything at trace...
    (&[("RUST_LOG", "trace")], true),
    // ...or the body loggers named one by one (and our runner, to see it was read).
    (
        &[(
            "RUST_LOG",
            "batch_core=debug,thirtyfour=trace,reqwest=trace,hyper=trace",
        )],
        true,
    ),
    // Both set: BATCH_LOG wins.
    (&[("BATCH_LOG", "warn"), ("RUST_LOG", "trace")], false),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_secret_in_a_url_never_shows_in_any_form_anywhere_whatever_the_log_filter() {
    for (vars, debug_shown) in LOG_FILTERS {
        no_secret_anywhere(vars, *debug_shown).await;
    }
}

async fn no_secret_anywhere(log_vars: &[(&str, &str)], debug_shown: bool) {
    let p = Project::new(1).await;
    // `{env.NAME}` in a goto URL; a failing assert_url shows the current URL (the
    // browser's form of the secret) and a script records location.href.
    p.write(
        "workflow.toml",
        &WORKFLOW.replace(
            r##"actions = [
  { goto = "{base_url}/item/{iteration}" },"##,
            r##"actions = [
  { goto = "{base_url}/echo?it={iteration}&k={env.E2E_API_KEY}" },
  { script = "return location.href", into = "href" },
  { script = "return JSON.stringify({{href: location.href, search: location.search}})", into = "json" },
  { assert_url = "/never-this-path" },
  { goto = "{base_url}/item/{iteration}" },"##,
        ),
    );
    // Credentials in a URL on the command line are secrets too (run_started.argv).
    let base_url = p
        .site
        .base_url()
        .replace("http://", "http://argv-user:argv-pw-31@");
    let mut cmd = p.command(&step1(
        "1",
        &[
            "--retries",
            "0",
            "--launch-interval",
            "0",
            "--base-url",
            &base_url,
        ],
    ));
    cmd.env("E2E_API_KEY", API_KEY)
        .env_remove("BATCH_LOG")
        .env_remove("RUST_LOG");
    for (name, value) in log_vars {
        cmd.env(name, value);
    }
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{log_vars:?}\n{stdout}\n{stderr}"
    );
    let dir = p.run_dir();

    // The browser really had the key, and what was recorded shows it as ***.
    let report = report(&dir);
    let values = &report["accounts"][0]["values"];
    let href = values["href"].as_str().unwrap();
    assert!(
        href.starts_with(&format!("{}/echo?it=1&k=", p.site.base_url())) && href.contains("***"),
        "{href}"
    );
    assert!(values["json"].as_str().unwrap().contains("***"), "{values}");
    let events = events(&dir);
    let failed = named(&events, "iteration_failed");
    assert_eq!(failed.len(), 1);
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("assert_url") && error.contains("***"),
        "{error}"
    );
    assert_eq!(report["accounts"][0]["last_error"], error);
    // The login before it worked: the server saw the typed password.
    assert_eq!(p.site.counts().users["user-1"].logins, 1);
    // The filter was read: debug lines show exactly when it asked for them.
    assert_eq!(
        stderr.contains("DEBUG"),
        debug_shown,
        "{log_vars:?}:\n{stderr}"
    );

    // No form of the key anywhere: stdout, stderr, every file of the run directory,
    // and `batch-cli report` (human and JSON).
    let argv = events[0]["argv"].as_array().unwrap();
    assert!(
        argv.iter()
            .any(|a| a.as_str().unwrap().starts_with("http://***@127.0.0.1:")),
        "{argv:?}"
    );
    for (path, text) in all_files(&dir) {
        assert!(!text.contains("argv-pw-31"), "{}", path.display());
    }
    assert!(!stdout.contains("argv-pw-31") && !stderr.contains("argv-pw-31"));
    assert_no_form_of(API_KEY, "stdout", &stdout);
    assert_no_form_of(API_KEY, "stderr", &stderr);
    for (path, text) in all_files(&dir) {
        assert_no_form_of(API_KEY, &path.display().to_string(), &text);
    }
    for args in [
        vec!["report", dir.to_str().unwrap()],
        vec!["report", dir.to_str().unwrap(), "--json"],
    ] {
        let shown = p.run(&args).await;
        assert_eq!(shown.code, Some(0), "{}", shown.stderr);
        assert!(shown.stdout.contains("***"), "{}", shown.stdout);
        assert_no_form_of(API_KEY, "batch-cli report", &shown.stdout);
        assert_no_form_of(API_KEY, "batch-cli report", &shown.stderr);
    }
    // The typed password is in no log line, in no form, whatever the filter said.
    // (WebDriver sends typed text twice: as a string and as an array of characters.)
    assert_no_form_of("pass-1", &format!("stderr under {log_vars:?}"), &stderr);
    assert!(
        !stderr.contains(r#""p","a","s","s","-","1""#),
        "the typed characters leaked under {log_vars:?}:\n{stderr}"
    );
    p.assert_nothing_left();
}

/// Start `batch-cli`, read one line of its stdout, then close the pipe (what
/// `| head -1` does); optionally close stderr at once too.
async fn run_with_stdout_closed_after_one_line(
    p: &Project,
    args: &[&str],
    close_stderr: bool,
) -> (Option<i32>, String, String) {
    let mut cmd = p.command(args);
    if close_stderr {
        cmd.env("BATCH_LOG", "debug");
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("a first line")
        .unwrap()
        .expect("a first line");
    drop(lines);
    let stderr = child.stderr.take().unwrap();
    let stderr_text = if close_stderr {
        drop(stderr);
        String::new()
    } else {
        let mut s = String::new();
        use tokio::io::AsyncReadExt;
        let mut stderr = stderr;
        tokio::time::timeout(Duration::from_secs(120), stderr.read_to_string(&mut s))
            .await
            .unwrap()
            .unwrap();
        s
    };
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("batch-cli exits")
        .unwrap();
    (status.code(), first, stderr_text)
}

fn only_dir(parent: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_or_stderr_never_loses_the_run() {
    let p = Project::new(2).await;
    // `--json | head -1`, then the human view with stderr closed from the start.
    for (output, json, close_stderr, account, user) in [
        ("runs-json", true, false, "1", "user-1"),
        ("runs-human", false, true, "2", "user-2"),
    ] {
        let out = p.path(output);
        let mut args = step1(
            account,
            &[
                "--quantity",
                "3",
                "--launch-interval",
                "0",
                "--output",
                out.to_str().unwrap(),
            ],
        );
        if json {
            args.push("--json");
        }
        let (code, first, stderr) =
            run_with_stdout_closed_after_one_line(&p, &args, close_stderr).await;
        assert!(!stderr.contains("panicked"), "{output}: {stderr}");
        assert_eq!(
            code,
            Some(0),
            "{output}: exit code (101 is a panic): {stderr}"
        );
        if json {
            let first: Value = serde_json::from_str(&first).unwrap();
            assert_eq!(first["event"], "run_started");
        } else {
            assert!(first.starts_with("run "), "{first}");
        }
        // The run went on to its end: every iteration reached the server, and the
        // journal and the report are complete.
        assert_eq!(
            p.adds(user),
            BTreeMap::from([(1, 1), (2, 1), (3, 1)]),
            "{output}"
        );
        let dir = only_dir(&out);
        let events = events(&dir);
        assert_eq!(events.last().unwrap()["event"], "run_finished", "{output}");
        assert_eq!(named(&events, "iteration_ok").len(), 3, "{output}");
        let report = report(&dir);
        assert_eq!(report["exit_code"], 0, "{output}");
        assert_eq!(report["totals"]["iterations_ok"], 3, "{output}");
        assert_eq!(report["totals"]["iterations_failed"], 0, "{output}");
        assert_eq!(report["accounts"][0]["status"], "ok", "{output}");
    }
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_exits_at_once_and_leaves_nothing_running() {
    use nix::sys::signal::Signal;
    let p = Project::new(1).await;
    p.write(
        "workflow.toml",
        &WORKFLOW.replace(
            "{ click = \"#add\" },",
            "{ click = \"#add\" },\n  { sleep = \"400ms\" },",
        ),
    );
    let mut child = p
        .command(&step1("1", &["--quantity", "50", "--launch-interval", "0"]))
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    wait_for_event(&p, "account 1 working", |e| e["event"] == "iteration_ok").await;
    signal(pid, Signal::SIGINT);
    // The second Ctrl-C once the first is being handled (should the teardown already
    // be over by then, the exit is still 130 with nothing left).
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(30), stderr.next_line()).await
    {
        let first = line.contains("interrupted (SIGINT)");
        seen.push(line);
        if first {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGINT);
            break;
        }
    }
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(30), stderr.next_line()).await
    {
        seen.push(line);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130), "{seen:?}");
    assert!(
        seen.iter().any(|l| l.contains("interrupted (SIGINT)")),
        "{seen:?}"
    );
    p.assert_nothing_left();
    // Whatever got written is whole lines (`events` parses every one).
    assert!(!events(&p.run_dir()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_proxy_url_is_refused_before_anything_launches_without_showing_it() {
    let p = Project::new(0).await;
    p.write(
        "accounts.toml",
        "[[accounts]]\nid = 1\nusername = \"user-1\"\npassword = \"pass-1\"\n\
         proxy = \"ftp://proxyuser:hunter2-proxy@127.0.0.1:3128\"\n",
    );
    for args in [vec!["validate"], step1("1", &["--launch-interval", "0"])] {
        let run = p.run(&args).await;
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("accounts.toml")
                && run.stderr.contains("account 1, proxy")
                && run.stderr.contains("unsupported proxy scheme \"ftp\""),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("hunter2-proxy"), "{}", run.stderr);
        assert!(!run.stdout.contains("hunter2-proxy"), "{}", run.stdout);
    }
    assert!(p.run_dirs().is_empty(), "nothing ran");
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_be_written_stops_the_run_with_exit_3_naming_it() {
    let p = Project::new(1).await;
    let mut cmd = p.command(&step1("1", &["--launch-interval", "0"]));
    // A file-size limit smaller than the first journal line: the write fails with
    // EFBIG, as on a full disk (SIGXFSZ ignored, so the write just fails).
    // SAFETY: setrlimit and signal are async-signal-safe and touch no parent memory.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 200,
                rlim_max: 200,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let dir = p.run_dir();
    let journal = dir.join("events.jsonl");
    assert!(
        stderr.contains(&format!(
            "{}: the journal could not be written",
            journal.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The first line did not fit: it was cut off again, and nothing was shown that is
    // not on disk.
    let text = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(text, "", "the journal holds only whole lines");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "", "nothing shown that is not in the journal");
    // The run stopped before any work.
    assert!(p.adds("user-1").is_empty());
    p.assert_nothing_left();
}
