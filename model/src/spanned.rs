//! A value with the position it was written at, so validation can point at it.

use crate::diagnostic::Pos;
use serde::{Deserialize, Deserializer};

/// Like `serde_saphyr::Spanned`, but ours: it also describes itself in the JSON Schema as the
/// plain value, so editors see `weight: integer`, not a wrapper.
#[derive(Clone, Debug, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    /// Relative to the document; [`crate::policy::Located::at`] makes it relative to the file.
    pub pos: Pos,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sp<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        let pos = Pos { line: s.referenced.line() as u32, column: s.referenced.column() as u32 };
        Ok(Sp { value: s.value, pos })
    }
}

impl<T> std::ops::Deref for Sp<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

#[cfg(feature = "schema")]
impl<T: schemars::JsonSchema> schemars::JsonSchema for Sp<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
    fn inline_schema() -> bool {
        T::inline_schema()
    }
}
