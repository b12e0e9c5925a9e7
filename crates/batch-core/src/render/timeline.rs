//! Per-account timelines folded from the journal: spans (admission waits, the
//! creation lock held, browser launches, iterations and failed attempts, retry
//! back-offs) and instants (crashes, failed launches, retirements, the end).
//!
//! The journal has no "iteration started" event, so an iteration's span runs from the
//! account's previous point of progress (its browser created, the previous iteration
//! ended, a retry's back-off over) to its `iteration_ok` / `iteration_failed`; the
//! first iteration after a launch includes `before`. Waits and launches carry their
//! own durations (`admitted.waited_ms`, `browser_created.launch_ms`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::event_ms;

/// Which row of an account's timeline a span is drawn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Admission, creation lock, launch.
    Browser,
    /// Iterations, failed attempts, back-offs.
    Work,
}

/// One span, in milliseconds since the run started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Start.
    pub start: i64,
    /// End (≥ start).
    pub end: i64,
    /// The row it is drawn on.
    pub lane: Lane,
    /// CSS class: `wait-<reason>`, `lock`, `launch`, `ok`, `failed`, `attempt`, `backoff`.
    pub kind: &'static str,
    /// What a tooltip says (plain text; escaped when rendered).
    pub label: String,
    /// The step it belongs to (iterations only).
    pub step: Option<u64>,
}

/// One instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// When, ms since the run started.
    pub at: i64,
    /// CSS class: `crash`, `launch-failed`, `retired`, `after-failed`, `done`.
    pub kind: &'static str,
    /// Tooltip text.
    pub label: String,
}

/// Every account's timeline over one time axis.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Length of the axis, ms (the last event's time; at least 1).
    pub span: i64,
    /// Spans and marks per account id.
    pub accounts: BTreeMap<u64, (Vec<Segment>, Vec<Mark>)>,
}

fn u(e: &Value, k: &str) -> Option<u64> {
    e.get(k).and_then(Value::as_u64)
}

fn s<'a>(e: &'a Value, k: &str) -> &'a str {
    e.get(k).and_then(Value::as_str).unwrap_or("")
}

#[derive(Default)]
struct Cursor {
    /// Where the next iteration span starts.
    work_from: Option<i64>,
    /// When the creation lock was taken.
    lock_from: Option<i64>,
}

impl Timeline {
    /// Fold the journal's events.
    pub fn from_events(events: &[Value]) -> Timeline {
        let t0 = events.iter().filter_map(event_ms).min().unwrap_or(0);
        let mut tl = Timeline {
            span: events.iter().filter_map(event_ms).max().unwrap_or(0) - t0,
            ..Default::default()
        };
        let mut cursors: BTreeMap<u64, Cursor> = BTreeMap::new();
        for e in events {
            let (Some(account), Some(at)) = (u(e, "account"), event_ms(e)) else {
                continue;
            };
            let at = at - t0;
            tl.span = tl.span.max(at);
            let c = cursors.entry(account).or_default();
            let (segs, marks) = tl.accounts.entry(account).or_default();
            let mut seg = |start: i64, lane, kind, label: String, step| {
                segs.push(Segment {
                    start: start.clamp(0, at),
                    end: at,
                    lane,
                    kind,
                    label,
                    step,
                })
            };
            let step = u(e, "step");
            let it = || format!("step {} iteration {}", n(e, "step"), n(e, "iteration"));
            match s(e, "event") {
                "admitted" => {
                    let waited = u(e, "waited_ms").unwrap_or(0) as i64;
                    if waited > 0 {
                        let reason = s(e, "reason");
                        let kind = match reason {
                            "memory" => "wait-memory",
                            "cpu" => "wait-cpu",
                            "cap" => "wait-cap",
                            _ => "wait-lock",
                        };
                        let per = e
                            .get("waits_ms")
                            .and_then(Value::as_object)
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| format!("{k} {v} ms"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            })
                            .unwrap_or_default();
                        seg(
                            at - waited,
                            Lane::Browser,
                            kind,
                            format!("waited {waited} ms for admission ({per})"),
                            None,
                        );
                    }
                }
                "launch_lock_acquired" => c.lock_from = Some(at),
                "launch_lock_released" => {
                    if let Some(from) = c.lock_from.take() {
                        seg(
                            from,
                            Lane::Browser,
                            "lock",
                            format!("held the creation lock {} ms", at - from),
                            None,
                        );
                    }
                }
                "browser_created" => {
                    let ms = u(e, "launch_ms").unwrap_or(0) as i64;
                    seg(
                        at - ms,
                        Lane::Browser,
                        "launch",
                        format!(
                            "browser {} launched in {ms} ms (pid {}, DevTools port {})",
                            n(e, "launch"),
                            n(e, "pid"),
                            n(e, "port")
                        ),
                        None,
                    );
                    c.work_from = Some(at);
                }
                "iteration_ok" => {
                    let from = c.work_from.unwrap_or(at);
                    seg(from, Lane::Work, "ok", format!("{} ok", it()), step);
                    c.work_from = Some(at);
                }
                "iteration_failed" => {
                    let from = c.work_from.unwrap_or(at);
                    seg(
                        from,
                        Lane::Work,
                        "failed",
                        format!("{} FAILED ({}): {}", it(), s(e, "kind"), s(e, "error")),
                        step,
                    );
                    c.work_from = Some(at);
                }
                "retry" => {
                    let from = c.work_from.unwrap_or(at);
                    seg(
                        from,
                        Lane::Work,
                        "attempt",
                        format!(
                            "{} attempt {} failed ({}): {}",
                            it(),
                            u(e, "attempt").unwrap_or(1).saturating_sub(1),
                            s(e, "kind"),
                            s(e, "error")
                        ),
                        step,
                    );
                    let backoff = u(e, "backoff_ms").unwrap_or(0) as i64;
                    if backoff > 0 {
                        // Drawn ahead of the event: the back-off ends after it.
                        segs.push(Segment {
                            start: at,
                            end: at + backoff,
                            lane: Lane::Work,
                            kind: "backoff",
                            label: format!("retry back-off {backoff} ms"),
                            step,
                        });
                        tl.span = tl.span.max(at + backoff);
                    }
                    c.work_from = Some(at + backoff);
                }
                "browser_crashed" => marks.push(Mark {
                    at,
                    kind: "crash",
                    label: format!("browser lost ({}): {}", s(e, "kind"), s(e, "error")),
                }),
                "launch_failed" => marks.push(Mark {
                    at,
                    kind: "launch-failed",
                    label: format!("browser launch failed: {}", s(e, "error")),
                }),
                "browser_retired" => marks.push(Mark {
                    at,
                    kind: "retired",
                    label: format!(
                        "browser retired ({}) after {} iteration(s)",
                        s(e, "reason"),
                        n(e, "iterations")
                    ),
                }),
                "after_failed" => marks.push(Mark {
                    at,
                    kind: "after-failed",
                    label: format!("after of step {} failed: {}", n(e, "step"), s(e, "error")),
                }),
                "account_quarantined" | "quarantine_skipped" => marks.push(Mark {
                    at,
                    kind: "after-failed",
                    label: format!("quarantined until {}: {}", s(e, "until"), s(e, "reason")),
                }),
                "account_done" => marks.push(Mark {
                    at,
                    kind: "done",
                    label: format!("done: {}", s(e, "status")),
                }),
                _ => {}
            }
        }
        tl.span = tl.span.max(1);
        tl
    }
}

fn n(e: &Value, k: &str) -> String {
    match e.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "?".into(),
    }
}
