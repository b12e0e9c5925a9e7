//! Tests against real Chromium and ChromeDriver (Debian's). Their names start with
//! `chromium_` so nextest runs them in the bounded `chromium` test group.

use std::time::{Duration, Instant};

use crate::{Binaries, Browser, FailureKind, LaunchSpec, Registry, process_alive};

fn spec(profile: &std::path::Path) -> LaunchSpec {
    LaunchSpec::new(
        Binaries::locate(None, None).expect("chromium and chromedriver are installed"),
        profile,
    )
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_launch_verifies_ports_and_close_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = std::sync::Arc::new(Registry::open(dir.path().join("rt")).unwrap());
    let mut s = spec(&dir.path().join("profile"));
    s.local_mut().unwrap().registry = Some(registry.clone());
    let b = Browser::launch(&s).await.unwrap();
    let info = b.info().local.clone().expect("a local browser");
    assert!(process_alive(info.pid) && process_alive(info.driver_pid));
    assert_ne!(info.devtools_port, 0);
    let cdp_url = b.info().cdp_url.clone().unwrap();
    assert!(cdp_url.starts_with(&format!(
        "ws://127.0.0.1:{}/devtools/browser/",
        info.devtools_port
    )));
    let active = std::fs::read_to_string(info.profile.join("DevToolsActivePort")).unwrap();
    assert_eq!(
        active.lines().next().unwrap(),
        info.devtools_port.to_string()
    );
    b.driver().goto("about:blank").await.unwrap();
    assert_eq!(b.health(), None);
    // Chrome runs with the browser's private TMPDIR, and keeps its socket dir there.
    let tmp = private_tmp_of(info.pid);
    assert!(
        tmp.starts_with(registry.dir().join("tmp")),
        "{}",
        tmp.display()
    );
    let chrome_left = || {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("org.chromium."))
    };
    assert!(chrome_left(), "Chrome made nothing in {}", tmp.display());
    assert_eq!(
        std::fs::read_dir(registry.dir().join("browsers"))
            .unwrap()
            .count(),
        1
    );
    b.close().await;
    assert!(!process_alive(info.pid), "chrome is gone after close");
    assert!(
        !process_alive(info.driver_pid),
        "driver is gone after close"
    );
    assert_eq!(
        std::fs::read_dir(registry.dir().join("browsers"))
            .unwrap()
            .count(),
        0
    );
    assert!(no_process_uses(&info.profile));
    assert!(!tmp.exists(), "{} outlived the browser", tmp.display());
}

/// The `TMPDIR` in the environment of process `pid`.
fn private_tmp_of(pid: u32) -> std::path::PathBuf {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let tmp = environ
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"TMPDIR="))
        .expect("Chrome has a TMPDIR");
    std::path::PathBuf::from(String::from_utf8(tmp.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_killed_browser_is_seen_by_health_and_drop_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    let registry = std::sync::Arc::new(Registry::open(dir.path().join("rt")).unwrap());
    let mut s = spec(&profile);
    s.local_mut().unwrap().registry = Some(registry);
    let b = Browser::launch(&s).await.unwrap();
    let info = b.info().local.clone().expect("a local browser");
    let tmp = private_tmp_of(info.pid);
    // A live browser that answers is not lost, whatever the error suggested.
    assert_eq!(crate::confirm_loss(&b, FailureKind::Timeout).await, None);
    assert_eq!(
        crate::confirm_loss(&b, FailureKind::ActionFailed).await,
        None
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(info.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("chrome to die", || !process_alive(info.pid));
    assert_eq!(b.health(), Some(FailureKind::BrowserGone));
    let err = b.driver().goto("about:blank").await.unwrap_err();
    assert!(crate::classify(&err).needs_new_browser(), "{err}");
    assert_eq!(
        crate::confirm_loss(&b, crate::classify(&err)).await,
        Some(FailureKind::BrowserGone)
    );
    drop(b);
    assert!(!process_alive(info.driver_pid));
    wait_until("every process on the profile to go", || {
        no_process_uses(&profile)
    });
    // What the killed Chrome could not clean up went with the browser's private dir.
    assert!(!tmp.exists(), "{} outlived the browser", tmp.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_ports_from_a_range_are_used_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = ports::PortAllocator::new(dir.path().join("locks"), Some(43100..=43199)).unwrap();
    let mut s = spec(&dir.path().join("profile"));
    s.local_mut().unwrap().ports = Some(alloc);
    let b = Browser::launch(&s).await.unwrap();
    let info = b.info().local.clone().expect("a local browser");
    assert!(
        (43100..=43199).contains(&info.devtools_port),
        "{}",
        info.devtools_port
    );
    assert!(
        (43100..=43199).contains(&info.driver_port),
        "{}",
        info.driver_port
    );
    // Without a registry the private TMPDIR is a fresh one in the system's temp dir.
    let tmp = private_tmp_of(info.pid);
    let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        tmp.parent() == Some(std::env::temp_dir().as_path()) && name.starts_with("batch-cli-tmp-"),
        "{}",
        tmp.display()
    );
    b.close().await;
    assert!(!tmp.exists(), "{} outlived the browser", tmp.display());
}

fn no_process_uses(profile: &std::path::Path) -> bool {
    let needle = std::ffi::OsString::from(format!("--user-data-dir={}", profile.display()));
    !crate::proc::all_processes()
        .iter()
        .any(|p| fsutil::proc::args(p.pid).is_some_and(|a| fsutil::proc::has_element(&a, &needle)))
}
