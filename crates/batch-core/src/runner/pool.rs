//! An account's browsers: checked out for each iteration, checked back in, reused for
//! as long as they are healthy — across iterations, steps and retries — and retired
//! when they have served `[pool] retire_after` iterations or their memory has grown
//! past `[pool] max_browser_memory` (memory creep is the most-reported problem of
//! long-lived browser pools, puppeteer-cluster's issue #84).
//!
//! Every creation goes through the scheduler (`admit`), so a pool never decides when
//! a browser may start. When a count-based retirement is one iteration away and the
//! profile is ephemeral, the successor is launched ahead, while the old browser
//! serves its last iteration, so the swap costs no launch time. With a persistent
//! profile that is impossible — Chromium refuses a profile another Chromium holds —
//! so the successor starts right after the old browser has closed.
//!
//! Pools are per account on purpose: a browser carries its account's profile and
//! logins, so it is never handed to another account.

use std::sync::Arc;
use std::time::{Duration, Instant};

use launcher::{Browser, FailureKind, LaunchSpec};

use super::Ctx;
use super::actions::Failure;
use super::scheduler::{Request, Seat};
use crate::config::Account;
use crate::journal::Event;

/// A live browser, its bookkeeping, and for ephemeral profiles the profile it owns.
pub(crate) struct Session {
    // Field order matters: the browser must be gone before its profile is released.
    pub(crate) browser: Browser,
    /// The loopback forwarder of an authenticated proxy: after the browser (its
    /// only client), so it stops only once the browser is gone.
    forwarder: Option<forwarder::Forwarder>,
    _ephemeral: Option<profiles::Profile>,
    /// Launch number within the account (1, 2, …): the memory sampler's key.
    pub(crate) serial: u32,
    /// Iterations it has served.
    pub(crate) iterations: u32,
}

type Ahead = tokio::task::JoinHandle<(Result<Session, Failure>, u32)>;

/// One account's pool; see the module docs.
pub(crate) struct Pool {
    ctx: Arc<Ctx>,
    account: Arc<Account>,
    order: usize,
    /// The persistent profile's directory (`None`: ephemeral profiles).
    profile_dir: Option<std::path::PathBuf>,
    current: Option<Session>,
    ahead: Option<Ahead>,
    seat: Option<Seat>,
    serial: u32,
    /// Browsers started (for the report), launched-ahead ones included.
    pub(crate) launches: u64,
}

impl Pool {
    pub(crate) fn new(
        ctx: Arc<Ctx>,
        account: Arc<Account>,
        order: usize,
        profile_dir: Option<std::path::PathBuf>,
    ) -> Pool {
        Pool {
            ctx,
            account,
            order,
            profile_dir,
            current: None,
            ahead: None,
            seat: None,
            serial: 0,
            launches: 0,
        }
    }

    /// The browser checked out now, if any.
    pub(crate) fn browser(&self) -> Option<&Browser> {
        self.current.as_ref().map(|s| &s.browser)
    }

    /// `failure`, explained when the account's proxy rejected its credentials, or
    /// its `https://` proxy's certificate was refused: the page then shows only the
    /// forwarder's 502, and the action fails on a missing element, which says nothing
    /// useful. Permanent: retrying cannot fix a password or a CA.
    pub(crate) fn explain(&self, failure: Failure) -> Failure {
        let Some(f) = self.current.as_ref().and_then(|s| s.forwarder.as_ref()) else {
            return failure;
        };
        let id = self.account.id;
        let why = if f.auth_rejected() > 0 {
            format!(
                "the proxy of account {id} rejected its credentials (user name or password \
                 in the accounts file's proxy field)"
            )
        } else if let Some(reason) = f.tls_rejected() {
            format!(
                "the proxy of account {id} failed TLS verification: {reason} (expected a \
                 certificate for the proxy's host signed by a CA of the system's or of \
                 proxy_ca)"
            )
        } else {
            return failure;
        };
        Failure {
            message: format!("{why}; {}", failure.message),
            permanent: true,
            ..failure
        }
    }

