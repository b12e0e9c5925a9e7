//! The run's reports for people and CI: `report.html` (self-contained: summary,
//! per-account table, an SVG timeline per account, failure screenshots inline) and
//! `report.xml` (JUnit: one test case per account × step).
//!
//! Both are rendered from what the run directory already holds — `report.json`, the
//! journal `events.jsonl` (read by the SPEC's field names, tolerating a torn last
//! line) and `screenshots/` — so the end of a run and `batch-cli report RUN_DIR` build
//! them the same way ([`write_reports`]). Everything read here is already redacted;
//! nothing else of the project (accounts, workflow, environment) is read.
//!
//! This module does not produce `report.json` and does not print.

mod html;
mod junit;
mod timeline;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::report::Report;

pub use html::render_html;
pub use junit::render_junit;
pub use timeline::{Lane, Mark, Segment, Timeline};

/// What the renderers read: the report, the journal's objects and the run directory
/// (for screenshots).
#[derive(Debug, Clone, Default)]
pub struct RunView {
    /// `report.json`.
    pub report: Report,
    /// `events.jsonl`, one object per complete line, in file order.
    pub events: Vec<Value>,
    /// The run directory (screenshots are read from its `screenshots/`).
    pub run_dir: PathBuf,
    /// More run directories whose `screenshots/` count too: the shards of a merged
    /// report (`batch-cli report --merge`), each holding its own accounts'.
    pub more_dirs: Vec<PathBuf>,
}

/// Why the reports could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The JUnit serializer failed.
    #[error("{path}: cannot serialize JUnit XML ({reason})")]
    Junit {
        /// `report.xml`.
        path: PathBuf,
        /// What quick-junit said.
        reason: String,
    },
}

/// The paths [`write_reports`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// `report.html`.
    pub html: PathBuf,
    /// `report.xml`.
    pub xml: PathBuf,
}

impl RenderError {
    /// The file at fault and the error as an I/O error (for callers that report
    /// file errors one way).
    pub fn into_io(self) -> (PathBuf, std::io::Error) {
        match self {
            RenderError::Io { path, source } => (path, source),
            RenderError::Junit { path, reason } => (path, std::io::Error::other(reason)),
        }
    }
}

impl RunView {
    /// Read `report.json`, `events.jsonl` of `run_dir`.
    pub fn load(run_dir: &Path) -> Result<RunView, RenderError> {
        let report_path = run_dir.join("report.json");
        let report = Report::read(&report_path).map_err(|source| RenderError::Io {
            path: report_path,
            source,
        })?;
        let journal = run_dir.join("events.jsonl");
        let text = match std::fs::read(&journal) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            // A report without a journal still renders (no timeline).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(RenderError::Io {
                    path: journal,
                    source,
                });
            }
        };
        Ok(RunView {
            report,
            events: parse_journal(&text),
            run_dir: run_dir.to_path_buf(),
            more_dirs: Vec::new(),
        })
    }

    /// Every directory whose `screenshots/` belong to this view.
    pub(crate) fn dirs(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.run_dir.as_path()).chain(self.more_dirs.iter().map(PathBuf::as_path))
    }

    /// The `run_started` event, if the journal has one.
    pub(crate) fn started(&self) -> Option<&Value> {
        self.events.iter().find(|e| e["event"] == "run_started")
    }

    /// Step ids of the run, in order: `run_started.steps`, else every step the
    /// journal mentions.
    pub(crate) fn steps(&self) -> Vec<u64> {
        if let Some(steps) = self
            .started()
            .and_then(|e| e.get("steps"))
            .and_then(Value::as_array)
        {
            return steps.iter().filter_map(Value::as_u64).collect();
        }
        let mut seen: Vec<u64> = self
            .events
            .iter()
            .filter_map(|e| e.get("step").and_then(Value::as_u64))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen
    }

    /// Iterations per account and step (`run_started.quantity`), if known.
    pub(crate) fn quantity(&self) -> Option<u64> {
        self.started()
            .and_then(|e| e.get("quantity"))
            .and_then(Value::as_u64)
    }
}

/// The journal's objects, one per line. A line that does not parse (the torn last
/// line of a killed run) is skipped rather than failing the whole report.
pub fn parse_journal(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

/// Build `report.html` and `report.xml` in `run_dir` from what it holds, each written
/// atomically (mode 0600): a reader sees the old file or the new one, never half.
pub fn write_reports(run_dir: &Path) -> Result<Written, RenderError> {
    write_view(&RunView::load(run_dir)?)
}

/// `report.html` and `report.xml` of shards merged (`batch-cli report --merge`): the
/// merged `report.json` already in `out`, the shards' journals one after another (each
/// account is in one shard only, so its timeline and JUnit cases come from its own
/// shard), screenshots from the shards' directories.
pub fn write_merged_reports(out: &Path, shards: &[PathBuf]) -> Result<Written, RenderError> {
    let mut view = RunView::load(out)?;
    for dir in shards {
        let part = RunView::load(dir)?;
        view.events.extend(part.events);
    }
    view.more_dirs = shards.to_vec();
    write_view(&view)
}

fn write_view(view: &RunView) -> Result<Written, RenderError> {
    let run_dir = view.run_dir.as_path();
    let html_path = run_dir.join("report.html");
    let xml_path = run_dir.join("report.xml");
    let html = render_html(view);
    let xml = render_junit(view)
        .to_string()
        .map_err(|e| RenderError::Junit {
            path: xml_path.clone(),
            reason: e.to_string(),
        })?;
    for (path, bytes) in [(&html_path, html.as_bytes()), (&xml_path, xml.as_bytes())] {
        fsutil::write_atomic(path, bytes, 0o600).map_err(|source| RenderError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(Written {
        html: html_path,
        xml: xml_path,
    })
}

/// An RFC 3339 time as Unix milliseconds.
pub(crate) fn ts_ms(ts: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The event's `ts` as Unix milliseconds.
pub(crate) fn event_ms(e: &Value) -> Option<i64> {
    e.get("ts").and_then(Value::as_str).and_then(ts_ms)
}

#[cfg(test)]
pub(crate) mod tests;
