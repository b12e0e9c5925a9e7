//! [`ProfileError`]: every way acquiring, listing, resetting or cleaning a profile can
//! fail. Plain data; it does not log or decide what to retry.

use std::io;
use std::path::PathBuf;

/// Why a profile could not be acquired, listed, reset or cleaned.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Another holder (this process or another one) has the profile's lock.
    #[error("profile of account {account} is in use: {path} is locked by another holder")]
    InUse {
        /// The account whose profile it is.
        account: String,
        /// The profile directory.
        path: PathBuf,
    },
    /// A file or directory of the profile could not be created, read, locked or removed.
    #[error("profile file {path}: {source}")]
    Io {
        /// The file or directory that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A Chromium that batch-cli does not control is running on the profile right now.
    #[error("a live chromium (pid {pid}) is using profile {path}")]
    LiveChrome {
        /// The profile directory.
        path: PathBuf,
        /// The pid named by the profile's `SingletonLock`.
        pid: i32,
    },
    /// The account key cannot name a profile directory.
    #[error("invalid account key {account:?}: {reason}")]
    InvalidAccount {
        /// The key given.
        account: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The directory was removed (by a reset or a reaper) every time we tried to lock it.
    #[error("profile directory {path} kept disappearing while it was being locked")]
    Vanished {
        /// The profile directory.
        path: PathBuf,
    },
}

impl ProfileError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
