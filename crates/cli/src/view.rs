//! The human view: journal events turned into what a person reads. Three forms:
//!
//! - **plain** ([`line`]): one line per event on stdout — when stdout is not a
//!   terminal, with `NO_COLOR` / `--color never`, or with `--quiet`;
//! - **live** ([`Live`]): on a terminal, one bar per account (status, step, iteration
//!   i/Q, retries) plus a total with ETA, redrawn in place by indicatif; every other
//!   line (the spec's lock lines, failures, the summary) is printed *above* the bars
//!   through `MultiProgress::println`, so nothing tears them. More accounts than the
//!   terminal has rows fold into a compact view: only active accounts get a row,
//!   the rest are counted on one line;
//! - `--json`: the journal's objects as they are (done by the caller).
//!
//! Besides, [`LogFiles`] keeps `logs/account-N.log` in the run directory: the plain
//! lines of each account, with their time (the runner appends `exec` output tails to
//! the same file). Secrets never reach here: events carry only redacted text.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

fn s<'a>(e: &'a Value, k: &str) -> &'a str {
    e.get(k).and_then(Value::as_str).unwrap_or("")
}

fn n(e: &Value, k: &str) -> String {
    e.get(k).map(|v| v.to_string()).unwrap_or_default()
}

fn mib(e: &Value, k: &str) -> String {
    e.get(k)
        .and_then(Value::as_u64)
        .map(|b| format!("{} MiB", b / (1024 * 1024)))
        .unwrap_or_else(|| "?".into())
}

/// The line for one event, or `None` for events the human view does not show.
pub(crate) fn line(e: &Value) -> Option<String> {
    let who = e
        .get("account")
        .map(|a| format!("[account {a}] "))
        .unwrap_or_default();
    let text = match s(e, "event") {
        "run_started" => format!("run {} started: {}", s(e, "run_id"), s(e, "run_dir")),
        "reaped" => format!(
            "reaped what a killed run left: {} process(es), {} ephemeral profile(s), {} temp dir(s)",
            e.get("processes")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
            n(e, "ephemeral_profiles"),
            n(e, "temp_dirs")
        ),
        "launch_lock_acquired" => "browser creation lock acquired".into(),
        "browser_created" => "browser created".into(),
        "launch_lock_released" => "browser creation lock released".into(),
        "launch_failed" => format!("browser launch failed: {}", s(e, "error")),
        // Waiting for the creation lock is what the lock lines already show.
        "admission_wait" => match s(e, "reason") {
            "memory" => format!(
                "browser creation waits for memory: {} available, {} needed (reserve {} + {} growth of running browsers + {} per browser starting)",
                mib(e, "available_bytes"),
                mib(e, "needed_bytes"),
                mib(e, "threshold_bytes"),
                mib(e, "growth_bytes"),
                mib(e, "browser_cost_bytes"),
            ),
            "cpu" => format!(
                "browser creation waits: CPU saturated and launches slowing ({} at once)",
                n(e, "limit")
            ),
            "cap" => format!(
                "waiting for a slot: {} account(s) running (--max-concurrent, or the Grid's slots)",
                n(e, "seats")
            ),
            _ => return None,
        },
        "admitted" => match s(e, "reason") {
            "" | "pacing" => return None,
            reason => format!(
                "browser creation admitted after {:.1} s ({reason})",
                e.get("waited_ms").and_then(Value::as_u64).unwrap_or(0) as f64 / 1000.0
            ),
        },
        "proxy_failover" => format!(
            "proxy {} cannot be reached: going on through {}",
            s(e, "from"),
            s(e, "to")
        ),
        "grid_capacity" => format!(
            "Grid: {} slot(s) on {} node(s) UP; accounts beyond them wait here",
            n(e, "slots"),
            n(e, "nodes")
        ),
        "browser_retired" => format!(
            "browser retired ({}) after {} iteration(s): replacing it",
            s(e, "reason"),
            n(e, "iterations")
        ),
        "iteration_ok" => format!("step {} iteration {} ok", n(e, "step"), n(e, "iteration")),
        "iteration_failed" => {
            format!(
                "step {} iteration {} FAILED ({}): {}",
                n(e, "step"),
                n(e, "iteration"),
                s(e, "kind"),
                s(e, "error")
            )
        }
        "browser_crashed" => format!("browser lost ({}): replacing it", s(e, "kind")),
        "retry" => format!(
            "retrying step {} iteration {} (attempt {}) after {}: {}",
            n(e, "step"),
            n(e, "iteration"),
            n(e, "attempt"),
            s(e, "kind"),
            s(e, "error")
        ),
        "after_failed" => format!("after of step {} failed: {}", n(e, "step"), s(e, "error")),
        "account_quarantined" => format!(
            "QUARANTINED until {} (score {}: {}): its other iterations do not run",
            s(e, "until"),
            n(e, "score"),
            s(e, "reason")
        ),
        "quarantine_skipped" => format!(
            "quarantined until {} ({}): skipped; --include-quarantined runs it",
            s(e, "until"),
            s(e, "reason")
        ),
        "account_done" => format!(
            "done: {} — {} ok, {} failed, {} browser launch(es), {} retries",
            s(e, "status"),
            n(e, "iterations_ok"),
            n(e, "iterations_failed"),
            n(e, "browser_launches"),
            n(e, "retries")
        ),
        "run_finished" => format!(
            "run finished (exit {}): {} iterations ok, {} failed, {} browser launches, {} retries",
            n(e, "exit_code"),
            n(e, "iterations_ok"),
            n(e, "iterations_failed"),
            n(e, "browser_launches"),
            n(e, "retries")
        ),
        _ => return None,
    };
    Some(format!("{who}{text}"))
}

