//! One function per subcommand. Each returns the process exit code; errors are
//! printed here, to stderr, naming the file, field or argument at fault. All output
//! goes through `outln!`/`errln!`: a closed stdout or stderr never stops a run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use batch_core::config::{self, Project};
use batch_core::{Plan, exit};
use tokio_util::sync::CancellationToken;

use crate::args::{AccountsCommand, Command, ProfilesCommand, RunArgs};

pub(crate) async fn dispatch(command: Command, ui: crate::view::Ui) -> i32 {
    match command {
        Command::Single { step, run } => run_command(step, None, run, true, ui).await,
        Command::Run { steps, run } => run_command(None, steps, run, false, ui).await,
        Command::Validate { config } => validate(&config),
        Command::Doctor {
            config,
            webdriver_url: Some(url),
        } => doctor_remote(&config, &url).await,
        Command::Doctor { config, .. } => doctor(&config).await,
        Command::Profiles { action, config } => profiles(action, &config),
        Command::Accounts { action, config } => accounts(action, &config),
        Command::Report {
            merge,
            json,
            output,
            ..
        } if !merge.is_empty() => crate::merge::merge_command(&merge, output.as_deref(), json),
        Command::Report { run_dir, json, .. } => {
            report(&run_dir.expect("clap requires it without --merge"), json)
        }
        Command::Completions { shell } => {
            let mut cmd = <crate::args::Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "batch-cli", &mut out);
            use std::io::Write as _;
            let _ = std::io::stdout().lock().write_all(&out);
            exit::OK
        }
    }
}

pub(crate) fn usage(msg: impl std::fmt::Display) -> i32 {
    errln!("error: {msg}");
    exit::USAGE
}

/// The command line as `Plan::build` takes it; the checking is batch-core's.
fn request(
    single: bool,
    step: Option<u32>,
    steps: Option<String>,
    a: &RunArgs,
) -> batch_core::Request {
    batch_core::Request {
        config: a.config.clone(),
        single,
        step,
        steps,
        accounts: a.accounts.clone(),
        shard: a.shard.clone(),
        quantity: a.quantity,
        concurrent: a.concurrent,
        base_url: a.base_url.clone(),
        headed: a.headed,
        launch_interval: a.launch_interval.clone(),
        no_launch_lock: a.no_launch_lock,
        max_concurrent: a.max_concurrent,
        retries: a.retries,
        min_available_memory: a.min_available_memory.clone(),
        webdriver_url: a.webdriver_url.clone(),
        output: a.output.clone(),
        resume: a.resume.clone(),
        storage_state: a.storage_state,
        include_quarantined: a.include_quarantined,
        argv: std::env::args().collect(),
    }
}

async fn run_command(
    step: Option<u32>,
    steps: Option<String>,
    a: RunArgs,
    single: bool,
    ui: crate::view::Ui,
) -> i32 {
    let plan = match Plan::build(&request(single, step, steps, &a)) {
        Ok(p) => p,
        Err(msg) => return usage(msg),
    };
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let json = a.json;
    let printer = crate::view::Printer::new(ui, json);
    let observer: batch_core::journal::Observer = Arc::new(move |event| printer.event(event));
    match batch_core::runner::run(plan, observer, cancel).await {
        Ok(outcome) => {
            if !json {
                outln!("report: {}", outcome.run_dir.join("report.json").display());
                // The page a person opens (self-contained, from disk).
                outln!("html:   {}", outcome.run_dir.join("report.html").display());
            }
            outcome.exit_code
        }
        Err(e) => {
            errln!("error: {e}");
            e.exit_code()
        }
    }
}

/// Ctrl-C, SIGTERM or SIGHUP (the terminal went away): stop everything cleanly —
/// every browser closed, the journal and report complete — then exit 130.
///
/// A second Ctrl-C (or SIGTERM) during that teardown means "now": every process
/// group we started is killed and we exit 130 at once, without waiting for the
/// teardown (the next run reaps anything left, such as ephemeral profiles).
fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        };
        errln!("interrupted ({name}): closing every browser… (Ctrl-C again to force)");
        cancel.cancel();
        // Further SIGHUPs are ignored: a vanished terminal may send more than one.
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let killed = kill_our_process_groups();
        errln!("interrupted again: killed {killed} process group(s), exiting now");
        std::process::exit(exit::INTERRUPTED);
    });
}

