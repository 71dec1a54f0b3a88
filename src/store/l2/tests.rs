//! The store with its persistent tier: what survives a reopen, what never comes back,
//! and what happens when the disk misbehaves.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{unix_now, TierConfig, TierError, FAULT_FILE};
use crate::store::{DeleteOutcome, Expiry, Store, StoreConfig, StoreMode, StoreOutcome};

/// A data directory removed when the test ends.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> DataDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rat-l2-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        DataDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn l1(max_memory: usize) -> StoreConfig {
    StoreConfig {
        max_memory,
        stripes: 4,
        ..StoreConfig::default()
    }
}

fn l2(dir: &DataDir) -> TierConfig {
    TierConfig {
        flush_interval: Duration::from_millis(20),
        cache_bytes: 4 * 1024 * 1024,
        // Test machines' disks may be nearly full; these tests write little.
        min_free_disk: 0,
        ..TierConfig::new(dir.path())
    }
}

fn open(dir: &DataDir) -> Store {
    Store::open(l1(64 << 20), l2(dir)).expect("the tier opens")
}

fn set(store: &Store, key: &[u8], flags: u32, value: &[u8]) -> u64 {
    let (outcome, cas) = store.store_with(
        StoreMode::Set,
        key,
        flags,
        Expiry::NEVER,
        value,
        Default::default(),
    );
    assert_eq!(
        outcome,
        StoreOutcome::Stored,
        "set {}",
        String::from_utf8_lossy(key)
    );
    cas
}

/// (value, flags, cas) of a visible item.
fn fetch(store: &Store, key: &[u8]) -> Option<(Vec<u8>, u32, u64)> {
    store.get(key, |item| (item.value.to_vec(), item.flags, item.cas))
}

/// Waits until the writer has applied everything queued.
fn settle(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.l2_stats().expect("a tier").queue_depth > 0 {
        assert!(Instant::now() < deadline, "the writer never caught up");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A value of `len` bytes derived from `seed`: text-like when `compressible`.
fn value(seed: u64, len: usize, compressible: bool) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|i| {
            if compressible {
                b"the quick brown fox "[(i + seed as usize) % 20]
            } else {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            }
        })
        .collect()
}

#[test]
fn items_come_back_after_a_reopen_with_flags_and_cas() {
    let dir = DataDir::new();
    let mut written = Vec::new();
    {
        let store = open(&dir);
        for i in 0..500u64 {
            let key = format!("key:{i}").into_bytes();
            let data = value(i, (i as usize * 37) % 5000, i % 2 == 0);
            let cas = set(&store, &key, i as u32 * 7, &data);
            written.push((key, data, i as u32 * 7, cas));
        }
        store.close();
        let stats = store.l2_stats().unwrap();
        assert_eq!(stats.items, 500);
        assert!(stats.compressed > 0, "{stats:?}");
    }
    let store = open(&dir);
    let mut max_cas = 0;
    for (key, data, flags, cas) in &written {
        let found = fetch(&store, key);
        assert_eq!(
            found.as_ref(),
            Some(&(data.clone(), *flags, *cas)),
            "{}",
            String::from_utf8_lossy(key)
        );
        max_cas = max_cas.max(*cas);
    }
    assert!(
        set(&store, b"new", 0, b"v") > max_cas,
        "CAS values stay unique across a reopen"
    );
}