/// The bars of the live view, once it exists: log lines and `errln!` go through
/// [`suspend`] so that they are printed above the bars instead of tearing them.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Run `f` (which writes to the terminal) with the bars cleared, then redraw them.
pub(crate) fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match BARS.get() {
        Some(mp) => mp.suspend(f),
        None => f(),
    }
}

/// How the human view looks, decided once from the flags and the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ui {
    /// Bars redrawn in place (else plain lines).
    pub(crate) live: bool,
    /// ANSI colours.
    pub(crate) color: bool,
}

impl Ui {
    /// `--color` and `-q` against the environment: colour on `auto` needs a terminal,
    /// no `NO_COLOR` (any non-empty value) and a `TERM` other than `dumb`; the live
    /// view needs stdout to be a terminal, colour, and no `--quiet`.
    pub(crate) fn decide(
        color: crate::args::ColorChoice,
        quiet: bool,
        stdout_is_tty: bool,
        env: impl Fn(&str) -> Option<String>,
    ) -> Ui {
        use crate::args::ColorChoice;
        let no_color = env("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = env("TERM").is_some_and(|t| t == "dumb");
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stdout_is_tty && !no_color && !dumb,
        };
        Ui {
            live: stdout_is_tty && color && !quiet && !dumb,
            color,
        }
    }
}

/// One account as the live view sees it.
#[derive(Debug, Clone, Default)]
struct AccountState {
    status: &'static str,
    step: Option<u64>,
    /// Iterations finished (ok or failed) in the current step.
    in_step: u64,
    ok: u64,
    failed: u64,
    retries: u64,
}

impl AccountState {
    fn active(&self) -> bool {
        matches!(self.status, "launching" | "running" | "retrying")
    }
    fn done(&self) -> bool {
        self.status.starts_with("done")
    }
}

/// The live view: [`Live::event`] for each journal object, on the journal's printer
/// thread.
pub(crate) struct Live {
    mp: MultiProgress,
    color: bool,
    /// Terminal rows (for the compact view).
    rows: usize,
    quantity: u64,
    steps: u64,
    order: Vec<u64>,
    accounts: BTreeMap<u64, AccountState>,
    /// One bar per row; `shown[i]` is the account on row `i`.
    bars: Vec<ProgressBar>,
    /// The style of a row with an account, and of an empty one (compact view).
    row_style: Option<ProgressStyle>,
    blank_style: Option<ProgressStyle>,
    shown: Vec<Option<u64>>,
    /// "… N more running, M waiting, K done" in the compact view.
    others: Option<ProgressBar>,
    total: Option<ProgressBar>,
}

impl Live {
    /// A live view drawing on stdout, for a terminal of `rows` lines.
    pub(crate) fn new(color: bool, rows: usize) -> Live {
        // The bars' styles follow `--color`, not console's own guess from the
        // environment (`--color always` wins over NO_COLOR).
        console::set_colors_enabled(color);
        Live::with_target(ProgressDrawTarget::stdout(), color, rows)
    }

