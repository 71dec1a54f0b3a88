//! The memory limit (`-m`) checked against the server process's real memory.
//!
//! `-m 64` promises that items take at most 64 MiB. What the operating system sees is the
//! process's resident set (RSS), which also holds things no item limit can cover: the
//! binary's code, thread stacks, connection buffers, the allocator's own metadata. These
//! tests start the real `rat_memcached` with `-m 64 -t 2`, write 1 GiB of values through
//! it, far more than it can keep, and hold it to:
//!
//! * **RSS ≤ 64 MiB + [`FIXED_ALLOWANCE`]** at every sample taken while it fills and at the
//!   end: the allowance covers the fixed costs above (the README's "Memory" section has the
//!   measured numbers), so anything that grows with the data — allocator slack the item
//!   cost does not charge, freed memory that is never returned — breaks it;
//! * **`bytes` ≤ `limit_maxbytes`** in every `stats` sample;
//! * **evictions happened, and their causes add up**: `evictions` =
//!   `evictions_memory` + `evictions_entries` (the split is rat_memcached's own);
//! * **nothing is corrupted**: the most recently written keys read back with exactly the
//!   value written.
//!
//! # The data
//!
//! Value lengths are log-uniform from 10 B to 100 KB (as many 10–100 B values as
//! 10–100 KB ones; about 10.9 KB on average, so some 99,000 sets), drawn from a seeded
//! generator so every run writes the same items. Every key is new, so once the first
//! 64 MiB are in, each set evicts. A value is a slice of a fixed pool of random bytes at an
//! offset derived from its key's index, so it can be checked later without being kept,
//! and two keys' values differ even at the same length.
//!
//! Two connections write at once (one per reactor thread), each sending batches of plain
//! `set`s and then reading their `STORED` replies, so the fill takes seconds even against a
//! debug build. A third thread samples `/proc/PID/status` and `stats` meanwhile.
//!
//! # Eviction policies
//!
//! [`fill_and_check`] takes the server's extra arguments, so each eviction policy gets a
//! test of its own that differs only in the arguments it passes.
//!
//! Under `RAT_DIFF_SELFTEST=1` the reference memcached runs the same fill (it has no
//! per-cause eviction counters, so that check is skipped).
#![cfg(all(unix, feature = "server"))]

mod common;

use common::{
    mix, read_fetched, selftest, start_server_under_test, stat_u64, stats_of, RawClient, Server,
};
use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

/// The server's item memory limit, in megabytes (`-m`).
const LIMIT_MB: u64 = 64;

/// What the process may hold beyond `-m` (the README's "Memory" section has the measured
/// numbers): its idle footprint (code, static data, thread stacks: 8 MiB for a debug
/// build, under 5 MiB for a release build), up to 4 MiB of freed large blocks the
/// allocator keeps for reuse, the requests in flight (here two connections sending 32
/// sets of up to 100 KB at a time) and the allocator's slack in the pages of blocks under
/// 16 KiB, which grows when items are freed by another worker thread than the one that
/// allocated them. This fill has been measured at 12-13 MiB over `-m` for a release
/// build and 17-19 MiB for a debug build.
const FIXED_ALLOWANCE: u64 = 24 * MIB;

/// Bytes of values written in all.
const TOTAL_VALUE_BYTES: u64 = 1 << 30;

/// Connections writing at once.
const WRITERS: u64 = 2;

const MIN_VALUE_LEN: f64 = 10.0;
const MAX_VALUE_LEN: f64 = 100_000.0;

/// Sets sent before their replies are read.
const SETS_PER_BATCH: usize = 32;

/// How often RSS and `stats` are sampled while the fill runs.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Most recent keys of each writer read back at the end.
const READ_BACK_PER_WRITER: u64 = 200;

/// Keys per `get` when reading back.
const KEYS_PER_GET: usize = 50;

/// Random bytes that values are cut from.
const POOL_LEN: usize = 1 << 20;

/// The seed of everything random in the fill.
const SEED: u64 = 0x6d65_6d6f_7279;

/// The fixed pool of random bytes (every byte value, `\r` and `\n` included).
fn value_pool() -> Vec<u8> {
    (0..POOL_LEN as u64 / 8)
        .flat_map(|i| mix(SEED ^ i).to_le_bytes())
        .collect()
}

/// One item of the fill, everything derived from its writer and index.
struct Item {
    key: String,
    /// Where its value starts in the pool.
    offset: usize,
    len: usize,
}

