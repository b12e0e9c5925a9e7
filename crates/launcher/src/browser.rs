//! One live browser: a private ChromeDriver, the Chrome it started, and the WebDriver
//! session between them — launched, verified, health-checked, and torn down as a unit.
//!
//! The DevTools port is never trusted: chromedriver does not check that the port it
//! was told is answered by the Chrome it started (two sessions given the same port
//! both "succeed" and drive the same browser). So after the session exists we read
//! the `DevToolsActivePort` file that *our* Chrome wrote into *our* profile and check
//! that the port answers `/json/version` with that same browser id.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thirtyfour::{ChromiumLikeCapabilities, DesiredCapabilities, WebDriver};

use crate::driver::{self, DriverProcess};
use crate::registry::RecordGuard;
use crate::{Binaries, FailureKind, LaunchError, Registry, process_alive, runtime_dir};

/// Everything needed to start one browser.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Chromium and ChromeDriver.
    pub binaries: Binaries,
    /// The user-data directory; the caller guarantees nobody else uses it.
    pub profile: PathBuf,
    /// Headless (default) or a visible window.
    pub headless: bool,
    /// Extra Chromium switches.
    pub args: Vec<String>,
    /// Window size in pixels.
    pub window_size: (u32, u32),
    /// `--proxy-server` for this browser.
    pub proxy: Option<String>,
    /// Lease both ports from this allocator (e.g. a firewall-friendly range);
    /// `None`: the kernel chooses them and we read them back.
    pub ports: Option<ports::PortAllocator>,
    /// Timeout for each WebDriver request.
    pub request_timeout: Duration,
    /// Timeout for the whole launch.
    pub launch_timeout: Duration,
    /// Where to record the browser for reaping by a later process.
    pub registry: Option<Arc<Registry>>,
    /// Environment variables the driver and Chrome must not inherit (those holding
    /// secrets).
    pub env_remove: Vec<String>,
}

impl LaunchSpec {
    /// Defaults: headless, 1280×800, kernel-chosen ports, 30 s timeouts, no registry.
    pub fn new(binaries: Binaries, profile: &Path) -> Self {
        LaunchSpec {
            binaries,
            profile: profile.to_path_buf(),
            headless: true,
            args: Vec::new(),
            window_size: (1280, 800),
            proxy: None,
            ports: None,
            request_timeout: Duration::from_secs(30),
            launch_timeout: Duration::from_secs(30),
            registry: None,
            env_remove: Vec::new(),
        }
    }
}

/// What is known about a live browser (all of it safe to print).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserInfo {
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
    /// `http://127.0.0.1:<driver_port>`.
    pub webdriver_url: String,
    /// The WebDriver session id.
    pub session_id: String,
    /// Chrome's browser-level DevTools WebSocket URL (verified to be ours).
    pub cdp_url: String,
    /// How long the launch took.
    pub launch_time: Duration,
}

/// A live ChromeDriver + Chrome with an open session. Dropping it kills both
/// (prefer [`Browser::close`], which lets Chrome save its profile first).
#[derive(Debug)]
pub struct Browser {
    driver: Option<WebDriver>,
    info: BrowserInfo,
    process: DriverProcess,
    group: ProcessGroup,
    _record: Option<RecordGuard>,
    _leases: Vec<ports::PortLease>,
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
    /// Start ChromeDriver, then Chrome through it, and verify the result.
    pub async fn launch(spec: &LaunchSpec) -> Result<Browser, LaunchError> {
        let started = Instant::now();
        match tokio::time::timeout(spec.launch_timeout, Self::launch_inner(spec, started)).await {
            Ok(r) => r,
            Err(_) => Err(LaunchError::Timeout {
                secs: spec.launch_timeout.as_secs_f64(),
            }),
        }
    }

