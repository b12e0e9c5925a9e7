//! What to run: the command line and `batch.toml` merged into one plain value —
//! [`Plan::build`] — either fresh or, with `--resume`, from the plan a run recorded in
//! its journal (`run_started`) plus whatever the command line repeats, which must
//! agree with it.
//!
//! This module decides and checks; it launches nothing and prints nothing. Its
//! errors ([`PlanError`]) are bad input (exit 2), each naming the argument or file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::{self, AccountId, ConfigError, LaunchInterval, Project};
use crate::journal::{self, Event, RunStarted};

/// `single --step N` or `run --steps LIST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// One step.
    Single(u32),
    /// These steps, in id order.
    Run(Vec<u32>),
}

impl Mode {
    /// The step ids to run, in order.
    pub fn steps(&self) -> Vec<u32> {
        match self {
            Mode::Single(s) => vec![*s],
            Mode::Run(v) => v.clone(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Mode::Single(_) => "single",
            Mode::Run(_) => "run",
        }
    }
}

/// A run, fully decided: built by [`Plan::build`], run by [`crate::runner::run`].
#[derive(Debug, Clone)]
pub struct Plan {
    /// The loaded project (settings, workflow with `base_url` already overridden, accounts).
    pub project: Project,
    /// Which steps.
    pub mode: Mode,
    /// Which accounts, in order.
    pub accounts: Vec<AccountId>,
    /// Iterations of each step per account (≥ 1).
    pub quantity: u32,
    /// All accounts at once, or one after another.
    pub concurrent: bool,
    /// Optional cap on accounts running at once.
    pub max_concurrent: Option<usize>,
    /// Creations through the creation lock (with `auto`: an adaptive number at once).
    pub launch_lock: bool,
    /// A fixed pause before each creation (inside the lock), or adaptive pacing.
    pub launch_interval: LaunchInterval,
    /// Show browser windows.
    pub headed: bool,
    /// Attempts per failed iteration beyond the first.
    pub retries: u32,
    /// Where run directories go.
    pub output: PathBuf,
    /// Open every session on this remote WebDriver endpoint (a Selenium Grid) instead
    /// of starting ChromeDriver and Chromium here (`--webdriver-url`).
    pub webdriver_url: Option<String>,
    /// Carry each account's logged-in state (cookies, localStorage) from one browser
    /// to the next as a storage state file (on by default for remote runs).
    pub storage_state: bool,
    /// The command line as given (recorded in the journal, which redacts the
    /// credentials of any URL in it).
    pub argv: Vec<String>,
    /// Continue this earlier run instead of starting a new one.
    pub resume: Option<Resume>,
    /// Run accounts that are still cooling in quarantine (`--include-quarantined`;
    /// not recorded: it is this invocation's choice, resumed or not).
    pub include_quarantined: bool,
}

/// What a resumed run continues: its directory and what it already did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    /// The run's id (its directory's name).
    pub run_id: String,
    /// The run directory.
    pub run_dir: PathBuf,
    /// `(account, step, iteration)` journaled as done: `iteration_ok`, or
    /// `iteration_failed` (attempted to the end, with all its retries — it is in the
    /// report as failed and is not repeated).
    pub done: BTreeSet<(AccountId, u32, u32)>,
}

impl Resume {
    /// Whether `(account, step, iteration)` is journaled as done.
    pub fn is_done(&self, account: AccountId, step: u32, iteration: u32) -> bool {
        self.done.contains(&(account, step, iteration))
    }
}

/// What the command line asked for, parsed but not checked. `None` (or `false` for a
/// flag) means "not given": the default for a new run, the recorded value for a
/// resumed one.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `--config` (default `./batch.toml`).
    pub config: Option<PathBuf>,
    /// `single --step N`.
    pub step: Option<u32>,
    /// `run --steps LIST` (default `all`).
    pub steps: Option<String>,
    /// Whether the command was `single`.
    pub single: bool,
    /// `--accounts LIST`.
    pub accounts: Option<String>,
    /// `--shard I/N`.
    pub shard: Option<String>,
    /// `--quantity Q` (default 1).
    pub quantity: Option<u32>,
    /// `--concurrent`.
    pub concurrent: bool,
    /// `--base-url URL`.
    pub base_url: Option<String>,
    /// `--headed`.
    pub headed: bool,
    /// `--launch-interval DUR|auto`.
    pub launch_interval: Option<String>,
    /// `--no-launch-lock`.
    pub no_launch_lock: bool,
    /// `--max-concurrent K`.
    pub max_concurrent: Option<u32>,
    /// `--retries N`.
    pub retries: Option<u32>,
    /// `--min-available-memory SIZE`.
    pub min_available_memory: Option<String>,
    /// `--webdriver-url URL`.
    pub webdriver_url: Option<String>,
    /// `--storage-state` (always on with a remote endpoint).
    pub storage_state: bool,
    /// `--output DIR`.
    pub output: PathBuf,
    /// `--resume RUN_ID`.
    pub resume: Option<String>,
    /// `--include-quarantined`.
    pub include_quarantined: bool,
    /// The whole command line, to record.
    pub argv: Vec<String>,
}

/// Bad input: the message names the argument, file or field and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

impl From<ConfigError> for PlanError {
    fn from(e: ConfigError) -> Self {
        PlanError(e.to_string())
    }
}

