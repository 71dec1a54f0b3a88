//! Integration tests of the persistent tier: the real `rat_memcached` binary with
//! `--data-dir`, stopped and started again, and the data checked byte for byte.
//!
//! What a client may rely on, and what these tests hold the server to:
//!
//! * **A graceful stop loses nothing.** After SIGTERM the process drains its write queue,
//!   fsyncs and exits 0; the next process on the same directory serves every key with
//!   the same value, flags, CAS and absolute expiry, even when the data is much larger
//!   than its memory (misses are read from disk). Deletes, touches, counters, appends,
//!   CAS updates and `flush_all` survive as the client saw them.
//! * **A crash loses at most the last moments.** After SIGKILL, every write acknowledged
//!   comfortably before the kill is there, and whatever is there is exactly what some
//!   write stored: never a torn, mixed or older value.
//! * **The directory belongs to one process.** A second instance on it is refused with a
//!   message naming the directory; a damaged directory is either refused with advice to
//!   start with `--clear-on-startup`, or served without wrong data; never a crash.
//! * **`stats` shows the tier**, and shows nothing of it when it is off.
//!
//! Process control uses signals, so these tests are Unix-only. Each test keeps its data
//! in a [`TempDir`] of its own, removed at the end.
#![cfg(all(unix, feature = "server", feature = "l2"))]

mod common;

use common::{
    escape, launch_rat, mix, rat_binary, read_fetched, run_to_exit, start_rat,
    start_rat_with_data_dir, stat_u64, stats_of, Fetched, Launch, RawClient, Server, TempDir,
};
use std::collections::HashMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a debug build may take to drain its write queue and exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Keys per `gets` request when reading back.
const KEYS_PER_GET: usize = 100;

/// How many differences a check lists before it stops collecting them.
const SHOWN_MISMATCHES: usize = 10;

/// `len` pseudo-random bytes (xorshift) covering every byte value, `\r` and `\n` too.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

/// `len` bytes of words: text that LZ4 compresses well.
fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "cache",
        "memory",
        "disk",
        "restart",
        "value",
        "key",
        "flags",
        "expiry",
        "stripe",
        "writer",
        "batch",
        "fsync",
        "tier",
        "promotion",
        "warm",
        "queue",
    ];
    let mut text = Vec::with_capacity(len + 16);
    let mut n = seed;
    while text.len() < len {
        n = mix(n);
        text.extend_from_slice(WORDS[(n % 16) as usize].as_bytes());
        text.push(if n.is_multiple_of(11) { b'\n' } else { b' ' });
    }
    text.truncate(len);
    text
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Shows where two values first differ, escaped, for a failure message.
fn difference(expected: &[u8], got: &[u8]) -> String {
    let at = expected
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(got.len()));
    let window = |bytes: &[u8]| escape(&bytes[at.saturating_sub(16)..(at + 48).min(bytes.len())]);
    format!(
        "{} bytes expected, {} got, first difference at byte {at}: expected ...{}... got ...{}...",
        expected.len(),
        got.len(),
        window(expected),
        window(got)
    )
}

