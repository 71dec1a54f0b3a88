//! How the persistent tier lays items out in melange_db: three key spaces in one tree,
//! and the record an item becomes.
//!
//! One tree keeps everything, so that an item, its place in the write order and the
//! tier's bookkeeping change together in one atomic batch:
//!
//! ```text
//! 'k' key            -> record            the item
//! 'o' seq (u64 BE)   -> key               write order: oldest first, for the disk limit;
//!                                          newest first, for warming L1 at start-up
//! 'm' "tier"         -> Bookkeeping       counts, high-water marks, a pending flush
//! ```
//!
//! A record is a fixed 34-byte header and the value, LZ4-compressed when that makes it
//! smaller:
//!
//! ```text
//! version (1) | encoding (1) | flags (4) | exptime (4) | time (4) | cas (8) | seq (8) |
//! length (4, the value's length before compression) | value
//! ```
//!
//! Times are Unix seconds (`exptime` 0 = never), because the store's own clock starts
//! again with every process. All integers are little-endian except the order key's
//! sequence, which is big-endian so the tree sorts it.

use std::fmt;

/// Prefix of an item's key.
pub const ITEM_SPACE: u8 = b'k';
/// Prefix of a write-order entry.
pub const ORDER_SPACE: u8 = b'o';
/// The bookkeeping entry's key.
pub const BOOKKEEPING_KEY: &[u8] = b"mtier";

/// The record layout this code writes; a record of another version is refused.
const VERSION: u8 = 1;
/// The value is stored as given.
const RAW: u8 = 0;
/// The value is an LZ4 block (lz4_flex's format, without a size prefix).
const LZ4: u8 = 1;
/// Bytes before the value.
pub const HEADER_LEN: usize = 34;

/// The largest key with its one-byte prefix.
pub const MAX_PREFIXED_KEY: usize = 1 + 250;

/// What the tier keeps of an item besides its key and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemHeader {
    pub flags: u32,
    /// Unix time at which the item expires; 0 = never.
    pub exptime: u32,
    /// Unix time at which the item was stored (what a delayed flush compares).
    pub time: u32,
    pub cas: u64,
    /// Its position in the write order.
    pub seq: u64,
}

/// A record that cannot be read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptRecord(pub &'static str);

impl fmt::Display for CorruptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt record: {}", self.0)
    }
}

/// Writes `prefix` and `key` into `buffer` and returns them as one slice, so that a
/// lookup builds its tree key on the stack.
pub fn prefixed<'a>(buffer: &'a mut [u8; MAX_PREFIXED_KEY], prefix: u8, key: &[u8]) -> &'a [u8] {
    let len = key.len().min(MAX_PREFIXED_KEY - 1);
    buffer[0] = prefix;
    buffer[1..=len].copy_from_slice(&key[..len]);
    &buffer[..=len]
}

/// The write-order key of sequence number `seq`.
pub fn order_key(seq: u64) -> [u8; 9] {
    let mut key = [0; 9];
    key[0] = ORDER_SPACE;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number of a write-order key.
pub fn order_seq(key: &[u8]) -> Option<u64> {
    match key {
        [ORDER_SPACE, seq @ ..] => Some(u64::from_be_bytes(seq.try_into().ok()?)),
        _ => None,
    }
}

/// Encodes an item. With `compress_from` set, a value at least that long is stored
/// LZ4-compressed if that is smaller than the value itself.
pub fn encode(header: &ItemHeader, value: &[u8], compress_from: Option<usize>) -> Vec<u8> {
    let compressed = compress_from
        .filter(|&threshold| value.len() >= threshold && !value.is_empty())
        .map(|_| lz4_flex::block::compress(value))
        .filter(|compressed| compressed.len() < value.len());
    let (encoding, body) = match &compressed {
        Some(compressed) => (LZ4, compressed.as_slice()),
        None => (RAW, value),
    };
    let mut record = Vec::with_capacity(HEADER_LEN + body.len());
    record.push(VERSION);
    record.push(encoding);
    record.extend_from_slice(&header.flags.to_le_bytes());
    record.extend_from_slice(&header.exptime.to_le_bytes());
    record.extend_from_slice(&header.time.to_le_bytes());
    record.extend_from_slice(&header.cas.to_le_bytes());
    record.extend_from_slice(&header.seq.to_le_bytes());
    // Items are far smaller than 4 GiB: `-I` stops at 1 GiB.
    let len = u32::try_from(value.len()).expect("an item is smaller than 4 GiB");
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(body);
    record
}

/// Reads a record's header without touching its value.
pub fn decode_header(record: &[u8]) -> Result<ItemHeader, CorruptRecord> {
    if record.len() < HEADER_LEN {
        return Err(CorruptRecord("shorter than its header"));
    }
    if record[0] != VERSION {
        return Err(CorruptRecord("unknown version"));
    }
    let u32_at = |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().expect("8 bytes"));
    Ok(ItemHeader {
        flags: u32_at(2),
        exptime: u32_at(6),
        time: u32_at(10),
        cas: u64_at(14),
        seq: u64_at(22),
    })
}

