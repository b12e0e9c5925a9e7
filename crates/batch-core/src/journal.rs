//! The journal: `events.jsonl`, one JSON object per line, appended and flushed as
//! things happen, and the same objects handed to an [`Observer`] in the same order.
//!
//! Events are built with [`Event::new`] and fields added with [`Event::with`]; field
//! names are fixed across the code base (`account`, `step`, `iteration`, `attempt`,
//! `port`, `pid`, `profile`, `error`, `kind`). Every string of every event is passed
//! through the run's [`Secrets`] before it is written, as a last line of defence:
//! callers should still pass templated values in their redacted form.
//!
//! Two guarantees shape this module:
//! - The journal never lies. Each line is written with one `write(2)` on an
//!   `O_APPEND` file; a failed or short write truncates the file back to its last
//!   complete line, stops the journal (nothing later is written or shown) and cancels
//!   the run. [`Journal::failure`] then tells the runner.
//! - A slow terminal never slows the run. The file is written under the lock, but the
//!   observer (the terminal) is fed through an unbounded queue by one printer thread,
//!   in the file's order; the lock is never held while printing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::Secrets;

/// One journal line.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The `event` name.
    pub name: &'static str,
    /// The account it concerns, if any.
    pub account: Option<u64>,
    /// Every other field, in insertion order after `ts`, `event`, `account`.
    pub fields: Map<String, Value>,
}

impl Event {
    /// An event with no fields yet.
    pub fn new(name: &'static str) -> Self {
        Event {
            name,
            account: None,
            fields: Map::new(),
        }
    }

    /// The same event about an account.
    pub fn account(mut self, id: u64) -> Self {
        self.account = Some(id);
        self
    }

    /// The same event with one more field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    fn to_json(&self, ts: &str) -> Value {
        let mut m = Map::new();
        m.insert("ts".into(), ts.into());
        m.insert("event".into(), self.name.into());
        if let Some(a) = self.account {
            m.insert("account".into(), a.into());
        }
        m.extend(self.fields.clone());
        Value::Object(m)
    }
}

/// Receives every event, as the JSON object written to the journal, on the journal's
/// printer thread.
pub type Observer = Arc<dyn Fn(&Value) + Send + Sync>;

/// Where journal lines go: `events.jsonl` in production, a failing fake in tests.
pub(crate) trait Sink: Send {
    /// One `write(2)`: how many bytes were taken.
    fn write_once(&mut self, line: &[u8]) -> std::io::Result<usize>;
    /// Cut the file back to `len` bytes.
    fn truncate(&mut self, len: u64) -> std::io::Result<()>;
    /// Make everything durable.
    fn sync(&mut self);
}

impl Sink for std::fs::File {
    fn write_once(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.write(line)
    }

    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }

    fn sync(&mut self) {
        let _ = self.sync_data();
    }
}

/// The run's journal; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    secrets: Secrets,
    cancel: CancellationToken,
    state: Mutex<State>,
    printer: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    sink: Box<dyn Sink>,
    /// Length of the file up to its last complete line.
    good_len: u64,
    /// To the printer thread; `None` once closed.
    queue: Option<mpsc::Sender<Value>>,
    /// The first write error; once set, nothing more is written or shown.
    failure: Option<std::io::Error>,
    /// Whether [`Journal::take_error`] already handed the failure out.
    failure_taken: bool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// Now, RFC 3339 in UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt).expect("formatting a UTC time cannot fail")
}