/// Panics listing `mismatches` (at most [`SHOWN_MISMATCHES`] of `total`) when there are any.
fn assert_no_mismatches(what: &str, total: usize, mismatches: &[String]) {
    assert!(
        mismatches.is_empty(),
        "{what}: {total} mismatches, the first {}:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Sends `gets` for `keys` and returns what came back, by key; panics if the reply holds
/// a key that was not asked for or holds keys out of order.
fn gets_many(client: &mut RawClient, keys: &[String]) -> HashMap<String, Fetched> {
    let mut request = String::from("gets");
    for key in keys {
        request.push(' ');
        request.push_str(key);
    }
    request.push_str("\r\n");
    client.send(request.as_bytes());
    let items = read_fetched(client);
    let mut asked = keys.iter();
    for item in &items {
        assert!(
            asked.any(|key| *key == item.key),
            "gets returned {} which was not asked for or out of order (asked {keys:?})",
            item.key
        );
    }
    items
        .into_iter()
        .map(|item| (item.key.clone(), item))
        .collect()
}

/// Sends `request` and requires exactly `expected` back.
fn exchange(client: &mut RawClient, request: &str, expected: &str) {
    let reply = client.request(request.as_bytes(), b"\r\n");
    assert_eq!(
        escape(&reply),
        escape(expected.as_bytes()),
        "reply to {:?}",
        escape(request.as_bytes())
    );
}

/// `set key flags exptime` with `value`, requiring `STORED`.
fn set(client: &mut RawClient, key: &str, flags: u32, exptime: u64, value: &[u8]) {
    let mut request = format!("set {key} {flags} {exptime} {}\r\n", value.len()).into_bytes();
    request.extend_from_slice(value);
    request.extend_from_slice(b"\r\n");
    let reply = client.request(&request, b"\r\n");
    assert_eq!(reply, b"STORED\r\n", "set {key}: {}", escape(&reply));
}

/// The remaining TTL `mg KEY t` reports: `Some(-1)` for no expiry, `None` for a miss.
fn ttl(client: &mut RawClient, key: &str) -> Option<i64> {
    let reply = client.request(format!("mg {key} t\r\n").as_bytes(), b"\r\n");
    let text = String::from_utf8_lossy(&reply).into_owned();
    if text == "EN\r\n" {
        return None;
    }
    let ttl = text
        .strip_prefix("HD ")
        .and_then(|flags| flags.split_whitespace().find_map(|f| f.strip_prefix('t')))
        .and_then(|t| t.parse().ok());
    Some(ttl.unwrap_or_else(|| panic!("mg {key} t: unexpected reply {}", escape(&reply))))
}

/// Polls `condition` every 50 ms until it holds; panics with `what` after `timeout`.
fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Stops `server` with SIGTERM and starts a new process on the same directory.
fn restart(server: &mut Server, data_dir: &TempDir, extra: &[&str]) -> Server {
    server.terminate(STOP_TIMEOUT);
    start_rat_with_data_dir(data_dir, extra)
}

// ---------------------------------------------------------------------------------------
// A graceful restart keeps every key.

/// Keys written by [`restart_keeps_every_key`].
const BULK_KEYS: usize = 100_000;

/// Connections that write, and that read back, in parallel.
const BULK_CONNECTIONS: usize = 4;

/// Relative exptime of the keys that must have expired by the time they are read back:
/// long enough for a debug build on a busy machine to write and read them all back first.
const SHORT_TTL: u64 = 6;

/// Relative exptime of the keys that must outlive the test (ten days).
const LONG_TTL: u64 = 10 * 86_400;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifetime {
    Forever,
    /// [`SHORT_TTL`] seconds, relative.
    Short,
    /// [`LONG_TTL`] seconds, relative.
    LongRelative,
    /// [`LONG_TTL`] seconds from the start of the test, as an absolute Unix time.
    LongAbsolute,
}

/// One key of the bulk test, all derived from its index.
struct BulkItem {
    key: String,
    flags: u32,
    lifetime: Lifetime,
    value: Vec<u8>,
}

impl BulkItem {
    /// A third small values (1-64 bytes), a third text and a third random bytes, those
    /// mostly 65 B to 2 KB (log-uniform) and one in 200 of 16-64 KB.
    fn new(index: usize) -> BulkItem {
        let seed = mix(index as u64);
        let size_roll = mix(seed ^ 1);
        let len = match index {
            // The extremes, for sure.
            1 => 1,
            4 | 5 => 65_536,
            _ if index.is_multiple_of(3) => 1 + (size_roll % 64) as usize,
            _ if size_roll.is_multiple_of(200) => 16_384 + (mix(size_roll) % 49_153) as usize,
            _ => {
                let fraction = (size_roll >> 11) as f64 / (1u64 << 53) as f64;
                (65.0 * (2048.0f64 / 65.0).powf(fraction)) as usize
            }
        };
        let value = match index % 3 {
            1 => text_bytes(len, seed),
            _ => random_bytes(len, seed),
        };
        let lifetime = match mix(seed ^ 2) % 100 {
            0..=2 => Lifetime::Short,
            3..=7 => Lifetime::LongRelative,
            8..=9 => Lifetime::LongAbsolute,
            _ => Lifetime::Forever,
        };
        BulkItem {
            key: format!("bulk:{index}"),
            flags: (mix(seed ^ 3) >> 32) as u32,
            lifetime,
            value,
        }
    }

    fn exptime(&self, test_start: u64) -> u64 {
        match self.lifetime {
            Lifetime::Forever => 0,
            Lifetime::Short => SHORT_TTL,
            Lifetime::LongRelative => LONG_TTL,
            Lifetime::LongAbsolute => test_start + LONG_TTL,
        }
    }
}

/// Writes `indexes` as pipelined batches of `set`s over one connection.
fn write_bulk(port: u16, indexes: &[usize], test_start: u64) {
    let mut client = RawClient::connect(port);
    for batch in indexes.chunks(KEYS_PER_GET) {
        let mut request = Vec::new();
        for &index in batch {
            let item = BulkItem::new(index);
            request.extend_from_slice(
                format!(
                    "set {} {} {} {}\r\n",
                    item.key,
                    item.flags,
                    item.exptime(test_start),
                    item.value.len()
                )
                .as_bytes(),
            );
            request.extend_from_slice(&item.value);
            request.extend_from_slice(b"\r\n");
        }
        client.send(&request);
        for &index in batch {
            let reply = client.read_line();
            assert_eq!(reply, b"STORED\r\n", "set bulk:{index}: {}", escape(&reply));
        }
    }
}

/// Reads `indexes` back with `gets` and checks them: items of a `Lifetime` in `gone`
/// must be missing, all others present with their exact value and flags, and with the
/// CAS in `known_cas` where it has one. Returns the CAS of every item read.
fn check_bulk(
    port: u16,
    indexes: &[usize],
    gone: &[Lifetime],
    known_cas: &HashMap<usize, u64>,
) -> Result<HashMap<usize, u64>, (usize, Vec<String>)> {
    let mut client = RawClient::connect(port);
    let mut cas_seen = HashMap::new();
    let mut mismatches = Vec::new();
    let mut total = 0;
    for batch in indexes.chunks(KEYS_PER_GET) {
        let items: Vec<BulkItem> = batch.iter().map(|&index| BulkItem::new(index)).collect();
        let keys: Vec<String> = items.iter().map(|item| item.key.clone()).collect();
        let mut fetched = gets_many(&mut client, &keys);
        for (&index, item) in batch.iter().zip(&items) {
            let got = fetched.remove(&item.key);
            let problem = match (&got, gone.contains(&item.lifetime)) {
                (None, true) => None,
                (Some(_), true) => Some(format!(
                    "{} ({:?}) should have expired but is still served",
                    item.key, item.lifetime
                )),
                (None, false) => Some(format!("{} ({:?}) is missing", item.key, item.lifetime)),
                (Some(got), false) => {
                    let cas = got.cas.expect("gets shows a CAS");
                    cas_seen.insert(index, cas);
                    if got.flags != item.flags {
                        Some(format!(
                            "{}: flags {} expected, {} got",
                            item.key, item.flags, got.flags
                        ))
                    } else if got.value != item.value {
                        Some(format!(
                            "{}: {}",
                            item.key,
                            difference(&item.value, &got.value)
                        ))
                    } else {
                        match known_cas.get(&index) {
                            Some(&before) if before != cas => Some(format!(
                                "{}: CAS {before} before the restart, {cas} after",
                                item.key
                            )),
                            _ => None,
                        }
                    }
                }
            };
            if let Some(problem) = problem {
                total += 1;
                if mismatches.len() < SHOWN_MISMATCHES {
                    mismatches.push(problem);
                }
            }
        }
    }
    if total == 0 {
        Ok(cas_seen)
    } else {
        Err((total, mismatches))
    }
}

/// [`check_bulk`] over [`BULK_CONNECTIONS`] connections at once; panics on any mismatch.
fn check_bulk_in_parallel(
    what: &str,
    port: u16,
    indexes: &[usize],
    gone: &[Lifetime],
    known_cas: &HashMap<usize, u64>,
) -> HashMap<usize, u64> {
    let share = indexes.len().div_ceil(BULK_CONNECTIONS).max(1);
    let results: Vec<_> = thread::scope(|scope| {
        let workers: Vec<_> = indexes
            .chunks(share)
            .map(|part| scope.spawn(move || check_bulk(port, part, gone, known_cas)))
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("reader thread"))
            .collect()
    });
    let mut cas_seen = HashMap::new();
    let mut total = 0;
    let mut mismatches = Vec::new();
    for result in results {
        match result {
            Ok(cas) => cas_seen.extend(cas),
            Err((count, shown)) => {
                total += count;
                mismatches.extend(shown);
            }
        }
    }
    mismatches.truncate(SHOWN_MISMATCHES);
    assert_no_mismatches(what, total, &mismatches);
    cas_seen
}

#[test]
fn restart_keeps_every_key() {
    let data_dir = TempDir::new("rat-l2-bulk");
    let test_start = unix_now();
    // Enough memory for everything before the restart; far too little after it.
    let mut server = start_rat_with_data_dir(&data_dir, &["-m", "256"]);
    let port = server.port();

    let (short, others): (Vec<usize>, Vec<usize>) =
        (0..BULK_KEYS).partition(|&index| BulkItem::new(index).lifetime == Lifetime::Short);
    thread::scope(|scope| {
        for writer in 0..BULK_CONNECTIONS {
            let mine: Vec<usize> = others
                .iter()
                .copied()
                .filter(|index| index % BULK_CONNECTIONS == writer)
                .collect();
            scope.spawn(move || write_bulk(port, &mine, test_start));
        }
    });
    // The short-lived keys go last, so that they are alive when the server stops.
    let short_started = Instant::now();
    write_bulk(port, &short, test_start);
    let short_written = Instant::now();

    // Before the restart: the short-lived keys and every tenth other key are there, and
    // their CAS is noted. The short-lived ones were written last: they hold the highest CAS.
    let sample: Vec<usize> = others.iter().copied().step_by(10).collect();
    let mut cas_before = check_bulk_in_parallel(
        "short-lived keys before the restart",
        port,
        &short,
        &[],
        &HashMap::new(),
    );
    // A whole-second clock may expire a key up to a second early.
    assert!(
        short_started.elapsed() < Duration::from_secs(SHORT_TTL - 1),
        "writing and reading the short-lived keys took {:?}: too slow to check their expiry",
        short_started.elapsed()
    );
    cas_before.extend(check_bulk_in_parallel(
        "sampled keys before the restart",
        port,
        &sample,
        &[],
        &HashMap::new(),
    ));
    let max_cas_before = cas_before.values().copied().max().expect("some CAS");

    let mut server = restart(&mut server, &data_dir, &["-m", "16"]);
    let port = server.port();
    // Past the short-lived keys' expiry, with a second to spare for clock rounding.
    let expired_at = short_written + Duration::from_secs(SHORT_TTL + 1);
    thread::sleep(expired_at.saturating_duration_since(Instant::now()));

    let all: Vec<usize> = (0..BULK_KEYS).collect();
    let cas_after = check_bulk_in_parallel(
        "after the restart",
        port,
        &all,
        &[Lifetime::Short],
        &cas_before,
    );
    assert_eq!(
        cas_after.len(),
        others.len(),
        "every key but the short-lived ones is served"
    );

    let mut client = RawClient::connect(port);
    let stats = stats_of(&mut client, "stats");
    assert!(
        stat_u64(&stats, "l2_hits") > 0,
        "16 MB of memory cannot hold the data: misses must have been served from disk; \
         stats: {stats:?}"
    );
    // Expiry times are absolute and survive: relative ones count from the original set.
    let elapsed = unix_now() - test_start;
    for index in others
        .iter()
        .copied()
        .filter(|&index| BulkItem::new(index).lifetime != Lifetime::Forever && index % 50 < 5)
    {
        let item = BulkItem::new(index);
        let left = ttl(&mut client, &item.key).unwrap_or_else(|| panic!("{} missing", item.key));
        let longest = LONG_TTL as i64;
        let shortest = longest - elapsed as i64 - 2;
        assert!(
            (shortest..=longest).contains(&left),
            "{} ({:?}): TTL {left}, expected {shortest}..={longest}",
            item.key,
            item.lifetime
        );
    }

    let max_cas = cas_after
        .values()
        .copied()
        .max()
        .unwrap_or(0)
        .max(max_cas_before);
    set(&mut client, "bulk:new", 0, 0, b"after the restart");
    let fresh = gets_many(&mut client, &["bulk:new".to_string()]);
    let fresh_cas = fresh["bulk:new"].cas.expect("gets shows a CAS");
    assert!(
        fresh_cas > max_cas,
        "a set after the restart got CAS {fresh_cas}, not above the largest earlier CAS {max_cas}"
    );
    server.terminate(STOP_TIMEOUT);
}

// ---------------------------------------------------------------------------------------
// A crash keeps what was acknowledged.

/// Keys the crash test cycles through, so that most are overwritten several times.
const CRASH_KEYS: usize = 3_000;

/// The value of the crash test's write number `seq`: 10 to 2009 bytes that start with
/// the number, so a value read back tells which write stored it.
fn crash_value(seq: usize) -> Vec<u8> {
    let mut value = format!("{seq}:").into_bytes();
    let len = 10 + (mix(seq as u64) % 2000) as usize;
    value.extend_from_slice(&text_bytes(len - value.len().min(len), seq as u64));
    value
}

fn crash_key(seq: usize) -> String {
    format!("crash:{}", seq % CRASH_KEYS)
}

#[test]
fn crash_keeps_acknowledged_writes() {
    let data_dir = TempDir::new("rat-l2-crash");
    let mut server = start_rat_with_data_dir(&data_dir, &["--l2-flush-ms=50"]);
    let mut client = server.client();

    // One write at a time, each acknowledged before the next; the flags carry the
    // write's number too.
    let mut acknowledged_at: Vec<Instant> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let seq = acknowledged_at.len();
        set(
            &mut client,
            &crash_key(seq),
            seq as u32,
            0,
            &crash_value(seq),
        );
        acknowledged_at.push(Instant::now());
    }
    // A last burst that is in flight when the process dies.
    let sent = acknowledged_at.len() + 50;
    let mut burst = Vec::new();
    for seq in acknowledged_at.len()..sent {
        let value = crash_value(seq);
        burst.extend_from_slice(
            format!("set {} {seq} 0 {}\r\n", crash_key(seq), value.len()).as_bytes(),
        );
        burst.extend_from_slice(&value);
        burst.extend_from_slice(b"\r\n");
    }
    client.send(&burst);
    let killed_at = Instant::now();
    server.crash();

    // With --l2-flush-ms=50 a write reaches the disk within its time in the queue plus
    // 50 ms. One second leaves a debug build on a busy machine twenty times that.
    let cutoff = killed_at - Duration::from_secs(1);
    let mut must_have: HashMap<String, usize> = HashMap::new();
    for (seq, at) in acknowledged_at.iter().enumerate() {
        if *at <= cutoff {
            must_have.insert(crash_key(seq), seq);
        }
    }
    assert!(
        must_have.len() >= 100,
        "only {} writes acknowledged a second before the kill: too few to test anything",
        must_have.len()
    );

    let server = start_rat_with_data_dir(&data_dir, &[]);
    let mut client = server.client();
    let keys: Vec<String> = (0..CRASH_KEYS).map(crash_key).collect();
    let mut mismatches = Vec::new();
    let mut total = 0;
    let mut present = 0;
    for batch in keys.chunks(KEYS_PER_GET) {
        let mut fetched = gets_many(&mut client, batch);
        for key in batch {
            let got = fetched.remove(key);
            let oldest_allowed = must_have.get(key).copied();
            let problem = match got {
                None => oldest_allowed.map(|seq| {
                    format!("{key}: missing, but write {seq} to it was acknowledged in time")
                }),
                Some(got) => {
                    present += 1;
                    let seq = got.flags as usize;
                    if seq >= sent || crash_key(seq) != *key {
                        Some(format!("{key}: flags {seq} name no write to this key"))
                    } else if got.value != crash_value(seq) {
                        Some(format!(
                            "{key} (write {seq}): {}",
                            difference(&crash_value(seq), &got.value)
                        ))
                    } else if oldest_allowed.is_some_and(|oldest| seq < oldest) {
                        Some(format!(
                            "{key}: holds write {seq}, older than write {} acknowledged in time",
                            oldest_allowed.unwrap_or_default()
                        ))
                    } else {
                        None
                    }
                }
            };
            if let Some(problem) = problem {
                total += 1;
                if mismatches.len() < SHOWN_MISMATCHES {
                    mismatches.push(problem);
                }
            }
        }
    }
    assert_no_mismatches("after the crash", total, &mismatches);
    assert!(present >= must_have.len(), "{present} keys present");
}

