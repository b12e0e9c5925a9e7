//! End-to-end tests: the real `batch-cli` binary drives real Chromium through real
//! ChromeDriver against the demo app, and the tests assert what the *server* saw, what
//! the journal and report say, the exit codes, and that no process outlives a run.
//!
//! Every test has its own temp directory (project, profiles, runtime dir) and its own
//! demo app on a kernel-chosen port, so tests are independent; nextest runs them in
//! the bounded `chromium` group because each one starts several browsers.
//!
//! The binary is built by `cargo xtask test` before the tests run.

#[cfg(test)]
mod bad_input;
#[cfg(test)]
mod data;
#[cfg(test)]
mod downloads;
#[cfg(test)]
mod examples;
#[cfg(test)]
mod forms;
#[cfg(test)]
mod foundation;
#[cfg(test)]
mod grid;
#[cfg(test)]
mod guarantees;
#[cfg(test)]
mod guarantees_io;
pub mod harness;
#[cfg(test)]
mod health;
#[cfg(test)]
mod identity;
#[cfg(test)]
mod phase3;
#[cfg(test)]
mod proxy;
#[cfg(test)]
mod reaping;
#[cfg(test)]
mod recovery;
#[cfg(test)]
mod reports;
#[cfg(test)]
mod resume;
#[cfg(test)]
mod second_factor;
#[cfg(test)]
mod uploads;