/// Decodes a record into its header and `key` followed by the value, in one allocation
/// as the L1 store keeps an item.
pub fn decode(record: &[u8], key: &[u8]) -> Result<(ItemHeader, Box<[u8]>), CorruptRecord> {
    let header = decode_header(record)?;
    let stored_len = u32::from_le_bytes(record[30..34].try_into().expect("4 bytes")) as usize;
    let body = &record[HEADER_LEN..];
    let mut data = Vec::with_capacity(key.len() + stored_len);
    data.extend_from_slice(key);
    match record[1] {
        RAW if body.len() == stored_len => data.extend_from_slice(body),
        RAW => return Err(CorruptRecord("value length does not match")),
        LZ4 => {
            data.resize(key.len() + stored_len, 0);
            let written = lz4_flex::block::decompress_into(body, &mut data[key.len()..])
                .map_err(|_| CorruptRecord("LZ4 block does not decompress"))?;
            if written != stored_len {
                return Err(CorruptRecord("value length does not match"));
            }
        }
        _ => return Err(CorruptRecord("unknown encoding")),
    }
    Ok((header, data.into_boxed_slice()))
}

/// The tier's bookkeeping, written with every batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bookkeeping {
    /// Items in the tier.
    pub items: u64,
    /// Bytes of keys and records in the tier (what `max_disk_size` limits).
    pub bytes: u64,
    /// The largest CAS ever written: a restarted store hands out larger ones.
    pub max_cas: u64,
    /// The last write-order sequence number used.
    pub last_seq: u64,
    /// The latest `flush_all`: Unix time of its `oldest_live` (0 = none) ...
    pub flush_at: u32,
    /// ... and its `oldest_cas`.
    pub flush_cas: u64,
}

const BOOKKEEPING_LEN: usize = 44;

