//! Running a [`Plan`]: the run directory, the journal, one task per account, the
//! report. This module owns all concurrency policy, and one place decides it: the
//! [`scheduler`] admits every browser creation (the cap — sequential mode is a cap of
//! one —, the creation lock or adaptive [`pacer`], memory and CPU), each account
//! checks its browsers out of its own [`pool`], and cancellation shuts everything down.
//!
//! One account's failure is a value ([`AccountReport`] with its status), never an
//! abort: the batch always goes on and always writes its report — which is the fold
//! of the journal ([`Report::from_events`]), never assembled here by hand.
//!
//! A resumed run ([`crate::Resume`]) appends to its run directory's journal, runs
//! only the iterations not journaled as done, and launches nothing for an account
//! that has none left.

mod account;
mod actions;
mod downloads;
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
use crate::journal::{self, Event, Journal, Observer};
use crate::report::Report;
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
    /// The open-files limit is too low for every selected account's profile lock
    /// (one descriptor each, held for the whole run; exit 3).
    #[error(
        "not enough file descriptors for {accounts} accounts' profile locks: the open-files limit is {limit} (raise the hard limit, e.g. `ulimit -Hn`, or select fewer accounts per run)"
    )]
    Descriptors {
        /// How many accounts were selected.
        accounts: usize,
        /// The soft limit in force (batch-cli raised it to the hard limit at start).
        limit: u64,
    },
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
    /// `--resume`: another runner is running that run right now (exit 2).
    #[error(
        "--resume {run_id}: the run is in progress in another batch-cli process (expected a run that has stopped)"
    )]
    RunInUse {
        /// The run.
        run_id: String,
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
            RunError::Config(_)
            | RunError::ProfileInUse { .. }
            | RunError::RunInUse { .. }
            | RunError::StateInUse { .. } => exit::USAGE,
            RunError::Environment(_)
            | RunError::Profiles(_)
            | RunError::Descriptors { .. }
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
    /// The project's account health (`<profiles root>/health.json`).
    pub(crate) health: crate::health::Store,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How many browser creations adaptive pacing lets overlap per CPU core before it
/// has learned anything. Five: a launch waits on IPC and disk as well as CPU, so ten
/// at once on two cores stay near the bare floor (docs/benchmarks.md). Measured side
/// by side on a quiet machine against twice the cores: all ready 1.75–1.87× the
/// headless shell's floor against 1.91–2.2× at N=10, and one wave instead of two at
/// N=5.
pub const START_OVERLAP_PER_CORE: usize = 5;

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
        None => Some(Binaries::locate_preferring(
            settings.browser.chromium.as_deref(),
            settings.browser.chromedriver.as_deref(),
            settings.browser.prefer(plan.headed),
        )?),
    };

    // Reap what a killed runner left before taking anything ourselves.
    let runtime = launcher::runtime_dir();
    let registry = Arc::new(Registry::open(&runtime)?);
    let reaped = registry.reap()?;
    // One-time codes used are shared with this user's other runs (see `totp`).
    crate::totp::share_ledger(Some(runtime.join("totp-used")));
    let ephemeral_parent = runtime.join("profiles");
    let reaped_profiles = profiles::reap_ephemeral(&ephemeral_parent).unwrap_or_default();
    // Before the first launch, while nothing forks: see `launcher::prepare`.
    if let Some(b) = &binaries {
        launcher::prepare(b)?;
    }

    // Lock every persistent profile up front: an account in use by another process is
    // an error before anything launches, and the other process is never disturbed.
    // A resumed run launches nothing for an account with nothing left.
    let accounts: Vec<Account> = plan
        .accounts
        .iter()
        .filter(|id| !plan.remaining(**id).is_empty())
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
    // Account health: an account still cooling in quarantine is not run — nothing is
    // locked or launched for it — unless `--include-quarantined` (fresh or resumed).
    let health = crate::health::Store::new(&settings.profiles.root);
    let (accounts, skipped) = split_quarantined(accounts, &health, plan.include_quarantined)?;
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
                    profiles::ProfileError::Io { source, .. }
                        if source.raw_os_error() == Some(libc::EMFILE) =>
                    {
                        RunError::Descriptors {
                            accounts: accounts.len(),
                            limit: nix::sys::resource::getrlimit(
                                nix::sys::resource::Resource::RLIMIT_NOFILE,
                            )
                            .map_or(0, |(soft, _)| soft),
                        }
                    }
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

    let (run_id, run_dir) = match &plan.resume {
        Some(r) => (r.run_id.clone(), r.run_dir.clone()),
        None => rundir::create_run_dir(&plan.output, rundir::new_run_id)
            .map_err(io_err(&plan.output))?,
    };
    // One runner per run directory at a time: a resume must not append to a journal
    // another runner is still writing. Held until we return.
    let lock_path = run_dir.join("run.lock");
    let _run_lock = match fsutil::lock_file(&lock_path, true).map_err(io_err(&lock_path))? {
        fsutil::LockOutcome::Held(f) => f,
        _ => return Err(RunError::RunInUse { run_id }),
    };
    let journal_path = run_dir.join("events.jsonl");
    let secrets = {
        let accounts: Vec<&Account> = accounts.iter().collect();
        let env = crate::config::process_env;
        Secrets::for_run(&plan.project.workflow, &accounts, &plan.argv, &env)
    };
    let journal = Journal::open(&journal_path, observer, secrets, cancel.clone())
        .map_err(io_err(&journal_path))?;
    if let Some(dropped_bytes) = journal.repaired() {
        journal.emit(Event::JournalRepaired { dropped_bytes });
    }
    journal.emit(Event::RunStarted(plan.record(&run_id, &run_dir)));
    if reaped.records > 0 || reaped.execs > 0 || reaped.temp_dirs > 0 || !reaped_profiles.is_empty()
    {
        journal.emit(Event::Reaped {
            processes: reaped.killed.clone(),
            browsers: reaped.records,
            execs: reaped.execs,
            ephemeral_profiles: reaped_profiles.len(),
            temp_dirs: reaped.temp_dirs,
        });
    }

    for (account, h) in skipped {
        journal.emit(Event::QuarantineSkipped {
            account,
            reason: h.reason.unwrap_or_default(),
            score: h.score,
            until: crate::health::rfc3339(h.until_ms.unwrap_or(0)),
        });
        journal.emit(Event::AccountDone {
            account,
            status: "quarantined".into(),
            iterations_ok: 0,
            iterations_failed: 0,
            browser_launches: 0,
            retries: 0,
            error: None,
        });
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
        start_overlap: START_OVERLAP_PER_CORE * cores,
        // A third of the launch timeout: shrink well before launches time out.
        latency_budget: settings.timeouts.launch / 3,
    };
    let probe = Arc::new(MachineProbe {
        memory: memory.clone(),
        cpu: CpuPressure::new(cores),
    });
    let scheduler = Scheduler::new(policy, probe, journal.clone());
    // A Grid's slots cap the run only when the user set no cap; then they are
    // followed as nodes join and leave.
    let _grid_watch = match (&plan.webdriver_url, grid_slots) {
        (Some(url), Some(slots)) => Some(watch_grid(
            url.clone(),
            slots,
            scheduler.clone(),
            journal.clone(),
        )),
        _ => None,
    };
    let ctx = Arc::new(Ctx {
        scheduler,
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
        health,
    });

    run_accounts(&ctx, accounts, held).await;
    sampler.stop().await;

    // The report is the journal's fold, over every part of the run. Its statuses
    // decide the exit code, which `run_finished` records; then the fold again, with
    // that line, is the report.
    let interrupted = cancel.is_cancelled();
    journal.sync();
    let so_far = fold(&journal_path)?;
    let all_ok = so_far.accounts.iter().all(|a| a.status == "ok");
    let mut exit_code = if interrupted {
        exit::INTERRUPTED
    } else if all_ok {
        exit::OK
    } else {
        exit::SOME_FAILED
    };
    if journal.failure().is_some() {
        exit_code = exit::ENVIRONMENT;
    }
    journal.emit(Event::RunFinished {
        exit_code,
        interrupted,
        iterations_ok: so_far.totals.iterations_ok,
        iterations_failed: so_far.totals.iterations_failed,
        browser_launches: so_far.totals.browser_launches,
        retries: so_far.totals.retries,
        runner_peak_rss_bytes: fsutil::proc::own_peak_rss(),
    });
    let mut report = fold(&journal_path)?;
    // A journal that stopped (disk full) has no run_finished: still exit 3.
    report.exit_code = exit_code;
    report.interrupted = interrupted;
    report.redact(journal.secrets());
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
    // report.html and report.xml: rendered from the run directory, as `report` does.
    crate::render::write_reports(&run_dir).map_err(|e| {
        let (path, source) = e.into_io();
        RunError::Io { path, source }
    })?;
    Ok(RunOutcome {
        exit_code,
        run_dir,
        report,
    })
}

