//! The bridge between serde and [`ConfigError`]: a TOML file deserialized into the
//! loaders' raw structs, with every error pointed at its line and field, and the
//! value parsers those structs name in `deserialize_with`.
//!
//! serde's own messages ("unknown field `x`, expected `a` or `b`", "invalid type:
//! string \"hunter2\", expected …") are rewritten into ours ("unknown key \"x\"
//! (expected one of: a, b)", "found a string (expected …)"): theirs may quote a value,
//! which may be a secret, and toml's `Display` quotes the whole source line. The field
//! an error names comes from the position of the error, looked up in the file's
//! spanned tree. This module knows nothing of what the keys mean.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::Value;
use toml::de::{DeTable, DeValue};

use super::ConfigError;
use super::units::parse_duration;

/// One step of the way from the root of a file to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A key of a table.
    Key(String),
    /// An item of an array.
    Index(usize),
}

/// Names the field at a path, for messages (`browser.headed`, `step 3, actions`).
pub(crate) type Context<'c> = &'c dyn Fn(&DeValue<'_>, &[Seg]) -> String;

/// What a type error at a path's shape (`steps.#.actions`: keys, `#` for an index)
/// expects, where serde's own words ("a sequence", "a map") would say less.
pub(crate) type Expect = fn(&str) -> Option<String>;

/// A problem found after deserializing: where, which field, and what is wrong.
#[derive(Debug)]
pub(crate) struct Bad {
    pub(crate) span: Range<usize>,
    pub(crate) field: String,
    pub(crate) message: String,
}

impl Bad {
    pub(crate) fn new(span: Range<usize>, field: impl Into<String>, msg: impl Into<String>) -> Bad {
        Bad {
            span,
            field: field.into(),
            message: msg.into(),
        }
    }
}

/// A TOML file's path, text and line index.
pub(crate) struct Doc<'a> {
    pub(crate) path: &'a Path,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Doc<'a> {
    pub(crate) fn new(path: &'a Path, text: &'a str) -> Doc<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Doc {
            path,
            text,
            line_starts,
        }
    }

    /// The 1-based line holding byte `offset`.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// The error `bad` describes, at its line.
    pub(crate) fn err(&self, bad: Bad) -> ConfigError {
        ConfigError::invalid(
            self.path,
            Some(self.line(bad.span.start)),
            bad.field,
            bad.message,
        )
    }

    /// The file deserialized as `T`; `context` names the field of an error's path.
    pub(crate) fn parse<T: DeserializeOwned>(
        &self,
        context: Context<'_>,
        expect: Expect,
    ) -> Result<T, ConfigError> {
        let e = match toml::from_str::<T>(self.text) {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let span = e.span();
        let line = span.as_ref().map(|s| self.line(s.start));
        let Ok(root) = DeTable::parse(self.text) else {
            // A syntax error. toml's message already says what was expected.
            let column = match (&span, line) {
                (Some(s), Some(l)) => {
                    format!(" at column {}", s.start - self.line_starts[l - 1] + 1)
                }
                _ => String::new(),
            };
            let message = format!("invalid TOML{column}: {}", e.message().replace('\n', "; "));
            return Err(ConfigError::invalid(self.path, line, "", message));
        };
        let root = DeValue::Table(root.into_inner());
        let path = span.and_then(|s| path_to(&root, &s)).unwrap_or_default();
        let (field, message) = translate(e.message(), &root, &path, context, expect);
        Err(ConfigError::invalid(self.path, line, field, message))
    }
}

/// serde's message as ours, and the field it is about.
fn translate(
    msg: &str,
    root: &DeValue<'_>,
    path: &[Seg],
    context: Context<'_>,
    expect: Expect,
) -> (String, String) {
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        // "unknown field `KEY`, expected `a` or `b`" (a key may hold commas).
        let rest = rest.strip_prefix('`').unwrap_or(rest);
        let end = rest
            .rfind("`, expected ")
            .or_else(|| rest.rfind("`, there are no fields"))
            .unwrap_or(rest.len());
        let (key, allowed) = (&rest[..end], rest.get(end + 2..).unwrap_or(""));
        let allowed: Vec<&str> = allowed.split('`').skip(1).step_by(2).collect();
        let expected = expected_keys(&allowed);
        let parent = &path[..path.len().saturating_sub(1)];
        return (
            context(root, parent),
            format!("unknown key {key:?} (expected {expected})"),
        );
    }
    let field = context(root, path);
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return (field, format!("missing key {:?}", rest.trim_matches('`')));
    }
    if msg.starts_with("invalid type: ") || msg.starts_with("invalid value: ") {
        // serde quotes the value here; we only name its type.
        let shape: Vec<&str> = (path.iter())
            .map(|s| if let Seg::Key(k) = s { k.as_str() } else { "#" })
            .collect();
        let expected = expect(&shape.join(".")).unwrap_or_else(|| {
            let serde = msg.rsplit_once(", expected ").map(|(_, e)| e);
            serde.unwrap_or("another value").to_owned()
        });
        let found = value_at(root, path).map_or("another value".into(), |v| a_type(v.type_str()));
        return (field, format!("found {found} (expected {expected})"));
    }
    // Our own messages (from the value parsers below) hold no value but names.
    (field, msg.to_owned())
}

