//! Creating a run's directory: a fresh id, and a directory no other run can share.
//!
//! The id is the UTC time to the second plus random hex digits; uniqueness does not
//! rest on the randomness, though: the directory is made with a plain (non-recursive)
//! `mkdir`, which fails if it exists, and a taken id is simply replaced by a new one.
//! Two runs — in one process or in several — therefore never share a run directory.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// How many taken ids to step over before giving up (each try draws a new one).
const ATTEMPTS: u32 = 64;

/// A new run id: `YYYYMMDD-HHMMSS-xxxxxx`.
pub(crate) fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    // RandomState is seeded from the OS once per process and differs per call.
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(now.nanosecond());
    let salt = h.finish() >> 40;
    format!("{}-{:06x}", now.format(&fmt).expect("utc formats"), salt)
}

/// Create `<output>/<new id>/` (mode 0700; `output` itself is created if missing) and
/// return the id and the directory. `next_id` is [`new_run_id`] outside tests.
pub(crate) fn create_run_dir(
    output: &Path,
    mut next_id: impl FnMut() -> String,
) -> std::io::Result<(String, PathBuf)> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(output)?;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let id = next_id();
        let dir = output.join(&id);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_taken_id_is_never_reused() {
        let out = tempfile::tempdir().unwrap();
        std::fs::create_dir(out.path().join("taken")).unwrap();
        std::fs::write(out.path().join("taken").join("events.jsonl"), "theirs").unwrap();
        let mut ids = vec!["fresh", "taken", "taken"];
        let (id, dir) = create_run_dir(out.path(), || ids.pop().unwrap().to_string()).unwrap();
        assert_eq!(id, "fresh");
        assert_eq!(dir, out.path().join("fresh"));
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // The other run's directory is untouched.
        let theirs = std::fs::read_to_string(out.path().join("taken/events.jsonl")).unwrap();
        assert_eq!(theirs, "theirs");

        let err = create_run_dir(out.path(), || "taken".to_string()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    }

    /// The guarantee is the directory, not the salt: 1000 runs started within a
    /// second or two each get their own directory, even though 24 random bits make a
    /// repeated id among 1000 likely enough (~3 %) that asserting distinct ids was a
    /// flaky test — the mkdir-and-retry is what makes a repeat harmless.
    #[test]
    fn runs_started_together_get_distinct_directories() {
        let out = tempfile::tempdir().unwrap();
        let dirs: std::collections::HashSet<PathBuf> = (0..1000)
            .map(|_| create_run_dir(out.path(), new_run_id).unwrap().1)
            .collect();
        assert_eq!(dirs.len(), 1000);
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1000);
        let id = new_run_id();
        let (stamp, salt) = id.rsplit_once('-').unwrap();
        assert_eq!((stamp.len(), salt.len()), (15, 6), "{id}");
        assert!(salt.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
}
