//! A parsed TOML document that keeps every value's position, so the loaders can
//! interpret it by hand and point each error at its line.
//!
//! [`Doc`] wraps `toml`'s spanned tree (`toml::de::DeTable`) with the file's path and a
//! line index. It knows nothing of what the keys mean; the accounts, workflow and
//! settings loaders do.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::ConfigError;

/// One `key = value` of a table, both with their positions.
pub(crate) type Entry<'t, 'i> = (&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>);

/// A TOML file's text, path and line index.
pub(crate) struct Doc<'a> {
    pub(crate) path: &'a Path,
    line_starts: Vec<usize>,
}

impl<'a> Doc<'a> {
    /// Parses `text` (read from `path`) into its spanned root table.
    pub(crate) fn parse<'i>(
        path: &'a Path,
        text: &'i str,
    ) -> Result<(Doc<'a>, Spanned<DeTable<'i>>), ConfigError> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let doc = Doc { path, line_starts };
        match DeTable::parse(text) {
            Ok(root) => Ok((doc, root)),
            Err(e) => {
                // `Display` would quote the offending source line, which may hold a
                // secret; `message()` only describes the problem.
                let (line, column) = match e.span() {
                    Some(span) => {
                        let line = doc.line(span.start);
                        (Some(line), span.start - doc.line_starts[line - 1] + 1)
                    }
                    None => (None, 0),
                };
                let column = if column > 0 {
                    format!(" at column {column}")
                } else {
                    String::new()
                };
                Err(ConfigError::invalid(
                    path,
                    line,
                    "",
                    // toml's message already says what was expected.
                    format!("invalid TOML{column}: {}", e.message().replace('\n', "; ")),
                ))
            }
        }
    }

    /// The 1-based line holding byte `offset`.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// The 1-based line where `span` starts.
    pub(crate) fn line_of(&self, span: Range<usize>) -> usize {
        self.line(span.start)
    }

    /// An error at `span`.
    pub(crate) fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::invalid(self.path, Some(self.line_of(span)), field, message)
    }

    /// An error "`field` must be X, found Y" at the value.
    pub(crate) fn type_err(
        &self,
        value: &Spanned<DeValue<'_>>,
        field: impl Into<String>,
        expected: &str,
    ) -> ConfigError {
        self.err(
            value.span(),
            field,
            format!("found {} (expected {expected})", type_name(value.get_ref())),
        )
    }

    /// The value as a string, or a type error.
    pub(crate) fn string<'v>(
        &self,
        value: &'v Spanned<DeValue<'_>>,
        field: &str,
        expected: &str,
    ) -> Result<&'v str, ConfigError> {
        match value.get_ref() {
            DeValue::String(s) => Ok(s),
            _ => Err(self.type_err(value, field, expected)),
        }
    }

    /// The value as a boolean, or a type error.
    pub(crate) fn boolean(
        &self,
        value: &Spanned<DeValue<'_>>,
        field: &str,
    ) -> Result<bool, ConfigError> {
        match value.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            _ => Err(self.type_err(value, field, "true or false")),
        }
    }

    /// The value as an integer in `min..=max`, or an error.
    pub(crate) fn integer(
        &self,
        value: &Spanned<DeValue<'_>>,
        field: &str,
        min: i128,
        max: i128,
        expected: &str,
    ) -> Result<i128, ConfigError> {
        match value.get_ref() {
            DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(self.err(
                    value.span(),
                    field,
                    format!("{i} is out of range (expected {expected})"),
                )),
            },
            _ => Err(self.type_err(value, field, expected)),
        }
    }

    /// The value as a table, or a type error.
    pub(crate) fn table<'v, 'i>(
        &self,
        value: &'v Spanned<DeValue<'i>>,
        field: &str,
        expected: &str,
    ) -> Result<&'v DeTable<'i>, ConfigError> {
        match value.get_ref() {
            DeValue::Table(t) => Ok(t),
            _ => Err(self.type_err(value, field, expected)),
        }
    }

    /// The value as an array, or a type error.
    pub(crate) fn array<'v, 'i>(
        &self,
        value: &'v Spanned<DeValue<'i>>,
        field: &str,
        expected: &str,
    ) -> Result<&'v [Spanned<DeValue<'i>>], ConfigError> {
        match value.get_ref() {
            DeValue::Array(a) => Ok(a),
            _ => Err(self.type_err(value, field, expected)),
        }
    }

    /// "unknown key" at `key`, listing the allowed ones.
    pub(crate) fn unknown_key(
        &self,
        key: &Spanned<DeString<'_>>,
        context: &str,
        allowed: &[&str],
    ) -> ConfigError {
        let expected = if allowed.is_empty() {
            "no other keys".to_owned()
        } else {
            format!("one of: {}", allowed.join(", "))
        };
        self.err(
            key.span(),
            context,
            format!(
                "unknown key {:?} (expected {expected})",
                key.get_ref().as_ref()
            ),
        )
    }
}

/// A table's entries in file order (the tree itself is sorted by key).
pub(crate) fn entries<'t, 'i>(table: &'t DeTable<'i>) -> Vec<Entry<'t, 'i>> {
    let mut entries: Vec<Entry<'t, 'i>> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

/// How a TOML value's type is named in messages ("a string", "an integer", …).
pub(crate) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}
