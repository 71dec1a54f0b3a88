//! A serde `Deserializer` over a parsed TOML document that remembers where it is.
//!
//! The config file schema is plain serde structs with `#[serde(deny_unknown_fields)]`.
//! Deserialized straight from text with `toml::from_str`, a mistake comes back as a
//! multi-line report with a source excerpt but without the name of the section, and the
//! key path is kept private inside the error. An operator wants one line:
//! `[cache] max_memory_mb: expected a positive integer, got string "abc"`.
//!
//! So the text is first parsed into a `toml::Value`, and the structs are filled from it
//! by [`Located`], which carries the path of each value ([`Location`]) and produces
//! [`FieldError`]s: unknown keys are kept as structured data (which key, in which
//! section, which keys would have been valid) and value errors are tagged with the
//! path of the innermost value that failed.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Unexpected, Visitor,
};
use toml::Value;

/// Where a value sits in the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Location {
    /// The document itself, whose keys are the section names.
    Root,
    /// A section such as `[cache]`.
    Section(String),
    /// A key inside a section, `listen[1]` for array items.
    Key { section: String, key: String },
}

impl Location {
    fn child(&self, name: &str) -> Location {
        match self {
            Location::Root => Location::Section(name.to_string()),
            Location::Section(section) => Location::Key {
                section: section.clone(),
                key: name.to_string(),
            },
            Location::Key { section, key } => Location::Key {
                section: section.clone(),
                key: format!("{key}.{name}"),
            },
        }
    }

    fn item(&self, index: usize) -> Location {
        match self {
            Location::Root => Location::Section(format!("[{index}]")),
            Location::Section(section) => Location::Section(format!("{section}[{index}]")),
            Location::Key { section, key } => Location::Key {
                section: section.clone(),
                key: format!("{key}[{index}]"),
            },
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Root => f.write_str("top level"),
            Location::Section(section) => write!(f, "[{section}]"),
            Location::Key { section, key } => write!(f, "[{section}] {key}"),
        }
    }
}

/// What went wrong while filling the schema structs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Problem {
    /// A key the schema does not have.
    UnknownKey {
        key: String,
        expected: &'static [&'static str],
    },
    /// A value of the wrong type or out of range, already phrased for the operator.
    Invalid(String),
}

/// A [`Problem`] and, once known, the [`Location`] it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FieldError {
    pub(super) location: Option<Location>,
    pub(super) problem: Problem,
}

impl FieldError {
    fn invalid(message: String) -> Self {
        FieldError {
            location: None,
            problem: Problem::Invalid(message),
        }
    }

    /// Tags the error with `location` unless a deeper value already claimed it.
    fn at(mut self, location: &Location) -> Self {
        if self.location.is_none() {
            self.location = Some(location.clone());
        }
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let location = self.location.as_ref().unwrap_or(&Location::Root);
        match &self.problem {
            Problem::UnknownKey { key, expected } => {
                let inner = location.child(key);
                match location {
                    Location::Root => write!(f, "unknown section {inner}")?,
                    _ => write!(f, "unknown key {inner}")?,
                }
                if !expected.is_empty() {
                    write!(f, " (expected one of: {})", expected.join(", "))?;
                }
                Ok(())
            }
            Problem::Invalid(message) => write!(f, "{location}: {message}"),
        }
    }
}

impl std::error::Error for FieldError {}

