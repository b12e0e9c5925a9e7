//! One live browser session, and where it comes from ([`Source`]): either a private
//! ChromeDriver and the Chrome it started on this host — launched, verified,
//! health-checked and torn down as a unit — or a session opened on a remote WebDriver
//! endpoint such as a Selenium Grid hub, where the session is all there is. A
//! [`Browser`] is the session plus, for a local one, its local part (processes, process
//! group, port leases, registry record); [`BrowserInfo::local`] says which.
//!
//! The DevTools port is never trusted: chromedriver does not check that the port it
//! was told is answered by the Chrome it started (two sessions given the same port
//! both "succeed" and drive the same browser). So after the session exists we read
//! the `DevToolsActivePort` file that *our* Chrome wrote into *our* profile and check
//! that the port answers `/json/version` with that same browser id.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thirtyfour::cdp::domains::browser::{DownloadBehavior, SetDownloadBehavior};
use thirtyfour::error::WebDriverError;
use thirtyfour::{ChromiumLikeCapabilities, DesiredCapabilities, WebDriver};

use crate::driver::{self, DriverProcess};
use crate::registry::{PrivateTmp, RecordGuard};
use crate::{Binaries, FailureKind, LaunchError, Registry, process_alive, runtime_dir};

/// Where a browser session comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A private ChromeDriver and Chromium started here.
    Local(LocalSpec),
    /// A remote WebDriver endpoint (a Selenium Grid hub, or a lone driver elsewhere):
    /// a session is requested there; no process, port or profile of ours is involved.
    Remote {
        /// The endpoint, e.g. `http://127.0.0.1:4444`.
        url: String,
    },
}

/// What only a local browser needs.
#[derive(Debug, Clone)]
pub struct LocalSpec {
    /// Chromium and ChromeDriver.
    pub binaries: Binaries,
    /// The user-data directory; the caller guarantees nobody else uses it.
    pub profile: PathBuf,
    /// Lease both ports from this allocator (e.g. a firewall-friendly range);
    /// `None`: the kernel chooses them and we read them back.
    pub ports: Option<ports::PortAllocator>,
    /// Where to record the browser for reaping by a later process.
    pub registry: Option<Arc<Registry>>,
    /// Environment variables the driver and Chrome must not inherit (those holding
    /// secrets).
    pub env_remove: Vec<String>,
}

/// Everything needed to start one browser.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Local processes, or a remote endpoint.
    pub source: Source,
    /// Headless (default) or a visible window.
    pub headless: bool,
    /// Extra Chromium switches.
    pub args: Vec<String>,
    /// Window size in pixels.
    pub window_size: (u32, u32),
    /// `--proxy-server` for this browser.
    pub proxy: Option<String>,
    /// `--user-agent` for this browser (None: Chromium's own).
    pub user_agent: Option<String>,
    /// Languages, comma-separated (`de-DE,de`): the `intl.accept_languages` pref —
    /// in headless Chromium `--lang` alone changes neither the Accept-Language header
    /// nor `navigator.language` (measured) — and `--lang` with the first one.
    pub accept_language: Option<String>,
    /// An IANA time zone: the `TZ` of a local driver (Chrome inherits it; measured to
    /// set `Intl.DateTimeFormat().resolvedOptions().timeZone`), for a remote session
    /// `Emulation.setTimezoneOverride` through the endpoint's CDP command.
    pub timezone: Option<String>,
    /// Timeout for each WebDriver request.
    pub request_timeout: Duration,
    /// Timeout for the whole launch (for a Grid: queueing for a slot included).
    pub launch_timeout: Duration,
}

impl LaunchSpec {
    /// A local browser on `profile`. Defaults: headless, 1280×800, kernel-chosen
    /// ports, 30 s timeouts, no registry.
    pub fn new(binaries: Binaries, profile: &Path) -> Self {
        Self::with_source(Source::Local(LocalSpec {
            binaries,
            profile: profile.to_path_buf(),
            ports: None,
            registry: None,
            env_remove: Vec::new(),
        }))
    }

