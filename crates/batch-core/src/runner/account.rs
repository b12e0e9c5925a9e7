//! One account's journey: check a browser out of its pool, run each step's `before`,
//! its iterations (each retried on failure, with a fresh browser when the old one is
//! gone), its `after`, and report.
//!
//! Recovery policy, in one place: every failed attempt is retried up to `retries`
//! times with exponential backoff; a failure whose kind needs a new browser (browser
//! or driver gone, renderer crashed, driver hung, launch failed) first replaces the
//! browser — same persistent profile — and runs `before` again. No useless sleep
//! after the last attempt; the last real error is what gets reported.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::Instrument;

use super::Ctx;
use super::actions::{ActionEnv, Failure, run_actions, save_png, screenshot_path};
use super::pool::Pool;
use crate::config::{Account, Action, Step, Vars};
use crate::journal::Event;
use crate::report::AccountReport;

struct AccountRun {
    ctx: Arc<Ctx>,
    account: Arc<Account>,
    // Field order matters: the pool's browsers must be gone before the profile lock
    // is released.
    pool: Pool,
    profile: Option<profiles::Profile>,
    report: AccountReport,
    values: BTreeMap<String, Value>,
    /// Iterations of the whole run for this account (steps × quantity).
    total: u64,
    /// A launch error that cannot get better (a missing binary, a refused spawn):
    /// every later iteration fails with it at once instead of retrying.
    launch_broken: Option<Failure>,
}

pub(crate) async fn run_account(
    ctx: Arc<Ctx>,
    account: Account,
    order: usize,
    profile: Option<profiles::Profile>,
) -> AccountReport {
    let id = account.id;
    let span = tracing::info_span!("account", account = id);
    let account = Arc::new(account);
    let total = ctx.plan.mode.steps().len() as u64 * u64::from(ctx.plan.quantity);
    let pool = Pool::new(
        Arc::clone(&ctx),
        Arc::clone(&account),
        order,
        profile.as_ref().map(|p| p.path().to_path_buf()),
    );
    let mut run = AccountRun {
        report: AccountReport {
            id,
            status: "ok".into(),
            ..Default::default()
        },
        ctx,
        account,
        pool,
        profile,
        values: BTreeMap::new(),
        total,
        launch_broken: None,
    };
    let cancel = run.ctx.cancel.clone();
    let interrupted = tokio::select! {
        biased;
        _ = cancel.cancelled() => true,
        _ = run.all_steps().instrument(span) => false,
    };
    let seat = run.pool.close(interrupted).await;
    run.report.browser_launches = run.pool.launches;
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
    // Only now may the next account (sequential mode, a full cap) take the seat.
    drop(seat);
    report
}

impl AccountRun {
    /// Iterations still to run (the scheduler admits accounts with more first).
    fn remaining(&self) -> u64 {
        self.total
            .saturating_sub(self.report.iterations_ok + self.report.iterations_failed)
    }

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
                        let remaining = self.remaining();
                        let had = self.pool.browser().is_some();
                        self.pool.checkin(remaining).await;
                        if had && self.pool.browser().is_none() {
                            // Retired: the next browser runs `before` again.
                            before_done = false;
                        }
                        break;
                    }
                    Err(f) => f,
                };
                self.failure_screenshot(step.id, iteration, attempt + 1)
                    .await;
                // A suspected loss is confirmed (processes + one cheap request) before
                // the browser is replaced; see `launcher::confirm_loss`.
                let needs_new = match self.pool.browser() {
                    Some(b) => launcher::confirm_loss(b, failure.kind).await.is_some(),
                    None => failure.kind.needs_new_browser(),
                };
                if needs_new {
                    self.pool.discard(&failure).await;
                    before_done = false;
                }
                if attempt < self.ctx.plan.retries && !failure.permanent {
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
                if failure.in_before || failure.permanent {
                    before_broken = Some(failure);
                }
                break;
            }
        }
        let after_failed = if !step.after.is_empty()
            && self.pool.browser().is_some()
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
            true
        } else {
            false
        };
        // The step is over: its logged-in state travels on to the next browser.
        if !after_failed {
            self.save_storage(step.id).await;
        }
    }

    /// Where this account's storage state lives, when the run carries one.
    fn storage_path(&self) -> Option<std::path::PathBuf> {
        self.ctx.plan.storage_state.then(|| {
            super::storage::path_for(
                &self.ctx.plan.project.settings.profiles.root,
                self.account.id,
            )
        })
    }

    async fn save_storage(&self, step: u32) {
        let (Some(path), Some(browser)) = (self.storage_path(), self.pool.browser()) else {
            return;
        };
        let event = match super::storage::save(browser.driver(), &path).await {
            Ok(c) => Event::new("storage_saved")
                .with("cookies", c.cookies)
                .with("origins", c.origins),
            Err(e) => Event::new("storage_save_failed").with("error", e),
        };
        self.ctx
            .journal
            .emit(event.account(self.account.id).with("step", step));
    }

    /// A fresh browser gets the account's saved state before anything runs in it. A
    /// state that cannot be restored is journaled, not fatal: `before` still runs and
    /// can log in again.
    async fn restore_storage(&self) {
        let (Some(path), Some(browser)) = (self.storage_path(), self.pool.browser()) else {
            return;
        };
        let event = match super::storage::restore(browser.driver(), &path).await {
            Ok(Some(c)) => Event::new("storage_restored")
                .with("cookies", c.cookies)
                .with("origins", c.origins),
            Ok(None) => return,
            Err(e) => Event::new("storage_restore_failed").with("error", e),
        };
        self.ctx.journal.emit(event.account(self.account.id));
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
        if let Some(f) = &self.launch_broken {
            return Err(f.clone());
        }
        let fresh = match self.pool.checkout(self.remaining()).await {
            Ok(fresh) => fresh,
            Err(f) => {
                if f.permanent {
                    self.launch_broken = Some(f.clone());
                }
                return Err(f);
            }
        };
        if fresh {
            *before_done = false;
            self.restore_storage().await;
        }
        if !*before_done {
            self.actions(step, 0, &step.before)
                .await
                .map_err(|f| Failure {
                    message: format!("before: {}", f.message),
                    in_before: true,
                    ..f
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
        let browser = self.pool.browser().expect("a browser is checked out here");
        let project = &ctx.plan.project;
        let workflow_file = project.workflow.path.display().to_string();
        let mut env = ActionEnv {
            driver: browser.driver(),
            info: browser.info(),
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

    /// A screenshot at each failure, if the page can still give one.
    async fn failure_screenshot(&self, step: u32, iteration: u32, attempt: u32) {
        let Some(browser) = self.pool.browser() else {
            return;
        };
        if browser.health().is_some() {
            return;
        }
        let shot =
            tokio::time::timeout(Duration::from_secs(5), browser.driver().screenshot_as_png())
                .await;
        if let Ok(Ok(png)) = shot {
            let name = format!("failure-step{step}-iteration{iteration}-attempt{attempt}");
            let path = screenshot_path(&self.ctx.run_dir, self.account.id, &name);
            let _ = save_png(&path, &png);
        }
    }
}
