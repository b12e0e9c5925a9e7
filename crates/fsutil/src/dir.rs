//! Private directories: [`private_dir`] creates one (mode 0700) and refuses a
//! directory someone else could have prepared; [`check_trusted_path`] checks that no
//! other user can replace anything on the way to a directory.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const STICKY: u32 = 0o1000;

fn refuse(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: {why}", path.display()),
    )
}

/// Creates `dir` and missing parents with mode 0700; an existing directory is fine
/// when it is a real directory (not a symlink) owned by us that nobody else can write
/// to. Group/other read or search bits on it are removed (it may hold session state);
/// a group- or other-writable one is refused, since someone else may have put
/// things in it.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(refuse(dir, "is a symlink, not a private directory"));
    }
    if !meta.is_dir() {
        return Err(refuse(dir, "is not a directory"));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refuse(
            dir,
            format!("is owned by uid {}, not by us (uid {me})", meta.uid()),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(
            dir,
            format!(
                "is writable by group or others (mode {:o})",
                meta.mode() & 0o7777
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Checks every component of the absolute path `dir`, from `/` down: each is a real
/// directory (no symlink), owned by us or by root; one of ours is writable by
/// nobody else; one of root's is either not writable by others or sticky (like
/// `/tmp`). So nobody but us (and root) can rename or replace anything on the way.
pub fn check_trusted_path(dir: &Path) -> io::Result<()> {
    if !dir.is_absolute() {
        return Err(refuse(dir, "is not an absolute path"));
    }
    let me = nix::unistd::geteuid().as_raw();
    let mut at = PathBuf::new();
    for component in dir.components() {
        match component {
            Component::RootDir => at.push("/"),
            Component::Normal(c) => at.push(c),
            Component::CurDir => continue,
            Component::ParentDir | Component::Prefix(_) => {
                return Err(refuse(dir, "contains '..'"));
            }
        }
        let meta = std::fs::symlink_metadata(&at)?;
        check_component(
            &at,
            meta.file_type().is_symlink(),
            meta.is_dir(),
            meta.uid(),
            meta.mode(),
            me,
        )?;
    }
    Ok(())
}

fn check_component(
    at: &Path,
    symlink: bool,
    is_dir: bool,
    uid: u32,
    mode: u32,
    me: u32,
) -> io::Result<()> {
    if symlink {
        return Err(refuse(at, "is a symlink"));
    }
    if !is_dir {
        return Err(refuse(at, "is not a directory"));
    }
    let writable_by_others = mode & 0o022 != 0;
    // Root's directories first (also when we are root): a world-writable one is fine
    // only with the sticky bit, which stops others from renaming what is ours in it.
    if uid == 0 {
        if writable_by_others && mode & STICKY == 0 {
            return Err(refuse(
                at,
                format!(
                    "is writable by group or others without the sticky bit (mode {:o})",
                    mode & 0o7777
                ),
            ));
        }
    } else if uid == me {
        if writable_by_others {
            return Err(refuse(
                at,
                format!("is writable by group or others (mode {:o})", mode & 0o7777),
            ));
        }
    } else {
        return Err(refuse(
            at,
            format!("is owned by uid {uid}, neither us (uid {me}) nor root"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_cases() {
        let check = |symlink, is_dir, uid, mode, expected: Option<&str>| {
            let got = check_component(Path::new("/x"), symlink, is_dir, uid, mode, 1000)
                .err()
                .map(|e| e.to_string());
            match (got, expected) {
                (None, None) => {}
                (Some(got), Some(want)) => assert!(got.contains(want), "{got}"),
                (got, want) => panic!("uid {uid} mode {mode:o}: got {got:?}, want {want:?}"),
            }
        };
        check(false, true, 1000, 0o40700, None);
        check(false, true, 1000, 0o40755, None);
        check(false, true, 0, 0o40755, None);
        check(false, true, 0, 0o41777, None); // /tmp
        check(
            false,
            true,
            1000,
            0o41777,
            Some("writable by group or others"),
        );
        check(
            false,
            true,
            1000,
            0o40770,
            Some("writable by group or others"),
        );
        check(false, true, 0, 0o40777, Some("without the sticky bit"));
        check(false, true, 1001, 0o40700, Some("owned by uid 1001"));
        check(true, false, 1000, 0o120777, Some("symlink"));
        check(false, false, 1000, 0o100600, Some("not a directory"));
    }

    #[test]
    fn private_dir_cases() {
        let root = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let fresh = root.path().join("a/b");
        private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);

        let loose = root.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&loose).unwrap();
        assert_eq!(mode(&loose), 0o700, "read bits are removed");

        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(private_dir(&shared).is_err());

        let link = root.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        let err = private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
    }

    #[test]
    fn trusted_path_cases() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("rt");
        private_dir(&dir).unwrap();
        check_trusted_path(&dir).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(check_trusted_path(&link.join("x")).is_err());
        assert!(check_trusted_path(Path::new("relative")).is_err());
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_trusted_path(&dir).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
}