// ---------------------------------------------------------------------------------------
// Every kind of change survives a graceful restart.

/// What `gets` and `mg t` show of `keys`: value, flags, CAS and remaining TTL by key.
fn snapshot(client: &mut RawClient, keys: &[&str]) -> HashMap<String, (Fetched, i64)> {
    let keys: Vec<String> = keys.iter().map(|key| key.to_string()).collect();
    let mut fetched = gets_many(client, &keys);
    keys.iter()
        .filter_map(|key| {
            let item = fetched.remove(key)?;
            let left = ttl(client, key).unwrap_or_else(|| panic!("{key}: gets hit, mg missed"));
            Some((key.clone(), (item, left)))
        })
        .collect()
}

#[test]
fn deletes_touches_flush_and_incr_survive_restart() {
    let data_dir = TempDir::new("rat-l2-changes");
    let mut server = start_rat_with_data_dir(&data_dir, &[]);
    let mut client = server.client();

    for n in 0..20 {
        set(
            &mut client,
            &format!("before_flush:{n}"),
            n,
            0,
            b"flushed away",
        );
    }
    set(&mut client, "overwritten", 1, 0, b"first");
    exchange(&mut client, "flush_all\r\n", "OK\r\n");
    // Everything from here on was stored after the flush, most of it within the same second.
    set(&mut client, "overwritten", 2, 0, b"second");
    set(&mut client, "plain", 11, 0, b"hello");
    set(&mut client, "deleted", 12, 0, b"bye");
    exchange(&mut client, "delete deleted\r\n", "DELETED\r\n");
    set(&mut client, "touched", 13, 0, b"t");
    exchange(&mut client, "touch touched 1000\r\n", "TOUCHED\r\n");
    set(&mut client, "untouched_ttl", 14, 500, b"u");
    exchange(&mut client, "touch untouched_ttl 0\r\n", "TOUCHED\r\n");
    set(&mut client, "counter", 15, 0, b"10");
    exchange(&mut client, "incr counter 32\r\n", "42\r\n");
    exchange(&mut client, "decr counter 2\r\n", "40\r\n");
    set(&mut client, "text", 16, 0, b"mid");
    exchange(&mut client, "append text 0 0 4\r\n_end\r\n", "STORED\r\n");
    exchange(
        &mut client,
        "prepend text 0 0 6\r\nstart_\r\n",
        "STORED\r\n",
    );
    set(&mut client, "swapped", 17, 0, b"original");
    let old_cas = gets_many(&mut client, &["swapped".to_string()])["swapped"]
        .cas
        .expect("gets shows a CAS");
    exchange(
        &mut client,
        &format!("cas swapped 18 0 7 {old_cas}\r\nupdated\r\n"),
        "STORED\r\n",
    );
    exchange(
        &mut client,
        &format!("cas swapped 19 0 5 {old_cas}\r\nstale\r\n"),
        "EXISTS\r\n",
    );
    exchange(&mut client, "add plain 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
    exchange(
        &mut client,
        "replace missing 0 0 1\r\nx\r\n",
        "NOT_STORED\r\n",
    );

    let flushed: Vec<String> = (0..20).map(|n| format!("before_flush:{n}")).collect();
    let mut keys: Vec<&str> = vec![
        "overwritten",
        "plain",
        "deleted",
        "touched",
        "untouched_ttl",
        "counter",
        "text",
        "swapped",
        "missing",
    ];
    keys.extend(flushed.iter().map(String::as_str));
    let expected: HashMap<&str, (u32, &[u8])> = HashMap::from([
        ("overwritten", (2, &b"second"[..])),
        ("plain", (11, b"hello")),
        ("touched", (13, b"t")),
        ("untouched_ttl", (14, b"u")),
        ("counter", (15, b"40")),
        ("text", (16, b"start_mid_end")),
        ("swapped", (18, b"updated")),
    ]);
    let check = |state: &HashMap<String, (Fetched, i64)>, when: &str| {
        for key in &keys {
            match (state.get(*key), expected.get(key)) {
                (None, None) => {}
                (Some((got, _)), None) => panic!(
                    "{when}: {key} should be gone but holds {:?} (flags {})",
                    escape(&got.value),
                    got.flags
                ),
                (None, Some(_)) => panic!("{when}: {key} is missing"),
                (Some((got, _)), Some((flags, value))) => assert!(
                    got.flags == *flags && got.value == *value,
                    "{when}: {key} holds {:?} flags {}, expected {:?} flags {flags}",
                    escape(&got.value),
                    got.flags,
                    escape(value)
                ),
            }
        }
    };
    let before = snapshot(&mut client, &keys);
    check(&before, "before the restart");
    let touched_at = Instant::now();

    let server = restart(&mut server, &data_dir, &[]);
    let mut client = server.client();
    let after = snapshot(&mut client, &keys);
    check(&after, "after the restart");
    for (key, (item, left)) in &after {
        let (item_before, left_before) = &before[key];
        assert_eq!(
            item.cas, item_before.cas,
            "{key}: CAS before and after the restart"
        );
        match key.as_str() {
            "touched" => {
                let passed = touched_at.elapsed().as_secs() as i64;
                assert!(
                    (left_before - passed - 2..=*left_before).contains(left),
                    "touched: TTL {left} after the restart, {left_before} before it, \
                     {passed} s between"
                );
            }
            _ => assert_eq!(*left, -1, "{key}: no expiry, but mg t shows {left}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// One process per directory.

#[test]
fn second_instance_on_the_same_dir_is_refused() {
    let data_dir = TempDir::new("rat-l2-shared");
    let first = start_rat_with_data_dir(&data_dir, &[]);
    let mut client = first.client();
    set(&mut client, "owner", 1, 0, b"first instance");

    let port = common::free_port().to_string();
    let second = run_to_exit(
        rat_binary(),
        &[
            "-p",
            &port,
            "-l",
            "127.0.0.1",
            "-U",
            "0",
            "--data-dir",
            data_dir.arg(),
        ],
        Duration::from_secs(20),
    );
    let output = format!("{}{}", second.stdout, second.stderr);
    assert!(
        second.status.code().is_some_and(|code| code != 0),
        "second instance: exit status {}, output:\n{output}",
        second.status
    );
    assert!(
        output.contains(data_dir.arg()) && output.contains("in use"),
        "the refusal names the directory and says it is in use:\n{output}"
    );

    // The first one goes on, and its data is whole.
    set(&mut client, "after", 2, 0, b"still serving");
    let fetched = gets_many(&mut client, &["owner".to_string(), "after".to_string()]);
    assert_eq!(fetched["owner"].value, b"first instance");
    assert_eq!(fetched["after"].value, b"still serving");
    let stats = stats_of(&mut client, "stats");
    assert_eq!(stat_u64(&stats, "l2_fault"), 0, "stats: {stats:?}");
}

// ---------------------------------------------------------------------------------------
// --clear-on-startup.

#[test]
fn clear_on_startup_empties_the_store() {
    let data_dir = TempDir::new("rat-l2-clear");
    let mut server = start_rat_with_data_dir(&data_dir, &[]);
    let mut client = server.client();
    let keys: Vec<String> = (0..500).map(|n| format!("clear:{n}")).collect();
    for (n, key) in keys.iter().enumerate() {
        set(&mut client, key, n as u32, 0, &text_bytes(n, n as u64));
    }

    // A plain restart keeps them: what follows is the option's doing.
    let mut server = restart(&mut server, &data_dir, &[]);
    let mut client = server.client();
    assert_eq!(
        gets_many(&mut client, &keys[..KEYS_PER_GET]).len(),
        KEYS_PER_GET
    );

    let mut server = restart(&mut server, &data_dir, &["--clear-on-startup"]);
    let mut client = server.client();
    let stats = stats_of(&mut client, "stats");
    assert_eq!(stat_u64(&stats, "l2_items"), 0, "stats: {stats:?}");
    for batch in keys.chunks(KEYS_PER_GET) {
        let fetched = gets_many(&mut client, batch);
        assert!(
            fetched.is_empty(),
            "served after --clear-on-startup: {:?}",
            fetched.keys().collect::<Vec<_>>()
        );
    }

    // It starts clean and works: new data is kept, the old stays gone.
    set(&mut client, "clear:new", 7, 0, b"after clearing");
    let server = restart(&mut server, &data_dir, &[]);
    let mut client = server.client();
    let fetched = gets_many(&mut client, &keys[..KEYS_PER_GET]);
    assert!(fetched.is_empty(), "cleared keys came back: {fetched:?}");
    let fetched = gets_many(&mut client, &["clear:new".to_string()]);
    assert_eq!(
        fetched.get("clear:new").map(|item| escape(&item.value)),
        Some("after clearing".to_string())
    );
    let stats = stats_of(&mut client, "stats");
    assert_eq!(stat_u64(&stats, "l2_items"), 1, "stats: {stats:?}");
}

/// A second process started with `--clear-on-startup` on a directory in use must be
/// refused like any other, before it touches anything: clearing first would pull the
/// files from under the running process, whose acknowledged writes would then vanish.
#[test]
fn second_instance_with_clear_on_startup_clears_nothing() {
    let data_dir = TempDir::new("rat-l2-shared-clear");
    let mut first = start_rat_with_data_dir(&data_dir, &[]);
    let mut client = first.client();
    set(&mut client, "owner", 1, 0, b"first instance");

    match launch_rat(&["--data-dir", data_dir.arg(), "--clear-on-startup"]) {
        Launch::Serving(second) => panic!(
            "a second instance with --clear-on-startup started on a directory in use; \
             output:\n{}",
            second.output()
        ),
        Launch::Exited { status, output } => {
            assert!(
                status.code().is_some_and(|code| code != 0),
                "exit status {status}, output:\n{output}"
            );
            assert!(
                output.contains(data_dir.arg()) && output.contains("in use"),
                "the refusal names the directory and says it is in use:\n{output}"
            );
        }
    }

    let server = restart(&mut first, &data_dir, &[]);
    let mut client = server.client();
    let fetched = gets_many(&mut client, &["owner".to_string()]);
    assert_eq!(
        fetched.get("owner").map(|item| escape(&item.value)),
        Some("first instance".to_string()),
        "the first instance's data after the refused second start"
    );
}

// ---------------------------------------------------------------------------------------
// A damaged directory.

/// Copies the files under `from` to `to`, which is created.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("list {}: {e}", from.display())) {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

/// The non-empty files under `dir`.
fn files_with_data(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display())) {
        let entry = entry.expect("directory entry");
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            found.extend(files_with_data(&entry.path()));
        } else if meta.len() > 0 {
            found.push(entry.path());
        }
    }
    found
}

/// Ways to damage a copy of a data directory.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Every non-empty file under `slabs/` overwritten with random bytes of its length.
    SlabsGarbage,
    /// Every non-empty file under `slabs/` cut to 100 bytes.
    SlabsTruncated,
    /// Every non-empty file under `metadata/` overwritten with random bytes.
    MetadataGarbage,
    /// Every non-empty file under `metadata/` cut to 10 bytes.
    MetadataTruncated,
    /// Bytes flipped all through the largest slab file only.
    LargestSlabFlipped,
    /// Bytes flipped in the last quarter of the largest slab file only: records that
    /// are not read at start-up, so the server may start and meet them later.
    LargestSlabTailFlipped,
    /// Every non-empty file in the directory itself (not below) overwritten.
    TopLevelGarbage,
}

impl Damage {
    const ALL: [Damage; 7] = [
        Damage::SlabsGarbage,
        Damage::SlabsTruncated,
        Damage::MetadataGarbage,
        Damage::MetadataTruncated,
        Damage::LargestSlabFlipped,
        Damage::LargestSlabTailFlipped,
        Damage::TopLevelGarbage,
    ];

    fn apply(self, dir: &Path) {
        let under = |name: &str| files_with_data(&dir.join(name));
        let overwrite = |path: &Path| {
            let len = fs::metadata(path).expect("metadata").len() as usize;
            fs::write(path, random_bytes(len, len as u64)).expect("overwrite");
        };
        let truncate = |path: &Path, len: u64| {
            fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|file| file.set_len(len))
                .expect("truncate");
        };
        let files = match self {
            Damage::SlabsGarbage
            | Damage::SlabsTruncated
            | Damage::LargestSlabFlipped
            | Damage::LargestSlabTailFlipped => under("slabs"),
            Damage::MetadataGarbage | Damage::MetadataTruncated => under("metadata"),
            Damage::TopLevelGarbage => files_with_data(dir)
                .into_iter()
                .filter(|path| path.parent() == Some(dir))
                .collect(),
        };
        assert!(!files.is_empty(), "{self:?}: no files to damage in {dir:?}");
        match self {
            Damage::SlabsGarbage | Damage::MetadataGarbage | Damage::TopLevelGarbage => {
                files.iter().for_each(|path| overwrite(path))
            }
            Damage::SlabsTruncated => files.iter().for_each(|path| truncate(path, 100)),
            Damage::MetadataTruncated => files.iter().for_each(|path| truncate(path, 10)),
            Damage::LargestSlabFlipped | Damage::LargestSlabTailFlipped => {
                let largest = files
                    .iter()
                    .max_by_key(|path| fs::metadata(path).map_or(0, |meta| meta.len()))
                    .expect("a slab file");
                let mut bytes = fs::read(largest).expect("read slab");
                let from = match self {
                    Damage::LargestSlabTailFlipped => bytes.len() * 3 / 4,
                    _ => 100,
                };
                for at in (from..bytes.len()).step_by(997) {
                    bytes[at] ^= 0x5a;
                }
                fs::write(largest, bytes).expect("write slab");
            }
        }
    }
}

