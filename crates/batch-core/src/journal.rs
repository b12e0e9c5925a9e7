//! The journal: `events.jsonl`, one JSON object per line, appended and flushed as
//! things happen, and the same objects handed to an [`Observer`] in the same order.
//!
//! Events are built with [`Event::new`] and fields added with [`Event::with`]; field
//! names are fixed across the code base (`account`, `step`, `iteration`, `attempt`,
//! `port`, `pid`, `profile`, `error`, `kind`). Callers must never put a secret in an
//! event: values from templates are passed in their redacted form.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

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

/// Receives every event, as the JSON object written to the journal.
pub type Observer = Arc<dyn Fn(&Value) + Send + Sync>;

/// The run's journal; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    file: File,
    path: PathBuf,
    observer: Observer,
    write_error: Option<std::io::Error>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.inner.lock().map(|i| i.path.clone()).ok())
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
    /// Create (or, for a resumed run, append to) `path`, mode 0600.
    pub fn open(path: &Path, observer: Observer) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(Journal {
            inner: Arc::new(Mutex::new(Inner {
                file,
                path: path.to_path_buf(),
                observer,
                write_error: None,
            })),
        })
    }

    /// Append the event (flushed before returning) and show it to the observer. Under
    /// one lock, so the file and the observer see the same order.
    pub fn emit(&self, event: Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let json = event.to_json(&now_rfc3339());
        let mut line = serde_json::to_vec(&json).expect("events serialize");
        line.push(b'\n');
        // One write(2) per line on an O_APPEND file: a reader never sees half a line
        // from us, even if the process dies right after.
        if let Err(e) = inner
            .file
            .write_all(&line)
            .and_then(|()| inner.file.flush())
        {
            inner.write_error.get_or_insert(e);
        }
        (inner.observer)(&json);
    }

    /// The first write error, if any (a full disk must not pass silently).
    pub fn take_error(&self) -> Option<std::io::Error> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_error
            .take()
    }

    /// Make sure everything is on disk.
    pub fn sync(&self) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = inner.file.sync_data();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_valid_json_in_order_and_match_the_observer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let j = Journal::open(
            &path,
            Arc::new(move |v| seen2.lock().unwrap().push(v.clone())),
        )
        .unwrap();
        j.emit(Event::new("run_started").with("run_id", "r1"));
        j.emit(
            Event::new("iteration_ok")
                .account(3)
                .with("step", 1)
                .with("iteration", 2),
        );
        let lines: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
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
}
