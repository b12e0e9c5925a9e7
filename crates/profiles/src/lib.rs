//! Unique, exclusively locked Chromium user-data directories: a profile directory is
//! used by at most one holder at a time, across processes; persistent profiles
//! survive runs, ephemeral ones vanish.
//!
//! - [`ProfileStore`] is the root of persistent per-account profiles
//!   (`<root>/account-<key>`): [`ProfileStore::acquire`], `list`, `reset`, `clean`.
//! - [`ephemeral`] makes a throw-away profile; [`reap_ephemeral`] removes the ones
//!   dead processes left behind.
//! - [`Profile`] is one held profile; dropping it gives the lock back (and deletes an
//!   ephemeral directory).
//! - [`singleton_owner`] and [`clean_stale_singleton`] deal with Chromium's own
//!   `SingletonLock`, which a killed Chromium leaves behind.
//!
//! Exclusivity is an exclusive, non-blocking `flock` on `<dir>/batch-cli.lock`, held
//! for the life of the [`Profile`]; directories are mode 0700, the lock file 0600.
//!
//! This crate does not start or stop Chromium, does not pick the profile root, and
//! cannot stop a program that ignores the lock from using a directory (a Chromium
//! started by hand on the same profile is detected through its `SingletonLock` only).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = profiles::ProfileStore::open(dir.path().join("profiles"))?;
//!
//! let profile = store.acquire("42")?;
//! // Give `profile.path()` to Chromium as `--user-data-dir`, and keep `profile`
//! // alive while that Chromium runs.
//! assert!(profile.path().ends_with("account-42"));
//! assert!(matches!(store.acquire("42"), Err(profiles::ProfileError::InUse { .. })));
//! assert!(store.list()?[0].in_use);
//! drop(profile);
//! assert!(!store.list()?[0].in_use);
//!
//! // A throw-away profile is deleted when dropped.
//! let scratch = profiles::ephemeral(&dir.path().join("tmp"))?;
//! let path = scratch.path().to_owned();
//! drop(scratch);
//! assert!(!path.exists());
//! # Ok(()) }
//! ```

mod error;
mod lock;
mod profile;
mod singleton;
mod store;
#[cfg(test)]
mod testutil;

pub use error::ProfileError;
pub use profile::{Profile, ephemeral, reap_ephemeral};
pub use singleton::{SingletonOwner, clean_stale_singleton, singleton_owner};
pub use store::{ProfileInfo, ProfileStore};