/// SIGKILL to the process group of each of our children (every ChromeDriver leads
/// its own group, which holds its Chromium), and to the child itself. Returns how
/// many children there were.
fn kill_our_process_groups() -> usize {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, ppid, pgrp, …
        let mut fields = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace();
        let (_state, ppid, pgrp) = (fields.next(), fields.next(), fields.next());
        let (Some(ppid), Some(pgrp)) = (
            ppid.and_then(|p| p.parse::<u32>().ok()),
            pgrp.and_then(|p| p.parse::<i32>().ok()),
        ) else {
            continue;
        };
        if ppid != me {
            continue;
        }
        if pgrp == pid as i32 {
            let _ = killpg(Pid::from_raw(pgrp), Signal::SIGKILL);
        }
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        killed += 1;
    }
    killed
}

/// "1 step", "3 steps".
fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

fn validate(path: &Path) -> i32 {
    let project = match config::load_project(path) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let all: Vec<&config::Account> = project.accounts.accounts.iter().collect();
    let steps: Vec<u32> = project.workflow.steps.iter().map(|s| s.id).collect();
    if let Err(e) = config::check_templates(&project.workflow, &all, &steps) {
        return usage(e);
    }
    let workflow = &project.workflow;
    let actions = (workflow.steps.iter())
        .map(|s| s.before.len() + s.actions.len() + s.after.len())
        .sum::<usize>();
    outln!(
        "ok: {} ({}, {}, {})",
        project.settings.config_path.display(),
        count(project.accounts.accounts.len(), "account"),
        count(workflow.steps.len(), "step"),
        count(actions, "action"),
    );
    exit::OK
}