    /// Make sure a browser is checked out. `Ok(true)`: a fresh one (run `before`).
    pub(crate) async fn checkout(&mut self, remaining: u64) -> Result<bool, Failure> {
        if self.current.is_some() {
            return Ok(false);
        }
        if let Some(ahead) = self.ahead.take() {
            match ahead.await {
                Ok((Ok(session), _)) => {
                    self.current = Some(session);
                    return Ok(true);
                }
                // A failed ahead-launch is an ordinary launch failure of the next
                // attempt: the retry loop decides what happens.
                Ok((Err(f), _)) => return Err(f),
                Err(_) => {}
            }
        }
        self.serial += 1;
        self.launches += 1;
        let (result, seat) = launch(
            Arc::clone(&self.ctx),
            Arc::clone(&self.account),
            self.request(remaining),
            self.profile_dir.clone(),
            self.serial,
        )
        .await;
        if let Some(seat) = seat {
            self.seat = Some(seat);
        }
        self.current = Some(result?);
        Ok(true)
    }

    fn request(&self, remaining: u64) -> Request {
        Request {
            account: self.account.id,
            remaining,
            order: self.order,
            seated: self.seat.is_some(),
        }
    }

    /// An iteration is over and the browser is healthy: count it, and retire the
    /// browser if it is due (launching its successor ahead when that is possible).
    pub(crate) async fn checkin(&mut self, remaining: u64) {
        let Some(session) = self.current.as_mut() else {
            return;
        };
        session.iterations += 1;
        let pool = &self.ctx.plan.project.settings.pool;
        let key = (self.account.id, session.serial);
        let served = session.iterations;
        let pss = self.ctx.memory.latest_of(key);
        let reason = if pool.retire_after.is_some_and(|n| served >= n) {
            Some("iterations")
        } else if pool
            .max_browser_memory
            .is_some_and(|max| pss.is_some_and(|b| b > max))
        {
            Some("memory")
        } else {
            None
        };
        if remaining == 0 {
            // Nothing left for a successor to do: the browser closes at the end anyway.
            return;
        }
        if let Some(reason) = reason {
            let session = self.current.take().expect("checked above");
            self.ctx.memory.untrack(key);
            self.ctx.journal.emit(Event::BrowserRetired {
                account: self.account.id,
                pid: session.browser.info().pid(),
                reason: reason.into(),
                iterations: u64::from(served),
                pss_bytes: pss,
            });
            session.browser.close().await;
            return;
        }
        let due_next = pool.retire_after.is_some_and(|n| served + 1 >= n);
        if due_next && self.profile_dir.is_none() && self.ahead.is_none() && remaining > 1 {
            self.launch_ahead(remaining - 1);
        }
    }

    fn launch_ahead(&mut self, remaining: u64) {
        self.serial += 1;
        self.launches += 1;
        let (ctx, account, serial) = (
            Arc::clone(&self.ctx),
            Arc::clone(&self.account),
            self.serial,
        );
        let req = self.request(remaining);
        self.ctx.journal.emit(Event::LaunchAhead {
            account: account.id,
            launch: serial,
        });
        // Spawned (not spawn_blocking): the driver's PDEATHSIG is tied to the thread
        // that spawns it, and runtime workers live as long as the run.
        self.ahead = Some(tokio::spawn(async move {
            let (r, _seat) = launch(ctx, account, req, None, serial).await;
            (r, serial)
        }));
    }

    /// The browser is gone or untrustworthy: journal it and tear it down completely.
    pub(crate) async fn discard(&mut self, failure: &Failure) {
        let Some(session) = self.current.take() else {
            return;
        };
        self.ctx.memory.untrack((self.account.id, session.serial));
        let info = session.browser.info().clone();
        let observed = session.browser.health();
        self.ctx.journal.emit(Event::BrowserCrashed {
            account: self.account.id,
            pid: info.pid(),
            node: info.node.clone(),
            kind: observed.unwrap_or(failure.kind).as_str().into(),
            error: failure.message.clone(),
        });
        session.browser.kill().await;
    }