impl Item {
    fn new(writer: u64, index: u64) -> Item {
        let draw = mix(SEED ^ (writer << 48) ^ index);
        // Log-uniform: the top 53 bits as a fraction in [0, 1) pick the exponent.
        let fraction = (draw >> 11) as f64 / (1u64 << 53) as f64;
        let len = (MIN_VALUE_LEN * (MAX_VALUE_LEN / MIN_VALUE_LEN).powf(fraction)) as usize;
        let offset = (mix(draw) % (POOL_LEN - len) as u64) as usize;
        Item {
            key: format!("w{writer}:{index}"),
            offset,
            len,
        }
    }

    fn value<'pool>(&self, pool: &'pool [u8]) -> &'pool [u8] {
        &pool[self.offset..self.offset + self.len]
    }
}

/// The process's resident set in bytes, from `/proc/PID/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status:\n{status}"));
    let kib: u64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("VmRSS {line:?}: {e}"));
    kib * 1024
}

/// One look at the server while it fills.
#[derive(Debug)]
struct Sample {
    at: Duration,
    rss: u64,
    bytes: u64,
    limit_maxbytes: u64,
}

/// Samples the server every [`SAMPLE_INTERVAL`] until `done` is set.
fn sample_until(server: &Server, done: &AtomicBool) -> Vec<Sample> {
    let mut client = server.client();
    let start = Instant::now();
    let mut samples = Vec::new();
    while !done.load(Ordering::Relaxed) {
        let stats = stats_of(&mut client, "stats");
        samples.push(Sample {
            at: start.elapsed(),
            rss: rss_bytes(server.pid()),
            bytes: stat_u64(&stats, "bytes"),
            limit_maxbytes: stat_u64(&stats, "limit_maxbytes"),
        });
        thread::sleep(SAMPLE_INTERVAL);
    }
    samples
}

/// Writes `writer`'s share of the fill; returns how many items it wrote.
fn write_share(port: u16, writer: u64, pool: &[u8]) -> u64 {
    let mut client = RawClient::connect(port);
    let mut batch = Vec::new();
    let mut written_bytes = 0;
    let mut index = 0;
    while written_bytes < TOTAL_VALUE_BYTES / WRITERS {
        batch.clear();
        for _ in 0..SETS_PER_BATCH {
            let item = Item::new(writer, index);
            batch.extend_from_slice(format!("set {} 0 0 {}\r\n", item.key, item.len).as_bytes());
            batch.extend_from_slice(item.value(pool));
            batch.extend_from_slice(b"\r\n");
            written_bytes += item.len as u64;
            index += 1;
        }
        client.send(&batch);
        let replies = client.read_exact(SETS_PER_BATCH * b"STORED\r\n".len());
        assert!(
            replies.chunks(8).all(|reply| reply == b"STORED\r\n"),
            "writer {writer}: a set before index {index} was not stored: {}",
            common::escape(&replies)
        );
    }
    index
}

/// Reads back the last [`READ_BACK_PER_WRITER`] items of each writer; panics on any value
/// that differs from what was written. Returns how many were found and how many asked.
fn read_back(server: &Server, written: &[u64], pool: &[u8]) -> (usize, usize) {
    let mut client = server.client();
    let recent: Vec<Item> = written
        .iter()
        .zip(0..)
        .flat_map(|(&count, writer)| {
            (count.saturating_sub(READ_BACK_PER_WRITER)..count).map(move |i| Item::new(writer, i))
        })
        .collect();
    let by_key: HashMap<&str, &Item> = recent
        .iter()
        .map(|item| (item.key.as_str(), item))
        .collect();
    let mut found = 0;
    for group in recent.chunks(KEYS_PER_GET) {
        let keys: Vec<&str> = group.iter().map(|item| item.key.as_str()).collect();
        client.send(format!("get {}\r\n", keys.join(" ")).as_bytes());
        for fetched in read_fetched(&mut client) {
            let item = by_key
                .get(fetched.key.as_str())
                .unwrap_or_else(|| panic!("get returned key {} that was not asked", fetched.key));
            assert!(
                fetched.value == item.value(pool),
                "{}: read back {} bytes that differ from the {} written",
                item.key,
                fetched.value.len(),
                item.len
            );
            found += 1;
        }
    }
    (found, recent.len())
}

