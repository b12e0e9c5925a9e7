//! [`ConfigError`]: why a file the user wrote, or a list given on the command line,
//! was rejected.
//!
//! Every error names the file (or the argument), the line where there is one, the
//! field, and what was expected. No message ever holds a secret value: the parsers
//! only quote names, ids, types and non-secret settings. This module does not decide
//! exit codes; the caller maps every `ConfigError` to exit code 2.

use std::path::{Path, PathBuf};

/// A rejected config file or argument; every variant means "bad usage" (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file that must exist does not.
    #[error("{}: no such file (expected {expected})", path.display())]
    NotFound {
        /// The path as looked up.
        path: PathBuf,
        /// What the file should have been, e.g. "the accounts file".
        expected: String,
    },
    /// A file exists but could not be read.
    #[error("{}: cannot read it: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Something inside a file is wrong.
    #[error("{}{message}", place(path, *line, field))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line, where there is one.
        line: Option<usize>,
        /// The field, key or variable concerned (may be empty when the message says it).
        field: String,
        /// What is wrong, ending with "(expected …)".
        message: String,
    },
    /// A command-line argument is wrong.
    #[error("{arg} {value:?}: {message}")]
    Arg {
        /// The option, e.g. `--accounts`.
        arg: String,
        /// The value as given.
        value: String,
        /// What is wrong, ending with "(expected …)".
        message: String,
    },
}

impl ConfigError {
    /// The 1-based line the error is about, where there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => *line,
            _ => None,
        }
    }

    /// Shorthand for [`ConfigError::Invalid`].
    pub(crate) fn invalid(
        path: &Path,
        line: Option<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`ConfigError::Arg`].
    pub(crate) fn arg(arg: &str, value: &str, message: impl Into<String>) -> Self {
        ConfigError::Arg {
            arg: arg.to_owned(),
            value: value.to_owned(),
            message: message.into(),
        }
    }
}

/// `path:line: field: ` — the parts there are.
fn place(path: &Path, line: Option<usize>, field: &str) -> String {
    let line = line.map(|l| format!(":{l}")).unwrap_or_default();
    let field = if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    };
    format!("{}{line}: {field}", path.display())
}

/// Reads a whole text file, turning "missing" and "unreadable" into [`ConfigError`]s.
///
/// `expected` says what the file is for ("the accounts file").
pub(crate) fn read_text(path: &Path, expected: &str) -> Result<String, ConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|e| {
            let offset = e.utf8_error().valid_up_to();
            // n newlines make n + 1 lines.
            let line = e.as_bytes()[..offset].split(|&b| b == b'\n').count();
            ConfigError::invalid(
                path,
                Some(line),
                "",
                "the file is not valid UTF-8 (expected UTF-8 text)",
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::NotFound {
            path: path.to_path_buf(),
            expected: expected.to_owned(),
        }),
        Err(error) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            error,
        }),
    }
}

/// The directory relative paths in `file` are resolved against.
pub(crate) fn file_dir(file: &Path) -> &Path {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
