//! Running a [`Plan`]: the run directory, the journal, one task per account, the
//! report. This module owns all concurrency policy: accounts one after another or all
//! at once (with an optional cap), creations through the creation lock and the memory
//! gate, and shutdown on cancellation.
//!
//! One account's failure is a value ([`AccountReport`] with its status), never an
//! abort: the batch always goes on and always writes its report.

mod account;
mod actions;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use launcher::{Binaries, CreationLock, Registry};
use tokio_util::sync::CancellationToken;

use crate::config::{Account, ConfigError};
use crate::journal::{Event, Journal, Observer, now_rfc3339};
use crate::report::{AccountReport, Report};
use crate::resources::Memory;
use crate::{Plan, exit};

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// The process exit code (see [`crate::exit`]).
    pub exit_code: i32,
    /// Where the run's files are.
    pub run_dir: PathBuf,
    /// The report as written.
    pub report: Report,
}

/// Why a run could not start (nothing was launched).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad input (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An account's profile is locked by another process (exit 2).
    #[error("account {account}: {source}")]
    ProfileInUse {
        /// The account.
        account: u64,
        /// The lock error.
        source: profiles::ProfileError,
    },
    /// The profiles root cannot be used (exit 3).
    #[error("profiles: {0}")]
    Profiles(profiles::ProfileError),
    /// No usable browser or driver (exit 3).
    #[error(transparent)]
    Environment(#[from] launcher::LaunchError),
    /// The run directory or journal could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl RunError {
    /// The exit code this error means.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) | RunError::ProfileInUse { .. } => exit::USAGE,
            RunError::Environment(_) | RunError::Profiles(_) | RunError::Io { .. } => {
                exit::ENVIRONMENT
            }
        }
    }
}

