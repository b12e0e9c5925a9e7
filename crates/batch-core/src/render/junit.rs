//! `report.xml`: the run as JUnit XML (quick-junit), so CI systems show it like a
//! test run. One `<testsuite>` per account, one `<testcase>` per account × step:
//!
//! - failure: some of the step's iterations failed (or its `after`), the message
//!   says how many and the last error, the body lists every failed iteration;
//! - error: the account could not run at all (`status = "error"`);
//! - skipped: the run was interrupted before the step finished, with no failure;
//! - success otherwise.
//!
//! Every case carries `iterations_ok`, `iterations_failed` and `retries` properties,
//! whose sums over the file are `report.json`'s totals.

use std::collections::BTreeMap;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use serde_json::Value;

use super::RunView;
use super::timeline::{Lane, Timeline};

/// One account × step, folded from the journal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct StepTally {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) retries: u64,
    /// `iteration I (kind): error` per failed iteration.
    pub(crate) failures: Vec<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) after_error: Option<String>,
}

/// Per (account, step) tallies from the journal.
pub(crate) fn tallies(events: &[Value]) -> BTreeMap<(u64, u64), StepTally> {
    let mut out: BTreeMap<(u64, u64), StepTally> = BTreeMap::new();
    for e in events {
        let (Some(account), Some(step)) = (
            e.get("account").and_then(Value::as_u64),
            e.get("step").and_then(Value::as_u64),
        ) else {
            continue;
        };
        let t = out.entry((account, step)).or_default();
        let error = e.get("error").and_then(Value::as_str).unwrap_or("");
        match e["event"].as_str().unwrap_or("") {
            "iteration_ok" => t.ok += 1,
            "iteration_failed" => {
                t.failed += 1;
                t.failures.push(format!(
                    "iteration {} ({}): {error}",
                    e.get("iteration").map_or("?".into(), Value::to_string),
                    e.get("kind").and_then(Value::as_str).unwrap_or("?")
                ));
                t.last_error = Some(error.to_string());
            }
            "retry" => t.retries += 1,
            "after_failed" => t.after_error = Some(error.to_string()),
            _ => {}
        }
    }
    out
}

/// The JUnit report.
pub fn render_junit(view: &RunView) -> quick_junit::Report {
    let r = &view.report;
    let tallies = tallies(&view.events);
    let steps = view.steps();
    let quantity = view.quantity();
    let timeline = Timeline::from_events(&view.events);
    let timestamp = chrono::DateTime::parse_from_rfc3339(&r.started_at).ok();
    let mut report = quick_junit::Report::new(format!("batch-cli run {}", r.run_id));
    if let Some(t) = timestamp {
        report.set_timestamp(t);
    }
    if let (Some(a), Some(b)) = (super::ts_ms(&r.started_at), super::ts_ms(&r.finished_at)) {
        report.set_time(ms(b - a));
    }
    for a in &r.accounts {
        let suite_name = format!("account {}", a.id);
        let mut suite = TestSuite::new(suite_name.clone());
        if let Some(t) = timestamp {
            suite.set_timestamp(t);
        }
        suite.add_properties([
            Property::new("status", a.status.as_str()),
            Property::new("browser_launches", a.browser_launches.to_string()),
        ]);
        for step in &steps {
            let t = tallies.get(&(a.id, *step)).cloned().unwrap_or_default();
            let done = t.ok + t.failed;
            let status = if t.failed > 0 || t.after_error.is_some() {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let last = t.last_error.as_deref().or(t.after_error.as_deref());
                let mut msg = match quantity {
                    Some(q) => format!("{} of {q} iterations failed", t.failed),
                    None => format!("{} iterations failed", t.failed),
                };
                if t.failed == 0 {
                    msg = "after failed".into();
                }
                if let Some(last) = last {
                    msg.push_str(": ");
                    msg.push_str(last);
                }
                s.set_message(msg);
                let mut body = t.failures.join("\n");
                if let Some(after) = &t.after_error {
                    body.push_str(&format!("\nafter: {after}"));
                }
                s.set_description(body.trim_start().to_string());
                s
            } else if a.status == "error" && done == 0 {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(
                    a.last_error
                        .clone()
                        .unwrap_or_else(|| "could not run".into()),
                );
                s
            } else if quantity.is_some_and(|q| done < q) {
                let mut s = TestCaseStatus::skipped();
                s.set_message(match quantity {
                    Some(q) => format!("{} of {q} iterations ran ({})", done, a.status),
                    None => a.status.clone(),
                });
                s
            } else {
                TestCaseStatus::success()
            };
            let mut case = TestCase::new(format!("step {step}"), status);
            case.set_classname(suite_name.clone());
            let busy: i64 = timeline
                .accounts
                .get(&a.id)
                .map(|(segs, _)| {
                    segs.iter()
                        .filter(|s| s.lane == Lane::Work && s.step == Some(*step))
                        .map(|s| s.end - s.start)
                        .sum()
                })
                .unwrap_or(0);
            case.set_time(ms(busy));
            case.add_properties([
                Property::new("iterations_ok", t.ok.to_string()),
                Property::new("iterations_failed", t.failed.to_string()),
                Property::new("retries", t.retries.to_string()),
            ]);
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report
}

fn ms(v: i64) -> std::time::Duration {
    std::time::Duration::from_millis(v.max(0) as u64)
}