impl Journal {
    /// Create (or, for a resumed run, append to) `path`, mode 0600. Every event is
    /// redacted with `secrets`; a failed write cancels `cancel`.
    pub fn open(
        path: &Path,
        observer: Observer,
        secrets: Secrets,
        cancel: CancellationToken,
    ) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(Journal::with_sink(
            path,
            Box::new(file),
            len,
            observer,
            secrets,
            cancel,
        ))
    }

    pub(crate) fn with_sink(
        path: &Path,
        sink: Box<dyn Sink>,
        good_len: u64,
        observer: Observer,
        secrets: Secrets,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Value>();
        let printer = std::thread::Builder::new()
            .name("journal-printer".into())
            .spawn(move || {
                for event in rx {
                    observer(&event);
                }
            })
            .expect("a thread starts");
        Journal {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                secrets,
                cancel,
                state: Mutex::new(State {
                    sink,
                    good_len,
                    queue: Some(tx),
                    failure: None,
                    failure_taken: false,
                }),
                printer: Mutex::new(Some(printer)),
            }),
        }
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The run's secrets, as the journal redacts them.
    pub fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    /// Append the event (redacted; on disk before returning) and queue it for the
    /// observer. The file and the observer see the same order; the observer never
    /// sees an event that is not in the file.
    pub fn emit(&self, event: Event) {
        let json = self
            .inner
            .secrets
            .redact_value(&event.to_json(&now_rfc3339()));
        let mut line = serde_json::to_vec(&json).expect("events serialize");
        line.push(b'\n');
        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.failure.is_some() {
            return;
        }
        // One write(2) per line on an O_APPEND file: a reader never sees half a line
        // from us, even if the process dies right after.
        let error = match state.sink.write_once(&line) {
            Ok(n) if n == line.len() => None,
            Ok(n) => Some(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write ({n} of {} bytes)", line.len()),
            )),
            Err(e) => Some(e),
        };
        match error {
            None => {
                state.good_len += line.len() as u64;
                if let Some(q) = &state.queue {
                    // The printer thread is gone only if the observer panicked.
                    let _ = q.send(json);
                }
            }
            Some(e) => {
                // Cut off whatever part of the line got in; the file ends with its
                // last complete line.
                let good = state.good_len;
                let _ = state.sink.truncate(good);
                tracing::error!(path = %self.inner.path.display(), error = %e, "journal write failed; stopping the run");
                state.failure = Some(e);
                drop(state);
                self.inner.cancel.cancel();
            }
        }
    }

    /// The write error that stopped the journal, if any, described (the journal's path
    /// is [`Journal::path`]).
    pub fn failure(&self) -> Option<String> {
        let state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        state.failure.as_ref().map(|e| e.to_string())
    }

    /// The first write error, if any, once (a full disk must not pass silently).
    pub fn take_error(&self) -> Option<std::io::Error> {
        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.failure_taken {
            return None;
        }
        let e = state.failure.as_ref()?;
        let copy = std::io::Error::new(e.kind(), e.to_string());
        state.failure_taken = true;
        Some(copy)
    }

    /// Make sure everything is on disk.
    pub fn sync(&self) {
        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        state.sink.sync();
    }

    /// Stop feeding the observer and wait until it has seen every queued event. Later
    /// events are still written to the file, but not shown.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl Inner {
    fn close(&self) {
        let queue = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queue
            .take();
        drop(queue);
        let printer = self
            .printer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = printer {
            let _ = p.join();
        }
    }
}

impl Drop for Inner {
    // The last clone gone: the observer still gets everything queued.
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> (Observer, Arc<Mutex<Vec<Value>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        (
            Arc::new(move |v: &Value| seen2.lock().unwrap().push(v.clone())),
            seen,
        )
    }

