//! One account's journey: get a browser, run each step's `before`, its iterations
//! (each retried on failure, with a fresh browser when the old one is gone), its
//! `after`, and report.
//!
//! Recovery policy, in one place: every failed attempt is retried up to `retries`
//! times with exponential backoff; a failure whose kind needs a new browser (browser
//! or driver gone, renderer crashed, driver hung, launch failed) first replaces the
//! browser — same persistent profile — and runs `before` again. No useless sleep
//! after the last attempt; the last real error is what gets reported.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use launcher::{Browser, FailureKind, LaunchSpec};
use serde_json::Value;
use tracing::Instrument;

use super::Ctx;
use super::actions::{ActionEnv, Failure, run_actions, save_png, screenshot_path};
use crate::config::{Account, Action, Step, Vars};
use crate::journal::Event;
use crate::report::AccountReport;

/// A live browser and, for ephemeral profiles, the profile it owns.
struct Session {
    // Field order matters: the browser must be gone before its profile is released.
    browser: Browser,
    _ephemeral: Option<profiles::Profile>,
}

struct AccountRun {
    ctx: Arc<Ctx>,
    account: Account,
    profile: Option<profiles::Profile>,
    session: Option<Session>,
    report: AccountReport,
    values: BTreeMap<String, Value>,
}

pub(crate) async fn run_account(
    ctx: Arc<Ctx>,
    account: Account,
    profile: Option<profiles::Profile>,
) -> AccountReport {
    let id = account.id;
    let span = tracing::info_span!("account", account = id);
    let mut run = AccountRun {
        report: AccountReport {
            id,
            status: "ok".into(),
            ..Default::default()
        },
        ctx,
        account,
        profile,
        session: None,
        values: BTreeMap::new(),
    };
    let cancel = run.ctx.cancel.clone();
    let interrupted = tokio::select! {
        biased;
        _ = cancel.cancelled() => true,
        _ = run.all_steps().instrument(span) => false,
    };
    if let Some(s) = run.session.take() {
        run.ctx.memory.untrack(id);
        if interrupted {
            // Ctrl-C: no time for a graceful quit, but nothing may outlive us.
            drop(s);
        } else {
            s.browser.close().await;
        }
    }
    drop(run.profile.take());
    let mut report = run.report;
    report.values = run.values;
    if interrupted {
        report.status = "interrupted".into();
    } else if report.iterations_failed > 0 {
        // (`after` failures have already set "failed".)
        report.status = "failed".into();
    }
    run.ctx.journal.emit(
        Event::new("account_done")
            .account(id)
            .with("status", report.status.as_str())
            .with("iterations_ok", report.iterations_ok)
            .with("iterations_failed", report.iterations_failed)
            .with("browser_launches", report.browser_launches)
            .with("retries", report.retries),
    );
    report
}

impl AccountRun {
    fn step(&self, id: u32) -> Step {
        self.ctx
            .plan
            .project
            .workflow
            .steps
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .expect("validated step")
    }

    async fn all_steps(&mut self) {
        for step_id in self.ctx.plan.mode.steps() {
            let step = self.step(step_id);
            self.run_step(&step).await;
        }
    }

