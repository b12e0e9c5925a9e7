use serde_json::{Value, json};

use super::*;
use crate::report::{AccountReport, Report};

/// A small run: account 1 all ok, account 2 one failed iteration after a retry (and a
/// crash), account 3 could not run. Times are 100 ms apart from 00:00:00.
pub(crate) fn sample() -> RunView {
    let ev = |i: u64, mut v: Value| {
        v["ts"] = format!("2026-01-01T00:00:{:02}.{:03}Z", i / 10, (i % 10) * 100).into();
        v
    };
    let events = vec![
        ev(
            0,
            json!({"event":"run_started","run_id":"r1","steps":[1],"quantity":2}),
        ),
        ev(
            1,
            json!({"event":"admitted","account":1,"waited_ms":100,"reason":"pacing","waits_ms":{"pacing":100}}),
        ),
        ev(2, json!({"event":"launch_lock_acquired","account":1})),
        ev(
            3,
            json!({"event":"browser_created","account":1,"pid":10,"port":9222,"launch_ms":100,"launch":1}),
        ),
        ev(3, json!({"event":"launch_lock_released","account":1})),
        ev(
            4,
            json!({"event":"iteration_ok","account":1,"step":1,"iteration":1}),
        ),
        ev(
            5,
            json!({"event":"iteration_ok","account":1,"step":1,"iteration":2}),
        ),
        ev(6, json!({"event":"account_done","account":1,"status":"ok"})),
        ev(
            6,
            json!({"event":"browser_created","account":2,"pid":11,"port":9223,"launch_ms":200,"launch":1}),
        ),
        ev(
            7,
            json!({"event":"retry","account":2,"step":1,"iteration":1,"attempt":2,"kind":"action_failed","error":"no <b>","backoff_ms":100}),
        ),
        ev(
            9,
            json!({"event":"browser_crashed","account":2,"pid":11,"kind":"browser_gone","error":"gone"}),
        ),
        ev(
            10,
            json!({"event":"iteration_failed","account":2,"step":1,"iteration":1,"attempts":3,"kind":"action_failed","error":"no <b>"}),
        ),
        ev(
            11,
            json!({"event":"iteration_ok","account":2,"step":1,"iteration":2}),
        ),
        ev(
            12,
            json!({"event":"account_done","account":2,"status":"failed"}),
        ),
        ev(
            12,
            json!({"event":"account_done","account":3,"status":"error","error":"internal error (panic)"}),
        ),
        ev(13, json!({"event":"run_finished","exit_code":1})),
    ];
    let mut report = Report {
        run_id: "r1".into(),
        started_at: "2026-01-01T00:00:00.000Z".into(),
        finished_at: "2026-01-01T00:00:01.300Z".into(),
        exit_code: 1,
        ..Default::default()
    };
    report.accounts = vec![
        AccountReport {
            id: 1,
            status: "ok".into(),
            iterations_ok: 2,
            browser_launches: 1,
            ..Default::default()
        },
        AccountReport {
            id: 2,
            status: "failed".into(),
            iterations_ok: 1,
            iterations_failed: 1,
            browser_launches: 2,
            retries: 1,
            last_error: Some("no <b>".into()),
            ..Default::default()
        },
        AccountReport {
            id: 3,
            status: "error".into(),
            last_error: Some("internal error (panic)".into()),
            ..Default::default()
        },
    ];
    report.sum_totals();
    RunView {
        report,
        events,
        run_dir: PathBuf::from("/nonexistent"),
        more_dirs: Vec::new(),
    }
}