    /// The account is done: close everything (gracefully unless `interrupted`) and
    /// hand back the seat, for the caller to drop once the account is journaled done
    /// (in sequential mode the next account must not start before that line).
    pub(crate) async fn close(&mut self, interrupted: bool) -> Option<Seat> {
        if let Some(ahead) = self.ahead.take() {
            ahead.abort();
            if let Ok((Ok(session), _)) = ahead.await {
                self.ctx.memory.untrack((self.account.id, session.serial));
                session.browser.kill().await;
            }
        }
        if let Some(s) = self.current.take() {
            self.ctx.memory.untrack((self.account.id, s.serial));
            if interrupted && s.browser.is_local() {
                // Ctrl-C: no time for a graceful quit, but nothing may outlive us.
                drop(s);
            } else if interrupted {
                // A remote session: a brief DELETE, or its Grid slot stays taken
                // until the Grid's own session timeout.
                s.browser.kill().await;
            } else {
                s.browser.close().await;
            }
        }
        self.seat.take()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // A cancelled account: the ahead-launch must not outlive it. (Its Browser is
        // killed by its own Drop when the task is cancelled.)
        if let Some(a) = self.ahead.take() {
            a.abort();
        }
    }
}

/// Admission, the spec's lock lines, the fixed pause, the launch, the journal.
/// Returns the seat when this was the account's first admission.
async fn launch(
    ctx: Arc<Ctx>,
    account: Arc<Account>,
    req: Request,
    profile_dir: Option<std::path::PathBuf>,
    serial: u32,
) -> (Result<Session, Failure>, Option<Seat>) {
    let id = account.id;
    let mut admission = ctx.scheduler.admit(req).await;
    let seat = admission.take_seat();
    if let Some((_, d)) = admission
        .waits
        .iter()
        .find(|(r, _)| *r == super::scheduler::Reason::Memory)
    {
        ctx.memory.add_wait(*d);
    }
    let locked = ctx.scheduler.locked();
    if locked {
        ctx.journal.emit(Event::LaunchLockAcquired { account: id });
    }
    admission.pace().await;
    let started = Instant::now();
    let result = create(&ctx, &account, profile_dir, serial, admission.waited).await;
    // Journal the release while still admitted: otherwise the next creation's
    // `launch_lock_acquired` can be written before our `launch_lock_released`.
    if locked {
        ctx.journal.emit(Event::LaunchLockReleased { account: id });
    }
    admission.finish(started.elapsed(), result.is_ok());
    (result, seat)
}