    fn lines_of(text: &str) -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_are_valid_json_in_order_and_match_the_observer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (observer, seen) = recorder();
        let j = Journal::open(&path, observer, Secrets::default(), Default::default()).unwrap();
        j.emit(Event::new("run_started").with("run_id", "r1"));
        j.emit(
            Event::new("iteration_ok")
                .account(3)
                .with("step", 1)
                .with("iteration", 2),
        );
        j.close();
        let lines = lines_of(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(lines, *seen.lock().unwrap());
        assert_eq!(lines[0]["event"], "run_started");
        assert_eq!(lines[1]["account"], 3);
        assert_eq!(lines[1]["iteration"], 2);
        let ts = lines[0]["ts"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok(),
            "{ts}"
        );
        assert_eq!(ts.len(), "2026-01-01T00:00:00.000Z".len());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn every_string_of_every_event_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (observer, seen) = recorder();
        let secrets = Secrets::new(["Key7 zz@q"]);
        let j = Journal::open(&path, observer, secrets, Default::default()).unwrap();
        j.emit(
            Event::new("iteration_failed")
                .with("error", "not in the current url http://h/?k=Key7%20zz@q")
                .with(
                    "argv",
                    vec!["batch-cli", "--base-url", "http://u:Key7+zz%40q@h"],
                ),
        );
        j.close();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("zz"), "{text}");
        let line = &lines_of(&text)[0];
        assert_eq!(line["error"], "not in the current url http://h/?k=***");
        assert_eq!(line["argv"][2], "http://u:***@h");
        assert_eq!(seen.lock().unwrap()[0], *line);
    }

    #[test]
    fn a_stalled_observer_never_stalls_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (release, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let (inner, seen) = recorder();
        let observer: Observer = Arc::new(move |v: &Value| {
            // Blocks on the first event until the test lets it go: a stuck terminal.
            if v["n"] == 0 {
                let _ = gate.lock().unwrap().recv();
            }
            inner(v);
        });
        let j = Journal::open(&path, observer, Secrets::default(), Default::default()).unwrap();
        for n in 0..200 {
            j.emit(Event::new("tick").with("n", n));
        }
        // All on disk while the observer is still stuck on the first one.
        assert_eq!(
            lines_of(&std::fs::read_to_string(&path).unwrap()).len(),
            200
        );
        assert!(seen.lock().unwrap().is_empty());
        release.send(()).unwrap();
        j.close();
        assert_eq!(
            *seen.lock().unwrap(),
            lines_of(&std::fs::read_to_string(&path).unwrap()),
            "same objects, same order"
        );
    }

    /// A sink that takes `budget` bytes, then writes part of a line (`short`) or
    /// fails (`!short`) — a disk filling up.
    struct Filling {
        buf: Arc<Mutex<Vec<u8>>>,
        budget: usize,
        short: bool,
    }

    impl Sink for Filling {
        fn write_once(&mut self, line: &[u8]) -> std::io::Result<usize> {
            let mut buf = self.buf.lock().unwrap();
            let room = self.budget.saturating_sub(buf.len());
            if line.len() <= room {
                buf.extend_from_slice(line);
                return Ok(line.len());
            }
            if self.short && room > 0 {
                buf.extend_from_slice(&line[..room]);
                return Ok(room);
            }
            Err(std::io::Error::from_raw_os_error(28))
        }

        fn truncate(&mut self, len: u64) -> std::io::Result<()> {
            self.buf.lock().unwrap().truncate(len as usize);
            Ok(())
        }

        fn sync(&mut self) {}
    }

    #[test]
    fn a_failed_write_stops_the_run_and_leaves_only_whole_lines() {
        for short in [true, false] {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let sink = Filling {
                buf: buf.clone(),
                budget: 150,
                short,
            };
            let (observer, seen) = recorder();
            let cancel = CancellationToken::new();
            let j = Journal::with_sink(
                Path::new("/runs/r/events.jsonl"),
                Box::new(sink),
                0,
                observer,
                Secrets::default(),
                cancel.clone(),
            );
            for n in 0..10 {
                j.emit(Event::new("tick").account(1).with("n", n));
            }
            j.close();
            let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
            assert!(text.ends_with('\n'), "short={short}: {text:?}");
            let lines = lines_of(&text);
            assert!(!lines.is_empty() && lines.len() < 10, "short={short}");
            assert_eq!(
                *seen.lock().unwrap(),
                lines,
                "nothing shown that is not on disk"
            );
            assert!(cancel.is_cancelled(), "the run is stopped");
            let failure = j.failure().expect("the failure is known");
            if short {
                assert!(failure.contains("short write"), "{failure}");
            } else {
                assert!(failure.contains("No space left"), "{failure}");
            }
            assert_eq!(j.path(), Path::new("/runs/r/events.jsonl"));
            assert!(j.take_error().is_some());
            assert!(j.take_error().is_none(), "taken once");
            assert!(j.failure().is_some(), "still known after take_error");
        }
    }

    #[test]
    fn a_journal_failure_is_exit_3_naming_the_path() {
        let e = crate::runner::RunError::Journal {
            path: "/runs/r/events.jsonl".into(),
            reason: "No space left on device (os error 28)".into(),
        };
        assert_eq!(e.exit_code(), 3);
        assert_eq!(
            e.to_string(),
            "/runs/r/events.jsonl: the journal could not be written (No space left on device \
             (os error 28)); the run was stopped"
        );
    }
}
