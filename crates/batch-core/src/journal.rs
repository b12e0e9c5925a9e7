//! The journal: `events.jsonl`, one JSON object per line, appended and flushed as
//! things happen, and the same objects handed to an [`Observer`] in the same order.
//!
//! Events are one typed enum, [`Event`], whose serde form is the wire format (tagged
//! by `event`, the SPEC's field names); [`read`] reads a journal back, tolerating a
//! torn last line, and [`crate::report::Report::from_events`] folds it into the
//! report. Every string of every event is passed through the run's [`Secrets`] before
//! it is written, as a last line of defence: callers should still pass templated
//! values in their redacted form. This module does not decide what a run means —
//! that is the report's fold — and does not print.
//!
//! Three guarantees shape this module:
//! - The journal never lies. Each line is written with one `write(2)` on an
//!   `O_APPEND` file; a failed or short write truncates the file back to its last
//!   complete line, stops the journal (nothing later is written or shown) and cancels
//!   the run. [`Journal::failure`] then tells the runner.
//! - A boundary is durable before it is shown. Iteration outcomes, `account_done`
//!   and `run_finished` ([`Event::is_boundary`]) are fsynced before `emit` returns and
//!   before the observer gets them, so neither the terminal nor `--json` ever shows a
//!   finished iteration that a power cut could take back, and `--resume` never redoes
//!   one it was told is done.
//! - A slow terminal never slows the run. The file is written under the lock, but the
//!   observer (the terminal) is fed through an unbounded queue by one printer thread,
//!   in the file's order; the lock is never held while printing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::Secrets;

