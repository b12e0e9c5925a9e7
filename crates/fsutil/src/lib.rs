//! The small primitives that several crates need exactly one copy of: private
//! directories, atomic writes, a re-checked `flock`, `/proc` readers and process
//! identities, and the runtime directory rule.
//!
//! - [`private_dir`] creates a 0700 directory and refuses one that is not ours;
//!   [`check_trusted_path`] checks every component of a path from `/` down.
//! - [`write_atomic`] writes a file all or nothing, with a unique temp name;
//!   [`write_new`] does so only if the file is not there yet, and never replaces it.
//! - [`lock_file`] takes a non-blocking exclusive `flock` and re-checks that the path
//!   still names the locked inode.
//! - [`proc`] reads `/proc`: stat fields, argv, environ, boot id, and
//!   [`proc::Identity`] (pid + start time + boot id), which survives pid reuse.
//! - [`cgroup::MemoryCgroup`] reads our memory cgroup (v2 or v1): limit, use, peak,
//!   limit hits, OOM kills.
//! - [`runtime_dir`] / [`open_runtime_dir`]: the one directory every batch-cli
//!   process of a user agrees on.
//!
//! It is a leaf: it knows nothing of browsers, ports or profiles, never spawns a
//! process and never logs.

mod atomic;
pub mod cgroup;
mod dir;
mod lock;
pub mod proc;
mod runtime;

pub use atomic::{write_atomic, write_new};
pub use dir::{check_trusted_path, private_dir};
pub use lock::{LockOutcome, lock_file, names_same_file, open_lock_file};
pub use runtime::{RuntimeDirError, open_runtime_dir, runtime_dir, runtime_dir_for};
