//! Cache traces: what a cache was asked, read from a file or generated, and replayed
//! cache-aside to count misses.
//!
//! # What a trace is
//!
//! A trace is a sequence of requests, each a key and the size of the value behind it. A
//! [`Trace`] keeps every distinct key once, back to back in one buffer, and each request as
//! two `u32`s (the key's index and the value size), so a trace of tens of millions of
//! requests fits in memory and a replay walks a flat array with no allocation and no
//! formatting per request. The same trace is replayed many times (once per policy and
//! cache size), so it is read or generated once.
//!
//! # Where traces come from
//!
//! - Text ([`read_text`]): one request per line, `KEY [SIZE]`, fields separated by spaces or
//!   tabs; a line without a size takes a default. Blank lines are skipped. [`write_text`]
//!   writes this form, always with the size, so a written trace replays exactly.
//! - libCacheSim's binary *oracleGeneral* format ([`read_oracle`]): records of 24
//!   little-endian bytes, `u32` timestamp, `u64` object id, `u32` object size, `i64` next
//!   access (virtual time). Only the id and the size are used.
//! - Generators ([`generate`]): a Zipf popularity over a fixed key set, the same with
//!   periodic sequential scans of keys never seen again, and the same diluted with
//!   one-hit wonders (keys requested exactly once).
//!
//! Numeric ids (oracle records, generated keys) become keys as their decimal digits: id
//! 4711 is the 4-byte key `4711`. The key's length is part of what a cache charges for an
//! item, so this choice shows in the memory accounting; decimal keeps written traces
//! readable and makes a generated trace and its written copy the very same trace.
//!
//! # Replaying
//!
//! [`replay`] plays a trace cache-aside against anything that implements
//! [`ReplayTarget`]: get the key, and on a miss store a value of the request's size. Every
//! miss is counted; a store the cache refuses (an item over its size limit) is counted as
//! well, and the next request for that key misses again, as it would in production.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, Read, Write};

use rat_memcache::ascii::{format_u64, MAX_DIGITS};

use crate::rng::Rng;
use crate::workload::{Distribution, KeyChooser};

/// The longest key a trace may hold: memcached's limit, and the library's.
pub const MAX_KEY_LEN: usize = 250;

/// Bytes in one oracleGeneral record.
pub const ORACLE_RECORD_LEN: usize = 24;

/// One request: which key, and how many value bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Index of the key in its trace ([`Trace::key`]).
    pub key: u32,
    /// Value size in bytes.
    pub size: u32,
}

/// A trace in memory: its distinct keys and its requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// Every distinct key, back to back, in order of first request.
    key_bytes: Vec<u8>,
    /// Where each key ends in `key_bytes`; key `i` starts where key `i - 1` ends.
    key_ends: Vec<usize>,
    requests: Vec<Request>,
}

impl Trace {
    pub fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// Number of distinct keys.
    pub fn distinct_keys(&self) -> usize {
        self.key_ends.len()
    }

    /// The bytes of key number `index` (below [`distinct_keys`](Self::distinct_keys)).
    pub fn key(&self, index: u32) -> &[u8] {
        let index = index as usize;
        let start = if index == 0 {
            0
        } else {
            self.key_ends[index - 1]
        };
        &self.key_bytes[start..self.key_ends[index]]
    }

    /// The bytes every distinct key would take if all were cached at once: its key plus
    /// its value, at the size of its last request. A cache charges more than this per
    /// item (its own bookkeeping), so a cache of this size does not hold them all.
    pub fn footprint(&self) -> u64 {
        let mut last_size = vec![0u32; self.distinct_keys()];
        for request in &self.requests {
            last_size[request.key as usize] = request.size;
        }
        (0..self.distinct_keys())
            .map(|index| self.key(index as u32).len() as u64 + u64::from(last_size[index]))
            .sum()
    }
}