    /// A session on the remote WebDriver endpoint `url`, with the same defaults.
    pub fn remote(url: &str) -> Self {
        Self::with_source(Source::Remote {
            url: url.trim_end_matches('/').to_string(),
        })
    }

    fn with_source(source: Source) -> Self {
        LaunchSpec {
            source,
            headless: true,
            args: Vec::new(),
            window_size: (1280, 800),
            proxy: None,
            user_agent: None,
            accept_language: None,
            timezone: None,
            request_timeout: Duration::from_secs(30),
            launch_timeout: Duration::from_secs(30),
        }
    }

    /// The local part, if this is a local browser.
    pub fn local_mut(&mut self) -> Option<&mut LocalSpec> {
        match &mut self.source {
            Source::Local(l) => Some(l),
            Source::Remote { .. } => None,
        }
    }

    fn profile(&self) -> Option<&Path> {
        match &self.source {
            Source::Local(l) => Some(&l.profile),
            Source::Remote { .. } => None,
        }
    }
}

/// What is known about a live browser (all of it safe to print).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserInfo {
    /// The WebDriver endpoint the session lives on: `http://127.0.0.1:<driver_port>`
    /// for a local browser, the Grid's URL for a remote one.
    pub webdriver_url: String,
    /// The WebDriver session id.
    pub session_id: String,
    /// A DevTools WebSocket URL: Chrome's browser-level one (verified to be ours) for
    /// a local browser, the Grid's `se:cdp` proxy for a remote one (`None` if the
    /// endpoint offers none).
    pub cdp_url: Option<String>,
    /// The Grid node running the session (its URI), when the Grid says.
    pub node: Option<String>,
    /// How long the launch took (for a Grid: queueing for a slot included).
    pub launch_time: Duration,
    /// Pids, ports and the profile: only a local browser has them.
    pub local: Option<LocalInfo>,
}

/// The local part of a browser: what exists only when it runs on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalInfo {
    /// Chrome's main process.
    pub pid: u32,
    /// Chrome's DevTools port on 127.0.0.1 (verified).
    pub devtools_port: u16,
    /// ChromeDriver's pid (also the process group of the whole browser).
    pub driver_pid: u32,
    /// ChromeDriver's port on 127.0.0.1.
    pub driver_port: u16,
    /// The profile directory.
    pub profile: PathBuf,
    /// The Chromium binary it runs (the full browser or the headless shell).
    pub chromium: PathBuf,
}

impl BrowserInfo {
    /// Chrome's pid, for a local browser.
    pub fn pid(&self) -> Option<u32> {
        self.local.as_ref().map(|l| l.pid)
    }
}

/// A live browser session. For a local one, dropping it kills ChromeDriver and Chrome
/// (prefer [`Browser::close`], which lets Chrome save its profile first); for a remote
/// one, dropping it asks the endpoint, in the background, to end the session.
#[derive(Debug)]
pub struct Browser {
    driver: Option<WebDriver>,
    info: BrowserInfo,
    local: Option<LocalParts>,
}

/// The processes and resources of a local browser.
#[derive(Debug)]
struct LocalParts {
    process: DriverProcess,
    group: ProcessGroup,
    _record: Option<RecordGuard>,
    _leases: Vec<ports::PortLease>,
    /// Last: removed once the processes above are killed.
    _tmp: Option<PrivateTmp>,
}

