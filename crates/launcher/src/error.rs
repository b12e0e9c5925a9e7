//! The launcher's error type: what went wrong starting, verifying or locating a browser.

use std::path::PathBuf;

/// Why a browser could not be started (or found).
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A required program is missing.
    #[error(
        "{what} not found (looked in {looked}); install Debian's `chromium` and `chromium-driver`"
    )]
    NotFound {
        /// `chromium` or `chromedriver`.
        what: &'static str,
        /// Where we looked.
        looked: String,
    },
    /// Spawning a process failed.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// ChromeDriver exited or never said which port it listens on.
    #[error("chromedriver did not start: {reason}")]
    DriverStart {
        /// What happened.
        reason: String,
    },
    /// The WebDriver session could not be created.
    #[error("browser session not created: {reason}")]
    Session {
        /// The driver's message.
        reason: String,
    },
    /// The DevTools port reported for the browser is not answered by our Chrome.
    #[error("devtools port {port} is not answered by the chrome on {profile}: {reason}")]
    PortMismatch {
        /// The port in question.
        port: u16,
        /// Our profile.
        profile: PathBuf,
        /// What did not match.
        reason: String,
    },
    /// Launching took longer than allowed.
    #[error("browser launch timed out after {secs:.1}s")]
    Timeout {
        /// Seconds waited.
        secs: f64,
    },
    /// A port lease failed.
    #[error(transparent)]
    Port(#[from] ports::PortError),
    /// The runtime directory is missing and cannot be created, or another user could
    /// have prepared it (exit 3).
    #[error(transparent)]
    RuntimeDir(#[from] fsutil::RuntimeDirError),
    /// Runtime-directory or registry I/O.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LaunchError {
    /// Whether trying again (with fresh ports) may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            LaunchError::NotFound { .. } | LaunchError::Spawn { .. } | LaunchError::RuntimeDir(_)
        )
    }
}
