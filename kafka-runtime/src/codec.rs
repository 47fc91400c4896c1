//! Turning record bytes into values and back, per the configured `string` / `json` / `bytes` format.
//!
//! `String` and `Vec<u8>` are always raw (the text or the bytes as they are on the wire), whatever
//! the format: that is what a handler asking for `Payload<String>` means. Every other type goes
//! through serde: JSON with `json`, the text itself with `string` (so enums and newtypes over
//! strings work), and nothing with `bytes`.

use std::any::{Any, TypeId};

use serde::de::value::{Error as ValueError, StrDeserializer};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Format;

/// Why bytes could not become a value, or a value bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are not valid UTF-8 where text was needed.
    #[error("not valid UTF-8: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    /// JSON (de)serialization failed.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The text could not be deserialized into the type.
    #[error("cannot read text as {type_name}: {source}")]
    Text {
        /// The target type.
        type_name: &'static str,
        /// serde's message.
        source: ValueError,
    },
    /// The `bytes` format only carries `Vec<u8>` and `String`.
    #[error("format `bytes` carries only Vec<u8> or String, not {0}")]
    NotBytes(&'static str),
}

/// Moves `value` into a `T` when they are the same type; the caller has compared the `TypeId`s.
fn cast<S: 'static, T: 'static>(value: S) -> Option<T> {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
}

/// Decodes `bytes` as a `T` in `format`.
pub fn decode<T: DeserializeOwned + 'static>(
    bytes: &[u8],
    format: Format,
) -> Result<T, CodecError> {
    let type_id = TypeId::of::<T>();
    if type_id == TypeId::of::<Vec<u8>>() {
        if let Some(value) = cast(bytes.to_vec()) {
            return Ok(value);
        }
    }
    if type_id == TypeId::of::<String>() {
        let text = std::str::from_utf8(bytes)?.to_owned();
        if let Some(value) = cast(text) {
            return Ok(value);
        }
    }
    match format {
        Format::Json => Ok(serde_json::from_slice(bytes)?),
        Format::String => {
            let text = std::str::from_utf8(bytes)?;
            T::deserialize(StrDeserializer::<ValueError>::new(text)).map_err(|source| {
                CodecError::Text {
                    type_name: std::any::type_name::<T>(),
                    source,
                }
            })
        }
        Format::Bytes => Err(CodecError::NotBytes(std::any::type_name::<T>())),
    }
}

/// Encodes `value` in `format`.
pub fn encode<T: Serialize + ?Sized + 'static>(
    value: &T,
    format: Format,
) -> Result<Vec<u8>, CodecError> {
    let type_id = TypeId::of::<T>();
    if let Some(raw) = as_raw(value, type_id) {
        return Ok(raw.to_vec());
    }
    match format {
        Format::Json => Ok(serde_json::to_vec(value)?),
        Format::String => match serde_json::to_value(value)? {
            serde_json::Value::String(text) => Ok(text.into_bytes()),
            other => Ok(other.to_string().into_bytes()),
        },
        Format::Bytes => Err(CodecError::NotBytes(std::any::type_name::<T>())),
    }
}

/// The bytes of `str`, `String`, `[u8]` and `Vec<u8>` values, which are never re-encoded.
fn as_raw<T: ?Sized + 'static>(value: &T, type_id: TypeId) -> Option<&[u8]> {
    // A `?Sized` value cannot be turned into `&dyn Any`, so unsized types are matched by size:
    // `str` and `[u8]` are the only unsized types we treat as raw, and both are byte slices.
    if type_id == TypeId::of::<str>() || type_id == TypeId::of::<[u8]>() {
        let len = std::mem::size_of_val(value);
        let ptr = (value as *const T).cast::<u8>();
        // SAFETY: `T` is `str` or `[u8]` (checked by `TypeId`), whose values are `len` initialized
        // bytes starting at `ptr`, borrowed for the lifetime of `value`.
        return Some(unsafe { std::slice::from_raw_parts(ptr, len) });
    }
    if type_id == TypeId::of::<String>() || type_id == TypeId::of::<Vec<u8>>() {
        let sized = value as *const T;
        // SAFETY: `T` is `String` or `Vec<u8>` (checked by `TypeId`), so `T: Sized` and the cast
        // reads the value at its own type.
        let any: &dyn Any = unsafe {
            if type_id == TypeId::of::<String>() {
                &*sized.cast::<String>()
            } else {
                &*sized.cast::<Vec<u8>>()
            }
        };
        return any
            .downcast_ref::<String>()
            .map(String::as_bytes)
            .or_else(|| any.downcast_ref::<Vec<u8>>().map(Vec::as_slice));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Event {
        id: u32,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        UserCreated,
    }

    #[test]
    fn strings_and_bytes_are_raw_in_every_format() {
        for format in [Format::Json, Format::String, Format::Bytes] {
            assert_eq!(
                decode::<String>(b"{\"id\":1}", format).unwrap(),
                "{\"id\":1}"
            );
            assert_eq!(
                decode::<Vec<u8>>(b"\x00\xff", format).unwrap(),
                vec![0, 255]
            );
            assert_eq!(encode("user-123", format).unwrap(), b"user-123");
            assert_eq!(encode(&"user-123".to_owned(), format).unwrap(), b"user-123");
            assert_eq!(encode(&[1u8, 2][..], format).unwrap(), vec![1, 2]);
        }
    }

    #[test]
    fn structs_use_the_format() {
        assert_eq!(
            decode::<Event>(b"{\"id\":7}", Format::Json).unwrap(),
            Event { id: 7 }
        );
        assert_eq!(
            encode(&Event { id: 7 }, Format::Json).unwrap(),
            b"{\"id\":7}"
        );
        assert_eq!(
            decode::<Kind>(b"user_created", Format::String).unwrap(),
            Kind::UserCreated
        );
        assert_eq!(encode(&42u32, Format::String).unwrap(), b"42");
        assert!(matches!(
            decode::<Event>(b"{", Format::Json),
            Err(CodecError::Json(_))
        ));
        assert!(matches!(
            decode::<Event>(b"x", Format::Bytes),
            Err(CodecError::NotBytes(_))
        ));
        assert!(matches!(
            decode::<String>(b"\xff", Format::Json),
            Err(CodecError::Utf8(_))
        ));
    }
}
