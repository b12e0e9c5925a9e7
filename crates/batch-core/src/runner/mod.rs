//! Running a [`Plan`]: the run directory, the journal, one task per account, the
//! report. This module owns all concurrency policy, and one place decides it: the
//! [`scheduler`] admits every browser creation (the cap — sequential mode is a cap of
//! one —, the creation lock or adaptive [`pacer`], memory and CPU), each account
//! checks its browsers out of its own [`pool`], and cancellation shuts everything down.
//!
//! One account's failure is a value ([`AccountReport`] with its status), never an
//! abort: the batch always goes on and always writes its report.

mod account;
mod actions;
mod exec;
pub(crate) mod pacer;
mod pool;
mod rundir;
pub(crate) mod scheduler;
mod storage;

pub use storage::path_for as storage_state_path;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use launcher::{Binaries, Registry};
use tokio_util::sync::CancellationToken;

use crate::config::{Account, ConfigError, LaunchInterval, Secrets};
use crate::journal::{Event, Journal, Observer, now_rfc3339};
use crate::report::{AccountReport, Report};
use crate::resources::{CpuPressure, Memory};
use crate::{Plan, exit};
use scheduler::{Pacing, Policy, Probe, Readings, Scheduler};

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
    /// An account's profile is locked by another process (exit 2); any other trouble
    /// taking it (e.g. out of file descriptors) is [`RunError::Profiles`].
    #[error("account {account}: {source}")]
    ProfileInUse {
        /// The account.
        account: u64,
        /// The lock error.
        source: profiles::ProfileError,
    },
    /// An account's storage state is in use by another process (exit 2).
    #[error(
        "account {account}: its storage state ({path}) is in use by another batch-cli process (expected each account in one run at a time)"
    )]
    StateInUse {
        /// The account.
        account: u64,
        /// The state's directory.
        path: PathBuf,
    },
    /// The profiles root cannot be used (exit 3).
    #[error("profiles: {0}")]
    Profiles(profiles::ProfileError),
    /// No usable browser or driver (exit 3).
    #[error(transparent)]
    Environment(#[from] launcher::LaunchError),
    /// Writing the journal failed mid-run (disk full, I/O error): the run was stopped
    /// there, and the file ends with its last complete line (exit 3).
    #[error("{path}: the journal could not be written ({reason}); the run was stopped")]
    Journal {
        /// The journal's path.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
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
            RunError::Config(_) | RunError::ProfileInUse { .. } | RunError::StateInUse { .. } => {
                exit::USAGE
            }
            RunError::Environment(_)
            | RunError::Profiles(_)
            | RunError::Io { .. }
            | RunError::Journal { .. } => exit::ENVIRONMENT,
        }
    }
}