    async fn run_step(&mut self, step: &Step) {
        let quantity = self.ctx.plan.quantity;
        // `before` runs whenever the account gets a browser for this step.
        let mut before_done = false;
        // Once `before` has failed for good, the step's remaining iterations fail
        // with it instead of each repeating the same doomed retries.
        let mut before_broken: Option<Failure> = None;
        for iteration in 1..=quantity {
            if let Some(f) = &before_broken {
                self.fail_iteration(step.id, iteration, 0, f);
                continue;
            }
            let mut attempt = 0u32;
            loop {
                let span = tracing::info_span!(
                    "iteration",
                    step = step.id,
                    iteration,
                    attempt = attempt + 1
                );
                let result = self
                    .attempt(step, iteration, &mut before_done)
                    .instrument(span)
                    .await;
                let failure = match result {
                    Ok(()) => {
                        self.report.iterations_ok += 1;
                        self.ctx.journal.emit(
                            Event::new("iteration_ok")
                                .account(self.account.id)
                                .with("step", step.id)
                                .with("iteration", iteration)
                                .with("attempt", attempt + 1),
                        );
                        break;
                    }
                    Err(f) => f,
                };
                self.failure_screenshot(step.id, iteration, attempt + 1)
                    .await;
                let needs_new = failure.kind.needs_new_browser()
                    || self
                        .session
                        .as_ref()
                        .is_some_and(|s| s.browser.health().is_some());
                if needs_new {
                    self.drop_browser(&failure).await;
                    before_done = false;
                }
                if attempt < self.ctx.plan.retries {
                    attempt += 1;
                    self.report.retries += 1;
                    let backoff = self.ctx.plan.project.settings.retry.backoff
                        * 2u32.saturating_pow(attempt - 1);
                    self.ctx.journal.emit(
                        Event::new("retry")
                            .account(self.account.id)
                            .with("step", step.id)
                            .with("iteration", iteration)
                            .with("attempt", attempt + 1)
                            .with("kind", failure.kind.as_str())
                            .with("error", failure.message.as_str())
                            .with("backoff_ms", backoff.as_millis() as u64),
                    );
                    tokio::time::sleep(backoff.min(Duration::from_secs(30))).await;
                    continue;
                }
                self.fail_iteration(step.id, iteration, attempt + 1, &failure);
                if failure.in_before {
                    before_broken = Some(failure);
                }
                break;
            }
        }
        if !step.after.is_empty()
            && self.session.is_some()
            && let Err(f) = self.actions(step, 0, &step.after).await
        {
            self.report.status = "failed".into();
            self.report.last_error = Some(f.message.clone());
            self.ctx.journal.emit(
                Event::new("after_failed")
                    .account(self.account.id)
                    .with("step", step.id)
                    .with("kind", f.kind.as_str())
                    .with("error", f.message.as_str()),
            );
        }
    }

    fn fail_iteration(&mut self, step: u32, iteration: u32, attempts: u32, failure: &Failure) {
        self.report.iterations_failed += 1;
        self.report.last_error = Some(failure.message.clone());
        self.ctx.journal.emit(
            Event::new("iteration_failed")
                .account(self.account.id)
                .with("step", step)
                .with("iteration", iteration)
                .with("attempts", attempts)
                .with("kind", failure.kind.as_str())
                .with("error", failure.message.as_str()),
        );
    }

    /// One attempt at one iteration: a browser, `before` if not yet run, the actions.
    async fn attempt(
        &mut self,
        step: &Step,
        iteration: u32,
        before_done: &mut bool,
    ) -> Result<(), Failure> {
        if self.session.is_none() {
            self.launch().await?;
            *before_done = false;
        }
        if !*before_done {
            self.actions(step, 0, &step.before)
                .await
                .map_err(|f| Failure {
                    kind: f.kind,
                    message: format!("before: {}", f.message),
                    in_before: true,
                })?;
            *before_done = true;
        }
        self.actions(step, iteration, &step.actions).await
    }

    async fn actions(
        &mut self,
        step: &Step,
        iteration: u32,
        actions: &[Action],
    ) -> Result<(), Failure> {
        let ctx = Arc::clone(&self.ctx);
        let session = self.session.as_ref().expect("a browser is live here");
        let project = &ctx.plan.project;
        let workflow_file = project.workflow.path.display().to_string();
        let mut env = ActionEnv {
            driver: session.browser.driver(),
            info: session.browser.info(),
            vars: Vars {
                base_url: &project.workflow.base_url,
                account: &self.account,
                iteration,
                step: step.id,
            },
            timeouts: project.settings.timeouts,
            workflow_file: &workflow_file,
            run_dir: &ctx.run_dir,
            exec_dir: &project.settings.root,
            values: &mut self.values,
            secrets: ctx.journal.secrets(),
        };
        run_actions(actions, &mut env).await
    }

