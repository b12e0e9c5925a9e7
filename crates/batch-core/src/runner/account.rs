//! One account's journey: check a browser out of its pool, run each step's `before`,
//! its iterations (each retried on failure, with a fresh browser when the old one is
//! gone), its `after`, and journal what happened (the report is the journal's fold).
//!
//! A resumed run skips the iterations its journal has as done; a step with none left
//! is skipped whole (its `before` and `after` too), and `before` runs again, on the
//! new browser, for the first step that still has work.
//!
//! Recovery policy, in one place: every failed attempt is retried up to `retries`
//! times with exponential backoff; a failure whose kind needs a new browser (browser
//! or driver gone, renderer crashed, driver hung, launch failed) first replaces the
//! browser — same persistent profile — and runs `before` again. No useless sleep
//! after the last attempt; the last real error is what gets reported.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::Ctx;
use super::actions::{ActionEnv, Failure, run_actions, save_png, screenshot_path};
use super::downloads::{self, Downloads, Phase};
use super::pool::Pool;
use crate::config::{Account, Action, Step, Vars};
use crate::health::{AccountHealth, Quarantine, Signal};
use crate::journal::Event;
use crate::report::AccountReport;
use launcher::thirtyfour::By;

struct AccountRun {
    ctx: Arc<Ctx>,
    account: Arc<Account>,
    // Field order matters: the pool's browsers must be gone before the profile lock
    // is released.
    pool: Pool,
    profile: Option<profiles::Profile>,
    report: AccountReport,
    /// Iterations of this part of the run for this account (steps × quantity, less
    /// what a resumed run's journal has as done).
    total: u64,
    /// A launch error that cannot get better (a missing binary, a refused spawn):
    /// every later iteration fails with it at once instead of retrying.
    launch_broken: Option<Failure>,
    /// The account's health as of its last attempt (see `crate::health`).
    health: AccountHealth,
    /// Set aside by `[health]`: nothing more of it runs.
    quarantined: bool,
}

