//! batch-core: runs many accounts through a browser workflow, each in its own browser.
//!
//! It composes the leaf crates — `ports` (port leases), `profiles` (locked user-data
//! directories) and `launcher` (starting verified browsers) — and owns all policy:
//! which account runs when ([`runner`]), when a browser may be created (the creation
//! lock and the memory gate in [`resources`]), what a failure means and whether to
//! retry it, what a run leaves behind ([`journal`], [`report`]), which secrets are
//! scrubbed from it ([`redact`]) and which one-time code is typed when (`totp`).
//!
//! Main entry points: [`config::load_project`] reads what the user wrote,
//! [`Plan::build`] decides what to run (fresh, or `--resume` from a run's journal),
//! and [`runner::run`] runs it. This crate never prints
//! and never installs a tracing subscriber: events go to the journal and to an
//! [`journal::Observer`] the caller supplies (the `cli` crate prints them).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use batch_core::{Mode, Plan, config, runner};
//!
//! let project = config::load_project("examples/demo/batch.toml".as_ref())?;
//! let accounts = config::parse_account_list("1-3", &project.accounts)?;
//! let plan = Plan {
//!     project,
//!     mode: Mode::Single(1),
//!     accounts,
//!     quantity: 2,
//!     concurrent: true,
//!     max_concurrent: None,
//!     launch_lock: true,
//!     launch_interval: config::LaunchInterval::Auto,
//!     headed: false,
//!     retries: 2,
//!     output: "runs".into(),
//!     webdriver_url: None,
//!     storage_state: false,
//!     argv: Vec::new(),
//!     resume: None,
//!     include_quarantined: false,
//! };
//! let print: batch_core::journal::Observer = Arc::new(|event| println!("{event}"));
//! let outcome = runner::run(plan, print, Default::default()).await?;
//! println!("exit {} — see {}", outcome.exit_code, outcome.run_dir.display());
//! # Ok(()) }
//! ```

pub mod config;
pub mod exit;
pub mod health;
pub mod journal;
mod plan;
pub mod redact;
pub mod render;
pub mod report;
pub mod resources;
pub mod runner;
mod totp;

pub use plan::{Mode, Plan, PlanError, Request, Resume, check_webdriver_url};