async fn doctor(path: &Path) -> i32 {
    let settings = if path.exists() {
        match config::load_settings(path) {
            Ok(s) => Some(s),
            Err(e) => return usage(e),
        }
    } else {
        None
    };
    // `[browser] webdriver_url`: runs would go there, so that is what to check.
    if let Some(url) = settings
        .as_ref()
        .and_then(|s| s.browser.webdriver_url.clone())
    {
        return Box::pin(doctor_remote(path, &url)).await;
    }
    let mut bad = 0;
    let mut report = |ok: bool, what: &str, detail: String| {
        outln!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            bad += 1;
        }
    };
    let browser = settings.as_ref().map(|s| s.browser.clone());
    let binaries = match launcher::Binaries::locate_preferring(
        browser.as_ref().and_then(|b| b.chromium.as_deref()),
        browser.as_ref().and_then(|b| b.chromedriver.as_deref()),
        browser
            .as_ref()
            .map_or(launcher::Prefer::HeadlessShell, |b| b.prefer(false)),
    ) {
        Ok(b) => b,
        Err(e) => {
            report(false, "binaries", e.to_string());
            return exit::ENVIRONMENT;
        }
    };
    report(true, "chromium", binaries.chromium.display().to_string());
    report(
        true,
        "chromedriver",
        binaries.chromedriver.display().to_string(),
    );
    match binaries.versions().await {
        Ok(v) => report(
            v.matching(),
            "versions",
            format!("{} / {} (majors must match)", v.chromium, v.chromedriver),
        ),
        Err(e) => report(false, "versions", e.to_string()),
    }
    match batch_core::resources::available_memory() {
        Some(a) => {
            let need = settings
                .as_ref()
                .map_or(1 << 30, |s| s.resources.min_available_memory);
            report(
                a >= need,
                "memory",
                format!(
                    "{} MiB available (creations wait unless {} MiB stay free beyond what the browsers are learned to cost: {} MiB each until measured)",
                    a >> 20,
                    need >> 20,
                    batch_core::resources::PRIOR_BROWSER_COST >> 20
                ),
            );
        }
        None => report(false, "memory", "cannot read available memory".into()),
    }
    report(
        true,
        "memory limit",
        match batch_core::resources::cgroup_memory_limit() {
            Some(l) => format!(
                "this cgroup is limited to {} MiB: admission counts against the limit",
                l >> 20
            ),
            None => "no cgroup memory limit: admission counts against the host".into(),
        },
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let psi = std::path::Path::new("/proc/pressure/cpu").exists();
    report(
        true,
        "cpu",
        format!(
            "{cores} core(s); pressure from {} (adaptive pacing starts at {} creations at once)",
            if psi {
                "/proc/pressure/cpu"
            } else {
                "the load average (no PSI here)"
            },
            batch_core::runner::START_OVERLAP_PER_CORE * cores
        ),
    );
    let runtime = launcher::runtime_dir();
    match launcher::Registry::open(&runtime) {
        Ok(_) => report(true, "runtime dir", runtime.display().to_string()),
        Err(e) => report(false, "runtime dir", e.to_string()),
    }
    // The accounts' proxies, when the whole project loads (`validate` says why not).
    if let Ok(project) = config::load_project(path) {
        for (ok, what, detail) in proxy_checks(&project).await {
            report(ok, &what, detail);
        }
    }
    let profile = match tempfile_dir() {
        Ok(d) => d,
        Err(e) => {
            report(false, "temp dir", e.to_string());
            return exit::ENVIRONMENT;
        }
    };
    let mut spec = launcher::LaunchSpec::new(binaries, profile.path());
    spec.launch_timeout = Duration::from_secs(30);
    match launcher::Browser::launch(&spec).await {
        Ok(b) => {
            let info = b.info().clone();
            let local = info.local.clone().expect("a local browser");
            let nav = b.driver().goto("about:blank").await;
            b.close().await;
            report(
                nav.is_ok(),
                "browser start",
                format!(
                    "pid {} on verified DevTools port {} in {:?}",
                    local.pid, local.devtools_port, info.launch_time
                ),
            );
        }
        Err(e) => report(false, "browser start", e.to_string()),
    }
    if bad == 0 {
        exit::OK
    } else {
        exit::ENVIRONMENT
    }
}

/// Whether each proxy the accounts name can be reached (a TCP connection within 3 s,
/// all at once): one line per proxy, named without its credentials, with the
/// accounts that use it. A proxy that cannot be reached fails the check unless every
/// account using it has another of its list that can be (then it says so).
async fn proxy_checks(project: &Project) -> Vec<(bool, String, String)> {
    use std::collections::BTreeMap;
    let mut users: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let lists: Vec<(u64, Vec<String>)> = (project.accounts.accounts.iter())
        .map(|a| {
            let list = config::proxy_of(a)
                .iter()
                .map(|u| u.without_credentials())
                .collect();
            (a.id, list)
        })
        .collect();
    for (id, list) in &lists {
        for shown in list {
            users.entry(shown.clone()).or_default().push(*id);
        }
    }
    let mut probes = tokio::task::JoinSet::new();
    for shown in users.keys().cloned() {
        probes.spawn(async move {
            let authority = shown
                .split_once("://")
                .map_or(shown.clone(), |(_, a)| a.to_owned());
            let connect = tokio::net::TcpStream::connect(authority);
            let reached = match tokio::time::timeout(Duration::from_secs(3), connect).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within 3 s".to_owned()),
            };
            (shown, reached)
        });
    }
    let reached: BTreeMap<String, Result<(), String>> =
        probes.join_all().await.into_iter().collect();
    let served = |id: &u64| {
        let list = lists.iter().find(|(a, _)| a == id).map(|(_, l)| l);
        list.is_some_and(|l| l.iter().any(|p| reached[p].is_ok()))
    };
    let ids = |ids: &[u64]| {
        let each: Vec<String> = ids.iter().map(u64::to_string).collect();
        each.join(", ")
    };
    (users.iter())
        .map(|(shown, accounts)| {
            let what = format!("proxy {shown}");
            match &reached[shown] {
                Ok(()) => (
                    true,
                    what,
                    format!("reachable (accounts {})", ids(accounts)),
                ),
                Err(e) if accounts.iter().all(served) => (
                    true,
                    what,
                    format!(
                        "unreachable ({e}); accounts {} go on through the next of their list",
                        ids(accounts)
                    ),
                ),
                Err(e) => (
                    false,
                    what,
                    format!("unreachable: {e} (accounts {})", ids(accounts)),
                ),
            }
        })
        .collect()
}