/// One journal line's event: the enum is the wire format. Serialized internally
/// tagged by `event` (snake_case names), each variant's fields in the order written;
/// [`Journal::emit`] puts `ts` in front. Field names are the SPEC's and fixed across
/// the code base (`account`, `step`, `iteration`, `attempt`, `port`, `pid`, `profile`,
/// `error`, `kind`).
///
/// Reading is lenient where the future may add things: an event name this version
/// does not know is [`Event::Other`]; fields it does not know are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run (or one resumed part of it) starts; carries the whole plan, which is
    /// what `--resume` rebuilds the run from.
    RunStarted(RunStarted),
    /// What a killed runner left and this run reaped.
    Reaped {
        /// Pids killed.
        processes: Vec<u32>,
        /// Browser records handled.
        browsers: usize,
        /// `exec` records handled (programs that were running when the runner died).
        #[serde(default)]
        execs: usize,
        /// Ephemeral profiles removed.
        ephemeral_profiles: usize,
        /// Private temp dirs of the dead runner's browsers removed (what its Chromes
        /// left in their `TMPDIR`).
        #[serde(default)]
        temp_dirs: usize,
    },
    /// A resumed run found the journal's last line torn (the machine went down
    /// mid-write) and cut it off before appending.
    JournalRepaired {
        /// Bytes dropped.
        dropped_bytes: u64,
    },
    /// One pass of the memory sampler.
    MemorySample {
        /// System (cgroup-aware) available memory; `None`: unknown.
        available_bytes: Option<u64>,
        /// Sum of all browsers' PSS.
        browsers_pss_bytes: u64,
        /// The learned per-browser cost.
        browser_cost_bytes: u64,
        /// Per browser, keyed `<account>.<launch>`.
        browsers: BTreeMap<String, u64>,
    },
    /// A browser creation has to wait; why, with the figures of that reason.
    AdmissionWait {
        /// The account.
        account: u64,
        /// `memory`, `cpu`, `pacing` or `cap`.
        reason: String,
        /// Creations in flight.
        in_flight: usize,
        /// memory: available bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        available_bytes: Option<u64>,
        /// memory: what must be available.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        needed_bytes: Option<u64>,
        /// memory: the reserve.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threshold_bytes: Option<u64>,
        /// memory: one browser's expected cost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        browser_cost_bytes: Option<u64>,
        /// memory: what the live browsers are still expected to grow by.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        growth_bytes: Option<u64>,
        /// cpu: pressure 0..=1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pressure: Option<f64>,
        /// cpu, pacing: the pacer's limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
        /// cap: seats taken.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seats: Option<usize>,
    },
    /// A browser creation was admitted.
    Admitted {
        /// The account.
        account: u64,
        /// Total wait.
        waited_ms: u64,
        /// The reason waited for longest, if any.
        reason: Option<String>,
        /// Wait per reason.
        waits_ms: BTreeMap<String, u64>,
        /// Creations in flight.
        in_flight: usize,
        /// The creation limit, if any.
        limit: Option<usize>,
    },
    /// The adaptive pacer changed its limit.
    Pacing {
        /// `grew` or `shrank`.
        change: String,
        /// The new limit.
        limit: usize,
        /// The launch that taught it.
        latency_ms: u64,
        /// Creations overlapping that launch.
        overlap: usize,
        /// Whether that launch succeeded.
        ok: bool,
    },
    /// The SPEC's lock line.
    LaunchLockAcquired {
        /// The account.
        account: u64,
    },
    /// A verified browser is up.
    BrowserCreated {
        /// The account.
        account: u64,
        /// Chromium's pid (`None` for a remote browser: it runs on a Grid node).
        pid: Option<u32>,
        /// The DevTools port (`None` for a remote browser).
        port: Option<u16>,
        /// ChromeDriver's port (`None` for a remote browser).
        driver_port: Option<u16>,
        /// ChromeDriver's pid (`None` for a remote browser).
        driver_pid: Option<u32>,
        /// The WebDriver session.
        session_id: String,
        /// The user-data directory, absolute (`None` for a remote browser).
        profile: Option<String>,
        /// The Chromium binary (`None` for a remote browser): the full browser or
        /// `chromium-headless-shell`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chromium: Option<String>,
        /// The Grid node the session landed on, when the endpoint says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        /// Launch number within the account (1, 2, …).
        launch: u32,
        /// The user agent it was given (`[browser]` or the account's), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_agent: Option<String>,
        /// The languages it was given, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accept_language: Option<String>,
        /// The time zone it was given, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
        /// Its window size, `"WxH"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window_size: Option<String>,
        /// How long the launch took.
        launch_ms: u64,
        /// How long admission waited before it.
        admission_wait_ms: u64,
    },
    /// The SPEC's lock line.
    LaunchLockReleased {
        /// The account.
        account: u64,
    },
    /// A launch failed.
    LaunchFailed {
        /// The account.
        account: u64,
        /// Why (redacted).
        error: String,
    },
    /// A successor browser is being started before the current one retires.
    LaunchAhead {
        /// The account.
        account: u64,
        /// Its launch number.
        launch: u32,
    },
    /// A loopback forwarder was started for an account's proxy with credentials,
    /// before the browser it serves (the upstream is shown without them).
    ProxyForwarder {
        /// The account.
        account: u64,
        /// Where the forwarder listens (what Chromium's `--proxy-server` names).
        listen: String,
        /// The upstream proxy, credentials removed.
        upstream: String,
    },
    /// An account's forwarder could not reach its upstream proxy and went on through
    /// the next of the account's list (both shown without credentials).
    ProxyFailover {
        /// The account.
        account: u64,
        /// The proxy left.
        from: String,
        /// The proxy used from now on.
        to: String,
    },
    /// A remote run's Grid capacity (the default cap): at the start, then whenever
    /// its UP nodes' slots change.
    GridCapacity {
        /// Nodes the hub reported UP.
        nodes: usize,
        /// Their slots, summed.
        slots: usize,
    },
    /// The account's storage state (cookies + localStorage) was saved after a step.
    /// Only counts: the values are secrets.
    StorageSaved {
        /// The account.
        account: u64,
        /// The step that ended.
        step: u32,
        /// Cookies saved.
        cookies: usize,
        /// Origins whose localStorage was saved.
        origins: usize,
    },
    /// Saving the storage state failed (the next browser logs in again).
    StorageSaveFailed {
        /// The account.
        account: u64,
        /// The step that ended.
        step: u32,
        /// Why.
        error: String,
    },
    /// A fresh browser got the account's saved storage state.
    StorageRestored {
        /// The account.
        account: u64,
        /// Cookies restored.
        cookies: usize,
        /// Origins whose localStorage was restored.
        origins: usize,
    },
    /// Restoring the storage state failed (`before` still runs and can log in).
    StorageRestoreFailed {
        /// The account.
        account: u64,
        /// Why.
        error: String,
    },
    /// A healthy browser retired by the pool.
    BrowserRetired {
        /// The account.
        account: u64,
        /// Chromium's pid (`None` for a remote browser).
        pid: Option<u32>,
        /// `iterations` or `memory`.
        reason: String,
        /// Iterations it served.
        iterations: u64,
        /// Its last PSS.
        pss_bytes: Option<u64>,
    },
    /// A browser (or its driver) was lost and is being replaced.
    BrowserCrashed {
        /// The account.
        account: u64,
        /// Chromium's pid (`None` for a remote browser).
        pid: Option<u32>,
        /// The Grid node it ran on, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        /// The failure kind.
        kind: String,
        /// The error that revealed it.
        error: String,
    },
    /// A value recorded by `extract` or `script … into` (redacted), journaled as soon
    /// as it is recorded so that a killed run keeps it.
    ValueRecorded {
        /// The account.
        account: u64,
        /// The step.
        step: u32,
        /// The iteration (0 in `before`/`after`).
        iteration: u32,
        /// The `into` name.
        name: String,
        /// The value.
        value: Value,
    },
    /// An `optional` action whose element (or download) did not come within its
    /// timeout, skipped: the attempt went on with the next action.
    ActionSkipped {
        /// The account.
        account: u64,
        /// The step.
        step: u32,
        /// The iteration (0 in `before`/`after`).
        iteration: u32,
        /// The action's line in the workflow file.
        line: usize,
        /// The action's name (`click`, …).
        action: String,
    },
    /// The screenshot taken at a failed attempt.
    FailureScreenshot {
        /// The account.
        account: u64,
        /// The step.
        step: u32,
        /// The iteration.
        iteration: u32,
        /// The attempt (1-based).
        attempt: u32,
        /// The PNG, absolute.
        path: String,
        /// The page's URL (redacted), if the page could say.
        url: Option<String>,
        /// The page's title (redacted), if the page could say.
        title: Option<String>,
    },
    /// An iteration succeeded (a boundary: on disk, fsynced, before anyone sees it).
    IterationOk {
        /// The account.
        account: u64,
        /// The step.
        step: u32,
        /// The iteration.
        iteration: u32,
        /// The attempt that succeeded.
        attempt: u32,
    },
    /// An attempt failed and will be retried.
    Retry {
        /// The account.
        account: u64,
        /// The step.
        step: u32,
        /// The iteration.
        iteration: u32,
        /// The attempt about to start.
        attempt: u32,
        /// The failure kind.
        kind: String,
        /// The error (redacted).
        error: String,
        /// The pause before it.
        backoff_ms: u64,
    },
    /// An iteration failed after all its attempts (a boundary).
    IterationFailed {
        /// The account.
        account: u64,
        /// The step.
        step: u32,
        /// The iteration.
        iteration: u32,
        /// Attempts made (0: not attempted, `before` had already failed for good).
        attempts: u32,
        /// The failure kind.
        kind: String,
        /// The error (redacted).
        error: String,
        /// The page's URL at the failure (redacted), if the page could say.
        #[serde(default)]
        url: Option<String>,
        /// The page's title at the failure (redacted), if the page could say.
        #[serde(default)]
        title: Option<String>,
        /// The failure screenshot of the last attempt, absolute, if one was taken.
        #[serde(default)]
        screenshot: Option<String>,
    },
    /// A step's `after` failed.
    AfterFailed {
        /// The account.
        account: u64,
        /// The step.
        step: u32,
        /// The failure kind.
        kind: String,
        /// The error (redacted).
        error: String,
    },
    /// An account is finished for this part of the run (a boundary). The counts are
    /// this part's; the report's are the fold over the whole journal.
    AccountDone {
        /// The account.
        account: u64,
        /// `ok`, `failed`, `quarantined`, `interrupted` or `error`.
        status: String,
        /// Iterations that succeeded.
        #[serde(default)]
        iterations_ok: u64,
        /// Iterations that failed.
        #[serde(default)]
        iterations_failed: u64,
        /// Browsers started.
        #[serde(default)]
        browser_launches: u64,
        /// Retries made.
        #[serde(default)]
        retries: u64,
        /// Why it could not run (`error` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The account's health score reached `[health] max_score` (or the page showed
    /// the named challenge): it is set aside until `until` instead of being retried;
    /// its remaining iterations do not run (see `crate::health`).
    AccountQuarantined {
        /// The account.
        account: u64,
        /// Why (the last failure, or the challenge found; redacted).
        reason: String,
        /// Its score.
        score: u32,
        /// Until when (RFC 3339 UTC).
        until: String,
        /// The cool-down's length.
        cooldown_ms: u64,
    },
    /// The account was still cooling at the start of this run (or part): it was not
    /// run (`--include-quarantined` runs it).
    QuarantineSkipped {
        /// The account.
        account: u64,
        /// Why it was quarantined.
        reason: String,
        /// Its score.
        score: u32,
        /// Until when (RFC 3339 UTC).
        until: String,
    },
    /// The run (or this resumed part) ended (a boundary). Totals cover the whole run.
    RunFinished {
        /// The process exit code.
        exit_code: i32,
        /// Whether Ctrl-C / SIGTERM / SIGHUP ended it.
        interrupted: bool,
        /// Iterations that succeeded.
        iterations_ok: u64,
        /// Iterations that failed.
        iterations_failed: u64,
        /// Browsers started.
        browser_launches: u64,
        /// Retries made.
        retries: u64,
        /// The runner's own peak RSS.
        runner_peak_rss_bytes: Option<u64>,
    },
    /// An event this version does not know (written by a newer one): kept out of
    /// the fold, never written.
    #[serde(other)]
    Other,
}