    fn with_target(target: ProgressDrawTarget, color: bool, rows: usize) -> Live {
        let mp = MultiProgress::with_draw_target(target);
        let _ = BARS.set(mp.clone());
        Live {
            mp,
            color,
            rows: rows.max(6),
            quantity: 1,
            steps: 1,
            order: Vec::new(),
            accounts: BTreeMap::new(),
            bars: Vec::new(),
            row_style: None,
            blank_style: None,
            shown: Vec::new(),
            others: None,
            total: None,
        }
    }

    fn style(&self, template: &str, colored: &str) -> ProgressStyle {
        ProgressStyle::with_template(if self.color { colored } else { template })
            .expect("a valid template")
            .progress_chars("█▌ ")
            // indicatif's own ETA says "0s" before anything is done: say "?" instead.
            .with_key(
                "eta",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = if state.pos() == 0 {
                        write!(w, "?")
                    } else {
                        write!(w, "{:#}", indicatif::HumanDuration(state.eta()))
                    };
                },
            )
    }

    /// Whether the accounts are folded (more than fit beside the total and a margin).
    fn compact(&self) -> bool {
        self.order.len() + 3 > self.rows
    }

    fn start(&mut self, e: &Value) {
        self.order = e
            .get("accounts")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        self.quantity = e.get("quantity").and_then(Value::as_u64).unwrap_or(1);
        self.steps = e
            .get("steps")
            .and_then(Value::as_array)
            .map_or(1, |s| s.len() as u64)
            .max(1);
        let first_step = e
            .get("steps")
            .and_then(Value::as_array)
            .and_then(|s| s.first())
            .and_then(Value::as_u64);
        for id in &self.order {
            self.accounts.insert(
                *id,
                AccountState {
                    status: "waiting",
                    step: first_step,
                    ..Default::default()
                },
            );
        }
        let slots = if self.compact() {
            self.rows.saturating_sub(4).max(1)
        } else {
            self.order.len()
        };
        let per = self.style(
            "{prefix} [{bar:16}] {msg}",
            "{prefix:.bold} [{bar:16.cyan/blue}] {msg}",
        );
        self.row_style = Some(per.clone());
        self.blank_style = Some(ProgressStyle::with_template(" ").expect("a valid template"));
        for i in 0..slots {
            let bar = self
                .mp
                .add(ProgressBar::new(self.steps * self.quantity).with_style(per.clone()));
            self.bars.push(bar);
            self.shown.push((!self.compact()).then(|| self.order[i]));
        }
        if self.compact() {
            let others = self
                .mp
                .add(ProgressBar::new(0).with_style(self.style("{msg}", "{msg:.dim}")));
            self.others = Some(others);
        }
        let total = self.mp.add(
            ProgressBar::new(self.order.len() as u64 * self.steps * self.quantity).with_style(
                self.style(
                    "total [{bar:30}] {pos}/{len} iterations · {elapsed} elapsed · ETA {eta}",
                    "{prefix:.bold}total [{bar:30.green/red}] {pos}/{len} iterations · {elapsed} elapsed · ETA {eta}",
                ),
            ),
        );
        total.enable_steady_tick(Duration::from_millis(500));
        self.total = Some(total);
    }

    /// Take in one journal object: update the bars, print its line above them.
    pub(crate) fn event(&mut self, e: &Value) {
        let name = e.get("event").and_then(Value::as_str).unwrap_or("");
        if name == "run_started" {
            self.start(e);
        }
        if let Some(id) = e.get("account").and_then(Value::as_u64)
            && let Some(a) = self.accounts.get_mut(&id)
        {
            match name {
                // In the admission queue: not yet worth a row of the compact view.
                "admission_wait" if !a.active() => a.status = "queued",
                "admitted" | "launch_lock_acquired" if !a.active() || a.status == "retrying" => {
                    a.status = "launching";
                }
                "browser_created" | "launch_ahead" => a.status = "running",
                "browser_crashed" | "launch_failed" => a.status = "launching",
                "iteration_ok" | "iteration_failed" => {
                    let step = e.get("step").and_then(Value::as_u64);
                    if step != a.step {
                        a.step = step;
                        a.in_step = 0;
                    }
                    a.in_step += 1;
                    if name == "iteration_ok" {
                        a.ok += 1;
                    } else {
                        a.failed += 1;
                    }
                    if a.status == "retrying" {
                        a.status = "running";
                    }
                    if let Some(t) = &self.total {
                        t.inc(1);
                    }
                }
                "retry" => {
                    a.retries += 1;
                    a.status = "retrying";
                    a.step = e.get("step").and_then(Value::as_u64).or(a.step);
                }
                "account_done" => {
                    a.status = match e.get("status").and_then(Value::as_str) {
                        Some("ok") => "done ok",
                        Some("failed") => "done, failed",
                        // Counted as done (and as a failure) in the compact fold.
                        Some("quarantined") => "done, quarantined",
                        Some("interrupted") => "interrupted",
                        _ => "done, error",
                    };
                }
                _ => {}
            }
        }
        if name != "iteration_ok"
            && let Some(l) = line(e)
        {
            let _ = self.mp.println(l);
        }
        self.redraw();
        if name == "run_finished" {
            self.finish();
        }
    }

    /// Put the right accounts on the rows and refresh their text.
    fn redraw(&mut self) {
        if self.compact() {
            // Keep an active account on its row; give free rows to the next active
            // ones in plan order.
            for slot in self.shown.iter_mut() {
                if slot.is_some_and(|id| !self.accounts[&id].active()) {
                    *slot = None;
                }
            }
            let on: BTreeSet<u64> = self.shown.iter().flatten().copied().collect();
            let mut next = self
                .order
                .iter()
                .filter(|id| self.accounts[*id].active() && !on.contains(id));
            for slot in self.shown.iter_mut().filter(|s| s.is_none()) {
                match next.next() {
                    Some(id) => *slot = Some(*id),
                    None => break,
                }
            }
            let hidden = next.count();
            let waiting = self
                .accounts
                .values()
                .filter(|a| matches!(a.status, "waiting" | "queued"))
                .count();
            let done = self.accounts.values().filter(|a| a.done()).count();
            let failed = self
                .accounts
                .values()
                .filter(|a| a.failed > 0 || matches!(a.status, "done, error" | "done, quarantined"))
                .count();
            if let Some(o) = &self.others {
                o.set_message(format!(
                    "… {hidden} more running · {waiting} waiting · {done} done · {failed} with failures ({} accounts)",
                    self.order.len()
                ));
            }
        }
        let width = self
            .order
            .iter()
            .map(|id| id.to_string().len())
            .max()
            .unwrap_or(1);
        for (bar, slot) in self.bars.iter().zip(&self.shown) {
            let Some(id) = slot else {
                if let Some(blank) = &self.blank_style {
                    bar.set_style(blank.clone());
                }
                continue;
            };
            if let Some(row) = &self.row_style {
                bar.set_style(row.clone());
            }
            let a = &self.accounts[id];
            bar.set_prefix(format!("account {id:>width$}"));
            bar.set_position(a.ok + a.failed);
            let step = a.step.map_or("-".into(), |s| s.to_string());
            let current = if a.done() {
                a.in_step
            } else {
                (a.in_step + 1).min(self.quantity)
            };
            bar.set_message(format!(
                "{:<13} step {step} · iteration {current}/{} · {} ok · {} failed · {} retries",
                a.status, self.quantity, a.ok, a.failed, a.retries
            ));
        }
    }

    /// The run is over: the bars go, the lines above stay.
    fn finish(&mut self) {
        for b in self.bars.iter().chain(&self.others).chain(&self.total) {
            b.finish_and_clear();
        }
        let _ = self.mp.clear();
    }
}