/// Why a trace could not be read or made.
#[derive(Debug)]
pub enum TraceError {
    Io(io::Error),
    /// A text line that is not `KEY [SIZE]` (lines count from 1).
    Line {
        number: u64,
        reason: String,
    },
    /// An oracleGeneral record cut short (records count from 1).
    Record {
        number: u64,
        reason: String,
    },
    /// More distinct keys than a `u32` indexes.
    TooManyKeys,
    /// Generator settings that make no trace.
    Settings(String),
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Io(error) => write!(f, "{error}"),
            TraceError::Line { number, reason } => write!(f, "line {number}: {reason}"),
            TraceError::Record { number, reason } => write!(f, "record {number}: {reason}"),
            TraceError::TooManyKeys => write!(f, "more than {} distinct keys", u32::MAX),
            TraceError::Settings(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for TraceError {}

impl From<io::Error> for TraceError {
    fn from(error: io::Error) -> Self {
        TraceError::Io(error)
    }
}

/// Builds a [`Trace`] one request at a time, giving each new key the next index.
#[derive(Default)]
pub struct TraceBuilder {
    trace: Trace,
    index_of: HashMap<Box<[u8]>, u32>,
}

impl TraceBuilder {
    pub fn new() -> TraceBuilder {
        TraceBuilder::default()
    }

    /// Appends a request for `key` (1 to [`MAX_KEY_LEN`] bytes, which the caller checks).
    pub fn push_key(&mut self, key: &[u8], size: u32) -> Result<(), TraceError> {
        let index = match self.index_of.get(key) {
            Some(&index) => index,
            None => {
                let index = u32::try_from(self.trace.key_ends.len())
                    .map_err(|_| TraceError::TooManyKeys)?;
                self.trace.key_bytes.extend_from_slice(key);
                self.trace.key_ends.push(self.trace.key_bytes.len());
                self.index_of.insert(key.into(), index);
                index
            }
        };
        self.trace.requests.push(Request { key: index, size });
        Ok(())
    }

    /// Appends a request for the key whose decimal digits are `id`.
    pub fn push_id(&mut self, id: u64, size: u32) -> Result<(), TraceError> {
        let mut digits = [0u8; MAX_DIGITS];
        self.push_key(format_u64(id, &mut digits), size)
    }

    pub fn finish(self) -> Trace {
        self.trace
    }
}

/// Reads a text trace: `KEY [SIZE]` per line, `default_size` where the size is left out.
pub fn read_text(mut reader: impl BufRead, default_size: u32) -> Result<Trace, TraceError> {
    let mut builder = TraceBuilder::new();
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(builder.finish());
        }
        number += 1;
        let malformed = |reason: String| TraceError::Line { number, reason };
        let mut fields = line
            .split(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
            .filter(|field| !field.is_empty());
        let Some(key) = fields.next() else {
            continue;
        };
        if key.len() > MAX_KEY_LEN {
            return Err(malformed(format!(
                "the key is {} bytes, longer than {MAX_KEY_LEN}",
                key.len()
            )));
        }
        let size = match fields.next() {
            None => default_size,
            Some(field) => std::str::from_utf8(field)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| {
                    malformed(format!(
                        "size `{}` is not a whole number of bytes below 2^32",
                        String::from_utf8_lossy(field)
                    ))
                })?,
        };
        if let Some(extra) = fields.next() {
            return Err(malformed(format!(
                "`{}` after KEY SIZE",
                String::from_utf8_lossy(extra)
            )));
        }
        builder.push_key(key, size)?;
    }
}

/// Writes `trace` as text, `KEY SIZE` per line.
pub fn write_text(trace: &Trace, mut writer: impl Write) -> io::Result<()> {
    for request in trace.requests() {
        writer.write_all(trace.key(request.key))?;
        writeln!(writer, " {}", request.size)?;
    }
    writer.flush()
}

/// Reads an uncompressed oracleGeneral trace.
pub fn read_oracle(mut reader: impl Read) -> Result<Trace, TraceError> {
    let mut builder = TraceBuilder::new();
    let mut record = [0u8; ORACLE_RECORD_LEN];
    let mut number = 0u64;
    loop {
        let filled = fill(&mut reader, &mut record)?;
        if filled == 0 {
            return Ok(builder.finish());
        }
        number += 1;
        if filled < ORACLE_RECORD_LEN {
            return Err(TraceError::Record {
                number,
                reason: format!("cut short: {filled} of {ORACLE_RECORD_LEN} bytes"),
            });
        }
        let field = |range: std::ops::Range<usize>| &record[range];
        let id = u64::from_le_bytes(field(4..12).try_into().expect("8 bytes"));
        let size = u32::from_le_bytes(field(12..16).try_into().expect("4 bytes"));
        builder.push_id(id, size)?;
    }
}