/// The plan as `run_started` records it: everything `--resume` needs to run the
/// rest of the same run without the original command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStarted {
    /// The run directory's name.
    pub run_id: String,
    /// The run directory, absolute.
    pub run_dir: String,
    /// `single` or `run`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Accounts, in plan order (after `--shard`).
    pub accounts: Vec<u64>,
    /// Steps, in order.
    pub steps: Vec<u32>,
    /// Iterations per step and account.
    pub quantity: u32,
    /// All accounts at once.
    pub concurrent: bool,
    /// The cap, if any.
    pub max_concurrent: Option<usize>,
    /// Creations through the creation lock.
    pub launch_lock: bool,
    /// `auto` or `<n>ms`.
    pub launch_interval: String,
    /// The fixed interval in ms (`None`: auto).
    pub launch_interval_ms: Option<u64>,
    /// Attempts beyond the first.
    pub retries: u32,
    /// Headed browsers.
    #[serde(default)]
    pub headed: bool,
    /// The workflow's base URL as run (redacted: credentials show as `***`).
    #[serde(default)]
    pub base_url: String,
    /// `batch.toml`, absolute.
    #[serde(default)]
    pub config: String,
    /// The memory reserve, bytes.
    #[serde(default)]
    pub min_available_memory_bytes: Option<u64>,
    /// Whether this is a resumed part (`--resume`) of an earlier run.
    #[serde(default)]
    pub resumed: bool,
    /// Where browsers come from: `None` = started here; else the remote WebDriver
    /// endpoint (credentials redacted).
    #[serde(default)]
    pub webdriver_url: Option<String>,
    /// Whether each account's storage state travels between browsers.
    #[serde(default)]
    pub storage_state: bool,
    /// The command line (redacted).
    pub argv: Vec<String>,
}

