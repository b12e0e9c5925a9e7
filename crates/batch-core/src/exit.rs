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

#[cfg(test)]
mod tests {
    /// docs/configuration.md's exit code table has a row for each code.
    #[test]
    fn docs_list_every_exit_code() {
        let path = format!("{}/../../docs/configuration.md", env!("CARGO_MANIFEST_DIR"));
        let docs = std::fs::read_to_string(&path).unwrap();
        for code in [
            super::OK,
            super::SOME_FAILED,
            super::USAGE,
            super::ENVIRONMENT,
            super::INTERRUPTED,
        ] {
            assert!(
                docs.contains(&format!("\n| `{code}` |")),
                "docs/configuration.md has no row for exit code {code}"
            );
        }
    }
}