    /// Through the creation lock and the memory gate, start a browser.
    async fn launch(&mut self) -> Result<(), Failure> {
        let ctx = Arc::clone(&self.ctx);
        let id = self.account.id;
        let guard = ctx.lock.acquire().await;
        if ctx.lock.is_enabled() {
            ctx.journal
                .emit(Event::new("launch_lock_acquired").account(id));
        }
        guard.pace().await;
        ctx.memory.wait_for_room(&ctx.journal, id).await;
        let result = self.create_browser().await;
        // Journal the release while still holding the lock: otherwise the next holder's
        // `launch_lock_acquired` can be written before our `launch_lock_released`.
        if ctx.lock.is_enabled() {
            ctx.journal
                .emit(Event::new("launch_lock_released").account(id));
        }
        drop(guard);
        result
    }

    /// Start the browser (inside the lock, if any) and journal the outcome.
    async fn create_browser(&mut self) -> Result<(), Failure> {
        let ctx = Arc::clone(&self.ctx);
        let id = self.account.id;
        let settings = &ctx.plan.project.settings;
        let ephemeral = match &self.profile {
            Some(_) => None,
            None => Some(
                profiles::ephemeral(&ctx.ephemeral_parent)
                    .map_err(|e| Failure::new(FailureKind::Launch, e.to_string()))?,
            ),
        };
        let profile_dir = self
            .profile
            .as_ref()
            .or(ephemeral.as_ref())
            .expect("one of them")
            .path()
            .to_path_buf();
        let mut spec = LaunchSpec::new(ctx.binaries.clone(), &profile_dir);
        spec.headless = !ctx.plan.headed;
        spec.args = settings.browser.args.clone();
        spec.window_size = settings.browser.window_size;
        spec.proxy = self
            .account
            .fields
            .get("proxy")
            .map(|v| v.value.clone())
            .filter(|p| !p.is_empty());
        spec.ports = ctx.ports.clone();
        spec.request_timeout = settings.timeouts.webdriver;
        spec.launch_timeout = settings.timeouts.launch;
        spec.registry = Some(Arc::clone(&ctx.registry));
        let launched = Browser::launch(&spec).await;
        self.report.browser_launches += 1;
        match launched {
            Ok(browser) => {
                let info = browser.info();
                ctx.journal.emit(
                    Event::new("browser_created")
                        .account(id)
                        .with("pid", info.pid)
                        .with("port", info.devtools_port)
                        .with("driver_port", info.driver_port)
                        .with("driver_pid", info.driver_pid)
                        .with("session_id", info.session_id.as_str())
                        .with("profile", info.profile.display().to_string())
                        .with("launch_ms", info.launch_time.as_millis() as u64),
                );
                ctx.memory.track(id, info.driver_pid);
                self.session = Some(Session {
                    browser,
                    _ephemeral: ephemeral,
                });
                Ok(())
            }
            Err(e) => {
                let message = crate::config::redact(&e.to_string(), &self.account);
                ctx.journal.emit(
                    Event::new("launch_failed")
                        .account(id)
                        .with("error", message.as_str()),
                );
                Err(Failure::new(FailureKind::Launch, message))
            }
        }
    }

    /// The browser is gone or untrustworthy: journal it and tear it down completely.
    async fn drop_browser(&mut self, failure: &Failure) {
        let Some(session) = self.session.take() else {
            return;
        };
        self.ctx.memory.untrack(self.account.id);
        let info = session.browser.info().clone();
        let observed = session.browser.health();
        self.ctx.journal.emit(
            Event::new("browser_crashed")
                .account(self.account.id)
                .with("pid", info.pid)
                .with("kind", observed.unwrap_or(failure.kind).as_str())
                .with("error", failure.message.as_str()),
        );
        session.browser.kill().await;
    }

    /// A screenshot at each failure, if the page can still give one.
    async fn failure_screenshot(&self, step: u32, iteration: u32, attempt: u32) {
        let Some(session) = &self.session else { return };
        if session.browser.health().is_some() {
            return;
        }
        let shot = tokio::time::timeout(
            Duration::from_secs(5),
            session.browser.driver().screenshot_as_png(),
        )
        .await;
        if let Ok(Ok(png)) = shot {
            let name = format!("failure-step{step}-iteration{iteration}-attempt{attempt}");
            let path = screenshot_path(&self.ctx.run_dir, self.account.id, &name);
            let _ = save_png(&path, &png);
        }
    }
}