/// Kills a whole process group when dropped: the driver and every Chrome it started.
#[derive(Debug)]
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Browser {
    /// Start the browser the spec's [`Source`] says — a local ChromeDriver and
    /// Chrome, verified, or a session on a remote endpoint — within its launch timeout.
    pub async fn launch(spec: &LaunchSpec) -> Result<Browser, LaunchError> {
        let started = Instant::now();
        let inner = async {
            match &spec.source {
                Source::Local(local) => Self::launch_local(spec, local, started).await,
                Source::Remote { url } => Self::connect_remote(spec, url, started).await,
            }
        };
        match tokio::time::timeout(spec.launch_timeout, inner).await {
            Ok(r) => r,
            Err(_) => Err(LaunchError::Timeout {
                secs: spec.launch_timeout.as_secs_f64(),
            }),
        }
    }

    async fn launch_local(
        spec: &LaunchSpec,
        local: &LocalSpec,
        started: Instant,
    ) -> Result<Browser, LaunchError> {
        let profile = &local.profile;
        // A stale file from an earlier Chrome would make us verify against the wrong id.
        let active_port_file = profile.join("DevToolsActivePort");
        let _ = std::fs::remove_file(&active_port_file);

        let mut leases = Vec::new();
        let (driver_port, debug_port) = match &local.ports {
            Some(alloc) => {
                let d = alloc.lease()?;
                let c = alloc.lease()?;
                let ports = (Some(d.port()), Some(c.port()));
                leases.extend([d, c]);
                ports
            }
            None => (None, None),
        };

        let tmp = match &local.registry {
            Some(r) => r.private_tmp()?,
            None => PrivateTmp::standalone()?,
        };
        let process = driver::spawn(
            &local.binaries.chromedriver,
            driver_port,
            spec.launch_timeout,
            &local.env_remove,
            spec.timezone.as_deref(),
            tmp.as_ref().map(PrivateTmp::path),
        )
        .await?;
        // From here on, any early return kills the driver and whatever Chrome it started.
        let group = ProcessGroup(process.pid);
        let webdriver_url = format!("http://127.0.0.1:{}", process.port);

        let caps = capabilities(spec, debug_port)?;
        let driver = WebDriver::builder(&webdriver_url, caps)
            .request_timeout(spec.request_timeout)
            .connect()
            .await
            .map_err(|e| LaunchError::Session {
                reason: crate::failure::detail(&e),
            })?;
        // From here on the session must be leaked, not dropped: its Drop would block
        // on a DELETE request.
        let checked = async {
            let returned = driver.capabilities();
            let pid = returned
                .get("goog:processID")
                .and_then(|v| v.as_u64())
                .map(|p| p as u32);
            let address = returned
                .get("goog:chromeOptions")
                .and_then(|o| o.get("debuggerAddress"))
                .and_then(|a| a.as_str())
                .unwrap_or_default()
                .to_string();
            let reported: u16 = address
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if let Some(expected) = debug_port
                && reported != expected
            {
                return Err(LaunchError::PortMismatch {
                    port: expected,
                    profile: profile.clone(),
                    reason: format!("chromedriver reports {address}"),
                });
            }
            let pid = match pid {
                Some(p) => p,
                None => singleton_pid(profile).ok_or_else(|| LaunchError::Session {
                    reason: "chrome's pid is neither in the capabilities nor in SingletonLock"
                        .into(),
                })?,
            };
            let cdp_url = verify_devtools(profile, reported, pid, debug_port.is_none()).await?;
            Ok((pid, reported, cdp_url))
        }
        .await;
        let (pid, devtools_port, cdp_url) = match checked {
            Ok(v) => v,
            Err(e) => {
                drop(group);
                let _ = driver.leak();
                return Err(e);
            }
        };
        let record = match &local.registry {
            Some(r) => Some(r.record(process.pid, process.pid, Some(pid), profile)?),
            None => None,
        };
        let info = BrowserInfo {
            webdriver_url,
            session_id: driver.session_id().to_string(),
            cdp_url: Some(cdp_url),
            node: None,
            launch_time: started.elapsed(),
            local: Some(LocalInfo {
                pid,
                devtools_port,
                driver_pid: process.pid,
                driver_port: process.port,
                profile: profile.clone(),
                chromium: local.binaries.chromium.clone(),
            }),
        };
        tracing::debug!(pid, port = devtools_port, profile = %profile.display(), "browser launched");
        Ok(Browser {
            driver: Some(driver),
            info,
            local: Some(LocalParts {
                process,
                group,
                _record: record,
                _leases: leases,
                _tmp: tmp,
            }),
        })
    }

    /// Ask a remote endpoint for a session. A Grid queues the request until a slot is
    /// free (or its own `session-request-timeout` passes: `session not created`); our
    /// launch timeout bounds the wait either way.
    async fn connect_remote(
        spec: &LaunchSpec,
        url: &str,
        started: Instant,
    ) -> Result<Browser, LaunchError> {
        let caps = capabilities(spec, None)?;
        // Until the Grid notices a dead node (its health check), it still routes new
        // sessions there and answers `session not created … ConnectException` at
        // once. Its own queue would retry; so do we, within the launch timeout (the
        // outer timeout still bounds everything).
        let give_up = started + spec.launch_timeout.saturating_sub(Duration::from_secs(1));
        let driver = loop {
            // The trailing slash keeps a path prefix (`/wd/hub`) when URLs are joined.
            match WebDriver::builder(format!("{url}/"), caps.clone())
                .request_timeout(spec.request_timeout)
                .connect()
                .await
            {
                Ok(d) => break d,
                Err(e) => {
                    let reason = first_line(&crate::remote::session_error(&e));
                    if crate::remote::node_unreachable(&e) && Instant::now() < give_up {
                        tracing::debug!(%reason, "the Grid could not reach a node: asking again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    return Err(LaunchError::Session { reason });
                }
            }
        };
        let session_id = driver.session_id().to_string();
        if let Some(tz) = &spec.timezone {
            // No environment of ours reaches a node's Chrome: the page's time zone is
            // overridden through the endpoint instead (ChromeDriver's CDP command).
            let set = driver
                .cdp()
                .send_raw(
                    "Emulation.setTimezoneOverride",
                    serde_json::json!({ "timezoneId": tz }),
                )
                .await;
            if let Err(e) = set {
                // The session is ours to end: dropping it would block on a DELETE.
                let _ = driver.leak();
                crate::remote::delete_session(url, &session_id, Duration::from_secs(3)).await;
                return Err(LaunchError::Session {
                    reason: format!(
                        "could not set the time zone {tz}: {}",
                        first_line(&e.to_string())
                    ),
                });
            }
        }
        let cdp_url = driver
            .capabilities()
            .get("se:cdp")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let node = crate::remote::grid_node(url, &session_id).await;
        tracing::debug!(session = %session_id, node = ?node, "remote session opened");
        Ok(Browser {
            driver: Some(driver),
            info: BrowserInfo {
                webdriver_url: url.to_string(),
                session_id,
                cdp_url,
                node,
                launch_time: started.elapsed(),
                local: None,
            },
            local: None,
        })
    }

    /// The WebDriver session.
    pub fn driver(&self) -> &WebDriver {
        self.driver
            .as_ref()
            .expect("driver is present until close/drop")
    }

    /// The session, and for a local browser its pids, ports and profile.
    pub fn info(&self) -> &BrowserInfo {
        &self.info
    }

    /// Whether the browser runs on this host (has processes, ports and a profile).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Make the browser save downloads into `dir` (Chrome creates it, 0700, at the
    /// first download) without asking. Without this a headless Chrome drops every
    /// download silently (measured here, both full Chromium and the headless shell).
    ///
    /// Through the DevTools command `Browser.setDownloadBehavior`, not the
    /// `download.default_directory` preference: the headless shell has no
    /// preferences layer and ignores it. Chrome does not number a second download of
    /// the same name in the same directory: it replaces the first, so callers give
    /// each unit of work its own `dir`. One call costs 1–7 ms here.
    ///
    /// Local browsers only: a remote node would save into a directory on its own
    /// host, so for a remote session this does nothing and returns `Ok(false)`.
    pub async fn allow_downloads(&self, dir: &Path) -> Result<bool, WebDriverError> {
        if !self.is_local() {
            return Ok(false);
        }
        let command = SetDownloadBehavior {
            behavior: DownloadBehavior::Allow,
            browser_context_id: None,
            download_path: Some(dir.to_string_lossy().into_owned()),
            events_enabled: None,
        };
        self.driver().cdp().send(command).await?;
        Ok(true)
    }

    /// Look at the processes: `Some(kind)` if the driver or Chrome is gone. A remote
    /// browser has no process here to look at: always `None` (a lost remote session
    /// shows in the answers to requests instead; see [`crate::confirm_loss`]).
    pub fn health(&self) -> Option<FailureKind> {
        let local = self.info.local.as_ref()?;
        if !process_alive(local.driver_pid) {
            Some(FailureKind::DriverGone)
        } else if !process_alive(local.pid) {
            Some(FailureKind::BrowserGone)
        } else {
            None
        }
    }

    /// Quit the session (so Chrome saves cookies and history), then make sure every
    /// process of the browser is gone before returning — the profile is free after.
    /// A remote session is ended on its endpoint, which frees its Grid slot.
    pub async fn close(self) {
        self.shut_down(true).await;
    }

    /// Like [`Browser::close`] without asking the driver first: for a browser that is
    /// crashed or hung, where a polite quit would only wait for a timeout. A remote
    /// session is still deleted (briefly): nothing else frees its slot on the Grid.
    pub async fn kill(self) {
        self.shut_down(false).await;
    }

    async fn shut_down(mut self, graceful: bool) {
        let Some(local) = self.local.as_mut() else {
            if let Some(driver) = self.driver.take() {
                let _ = driver.leak();
                let timeout = if graceful { 10 } else { 3 };
                crate::remote::delete_session(
                    &self.info.webdriver_url,
                    &self.info.session_id,
                    Duration::from_secs(timeout),
                )
                .await;
            }
            return;
        };
        if let Some(driver) = self.driver.take() {
            let mut quit = false;
            let alive = process_alive(local.process.pid)
                && self
                    .info
                    .local
                    .as_ref()
                    .is_some_and(|l| process_alive(l.pid));
            if graceful && alive {
                // quit consumes the handle; on a timeout the session is simply abandoned.
                quit = matches!(
                    tokio::time::timeout(Duration::from_secs(5), driver.clone().quit()).await,
                    Ok(Ok(()))
                );
            }
            if !quit {
                let _ = driver.leak();
            }
        }
        local.group.kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), local.process.child.wait()).await;
        let pid = self.info.pid().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl ProcessGroup {
    fn kill(&self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let Some(local) = self.local.as_mut() else {
            // A remote session: end it in the background if a runtime is there to do
            // it (a dropped task is a cancelled account or a panic); otherwise the
            // Grid's own session timeout frees the slot.
            if let Some(driver) = self.driver.take() {
                let _ = driver.leak();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let (url, id) = (
                        self.info.webdriver_url.clone(),
                        self.info.session_id.clone(),
                    );
                    rt.spawn(async move {
                        crate::remote::delete_session(&url, &id, Duration::from_secs(3)).await
                    });
                }
            }
            return;
        };
        // Kill first, so a leaked session's DELETE can never block on a live driver.
        local.group.kill();
        if let Some(driver) = self.driver.take() {
            let _ = driver.leak();
        }
        let _ = local.process.child.start_kill();
        // The profile lock is released right after us: wait (briefly, SIGKILL is quick)
        // until the driver is reaped and Chrome is gone, so the next user of the
        // profile finds it free and no process of ours is still dying.
        let pid = self.info.pid().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let driver_gone = !matches!(local.process.child.try_wait(), Ok(None));
            if (driver_gone && !process_alive(pid)) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn capabilities(
    spec: &LaunchSpec,
    debug_port: Option<u16>,
) -> Result<thirtyfour::ChromeCapabilities, LaunchError> {
    let mut caps = DesiredCapabilities::chrome();
    let session = |e: thirtyfour::error::WebDriverError| LaunchError::Session {
        reason: e.to_string(),
    };
    // A remote node brings its own browser (its stereotype names the binary).
    if let Source::Local(local) = &spec.source {
        let binary = chromium_with_pdeathsig(&local.binaries.chromium)?;
        caps.set_binary(&binary.to_string_lossy())
            .map_err(session)?;
    }
    let profile = spec.profile().unwrap_or(Path::new(""));
    let mut args: Vec<String> = vec![
        format!("--user-data-dir={}", profile.display()),
        // Needed on this closed network: otherwise Chrome keeps reaching for Google.
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-gpu".into(),
        // Not `--disable-crashpad-for-testing`: measured here, it makes every
        // navigation end on about:blank.
        "--disable-breakpad".into(),
        format!(
            "--window-size={},{}",
            spec.window_size.0, spec.window_size.1
        ),
    ];
    if spec.headless {
        args.push("--headless=new".into());
    }
    // Our euid says nothing about a remote node's: its stereotype decides there.
    if is_root() && spec.profile().is_some() {
        args.push("--no-sandbox".into());
    }
    if let Some(port) = debug_port {
        args.push(format!("--remote-debugging-port={port}"));
        args.push("--remote-debugging-address=127.0.0.1".into());
    }
    if let Some(proxy) = &spec.proxy {
        args.push(format!("--proxy-server={proxy}"));
    }
    if let Some(ua) = &spec.user_agent {
        args.push(format!("--user-agent={ua}"));
    }
    if let Some(langs) = &spec.accept_language {
        let first = langs.split(',').next().unwrap_or_default().trim();
        args.push(format!("--lang={first}"));
        // `chromium-headless-shell` has no preferences layer, so it ignores the pref
        // below: its own switch sets the header there (and full Chromium ignores it).
        args.push(format!("--accept-lang={}", langs.replace(' ', "")));
    }
    args.extend(spec.args.iter().cloned());
    if spec.profile().is_none() {
        // A remote node chooses its own (temporary) profile directory.
        args.retain(|a| !a.starts_with("--user-data-dir="));
    }
    for a in &args {
        caps.add_arg(a).map_err(session)?;
    }
    // The new-tab page reaches for the network and stalled the first navigation by up
    // to 5 s in half the runs; starting on about:blank takes 30–90 ms every time.
    let mut prefs = serde_json::json!({"session.restore_on_startup": 4, "session.startup_urls": ["about:blank"]});
    if let Some(langs) = &spec.accept_language {
        prefs["intl.accept_languages"] = langs.replace(' ', "").into();
    }
    caps.add_experimental_option("prefs", prefs)
        .map_err(session)?;
    Ok(caps)
}

/// A tiny script that starts Chromium with `PR_SET_PDEATHSIG`, so Chrome dies with its
/// driver (which dies with us): without it a `kill -9` of the runner leaves ~9 Chrome
/// processes behind. Without `setpriv` the script still runs Chromium, only without
/// the parent-death signal.
///
/// The script also gives Chromium its first page, `about:blank`, as the one
/// positional argument. ChromeDriver passes its own first page (`data:,`) only when
/// it chose the user-data directory itself; with ours it relies on the browser to open
/// a window. Full Chromium opens its startup page, but `chromium-headless-shell` opens
/// no page at all, and ChromeDriver then waits for one until our launch timeout
/// (measured: every session on the headless shell timed out at 30 s; with the page,
/// 0.5 s). A positional argument cannot go through `goog:chromeOptions.args`:
/// ChromeDriver prefixes every entry with `--`.
fn chromium_with_pdeathsig(chromium: &Path) -> Result<PathBuf, LaunchError> {
    // Written once per process and script path (the runtime directory may differ
    // between launches, as in tests); the lock also keeps a second thread from
    // writing it while the first does.
    static WRITTEN: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut written = WRITTEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists());
    let quoted = format!(
        "'{}'",
        chromium.display().to_string().replace('\'', "'\\''")
    );
    let exec = match setpriv {
        Some(setpriv) => format!("{} --pdeathsig KILL {quoted}", setpriv.display()),
        None => {
            tracing::warn!(
                "setpriv not found: chromium will not die with its driver if the runner is killed"
            );
            quoted
        }
    };
    let dir = runtime_dir().join("bin");
    fsutil::private_dir(&dir).map_err(|source| LaunchError::Io {
        path: dir.clone(),
        source,
    })?;
    let script = format!(
        "#!/bin/sh\n# written by batch-cli: chromium dies when its chromedriver dies, and opens about:blank\nexec {exec} \"$@\" about:blank\n",
    );
    let name = format!("chromium-{:016x}", fnv1a(script.as_bytes()));
    let path = dir.join(name);
    if written.contains(&path) && path.exists() {
        return Ok(path);
    }
    let io = |source| LaunchError::Io {
        path: path.clone(),
        source,
    };
    // Written once and never replaced while intact: every Chrome start execs it, and
    // replacing it during another runner's start failed that start ("Chrome instance
    // exited": 3 of 26 side-by-side shard runs before, 0 of 30 after; see
    // `fsutil::write_new`).
    if !fsutil::write_new(&path, script.as_bytes(), 0o700).map_err(io)?
        && std::fs::read_to_string(&path).ok().as_deref() != Some(&script)
    {
        // Not ours (the name is the script's hash): a damaged or foreign file.
        fsutil::write_atomic(&path, script.as_bytes(), 0o700).map_err(io)?;
    }
    written.push(path.clone());
    Ok(path)
}

/// Get ready to launch `binaries` before the first launch: writes the small
/// script every Chrome start goes through (see `chromium_with_pdeathsig`), while
/// no child is being forked. A file written while a sibling thread forks is held
/// open for writing by that child until its exec, and a Chrome started from it
/// meanwhile fails (`ETXTBSY`). Launching without it is still correct (the first
/// launch writes it), only without that guarantee.
pub fn prepare(binaries: &crate::Binaries) -> Result<(), LaunchError> {
    chromium_with_pdeathsig(&binaries.chromium).map(drop)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The port must be a listening socket held by *our* Chrome (its pid, from the
/// session's capabilities), and answer as a DevTools endpoint. When the kernel chose
/// the port, the `DevToolsActivePort` file Chrome wrote into our profile must name it
/// too (Chrome writes that file only for `--remote-debugging-port=0`).
async fn verify_devtools(
    profile: &Path,
    port: u16,
    pid: u32,
    kernel_chosen: bool,
) -> Result<String, LaunchError> {
    let mismatch = |reason: String| LaunchError::PortMismatch {
        port,
        profile: profile.to_path_buf(),
        reason,
    };
    if kernel_chosen {
        let content =
            std::fs::read_to_string(profile.join("DevToolsActivePort")).unwrap_or_default();
        let file_port: u16 = content
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0);
        if file_port != port {
            return Err(mismatch(format!(
                "the profile's DevToolsActivePort says {file_port:?}"
            )));
        }
    }
    if !crate::proc::holds_listener(pid, port) {
        return Err(mismatch(match crate::proc::listener_owner(port) {
            Some(owner) => format!("the listener belongs to pid {owner}, our chrome is {pid}"),
            None => format!("no listener of chrome {pid} found on the port"),
        }));
    }
    let url = format!("http://127.0.0.1:{port}/json/version");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| mismatch(e.to_string()))?;
    let body: serde_json::Value = client
        .get(&url)
        .send()
        .await
        .map_err(|e| mismatch(format!("{url}: {e}")))?
        .json()
        .await
        .map_err(|e| mismatch(format!("{url}: {e}")))?;
    let ws = body
        .get("webSocketDebuggerUrl")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if !ws.contains("/devtools/browser/") {
        return Err(mismatch(format!(
            "it does not answer as a DevTools endpoint ({ws:?})"
        )));
    }
    Ok(ws.to_string())
}

/// The pid in Chrome's `SingletonLock` symlink (`<hostname>-<pid>`).
fn singleton_pid(profile: &Path) -> Option<u32> {
    let target = std::fs::read_link(profile.join("SingletonLock")).ok()?;
    target.to_str()?.rsplit('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrome_options(caps: thirtyfour::ChromeCapabilities) -> serde_json::Value {
        let caps: thirtyfour::Capabilities = caps.into();
        serde_json::to_value(&caps).unwrap()["goog:chromeOptions"].clone()
    }

    #[test]
    fn the_identity_goes_into_switches_and_prefs() {
        let mut spec = LaunchSpec::remote("http://127.0.0.1:4444");
        let plain = chrome_options(capabilities(&spec, None).unwrap());
        assert!(
            plain["prefs"].get("intl.accept_languages").is_none(),
            "{plain}"
        );
        spec.user_agent = Some("Agent/1 (x)".into());
        spec.accept_language = Some("ko-KR, ko,en".into());
        spec.window_size = (900, 700);
        let opts = chrome_options(capabilities(&spec, None).unwrap());
        let args: Vec<&str> = opts["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        for want in [
            "--user-agent=Agent/1 (x)",
            "--lang=ko-KR",
            "--accept-lang=ko-KR,ko,en",
            "--window-size=900,700",
        ] {
            assert!(args.contains(&want), "{want}: {args:?}");
        }
        // `--lang` alone does not reach the header in headless Chromium: the pref does.
        assert_eq!(
            opts["prefs"]["intl.accept_languages"], "ko-KR,ko,en",
            "{opts}"
        );
        assert_eq!(opts["prefs"]["session.restore_on_startup"], 4, "{opts}");
    }

    #[test]
    fn a_remote_session_asks_for_nothing_of_this_host() {
        let mut spec = LaunchSpec::remote("http://127.0.0.1:4444/wd/hub/");
        assert!(
            matches!(&spec.source, Source::Remote { url } if url == "http://127.0.0.1:4444/wd/hub")
        );
        assert!(spec.local_mut().is_none());
        spec.args = vec!["--lang=de".into(), "--user-data-dir=/here".into()];
        let opts = chrome_options(capabilities(&spec, None).unwrap());
        let args: Vec<&str> = opts["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        // No binary, profile, DevTools port or sandbox decision of ours: the node's.
        assert!(opts.get("binary").is_none(), "{opts}");
        for a in &args {
            assert!(
                !a.starts_with("--user-data-dir")
                    && !a.starts_with("--remote-debugging")
                    && *a != "--no-sandbox",
                "{a}"
            );
        }
        assert!(
            args.contains(&"--headless=new") && args.contains(&"--lang=de"),
            "{args:?}"
        );
    }

    #[tokio::test]
    async fn a_port_held_by_another_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // This test process holds the port; "our chrome" is some other pid.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let err = verify_devtools(dir.path(), port, 1, false)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("belongs to pid {}", std::process::id())),
            "{err}"
        );
        // Kernel-chosen ports must also match the profile's DevToolsActivePort.
        std::fs::write(
            dir.path().join("DevToolsActivePort"),
            "1234\n/devtools/browser/x\n",
        )
        .unwrap();
        let err = verify_devtools(dir.path(), port, std::process::id(), true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("DevToolsActivePort says"), "{err}");
        assert!(err.is_transient());
    }
}