/// `doctor --webdriver-url URL`: the endpoint's status and one real session there.
/// What only exists locally (binaries, ports, profiles, reaping, PSS) is said to be
/// absent rather than checked.
async fn doctor_remote(path: &Path, url: &str) -> i32 {
    let url = match batch_core::check_webdriver_url(url) {
        Ok(u) => u,
        Err(m) => return usage(m),
    };
    let settings = if path.exists() {
        match config::load_settings(path) {
            Ok(s) => Some(s),
            Err(e) => return usage(e),
        }
    } else {
        None
    };
    let mut bad = 0;
    // Credentials in the URL are secrets: never printed, whatever message holds them.
    let userinfo = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|host| host.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo.to_string());
    let hide = |text: String| match &userinfo {
        Some(u) => {
            let mut t = text.replace(u.as_str(), "***");
            if let Some((_, pass)) = u.split_once(':')
                && !pass.is_empty()
            {
                t = t.replace(pass, "***");
            }
            t
        }
        None => text,
    };
    let mut report = |ok: bool, what: &str, detail: String| {
        outln!(
            "{} {what}: {}",
            if ok { "ok  " } else { "FAIL" },
            hide(detail)
        );
        if !ok {
            bad += 1;
        }
    };
    match launcher::endpoint_status(&url).await {
        Ok(st) => {
            report(
                st.ready,
                "endpoint",
                format!(
                    "{url}: {}",
                    if st.message.is_empty() {
                        "answers"
                    } else {
                        &st.message
                    }
                ),
            );
            for n in &st.nodes {
                report(
                    n.availability == "UP",
                    "grid node",
                    format!(
                        "{} {} — {} of {} slots busy",
                        n.uri, n.availability, n.busy, n.slots
                    ),
                );
            }
        }
        Err(e) => report(false, "endpoint", e),
    }
    outln!(
        "n/a  local only: chromium/chromedriver, DevTools and driver ports, profile directories, reaping and PSS memory do not apply to remote browsers (the Grid's nodes own them)"
    );
    let mut spec = launcher::LaunchSpec::remote(&url);
    if let Some(s) = &settings {
        spec.launch_timeout = s.timeouts.launch;
        spec.args = s.browser.args.clone();
    }
    match launcher::Browser::launch(&spec).await {
        Ok(b) => {
            let info = b.info().clone();
            let nav = b.driver().goto("about:blank").await;
            b.close().await;
            report(
                nav.is_ok(),
                "browser start",
                format!(
                    "session {} on node {} in {:?}; CDP: {}",
                    info.session_id,
                    info.node.as_deref().unwrap_or("(not said)"),
                    info.launch_time,
                    info.cdp_url.as_deref().unwrap_or("(none offered)")
                ),
            );
        }
        Err(e) => report(false, "browser start", e.to_string()),
    }
    if bad == 0 {
        exit::OK
    } else {
        exit::ENVIRONMENT
    }
}

fn tempfile_dir() -> std::io::Result<profiles::Profile> {
    let parent = launcher::runtime_dir().join("profiles");
    profiles::ephemeral(&parent).map_err(std::io::Error::other)
}

fn load_for_profiles(path: &Path) -> Result<(Project, profiles::ProfileStore), i32> {
    let project = config::load_project(path).map_err(usage)?;
    let store = profiles::ProfileStore::open(&project.settings.profiles.root).map_err(|e| {
        errln!("error: {e}");
        exit::ENVIRONMENT
    })?;
    Ok((project, store))
}