#[test]
fn deleted_flushed_and_changed_items_stay_as_they_were_left() {
    let dir = DataDir::new();
    {
        let store = open(&dir);
        for key in [&b"a"[..], b"b", b"c", b"n", b"t"] {
            set(&store, key, 1, b"10");
        }
        assert!(store.delete(b"a"));
        assert_eq!(store.incr_decr(b"n", true, 5), Ok(15));
        assert_eq!(
            store.store(StoreMode::Append, b"c", 0, Expiry::NEVER, b"!"),
            StoreOutcome::Stored
        );
        assert!(store.touch(b"t", Expiry::from_memcached(1000)));
        store.close();
    }
    {
        let store = open(&dir);
        assert_eq!(fetch(&store, b"a"), None);
        assert_eq!(fetch(&store, b"n").unwrap().0, b"15");
        assert_eq!(fetch(&store, b"c").unwrap().0, b"10!");
        let ttl = store.peek(b"t", |entry| entry.ttl()).unwrap();
        assert!(matches!(ttl, Some(999..=1000)), "{ttl:?}");
        assert!(store.flush_all(0));
        set(&store, b"after", 2, b"kept");
        store.close();
    }
    let store = open(&dir);
    for key in [&b"b"[..], b"c", b"n", b"t"] {
        assert_eq!(
            fetch(&store, key),
            None,
            "{} was flushed",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(fetch(&store, b"after").unwrap().0, b"kept");
}

#[test]
fn expired_items_are_not_served_after_a_reopen() {
    let dir = DataDir::new();
    {
        let store = open(&dir);
        let soon = Expiry::from_memcached(i64::from(unix_now()) + 1);
        store.store(StoreMode::Set, b"short", 0, soon, b"x");
        set(&store, b"long", 0, b"y");
        store.close();
    }
    thread::sleep(Duration::from_millis(2100));
    let store = open(&dir);
    assert_eq!(fetch(&store, b"short"), None);
    assert_eq!(fetch(&store, b"long").unwrap().0, b"y");
}

#[test]
fn items_evicted_from_memory_are_read_back_from_disk() {
    let dir = DataDir::new();
    // Far less memory than the data: most reads have to come from L2.
    let store = Store::open(l1(256 * 1024), l2(&dir)).unwrap();
    let items: Vec<(Vec<u8>, Vec<u8>)> = (0..2000u64)
        .map(|i| (format!("k{i}").into_bytes(), value(i, 1000, i % 3 == 0)))
        .collect();
    for (key, data) in &items {
        set(&store, key, 0, data);
    }
    settle(&store);
    for (key, data) in &items {
        assert_eq!(fetch(&store, key).map(|found| found.0).as_ref(), Some(data));
    }
    let stats = store.l2_stats().unwrap();
    assert!(stats.hits >= 1500, "{stats:?}");
    assert!(store.stats().evictions > 0);
    // Conditional commands see items that only L2 holds.
    let cold = &items[0].0;
    assert_eq!(
        store.store(StoreMode::Add, cold, 0, Expiry::NEVER, b"x"),
        StoreOutcome::NotStored
    );
    assert_eq!(store.delete_if_cas(&items[1].0, 0), DeleteOutcome::Deleted);
}

/// Each thread owns its keys and checks, after every change, that a read sees exactly
/// that change: with memory far too small, reads keep going to L2, and none may bring
/// back a value that was overwritten or deleted.
#[test]
fn a_read_never_brings_back_an_older_version() {
    let dir = DataDir::new();
    let store = Arc::new(Store::open(l1(64 * 1024), l2(&dir)).unwrap());
    let first_version = |thread_id: u64, slot: usize| {
        let mut data = format!("{thread_id}:{slot}:first:").into_bytes();
        data.resize(600, b'.');
        data
    };
    // Every key is on disk before the changes start, so that reads go there.
    for thread_id in 0..4 {
        for slot in 0..200 {
            let key = format!("t{thread_id}:{slot}").into_bytes();
            set(&store, &key, 0, &first_version(thread_id, slot));
        }
    }
    settle(&store);
    let threads: Vec<_> = (0..4u64)
        .map(|thread_id| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let mut latest: Vec<Option<Vec<u8>>> = (0..200)
                    .map(|slot| Some(first_version(thread_id, slot)))
                    .collect();
                let mut state = thread_id + 1;
                for step in 0..3000u64 {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let slot = (state >> 33) as usize % latest.len();
                    let key = format!("t{thread_id}:{slot}").into_bytes();
                    if (state >> 20) % 4 == 0 {
                        store.delete(&key);
                        latest[slot] = None;
                    } else {
                        let mut data = format!("{step}:").into_bytes();
                        data.resize(600, b'.');
                        set(&store, &key, 0, &data);
                        latest[slot] = Some(data);
                    }
                    let probe = (state >> 40) as usize % latest.len();
                    let probe_key = format!("t{thread_id}:{probe}").into_bytes();
                    if let Some((found, _, _)) = fetch(&store, &probe_key) {
                        let expected = latest[probe].as_deref().map(String::from_utf8_lossy);
                        assert_eq!(
                            Some(String::from_utf8_lossy(&found)),
                            expected,
                            "thread {thread_id} step {step}: stale read of slot {probe}"
                        );
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = store.l2_stats().unwrap();
    assert!(
        stats.hits > 0,
        "reads went to L2: {stats:?} {:?}",
        store.stats()
    );
}

#[test]
fn the_disk_limit_drops_the_oldest_writes() {
    let dir = DataDir::new();
    let config = TierConfig {
        max_disk_bytes: 200 * 1024,
        compress_from: None,
        ..l2(&dir)
    };
    {
        let store = Store::open(l1(64 << 20), config.clone()).unwrap();
        for i in 0..1000u64 {
            set(
                &store,
                format!("k{i:04}").as_bytes(),
                0,
                &value(i, 1000, false),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = store.l2_stats().unwrap();
            if stats.bytes <= config.max_disk_bytes && stats.queue_depth == 0 {
                assert!((800..=850).contains(&stats.evictions), "{stats:?}");
                break;
            }
            assert!(Instant::now() < deadline, "still over the limit: {stats:?}");
            thread::sleep(Duration::from_millis(50));
        }
        store.close();
    }
    let store = Store::open(l1(64 << 20), config).unwrap();
    let present: Vec<u64> = (0..1000u64)
        .filter(|i| fetch(&store, format!("k{i:04}").as_bytes()).is_some())
        .collect();
    // About 170 items of 1 KB fit in the 180 KB the tier is brought down to, and
    // they are the newest ones.
    assert!((150..=190).contains(&present.len()), "{}", present.len());
    assert_eq!(
        present,
        (1000 - present.len() as u64..1000).collect::<Vec<_>>()
    );
    assert_eq!(fetch(&store, b"k0999").unwrap().0, value(999, 1000, false));
}

#[test]
fn warm_up_loads_the_newest_items_until_memory_is_full() {
    let dir = DataDir::new();
    {
        let store = open(&dir);
        for i in 0..3000u64 {
            set(
                &store,
                format!("w{i:05}").as_bytes(),
                0,
                &value(i, 500, false),
            );
        }
        store.close();
    }
    let store = Store::open(l1(512 * 1024), l2(&dir)).unwrap();
    let loaded = store.warm_up(&AtomicBool::new(false));
    assert!((500..3000).contains(&loaded), "{loaded}");
    assert_eq!(store.stats().evictions, 0, "warm-up never evicts");
    let reads_before = store.l2_stats().unwrap().reads;
    assert!(fetch(&store, b"w02999").is_some());
    assert_eq!(
        store.l2_stats().unwrap().reads,
        reads_before,
        "the newest item was in memory"
    );
}

#[test]
fn a_directory_in_use_is_refused() {
    let dir = DataDir::new();
    let _first = open(&dir);
    match Store::open(l1(1 << 20), l2(&dir)) {
        Err(error @ TierError::InUse { .. }) => {
            assert!(error
                .to_string()
                .contains(&dir.path().display().to_string()));
        }
        Err(other) => panic!("expected InUse, got {other}"),
        Ok(_) => panic!("a second store opened the same directory"),
    }
}

#[test]
fn clear_on_startup_and_a_fault_file_discard_the_contents() {
    let dir = DataDir::new();
    {
        let store = open(&dir);
        set(&store, b"k", 0, b"v");
        store.close();
    }
    {
        let store = Store::open(
            l1(1 << 20),
            TierConfig {
                clear_on_startup: true,
                ..l2(&dir)
            },
        )
        .unwrap();
        assert_eq!(fetch(&store, b"k"), None);
        set(&store, b"k2", 0, b"v2");
        store.close();
    }
    std::fs::write(dir.path().join(FAULT_FILE), "missed writes\n").unwrap();
    let store = open(&dir);
    assert_eq!(fetch(&store, b"k2"), None);
    assert!(!dir.path().join(FAULT_FILE).exists());
}

#[test]
fn a_corrupt_record_is_a_fault_not_a_wrong_answer() {
    let dir = DataDir::new();
    {
        let store = open(&dir);
        set(&store, b"good", 0, b"value");
        store.close();
    }
    {
        let db = super::open_db(&l2(&dir)).unwrap();
        db.insert(b"kbad", &b"\x01\x00garbage"[..]).unwrap();
        db.flush().unwrap();
    }
    let store = open(&dir);
    assert_eq!(fetch(&store, b"bad"), None);
    assert!(store.l2_stats().unwrap().faulted);
    assert!(store.l2_fault().unwrap().contains("corrupt record"));
    // L1 goes on serving and taking writes.
    set(&store, b"fresh", 0, b"x");
    assert_eq!(fetch(&store, b"fresh").unwrap().0, b"x");
    store.close();
    assert!(dir.path().join(FAULT_FILE).exists());
    drop(store);
    let store = open(&dir);
    assert_eq!(
        fetch(&store, b"good"),
        None,
        "a faulted directory starts empty"
    );
}

#[test]
fn sync_writes_are_durable_when_the_command_returns() {
    let dir = DataDir::new();
    let store = Store::open(
        l1(1 << 20),
        TierConfig {
            sync_writes: true,
            flush_interval: Duration::from_secs(60),
            ..l2(&dir)
        },
    )
    .unwrap();
    set(&store, b"k", 0, b"v");
    let stats = store.l2_stats().unwrap();
    assert_eq!((stats.writes, stats.queue_depth), (1, 0));
    assert!(stats.flushes >= 1, "{stats:?}");
}

#[test]
fn a_full_queue_makes_writers_wait_and_loses_nothing() {
    let dir = DataDir::new();
    let store = Arc::new(
        Store::open(
            l1(64 << 20),
            TierConfig {
                queue_max_bytes: 16 * 1024,
                ..l2(&dir)
            },
        )
        .unwrap(),
    );
    let writers: Vec<_> = (0..2u64)
        .map(|thread_id| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for i in 0..500u64 {
                    let key = format!("q{thread_id}:{i}").into_bytes();
                    set(&store, &key, 0, &value(i, 2000, false));
                    let queued = store.l2_stats().unwrap().queue_bytes;
                    // Each writer may take the last room at once: one message each
                    // past the bound, never more.
                    assert!(queued <= 16 * 1024 + 2 * 2100, "{queued} bytes queued");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    store.close();
    let stats = store.l2_stats().unwrap();
    assert!(stats.queue_waits > 0, "{stats:?}");
    assert_eq!((stats.items, stats.dropped_writes), (1000, 0), "{stats:?}");
}

#[test]
fn a_nearly_full_disk_stops_writing_but_not_serving() {
    let dir = DataDir::new();
    let store = Store::open(
        l1(64 << 20),
        TierConfig {
            // No disk has this much free: the writer's first check trips.
            min_free_disk: u64::MAX,
            ..l2(&dir)
        },
    )
    .unwrap();
    set(&store, b"before", 0, b"1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !store.l2_stats().unwrap().faulted {
        assert!(Instant::now() < deadline, "the disk check never ran");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(store.l2_fault().unwrap().contains("free on the disk"));
    set(&store, b"after", 0, b"2");
    assert_eq!(fetch(&store, b"after").unwrap().0, b"2");
    assert_eq!(fetch(&store, b"before").unwrap().0, b"1");
    settle(&store);
    assert!(store.l2_stats().unwrap().dropped_writes >= 1);
    assert!(dir.path().join(FAULT_FILE).exists());
}

#[test]
fn misses_during_warm_up_find_their_items() {
    let dir = DataDir::new();
    {
        let store = open(&dir);
        for i in 0..3000u64 {
            set(&store, format!("m{i}").as_bytes(), 0, &value(i, 200, false));
        }
        store.close();
    }
    let store = Arc::new(open(&dir));
    let warming = {
        let store = Arc::clone(&store);
        thread::spawn(move || store.warm_up(&AtomicBool::new(false)))
    };
    // Oldest first, against warm-up's newest first: the two meet in the middle.
    for i in 0..3000u64 {
        let key = format!("m{i}");
        let found = fetch(&store, key.as_bytes()).map(|found| found.0);
        assert_eq!(found, Some(value(i, 200, false)), "{key}");
    }
    warming.join().unwrap();
}

#[test]
fn keys_lists_memory_and_disk_once_each() {
    let dir = DataDir::new();
    // Too little memory for all of them: most keys are on disk only.
    let store = Store::open(l1(64 * 1024), l2(&dir)).unwrap();
    for i in 0..500u64 {
        set(
            &store,
            format!("key{i}").as_bytes(),
            0,
            &value(i, 500, false),
        );
    }
    assert!(store.delete(b"key7"));
    settle(&store);
    let mut keys: Vec<String> = store
        .keys()
        .iter()
        .map(|key| String::from_utf8_lossy(key).into_owned())
        .collect();
    keys.sort();
    let mut expected: Vec<String> = (0..500)
        .filter(|&i| i != 7)
        .map(|i| format!("key{i}"))
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
}
