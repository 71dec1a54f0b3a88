//! The keys and values the load generator sends, and how replies are checked against them.
//!
//! Every key is `key:` followed by its index, zero-padded to the width of the largest index,
//! so all keys have one length and key `i` is a fixed slice of one flat buffer: picking a key
//! costs an index multiplication, never a format or an allocation.
//!
//! The value of key `i` is derived from the key alone, so any reply can be checked byte for
//! byte without remembering what was stored: it starts with the key itself and a `:` (a value
//! returned under the wrong key is caught at once), and goes on with a slice of a shared
//! pseudo-random pattern whose starting offset is a hash of `i` (values of different keys
//! differ all along, not only in their first bytes). Writing a value is two `memcpy`s.

use crate::rng::splitmix64;

/// Where in the pattern a value may start; the pattern is this much longer than a value.
const PATTERN_SPAN: usize = 4096;

/// The key set and the value derivation for one run.
pub struct Dataset {
    /// All keys back to back, `key_len` bytes each.
    keys: Vec<u8>,
    key_len: usize,
    count: u32,
    /// Printable pseudo-random bytes, `value_size + PATTERN_SPAN` long.
    pattern: Vec<u8>,
    value_size: usize,
}

impl Dataset {
    /// `count` keys (at least 1) with values of `value_size` bytes.
    pub fn new(count: u32, value_size: usize) -> Dataset {
        let count = count.max(1);
        let width = (count - 1).to_string().len();
        let key_len = "key:".len() + width;
        let mut keys = Vec::with_capacity(key_len * count as usize);
        for index in 0..count {
            keys.extend_from_slice(format!("key:{index:0width$}").as_bytes());
        }
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let pattern = (0..value_size + PATTERN_SPAN)
            .map(|position| {
                ALPHABET[(splitmix64(position as u64) % ALPHABET.len() as u64) as usize]
            })
            .collect();
        Dataset {
            keys,
            key_len,
            count,
            pattern,
            value_size,
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn key_len(&self) -> usize {
        self.key_len
    }

    pub fn value_size(&self) -> usize {
        self.value_size
    }

    /// Key number `index` (must be below `count()`).
    pub fn key(&self, index: u32) -> &[u8] {
        let start = index as usize * self.key_len;
        &self.keys[start..start + self.key_len]
    }

    /// The three pieces of key `index`'s value: the key, a ':' and a slice of the pattern,
    /// each cut short so that together they are exactly `value_size` bytes.
    fn value_parts(&self, index: u32) -> (&[u8], &[u8], &[u8]) {
        let key = self.key(index);
        let key = &key[..key.len().min(self.value_size)];
        let colon: &[u8] = if self.value_size > key.len() {
            b":"
        } else {
            b""
        };
        let tail_len = self.value_size - key.len() - colon.len();
        let offset = (splitmix64(u64::from(index)) % PATTERN_SPAN as u64) as usize;
        (key, colon, &self.pattern[offset..offset + tail_len])
    }

    /// Appends key `index`'s value to `out`.
    pub fn write_value(&self, index: u32, out: &mut Vec<u8>) {
        let (key, colon, tail) = self.value_parts(index);
        out.extend_from_slice(key);
        out.extend_from_slice(colon);
        out.extend_from_slice(tail);
    }

    /// Whether `data` is exactly key `index`'s value.
    pub fn value_matches(&self, index: u32, data: &[u8]) -> bool {
        if data.len() != self.value_size {
            return false;
        }
        let (key, colon, tail) = self.value_parts(index);
        let (data_key, rest) = data.split_at(key.len());
        let (data_colon, data_tail) = rest.split_at(colon.len());
        data_key == key && data_colon == colon && data_tail == tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width_and_distinct() {
        let dataset = Dataset::new(1000, 100);
        assert_eq!(dataset.key_len(), 7);
        assert_eq!(dataset.key(0), b"key:000");
        assert_eq!(dataset.key(42), b"key:042");
        assert_eq!(dataset.key(999), b"key:999");
        assert_eq!(Dataset::new(1, 10).key(0), b"key:0");
    }

    #[test]
    fn values_start_with_their_key_and_have_the_requested_size() {
        let dataset = Dataset::new(100, 64);
        let mut value = Vec::new();
        dataset.write_value(7, &mut value);
        assert_eq!(value.len(), 64);
        assert_eq!(&value[..6], b"key:07");
        assert_eq!(value[6], b':');
        assert!(value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b':'));
        assert!(dataset.value_matches(7, &value));
    }

    #[test]
    fn a_value_matches_only_its_own_key() {
        let dataset = Dataset::new(100, 100);
        let mut value = Vec::new();
        dataset.write_value(3, &mut value);
        assert!(!dataset.value_matches(4, &value));
        let mut corrupted = value.clone();
        corrupted[90] ^= 1;
        assert!(!dataset.value_matches(3, &corrupted));
        assert!(!dataset.value_matches(3, &value[..99]));
        // Same key prefix elsewhere in the pattern: the tails of two keys differ too.
        let mut other = Vec::new();
        dataset.write_value(4, &mut other);
        assert_ne!(value[7..], other[7..]);
    }

    #[test]
    fn values_shorter_than_a_key_are_a_cut_key() {
        let dataset = Dataset::new(100, 3);
        let mut value = Vec::new();
        dataset.write_value(12, &mut value);
        assert_eq!(value, b"key");
        assert!(dataset.value_matches(12, b"key"));
        let empty = Dataset::new(100, 0);
        value.clear();
        empty.write_value(12, &mut value);
        assert!(value.is_empty());
        assert!(empty.value_matches(12, b""));
    }
}