/// Starts the server with `-m 64 -t 2` and `extra_args`, fills it with 1 GiB and checks
/// the limits described in the module docs.
fn fill_and_check(extra_args: &[&str]) {
    let limit_mb = LIMIT_MB.to_string();
    let mut args = vec!["-m", limit_mb.as_str(), "-t", "2"];
    args.extend_from_slice(extra_args);
    let server = start_server_under_test(&args);
    let rss_bound = LIMIT_MB * MIB + FIXED_ALLOWANCE;
    let idle_rss = rss_bytes(server.pid());

    let pool = value_pool();
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let (samples, written) = thread::scope(|scope| {
        let sampler = scope.spawn(|| sample_until(&server, &done));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let pool = &pool;
                let port = server.port();
                scope.spawn(move || write_share(port, writer, pool))
            })
            .collect();
        let written: Vec<u64> = writers
            .into_iter()
            .map(|w| w.join().expect("writer thread"))
            .collect();
        done.store(true, Ordering::Relaxed);
        (sampler.join().expect("sampler thread"), written)
    });
    let fill_time = started.elapsed();

    let end_rss = rss_bytes(server.pid());
    let stats = stats_of(&mut server.client(), "stats");
    let (found, asked) = read_back(&server, &written, &pool);
    let peak_rss = samples
        .iter()
        .map(|s| s.rss)
        .max()
        .unwrap_or(0)
        .max(end_rss);
    eprintln!(
        "{} {args:?}: {} items in {fill_time:.1?}; RSS idle {:.1} MiB, peak {:.1} MiB, \
         end {:.1} MiB (bound {:.1} MiB); bytes {} of {}; evictions {}; {found} of {asked} \
         recent keys found",
        server.name(),
        written.iter().sum::<u64>(),
        idle_rss as f64 / MIB as f64,
        peak_rss as f64 / MIB as f64,
        end_rss as f64 / MIB as f64,
        rss_bound as f64 / MIB as f64,
        stat_u64(&stats, "bytes"),
        stat_u64(&stats, "limit_maxbytes"),
        stat_u64(&stats, "evictions"),
    );

    assert!(
        samples.len() >= 2,
        "the fill took {fill_time:?}, too short to sample"
    );
    for sample in &samples {
        assert!(
            sample.rss <= rss_bound,
            "RSS {} bytes exceeds {rss_bound} {:.1?} into the fill: {sample:?}",
            sample.rss,
            sample.at
        );
        assert_eq!(sample.limit_maxbytes, LIMIT_MB * MIB, "{sample:?}");
        assert!(
            sample.bytes <= sample.limit_maxbytes,
            "bytes over the limit: {sample:?}"
        );
    }
    assert!(
        end_rss <= rss_bound,
        "RSS {end_rss} bytes after the fill exceeds {rss_bound}"
    );
    assert!(stat_u64(&stats, "bytes") <= stat_u64(&stats, "limit_maxbytes"));

    let evictions = stat_u64(&stats, "evictions");
    assert!(evictions > 0, "1 GiB through 64 MiB evicted nothing");
    if !selftest() {
        assert_eq!(
            stat_u64(&stats, "evictions_memory") + stat_u64(&stats, "evictions_entries"),
            evictions,
            "eviction causes do not add up: {stats:?}"
        );
        assert!(
            stat_u64(&stats, "evictions_memory") > 0,
            "with no entry limit, evictions must be for memory: {stats:?}"
        );
    }
    assert!(
        found > 0,
        "none of the {asked} most recently written keys is stored"
    );
}

/// Runs the fill under one eviction policy (memcached, under `RAT_DIFF_SELFTEST=1`, has
/// only its own, which the `lru` test covers).
fn fill_with_policy(policy: &str) {
    if selftest() && policy != "lru" {
        eprintln!("memcached has no --eviction {policy}: skipped");
        return;
    }
    let args: &[&str] = if selftest() {
        &[]
    } else {
        &["--eviction", policy]
    };
    fill_and_check(args);
}

#[test]
fn lru_rss_stays_within_the_memory_limit() {
    fill_with_policy("lru");
}

#[test]
fn lfu_rss_stays_within_the_memory_limit() {
    fill_with_policy("lfu");
}

#[test]
fn fifo_rss_stays_within_the_memory_limit() {
    fill_with_policy("fifo");
}

#[test]
fn hybrid_rss_stays_within_the_memory_limit() {
    fill_with_policy("hybrid");
}