fn default_mode() -> String {
    "run".into()
}

impl Event {
    /// The event's `event` name, as on the wire.
    pub fn name(&self) -> String {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or("other")
                .to_string(),
            _ => "other".into(),
        }
    }

    /// The account it concerns, if any.
    pub fn account(&self) -> Option<u64> {
        use Event::*;
        match self {
            AdmissionWait { account, .. }
            | Admitted { account, .. }
            | LaunchLockAcquired { account }
            | BrowserCreated { account, .. }
            | LaunchLockReleased { account }
            | LaunchFailed { account, .. }
            | LaunchAhead { account, .. }
            | BrowserRetired { account, .. }
            | ProxyForwarder { account, .. }
            | ProxyFailover { account, .. }
            | StorageSaved { account, .. }
            | StorageSaveFailed { account, .. }
            | StorageRestored { account, .. }
            | StorageRestoreFailed { account, .. }
            | BrowserCrashed { account, .. }
            | ValueRecorded { account, .. }
            | FailureScreenshot { account, .. }
            | ActionSkipped { account, .. }
            | IterationOk { account, .. }
            | Retry { account, .. }
            | IterationFailed { account, .. }
            | AfterFailed { account, .. }
            | AccountQuarantined { account, .. }
            | QuarantineSkipped { account, .. }
            | AccountDone { account, .. } => Some(*account),
            RunStarted(_)
            | Reaped { .. }
            | JournalRepaired { .. }
            | GridCapacity { .. }
            | MemorySample { .. }
            | Pacing { .. }
            | RunFinished { .. }
            | Other => None,
        }
    }

    /// A fact the user counts on surviving a crash: fsynced before `emit` returns and
    /// before the observer (terminal, `--json`) sees it.
    pub fn is_boundary(&self) -> bool {
        matches!(
            self,
            Event::IterationOk { .. }
                | Event::IterationFailed { .. }
                | Event::AccountDone { .. }
                | Event::RunFinished { .. }
        )
    }

    /// The JSON object of the line, `ts` first.
    pub fn to_json(&self, ts: &str) -> Value {
        let mut m = Map::new();
        m.insert("ts".into(), ts.into());
        if let Ok(Value::Object(fields)) = serde_json::to_value(self) {
            m.extend(fields);
        }
        Value::Object(m)
    }
}

