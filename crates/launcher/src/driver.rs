//! Spawning ChromeDriver in its own process group, dying with us.
//!
//! Why each piece: `process_group(0)` lets [`Browser`](crate::Browser) kill the
//! driver and every Chrome it started with one `killpg` (Chrome stays in the driver's
//! group). `PR_SET_PDEATHSIG` makes the kernel kill the driver when the thread that
//! spawned it dies, so a `kill -9` of the runner leaves no driver behind. That signal
//! fires on *thread* exit, so callers must spawn from a long-lived runtime worker,
//! never from `spawn_blocking` (measured: a child died 10–12 s later when tokio
//! retired that thread). `--port=0` lets the kernel choose a free port, which we read
//! back from the driver's first line — no race with other processes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::LaunchError;

/// A running ChromeDriver: the child (its pid is also its process group id) and its port.
#[derive(Debug)]
pub(crate) struct DriverProcess {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) port: u16,
}

pub(crate) async fn spawn(
    program: &Path,
    port: Option<u16>,
    timeout: Duration,
    env_remove: &[String],
    timezone: Option<&str>,
    tmpdir: Option<&Path>,
) -> Result<DriverProcess, LaunchError> {
    let mut cmd = Command::new(program);
    // Chrome inherits it too: what a killed Chrome leaves in its temp dir goes with
    // the browser's private one (see `registry`).
    if let Some(dir) = tmpdir {
        cmd.env("TMPDIR", dir);
    }
    // Chrome inherits the driver's environment, and ICU takes its zone from `TZ`.
    if let Some(tz) = timezone {
        cmd.env("TZ", tz);
    }
    // Chrome inherits the driver's environment: variables that hold a secret stay out
    // of both (their /proc/PID/environ outlives nothing, but needs no secret either).
    for name in env_remove {
        cmd.env_remove(name);
    }
    cmd.arg(format!("--port={}", port.unwrap_or(0)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        // Inherited by Chrome and its crashpad handlers: how a later reaper knows them
        // (see `registry`).
        .env(crate::registry::RUNNER_ENV, crate::registry::me().tag())
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A driver started from a background job would inherit an ignored SIGINT/SIGTERM.
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| LaunchError::Spawn {
        program: program.to_path_buf(),
        source,
    })?;
    let pid = child.id().ok_or_else(|| LaunchError::DriverStart {
        reason: "exited at once".into(),
    })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let read_port = async {
        while let Some(line) = lines.next_line().await.ok().flatten() {
            if let Some(p) = parse_started_line(&line) {
                return Some(p);
            }
        }
        None
    };
    let found = tokio::time::timeout(timeout, read_port).await;
    let port = match found {
        Ok(Some(p)) => p,
        Ok(None) => {
            let status = child.wait().await.ok();
            return Err(LaunchError::DriverStart {
                reason: format!(
                    "exited ({}) before listening",
                    status.map(|s| s.to_string()).unwrap_or_default()
                ),
            });
        }
        Err(_) => {
            return Err(LaunchError::DriverStart {
                reason: format!("no port announced within {timeout:?}"),
            });
        }
    };
    // Keep draining its stdout so a chatty driver never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::trace!(pid, "chromedriver: {line}");
        }
    });
    Ok(DriverProcess { child, pid, port })
}

/// `ChromeDriver was started successfully on port 45911.` → 45911.
fn parse_started_line(line: &str) -> Option<u16> {
    let rest = line.split("started successfully on port ").nth(1)?;
    rest.trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_announced_port() {
        for (line, port) in [
            (
                "ChromeDriver was started successfully on port 45911.",
                Some(45911),
            ),
            ("Starting ChromeDriver 156.0 on port 0", None),
            ("Only local connections are allowed.", None),
        ] {
            assert_eq!(parse_started_line(line), port, "{line}");
        }
    }
}