fn list(v: &[impl ToString]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn interval_text(i: LaunchInterval) -> String {
    match i {
        LaunchInterval::Auto => "auto".into(),
        LaunchInterval::Fixed(d) => format!("{}ms", d.as_millis()),
    }
}

impl Plan {
    /// Everything the command line and the files say, checked, before anything
    /// launches. With `--resume` the run's recorded plan fills in what is not given,
    /// and a given value that differs from it is an error naming both.
    pub fn build(req: &Request) -> Result<Plan, PlanError> {
        let webdriver_url = match &req.webdriver_url {
            Some(url) => Some(check_webdriver_url(url).map_err(PlanError)?),
            None => None,
        };
        let recorded = match &req.resume {
            Some(id) => Some(recorded_plan(&req.output, id)?),
            None => None,
        };
        let conflict =
            |flag: &str, given: &dyn std::fmt::Display, what: &str, was: &dyn std::fmt::Display| {
                PlanError(format!(
                    "{flag}: {given} conflicts with the run's recorded {what} {was}"
                ))
            };

        let config_path = match (&req.config, &recorded) {
            (Some(c), Some((_, r))) => {
                let given = std::path::absolute(c).unwrap_or_else(|_| c.clone());
                let given = given.canonicalize().unwrap_or(given);
                let was = PathBuf::from(&r.config);
                if !r.config.is_empty() && given != was.canonicalize().unwrap_or(was.clone()) {
                    return Err(conflict("--config", &c.display(), "config", &was.display()));
                }
                c.clone()
            }
            (Some(c), None) => c.clone(),
            (None, Some((_, r))) if !r.config.is_empty() => PathBuf::from(&r.config),
            (None, _) => PathBuf::from("batch.toml"),
        };
        let mut project = config::load_project(&config_path)?;
        // `[browser] webdriver_url` (checked on loading) when the flag does not say.
        let webdriver_url =
            webdriver_url.or_else(|| project.settings.browser.webdriver_url.clone());

        let base_url = match (&req.base_url, &recorded) {
            (Some(url), _) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(PlanError(format!(
                        "--base-url {url:?}: expected an http:// or https:// URL"
                    )));
                }
                let url = url.trim_end_matches('/').to_string();
                if let Some((_, r)) = &recorded
                    // A recorded URL with `***` held credentials: only the user has
                    // them, so theirs is taken as the same.
                    && !r.base_url.is_empty()
                    && !r.base_url.contains("***")
                    && r.base_url != url
                {
                    return Err(conflict("--base-url", &url, "base_url", &r.base_url));
                }
                Some(url)
            }
            (None, Some((id, r))) if r.base_url.contains("***") => {
                return Err(PlanError(format!(
                    "--resume {id}: the run's base_url {} carried credentials, which are never recorded (expected --base-url again)",
                    r.base_url
                )));
            }
            (None, Some((_, r))) if !r.base_url.is_empty() => Some(r.base_url.clone()),
            (None, _) => None,
        };
        if let Some(url) = base_url {
            project.workflow.base_url = url;
        }

        let mode = match (req.step, &req.steps) {
            (Some(s), _) => {
                if !project.workflow.steps.iter().any(|st| st.id == s) {
                    let known: Vec<String> = project
                        .workflow
                        .steps
                        .iter()
                        .map(|s| s.id.to_string())
                        .collect();
                    return Err(PlanError(format!(
                        "--step {s}: no such step in {} (expected one of: {})",
                        project.workflow.path.display(),
                        known.join(", ")
                    )));
                }
                Some(Mode::Single(s))
            }
            (None, Some(list)) => {
                Some(Mode::Run(config::parse_step_list(list, &project.workflow)?))
            }
            (None, None) => None,
        };
        let mode = match (mode, &recorded) {
            (Some(m), Some((_, r))) => {
                if m.steps() != r.steps {
                    let flag = if req.single { "--step" } else { "--steps" };
                    return Err(conflict(flag, &list(&m.steps()), "steps", &list(&r.steps)));
                }
                m
            }
            (Some(m), None) => m,
            (None, Some((id, r))) => {
                for s in &r.steps {
                    if !project.workflow.steps.iter().any(|st| st.id == *s) {
                        return Err(PlanError(format!(
                            "--resume {id}: the run's step {s} is no longer in {} (expected the workflow the run started with)",
                            project.workflow.path.display()
                        )));
                    }
                }
                if r.mode == "single" && r.steps.len() == 1 {
                    Mode::Single(r.steps[0])
                } else {
                    Mode::Run(r.steps.clone())
                }
            }
            (None, None) if req.single => {
                return Err(PlanError("--step: required (expected a step id)".into()));
            }
            (None, None) => Mode::Run(config::parse_step_list("all", &project.workflow)?),
        };

        if req.shard.is_some() && req.accounts.is_none() {
            return Err(PlanError(
                "--shard: given without --accounts (expected both, or neither to resume the run's recorded accounts)"
                    .into(),
            ));
        }
        let given_ids = match &req.accounts {
            Some(a) => {
                let mut ids = config::parse_account_list(a, &project.accounts)?;
                if let Some(spec) = &req.shard {
                    ids = config::shard(&ids, spec)?;
                }
                Some(ids)
            }
            None => None,
        };
        let ids = match (given_ids, &recorded) {
            (Some(ids), Some((_, r))) => {
                if ids != r.accounts {
                    return Err(conflict(
                        "--accounts",
                        &list(&ids),
                        "accounts",
                        &list(&r.accounts),
                    ));
                }
                ids
            }
            (Some(ids), None) => ids,
            (None, Some((id, r))) => {
                for a in &r.accounts {
                    if !project.accounts.accounts.iter().any(|acc| acc.id == *a) {
                        return Err(PlanError(format!(
                            "--resume {id}: the run's account {a} is no longer in {} (expected the accounts the run started with)",
                            project.accounts.path.display()
                        )));
                    }
                }
                r.accounts.clone()
            }
            (None, None) => {
                return Err(PlanError(
                    "--accounts: required (expected a LIST such as 1-3, or --resume RUN_ID)".into(),
                ));
            }
        };
        let accounts: Vec<&config::Account> = ids
            .iter()
            .filter_map(|id| project.accounts.accounts.iter().find(|acc| acc.id == *id))
            .collect();
        config::check_templates(&project.workflow, &accounts, &mode.steps())?;

        let launch = project.settings.launch;
        let launch_interval = match &req.launch_interval {
            Some(s) => config::parse_launch_interval(s)
                .map_err(|m| PlanError(format!("--launch-interval {s:?}: {m}")))?,
            None => launch.interval,
        };
        if let Some(s) = &req.min_available_memory {
            project.settings.resources.min_available_memory = config::parse_size(s)
                .map_err(|m| PlanError(format!("--min-available-memory {s:?}: {m}")))?;
        }
        let mut plan = Plan {
            mode,
            accounts: ids,
            quantity: req.quantity.unwrap_or(1),
            concurrent: req.concurrent,
            max_concurrent: req
                .max_concurrent
                .map(|m| m as usize)
                .or(launch.max_concurrent),
            launch_lock: launch.lock && !req.no_launch_lock,
            launch_interval,
            headed: req.headed || project.settings.browser.headed,
            retries: req.retries.unwrap_or(project.settings.retry.retries),
            output: req.output.clone(),
            storage_state: req.storage_state || webdriver_url.is_some(),
            webdriver_url,
            argv: req.argv.clone(),
            project,
            resume: None,
            include_quarantined: req.include_quarantined,
        };
        let Some((id, r)) = recorded else {
            check_actions(&plan)?;
            return Ok(plan);
        };

        // Resumed: what was not given is what the run recorded; what was given must
        // agree with it.
        match req.quantity {
            Some(q) if q != r.quantity => {
                return Err(conflict("--quantity", &q, "quantity", &r.quantity));
            }
            _ => plan.quantity = r.quantity,
        }
        if req.concurrent && !r.concurrent {
            return Err(conflict(
                "--concurrent",
                &"concurrent",
                "mode",
                &"sequential (no --concurrent)",
            ));
        }
        plan.concurrent = r.concurrent;
        match req.max_concurrent {
            Some(m) if Some(m as usize) != r.max_concurrent => {
                let was = r
                    .max_concurrent
                    .map_or("none".to_string(), |m| m.to_string());
                return Err(conflict("--max-concurrent", &m, "max_concurrent", &was));
            }
            _ => plan.max_concurrent = r.max_concurrent,
        }
        if req.no_launch_lock && r.launch_lock {
            return Err(conflict(
                "--no-launch-lock",
                &"no lock",
                "launch_lock",
                &"on",
            ));
        }
        plan.launch_lock = r.launch_lock;
        let was_interval = match r.launch_interval_ms {
            Some(ms) => LaunchInterval::Fixed(std::time::Duration::from_millis(ms)),
            None => LaunchInterval::Auto,
        };
        if req.launch_interval.is_some() && plan.launch_interval != was_interval {
            return Err(conflict(
                "--launch-interval",
                &interval_text(plan.launch_interval),
                "launch_interval",
                &interval_text(was_interval),
            ));
        }
        plan.launch_interval = was_interval;
        match req.retries {
            Some(n) if n != r.retries => {
                return Err(conflict("--retries", &n, "retries", &r.retries));
            }
            _ => plan.retries = r.retries,
        }
        // Where the browsers come from is part of the run: a resume on another
        // endpoint (or locally) would not find the run's sessions' state.
        match (&plan.webdriver_url, &r.webdriver_url) {
            (Some(now), Some(was)) if was.contains("***") => {
                // Credentials are never recorded: the user's URL is taken as the same.
                let _ = now;
            }
            (Some(now), Some(was)) if now != was => {
                return Err(conflict("--webdriver-url", now, "webdriver_url", was));
            }
            (Some(now), None) => {
                return Err(conflict("--webdriver-url", now, "browser source", &"local"));
            }
            (None, Some(was)) if was.contains("***") => {
                return Err(PlanError(format!(
                    "--resume {id}: the run's webdriver_url {was} carried credentials, which are never recorded (expected --webdriver-url again)"
                )));
            }
            (None, Some(was)) => plan.webdriver_url = Some(was.clone()),
            _ => {}
        }
        plan.storage_state = plan.storage_state || r.storage_state || plan.webdriver_url.is_some();
        if req.headed && !r.headed {
            return Err(conflict("--headed", &"headed", "browser mode", &"headless"));
        }
        plan.headed = r.headed;
        if let Some(was) = r.min_available_memory_bytes {
            let now = plan.project.settings.resources.min_available_memory;
            if req.min_available_memory.is_some() && now != was {
                return Err(conflict(
                    "--min-available-memory",
                    &format!("{now} bytes"),
                    "min_available_memory",
                    &format!("{was} bytes"),
                ));
            }
            plan.project.settings.resources.min_available_memory = was;
        }
        plan.resume = Some(Resume {
            run_dir: req.output.join(&id),
            run_id: id,
            done: done_of(&r.done_records),
        });
        check_actions(&plan)?;
        Ok(plan)
    }

    /// The plan as `run_started` records it (`run_id`/`run_dir` filled by the runner).
    pub fn record(&self, run_id: &str, run_dir: &Path) -> RunStarted {
        RunStarted {
            run_id: run_id.into(),
            run_dir: run_dir.display().to_string(),
            mode: self.mode.name().into(),
            accounts: self.accounts.clone(),
            steps: self.mode.steps(),
            quantity: self.quantity,
            concurrent: self.concurrent,
            max_concurrent: self.max_concurrent,
            launch_lock: self.launch_lock,
            launch_interval: interval_text(self.launch_interval),
            launch_interval_ms: match self.launch_interval {
                LaunchInterval::Auto => None,
                LaunchInterval::Fixed(d) => Some(d.as_millis() as u64),
            },
            retries: self.retries,
            headed: self.headed,
            base_url: self.project.workflow.base_url.clone(),
            config: self.project.settings.config_path.display().to_string(),
            min_available_memory_bytes: Some(self.project.settings.resources.min_available_memory),
            resumed: self.resume.is_some(),
            webdriver_url: self.webdriver_url.clone(),
            storage_state: self.storage_state,
            argv: self.argv.clone(),
        }
    }

    /// `(account, step, iteration)` still to run, in plan order.
    pub fn remaining(&self, account: AccountId) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for step in self.mode.steps() {
            for i in 1..=self.quantity {
                if !self
                    .resume
                    .as_ref()
                    .is_some_and(|r| r.is_done(account, step, i))
                {
                    out.push((step, i));
                }
            }
        }
        out
    }
}