/// `logs/account-N.log` in the run directory: the plain lines of each account, with
/// their time, appended as the events arrive. A file that cannot be written is given
/// up silently — the journal is the record, these are a convenience.
#[derive(Default)]
pub(crate) struct LogFiles {
    dir: Option<PathBuf>,
    open: BTreeMap<u64, std::fs::File>,
}

impl LogFiles {
    /// Take in one journal object.
    pub(crate) fn event(&mut self, e: &Value) {
        let name = s(e, "event");
        if name == "run_started" {
            let dir = PathBuf::from(s(e, "run_dir")).join("logs");
            if !s(e, "run_dir").is_empty() && fsutil::private_dir(&dir).is_ok() {
                self.dir = Some(dir);
            }
            return;
        }
        let (Some(dir), Some(id)) = (&self.dir, e.get("account").and_then(Value::as_u64)) else {
            return;
        };
        let Some(text) = line(e) else { return };
        if let std::collections::btree_map::Entry::Vacant(slot) = self.open.entry(id) {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(dir.join(format!("account-{id}.log")))
            {
                Ok(f) => {
                    slot.insert(f);
                }
                Err(_) => return,
            }
        }
        if let Some(f) = self.open.get_mut(&id) {
            // One write(2) per line: `exec` output tails are appended to the same
            // file by the runner, and must not land in the middle of a line.
            let _ = f.write_all(format!("{} {text}\n", s(e, "ts")).as_bytes());
        }
        if name == "account_done" {
            // A thousand accounts must not hold a thousand descriptors to the end.
            self.open.remove(&id);
        }
    }
}