/// What an unknown key's message says was expected instead: "one of: a, b".
pub(crate) fn expected_keys(keys: &[&str]) -> String {
    if keys.is_empty() {
        return "no other keys".to_owned();
    }
    format!("one of: {}", keys.join(", "))
}

/// The entries of a table or the items of an array: each one's step from `v`, the
/// span that names it (its key's, or its own) and its value.
fn children<'t, 'i>(v: &'t DeValue<'i>) -> Vec<(Seg, Range<usize>, &'t Spanned<DeValue<'i>>)> {
    match v {
        DeValue::Table(t) => (t.iter())
            .map(|(k, v)| (Seg::Key(k.get_ref().to_string()), k.span(), v))
            .collect(),
        DeValue::Array(a) => (a.iter().enumerate())
            .map(|(i, v)| (Seg::Index(i), v.span(), v))
            .collect(),
        _ => Vec::new(),
    }
}

/// The path to the key or value whose span is exactly `span`.
fn path_to(v: &DeValue<'_>, span: &Range<usize>) -> Option<Vec<Seg>> {
    children(v).into_iter().find_map(|(seg, name, child)| {
        let mut rest = match name == *span || child.span() == *span {
            true => Vec::new(),
            false => path_to(child.get_ref(), span)?,
        };
        rest.insert(0, seg);
        Some(rest)
    })
}

impl Doc<'_> {
    /// The span of the value at `path`, if there is one.
    pub(crate) fn span_at(&self, path: &[Seg]) -> Option<Range<usize>> {
        let root = DeValue::Table(DeTable::parse(self.text).ok()?.into_inner());
        node_at(&root, path).map(Spanned::span)
    }
}

/// The value at `path`, if there is one.
pub(crate) fn value_at<'t, 'i>(root: &'t DeValue<'i>, path: &[Seg]) -> Option<&'t DeValue<'i>> {
    node_at(root, path).map(Spanned::get_ref)
}

fn node_at<'t, 'i>(v: &'t DeValue<'i>, path: &[Seg]) -> Option<&'t Spanned<DeValue<'i>>> {
    let (first, rest) = path.split_first()?;
    let (_, _, child) = children(v).into_iter().find(|(seg, ..)| seg == first)?;
    match rest {
        [] => Some(child),
        _ => node_at(child.get_ref(), rest),
    }
}

/// The keys of a path joined with dots, indexes left out: `browser.args`.
pub(crate) fn dotted(_: &DeValue<'_>, path: &[Seg]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    keys.join(".")
}