/// Start the browser — locally, or on the remote endpoint — and journal the outcome.
async fn create(
    ctx: &Ctx,
    account: &Account,
    profile_dir: Option<std::path::PathBuf>,
    serial: u32,
    waited: Duration,
) -> Result<Session, Failure> {
    let id = account.id;
    let settings = &ctx.plan.project.settings;
    let mut ephemeral = None;
    let mut spec = match (&ctx.plan.webdriver_url, &ctx.binaries) {
        (Some(url), _) => LaunchSpec::remote(url),
        (None, Some(binaries)) => {
            let dir = match profile_dir {
                Some(d) => d,
                None => {
                    let p = profiles::ephemeral(&ctx.ephemeral_parent)
                        .map_err(|e| Failure::new(FailureKind::Launch, e.to_string()))?;
                    let d = p.path().to_path_buf();
                    ephemeral = Some(p);
                    d
                }
            };
            let mut spec = LaunchSpec::new(binaries.clone(), &dir);
            let local = spec.local_mut().expect("a local spec");
            local.ports = ctx.ports.clone();
            local.registry = Some(Arc::clone(&ctx.registry));
            local.env_remove = ctx.secret_env.clone();
            spec
        }
        (None, None) => unreachable!("a local run has located its binaries"),
    };
    spec.headless = !ctx.plan.headed;
    // `[browser]` defaults under the account's own browser options (validated on loading).
    let identity = crate::config::identity_of(&settings.browser, account);
    spec.args = identity.args.clone();
    spec.window_size = identity.window_size;
    spec.user_agent = identity.user_agent.clone();
    spec.accept_language = identity.accept_language.clone();
    spec.timezone = identity.timezone.clone();
    let proxy_ca =
        crate::config::proxy_ca_of(&settings.browser, &ctx.plan.project.accounts.path, account);
    let upstreams = crate::config::proxy_of(account);
    let needs_forwarder =
        |u: &forwarder::Upstream| forwarder::needs_forwarder(u, proxy_ca.is_some());
    // A list goes in order: Chromium moves on from a proxy it cannot reach by itself
    // (`--proxy-server=a,b`); the forwarder does the same for its upstreams.
    let shown = |us: &[forwarder::Upstream]| {
        let each: Vec<String> = us.iter().map(|u| u.without_credentials()).collect();
        each.join(",")
    };
    let forwarder = match upstreams.as_slice() {
        [] => None,
        list if list.iter().any(needs_forwarder) => {
            let upstream_shown = shown(list);
            // Chromium ignores credentials in `--proxy-server`, and a command line is
            // readable by every user: Chrome gets our loopback forwarder instead,
            // which adds the credentials upstream (and checks an https:// proxy's
            // certificate against `proxy_ca`, which Chromium would not trust).
            let trust = match &proxy_ca {
                // Checked on loading; read again for each forwarder, so a file
                // changed since is noticed rather than half-used.
                Some(path) => forwarder::Trust::with_ca_file(path).map_err(|e| Failure {
                    permanent: true,
                    ..Failure::new(FailureKind::Launch, format!("account {id}, proxy_ca: {e}"))
                })?,
                None => forwarder::Trust::default(),
            };
            let journal = ctx.journal.clone();
            let tell: forwarder::OnFailover = Box::new(move |from, to| {
                journal.emit(Event::ProxyFailover {
                    account: id,
                    from,
                    to,
                });
            });
            let f = forwarder::Forwarder::start_watched(upstreams.clone(), &trust, Some(tell))
                .await
                .map_err(|e| {
                    Failure::new(
                        FailureKind::Launch,
                        format!("could not start the proxy forwarder: {e}"),
                    )
                })?;
            spec.proxy = Some(f.proxy_server());
            ctx.journal.emit(Event::ProxyForwarder {
                account: id,
                listen: f.addr().to_string(),
                upstream: upstream_shown,
            });
            Some(f)
        }
        list => {
            spec.proxy = Some(shown(list));
            None
        }
    };
    spec.request_timeout = settings.timeouts.webdriver;
    spec.launch_timeout = settings.timeouts.launch;
    match Browser::launch(&spec).await {
        Ok(browser) => {
            let info = browser.info();
            let local = info.local.as_ref();
            // What cannot apply to a remote browser is null, never made up.
            ctx.journal.emit(Event::BrowserCreated {
                account: id,
                pid: local.map(|l| l.pid),
                port: local.map(|l| l.devtools_port),
                driver_port: local.map(|l| l.driver_port),
                driver_pid: local.map(|l| l.driver_pid),
                session_id: info.session_id.clone(),
                profile: local.map(|l| l.profile.display().to_string()),
                chromium: local.map(|l| l.chromium.display().to_string()),
                node: info.node.clone(),
                launch: serial,
                // Journaled as given: the journal redacts a value from a secret field.
                user_agent: identity.user_agent,
                accept_language: identity.accept_language,
                timezone: identity.timezone,
                window_size: Some(format!(
                    "{}x{}",
                    identity.window_size.0, identity.window_size.1
                )),
                launch_ms: info.launch_time.as_millis() as u64,
                admission_wait_ms: waited.as_millis() as u64,
            });
            // PSS is measured on this host's process trees: a remote browser has none.
            if let Some(l) = local {
                ctx.memory.track((id, serial), l.driver_pid);
            }
            Ok(Session {
                browser,
                forwarder,
                _ephemeral: ephemeral,
                serial,
                iterations: 0,
            })
        }
        Err(e) => {
            let message = crate::config::redact(&e.to_string(), account);
            ctx.journal.emit(Event::LaunchFailed {
                account: id,
                error: message.clone(),
            });
            Err(Failure::launch(&e, message))
        }
    }
}