/// The observer's state: the live view or plain lines, and the log files.
pub(crate) struct Printer {
    live: Option<Mutex<Live>>,
    logs: Mutex<LogFiles>,
    json: bool,
}

impl Printer {
    /// For a run: `--json` objects, the live view or plain lines.
    pub(crate) fn new(ui: Ui, json: bool) -> Printer {
        let live = (ui.live && !json).then(|| {
            let rows = console::Term::stdout()
                .size_checked()
                .map_or(24, |(r, _)| r as usize);
            Mutex::new(Live::new(ui.color, rows))
        });
        Printer {
            live,
            logs: Mutex::new(LogFiles::default()),
            json,
        }
    }

    /// Show one journal object.
    pub(crate) fn event(&self, e: &Value) {
        if let Ok(mut logs) = self.logs.lock() {
            logs.event(e);
        }
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{e}");
            let _ = out.flush();
        } else if let Some(live) = &self.live {
            live.lock().unwrap_or_else(|p| p.into_inner()).event(e);
        } else if let Some(l) = line(e) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{l}");
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::ColorChoice;
    use serde_json::json;

    #[test]
    fn the_live_view_needs_a_terminal_colour_and_no_quiet() {
        let env = |no_color: Option<&'static str>, term: &'static str| {
            move |k: &str| match k {
                "NO_COLOR" => no_color.map(String::from),
                "TERM" => Some(term.to_string()),
                _ => None,
            }
        };
        let ui = |live, color| Ui { live, color };
        for (choice, quiet, tty, no_color, term, expected) in [
            (
                ColorChoice::Auto,
                false,
                true,
                None,
                "xterm",
                ui(true, true),
            ),
            (
                ColorChoice::Auto,
                false,
                false,
                None,
                "xterm",
                ui(false, false),
            ),
            (
                ColorChoice::Auto,
                false,
                true,
                Some("1"),
                "xterm",
                ui(false, false),
            ),
            // An empty NO_COLOR does not count (no-color.org).
            (
                ColorChoice::Auto,
                false,
                true,
                Some(""),
                "xterm",
                ui(true, true),
            ),
            (
                ColorChoice::Auto,
                true,
                true,
                None,
                "xterm",
                ui(false, true),
            ),
            (
                ColorChoice::Auto,
                false,
                true,
                None,
                "dumb",
                ui(false, false),
            ),
            (
                ColorChoice::Never,
                false,
                true,
                None,
                "xterm",
                ui(false, false),
            ),
            (
                ColorChoice::Always,
                false,
                false,
                Some("1"),
                "xterm",
                ui(false, true),
            ),
            (
                ColorChoice::Always,
                false,
                true,
                Some("1"),
                "xterm",
                ui(true, true),
            ),
        ] {
            assert_eq!(
                Ui::decide(choice, quiet, tty, env(no_color, term)),
                expected,
                "{choice:?} quiet={quiet} tty={tty} NO_COLOR={no_color:?} TERM={term}"
            );
        }
    }

    fn live(accounts: u64, rows: usize) -> Live {
        let mut l = Live::with_target(ProgressDrawTarget::hidden(), false, rows);
        l.event(&json!({"event": "run_started", "accounts": (1..=accounts).collect::<Vec<_>>(), "steps": [1], "quantity": 3}));
        l
    }

    #[test]
    fn few_accounts_get_a_row_each_with_step_iteration_and_retries() {
        let mut l = live(3, 40);
        assert!(!l.compact());
        assert_eq!(l.shown, [Some(1), Some(2), Some(3)]);
        for e in [
            json!({"event": "launch_lock_acquired", "account": 2}),
            json!({"event": "browser_created", "account": 2}),
            json!({"event": "iteration_ok", "account": 2, "step": 1, "iteration": 1}),
            json!({"event": "retry", "account": 2, "step": 1, "iteration": 2, "attempt": 2}),
        ] {
            l.event(&e);
        }
        assert_eq!(
            l.bars[1].message(),
            "retrying      step 1 · iteration 2/3 · 1 ok · 0 failed · 1 retries"
        );
        assert_eq!(l.bars[1].position(), 1);
        assert_eq!(
            l.bars[0].message(),
            "waiting       step 1 · iteration 1/3 · 0 ok · 0 failed · 0 retries"
        );
        assert_eq!(l.total.as_ref().unwrap().position(), 1);
        assert_eq!(l.total.as_ref().unwrap().length(), Some(9));
    }