fn profiles(action: ProfilesCommand, path: &Path) -> i32 {
    let (project, store) = match load_for_profiles(path) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match action {
        ProfilesCommand::List => match store.list() {
            Ok(list) => {
                outln!("{:<10} {:>10} {:<7} path", "account", "size", "in use");
                for p in list {
                    outln!(
                        "{:<10} {:>7} MiB {:<7} {}",
                        p.account,
                        p.size_bytes >> 20,
                        if p.in_use { "yes" } else { "no" },
                        p.path.display()
                    );
                }
                exit::OK
            }
            Err(e) => {
                errln!("error: {e}");
                exit::ENVIRONMENT
            }
        },
        ProfilesCommand::Clean => match store.clean() {
            Ok(cleaned) => {
                outln!("removed {} stale lock file(s)", cleaned.len());
                for c in cleaned {
                    outln!("  {}", c.display());
                }
                exit::OK
            }
            Err(e) => {
                errln!("error: {e}");
                exit::ENVIRONMENT
            }
        },
        ProfilesCommand::Reset { accounts } => {
            let ids = match config::parse_account_list(&accounts, &project.accounts) {
                Ok(ids) => ids,
                Err(e) => return usage(e),
            };
            let mut code = exit::OK;
            for id in ids {
                match store.reset(&id.to_string()) {
                    Ok(true) => outln!("account {id}: profile deleted"),
                    Ok(false) => outln!("account {id}: no profile"),
                    Err(e) => {
                        errln!("error: account {id}: {e}");
                        code = exit::SOME_FAILED;
                    }
                }
                // The portable session (remote runs, --storage-state) logs in too.
                let state =
                    batch_core::runner::storage_state_path(&project.settings.profiles.root, id);
                if let Some(dir) = state.parent().filter(|d| d.exists()) {
                    match std::fs::remove_dir_all(dir) {
                        Ok(()) => outln!("account {id}: storage state deleted"),
                        Err(e) => {
                            errln!("error: account {id}: {}: {e}", dir.display());
                            code = exit::SOME_FAILED;
                        }
                    }
                }
            }
            code
        }
    }
}