/// Shared by all account tasks of one run.
pub(crate) struct Ctx {
    pub(crate) plan: Plan,
    pub(crate) journal: Journal,
    pub(crate) lock: CreationLock,
    pub(crate) memory: Memory,
    pub(crate) binaries: Binaries,
    pub(crate) registry: Arc<Registry>,
    pub(crate) ports: Option<ports::PortAllocator>,
    pub(crate) run_dir: PathBuf,
    pub(crate) ephemeral_parent: PathBuf,
    pub(crate) cancel: CancellationToken,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn private_dir(path: &Path) -> Result<(), RunError> {
    fsutil::private_dir(path).map_err(io_err(path))
}

/// A new run id: UTC time to the second plus 4 random-ish hex digits, so that two runs
/// started in the same second (e.g. two processes) get different directories.
fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    let salt = (std::process::id() as u64 ^ now.nanosecond() as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> 48;
    format!("{}-{:04x}", now.format(&fmt).expect("utc formats"), salt)
}

/// Run the plan to the end (or until `cancel`), leaving a run directory behind.
pub async fn run(
    plan: Plan,
    observer: Observer,
    cancel: CancellationToken,
) -> Result<RunOutcome, RunError> {
    let settings = &plan.project.settings;
    let binaries = Binaries::locate(
        settings.browser.chromium.as_deref(),
        settings.browser.chromedriver.as_deref(),
    )?;

    // Reap what a killed runner left before taking anything ourselves.
    let runtime = launcher::runtime_dir();
    let registry = Arc::new(Registry::open(&runtime)?);
    let reaped = registry.reap()?;
    let ephemeral_parent = runtime.join("profiles");
    let reaped_profiles = profiles::reap_ephemeral(&ephemeral_parent).unwrap_or_default();

    // Lock every persistent profile up front: an account in use by another process is
    // an error before anything launches, and the other process is never disturbed.
    let accounts: Vec<Account> = plan
        .accounts
        .iter()
        .map(|id| {
            plan.project
                .accounts
                .accounts
                .iter()
                .find(|a| a.id == *id)
                .cloned()
                .expect("plan ids are validated")
        })
        .collect();
    let mut held = Vec::new();
    if !settings.profiles.ephemeral {
        let store =
            profiles::ProfileStore::open(&settings.profiles.root).map_err(RunError::Profiles)?;
        for a in &accounts {
            let p = store
                .acquire(&a.id.to_string())
                .map_err(|source| RunError::ProfileInUse {
                    account: a.id,
                    source,
                })?;
            held.push(Some(p));
        }
    } else {
        held.resize_with(accounts.len(), || None);
    }

    let ports = match settings.ports.range {
        Some((lo, hi)) => Some(
            ports::PortAllocator::new(ports::default_lock_dir(), Some(lo..=hi))
                .map_err(|e| RunError::Environment(e.into()))?,
        ),
        None => None,
    };

    let run_id = new_run_id();
    let run_dir = plan.output.join(&run_id);
    private_dir(&run_dir)?;
    let journal_path = run_dir.join("events.jsonl");
    let journal = Journal::open(&journal_path, observer).map_err(io_err(&journal_path))?;
    let started_at = now_rfc3339();
    journal.emit(
        Event::new("run_started")
            .with("run_id", run_id.as_str())
            .with("run_dir", run_dir.display().to_string())
            .with("accounts", plan.accounts.clone())
            .with("steps", plan.mode.steps())
            .with("quantity", plan.quantity)
            .with("concurrent", plan.concurrent)
            .with("max_concurrent", plan.max_concurrent)
            .with("launch_lock", plan.launch_lock)
            .with(
                "launch_interval_ms",
                plan.launch_interval.as_millis() as u64,
            )
            .with("retries", plan.retries)
            .with("argv", plan.argv.clone()),
    );
    if reaped.records > 0 || !reaped_profiles.is_empty() {
        journal.emit(
            Event::new("reaped")
                .with("processes", reaped.killed.clone())
                .with("browsers", reaped.records)
                .with("ephemeral_profiles", reaped_profiles.len()),
        );
    }

    let memory = Memory::new(settings.resources.min_available_memory);
    memory.set_control_file(run_dir.join("min_available_memory"));
    let sampler = memory.spawn_sampler(journal.clone(), settings.resources.sample_interval);
    let ctx = Arc::new(Ctx {
        lock: CreationLock::new(plan.launch_lock, plan.launch_interval),
        plan,
        journal: journal.clone(),
        memory: memory.clone(),
        binaries,
        registry,
        ports,
        run_dir: run_dir.clone(),
        ephemeral_parent,
        cancel: cancel.clone(),
    });

    let reports = run_accounts(&ctx, accounts, held).await;
    sampler.abort();

    let interrupted = cancel.is_cancelled();
    let mut report = Report {
        run_id,
        started_at,
        finished_at: now_rfc3339(),
        interrupted,
        accounts: reports,
        memory: memory.report(),
        ..Default::default()
    };
    for a in &mut report.accounts {
        a.peak_browser_pss_bytes = memory.peak_of(a.id);
    }
    report.sum_totals();
    let all_ok = report.accounts.iter().all(|a| a.status == "ok");
    report.exit_code = if interrupted {
        exit::INTERRUPTED
    } else if all_ok {
        exit::OK
    } else {
        exit::SOME_FAILED
    };
    journal.emit(
        Event::new("run_finished")
            .with("exit_code", report.exit_code)
            .with("interrupted", interrupted)
            .with("iterations_ok", report.totals.iterations_ok)
            .with("iterations_failed", report.totals.iterations_failed)
            .with("browser_launches", report.totals.browser_launches)
            .with("retries", report.totals.retries),
    );
    journal.sync();
    let report_path = run_dir.join("report.json");
    report.write(&report_path).map_err(io_err(&report_path))?;
    if let Some(e) = journal.take_error() {
        return Err(RunError::Io {
            path: journal_path,
            source: e,
        });
    }
    Ok(RunOutcome {
        exit_code: report.exit_code,
        run_dir,
        report,
    })
}

/// One after another, or all at once (up to `max_concurrent`). Results in plan order.
async fn run_accounts(
    ctx: &Arc<Ctx>,
    accounts: Vec<Account>,
    held: Vec<Option<profiles::Profile>>,
) -> Vec<AccountReport> {
    let ids: Vec<u64> = accounts.iter().map(|a| a.id).collect();
    if !ctx.plan.concurrent {
        let mut out = Vec::new();
        for (account, profile) in accounts.into_iter().zip(held) {
            out.push(account::run_account(Arc::clone(ctx), account, profile).await);
        }
        return out;
    }
    let cap = ctx.plan.max_concurrent.unwrap_or(ids.len()).max(1);
    let permits = Arc::new(tokio::sync::Semaphore::new(cap));
    let mut handles = Vec::new();
    for (account, profile) in accounts.into_iter().zip(held) {
        let (ctx, permits) = (Arc::clone(ctx), Arc::clone(&permits));
        handles.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            account::run_account(ctx, account, profile).await
        }));
    }
    let mut out = Vec::new();
    for (id, h) in ids.into_iter().zip(handles) {
        out.push(match h.await {
            Ok(r) => r,
            // A panic in one account is that account's failure; its browser was killed
            // by Drop while unwinding.
            Err(e) => {
                let msg = if e.is_panic() {
                    "internal error (panic)"
                } else {
                    "task cancelled"
                };
                ctx.journal.emit(
                    Event::new("account_done")
                        .account(id)
                        .with("status", "error")
                        .with("error", msg),
                );
                AccountReport {
                    id,
                    status: "error".into(),
                    last_error: Some(msg.into()),
                    ..Default::default()
                }
            }
        });
    }
    out
}