/// Accounts set aside at the start, with the health that set them aside.
type Skipped = Vec<(u64, crate::health::AccountHealth)>;

/// The accounts to run, and those set aside because they are still cooling.
fn split_quarantined(
    accounts: Vec<Account>,
    health: &crate::health::Store,
    include: bool,
) -> Result<(Vec<Account>, Skipped), RunError> {
    let states = health.load().map_err(io_err(&health.path()))?;
    let now = crate::health::now_ms();
    let mut skipped = Vec::new();
    let run = accounts
        .into_iter()
        .filter(|a| match states.get(&a.id) {
            Some(h) if !include && h.quarantined_at(now) => {
                skipped.push((a.id, h.clone()));
                false
            }
            _ => true,
        })
        .collect();
    Ok((run, skipped))
}

/// The report of the journal at `path`, as far as it goes.
fn fold(path: &Path) -> Result<Report, RunError> {
    let read = journal::read(path).map_err(|e| RunError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })?;
    Ok(Report::from_events(&read.records))
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

/// How often a Grid run re-reads the hub's `/status` for its slots: about as often
/// as a node registers (its heartbeat), and a few milliseconds of the hub's time.
const GRID_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The nodes that take new sessions (`UP`: not `DRAINING` or `DOWN`) and their slots.
fn usable_slots(status: &launcher::EndpointStatus) -> (usize, usize) {
    let up = status.nodes.iter().filter(|n| n.availability == "UP");
    up.fold((0, 0), |(nodes, slots), n| (nodes + 1, slots + n.slots))
}