/// One line read back: its time and its event.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `ts`, RFC 3339.
    pub ts: String,
    /// The event.
    pub event: Event,
}

/// A journal read back by [`read`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Read {
    /// Every complete line, in file order.
    pub records: Vec<Record>,
    /// The last line was cut short (the process or the machine died mid-write):
    /// how many bytes it had. Those bytes were ignored.
    pub torn: Option<u64>,
    /// Length of the file up to its last complete line.
    pub good_len: u64,
}

/// Why a journal could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The journal.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A complete line (not the last) is not an event.
    #[error("{path}:{line}: not a journal event ({reason})")]
    Corrupt {
        /// The journal.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What the parser said.
        reason: String,
    },
}

/// Read a journal back. A torn last line (no newline, or not valid JSON because it
/// is cut short) is tolerated and reported in [`Read::torn`]; any other bad line is
/// an error naming it.
pub fn read(path: &Path) -> Result<Read, ReadError> {
    let bytes = std::fs::read(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &bytes)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Read, ReadError> {
    let mut out = Read::default();
    let mut rest = bytes;
    let mut n = 0;
    while !rest.is_empty() {
        n += 1;
        let (line, complete) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], true),
            None => (rest, false),
        };
        rest = if complete {
            &rest[line.len() + 1..]
        } else {
            &[]
        };
        if !complete {
            // Our writer ends every line with its newline in the same write(2): a
            // line without one was cut short, whatever it looks like.
            out.torn = Some(line.len() as u64);
            break;
        }
        out.good_len += line.len() as u64 + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let corrupt = |reason: String| ReadError::Corrupt {
            path: path.to_path_buf(),
            line: n,
            reason,
        };
        let mut v: Value = serde_json::from_slice(line).map_err(|e| corrupt(e.to_string()))?;
        let ts = match v.as_object_mut().and_then(|m| m.remove("ts")) {
            Some(Value::String(ts)) => ts,
            _ => return Err(corrupt("no `ts`".into())),
        };
        let event: Event = serde_json::from_value(v).map_err(|e| corrupt(e.to_string()))?;
        out.records.push(Record { ts, event });
    }
    Ok(out)
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
    /// A handle that makes everything written so far durable, usable while other
    /// lines are being written (group commit: the fsync runs outside the write lock).
    fn syncer(&self) -> Syncer;
}

/// Makes the journal's written lines durable (`fdatasync` on its own descriptor).
pub(crate) type Syncer = Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>;

impl Sink for std::fs::File {
    fn write_once(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.write(line)
    }

    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }

    fn syncer(&self) -> Syncer {
        match self.try_clone() {
            Ok(file) => Arc::new(move || file.sync_data()),
            Err(e) => {
                let (kind, text) = (e.kind(), e.to_string());
                Arc::new(move || Err(std::io::Error::new(kind, text.clone())))
            }
        }
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
    /// One fsync at a time; whoever holds it syncs every line written so far, so
    /// boundaries written meanwhile by other accounts share the next one.
    sync_turn: Mutex<()>,
    syncer: Syncer,
    printer: Mutex<Option<JoinHandle<()>>>,
    /// Bytes of a torn last line cut off when the file was opened.
    repaired: Option<u64>,
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
    /// Lines written.
    written: u64,
    /// Lines known durable (fsynced).
    durable: u64,
    /// Written but not yet shown: `(line number, object, boundary)`. A boundary is
    /// shown once durable, and nothing after it before it (file order).
    held: std::collections::VecDeque<(u64, Value, bool)>,
}

