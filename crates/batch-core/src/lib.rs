//! batch-core: runs many accounts through a browser workflow, each in its own browser.
//!
//! It composes the leaf crates — `ports` (port leases), `profiles` (locked user-data
//! directories) and `launcher` (starting verified browsers) — and owns all policy:
//! which account runs when ([`runner`]), when a browser may be created (the creation
//! lock and the memory gate in [`resources`]), what a failure means and whether to
//! retry it, and what a run leaves behind ([`journal`], [`report`]).
//!
//! Main entry points: [`config::load_project`] reads what the user wrote,
//! [`Plan`] says what to run, and [`runner::run`] runs it. This crate never prints
//! and never installs a tracing subscriber: events go to the journal and to an
//! [`journal::Observer`] the caller supplies (the `cli` crate prints them).

pub mod config;
pub mod exit;
pub mod journal;
mod plan;
pub mod report;
pub mod resources;
pub mod runner;

pub use plan::{Mode, Plan};