/// How a TOML type (its `type_str`) is named in messages: "a string", "an integer", …
fn a_type(type_str: &str) -> String {
    match type_str {
        "integer" | "array" => format!("an {type_str}"),
        "datetime" => "a date-time".to_owned(),
        t => format!("a {t}"),
    }
}

/// "found an integer (expected …)".
pub(crate) fn found(v: &Value, expected: &str) -> String {
    format!("found {} (expected {expected})", a_type(v.type_str()))
}

// Value parsers: `fn(&Value) -> Result<T, message>`, the message holding no value
// that could be secret.

pub(crate) fn string<'v>(v: &'v Value, expected: &str) -> Result<&'v str, String> {
    v.as_str().ok_or_else(|| found(v, expected))
}

/// An integer in `min..=max`.
pub(crate) fn integer(v: &Value, min: i64, max: i64, expected: &str) -> Result<i64, String> {
    match v.as_integer() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(n) => Err(format!("{n} is out of range (expected {expected})")),
        None => Err(found(v, expected)),
    }
}

pub(crate) fn positive_u32(v: &Value) -> Result<u32, String> {
    integer(v, 1, u32::MAX.into(), "a positive integer").map(|n| n as u32)
}

pub(crate) fn duration(v: &Value) -> Result<Duration, String> {
    let s = string(v, "a duration string like \"500ms\" or \"2s\"")?;
    parse_duration(s).map_err(|m| format!("{s:?}: {m}"))
}

/// A duration above zero; `what` names it in the message ("duration", "timeout").
pub(crate) fn positive(v: &Value, what: &str, example: &str) -> Result<Duration, String> {
    let d = duration(v)?;
    if d.is_zero() {
        return Err(format!(
            "a zero {what} (expected a positive duration like \"{example}\")"
        ));
    }
    Ok(d)
}

/// A non-empty name (`into`, `attr`).
pub(crate) fn name(v: &Value) -> Result<String, String> {
    let s = string(v, "a non-empty string")?;
    if s.trim().is_empty() {
        return Err("an empty name (expected a non-empty string)".to_owned());
    }
    Ok(s.to_owned())
}

/// `fn NAME(deserializer) -> T` from a value parser `fn(&Value) -> Result<T, message>`,
/// for `#[serde(deserialize_with = "NAME")]`.
macro_rules! value {
    ($($vis:vis $name:ident -> $t:ty = $parse:expr;)*) => {$(
        $vis fn $name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
            let v = <toml::Value as serde::Deserialize>::deserialize(d)?;
            let parse: fn(&toml::Value) -> Result<$t, String> = $parse;
            parse(&v).map_err(<D::Error as serde::de::Error>::custom)
        }
    )*};
}
pub(crate) use value;

/// A table with a default for every key, one line per key: `name: Type = default`,
/// then the value parser for `deserialize_with` where the type has none of its own.
/// Gives the struct (`deny_unknown_fields`, missing keys defaulted) and its `Default`.
macro_rules! section {
    ($(#[$attr:meta])* pub struct $name:ident {
        $($(#[$field_attr:meta])* $key:ident: $t:ty = $default:expr $(, $parse:literal)?;)*
    }) => {
        #[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        $(#[$attr])*
        pub struct $name {
            $($(#[$field_attr])* $(#[serde(deserialize_with = $parse)])? pub $key: $t,)*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $($key: $default,)* }
            }
        }
    };
}
pub(crate) use section;

/// A table as written, each key and value with its position; [`in_order`] gives its
/// entries in file order.
pub(crate) type Table = BTreeMap<Spanned<String>, Spanned<Value>>;

/// The entries of `table` in file order.
pub(crate) fn in_order(table: &Table) -> Vec<(&Spanned<String>, &Spanned<Value>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

/// An array, each item with its position.
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct List<T>(pub(crate) Vec<Spanned<T>>);