    async fn launch_inner(spec: &LaunchSpec, started: Instant) -> Result<Browser, LaunchError> {
        let profile = &spec.profile;
        // A stale file from an earlier Chrome would make us verify against the wrong id.
        let active_port_file = profile.join("DevToolsActivePort");
        let _ = std::fs::remove_file(&active_port_file);

        let mut leases = Vec::new();
        let (driver_port, debug_port) = match &spec.ports {
            Some(alloc) => {
                let d = alloc.lease()?;
                let c = alloc.lease()?;
                let ports = (Some(d.port()), Some(c.port()));
                leases.extend([d, c]);
                ports
            }
            None => (None, None),
        };

        let process = driver::spawn(
            &spec.binaries.chromedriver,
            driver_port,
            spec.launch_timeout,
            &spec.env_remove,
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
                reason: first_line(&e.to_string()),
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
        let record = match &spec.registry {
            Some(r) => Some(r.record(process.pid, process.pid, Some(pid), profile)?),
            None => None,
        };
        let info = BrowserInfo {
            pid,
            devtools_port,
            driver_pid: process.pid,
            driver_port: process.port,
            profile: profile.clone(),
            webdriver_url,
            session_id: driver.session_id().to_string(),
            cdp_url,
            launch_time: started.elapsed(),
        };
        tracing::debug!(pid, port = devtools_port, profile = %profile.display(), "browser launched");
        Ok(Browser {
            driver: Some(driver),
            info,
            process,
            group,
            _record: record,
            _leases: leases,
        })
    }

    /// The WebDriver session.
    pub fn driver(&self) -> &WebDriver {
        self.driver
            .as_ref()
            .expect("driver is present until close/drop")
    }

    /// Pids, ports and paths of this browser.
    pub fn info(&self) -> &BrowserInfo {
        &self.info
    }

    /// Look at the processes: `Some(kind)` if the driver or Chrome is gone.
    pub fn health(&self) -> Option<FailureKind> {
        if !process_alive(self.info.driver_pid) {
            Some(FailureKind::DriverGone)
        } else if !process_alive(self.info.pid) {
            Some(FailureKind::BrowserGone)
        } else {
            None
        }
    }

    /// Quit the session (so Chrome saves cookies and history), then make sure every
    /// process of the browser is gone before returning — the profile is free after.
    pub async fn close(self) {
        self.shut_down(true).await;
    }

    /// Like [`Browser::close`] without asking the driver first: for a browser that is
    /// crashed or hung, where a polite quit would only wait for a timeout.
    pub async fn kill(self) {
        self.shut_down(false).await;
    }

    async fn shut_down(mut self, graceful: bool) {
        if let Some(driver) = self.driver.take() {
            let mut quit = false;
            if graceful && self.health().is_none() {
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
        self.kill_group();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.process.child.wait()).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_alive(self.info.pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill_group(&self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.group.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Kill first, so a leaked session's DELETE can never block on a live driver.
        self.kill_group();
        if let Some(driver) = self.driver.take() {
            let _ = driver.leak();
        }
        let _ = self.process.child.start_kill();
        // The profile lock is released right after us: wait (briefly, SIGKILL is quick)
        // until the driver is reaped and Chrome is gone, so the next user of the
        // profile finds it free and no process of ours is still dying.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let driver_gone = !matches!(self.process.child.try_wait(), Ok(None));
            if (driver_gone && !process_alive(self.info.pid)) || Instant::now() >= deadline {
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
    let binary = chromium_with_pdeathsig(&spec.binaries.chromium)?;
    caps.set_binary(&binary.to_string_lossy())
        .map_err(session)?;
    let mut args: Vec<String> = vec![
        format!("--user-data-dir={}", spec.profile.display()),
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
    if is_root() {
        args.push("--no-sandbox".into());
    }
    if let Some(port) = debug_port {
        args.push(format!("--remote-debugging-port={port}"));
        args.push("--remote-debugging-address=127.0.0.1".into());
    }
    if let Some(proxy) = &spec.proxy {
        args.push(format!("--proxy-server={proxy}"));
    }
    args.extend(spec.args.iter().cloned());
    for a in &args {
        caps.add_arg(a).map_err(session)?;
    }
    // The new-tab page reaches for the network and stalled the first navigation by up
    // to 5 s in half the runs; starting on about:blank takes 30–90 ms every time.
    caps.add_experimental_option(
        "prefs",
        serde_json::json!({"session.restore_on_startup": 4, "session.startup_urls": ["about:blank"]}),
    )
    .map_err(session)?;
    Ok(caps)
}

/// A tiny script that starts Chromium with `PR_SET_PDEATHSIG`, so Chrome dies with its
/// driver (which dies with us): without it a `kill -9` of the runner leaves ~9 Chrome
/// processes behind. Falls back to Chromium itself when `setpriv` is missing.
fn chromium_with_pdeathsig(chromium: &Path) -> Result<PathBuf, LaunchError> {
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists());
    let Some(setpriv) = setpriv else {
        tracing::warn!(
            "setpriv not found: chromium will not die with its driver if the runner is killed"
        );
        return Ok(chromium.to_path_buf());
    };
    let dir = runtime_dir().join("bin");
    fsutil::private_dir(&dir).map_err(|source| LaunchError::Io {
        path: dir.clone(),
        source,
    })?;
    let script = format!(
        "#!/bin/sh\n# written by batch-cli: chromium dies when its chromedriver dies\nexec {} --pdeathsig KILL '{}' \"$@\"\n",
        setpriv.display(),
        chromium.display().to_string().replace('\'', "'\\''")
    );
    let name = format!("chromium-{:016x}", fnv1a(script.as_bytes()));
    let path = dir.join(name);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(&script) {
        fsutil::write_atomic(&path, script.as_bytes(), 0o700).map_err(|source| {
            LaunchError::Io {
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok(path)
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
