//! The library's one error type.
//!
//! Every fallible call returns [`Error`]. Its variants follow memcached's replies where a
//! call is conditional ([`add`](super::RatMemCache::add) on a key that exists is
//! [`Error::NotStored`], as memcached answers `NOT_STORED`), so a caller can match on the
//! outcome it expects and pass every other one on with `?`:
//!
//! ```
//! use rat_memcache::{Error, RatMemCacheBuilder};
//!
//! let cache = RatMemCacheBuilder::new().build()?;
//! cache.set("lock", "held")?;
//! match cache.add("lock", "held") {
//!     Ok(()) => println!("took the lock"),
//!     Err(Error::NotStored) => println!("someone else holds it"),
//!     Err(other) => return Err(other),
//! }
//! # Ok::<(), Error>(())
//! ```

use std::fmt;

use crate::store::TierError;

/// The longest key this library accepts, in bytes (memcached's limit).
pub const MAX_KEY_LEN: usize = 250;

/// Bytes of a key an error message shows before cutting it short.
const SHOWN_KEY_BYTES: usize = 64;

/// What went wrong in a call on a [`RatMemCache`](super::RatMemCache) or while building one.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `cas`, `incr` or `decr` found no item under the key.
    NotFound,
    /// `cas` found the item changed since its CAS value was read.
    Exists,
    /// A conditional store did not apply: `add` found the key present, `replace`,
    /// `append` or `prepend` found it absent (or, for the last two, the combined value
    /// would not fit).
    NotStored,
    /// The item is over [`L1Config::max_item_size`](super::L1Config::max_item_size).
    TooLarge {
        /// The key, printable (escaped and possibly cut short).
        key: String,
        /// The item size limit, in bytes.
        limit: usize,
    },
    /// Memory is full and nothing could be evicted to make room (the item is larger
    /// than the whole of L1, or every other item is being written at that moment).
    NoMemory,
    /// `incr` or `decr` found a value that is not a decimal number below 2^64.
    NonNumeric,
    /// The key is empty or longer than [`MAX_KEY_LEN`] bytes. Any other bytes are
    /// accepted, spaces and control characters included.
    InvalidKey {
        /// The key's length in bytes.
        len: usize,
    },
    /// The configuration cannot be honoured; the message names the field.
    Config(String),
    /// The persistent tier could not start (its directory is in use, unreadable or
    /// cannot be created).
    Persistence(TierError),
    /// [`shutdown`](super::RatMemCache::shutdown) was called.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("no item under the key"),
            Error::Exists => f.write_str("the item changed since its CAS value was read"),
            Error::NotStored => f.write_str(
                "not stored: add found the key present, or replace, append or prepend found it absent",
            ),
            Error::TooLarge { key, limit } => write!(
                f,
                "the item under key \"{key}\" is over the item size limit of {limit} bytes"
            ),
            Error::NoMemory => {
                f.write_str("out of memory: nothing could be evicted to make room")
            }
            Error::NonNumeric => f.write_str("the value is not a decimal number below 2^64"),
            Error::InvalidKey { len: 0 } => f.write_str("invalid key: the key is empty"),
            Error::InvalidKey { len } => write!(
                f,
                "invalid key: {len} bytes, longer than the {MAX_KEY_LEN}-byte limit"
            ),
            Error::Config(message) => write!(f, "invalid configuration: {message}"),
            Error::Persistence(error) => write!(f, "persistent tier: {error}"),
            Error::Closed => f.write_str("the cache was shut down"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Persistence(error) => Some(error),
            _ => None,
        }
    }
}

impl From<TierError> for Error {
    fn from(error: TierError) -> Self {
        Error::Persistence(error)
    }
}

/// Checks a key against the library's rule: 1 to [`MAX_KEY_LEN`] bytes, any bytes.
pub(super) fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey { len: key.len() });
    }
    Ok(())
}

/// A key as an error message shows it: printable ASCII as is, other bytes escaped, and
/// at most [`SHOWN_KEY_BYTES`] of it.
pub(super) fn printable_key(key: &[u8]) -> String {
    let shown = &key[..key.len().min(SHOWN_KEY_BYTES)];
    let mut text: String = shown.escape_ascii().to_string();
    if shown.len() < key.len() {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shown_escaped_and_cut_short() {
        assert_eq!(printable_key(b"a b\n\"\xff"), "a b\\n\\\"\\xff");
        let long = [b'k'; 100];
        assert_eq!(printable_key(&long), format!("{}...", "k".repeat(64)));
    }

    #[test]
    fn keys_are_one_to_250_bytes_of_anything() {
        assert!(check_key(b"\x00 \r\n\xff").is_ok());
        assert!(check_key(&[b'k'; MAX_KEY_LEN]).is_ok());
        assert!(matches!(check_key(b""), Err(Error::InvalidKey { len: 0 })));
        assert!(matches!(
            check_key(&[b'k'; MAX_KEY_LEN + 1]),
            Err(Error::InvalidKey { len: 251 })
        ));
    }
}
