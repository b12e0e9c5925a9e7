//! Finding Chromium and ChromeDriver, and reading their versions.

use std::path::{Path, PathBuf};

use crate::LaunchError;

/// The two programs a local browser needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// The Chromium executable (Debian's real binary, not its shell wrapper, when found).
    pub chromium: PathBuf,
    /// The ChromeDriver executable.
    pub chromedriver: PathBuf,
}

/// What `--version` printed for each program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// e.g. `Chromium 156.0.8078.108 built on Debian`.
    pub chromium: String,
    /// e.g. `ChromeDriver 156.0.8078.108 (...)`.
    pub chromedriver: String,
}

impl Versions {
    /// The major version of each (`156`), if it could be read.
    pub fn majors(&self) -> (Option<u32>, Option<u32>) {
        (major(&self.chromium), major(&self.chromedriver))
    }

    /// Whether both majors were read and agree (ChromeDriver only drives its own major).
    pub fn matching(&self) -> bool {
        matches!(self.majors(), (Some(a), Some(b)) if a == b)
    }
}

fn major(version_line: &str) -> Option<u32> {
    version_line.split_whitespace().find_map(|w| {
        w.split('.')
            .next()
            .filter(|_| w.contains('.'))
            .and_then(|m| m.parse().ok())
    })
}

// Debian's /usr/bin/chromium is a shell wrapper (~22 ms and a stray warning per start);
// the real binary sits in /usr/lib/chromium.
const CHROMIUM_CANDIDATES: &[&str] = &["/usr/lib/chromium/chromium", "/usr/bin/chromium"];
const CHROMIUM_NAMES: &[&str] = &["chromium", "chromium-browser", "google-chrome", "chrome"];
// Debian's `chromium-headless-shell` package (the same build, without the browser UI
// layer): measured here, the same 10 × 5 demo run costs about half the CPU-seconds on
// it (docs/benchmarks.md).
const SHELL_CANDIDATES: &[&str] = &[
    "/usr/lib/chromium/chromium-headless-shell",
    "/usr/bin/chromium-headless-shell",
];
const SHELL_NAMES: &[&str] = &["chromium-headless-shell", "chrome-headless-shell"];
const DRIVER_CANDIDATES: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

/// Which Chromium build to look for when none is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefer {
    /// The full browser (the only one that can show windows).
    Chromium,
    /// `chromium-headless-shell` when it is installed, else the full browser.
    HeadlessShell,
}

impl Binaries {
    /// Use the given paths, or find the programs in their usual places and on `PATH`
    /// (the full Chromium).
    pub fn locate(
        chromium: Option<&Path>,
        chromedriver: Option<&Path>,
    ) -> Result<Self, LaunchError> {
        Self::locate_preferring(chromium, chromedriver, Prefer::Chromium)
    }

    /// As [`Binaries::locate`], but when no Chromium is named and `prefer` says so,
    /// the headless shell is taken if it is installed. A named binary is always used
    /// as it is.
    pub fn locate_preferring(
        chromium: Option<&Path>,
        chromedriver: Option<&Path>,
        prefer: Prefer,
    ) -> Result<Self, LaunchError> {
        let shell = match (chromium, prefer) {
            (None, Prefer::HeadlessShell) => find(
                "chromium-headless-shell",
                None,
                SHELL_CANDIDATES,
                SHELL_NAMES,
            )
            .ok(),
            _ => None,
        };
        let chromium = match shell {
            Some(s) => s,
            None => find("chromium", chromium, CHROMIUM_CANDIDATES, CHROMIUM_NAMES)?,
        };
        Ok(Binaries {
            chromium,
            chromedriver: find(
                "chromedriver",
                chromedriver,
                DRIVER_CANDIDATES,
                &["chromedriver"],
            )?,
        })
    }

    /// Whether the Chromium is a headless shell (by its file name, as ChromeDriver
    /// decides too): it cannot show windows and has no preferences layer.
    pub fn is_headless_shell(&self) -> bool {
        self.chromium
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("headless-shell"))
    }

    /// Run both with `--version`.
    pub async fn versions(&self) -> Result<Versions, LaunchError> {
        Ok(Versions {
            chromium: version_of(&self.chromium).await?,
            chromedriver: version_of(&self.chromedriver).await?,
        })
    }
}

fn find(
    what: &'static str,
    given: Option<&Path>,
    candidates: &[&str],
    names: &[&str],
) -> Result<PathBuf, LaunchError> {
    if let Some(p) = given {
        return if is_executable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(LaunchError::NotFound {
                what,
                looked: p.display().to_string(),
            })
        };
    }
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut looked = Vec::new();
    for c in candidates.iter().map(PathBuf::from).chain(
        path_dirs
            .iter()
            .flat_map(|d| names.iter().map(move |n| d.join(n))),
    ) {
        if is_executable(&c) {
            return Ok(c);
        }
        looked.push(c.display().to_string());
    }
    looked.dedup();
    Err(LaunchError::NotFound {
        what,
        looked: looked.join(", "),
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

async fn version_of(program: &Path) -> Result<String, LaunchError> {
    let out = tokio::process::Command::new(program)
        .arg("--version")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| LaunchError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_major_versions() {
        for (line, expected) in [
            (
                "Chromium 156.0.8078.108 built on Debian GNU/Linux 12 (bookworm)",
                Some(156),
            ),
            (
                "ChromeDriver 156.0.8078.108 (730482a9-refs/branch-heads/8078@{#2244})",
                Some(156),
            ),
            ("Google Chrome 120.0.6099.71", Some(120)),
            ("garbage", None),
            ("", None),
        ] {
            assert_eq!(major(line), expected, "{line}");
        }
    }

    #[test]
    fn a_given_path_that_is_missing_is_named_in_the_error() {
        let err = Binaries::locate(Some(Path::new("/nonexistent/chromium")), None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/chromium"), "{err}");
    }
}