impl de::Error for FieldError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        FieldError::invalid(message.to_string())
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        FieldError::invalid(format!("expected {expected}, got {unexpected}"))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        FieldError::invalid(format!("expected {expected}, got {unexpected}"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let names: Vec<String> = expected.iter().map(|name| format!("\"{name}\"")).collect();
        FieldError::invalid(format!(
            "expected one of {}, got \"{variant}\"",
            names.join(", ")
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        FieldError {
            location: None,
            problem: Problem::UnknownKey {
                key: field.to_string(),
                expected,
            },
        }
    }
}

/// A TOML value and the place it came from.
pub(super) struct Located {
    location: Location,
    value: Value,
}

impl Located {
    /// The whole document, to be deserialized into the top-level schema struct.
    pub(super) fn document(table: toml::Table) -> Self {
        Located {
            location: Location::Root,
            value: Value::Table(table),
        }
    }
}

impl<'de> de::Deserializer<'de> for Located {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        let Located { location, value } = self;
        let result = match value {
            Value::String(text) => visitor.visit_string(text),
            Value::Integer(number) => visitor.visit_i64(number),
            Value::Float(number) => visitor.visit_f64(number),
            Value::Boolean(flag) => visitor.visit_bool(flag),
            Value::Datetime(_) => Err(de::Error::invalid_type(
                Unexpected::Other("a date-time"),
                &visitor,
            )),
            Value::Array(items) => visitor.visit_seq(Items {
                location: &location,
                items: items.into_iter().enumerate(),
            }),
            Value::Table(table) => visitor.visit_map(Entries {
                location: &location,
                entries: table.into_iter(),
                pending: None,
            }),
        };
        result.map_err(|error: FieldError| error.at(&location))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        // A key that is present always holds a value: TOML has no null.
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        let Located { location, value } = self;
        let result = match value {
            Value::String(name) => visitor.visit_enum(name.into_deserializer()),
            other => Err(de::Error::invalid_type(unexpected(&other), &visitor)),
        };
        result.map_err(|error: FieldError| error.at(&location))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// How serde should describe a value in an "expected X, got Y" message.
fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::String(text) => Unexpected::Str(text),
        Value::Integer(number) => Unexpected::Signed(*number),
        Value::Float(number) => Unexpected::Float(*number),
        Value::Boolean(flag) => Unexpected::Bool(*flag),
        Value::Datetime(_) => Unexpected::Other("a date-time"),
        Value::Array(_) => Unexpected::Seq,
        Value::Table(_) => Unexpected::Map,
    }
}

struct Items<'a> {
    location: &'a Location,
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
}

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = FieldError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, FieldError> {
        match self.items.next() {
            Some((index, value)) => seed
                .deserialize(Located {
                    location: self.location.item(index),
                    value,
                })
                .map(Some),
            None => Ok(None),
        }
    }
}

struct Entries<'a> {
    location: &'a Location,
    entries: toml::map::IntoIter<String, Value>,
    pending: Option<(String, Value)>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = FieldError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, FieldError> {
        match self.entries.next() {
            Some((key, value)) => {
                let parsed = seed.deserialize(key.as_str().into_deserializer())?;
                self.pending = Some((key, value));
                Ok(Some(parsed))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, FieldError> {
        let (key, value) = self
            .pending
            .take()
            .ok_or_else(|| FieldError::invalid("value requested before its key".to_string()))?;
        seed.deserialize(Located {
            location: self.location.child(&key),
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Document {
        alpha: Option<Section>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Section {
        count: Option<u32>,
        names: Option<Vec<String>>,
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
        Slow,
    }

    fn load(text: &str) -> Result<Document, FieldError> {
        Document::deserialize(Located::document(text.parse().unwrap()))
    }

    #[test]
    fn fills_nested_structs() {
        let document =
            load("[alpha]\ncount = 3\nnames = [\"a\", \"b\"]\nmode = \"slow\"\n").unwrap();
        assert_eq!(
            document.alpha,
            Some(Section {
                count: Some(3),
                names: Some(vec!["a".into(), "b".into()]),
                mode: Some(Mode::Slow),
            })
        );
    }

    #[test]
    fn unknown_section_and_key_are_structured() {
        let error = load("[beta]\n").unwrap_err();
        assert_eq!(error.location, Some(Location::Root));
        assert!(matches!(&error.problem, Problem::UnknownKey { key, .. } if key == "beta"));
        assert_eq!(
            error.to_string(),
            "unknown section [beta] (expected one of: alpha)"
        );

        let error = load("[alpha]\ncuont = 1\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown key [alpha] cuont (expected one of: count, names, mode)"
        );
    }

    #[test]
    fn value_errors_name_the_innermost_key() {
        assert_eq!(
            load("[alpha]\ncount = \"abc\"\n").unwrap_err().to_string(),
            "[alpha] count: expected u32, got string \"abc\""
        );
        assert_eq!(
            load("[alpha]\nnames = [\"a\", 5]\n")
                .unwrap_err()
                .to_string(),
            "[alpha] names[1]: expected a string, got integer `5`"
        );
        assert_eq!(
            load("[alpha]\nmode = \"medium\"\n")
                .unwrap_err()
                .to_string(),
            "[alpha] mode: expected one of \"fast\", \"slow\", got \"medium\""
        );
        assert_eq!(
            load("alpha = 5\n").unwrap_err().to_string(),
            "[alpha]: expected struct Section, got integer `5`"
        );
        assert_eq!(
            load("[alpha]\ncount = 1979-05-27\n")
                .unwrap_err()
                .to_string(),
            "[alpha] count: expected u32, got a date-time"
        );
    }
}