pub(crate) async fn run_account(
    ctx: Arc<Ctx>,
    account: Account,
    order: usize,
    profile: Option<profiles::Profile>,
) {
    let id = account.id;
    let span = tracing::info_span!("account", account = id);
    let account = Arc::new(account);
    let total = ctx.plan.remaining(id).len() as u64;
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
        total,
        launch_broken: None,
        health: AccountHealth::default(),
        quarantined: false,
    };
    run.health = run
        .ctx
        .health
        .load()
        .ok()
        .and_then(|all| all.get(&id).cloned())
        .unwrap_or_default();
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
    if interrupted {
        report.status = "interrupted".into();
    } else if run.quarantined {
        report.status = "quarantined".into();
    } else if report.iterations_failed > 0 {
        // (`after` failures have already set "failed".)
        report.status = "failed".into();
    }
    run.ctx.journal.emit(Event::AccountDone {
        account: id,
        status: report.status.clone(),
        iterations_ok: report.iterations_ok,
        iterations_failed: report.iterations_failed,
        browser_launches: report.browser_launches,
        retries: report.retries,
        error: None,
    });
    // Only now may the next account (sequential mode, a full cap) take the seat.
    drop(seat);
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
            if self.quarantined {
                break;
            }
        }
    }

    fn is_done(&self, step: u32, iteration: u32) -> bool {
        self.ctx
            .plan
            .resume
            .as_ref()
            .is_some_and(|r| r.is_done(self.account.id, step, iteration))
    }

    async fn run_step(&mut self, step: &Step) {
        let quantity = self.ctx.plan.quantity;
        if (1..=quantity).all(|i| self.is_done(step.id, i)) {
            // Resumed, and this step was finished before: nothing of it runs again.
            return;
        }
        // `before` runs whenever the account gets a browser for this step.
        let mut before_done = false;
        // Once `before` has failed for good, the step's remaining iterations fail
        // with it instead of each repeating the same doomed retries.
        let mut before_broken: Option<Failure> = None;
        for iteration in 1..=quantity {
            if self.is_done(step.id, iteration) {
                continue;
            }
            if let Some(f) = &before_broken {
                self.fail_iteration(step.id, iteration, 0, f, None);
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
                        self.ctx.journal.emit(Event::IterationOk {
                            account: self.account.id,
                            step: step.id,
                            iteration,
                            attempt: attempt + 1,
                        });
                        if !self.health.is_clear() {
                            self.record_health(Signal::Success);
                        }
                        let remaining = self.remaining();
                        let had = self.pool.browser().is_some();
                        self.pool.checkin(remaining).await;
                        if had && self.pool.browser().is_none() {
                            // Retired: the next browser runs `before` again.
                            before_done = false;
                        }
                        break;
                    }
                    Err(f) => self.pool.explain(f),
                };
                // Where the page was, and its screenshot (the last attempt's go
                // into `iteration_failed`).
                let context = self.failure_context(step.id, iteration, attempt + 1).await;
                // Account health, read from the page before anything replaces it: a
                // quarantine ends the account here instead of burning its retries.
                let signal = match self.challenge(step).await {
                    Some(found) => Some(Signal::Challenge(found)),
                    // Only the account's own failures count: a crashed browser, a
                    // hung driver or a failed launch says nothing about the account.
                    None if failure.kind == launcher::FailureKind::ActionFailed => {
                        // Redacted here: the reason is kept in health.json too.
                        let secrets = self.ctx.journal.secrets();
                        Some(Signal::Failure(secrets.redact(&failure.message)))
                    }
                    None => None,
                };
                if let Some(signal) = signal
                    && let Some(q) = self.record_health(signal)
                {
                    self.fail_iteration(step.id, iteration, attempt + 1, &failure, context);
                    self.ctx.journal.emit(Event::AccountQuarantined {
                        account: self.account.id,
                        reason: q.reason,
                        score: q.score,
                        until: crate::health::rfc3339(q.until_ms),
                        cooldown_ms: q.cooldown_ms,
                    });
                    self.quarantined = true;
                    return;
                }
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
                    self.ctx.journal.emit(Event::Retry {
                        account: self.account.id,
                        step: step.id,
                        iteration,
                        attempt: attempt + 1,
                        kind: failure.kind.as_str().into(),
                        error: failure.message.clone(),
                        backoff_ms: backoff.as_millis() as u64,
                    });
                    tokio::time::sleep(backoff.min(Duration::from_secs(30))).await;
                    continue;
                }
                self.fail_iteration(step.id, iteration, attempt + 1, &failure, context);
                if failure.in_before || failure.permanent {
                    before_broken = Some(failure);
                }
                break;
            }
        }
        let after_failed = if !step.after.is_empty()
            && self.pool.browser().is_some()
            && let Err(f) = self.actions(step, Phase::After, &step.after).await
        {
            self.report.status = "failed".into();
            self.report.last_error = Some(f.message.clone());
            self.ctx.journal.emit(Event::AfterFailed {
                account: self.account.id,
                step: step.id,
                kind: f.kind.as_str().into(),
                error: f.message.clone(),
            });
            true
        } else {
            false
        };
        // The step is over: its logged-in state travels on to the next browser.
        if !after_failed {
            self.save_storage(step.id).await;
        }
    }

    /// Apply `signal` to the account's persisted health; `Some` when it is now
    /// quarantined. A state file that cannot be written is logged, and the decision
    /// still holds for this run.
    fn record_health(&mut self, signal: Signal) -> Option<Quarantine> {
        let policy = &self.ctx.plan.project.settings.health;
        let now = crate::health::now_ms();
        match self
            .ctx
            .health
            .record(self.account.id, &signal, now, policy)
        {
            Ok((h, q)) => {
                self.health = h;
                q
            }
            Err(e) => {
                tracing::warn!(error = %e, "health state not saved");
                self.health.record(&signal, now, policy)
            }
        }
    }

    /// The challenge the step or `[health]` names, if the page shows it (each read
    /// bounded). A step's `challenge_selector` / `challenge_text` replaces the
    /// project's key of the same name for that step; the other key still applies.
    async fn challenge(&self, step: &Step) -> Option<String> {
        let h = &self.ctx.plan.project.settings.health;
        let selector = step
            .challenge_selector
            .as_ref()
            .or(h.challenge_selector.as_ref());
        let text = step.challenge_text.as_ref().or(h.challenge_text.as_ref());
        if selector.is_none() && text.is_none() {
            return None;
        }
        let browser = self.pool.browser()?;
        if browser.health().is_some() {
            return None;
        }
        let driver = browser.driver();
        let within = Duration::from_secs(5);
        if let Some(sel) = selector
            && let Ok(Ok(found)) =
                tokio::time::timeout(within, driver.find_all(By::Css(sel.clone()))).await
            && !found.is_empty()
        {
            return Some(format!("challenge: {sel} on the page"));
        }
        if let Some(text) = text
            && let Ok(Ok(source)) = tokio::time::timeout(within, driver.source()).await
            && source.contains(text.as_str())
        {
            return Some(format!("challenge: {text:?} on the page"));
        }
        None
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
        let account = self.account.id;
        let event = match super::storage::save(browser.driver(), &path).await {
            Ok(c) => Event::StorageSaved {
                account,
                step,
                cookies: c.cookies,
                origins: c.origins,
            },
            Err(error) => Event::StorageSaveFailed {
                account,
                step,
                error,
            },
        };
        self.ctx.journal.emit(event);
    }

    /// A fresh browser gets the account's saved state before anything runs in it. A
    /// state that cannot be restored is journaled, not fatal: `before` still runs and
    /// can log in again.
    async fn restore_storage(&self) {
        let (Some(path), Some(browser)) = (self.storage_path(), self.pool.browser()) else {
            return;
        };
        let account = self.account.id;
        let event = match super::storage::restore(browser.driver(), &path).await {
            Ok(Some(c)) => Event::StorageRestored {
                account,
                cookies: c.cookies,
                origins: c.origins,
            },
            Ok(None) => return,
            Err(error) => Event::StorageRestoreFailed { account, error },
        };
        self.ctx.journal.emit(event);
    }

    fn fail_iteration(
        &mut self,
        step: u32,
        iteration: u32,
        attempts: u32,
        failure: &Failure,
        context: Option<PageContext>,
    ) {
        self.report.iterations_failed += 1;
        self.report.last_error = Some(failure.message.clone());
        let context = context.unwrap_or_default();
        self.ctx.journal.emit(Event::IterationFailed {
            account: self.account.id,
            step,
            iteration,
            attempts,
            kind: failure.kind.as_str().into(),
            error: failure.message.clone(),
            url: context.url,
            title: context.title,
            screenshot: context.screenshot,
        });
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
            self.actions(step, Phase::Before, &step.before)
                .await
                .map_err(|f| Failure {
                    message: format!("before: {}", f.message),
                    in_before: true,
                    ..f
                })?;
            *before_done = true;
        }
        self.actions(step, Phase::Iteration(iteration), &step.actions)
            .await
    }

    async fn actions(
        &mut self,
        step: &Step,
        phase: Phase,
        actions: &[Action],
    ) -> Result<(), Failure> {
        let ctx = Arc::clone(&self.ctx);
        let browser = self.pool.browser().expect("a browser is checked out here");
        let project = &ctx.plan.project;
        let workflow_file = project.workflow.path.display().to_string();
        let iteration = phase.iteration();
        let downloads = self.downloads(browser, step.id, phase).await;
        let mut env = ActionEnv {
            driver: browser.driver(),
            info: browser.info(),
            vars: Vars {
                base_url: &project.workflow.base_url,
                account: &self.account,
                iteration,
                step: step.id,
                data: (step.data.as_ref()).and_then(|d| d.row(self.account.id, iteration)),
            },
            timeouts: project.settings.timeouts,
            workflow_file: &workflow_file,
            run_dir: &ctx.run_dir,
            root: &project.settings.root,
            journal: &ctx.journal,
            secrets: ctx.journal.secrets(),
            registry: &ctx.registry,
            downloads,
            windows: None,
        };
        run_actions(actions, &mut env).await
    }

    /// Point the browser at the phase's (emptied) download directory. Not fatal when
    /// it cannot be done: a workflow without downloads must not fail for it (a lost
    /// browser shows in the next action anyway); `wait_download` reports why.
    async fn downloads(
        &self,
        browser: &launcher::Browser,
        step: u32,
        phase: Phase,
    ) -> Result<Downloads, String> {
        if !browser.is_local() {
            return Err("downloads of a remote browser land on its node".into());
        }
        let shown = downloads::relative_dir(self.account.id, step, phase);
        let d = Downloads::new(&self.ctx.run_dir, shown);
        downloads::clear(&d.dir).map_err(|e| format!("{}: {e}", d.shown.display()))?;
        let limit = self.ctx.plan.project.settings.timeouts.webdriver;
        match tokio::time::timeout(limit, browser.allow_downloads(&d.dir)).await {
            Ok(Ok(_)) => Ok(d),
            Ok(Err(e)) => Err(format!(
                "the browser refused downloads: {}",
                launcher::summary(&e)
            )),
            Err(_) => Err(format!(
                "the browser did not answer within {limit:?} when downloads were enabled"
            )),
        }
    }

    /// At each failed attempt, if the page can still say: its URL and title
    /// (redacted) and a screenshot, journaled as `failure_screenshot`.
    async fn failure_context(
        &self,
        step: u32,
        iteration: u32,
        attempt: u32,
    ) -> Option<PageContext> {
        let browser = self.pool.browser()?;
        if browser.health().is_some() {
            return None;
        }
        let driver = browser.driver();
        let secrets = self.ctx.journal.secrets();
        // Each read bounded: a hung page must not hold the retry loop.
        let within = Duration::from_secs(5);
        // A page that cannot say its URL will not give a title or a screenshot
        // either (a hung or lost driver): do not wait three times for it.
        let url = match tokio::time::timeout(within, driver.current_url()).await {
            Ok(Ok(u)) => Some(secrets.redact(u.as_str())),
            _ => return None,
        };
        let title = match tokio::time::timeout(within, driver.title()).await {
            Ok(Ok(t)) => Some(secrets.redact(&t)),
            _ => None,
        };
        let mut screenshot = None;
        if let Ok(Ok(png)) = tokio::time::timeout(within, driver.screenshot_as_png()).await {
            let name = format!("failure-step{step}-iteration{iteration}-attempt{attempt}");
            let path = screenshot_path(&self.ctx.run_dir, self.account.id, &name);
            if save_png(&path, &png).is_ok() {
                screenshot = Some(path.display().to_string());
            }
        }
        if let Some(path) = &screenshot {
            self.ctx.journal.emit(Event::FailureScreenshot {
                account: self.account.id,
                step,
                iteration,
                attempt,
                path: path.clone(),
                url: url.clone(),
                title: title.clone(),
            });
        }
        Some(PageContext {
            url,
            title,
            screenshot,
        })
    }
}

/// Where a failed attempt left the page.
#[derive(Debug, Default)]
struct PageContext {
    url: Option<String>,
    title: Option<String>,
    screenshot: Option<String>,
}