/// Shared by all account tasks of one run.
pub(crate) struct Ctx {
    pub(crate) plan: Plan,
    pub(crate) journal: Journal,
    pub(crate) scheduler: Scheduler,
    /// Names of our environment variables whose value is a secret: kept out of the
    /// driver's and Chrome's environment.
    pub(crate) secret_env: Vec<String>,
    pub(crate) memory: Memory,
    /// `None` for a remote run: nothing is started here.
    pub(crate) binaries: Option<Binaries>,
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

/// Run the plan to the end (or until `cancel`), leaving a run directory behind.
pub async fn run(
    plan: Plan,
    observer: Observer,
    cancel: CancellationToken,
) -> Result<RunOutcome, RunError> {
    let settings = &plan.project.settings;
    // A remote run starts no browser here: neither binary is needed.
    let binaries = match &plan.webdriver_url {
        Some(_) => None,
        None => Some(Binaries::locate(
            settings.browser.chromium.as_deref(),
            settings.browser.chromedriver.as_deref(),
        )?),
    };

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
    // A remote browser has no profile directory of ours: nothing to lock.
    if !settings.profiles.ephemeral && plan.webdriver_url.is_none() {
        let store =
            profiles::ProfileStore::open(&settings.profiles.root).map_err(RunError::Profiles)?;
        for a in &accounts {
            let p = store
                .acquire(&a.id.to_string())
                .map_err(|source| match source {
                    profiles::ProfileError::InUse { .. }
                    | profiles::ProfileError::LiveChrome { .. } => RunError::ProfileInUse {
                        account: a.id,
                        source,
                    },
                    other => RunError::Profiles(other),
                })?;
            held.push(Some(p));
        }
    } else {
        held.resize_with(accounts.len(), || None);
    }

    // Portable sessions: each account's state is this run's alone (see `storage`).
    let mut _state_locks = Vec::new();
    if plan.storage_state {
        for a in &accounts {
            let root = &settings.profiles.root;
            match storage::lock(root, a.id) {
                Ok(Some(f)) => _state_locks.push(f),
                Ok(None) => {
                    let path = storage::path_for(root, a.id);
                    return Err(RunError::StateInUse {
                        account: a.id,
                        path: path.parent().unwrap_or(&path).to_path_buf(),
                    });
                }
                Err(source) => {
                    return Err(RunError::Io {
                        path: storage::path_for(root, a.id),
                        source,
                    });
                }
            }
        }
    }

    let ports = match settings.ports.range {
        Some((lo, hi)) => Some(
            ports::PortAllocator::new(ports::default_lock_dir(), Some(lo..=hi))
                .map_err(|e| RunError::Environment(e.into()))?,
        ),
        None => None,
    };

    let (run_id, run_dir) =
        rundir::create_run_dir(&plan.output, rundir::new_run_id).map_err(io_err(&plan.output))?;
    let journal_path = run_dir.join("events.jsonl");
    let secrets = {
        let accounts: Vec<&Account> = accounts.iter().collect();
        let env = crate::config::process_env;
        Secrets::for_run(&plan.project.workflow, &accounts, &plan.argv, &env)
    };
    let journal = Journal::open(&journal_path, observer, secrets, cancel.clone())
        .map_err(io_err(&journal_path))?;
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
                "launch_interval",
                match plan.launch_interval {
                    LaunchInterval::Auto => "auto".to_string(),
                    LaunchInterval::Fixed(d) => format!("{}ms", d.as_millis()),
                },
            )
            .with(
                "launch_interval_ms",
                match plan.launch_interval {
                    LaunchInterval::Auto => None,
                    LaunchInterval::Fixed(d) => Some(d.as_millis() as u64),
                },
            )
            .with("retries", plan.retries)
            // Where browsers come from: `null` = started here.
            .with("webdriver_url", plan.webdriver_url.clone())
            .with("storage_state", plan.storage_state)
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
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let grid_slots = match &plan.webdriver_url {
        Some(url) if plan.concurrent && plan.max_concurrent.is_none() => {
            grid_capacity(url, &journal).await
        }
        _ => None,
    };
    let policy = Policy {
        // Sequential mode is the same scheduler with room for one account. On a Grid
        // the slots are the resource: without a cap of the user's, accounts beyond
        // them wait here (journaled) rather than time out in the Grid's queue.
        cap: if plan.concurrent {
            plan.max_concurrent.or(grid_slots)
        } else {
            Some(1)
        },
        pacing: match plan.launch_interval {
            LaunchInterval::Fixed(interval) => Pacing::Fixed {
                interval,
                locked: plan.launch_lock,
            },
            LaunchInterval::Auto => Pacing::Auto {
                locked: plan.launch_lock,
            },
        },
        cores,
        start_overlap: 2 * cores,
        // A third of the launch timeout: shrink well before launches time out.
        latency_budget: settings.timeouts.launch / 3,
    };
    let probe = Arc::new(MachineProbe {
        memory: memory.clone(),
        cpu: CpuPressure::new(cores),
    });
    let ctx = Arc::new(Ctx {
        scheduler: Scheduler::new(policy, probe, journal.clone()),
        secret_env: secret_env(journal.secrets()),
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
    sampler.stop().await;

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
        a.browsers = memory
            .browser_peaks()
            .into_iter()
            .filter(|((account, _), _)| *account == a.id)
            .map(|((_, launch), peak)| crate::report::BrowserReport {
                launch,
                peak_pss_bytes: peak,
            })
            .collect();
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
    if journal.failure().is_some() {
        report.exit_code = exit::ENVIRONMENT;
    }
    report.redact(journal.secrets());
    journal.emit(
        Event::new("run_finished")
            .with("exit_code", report.exit_code)
            .with("interrupted", interrupted)
            .with("iterations_ok", report.totals.iterations_ok)
            .with("iterations_failed", report.totals.iterations_failed)
            .with("browser_launches", report.totals.browser_launches)
            .with("retries", report.totals.retries)
            .with("runner_peak_rss_bytes", fsutil::proc::own_peak_rss()),
    );
    journal.sync();
    let report_path = run_dir.join("report.json");
    let written = report.write(&report_path);
    journal.close();
    if let Some(reason) = journal.failure() {
        return Err(RunError::Journal {
            path: journal_path,
            reason,
        });
    }
    written.map_err(io_err(&report_path))?;
    Ok(RunOutcome {
        exit_code: report.exit_code,
        run_dir,
        report,
    })
}

/// Variables of our environment whose whole value is a secret (`{ env = ... }`
/// fields, `{env.NAME}` values, credentials): the driver and Chrome need none of them.
fn secret_env(secrets: &Secrets) -> Vec<String> {
    if secrets.is_empty() {
        return Vec::new();
    }
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(_, v)| !v.is_empty() && secrets.redact(v).trim() == "***")
        .map(|(k, _)| k)
        .collect()
}

/// A Grid's slot count (its nodes' slots, summed), journaled as `grid_capacity`;
/// `None` when the endpoint is no Grid or does not say.
async fn grid_capacity(url: &str, journal: &Journal) -> Option<usize> {
    let status = launcher::endpoint_status(url).await.ok()?;
    let slots: usize = status.nodes.iter().map(|n| n.slots).sum();
    journal.emit(
        Event::new("grid_capacity")
            .with("nodes", status.nodes.len())
            .with("slots", slots),
    );
    (slots > 0).then_some(slots)
}

/// The machine, as the scheduler reads it.
struct MachineProbe {
    memory: Memory,
    cpu: CpuPressure,
}

impl Probe for MachineProbe {
    fn read(&self) -> Readings {
        Readings {
            available: crate::resources::available_memory(),
            threshold: self.memory.threshold(),
            browser_cost: self.memory.browser_cost(),
            pressure: self.cpu.read(),
        }
    }
}

/// Every account as its own task — in every mode, so a panic is always that account's
/// failure; the scheduler decides when each may create a browser (sequential mode:
/// a cap of one, with each task started after the previous one ended, for plan
/// order). Results in plan order.
async fn run_accounts(
    ctx: &Arc<Ctx>,
    accounts: Vec<Account>,
    held: Vec<Option<profiles::Profile>>,
) -> Vec<AccountReport> {
    let mut handles = Vec::new();
    let mut out = Vec::new();
    for (order, (account, profile)) in accounts.into_iter().zip(held).enumerate() {
        let id = account.id;
        let h = tokio::spawn(account::run_account(
            Arc::clone(ctx),
            account,
            order,
            profile,
        ));
        if ctx.plan.concurrent {
            handles.push((id, h));
        } else {
            // Sequential: the cap of one admits whoever asks first, so the next
            // account's task is started only once this one is done (plan order).
            out.push(joined(ctx, id, h.await));
        }
    }
    for (id, h) in handles {
        out.push(joined(ctx, id, h.await));
    }
    out
}

/// An account task's report. A panic in one account is that account's failure; its
/// browser was killed by Drop while unwinding.
fn joined(
    ctx: &Ctx,
    id: u64,
    result: Result<AccountReport, tokio::task::JoinError>,
) -> AccountReport {
    match result {
        Ok(r) => r,
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
    }
}
