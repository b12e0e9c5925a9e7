//! Starting one ChromeDriver + Chromium pair safely, and nothing more.
//!
//! - [`Browser::launch`] starts a private ChromeDriver and, through it, a Chromium on
//!   a given profile directory, then *verifies* that the DevTools port it reports is
//!   answered by the Chrome that owns that profile before handing the browser out.
//!   Call [`prepare`] once before launching several at once (see there why).
//! - [`LaunchSpec::remote`] instead opens the session on a remote WebDriver endpoint
//!   (a Selenium Grid hub): then the [`Browser`] is the session alone —
//!   [`BrowserInfo::local`] (pids, ports, profile) is `None`, nothing is recorded or
//!   reaped here, and [`BrowserInfo::node`] names the Grid node when the Grid says.
//! - [`Registry`] records every live browser of this process on disk so that the next
//!   process can reap what a killed one left ([`Registry::reap`]).
//! - [`become_subreaper`], [`reap_adopted`] and [`finish_descendants`] let the runner
//!   reap every orphan of its browsers (Chrome's children after a group kill, its
//!   crashpad handlers), so it exits only after everything it started is gone.
//! - [`ExecToken`] and [`kill_carriers`]: the environment token that finds an `exec`
//!   program's processes after they left its process group (`setsid`), during the
//!   run and, through [`Registry::record_exec`], after the runner's death.
//! - [`stage`] gets a file to where the browser's driver can read it, for a file
//!   input: a local path as is, or sent to a remote browser's node first.
//! - [`classify`] turns a WebDriver error into a [`FailureKind`]: is the browser gone,
//!   the driver gone, the page crashed, or did just the action fail?
//!
//! Orphans are impossible by construction: the driver runs in its own process group
//! with `PR_SET_PDEATHSIG`, Chromium is started through `setpriv --pdeathsig KILL`,
//! and a [`Browser`] kills its whole process group when dropped. Every ChromeDriver
//! carries its runner's `BATCH_CLI_RUNNER` environment marker, which Chrome and its
//! crashpad handlers inherit: how a later reaper knows them.
//!
//! This crate does not decide *when* to launch, how many at once, or what to retry:
//! that policy lives in `batch-core`. It never prints.
//!
//! ```no_run
//! # async fn demo() -> Result<(), launcher::LaunchError> {
//! let binaries = launcher::Binaries::locate(None, None)?;
//! let profile = tempfile::tempdir().unwrap();
//! let spec = launcher::LaunchSpec::new(binaries, profile.path());
//! let browser = launcher::Browser::launch(&spec).await?;
//! browser.driver().goto("about:blank").await.unwrap();
//! let local = browser.info().local.as_ref().expect("a local browser");
//! println!("chrome pid {} on DevTools port {}", local.pid, local.devtools_port);
//! browser.close().await;
//! # Ok(()) }
//! ```

mod binaries;
mod browser;
mod driver;
mod error;
mod failure;
mod proc;
mod registry;
mod remote;
mod subreaper;
mod token;
mod upload;

pub use binaries::{Binaries, Prefer, Versions};
pub use browser::{Browser, BrowserInfo, LaunchSpec, LocalInfo, LocalSpec, Source, prepare};
pub use error::LaunchError;
pub use failure::{FailureKind, classify, confirm_loss, summary};
pub use fsutil::{open_runtime_dir, runtime_dir};
pub use proc::{PssCache, process_alive, tree_pss_bytes, trees_pss_bytes};
pub use registry::{ExecRecord, ReapReport, Registry};
pub use remote::{EndpointStatus, GridNode, endpoint_status};
pub use subreaper::{Finished, become_subreaper, finish_descendants, reap_adopted};
pub use token::{EXEC_TOKEN_ENV, ExecToken, kill_carriers};
pub use upload::{StageError, stage};

/// Re-exported so users of [`Browser::driver`] need no direct thirtyfour dependency.
pub use thirtyfour;

#[cfg(test)]
mod real_tests;