struct Recorded {
    plan: RunStarted,
    done_records: Vec<Event>,
}

impl std::ops::Deref for Recorded {
    type Target = RunStarted;
    fn deref(&self) -> &RunStarted {
        &self.plan
    }
}

fn done_of(events: &[Event]) -> BTreeSet<(AccountId, u32, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::IterationOk {
                account,
                step,
                iteration,
                ..
            }
            | Event::IterationFailed {
                account,
                step,
                iteration,
                ..
            } => Some((*account, *step, *iteration)),
            _ => None,
        })
        .collect()
}

/// The first `run_started` of `<output>/<id>/events.jsonl`, and its iteration outcomes.
fn recorded_plan(output: &Path, id: &str) -> Result<(String, Recorded), PlanError> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') {
        return Err(PlanError(format!(
            "--resume {id:?}: expected the name of a run directory under --output {}",
            output.display()
        )));
    }
    let dir = output.join(id);
    let path = dir.join("events.jsonl");
    if !path.exists() {
        return Err(PlanError(format!(
            "--resume {id}: {} does not exist (expected a run directory under --output {})",
            path.display(),
            output.display()
        )));
    }
    let read = journal::read(&path).map_err(|e| PlanError(format!("--resume {id}: {e}")))?;
    let mut plan = None;
    let mut done_records = Vec::new();
    for r in read.records {
        match r.event {
            Event::RunStarted(p) if plan.is_none() => plan = Some(p),
            e @ (Event::IterationOk { .. } | Event::IterationFailed { .. }) => done_records.push(e),
            _ => {}
        }
    }
    let Some(plan) = plan else {
        return Err(PlanError(format!(
            "--resume {id}: {} records no run_started (expected the journal of a run)",
            path.display()
        )));
    };
    Ok((id.to_string(), Recorded { plan, done_records }))
}