impl Bookkeeping {
    pub fn encode(&self) -> [u8; BOOKKEEPING_LEN] {
        let mut out = [0; BOOKKEEPING_LEN];
        out[0..8].copy_from_slice(&self.items.to_le_bytes());
        out[8..16].copy_from_slice(&self.bytes.to_le_bytes());
        out[16..24].copy_from_slice(&self.max_cas.to_le_bytes());
        out[24..32].copy_from_slice(&self.last_seq.to_le_bytes());
        out[32..36].copy_from_slice(&self.flush_at.to_le_bytes());
        out[36..44].copy_from_slice(&self.flush_cas.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Bookkeeping, CorruptRecord> {
        if bytes.len() != BOOKKEEPING_LEN {
            return Err(CorruptRecord("bookkeeping entry has the wrong length"));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        Ok(Bookkeeping {
            items: u64_at(0),
            bytes: u64_at(8),
            max_cas: u64_at(16),
            last_seq: u64_at(24),
            flush_at: u32::from_le_bytes(bytes[32..36].try_into().expect("4")),
            flush_cas: u64_at(36),
        })
    }
}

/// What an item costs against `max_disk_size`: its key (twice: item and write order),
/// its record, and the write-order entry's own key.
pub fn disk_charge(key_len: usize, record_len: usize) -> u64 {
    (2 * (key_len + 1) + record_len + 9) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;

    fn header() -> ItemHeader {
        ItemHeader {
            flags: 0xdead_beef,
            exptime: 1_900_000_000,
            time: 1_800_000_000,
            cas: 77,
            seq: 5,
        }
    }

    #[test]
    fn raw_record_round_trips() {
        let record = encode(&header(), b"hello", None);
        assert_eq!(record.len(), HEADER_LEN + 5);
        let (decoded, data) = decode(&record, b"key").unwrap();
        assert_eq!(decoded, header());
        assert_eq!(&*data, b"keyhello");
    }

    #[test]
    fn compressible_value_is_stored_smaller_and_comes_back_exact() {
        let value = b"abcdefgh".repeat(200);
        let record = encode(&header(), &value, Some(64));
        assert!(
            record.len() < HEADER_LEN + value.len() / 4,
            "{}",
            record.len()
        );
        assert_eq!(record[1], LZ4);
        let (_, data) = decode(&record, b"k").unwrap();
        assert_eq!(&data[1..], &value[..]);
    }

    #[test]
    fn incompressible_value_is_stored_raw() {
        // Random bytes: LZ4 finds nothing to repeat.
        let value = TestRng::new(0x9e37_79b9_7f4a_7c15).bytes(4096);
        let record = encode(&header(), &value, Some(0));
        assert_eq!(record[1], RAW);
        assert_eq!(record.len(), HEADER_LEN + value.len());
        assert_eq!(&decode(&record, b"").unwrap().1[..], &value[..]);
    }

    #[test]
    fn values_below_the_threshold_are_not_compressed() {
        let value = vec![b'x'; 100];
        assert_eq!(encode(&header(), &value, Some(101))[1], RAW);
        assert_eq!(encode(&header(), &value, Some(100))[1], LZ4);
        assert_eq!(encode(&header(), b"", Some(0))[1], RAW);
    }

    #[test]
    fn damaged_records_are_refused() {
        let mut record = encode(&header(), &vec![b'y'; 500], Some(0));
        assert!(decode(&record[..HEADER_LEN - 1], b"").is_err());
        let mut wrong_version = record.clone();
        wrong_version[0] = 9;
        assert!(decode(&wrong_version, b"").is_err());
        let mut wrong_encoding = record.clone();
        wrong_encoding[1] = 7;
        assert!(decode(&wrong_encoding, b"").is_err());
        // A truncated LZ4 body, and a length that does not match what it holds.
        let truncated = &record[..record.len() - 3];
        assert!(decode(truncated, b"").is_err());
        record[30] ^= 1;
        assert!(decode(&record, b"").is_err());
        let mut raw = encode(&header(), b"abc", None);
        raw.push(b'!');
        assert!(decode(&raw, b"").is_err());
    }

    #[test]
    fn order_keys_sort_by_sequence() {
        let keys: Vec<[u8; 9]> = [3, 256, 1, 70_000].into_iter().map(order_key).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        let seqs: Vec<u64> = sorted.iter().map(|key| order_seq(key).unwrap()).collect();
        assert_eq!(seqs, [1, 3, 256, 70_000]);
        assert_eq!(order_seq(b"k123"), None);
    }

    #[test]
    fn prefixed_keys_are_built_in_place() {
        let mut buffer = [0; MAX_PREFIXED_KEY];
        assert_eq!(prefixed(&mut buffer, ITEM_SPACE, b"abc"), b"kabc");
        let long = [b'z'; 250];
        assert_eq!(prefixed(&mut buffer, ITEM_SPACE, &long).len(), 251);
    }

    #[test]
    fn bookkeeping_round_trips() {
        let book = Bookkeeping {
            items: 1,
            bytes: 2,
            max_cas: 3,
            last_seq: 4,
            flush_at: 5,
            flush_cas: 6,
        };
        assert_eq!(Bookkeeping::decode(&book.encode()), Ok(book));
        assert!(Bookkeeping::decode(&[0; 7]).is_err());
    }
}