    #[test]
    fn many_accounts_fold_into_active_rows_and_counts() {
        // 10 rows: 6 account rows, the counts line, the total.
        let mut l = live(50, 10);
        assert!(l.compact());
        assert_eq!(l.bars.len(), 6);
        assert!(l.shown.iter().all(Option::is_none), "nobody active yet");
        for id in [5, 9, 12] {
            l.event(&json!({"event": "admission_wait", "account": id, "reason": "pacing"}));
        }
        assert!(l.shown.iter().all(Option::is_none), "queued is not active");
        for id in 1..=8 {
            l.event(&json!({"event": "browser_created", "account": id}));
        }
        assert_eq!(
            l.shown,
            [Some(1), Some(2), Some(3), Some(4), Some(5), Some(6)]
        );
        l.event(&json!({"event": "account_done", "account": 3, "status": "ok"}));
        // The freed row goes to the next active account; the others keep theirs.
        assert_eq!(
            l.shown,
            [Some(1), Some(2), Some(7), Some(4), Some(5), Some(6)]
        );
        assert_eq!(
            l.others.as_ref().unwrap().message(),
            "… 1 more running · 42 waiting · 1 done · 0 with failures (50 accounts)"
        );
        assert_eq!(l.bars[2].prefix(), "account  7");
        // A quarantined account (skipped at the start) is done, and not a success.
        l.event(&json!({"event": "quarantine_skipped", "account": 9, "reason": "r", "until": "u"}));
        l.event(&json!({"event": "account_done", "account": 9, "status": "quarantined"}));
        assert_eq!(
            l.others.as_ref().unwrap().message(),
            "… 1 more running · 41 waiting · 2 done · 1 with failures (50 accounts)"
        );
    }

    #[test]
    fn the_spec_lines_are_exact() {
        for (event, expected) in [
            (
                json!({"event": "launch_lock_acquired", "account": 3}),
                Some("[account 3] browser creation lock acquired"),
            ),
            (
                json!({"event": "browser_created", "account": 3, "pid": 1, "port": 2}),
                Some("[account 3] browser created"),
            ),
            (
                json!({"event": "launch_lock_released", "account": 3}),
                Some("[account 3] browser creation lock released"),
            ),
            (json!({"event": "memory_sample"}), None),
            (
                json!({"event": "admission_wait", "account": 2, "reason": "pacing"}),
                None,
            ),
            (
                json!({"event": "admission_wait", "account": 2, "reason": "cap", "seats": 1}),
                Some(
                    "[account 2] waiting for a slot: 1 account(s) running (--max-concurrent, or the Grid's slots)",
                ),
            ),
            (
                json!({"event": "proxy_failover", "account": 1, "from": "http://a:1", "to": "http://b:2"}),
                Some("[account 1] proxy http://a:1 cannot be reached: going on through http://b:2"),
            ),
            (
                json!({"event": "grid_capacity", "nodes": 2, "slots": 8}),
                Some("Grid: 8 slot(s) on 2 node(s) UP; accounts beyond them wait here"),
            ),
            (
                json!({"event": "admitted", "account": 2, "reason": "memory", "waited_ms": 1500}),
                Some("[account 2] browser creation admitted after 1.5 s (memory)"),
            ),
            (
                json!({"event": "admitted", "account": 2, "reason": null, "waited_ms": 0}),
                None,
            ),
            (
                json!({"event": "quarantine_skipped", "account": 2, "reason": "challenge: #captcha on the page",
                       "score": 3, "until": "2026-12-02T03:00:00Z"}),
                Some(
                    "[account 2] quarantined until 2026-12-02T03:00:00Z (challenge: #captcha on the page): skipped; --include-quarantined runs it",
                ),
            ),
            (
                json!({"event": "account_quarantined", "account": 2, "reason": "boom", "score": 3,
                       "until": "2026-12-02T03:00:00Z", "cooldown_ms": 600000}),
                Some(
                    "[account 2] QUARANTINED until 2026-12-02T03:00:00Z (score 3: boom): its other iterations do not run",
                ),
            ),
        ] {
            assert_eq!(line(&event).as_deref(), expected);
        }
    }
}