/// `accounts list|release`: the health state beside the profiles
/// (`batch_core::health`).
fn accounts(action: AccountsCommand, path: &Path) -> i32 {
    let project = match config::load_project(path) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let store = batch_core::health::Store::new(&project.settings.profiles.root);
    let fail = |e: std::io::Error| {
        errln!("error: {}: {e}", store.path().display());
        exit::ENVIRONMENT
    };
    match action {
        AccountsCommand::List => {
            let states = match store.load() {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let now = batch_core::health::now_ms();
            let max = project.settings.health.max_score;
            outln!(
                "{:<10} {:<8} {:<22} reason",
                "account",
                "score",
                "quarantined until"
            );
            for a in &project.accounts.accounts {
                let h = states.get(&a.id).cloned().unwrap_or_default();
                let until = match h.until_ms {
                    Some(u) if h.quarantined_at(now) => batch_core::health::rfc3339(u),
                    _ => "-".into(),
                };
                let reason = match (&h.reason, h.quarantined_at(now)) {
                    (Some(r), true) => r.clone(),
                    (Some(r), false) => format!("(last: {r})"),
                    (None, _) => String::new(),
                };
                outln!(
                    "{:<10} {:<8} {:<22} {}",
                    a.id,
                    match max {
                        Some(max) => format!("{}/{max}", h.score),
                        // No max_score: only a challenge quarantines (and fills the score).
                        None if h.score == u32::MAX => "full".to_string(),
                        None => h.score.to_string(),
                    },
                    until,
                    reason
                );
            }
            exit::OK
        }
        AccountsCommand::Release { accounts } => {
            let ids = match config::parse_account_list(&accounts, &project.accounts) {
                Ok(ids) => ids,
                Err(e) => return usage(e),
            };
            match store.release(&ids) {
                Ok(released) => {
                    for id in ids {
                        if released.contains(&id) {
                            outln!("account {id}: released (score and quarantine cleared)");
                        } else {
                            outln!("account {id}: nothing to release");
                        }
                    }
                    exit::OK
                }
                Err(e) => fail(e),
            }
        }
    }
}

/// Print a run's summary. The report is the journal's fold: when `report.json` is
/// missing or says something else (the runner was killed, or died before writing
/// it), it is rebuilt — atomically — unless a runner is still running that run.
fn report(run_dir: &Path, json: bool) -> i32 {
    use batch_core::report::{Rebuild, rebuild};
    let rebuilt = match rebuild(run_dir) {
        Ok(r) => r,
        Err(e) => {
            return match e {
                batch_core::report::RebuildError::Write { .. } => {
                    errln!("error: {e}");
                    exit::ENVIRONMENT
                }
                _ => usage(format!("{e} (expected a run directory)")),
            };
        }
    };
    if let Some(bytes) = rebuilt.torn {
        errln!(
            "note: {}: its last line was cut short ({bytes} bytes: the runner died mid-write) and is ignored",
            run_dir.join("events.jsonl").display()
        );
    }
    let path = run_dir.join("report.json");
    match rebuilt.action {
        Rebuild::UpToDate => {}
        Rebuild::Missing => errln!(
            "note: {} was missing: rebuilt from the journal",
            path.display()
        ),
        Rebuild::Stale => errln!(
            "note: {} was stale: rebuilt from the journal",
            path.display()
        ),
        Rebuild::InProgress => errln!(
            "note: the run is still in progress: {} is left as it is",
            path.display()
        ),
    }
    let r = rebuilt.report;
    // report.html and report.xml are rebuilt from the run directory each time (a run
    // that died before its end has none yet; an older version's run gets them).
    let rendered = batch_core::render::write_reports(run_dir);
    let code = match &rendered {
        Ok(_) => exit::OK,
        Err(e) => {
            errln!("error: {e}");
            exit::ENVIRONMENT
        }
    };
    if json {
        print_report(&r, true);
        return code;
    }
    print_report(&r, false);
    if let Ok(w) = rendered {
        outln!("html: {}", w.html.display());
        outln!("junit: {}", w.xml.display());
    }
    code
}

/// The summary of a report (or the JSON as is).
pub(crate) fn print_report(r: &batch_core::report::Report, json: bool) -> i32 {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&r).expect("report serializes")
        );
        return exit::OK;
    }
    outln!(
        "run {}  {} → {}  exit {}",
        r.run_id,
        r.started_at,
        r.finished_at,
        r.exit_code
    );
    outln!(
        "totals: {} iterations ok, {} failed, {} browser launches, {} retries",
        r.totals.iterations_ok,
        r.totals.iterations_failed,
        r.totals.browser_launches,
        r.totals.retries
    );
    for a in &r.accounts {
        outln!(
            "  account {:<6} {:<11} ok {:<4} failed {:<4} launches {:<3} retries {}{}",
            a.id,
            a.status,
            a.iterations_ok,
            a.iterations_failed,
            a.browser_launches,
            a.retries,
            a.last_error
                .as_deref()
                .map(|e| format!("  last error: {e}"))
                .unwrap_or_default()
        );
    }
    exit::OK
}

#[cfg(test)]
mod tests {
    use batch_core::check_webdriver_url;

    #[test]
    fn webdriver_urls_are_checked() {
        assert_eq!(
            check_webdriver_url("http://127.0.0.1:4444/").unwrap(),
            "http://127.0.0.1:4444"
        );
        assert_eq!(
            check_webdriver_url("https://grid.example/wd/hub").unwrap(),
            "https://grid.example/wd/hub"
        );
        for bad in [
            "ftp://x",
            "127.0.0.1:4444",
            "http://",
            "http://:4444",
            "http://h/?a=1",
        ] {
            let e = check_webdriver_url(bad).unwrap_err();
            assert!(e.starts_with("--webdriver-url "), "{e}");
            assert!(e.contains("expected an http:// or https:// URL"), "{e}");
        }
    }
}
