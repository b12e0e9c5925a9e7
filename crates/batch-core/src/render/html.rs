//! `report.html`: one self-contained page — inline CSS, inline SVG, screenshots as
//! `data:` URIs, no script, and a Content-Security-Policy that forbids loading
//! anything (`default-src 'none'`), so it opens from disk and never reaches the
//! network even if a value looked like markup.
//!
//! Every value is escaped by maud's `html!` (text and attributes alike); the only
//! unescaped text is the constant style sheet.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use super::RunView;
use super::timeline::{Lane, Timeline};
use crate::report::AccountReport;

/// Screenshots embedded per account at most; later ones are listed by name.
const SHOTS_PER_ACCOUNT: usize = 6;
/// Bytes of screenshots embedded in the whole page at most (the page stays openable).
const SHOT_BUDGET: u64 = 24 << 20;

const CSS: &str = r#"
:root { color-scheme: light; --ok:#2e7d32; --bad:#c62828; --warn:#ef6c00; --mut:#607d8b; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.4rem; margin: 0 0 .5rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
.meta { color: var(--mut); }
.cards { display: flex; gap: .75rem; flex-wrap: wrap; margin: 1rem 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .5rem .9rem; min-width: 7rem; }
.card b { display: block; font-size: 1.3rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #eee; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.ts { white-space: nowrap; font-variant-numeric: tabular-nums; }
.status { font-weight: 600; }
.status-ok { color: var(--ok); } .status-failed, .status-error { color: var(--bad); }
.status-interrupted { color: var(--warn); }
.err { color: var(--bad); font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap; word-break: break-word; }
.values code { display: block; font-size: 12px; word-break: break-word; }
.tl-row { display: grid; grid-template-columns: 7rem 1fr; align-items: center; gap: .5rem; margin: 2px 0; }
svg.timeline { width: 100%; height: 30px; background: #fafafa; }
svg.axis { width: 100%; height: 16px; }
.axis text { font-size: 9px; fill: #888; }
rect.wait-lock { fill: #b0bec5; } rect.wait-memory { fill: #ffb74d; } rect.wait-cpu { fill: #ce93d8; }
rect.wait-cap { fill: #90caf9; } rect.lock { fill: #78909c; } rect.launch { fill: #1e88e5; }
rect.ok { fill: #66bb6a; } rect.failed { fill: #e53935; } rect.attempt { fill: #ff8a65; }
rect.ok, rect.failed, rect.attempt { stroke: #fff; stroke-width: 1; vector-effect: non-scaling-stroke; }
rect.backoff { fill: #fff3e0; stroke: #ffb74d; stroke-width: .5; }
.mark line { stroke-width: 2; } .crash line { stroke: #b71c1c; } .launch-failed line { stroke: #6a1b9a; }
.retired line { stroke: #546e7a; } .after-failed line { stroke: #e65100; } .done line { stroke: #212121; }
.legend span { display: inline-block; margin-right: .8rem; font-size: 12px; }
.legend i { display: inline-block; width: .8rem; height: .8rem; margin-right: .25rem; vertical-align: -1px; }
figure { display: inline-block; margin: .5rem; max-width: 420px; }
figure img { max-width: 100%; border: 1px solid #ccc; }
figcaption { font-size: 12px; color: var(--mut); word-break: break-all; }
"#;

/// The CSP: nothing may be loaded but inline styles and `data:` images.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Width of the SVG coordinate space (the SVG itself scales to the page).
const W: f64 = 1000.0;

fn status_class(status: &str) -> &'static str {
    match status {
        "ok" => "status-ok",
        "failed" => "status-failed",
        "interrupted" | "quarantined" => "status-interrupted",
        _ => "status-error",
    }
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "—".into(),
        |b| format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0)),
    )
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn seconds(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The whole page.
pub fn render_html(view: &RunView) -> String {
    let r = &view.report;
    let timeline = Timeline::from_events(&view.events);
    let duration = match (super::ts_ms(&r.started_at), super::ts_ms(&r.finished_at)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let mut budget = SHOT_BUDGET;
    let shots: Vec<(u64, Vec<Shot>)> = r
        .accounts
        .iter()
        .map(|a| {
            // A merged report's accounts each have their shard's directory.
            let dir = view
                .dirs()
                .find(|d| d.join("screenshots").join(a.id.to_string()).is_dir())
                .unwrap_or(&view.run_dir);
            (a.id, screenshots(dir, a.id, &mut budget))
        })
        .filter(|(_, s)| !s.is_empty())
        .collect();
    let failures = failures(&view.events);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(CSP);
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "batch-cli run " (r.run_id) }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { "Run " (r.run_id) }
                p.meta {
                    (r.started_at) " → " (r.finished_at)
                    @if let Some(d) = duration { " (" (seconds(d)) ")" }
                    " · exit code " (r.exit_code)
                    @if r.interrupted { " · interrupted" }
                }
                div.cards id="summary" {
                    div.card { "accounts" b { (r.accounts.len()) } }
                    div.card { "iterations ok" b.status-ok { (r.totals.iterations_ok) } }
                    div.card { "iterations failed"
                        b.status-failed[r.totals.iterations_failed > 0] { (r.totals.iterations_failed) } }
                    div.card { "browser launches" b { (r.totals.browser_launches) } }
                    div.card { "retries" b { (r.totals.retries) } }
                    div.card { "peak browsers' memory" b { (mib(r.memory.peak_browsers_pss_bytes)) } }
                    div.card { "lowest available memory" b { (mib(r.memory.min_available_bytes)) } }
                    div.card { "waited for memory" b { (seconds(r.memory.waited_ms as i64)) } }
                }
                h2 { "Accounts" }
                table id="accounts" {
                    thead { tr {
                        th { "account" } th { "status" } th { "ok" } th { "failed" }
                        th { "launches" } th { "retries" } th { "peak memory" }
                        th { "recorded values" } th { "last error" }
                    } }
                    tbody {
                        @for a in &r.accounts { (account_row(a)) }
                    }
                }
                h2 { "Timeline" }
                (legend())
                div id="timeline" {
                    div.tl-row { span {} (axis(timeline.span)) }
                    @for a in &r.accounts {
                        div.tl-row {
                            span { "account " (a.id) }
                            (account_svg(&timeline, a.id))
                        }
                    }
                }
                @if !failures.is_empty() {
                    h2 { "Failures" }
                    table id="failures" {
                        thead { tr {
                            th { "time" } th { "account" } th { "what" } th { "step" }
                            th { "iteration" } th { "kind" } th { "error" }
                        } }
                        tbody {
                            @for f in failures.iter().take(MAX_FAILURE_ROWS) {
                                tr.failure data-account=(f.account) {
                                    td.ts { (f.ts) }
                                    td.num { (f.account) }
                                    td { (f.what) }
                                    td.num { (f.step) }
                                    td.num { (f.iteration) }
                                    td { (f.kind) }
                                    td.err { (f.error) }
                                }
                            }
                        }
                    }
                    @if failures.len() > MAX_FAILURE_ROWS {
                        p.meta { "… and " (failures.len() - MAX_FAILURE_ROWS) " more in events.jsonl" }
                    }
                }
                @if !shots.is_empty() {
                    h2 { "Screenshots" }
                    div id="screenshots" {
                        @for (id, list) in &shots {
                            h3 { "account " (id) }
                            @for shot in list {
                                @match &shot.data {
                                    Some(data) => figure {
                                        img src=(data) alt=(shot.name);
                                        figcaption { (shot.name) }
                                    },
                                    None => p.meta { (shot.name) " (not embedded: see screenshots/ in the run directory)" },
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page.into_string()
}

fn account_row(a: &AccountReport) -> Markup {
    html! {
        tr.account id={ "account-" (a.id) } data-account=(a.id) {
            td.num { (a.id) }
            td.status.(status_class(&a.status)) { (a.status) }
            td.num { (a.iterations_ok) }
            td.num { (a.iterations_failed) }
            td.num { (a.browser_launches) }
            td.num { (a.retries) }
            td.num { (mib(a.peak_browser_pss_bytes)) }
            td.values {
                @for (k, v) in &a.values { code { (k) " = " (value_text(v)) } }
                @if a.actions_skipped > 0 {
                    div.skipped { (a.actions_skipped) " optional action(s) skipped" }
                }
            }
            td.err {
                @if let Some(e) = &a.last_error { (e) }
                @for f in &a.proxy_failovers {
                    div.failover { "proxy " code { (f.from) } " unreachable: went on through " code { (f.to) } }
                }
            }
        }
    }
}

fn legend() -> Markup {
    let items = [
        ("wait-lock", "waiting for the creation lock / pacing"),
        ("wait-memory", "waiting for memory"),
        ("wait-cpu", "waiting for CPU"),
        ("wait-cap", "waiting for a slot"),
        ("lock", "creation lock held"),
        ("launch", "browser launch"),
        ("ok", "iteration ok"),
        ("failed", "iteration failed"),
        ("attempt", "failed attempt (retried)"),
        ("backoff", "retry back-off"),
    ];
    html! {
        p.legend {
            @for (class, text) in items {
                span { svg width="12" height="12" { rect class=(class) width="12" height="12" {} } " " (text) }
            }
            span { "│ marks: crash (dark red), failed launch (purple), retired (grey), after failed (orange), done (black)" }
        }
    }
}

fn x(at: i64, span: i64) -> f64 {
    (at as f64 / span as f64 * W).clamp(0.0, W)
}

fn axis(span: i64) -> Markup {
    let ticks: Vec<i64> = (0..=5).map(|i| span * i / 5).collect();
    html! {
        svg.axis viewBox="0 0 1000 16" preserveAspectRatio="none" role="img" aria-label="time axis" {
            @for t in ticks {
                @let px = x(t, span).clamp(12.0, W - 12.0);
                text x=(format!("{px:.1}")) y="12" text-anchor="middle" { (seconds(t)) }
            }
        }
    }
}

/// One rect of a timeline: a span, or a run of spans too narrow to tell apart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar<'a> {
    pub(crate) kind: &'static str,
    pub(crate) lane: Lane,
    /// In SVG units (0..=W).
    pub(crate) x0: f64,
    pub(crate) x1: f64,
    /// The first span's label, and how many more the bar stands for.
    pub(crate) label: &'a str,
    pub(crate) more: usize,
}

/// Spans as rects. Consecutive spans of one kind on one lane that are each narrower
/// than [`NARROW`] units become one rect: a thousand 20 ms iterations of an hour-long
/// run would otherwise be a thousand overlapping slivers (and megabytes of page).
pub(crate) fn bars(segs: &[super::Segment], span: i64) -> Vec<Bar<'_>> {
    let mut out: Vec<Bar<'_>> = Vec::new();
    for s in segs {
        let (x0, x1) = (x(s.start, span), x(s.end, span));
        if let Some(last) = out.last_mut()
            && last.kind == s.kind
            && last.lane == s.lane
            && x1 - x0 < NARROW
            && (last.x1 - last.x0) < NARROW * (last.more + 1) as f64
            && x0 - last.x1 < NARROW
        {
            last.x1 = last.x1.max(x1);
            last.more += 1;
            continue;
        }
        out.push(Bar {
            kind: s.kind,
            lane: s.lane,
            x0,
            x1,
            label: &s.label,
            more: 0,
        });
    }
    out
}

/// Below this width (SVG units, of 1000) spans are merged.
const NARROW: f64 = 2.0;

fn account_svg(tl: &Timeline, id: u64) -> Markup {
    let empty = (Vec::new(), Vec::new());
    let (segs, marks) = tl.accounts.get(&id).unwrap_or(&empty);
    html! {
        svg.timeline data-account=(id) viewBox="0 0 1000 30" preserveAspectRatio="none"
            role="img" aria-label={ "timeline of account " (id) } {
            @for b in bars(segs, tl.span) {
                // At least a sliver, so that a 20 ms iteration of an hour-long run shows.
                @let w = (b.x1 - b.x0).max(1.0);
                // The lock is held around the launch: a thin bar under it, not over it.
                @let (y, h) = match (b.lane, b.kind) {
                    (Lane::Browser, "lock") => (11, 3),
                    (Lane::Browser, _) => (2, 9),
                    (Lane::Work, _) => (16, 12),
                };
                rect class=(b.kind) x=(format!("{:.2}", b.x0)) y=(y) width=(format!("{w:.2}")) height=(h) {
                    title {
                        (b.label)
                        @if b.more > 0 { " (and " (b.more) " more like it)" }
                    }
                }
            }
            @for m in marks {
                @let px = format!("{:.2}", x(m.at, tl.span));
                g.mark.(m.kind) {
                    title { (m.label) }
                    line x1=(px) x2=(px) y1="0" y2="30" {}
                }
            }
        }
    }
}

/// Rows of the failures table at most (the journal has them all).
const MAX_FAILURE_ROWS: usize = 500;

/// One failure event, as the failures table shows it.
struct FailureRow<'a> {
    ts: &'a str,
    account: u64,
    what: &'static str,
    step: String,
    iteration: String,
    kind: &'a str,
    error: &'a str,
}

/// Every failed iteration, failed attempt, crash, failed launch and failed `after`, in
/// journal order.
fn failures(events: &[Value]) -> Vec<FailureRow<'_>> {
    let str_of = |e: &Value, k: &str| -> String {
        match e.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    };
    events
        .iter()
        .filter_map(|e| {
            let what = match e.get("event").and_then(Value::as_str)? {
                "iteration_failed" => "iteration failed",
                "retry" => "attempt failed, retried",
                "browser_crashed" => "browser lost",
                "launch_failed" => "launch failed",
                "after_failed" => "after failed",
                _ => return None,
            };
            let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
            Some(FailureRow {
                ts: text("ts"),
                account: e.get("account").and_then(Value::as_u64)?,
                what,
                step: str_of(e, "step"),
                // A retry names the attempt about to start; the iteration is the same.
                iteration: str_of(e, "iteration"),
                kind: text("kind"),
                error: text("error"),
            })
        })
        .collect()
}

/// One screenshot of an account: embedded, or only named (over the budget).
struct Shot {
    name: String,
    data: Option<String>,
}

/// `screenshots/<account>/*.png`, failure screenshots first, then by name. Only
/// regular files (no symlinks) are read.
fn screenshots(run_dir: &Path, account: u64, budget: &mut u64) -> Vec<Shot> {
    let dir = run_dir.join("screenshots").join(account.to_string());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, PathBuf, u64)> = entries
        .flatten()
        .filter_map(|e| {
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            let name = e.file_name().into_string().ok()?;
            (meta.is_file() && name.ends_with(".png")).then(|| (name, e.path(), meta.len()))
        })
        .collect();
    files.sort_by(|a, b| {
        (!a.0.starts_with("failure-"), &a.0).cmp(&(!b.0.starts_with("failure-"), &b.0))
    });
    files
        .into_iter()
        .enumerate()
        .map(|(i, (name, path, len))| {
            let data = (i < SHOTS_PER_ACCOUNT && len <= *budget)
                .then(|| std::fs::read(&path).ok())
                .flatten()
                .filter(|png| png.starts_with(b"\x89PNG\r\n\x1a\n"))
                .map(|png| {
                    *budget -= len.min(*budget);
                    format!(
                        "data:image/png;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(png)
                    )
                });
            Shot { name, data }
        })
        .collect()
}