impl State {
    /// Hand the observer everything it may see now.
    fn release(&mut self) {
        while let Some((seq, _, boundary)) = self.held.front() {
            if *boundary && *seq > self.durable {
                break;
            }
            let (_, json, _) = self.held.pop_front().expect("just seen");
            if let Some(q) = &self.queue {
                // The printer thread is gone only if the observer panicked.
                let _ = q.send(json);
            }
        }
    }
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
    /// redacted with `secrets`; a failed write cancels `cancel`. A torn last line
    /// (a runner died mid-write) is cut off first, so that the next line does not
    /// glue onto it; [`Journal::repaired`] says how many bytes went.
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
        let good = if len == 0 {
            0
        } else {
            let bytes = std::fs::read(path)?;
            bytes
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i as u64 + 1)
        };
        if good < len {
            file.set_len(good)?;
            file.sync_data()?;
        }
        let mut journal = Journal::with_sink(path, Box::new(file), good, observer, secrets, cancel);
        if good < len {
            Arc::get_mut(&mut journal.inner)
                .expect("not shared yet")
                .repaired = Some(len - good);
        }
        Ok(journal)
    }

    /// Bytes of a torn last line cut off when the file was opened, if any.
    pub fn repaired(&self) -> Option<u64> {
        self.inner.repaired
    }

    pub(crate) fn with_sink(
        path: &Path,
        sink: Box<dyn Sink>,
        good_len: u64,
        observer: Observer,
        secrets: Secrets,
        cancel: CancellationToken,
    ) -> Self {
        let syncer = sink.syncer();
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
                    written: 0,
                    durable: 0,
                    held: Default::default(),
                }),
                sync_turn: Mutex::new(()),
                syncer,
                printer: Mutex::new(Some(printer)),
                repaired: None,
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

    /// Append the event (redacted; written before returning, and fsynced if it is a
    /// [boundary](Event::is_boundary)) and queue it for the observer. The file and
    /// the observer see the same order; the observer never sees an event that is not
    /// in the file.
    pub fn emit(&self, event: Event) {
        let boundary = event.is_boundary();
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
                state.written += 1;
                let seq = state.written;
                state.held.push_back((seq, json, boundary));
                state.release();
                drop(state);
                // The boundary reaches the disk before anyone is told of it, and
                // before `emit` returns.
                if boundary {
                    self.sync_to(seq);
                }
            }
            Some(e) => {
                // Cut off whatever part of the line got in; the file ends with its
                // last complete line.
                let good = state.good_len;
                let _ = state.sink.truncate(good);
                drop(state);
                self.fail(e);
            }
        }
    }

    /// Stop the journal: nothing more is written or shown, the run is cancelled.
    fn fail(&self, e: std::io::Error) {
        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.failure.is_some() {
            return;
        }
        tracing::error!(path = %self.inner.path.display(), error = %e, "journal write failed; stopping the run");
        state.failure = Some(e);
        state.held.clear();
        drop(state);
        self.inner.cancel.cancel();
    }

    /// Make lines up to `seq` durable (group commit: one fsync covers every line
    /// written when it starts), then show what may be shown.
    fn sync_to(&self, seq: u64) {
        let _turn = self
            .inner
            .sync_turn
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let target = {
            let state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.durable >= seq || state.failure.is_some() {
                return;
            }
            state.written
        };
        // Outside the write lock: other accounts keep writing meanwhile.
        match (self.inner.syncer)() {
            Ok(()) => {
                let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
                state.durable = state.durable.max(target);
                state.release();
            }
            Err(e) => self.fail(e),
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
        let written = self
            .inner
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .written;
        self.sync_to(written);
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

    pub(crate) fn started(run_id: &str) -> RunStarted {
        RunStarted {
            run_id: run_id.into(),
            run_dir: format!("/runs/{run_id}"),
            mode: "single".into(),
            accounts: vec![1, 2],
            steps: vec![1],
            quantity: 2,
            concurrent: true,
            max_concurrent: None,
            launch_lock: true,
            launch_interval: "auto".into(),
            launch_interval_ms: None,
            retries: 2,
            headed: false,
            base_url: "http://127.0.0.1:9".into(),
            config: "/p/batch.toml".into(),
            min_available_memory_bytes: None,
            resumed: false,
            webdriver_url: None,
            storage_state: false,
            argv: vec![],
        }
    }

    fn tick(n: u32) -> Event {
        Event::LaunchAhead {
            account: 1,
            launch: n,
        }
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
        j.emit(Event::RunStarted(started("r1")));
        j.emit(Event::IterationOk {
            account: 3,
            step: 1,
            iteration: 2,
            attempt: 1,
        });
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
        j.emit(Event::LaunchFailed {
            account: 1,
            error: "not in the current url http://h/?k=Key7%20zz@q".into(),
        });
        let mut plan = started("r1");
        plan.argv = vec![
            "batch-cli".into(),
            "--base-url".into(),
            "http://u:Key7+zz%40q@h".into(),
        ];
        j.emit(Event::RunStarted(plan));
        j.close();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("zz"), "{text}");
        let lines = lines_of(&text);
        assert_eq!(lines[0]["error"], "not in the current url http://h/?k=***");
        assert_eq!(lines[1]["argv"][2], "http://u:***@h");
        assert_eq!(*seen.lock().unwrap(), lines);
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
            if v["launch"] == 0 {
                let _ = gate.lock().unwrap().recv();
            }
            inner(v);
        });
        let j = Journal::open(&path, observer, Secrets::default(), Default::default()).unwrap();
        for n in 0..200 {
            j.emit(tick(n));
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

        fn syncer(&self) -> Syncer {
            Arc::new(|| Ok(()))
        }
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
                j.emit(tick(n));
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

    #[test]
    fn every_event_round_trips_through_its_wire_form() {
        let events = vec![
            Event::RunStarted(started("r")),
            Event::IterationFailed {
                account: 2,
                step: 1,
                iteration: 3,
                attempts: 3,
                kind: "action_failed".into(),
                error: "e".into(),
                url: Some("http://h/x".into()),
                title: Some("T".into()),
                screenshot: Some("/runs/r/screenshots/2/f.png".into()),
            },
            Event::ValueRecorded {
                account: 2,
                step: 1,
                iteration: 0,
                name: "welcome".into(),
                value: serde_json::json!({"a": [1, "b"]}),
            },
            Event::ActionSkipped {
                account: 2,
                step: 1,
                iteration: 3,
                line: 12,
                action: "click".into(),
            },
            Event::Admitted {
                account: 1,
                waited_ms: 0,
                reason: None,
                waits_ms: BTreeMap::new(),
                in_flight: 0,
                limit: Some(2),
            },
        ];
        let text: String = events
            .iter()
            .map(|e| format!("{}\n", e.to_json("2026-01-01T00:00:00.000Z")))
            .collect();
        let read = parse(Path::new("j"), text.as_bytes()).unwrap();
        let back: Vec<Event> = read.records.into_iter().map(|r| r.event).collect();
        assert_eq!(back, events);
        // The SPEC's names on the wire, `ts` first.
        let line = events[1].to_json("T");
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            &keys[..6],
            ["ts", "event", "account", "step", "iteration", "attempts"]
        );
        assert_eq!(line["event"], "iteration_failed");
        assert_eq!(events[1].name(), "iteration_failed");
        assert_eq!(events[1].account(), Some(2));
        assert!(events[1].is_boundary() && !events[2].is_boundary());
    }

    #[test]
    fn the_reader_tolerates_a_torn_last_line_and_names_a_bad_one() {
        let good = Event::RunStarted(started("r")).to_json("t").to_string();
        let unknown = r#"{"ts":"t","event":"from_the_future","x":1}"#;
        for (text, records, torn) in [
            (format!("{good}\n"), 1, None),
            (format!("{good}\n{}", &good[..20]), 1, Some(20)),
            // Whole-looking but without its newline: still torn (we write both at once).
            (format!("{good}\n{good}"), 1, Some(good.len() as u64)),
            (format!("{good}\n{unknown}\n"), 2, None),
            (String::new(), 0, None),
        ] {
            let read = parse(Path::new("j"), text.as_bytes()).unwrap();
            assert_eq!(read.records.len(), records, "{text}");
            assert_eq!(read.torn, torn, "{text}");
        }
        let read = parse(Path::new("j"), format!("{good}\n{unknown}\n").as_bytes()).unwrap();
        assert_eq!(read.records[1].event, Event::Other);
        let e = parse(
            Path::new("/r/events.jsonl"),
            format!("{good}\n{{oops\n{good}\n").as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("/r/events.jsonl:2: not a journal event"),
            "{e}"
        );
    }

    #[test]
    fn opening_a_torn_journal_cuts_the_torn_line_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let good = Event::RunStarted(started("r")).to_json("t").to_string();
        std::fs::write(&path, format!("{good}\n{}", &good[..9])).unwrap();
        let (observer, _) = recorder();
        let j = Journal::open(&path, observer, Secrets::default(), Default::default()).unwrap();
        assert_eq!(j.repaired(), Some(9));
        j.emit(tick(1));
        j.close();
        let read = read(&path).unwrap();
        assert_eq!(read.torn, None);
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.records[1].event, tick(1));
    }

    /// Counts syncs, to see which events are made durable before being shown.
    struct Counting {
        writes: Arc<Mutex<Vec<(u8, bool)>>>,
    }

    impl Sink for Counting {
        fn write_once(&mut self, line: &[u8]) -> std::io::Result<usize> {
            self.writes.lock().unwrap().push((line[0], false));
            Ok(line.len())
        }
        fn truncate(&mut self, _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn syncer(&self) -> Syncer {
            let writes = self.writes.clone();
            Arc::new(move || {
                if let Some(last) = writes.lock().unwrap().last_mut() {
                    last.1 = true;
                }
                Ok(())
            })
        }
    }

    #[test]
    fn boundaries_are_synced_before_the_observer_sees_them() {
        let writes: Arc<Mutex<Vec<(u8, bool)>>> = Arc::new(Mutex::new(Vec::new()));
        let w2 = writes.clone();
        // What the observer saw of the file's state when each event reached it.
        let when_shown = Arc::new(Mutex::new(Vec::new()));
        let shown2 = when_shown.clone();
        let observer: Observer = Arc::new(move |v: &Value| {
            let w = w2.lock().unwrap();
            shown2.lock().unwrap().push((
                v["event"].as_str().unwrap().to_string(),
                w.last().unwrap().1,
            ));
        });
        let j = Journal::with_sink(
            Path::new("j"),
            Box::new(Counting {
                writes: writes.clone(),
            }),
            0,
            observer,
            Secrets::default(),
            Default::default(),
        );
        j.emit(tick(1));
        j.emit(Event::IterationOk {
            account: 1,
            step: 1,
            iteration: 1,
            attempt: 1,
        });
        j.close();
        let synced: Vec<bool> = writes.lock().unwrap().iter().map(|w| w.1).collect();
        assert_eq!(synced, [false, true]);
        let shown = when_shown.lock().unwrap();
        assert_eq!(
            shown[1],
            ("iteration_ok".to_string(), true),
            "durable before shown"
        );
    }

    /// A disk whose fsync is slow, counting fsyncs and what each one covered.
    struct SlowDisk {
        lines: Arc<Mutex<u64>>,
        durable: Arc<Mutex<u64>>,
        syncs: Arc<Mutex<u32>>,
    }

    impl Sink for SlowDisk {
        fn write_once(&mut self, line: &[u8]) -> std::io::Result<usize> {
            *self.lines.lock().unwrap() += 1;
            Ok(line.len())
        }
        fn truncate(&mut self, _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn syncer(&self) -> Syncer {
            let (lines, durable, syncs) =
                (self.lines.clone(), self.durable.clone(), self.syncs.clone());
            Arc::new(move || {
                let covered = *lines.lock().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(200));
                *durable.lock().unwrap() = covered;
                *syncs.lock().unwrap() += 1;
                Ok(())
            })
        }
    }

    #[test]
    fn boundaries_written_together_share_fsyncs_and_are_shown_only_once_durable() {
        let disk = SlowDisk {
            lines: Default::default(),
            durable: Default::default(),
            syncs: Default::default(),
        };
        let (durable, syncs) = (disk.durable.clone(), disk.syncs.clone());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (seen2, durable2) = (seen.clone(), durable.clone());
        // For each event shown: how many lines were durable at that moment.
        let observer: Observer = Arc::new(move |v: &Value| {
            seen2
                .lock()
                .unwrap()
                .push((v["account"].as_u64().unwrap(), *durable2.lock().unwrap()));
        });
        let j = Journal::with_sink(
            Path::new("j"),
            Box::new(disk),
            0,
            observer,
            Secrets::default(),
            Default::default(),
        );
        let start = std::sync::Barrier::new(10);
        std::thread::scope(|s| {
            for account in 0..10 {
                let (j, start) = (j.clone(), &start);
                s.spawn(move || {
                    start.wait();
                    j.emit(Event::IterationOk {
                        account,
                        step: 1,
                        iteration: 1,
                        attempt: 1,
                    });
                });
            }
        });
        j.close();
        let syncs = *syncs.lock().unwrap();
        assert!(syncs < 10, "one fsync per line: no group commit ({syncs})");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 10);
        for (n, (_, durable)) in seen.iter().enumerate() {
            assert!(
                *durable > n as u64,
                "line {} shown before it was durable",
                n + 1
            );
        }
    }
}