/// Reads until `buffer` is full or the input ends; returns how much was read.
fn fill(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// A synthetic trace's shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Generator {
    /// Every request draws from the key set with Zipf popularity.
    Zipf { theta: f64 },
    /// Zipf requests, but the last `length` requests of every `period` are one sequential
    /// scan of keys requested nowhere else, as a batch job walking a table would make.
    Scan {
        theta: f64,
        length: u64,
        period: u64,
    },
    /// Each request is, with probability `share`, a key requested nowhere else (a one-hit
    /// wonder), and otherwise a Zipf draw from the key set.
    OneHit { theta: f64, share: f64 },
}

/// What every generator takes besides its shape.
#[derive(Clone, Debug)]
pub struct Synthetic {
    /// Keys in the Zipf-popular set, ids `0..keys` (rank 0 the most popular). One-time keys
    /// take ids from `keys` upwards.
    pub keys: u32,
    pub requests: u64,
    pub value_size: u32,
    pub seed: u64,
}

impl Generator {
    /// Parses `zipf:THETA`, `scan[:THETA]` or `onehit[:THETA]` (THETA defaults to 0.99); the
    /// scan and one-hit settings come from the arguments. `None` when `spec` names no
    /// generator (it is then a file name).
    pub fn parse(
        spec: &str,
        scan_length: u64,
        scan_period: u64,
        onehit_share: f64,
    ) -> Option<Result<Generator, String>> {
        let (name, theta) = match spec.split_once(':') {
            Some((name, theta)) => (name, Some(theta)),
            None => (spec, None),
        };
        if !matches!(name, "zipf" | "scan" | "onehit") || (name == "zipf" && theta.is_none()) {
            return None;
        }
        let theta = match zipf_exponent(theta.unwrap_or("0.99")) {
            Ok(theta) => theta,
            Err(reason) => return Some(Err(reason)),
        };
        Some(Ok(match name {
            "zipf" => Generator::Zipf { theta },
            "scan" => Generator::Scan {
                theta,
                length: scan_length,
                period: scan_period,
            },
            _ => Generator::OneHit {
                theta,
                share: onehit_share,
            },
        }))
    }
}

/// A Zipf exponent, under the rules of the load generator's `zipf:THETA` (whose sampler
/// this reuses and which needs 0 < THETA < 1).
fn zipf_exponent(text: &str) -> Result<f64, String> {
    match format!("zipf:{text}").parse::<Distribution>()? {
        Distribution::Zipf(theta) => Ok(theta),
        Distribution::Uniform => unreachable!("a zipf: spec parses as Zipf"),
    }
}

/// Generates the trace `generator` describes; the same settings give the same trace.
pub fn generate(generator: &Generator, synthetic: &Synthetic) -> Result<Trace, TraceError> {
    let theta = match *generator {
        Generator::Zipf { theta } => theta,
        Generator::Scan {
            theta,
            length,
            period,
        } => {
            if length == 0 || length >= period {
                return Err(TraceError::Settings(format!(
                    "a scan of {length} keys every {period} requests: the scan must be at least \
                     1 key and shorter than its period"
                )));
            }
            theta
        }
        Generator::OneHit { theta, share } => {
            if !(0.0..=1.0).contains(&share) {
                return Err(TraceError::Settings(format!(
                    "one-hit share {share} is not between 0 and 1"
                )));
            }
            theta
        }
    };
    if synthetic.keys == 0 {
        return Err(TraceError::Settings("a trace needs at least 1 key".into()));
    }
    let chooser = KeyChooser::new(&Distribution::Zipf(theta), synthetic.keys);
    let mut rng = Rng::new(synthetic.seed);
    let mut next_one_time = u64::from(synthetic.keys);
    let mut builder = TraceBuilder::new();
    for position in 0..synthetic.requests {
        let one_time = match *generator {
            Generator::Zipf { .. } => false,
            Generator::Scan { length, period, .. } => position % period >= period - length,
            Generator::OneHit { share, .. } => rng.next_f64() < share,
        };
        let id = if one_time {
            next_one_time += 1;
            next_one_time - 1
        } else {
            u64::from(chooser.next(&mut rng))
        };
        builder.push_id(id, synthetic.value_size)?;
    }
    Ok(builder.finish())
}