/// What the plan's actions need that loading the files could not check: what a
/// remote endpoint cannot do (proxies that need our forwarder, `wait_download`), the
/// files every `upload` will send, and a data row for every iteration. Checked
/// before anything launches.
fn check_actions(plan: &Plan) -> Result<(), PlanError> {
    check_remote_proxies(plan)?;
    check_remote_downloads(plan)?;
    check_uploads(plan)?;
    check_data(plan)
}

/// Every running account has a row of each running step's data file for each of its
/// `--quantity` iterations, and no value a `goto` or an `exec` argv gets from one has
/// a control character (a NUL cannot reach a program; a URL parser drops some).
fn check_data(plan: &Plan) -> Result<(), PlanError> {
    let project = &plan.project;
    let workflow = &project.workflow;
    let wanted = plan.mode.steps();
    let quantity = plan.quantity.max(1);
    for step in workflow.steps.iter().filter(|s| wanted.contains(&s.id)) {
        let Some(data) = &step.data else {
            continue;
        };
        let strict: Vec<&str> = (step.actions.iter())
            .filter(|a| {
                matches!(
                    a.kind,
                    config::ActionKind::Goto { .. } | config::ActionKind::Exec { .. }
                )
            })
            .flat_map(|a| a.kind.templates())
            .flat_map(|t| t.variables())
            .filter_map(|p| match p {
                config::Part::Data(column) => Some(column.as_str()),
                _ => None,
            })
            .collect();
        for id in &plan.accounts {
            let rows: Vec<_> = data.rows_for(*id).take(quantity as usize).collect();
            if rows.len() < quantity as usize {
                let own = if data.columns.iter().any(|c| c == config::ACCOUNT_COLUMN) {
                    format!(" for account {id}")
                } else {
                    String::new()
                };
                return Err(PlanError(format!(
                    "{}: step {}, data: {} has {} row(s){own}, fewer than the {quantity} \
                     iteration(s) of --quantity (expected a row per iteration)",
                    workflow.path.display(),
                    step.id,
                    data.path.display(),
                    rows.len()
                )));
            }
            for row in rows {
                if let Some(column) = (strict.iter()).find(|c| {
                    row.fields
                        .get(**c)
                        .is_some_and(|v| v.value.contains(char::is_control))
                }) {
                    return Err(PlanError(format!(
                        "{}:{}: {column}: a control character (expected printable text in a URL \
                         or an argv)",
                        data.path.display(),
                        row.line
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Every file an `upload` of a running step will send, rendered for each account
/// (and iteration, when a path uses `{iteration}`) that runs it, must be a readable
/// file now: a typo or a missing per-account file fails before anything launches,
/// not at the thousandth account. Each distinct path is looked at once.
fn check_uploads(plan: &Plan) -> Result<(), PlanError> {
    let project = &plan.project;
    let workflow = &project.workflow;
    let root = &project.settings.root;
    let wanted = plan.mode.steps();
    let accounts: Vec<&config::Account> = plan
        .accounts
        .iter()
        .filter_map(|id| project.accounts.accounts.iter().find(|a| a.id == *id))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for step in workflow.steps.iter().filter(|s| wanted.contains(&s.id)) {
        let phases = [
            (&step.before, 0..=0),
            (&step.actions, 1..=plan.quantity.max(1)),
            (&step.after, 0..=0),
        ];
        for (actions, iterations) in phases {
            for action in actions {
                let config::ActionKind::Upload { file, .. } = &action.kind else {
                    continue;
                };
                let per_iteration = file
                    .iter()
                    .flat_map(|t| t.variables())
                    .any(|p| matches!(p, config::Part::Iteration));
                let iterations = if per_iteration {
                    iterations.clone()
                } else {
                    *iterations.start()..=*iterations.start()
                };
                for account in &accounts {
                    for iteration in iterations.clone() {
                        let vars = config::Vars {
                            base_url: &workflow.base_url,
                            account,
                            iteration,
                            step: step.id,
                            data: (step.data.as_ref()).and_then(|d| d.row(account.id, iteration)),
                        };
                        for t in file {
                            let at = || {
                                format!("{}:{}: upload.file", workflow.path.display(), action.line)
                            };
                            let r = t
                                .render(&vars)
                                .map_err(|e| PlanError(format!("{}: {e}", at())))?;
                            if !seen.insert(r.value.clone()) {
                                continue;
                            }
                            if let Err(why) = config::upload_path(root, &r.value) {
                                let whose = if t.variables().next().is_some() {
                                    format!(" (for account {})", account.id)
                                } else {
                                    String::new()
                                };
                                return Err(PlanError(format!(
                                    "{}: {:?}{whose} {why} (expected a readable file; a relative \
                                     path starts at {}, batch.toml's directory)",
                                    at(),
                                    r.redacted,
                                    root.display()
                                )));
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// A remote node saves downloads on its own host, where `wait_download` cannot see
/// them (and a headless node drops them): refused before anything launches.
fn check_remote_downloads(plan: &Plan) -> Result<(), PlanError> {
    if plan.webdriver_url.is_none() {
        return Ok(());
    }
    let workflow = &plan.project.workflow;
    let wanted = plan.mode.steps();
    let steps = workflow.steps.iter().filter(|s| wanted.contains(&s.id));
    let actions = steps.flat_map(|s| s.before.iter().chain(&s.actions).chain(&s.after));
    match actions
        .into_iter()
        .find(|a| matches!(a.kind, config::ActionKind::WaitDownload { .. }))
    {
        Some(a) => Err(PlanError(format!(
            "{}:{}: wait_download: downloads of a remote browser land on its node, not here \
             (expected a run without --webdriver-url / [browser] webdriver_url for this step)",
            workflow.path.display(),
            a.line
        ))),
        None => Ok(()),
    }
}

/// A proxy that needs batch-cli's loopback forwarder (credentials, or a `proxy_ca`)
/// works for a remote session only when the endpoint's browsers run on this host:
/// the forwarder listens on `127.0.0.1`, which a node on another host cannot reach
/// (its Chromium would get a `--proxy-server` pointing at itself and fail every
/// page). A loopback endpoint is taken to have its nodes here too (a Grid hub on
/// loopback with nodes elsewhere cannot be told apart, and is not supported).
fn check_remote_proxies(plan: &Plan) -> Result<(), PlanError> {
    let Some(endpoint) = &plan.webdriver_url else {
        return Ok(());
    };
    let host = url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    if is_loopback_host(&host) {
        return Ok(());
    }
    let project = &plan.project;
    for id in &plan.accounts {
        let Some(account) = project.accounts.accounts.iter().find(|a| a.id == *id) else {
            continue;
        };
        let ca = config::proxy_ca_of(&project.settings.browser, &project.accounts.path, account);
        let upstreams = config::proxy_of(account);
        let needs = |u: &&forwarder::Upstream| forwarder::needs_forwarder(u, ca.is_some());
        if let Some(upstream) = upstreams.iter().find(needs) {
            let why = if upstream.credentials.is_some() {
                "has credentials"
            } else {
                "is checked against a proxy_ca"
            };
            // The host only: the endpoint's URL may carry credentials of its own.
            return Err(PlanError(format!(
                "--webdriver-url / [browser] webdriver_url: account {id}'s proxy {why}, so its \
                 browser must use batch-cli's forwarder on 127.0.0.1, which a browser on the \
                 remote host {host} cannot reach (expected a WebDriver endpoint on this \
                 host's loopback — 127.0.0.1, ::1 or localhost — or, for remote browsers, \
                 proxies without credentials)"
            )));
        }
    }
    Ok(())
}

/// `127.0.0.0/8`, `::1` or `localhost`.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `--webdriver-url`: an http(s) URL with a host, no query or fragment; returned
/// without a trailing slash.
pub fn check_webdriver_url(url: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "--webdriver-url {url:?}: {why} (expected an http:// or https:// URL of a WebDriver endpoint, like http://127.0.0.1:4444)"
        ))
    };
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return bad("not an http:// or https:// URL");
    };
    let host = rest.split('/').next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return bad("no host");
    }
    if url.contains('?') || url.contains('#') {
        return bad("a query or fragment has no place in it");
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(quantity: u32) -> String {
        let r = RunStarted {
            run_id: "r1".into(),
            run_dir: "/x".into(),
            mode: "single".into(),
            accounts: vec![1, 2],
            steps: vec![1],
            quantity,
            concurrent: true,
            max_concurrent: None,
            launch_lock: true,
            launch_interval: "0ms".into(),
            launch_interval_ms: Some(0),
            retries: 2,
            headed: false,
            base_url: "http://127.0.0.1:9".into(),
            config: String::new(),
            min_available_memory_bytes: None,
            resumed: false,
            webdriver_url: None,
            storage_state: false,
            argv: vec![],
        };
        Event::RunStarted(r)
            .to_json("2026-01-01T00:00:00.000Z")
            .to_string()
    }

    /// A project + a run `r1` whose journal holds `lines`; the request resumes it.
    fn project(lines: &[String]) -> (tempfile::TempDir, Request) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("batch.toml"), "").unwrap();
        std::fs::write(
            d.join("accounts.toml"),
            "[[accounts]]\nid = 1\nusername = \"a\"\n[[accounts]]\nid = 2\nusername = \"b\"\n",
        )
        .unwrap();
        std::fs::write(
            d.join("workflow.toml"),
            "base_url = \"http://127.0.0.1:9\"\n[[steps]]\nid = 1\nactions = [{ goto = \"{base_url}/{iteration}\" }]\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.join("runs/r1")).unwrap();
        std::fs::write(d.join("runs/r1/events.jsonl"), lines.join("\n") + "\n").unwrap();
        let req = Request {
            config: Some(d.join("batch.toml")),
            single: true,
            output: d.join("runs"),
            resume: Some("r1".into()),
            ..Default::default()
        };
        (dir, req)
    }

    /// A proxy that needs the forwarder is refused for a remote endpoint that is not
    /// on this host's loopback, and accepted for one that is (or for plain proxies).
    #[test]
    fn remote_sessions_use_the_forwarder_only_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("batch.toml"), "").unwrap();
        std::fs::write(
            d.join("ca.pem"),
            forwarder::testing::TestCa::new("ca").pem(),
        )
        .unwrap();
        std::fs::write(
            d.join("workflow.toml"),
            "base_url = \"http://127.0.0.1:9\"\n[[steps]]\nid = 1\nactions = [{ goto = \"{base_url}/\" }]\n",
        )
        .unwrap();
        let creds = "proxy = \"http://u:hunter2@127.0.0.1:3128\"";
        let plain = "proxy = \"http://127.0.0.1:3128\"";
        let ca = "proxy = \"https://127.0.0.1:3128\"\nproxy_ca = \"ca.pem\"";
        for (endpoint, proxy, refused) in [
            ("http://127.0.0.1:4444", creds, None),
            ("http://localhost:4444/wd/hub", creds, None),
            ("http://[::1]:4444", creds, None),
            ("http://grid.example:4444", plain, None),
            ("http://grid.example:4444", creds, Some("has credentials")),
            (
                "http://10.1.2.3:4444",
                ca,
                Some("is checked against a proxy_ca"),
            ),
            (
                "http://user:gridpw@grid.example:4444",
                creds,
                Some("has credentials"),
            ),
        ] {
            std::fs::write(
                d.join("accounts.toml"),
                format!("[[accounts]]\nid = 1\n[[accounts]]\nid = 7\n{proxy}\n"),
            )
            .unwrap();
            let req = Request {
                config: Some(d.join("batch.toml")),
                single: true,
                step: Some(1),
                accounts: Some("1,7".into()),
                output: d.join("runs"),
                webdriver_url: Some(endpoint.into()),
                ..Default::default()
            };
            match (Plan::build(&req), refused) {
                (Ok(_), None) => {}
                (Err(e), Some(why)) => {
                    let e = e.to_string();
                    assert!(
                        e.contains(&format!("account 7's proxy {why}"))
                            && e.contains("cannot reach")
                            && e.contains("(expected a WebDriver endpoint on this host's loopback"),
                        "{endpoint}: {e}"
                    );
                    assert!(!e.contains("hunter2") && !e.contains("gridpw"), "{e}");
                }
                (got, _) => panic!("{endpoint} {proxy}: {:?}", got.map(|_| ())),
            }
        }
    }

    /// `wait_download` in a step that runs is refused for a remote endpoint (its
    /// downloads land on the node); in a step that does not run, or locally, it is not.
    #[test]
    fn remote_sessions_refuse_wait_download_in_steps_that_run() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("batch.toml"), "").unwrap();
        std::fs::write(d.join("accounts.toml"), "[[accounts]]\nid = 1\n").unwrap();
        std::fs::write(
            d.join("workflow.toml"),
            "base_url = \"http://127.0.0.1:9\"\n[[steps]]\nid = 1\nactions = [{ goto = \"{base_url}/\" }]\n\
             [[steps]]\nid = 2\nactions = [\n  { click = \"#x\" },\n  { wait_download = \"*.csv\" },\n]\n",
        )
        .unwrap();
        for (step, endpoint, refused) in [
            (2, Some("http://127.0.0.1:4444"), true),
            (2, Some("http://grid.example:4444"), true),
            (1, Some("http://127.0.0.1:4444"), false),
            (2, None, false),
        ] {
            let req = Request {
                config: Some(d.join("batch.toml")),
                single: true,
                step: Some(step),
                accounts: Some("1".into()),
                output: d.join("runs"),
                webdriver_url: endpoint.map(Into::into),
                ..Default::default()
            };
            match (Plan::build(&req), refused) {
                (Ok(_), false) => {}
                (Err(e), true) => assert_eq!(
                    e.to_string(),
                    format!(
                        "{}:9: wait_download: downloads of a remote browser land on its node, \
                         not here (expected a run without --webdriver-url / [browser] \
                         webdriver_url for this step)",
                        d.join("workflow.toml").display()
                    ),
                ),
                (got, _) => panic!("step {step} {endpoint:?}: {:?}", got.map(|_| ())),
            }
        }
    }

    /// A step's data file must hold a row for every iteration of every account that
    /// runs (its own rows with an `account` column), and no row may put a control
    /// character into a `goto` URL; a step that does not run is not looked at.
    #[test]
    fn data_must_have_a_row_for_every_iteration_of_every_running_account() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("batch.toml"), "").unwrap();
        std::fs::write(
            d.join("accounts.toml"),
            "[[accounts]]\nid = 1\n[[accounts]]\nid = 2\n",
        )
        .unwrap();
        std::fs::write(d.join("shared.csv"), "item\n7\n8\n").unwrap();
        std::fs::write(d.join("own.csv"), "account,item\n1,7\n2,8\n1,9\n").unwrap();
        std::fs::write(d.join("nul.csv"), "item\n7\n\"a\u{1}b\"\n").unwrap();
        let shown = |f: &str| d.join(f).display().to_string();
        let wf = shown("workflow.toml");
        for (file, step, accounts, quantity, expected) in [
            ("shared.csv", 1, "1-2", 2, None),
            ("own.csv", 1, "1", 2, None),
            (
                "shared.csv",
                1,
                "1-2",
                3,
                Some(format!(
                    "{wf}: step 1, data: {} has 2 row(s), fewer than the 3 iteration(s) of --quantity (expected a row per iteration)",
                    shown("shared.csv")
                )),
            ),
            (
                "own.csv",
                1,
                "1-2",
                2,
                Some(format!(
                    "{wf}: step 1, data: {} has 1 row(s) for account 2, fewer than the 2 iteration(s) of --quantity (expected a row per iteration)",
                    shown("own.csv")
                )),
            ),
            (
                "nul.csv",
                1,
                "1",
                2,
                Some(format!(
                    "{}:3: item: a control character (expected printable text in a URL or an argv)",
                    shown("nul.csv")
                )),
            ),
            ("nul.csv", 2, "1", 5, None),
        ] {
            std::fs::write(
                d.join("workflow.toml"),
                format!(
                    "base_url = \"http://127.0.0.1:9\"\n[[steps]]\nid = 1\ndata = \"{file}\"\n\
                     actions = [{{ goto = \"{{base_url}}/item/{{data.item}}\" }}]\n\
                     [[steps]]\nid = 2\nactions = [{{ click = \"#x\" }}]\n"
                ),
            )
            .unwrap();
            let req = Request {
                config: Some(d.join("batch.toml")),
                single: true,
                step: Some(step),
                accounts: Some(accounts.into()),
                quantity: Some(quantity),
                output: d.join("runs"),
                ..Default::default()
            };
            let got = Plan::build(&req).map(|_| ()).map_err(|e| e.to_string());
            assert_eq!(
                got,
                expected.map_or(Ok(()), Err),
                "{file} step {step} {accounts} x{quantity}"
            );
        }
    }

    /// Every file an `upload` of a running step would send is looked at before
    /// anything launches, per account and (for `{iteration}` paths) per iteration.
    #[test]
    fn uploads_must_name_readable_files_for_every_account_that_runs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("batch.toml"), "").unwrap();
        std::fs::write(
            d.join("accounts.toml"),
            "[[accounts]]\nid = 1\npassword = \"hunter2\"\n[[accounts]]\nid = 2\npassword = \"hunter2\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.join("files/dir")).unwrap();
        for f in ["a.txt", "1.txt", "2.txt", "1-1.txt", "1-2.txt", "2-1.txt"] {
            std::fs::write(d.join("files").join(f), "x").unwrap();
        }
        let wf = d.join("workflow.toml");
        let shown = wf.display().to_string();
        let tail = format!(
            "(expected a readable file; a relative path starts at {}, batch.toml's directory)",
            d.display()
        );
        for (file, step, quantity, expected) in [
            ("\"files/a.txt\"", 2, 1, None),
            ("\"files/{account.id}.txt\"", 2, 1, None),
            ("\"files/{account.id}-{iteration}.txt\"", 2, 1, None),
            // Account 2 has no file for iteration 2.
            (
                "\"files/{account.id}-{iteration}.txt\"",
                2,
                2,
                Some(format!(
                    "{shown}:9: upload.file: \"files/2-2.txt\" (for account 2) does not exist {tail}"
                )),
            ),
            (
                "[\"files/a.txt\", \"files/b.txt\"]",
                2,
                1,
                Some(format!(
                    "{shown}:9: upload.file: \"files/b.txt\" does not exist {tail}"
                )),
            ),
            (
                "\"files/dir\"",
                2,
                1,
                Some(format!(
                    "{shown}:9: upload.file: \"files/dir\" is not a regular file {tail}"
                )),
            ),
            (&format!("\"{}/files/a.txt\"", d.display()), 2, 1, None),
            // A secret in a path is shown as `***`.
            (
                "\"files/{account.password}.txt\"",
                2,
                1,
                Some(format!(
                    "{shown}:9: upload.file: \"files/***.txt\" (for account 1) does not exist {tail}"
                )),
            ),
            // Step 1 runs no upload: nothing to look at.
            ("\"files/missing.txt\"", 1, 1, None),
        ] {
            std::fs::write(
                &wf,
                format!(
                    "base_url = \"http://127.0.0.1:9\"\n[[steps]]\nid = 1\nactions = [{{ goto = \"{{base_url}}/\" }}]\n\
                     [[steps]]\nid = 2\nactions = [\n  {{ click = \"#x\" }},\n  {{ upload = \"#doc\", file = {file} }},\n]\n"
                ),
            )
            .unwrap();
            let req = Request {
                config: Some(d.join("batch.toml")),
                single: true,
                step: Some(step),
                accounts: Some("1-2".into()),
                quantity: Some(quantity),
                output: d.join("runs"),
                ..Default::default()
            };
            let got = Plan::build(&req).map(|_| ()).map_err(|e| e.to_string());
            assert_eq!(
                got.err(),
                expected,
                "{file} step {step} quantity {quantity}"
            );
        }
    }

    #[test]
    fn a_resume_takes_the_recorded_plan_and_what_was_done() {
        let ok = Event::IterationOk {
            account: 1,
            step: 1,
            iteration: 2,
            attempt: 1,
        }
        .to_json("t")
        .to_string();
        let (_dir, req) = project(&[started(3), ok]);
        let plan = Plan::build(&req).unwrap();
        assert_eq!(plan.quantity, 3);
        assert_eq!(plan.accounts, vec![1, 2]);
        assert!(plan.concurrent);
        assert_eq!(plan.mode, Mode::Single(1));
        assert_eq!(
            plan.launch_interval,
            LaunchInterval::Fixed(Default::default())
        );
        assert_eq!(plan.remaining(1), vec![(1, 1), (1, 3)]);
        assert_eq!(plan.remaining(2), vec![(1, 1), (1, 2), (1, 3)]);
        assert_eq!(plan.resume.as_ref().unwrap().run_id, "r1");
    }

    #[test]
    fn a_conflicting_argument_names_both_values() {
        for (edit, expected) in [
            (
                Box::new(|r: &mut Request| r.quantity = Some(5)) as Box<dyn Fn(&mut Request)>,
                "--quantity: 5 conflicts with the run's recorded quantity 3",
            ),
            (
                Box::new(|r: &mut Request| r.accounts = Some("1".into())),
                "--accounts: 1 conflicts with the run's recorded accounts 1,2",
            ),
            (
                Box::new(|r: &mut Request| r.retries = Some(0)),
                "--retries: 0 conflicts with the run's recorded retries 2",
            ),
            (
                Box::new(|r: &mut Request| r.launch_interval = Some("auto".into())),
                "--launch-interval: auto conflicts with the run's recorded launch_interval 0ms",
            ),
            (
                Box::new(|r: &mut Request| r.base_url = Some("http://127.0.0.1:10".into())),
                "--base-url: http://127.0.0.1:10 conflicts with the run's recorded base_url http://127.0.0.1:9",
            ),
        ] {
            let (_dir, mut req) = project(&[started(3)]);
            edit(&mut req);
            assert_eq!(Plan::build(&req).unwrap_err().0, expected);
        }
        // The same values are no conflict.
        let (_dir, mut req) = project(&[started(3)]);
        req.quantity = Some(3);
        req.accounts = Some("1-2".into());
        req.concurrent = true;
        assert!(Plan::build(&req).is_ok());
    }

    #[test]
    fn a_missing_or_bad_run_is_named() {
        let (_dir, mut req) = project(&[started(3)]);
        req.resume = Some("nope".into());
        let e = Plan::build(&req).unwrap_err().0;
        assert!(
            e.starts_with("--resume nope: ") && e.contains("does not exist"),
            "{e}"
        );
        req.resume = Some("../r1".into());
        let e = Plan::build(&req).unwrap_err().0;
        assert!(e.contains("expected the name of a run directory"), "{e}");
        let (_dir, req) = project(&["{\"ts\":\"t\",\"event\":\"memory_sample\",\"available_bytes\":1,\"browsers_pss_bytes\":0,\"browser_cost_bytes\":0,\"browsers\":{}}".into()]);
        let e = Plan::build(&req).unwrap_err().0;
        assert!(e.contains("records no run_started"), "{e}");
    }
}

#[cfg(test)]
mod webdriver_url_key {
    use super::*;

    /// `[browser] webdriver_url` picks the remote source; `--webdriver-url` overrides it.
    #[test]
    fn the_key_is_used_unless_the_flag_says_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("batch.toml"),
            "[browser]\nwebdriver_url = \"http://127.0.0.1:4444/\"\n",
        )
        .unwrap();
        std::fs::write(
            d.join("accounts.toml"),
            "[[accounts]]\nid = 1\nusername = \"a\"\n",
        )
        .unwrap();
        std::fs::write(
            d.join("workflow.toml"),
            "base_url = \"http://127.0.0.1:9\"\n[[steps]]\nid = 1\nactions = [{ goto = \"{base_url}/\" }]\n",
        )
        .unwrap();
        let mut req = Request {
            config: Some(d.join("batch.toml")),
            single: true,
            step: Some(1),
            accounts: Some("1".into()),
            output: d.join("runs"),
            ..Default::default()
        };
        let plan = Plan::build(&req).unwrap();
        assert_eq!(plan.webdriver_url.as_deref(), Some("http://127.0.0.1:4444"));
        // Remote runs carry their sessions' state by default, from the key too.
        assert!(plan.storage_state);
        req.webdriver_url = Some("http://127.0.0.1:5555".into());
        let plan = Plan::build(&req).unwrap();
        assert_eq!(plan.webdriver_url.as_deref(), Some("http://127.0.0.1:5555"));
        std::fs::write(d.join("batch.toml"), "").unwrap();
        req.webdriver_url = None;
        assert_eq!(Plan::build(&req).unwrap().webdriver_url, None);
    }
}