/// A Grid's slot count (its UP nodes' slots, summed), journaled as `grid_capacity`;
/// `None` when the endpoint is no Grid or does not say.
async fn grid_capacity(url: &str, journal: &Journal) -> Option<usize> {
    let status = launcher::endpoint_status(url).await.ok()?;
    let (nodes, slots) = usable_slots(&status);
    journal.emit(Event::GridCapacity { nodes, slots });
    (slots > 0).then_some(slots)
}

/// Follows a Grid's slots through the run: every [`GRID_POLL`], a changed count is
/// journaled (`grid_capacity`) and becomes the scheduler's cap, so a node that joins
/// is used at once and one that leaves stops sessions being asked of it. With no
/// node UP the last cap stays: requests then wait in the Grid's queue and fail at
/// its timeout, as without a cap, rather than wait here with no end. A failed read
/// changes nothing. Stops when dropped.
fn watch_grid(
    url: String,
    mut slots: usize,
    scheduler: Scheduler,
    journal: Journal,
) -> tokio_util::task::AbortOnDropHandle<()> {
    let mut seen = slots;
    tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        loop {
            tokio::time::sleep(GRID_POLL).await;
            let Ok(status) = launcher::endpoint_status(&url).await else {
                continue;
            };
            let (nodes, now) = usable_slots(&status);
            if now == seen {
                continue;
            }
            seen = now;
            journal.emit(Event::GridCapacity { nodes, slots: now });
            if now > 0 && now != slots {
                slots = now;
                scheduler.set_cap(Some(slots));
            }
        }
    }))
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
            growth: self.memory.growth(),
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
) {
    let mut handles = Vec::new();
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
            joined(ctx, id, h.await);
        }
    }
    for (id, h) in handles {
        joined(ctx, id, h.await);
    }
}

/// A panic in one account is that account's failure (journaled, so the report
/// says `error`); its browser was killed by Drop while unwinding.
fn joined(ctx: &Ctx, id: u64, result: Result<(), tokio::task::JoinError>) {
    match result {
        Ok(()) => {}
        Err(e) => {
            let msg = if e.is_panic() {
                "internal error (panic)"
            } else {
                "task cancelled"
            };
            ctx.journal.emit(Event::AccountDone {
                account: id,
                status: "error".into(),
                iterations_ok: 0,
                iterations_failed: 0,
                browser_launches: 0,
                retries: 0,
                error: Some(msg.into()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only nodes that take new sessions count: a draining or lost node's slots are
    /// not the Grid's capacity.
    #[test]
    fn usable_slots_are_the_up_nodes() {
        let node = |availability: &str, slots| launcher::GridNode {
            uri: String::new(),
            availability: availability.to_owned(),
            slots,
            busy: 0,
        };
        for (nodes, want) in [
            (vec![], (0, 0)),
            (vec![node("UP", 4)], (1, 4)),
            (vec![node("UP", 4), node("UP", 2)], (2, 6)),
            (vec![node("UP", 4), node("DOWN", 4)], (1, 4)),
            (vec![node("DRAINING", 4), node("UP", 1)], (1, 1)),
        ] {
            let status = launcher::EndpointStatus {
                ready: true,
                message: String::new(),
                nodes,
            };
            assert_eq!(usable_slots(&status), want);
        }
    }
}
