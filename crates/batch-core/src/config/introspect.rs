//! Test-only: the key names a derived `Deserialize` struct accepts, read from serde
//! itself, so that the docs tests compare the docs with the code's own list of keys
//! rather than with a copy that could drift.
//!
//! A derived `Deserialize` for a struct calls `deserialize_struct(name, FIELDS, …)`;
//! [`fields_of`] hands it a deserializer that captures `FIELDS` and stops there.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};

/// `fn::<T>() -> ["workflow", "accounts", …]`: the keys `T` accepts, in declaration order.
pub(crate) fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(Capture) {
        Err(Stop::Fields(fields)) => fields,
        Err(Stop::Other(m)) => panic!("{} is not a struct: {m}", std::any::type_name::<T>()),
        Ok(_) => unreachable!("Capture never yields a value"),
    }
}

struct Capture;

#[derive(Debug)]
enum Stop {
    Fields(&'static [&'static str]),
    Other(String),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<M: fmt::Display>(m: M) -> Self {
        Stop::Other(m.to_string())
    }
}

impl<'de> de::Deserializer<'de> for Capture {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop::Other("not deserialized as a struct".into()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        Err(Stop::Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Two {
        a: u8,
        #[serde(rename = "b-b")]
        b: u8,
    }

    #[test]
    fn reads_the_serde_names() {
        assert_eq!(fields_of::<Two>(), ["a", "b-b"]);
    }
}