/// Keys of the damaged-directory test and their values.
fn damage_item(n: usize) -> (String, Vec<u8>) {
    let value = if n.is_multiple_of(2) {
        text_bytes(1 + n * 7 % 3000, n as u64)
    } else {
        random_bytes(1 + n * 13 % 3000, n as u64)
    };
    (format!("damage:{n}"), value)
}

const DAMAGE_KEYS: usize = 2_000;

#[test]
fn corrupted_dir_is_reported() {
    let pristine = TempDir::new("rat-l2-pristine");
    let mut server = start_rat_with_data_dir(&pristine, &[]);
    let mut client = server.client();
    for n in 0..DAMAGE_KEYS {
        let (key, value) = damage_item(n);
        set(&mut client, &key, n as u32, 0, &value);
    }
    server.terminate(STOP_TIMEOUT);
    let keys: Vec<String> = (0..DAMAGE_KEYS).map(|n| damage_item(n).0).collect();

    for damage in Damage::ALL {
        let data_dir = TempDir::new("rat-l2-damaged");
        copy_tree(pristine.path(), data_dir.path());
        damage.apply(data_dir.path());

        match launch_rat(&["--data-dir", data_dir.arg()]) {
            Launch::Exited { status, output } => {
                assert!(
                    status.code().is_some_and(|code| code != 0),
                    "{damage:?}: the server must refuse with an exit code, not {status}; \
                     output:\n{output}"
                );
                assert!(
                    output.contains(data_dir.arg()) && output.contains("--clear-on-startup"),
                    "{damage:?}: the refusal names the directory and suggests \
                     --clear-on-startup; output:\n{output}"
                );
                assert!(
                    !output.contains("panicked"),
                    "{damage:?}: a panic instead of a message:\n{output}"
                );
            }
            Launch::Serving(mut server) => {
                // Serving is fine as long as nothing it serves is wrong.
                let mut client = server.client();
                for batch in keys.chunks(KEYS_PER_GET) {
                    for (key, item) in gets_many(&mut client, batch) {
                        let n: usize = key["damage:".len()..].parse().expect("key number");
                        let (_, value) = damage_item(n);
                        assert!(
                            item.flags == n as u32 && item.value == value,
                            "{damage:?}: {key} served wrong: flags {} (expected {n}), {}",
                            item.flags,
                            difference(&value, &item.value)
                        );
                    }
                }
                set(&mut client, "damage:new", 0, 0, b"still works");
                let stats = stats_of(&mut client, "stats");
                drop(client);
                server.signal(libc::SIGTERM);
                let status = server.wait_exit(STOP_TIMEOUT);
                assert!(
                    status.is_some_and(|status| status.signal().is_none()),
                    "{damage:?}: after serving a damaged directory (stats {stats:?}), \
                     SIGTERM ended in {status:?}; output:\n{}",
                    server.output()
                );
            }
        }

        let mut server = start_rat_with_data_dir(&data_dir, &["--clear-on-startup"]);
        let mut client = server.client();
        let stats = stats_of(&mut client, "stats");
        assert_eq!(stat_u64(&stats, "l2_items"), 0, "{damage:?}: {stats:?}");
        assert_eq!(stat_u64(&stats, "l2_fault"), 0, "{damage:?}: {stats:?}");
        assert!(
            gets_many(&mut client, &keys[..KEYS_PER_GET]).is_empty(),
            "{damage:?}: data after --clear-on-startup"
        );
        set(&mut client, "damage:fresh", 3, 0, b"clean start");
        let fetched = gets_many(&mut client, &["damage:fresh".to_string()]);
        assert_eq!(fetched["damage:fresh"].value, b"clean start", "{damage:?}");
        server.terminate(STOP_TIMEOUT);
    }
}

