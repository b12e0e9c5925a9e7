//! The process exit codes of the spec, in one place.

/// Every iteration succeeded.
pub const OK: i32 = 0;
/// The batch finished but some iterations failed.
pub const SOME_FAILED: i32 = 1;
/// Bad usage, config, workflow or accounts — nothing was launched.
pub const USAGE: i32 = 2;
/// The environment is unusable (no browser or driver found, …).
pub const ENVIRONMENT: i32 = 3;
/// Interrupted, after a clean shutdown.
pub const INTERRUPTED: i32 = 130;
