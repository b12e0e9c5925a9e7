//! The runtime directory: one per user and host, the same for every batch-cli
//! process whatever its environment says (cron has no `XDG_RUNTIME_DIR`, sudo keeps
//! another user's, `TMPDIR` varies). The registry, the port locks and ephemeral
//! profiles live under it.
//!
//! The rule: `$XDG_RUNTIME_DIR/batch-cli` when `XDG_RUNTIME_DIR` is an absolute path
//! naming an existing directory owned by us that nobody else can write to; otherwise
//! `/tmp/batch-cli-<uid>` — `/tmp` itself, never `$TMPDIR`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The runtime directory could not be created or is not safe to use.
#[derive(Debug)]
pub struct RuntimeDirError {
    /// The runtime directory.
    pub path: PathBuf,
    /// What is wrong (names the offending component).
    pub source: std::io::Error,
}

impl std::fmt::Display for RuntimeDirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "runtime directory {} cannot be used: {}; it must be a directory of yours that \
             only you can write to, under directories owned by you or root (remove it, or \
             set XDG_RUNTIME_DIR to a private directory of yours)",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for RuntimeDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// This user's runtime directory (see the module docs). Not created here.
pub fn runtime_dir() -> PathBuf {
    runtime_dir_for(
        std::env::var_os("XDG_RUNTIME_DIR")
            .as_deref()
            .map(Path::new),
        nix::unistd::geteuid().as_raw(),
    )
}

/// [`runtime_dir`] for a given `XDG_RUNTIME_DIR` and uid.
pub fn runtime_dir_for(xdg_runtime_dir: Option<&Path>, uid: u32) -> PathBuf {
    let ours = |dir: &Path| {
        dir.is_absolute()
            && std::fs::symlink_metadata(dir)
                .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0)
    };
    match xdg_runtime_dir {
        Some(dir) if ours(dir) => dir.join("batch-cli"),
        _ => PathBuf::from(format!("/tmp/batch-cli-{uid}")),
    }
}

/// [`runtime_dir`], created (0700) if missing, with every component from `/` down
/// checked (see [`check_trusted_path`](crate::check_trusted_path)): a directory
/// another user prepared is refused.
pub fn open_runtime_dir() -> Result<PathBuf, RuntimeDirError> {
    let path = runtime_dir();
    let checked = crate::private_dir(&path).and_then(|()| crate::check_trusted_path(&path));
    match checked {
        Ok(()) => Ok(path),
        Err(source) => Err(RuntimeDirError { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn runtime_dir_cases() {
        let me = nix::unistd::geteuid().as_raw();
        let xdg = tempfile::tempdir().unwrap();
        let shared = xdg.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let fallback = PathBuf::from(format!("/tmp/batch-cli-{me}"));
        let check = |xdg: Option<&Path>, uid: u32, expected: PathBuf| {
            assert_eq!(
                runtime_dir_for(xdg, uid),
                expected,
                "XDG_RUNTIME_DIR={xdg:?} uid {uid}"
            );
        };
        check(Some(xdg.path()), me, xdg.path().join("batch-cli"));
        check(None, me, fallback.clone());
        check(Some(&xdg.path().join("missing")), me, fallback.clone());
        check(Some(Path::new("")), me, fallback.clone());
        check(Some(Path::new("relative")), me, fallback.clone());
        check(Some(&shared), me, fallback.clone());
        // Another user's XDG_RUNTIME_DIR (sudo keeps it): not ours, not used.
        check(
            Some(xdg.path()),
            me + 1,
            PathBuf::from(format!("/tmp/batch-cli-{}", me + 1)),
        );
    }
}