// ---------------------------------------------------------------------------------------
// Stats.

#[test]
fn stats_report_the_tier() {
    let data_dir = TempDir::new("rat-l2-stats");
    let server = start_rat_with_data_dir(&data_dir, &[]);
    let mut client = server.client();
    let before = stats_of(&mut client, "stats");
    for name in [
        "l2_items",
        "l2_writes",
        "l2_batches",
        "l2_syncs",
        "l2_compressed",
    ] {
        assert_eq!(stat_u64(&before, name), 0, "{name} of an empty tier");
    }

    const WRITES: u64 = 300;
    for n in 0..WRITES {
        // Text of at least 256 bytes: stored compressed.
        set(
            &mut client,
            &format!("stats:{n}"),
            0,
            0,
            &text_bytes(300 + n as usize, n),
        );
    }
    let mut stats = HashMap::new();
    wait_until(
        Duration::from_secs(10),
        "the write queue drains and everything is fsynced",
        || {
            stats = stats_of(&mut client, "stats");
            stat_u64(&stats, "l2_queue_depth") == 0
                && stat_u64(&stats, "l2_items") == WRITES
                && stat_u64(&stats, "l2_syncs") > 0
        },
    );
    assert!(stat_u64(&stats, "l2_writes") >= WRITES, "{stats:?}");
    assert!(stat_u64(&stats, "l2_batches") >= 1, "{stats:?}");
    assert!(stat_u64(&stats, "l2_bytes") > 0, "{stats:?}");
    assert!(stat_u64(&stats, "l2_disk_bytes") > 0, "{stats:?}");
    assert!(stat_u64(&stats, "l2_compressed") > 0, "{stats:?}");
    assert_eq!(stat_u64(&stats, "l2_queue_bytes"), 0, "{stats:?}");
    assert_eq!(stat_u64(&stats, "l2_fault"), 0, "{stats:?}");
    assert_eq!(stat_u64(&stats, "l2_errors"), 0, "{stats:?}");
    assert_eq!(stat_u64(&stats, "l2_dropped_writes"), 0, "{stats:?}");

    let settings = stats_of(&mut client, "stats settings");
    assert_eq!(
        settings.get("l2_data_dir").map(String::as_str),
        Some(data_dir.arg()),
        "stats settings: {settings:?}"
    );

    let plain = start_rat(&[]);
    let mut client = plain.client();
    for command in ["stats", "stats settings"] {
        let stats = stats_of(&mut client, command);
        assert!(!stats.is_empty(), "{command} shows something");
        let tier: Vec<&String> = stats
            .keys()
            .filter(|name| name.starts_with("l2_"))
            .collect();
        assert!(
            tier.is_empty(),
            "{command} without --data-dir shows {tier:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A client library.

#[test]
fn library_client_sees_its_data_after_a_restart() {
    let data_dir = TempDir::new("rat-l2-library");
    let mut server = start_rat_with_data_dir(&data_dir, &[]);
    let url = |server: &Server| format!("memcache://127.0.0.1:{}?protocol=ascii", server.port());
    let connect = |server: &Server| {
        memcache::Client::builder()
            .add_server(url(server))
            .and_then(|builder| {
                builder
                    .with_read_timeout(Duration::from_secs(10))
                    .with_write_timeout(Duration::from_secs(10))
                    .build()
            })
            .unwrap_or_else(|e| panic!("connect to {}: {e}", url(server)))
    };
    let client = connect(&server);
    let big = "persisted ".repeat(10_000);
    client.set("library:small", "value", 0).expect("set small");
    client.set("library:big", big.as_str(), 0).expect("set big");
    client.set("library:number", 41u64, 0).expect("set number");
    assert_eq!(client.increment("library:number", 1).expect("incr"), 42);
    client.set("library:gone", "x", 0).expect("set gone");
    assert!(client.delete("library:gone").expect("delete"));
    drop(client);

    let server = restart(&mut server, &data_dir, &[]);
    let client = connect(&server);
    let small: Option<String> = client.get("library:small").expect("get small");
    assert_eq!(small.as_deref(), Some("value"));
    let got: Option<String> = client.get("library:big").expect("get big");
    assert!(
        got.as_deref() == Some(big.as_str()),
        "library:big after the restart"
    );
    let number: Option<u64> = client.get("library:number").expect("get number");
    assert_eq!(number, Some(42));
    let gone: Option<String> = client.get("library:gone").expect("get gone");
    assert_eq!(gone, None);
}