/// A cache a trace is replayed against.
pub trait ReplayTarget {
    type Error;

    /// Looks `key` up; true on a hit.
    fn get(&mut self, key: &[u8]) -> Result<bool, Self::Error>;

    /// Stores `key` with a value of `size` bytes.
    fn set(&mut self, key: &[u8], size: u32) -> Result<SetOutcome, Self::Error>;
}

/// What became of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOutcome {
    Stored,
    /// The cache would not take the item (larger than its item limit or all of it).
    Refused,
}

/// What a replay counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    pub requests: u64,
    pub misses: u64,
    /// Misses whose store was refused.
    pub refused: u64,
}

impl ReplayCounts {
    /// Misses per request, in percent.
    pub fn miss_percent(&self) -> f64 {
        100.0 * self.misses as f64 / self.requests.max(1) as f64
    }
}

/// Replays `trace` cache-aside against `target`: get, and on a miss set.
pub fn replay<T: ReplayTarget>(trace: &Trace, target: &mut T) -> Result<ReplayCounts, T::Error> {
    let mut counts = ReplayCounts::default();
    for request in trace.requests() {
        let key = trace.key(request.key);
        counts.requests += 1;
        if target.get(key)? {
            continue;
        }
        counts.misses += 1;
        if target.set(key, request.size)? == SetOutcome::Refused {
            counts.refused += 1;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn keys_of(trace: &Trace) -> Vec<(String, u32)> {
        trace
            .requests()
            .iter()
            .map(|request| {
                let key = String::from_utf8(trace.key(request.key).to_vec()).unwrap();
                (key, request.size)
            })
            .collect()
    }

    /// How many requests are for keys requested exactly once.
    fn one_time_requests(trace: &Trace) -> usize {
        let mut counts = vec![0u32; trace.distinct_keys()];
        for request in trace.requests() {
            counts[request.key as usize] += 1;
        }
        counts.iter().filter(|&&count| count == 1).count()
    }

    fn synthetic(keys: u32, requests: u64, seed: u64) -> Synthetic {
        Synthetic {
            keys,
            requests,
            value_size: 100,
            seed,
        }
    }

    #[test]
    fn text_lines_give_keys_sizes_and_defaults() {
        let text = "alpha 10\nbeta\n\n  alpha\t20 \r\ngamma 0\n";
        let trace = read_text(text.as_bytes(), 7).unwrap();
        assert_eq!(
            keys_of(&trace),
            [
                ("alpha".to_string(), 10),
                ("beta".to_string(), 7),
                ("alpha".to_string(), 20),
                ("gamma".to_string(), 0)
            ]
        );
        assert_eq!(trace.distinct_keys(), 3);
        // alpha at its last size (20), beta 7, gamma 0, plus 5 + 4 + 5 key bytes.
        assert_eq!(trace.footprint(), 20 + 7 + 14);
    }

    #[test]
    fn text_round_trips_through_a_file() {
        let generated = generate(&Generator::Zipf { theta: 0.9 }, &synthetic(50, 500, 3)).unwrap();
        let path = std::env::temp_dir().join(format!("rat_trace_unit_{}.txt", std::process::id()));
        write_text(
            &generated,
            io::BufWriter::new(std::fs::File::create(&path).unwrap()),
        )
        .unwrap();
        let file = io::BufReader::new(std::fs::File::open(&path).unwrap());
        let read = read_text(file, 1).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read, generated);
        assert_eq!(read.requests().len(), 500);
    }

    #[test]
    fn malformed_text_lines_are_named_by_number() {
        let cases = [
            ("a 1\nb x\n", 2, "size `x`"),
            ("a 1\n\nc 1 extra\n", 3, "`extra` after"),
            ("a -1\n", 1, "size `-1`"),
            ("a 4294967296\n", 1, "below 2^32"),
        ];
        for (text, line, needle) in cases {
            match read_text(text.as_bytes(), 1) {
                Err(TraceError::Line { number, reason }) => {
                    assert_eq!(number, line, "{text:?}");
                    assert!(reason.contains(needle), "{reason}");
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        let long_key = format!("ok\n{}\n", "k".repeat(MAX_KEY_LEN + 1));
        let error = read_text(long_key.as_bytes(), 1).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "line 2: the key is {} bytes, longer than {MAX_KEY_LEN}",
                MAX_KEY_LEN + 1
            )
        );
        assert!(read_text(format!("{} 1\n", "k".repeat(MAX_KEY_LEN)).as_bytes(), 1).is_ok());
    }

    fn oracle_record(time: u32, id: u64, size: u32, next: i64) -> Vec<u8> {
        let mut record = Vec::new();
        record.extend_from_slice(&time.to_le_bytes());
        record.extend_from_slice(&id.to_le_bytes());
        record.extend_from_slice(&size.to_le_bytes());
        record.extend_from_slice(&next.to_le_bytes());
        assert_eq!(record.len(), ORACLE_RECORD_LEN);
        record
    }

    #[test]
    fn oracle_records_give_decimal_keys_and_sizes() {
        let mut bytes = oracle_record(0, 4711, 300, 2);
        bytes.extend(oracle_record(1, u64::MAX, 5, -1));
        bytes.extend(oracle_record(2, 4711, 320, -1));
        bytes.extend(oracle_record(3, 0, 1, -1));
        let trace = read_oracle(bytes.as_slice()).unwrap();
        assert_eq!(
            keys_of(&trace),
            [
                ("4711".to_string(), 300),
                ("18446744073709551615".to_string(), 5),
                ("4711".to_string(), 320),
                ("0".to_string(), 1)
            ]
        );
        assert_eq!(trace.distinct_keys(), 3);
    }

    #[test]
    fn oracle_records_are_read_whatever_the_read_sizes() {
        // A reader that hands out 5 bytes at a time splits records across reads.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
                let n = buffer.len().min(5).min(self.0.len());
                buffer[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let bytes: Vec<u8> = (0..10u64)
            .flat_map(|id| oracle_record(0, id, id as u32, -1))
            .collect();
        let trace = read_oracle(Trickle(&bytes)).unwrap();
        assert_eq!(trace, read_oracle(bytes.as_slice()).unwrap());
        assert_eq!(trace.requests().len(), 10);
        assert_eq!(trace.key(9), b"9");
        assert_eq!(trace.requests()[9].size, 9);
    }

    #[test]
    fn a_truncated_oracle_record_is_named() {
        let mut bytes = oracle_record(0, 1, 1, -1);
        bytes.extend(oracle_record(0, 2, 1, -1));
        bytes.truncate(ORACLE_RECORD_LEN + 10);
        let error = read_oracle(bytes.as_slice()).unwrap_err();
        assert_eq!(error.to_string(), "record 2: cut short: 10 of 24 bytes");
    }

    #[test]
    fn generators_parse() {
        let parse = |spec| Generator::parse(spec, 10, 40, 0.3);
        assert_eq!(parse("zipf:0.8"), Some(Ok(Generator::Zipf { theta: 0.8 })));
        assert_eq!(
            parse("scan"),
            Some(Ok(Generator::Scan {
                theta: 0.99,
                length: 10,
                period: 40
            }))
        );
        assert_eq!(
            parse("onehit:0.5"),
            Some(Ok(Generator::OneHit {
                theta: 0.5,
                share: 0.3
            }))
        );
        assert!(matches!(parse("zipf:1.2"), Some(Err(_))));
        assert_eq!(parse("zipf"), None);
        assert_eq!(parse("trace.txt"), None);
    }

    #[test]
    fn generators_are_deterministic_with_a_seed() {
        let generators = [
            Generator::Zipf { theta: 0.99 },
            Generator::Scan {
                theta: 0.99,
                length: 30,
                period: 200,
            },
            Generator::OneHit {
                theta: 0.99,
                share: 0.4,
            },
        ];
        for generator in &generators {
            let first = generate(generator, &synthetic(1000, 5000, 7)).unwrap();
            let again = generate(generator, &synthetic(1000, 5000, 7)).unwrap();
            let other = generate(generator, &synthetic(1000, 5000, 8)).unwrap();
            assert_eq!(first, again, "{generator:?}");
            assert_ne!(first, other, "{generator:?}");
            assert_eq!(first.requests().len(), 5000);
            assert!(first.requests().iter().all(|request| request.size == 100));
        }
    }

    #[test]
    fn zipf_traces_stay_in_the_key_set_and_favour_rank_zero() {
        let trace = generate(&Generator::Zipf { theta: 0.99 }, &synthetic(100, 10_000, 1)).unwrap();
        let ids: Vec<u64> = keys_of(&trace)
            .iter()
            .map(|(key, _)| key.parse().unwrap())
            .collect();
        assert!(ids.iter().all(|&id| id < 100));
        let zeros = ids.iter().filter(|&&id| id == 0).count();
        let fifties = ids.iter().filter(|&&id| id == 50).count();
        assert!(zeros > 10 * fifties.max(1), "{zeros} vs {fifties}");
    }

    #[test]
    fn onehit_traces_have_the_share_of_one_time_requests_asked_for() {
        // 100 popular keys over 20,000 requests: every popular key recurs, so the one-time
        // requests are exactly the one-hit wonders.
        for share in [0.0, 0.3, 0.7] {
            let generator = Generator::OneHit { theta: 0.5, share };
            let trace = generate(&generator, &synthetic(100, 20_000, 5)).unwrap();
            let observed = one_time_requests(&trace) as f64 / 20_000.0;
            // The share is a Bernoulli mean over 20,000 draws: sigma below 0.0035.
            assert!((observed - share).abs() < 0.02, "share {share}: {observed}");
        }
    }

    #[test]
    fn scan_traces_contain_their_scans() {
        let (length, period) = (50u64, 200u64);
        let generator = Generator::Scan {
            theta: 0.99,
            length,
            period,
        };
        let trace = generate(&generator, &synthetic(100, 1000, 2)).unwrap();
        let requests = keys_of(&trace);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (key, _) in &requests {
            *counts.entry(key).or_default() += 1;
        }
        let mut expected_id = 100u64;
        for (position, (key, _)) in requests.iter().enumerate() {
            let id: u64 = key.parse().unwrap();
            if position as u64 % period >= period - length {
                // Scans walk fresh ids in order, continuing where the last scan stopped.
                assert_eq!(id, expected_id, "position {position}");
                assert_eq!(counts[key.as_str()], 1);
                expected_id += 1;
            } else {
                assert!(id < 100, "position {position}: {id}");
            }
        }
        assert_eq!(expected_id - 100, 5 * length);
    }

    #[test]
    fn impossible_generator_settings_are_refused() {
        let scan = |length, period| Generator::Scan {
            theta: 0.9,
            length,
            period,
        };
        for generator in [
            scan(0, 10),
            scan(10, 10),
            Generator::OneHit {
                theta: 0.9,
                share: 1.5,
            },
        ] {
            assert!(matches!(
                generate(&generator, &synthetic(10, 10, 1)),
                Err(TraceError::Settings(_))
            ));
        }
        assert!(generate(&Generator::Zipf { theta: 0.9 }, &synthetic(0, 10, 1)).is_err());
    }

    /// A cache of at most `capacity` keys that forgets everything when full, refusing
    /// values over 1000 bytes.
    struct Forgetful {
        capacity: usize,
        keys: HashSet<Vec<u8>>,
    }

    impl ReplayTarget for Forgetful {
        type Error = std::convert::Infallible;

        fn get(&mut self, key: &[u8]) -> Result<bool, Self::Error> {
            Ok(self.keys.contains(key))
        }

        fn set(&mut self, key: &[u8], size: u32) -> Result<SetOutcome, Self::Error> {
            if size > 1000 {
                return Ok(SetOutcome::Refused);
            }
            if self.keys.len() == self.capacity {
                self.keys.clear();
            }
            self.keys.insert(key.to_vec());
            Ok(SetOutcome::Stored)
        }
    }

    #[test]
    fn replay_counts_misses_and_refusals() {
        let text = "a\nb\na\nbig 5000\nbig 5000\nc\na\nb\n";
        let trace = read_text(text.as_bytes(), 10).unwrap();
        let mut target = Forgetful {
            capacity: 2,
            keys: HashSet::new(),
        };
        let counts = replay(&trace, &mut target).unwrap();
        // a miss, b miss, a hit, big refused twice, c clears {a, b}: a miss, b miss.
        assert_eq!(
            counts,
            ReplayCounts {
                requests: 8,
                misses: 7,
                refused: 2
            }
        );
        assert_eq!(counts.miss_percent(), 87.5);
    }
}