#[test]
fn every_value_is_escaped_in_text_and_attributes() {
    let mut view = sample();
    let evil = r#"</td><script>alert("x")</script><img src=http://127.0.0.1:9/x onerror=1>&"'"#;
    view.report.accounts[1].last_error = Some(evil.into());
    view.report.accounts[1]
        .values
        .insert(format!("k{evil}"), Value::String(evil.into()));
    view.report.run_id = evil.into();
    view.events[9]["error"] = evil.into();
    let html = render_html(&view);
    assert!(!html.contains("<script"), "no script element");
    assert!(!html.contains("<img src=http"), "no injected element");
    assert!(!html.contains("</td><script"));
    assert!(html.contains("&lt;/td&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    // The timeline tooltip of the failed attempt carries it escaped too.
    assert!(html.contains("attempt 1 failed (action_failed): &lt;/td&gt;"));
    // The page can load nothing: every element that could is absent or data:.
    assert!(html.contains("default-src 'none'"));
    for needle in ["<link", "<script", "src=\"http", "href=\"http", "url("] {
        assert!(!html.contains(needle), "{needle} in the page");
    }
}

#[test]
fn the_page_has_a_row_and_a_timeline_per_account() {
    let html = render_html(&sample());
    for id in [1, 2, 3] {
        assert!(html.contains(&format!(
            "<tr class=\"account\" id=\"account-{id}\" data-account=\"{id}\">"
        )));
        assert!(html.contains(&format!("<svg class=\"timeline\" data-account=\"{id}\"")));
    }
    assert!(html.contains("status-failed"));
    // The failures table: the retried attempt, the crash and the failed iteration.
    let rows = html
        .matches("<tr class=\"failure\" data-account=\"2\">")
        .count();
    assert_eq!(rows, 3, "{html}");
    assert!(html.contains("<td>attempt failed, retried</td>"));
    assert!(html.contains("<td class=\"err\">no &lt;b&gt;</td>"));
    assert!(html.contains("class=\"crash\"") || html.contains("mark crash"));
}

#[test]
fn timeline_spans_follow_the_journal() {
    let tl = Timeline::from_events(&sample().events);
    assert_eq!(tl.span, 1300);
    let (segs, marks) = &tl.accounts[&1];
    let kinds: Vec<(&str, i64, i64)> = segs.iter().map(|s| (s.kind, s.start, s.end)).collect();
    assert_eq!(
        kinds,
        [
            ("wait-lock", 0, 100),
            ("launch", 200, 300),
            ("lock", 200, 300),
            ("ok", 300, 400),
            ("ok", 400, 500),
        ]
    );
    assert_eq!(marks[0].kind, "done");
    let (segs, marks) = &tl.accounts[&2];
    let kinds: Vec<(&str, i64, i64)> = segs.iter().map(|s| (s.kind, s.start, s.end)).collect();
    assert_eq!(
        kinds,
        [
            ("launch", 400, 600),
            ("attempt", 600, 700),
            ("backoff", 700, 800),
            ("failed", 800, 1000),
            ("ok", 1000, 1100),
        ]
    );
    assert_eq!(marks[0].kind, "crash");
}

#[test]
fn junit_counts_match_the_report() {
    let view = sample();
    let xml = render_junit(&view).to_string().unwrap();
    let parsed = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    assert_eq!(parsed.tests, 3, "accounts × steps");
    assert_eq!(parsed.failures, 1);
    assert_eq!(parsed.errors, 1);
    let prop = |c: &quick_junit::TestCase, name: &str| -> u64 {
        c.properties
            .iter()
            .find(|p| p.name.as_str() == name)
            .map(|p| p.value.as_str().parse().unwrap())
            .unwrap()
    };
    let cases: Vec<&quick_junit::TestCase> = parsed
        .test_suites
        .iter()
        .flat_map(|s| &s.test_cases)
        .collect();
    let sum = |name| cases.iter().map(|c| prop(c, name)).sum::<u64>();
    assert_eq!(sum("iterations_ok"), view.report.totals.iterations_ok);
    assert_eq!(
        sum("iterations_failed"),
        view.report.totals.iterations_failed
    );
    assert_eq!(sum("retries"), view.report.totals.retries);
    let failed = &parsed.test_suites[1].test_cases[0];
    match &failed.status {
        TestCaseStatus::NonSuccess {
            kind: NonSuccessKind::Failure,
            message,
            description,
            ..
        } => {
            assert_eq!(message.as_deref(), Some("1 of 2 iterations failed: no <b>"));
            assert_eq!(
                description.as_deref(),
                Some("iteration 1 (action_failed): no <b>")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(xml.contains("no &lt;b&gt;"), "escaped in the XML: {xml}");
}

use quick_junit::{NonSuccessKind, TestCaseStatus};

#[test]
fn an_interrupted_step_is_skipped_not_passed() {
    let mut view = sample();
    // Account 1 was stopped after one of two iterations.
    view.events
        .retain(|e| !(e["account"] == 1 && e["iteration"] == 2));
    view.report.accounts[0].status = "interrupted".into();
    let junit = render_junit(&view);
    let case = &junit.test_suites[0].test_cases[0];
    assert!(
        matches!(&case.status, TestCaseStatus::Skipped { message: Some(m), .. } if m.as_str() == "1 of 2 iterations ran (interrupted)"),
        "{:?}",
        case.status
    );
}

#[test]
fn a_torn_last_line_is_skipped() {
    let text = "{\"event\":\"run_started\",\"ts\":\"2026-01-01T00:00:00.000Z\"}\n{\"event\":\"iteration_ok\",\"acc";
    let events = parse_journal(text);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "run_started");
}

#[test]
fn reports_are_written_atomically_with_screenshots_inline() {
    let dir = tempfile::tempdir().unwrap();
    let mut view = sample();
    view.report.write(&dir.path().join("report.json")).unwrap();
    let journal: String = view
        .events
        .iter()
        .map(|e| format!("{e}\n"))
        .collect::<String>()
        + "{\"torn";
    std::fs::write(dir.path().join("events.jsonl"), journal).unwrap();
    let shots = dir.path().join("screenshots/2");
    std::fs::create_dir_all(&shots).unwrap();
    let png = b"\x89PNG\r\n\x1a\nfake";
    std::fs::write(shots.join("failure-step1-iteration1-attempt1.png"), png).unwrap();
    std::fs::write(shots.join("not-a-png.png"), b"GIF89a").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", shots.join("link.png")).unwrap();
    let written = write_reports(dir.path()).unwrap();
    let html = std::fs::read_to_string(&written.html).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(png);
    assert!(html.contains(&format!("src=\"data:image/png;base64,{b64}\"")));
    assert!(html.contains("failure-step1-iteration1-attempt1.png"));
    assert!(!html.contains("link.png"), "symlinks are not followed");
    assert!(html.contains("not-a-png.png (not embedded"));
    let xml = std::fs::read_to_string(&written.xml).unwrap();
    assert!(quick_junit::Report::deserialize_from_str(&xml).is_ok());
    view.run_dir = dir.path().to_path_buf();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "events.jsonl",
            "report.html",
            "report.json",
            "report.xml",
            "screenshots"
        ],
        "no temp file left"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&written.html)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_missing_report_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = write_reports(dir.path()).unwrap_err().to_string();
    assert!(e.contains("report.json"), "{e}");
}

#[test]
fn narrow_spans_of_one_kind_merge_and_wide_ones_do_not() {
    let mut events = vec![json!({"event":"run_started","ts":"2026-01-01T00:00:00.000Z"})];
    // An hour-long run: 1000 iterations of 10 ms at its start, one failed, then a
    // long iteration at its end.
    let at = |ms: i64| {
        let t =
            time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(1_767_225_600_000 + ms);
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    for i in 1..=1000i64 {
        let kind = if i == 500 {
            "iteration_failed"
        } else {
            "iteration_ok"
        };
        events.push(
            json!({"event": kind, "account": 1, "step": 1, "iteration": i, "ts": at(i * 10)}),
        );
    }
    events.push(
        json!({"event":"iteration_ok","account":1,"step":1,"iteration":1001,"ts": at(3_600_000)}),
    );
    let tl = Timeline::from_events(&events);
    let (segs, _) = &tl.accounts[&1];
    assert_eq!(segs.len(), 1001);
    let bars = super::html::bars(segs, tl.span);
    let kinds: Vec<(&str, usize)> = bars.iter().map(|b| (b.kind, b.more)).collect();
    // 499 ok merged, the failure alone (another kind), 500 ok merged, the long one alone.
    assert_eq!(kinds, [("ok", 498), ("failed", 0), ("ok", 499), ("ok", 0)]);
    let html = render_html(&RunView { events, ..sample() });
    assert!(html.contains("(and 498 more like it)"));
    assert!(html.len() < 200_000, "{} bytes", html.len());
}

#[test]
fn a_quarantined_account_shows_its_status_and_mark() {
    let mut view = sample();
    view.events.push(json!({"ts":"2026-01-01T00:00:01.200Z","event":"quarantine_skipped",
        "account":4,"reason":"challenge: #captcha on the page","score":3,"until":"2026-01-01T01:00:00Z"}));
    view.events.push(
        json!({"ts":"2026-01-01T00:00:01.200Z","event":"account_done",
        "account":4,"status":"quarantined"}),
    );
    view.report.accounts.push(AccountReport {
        id: 4,
        status: "quarantined".into(),
        last_error: Some("quarantined: challenge: #captcha on the page".into()),
        ..Default::default()
    });
    let html = render_html(&view);
    assert!(html.contains("data-account=\"4\""), "a row for it");
    assert!(html.contains(">quarantined<"), "its status");
    assert!(
        html.contains("quarantined until 2026-01-01T01:00:00Z: challenge: #captcha on the page"),
        "the timeline's mark"
    );
}
