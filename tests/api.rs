//! The library API, as an embedding program uses it: every method, every error variant,
//! expiry on the real clock, many threads on one key, and the persistent tier across a
//! shutdown and a new cache on the same directory.
//!
//! TTL tests sleep for real (the store's test clock is internal to the crate); they wait
//! about two seconds each, and run in parallel with everything else.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use rat_memcache::{
    Error, EvictionStrategy, L1Config, L2Config, PerformanceConfig, RatMemCache,
    RatMemCacheBuilder, TtlConfig, MAX_KEY_LEN,
};

// The example's own code, run here so that the tour it prints is checked.
#[allow(dead_code)]
#[path = "../examples/quick_start.rs"]
mod quick_start;

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "rat_memcache-api-{}-{name}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn memory_cache() -> RatMemCache {
    RatMemCacheBuilder::new()
        .build()
        .expect("a default cache builds")
}

fn ttl_cache(ttl: TtlConfig) -> RatMemCache {
    RatMemCacheBuilder::new()
        .ttl_config(ttl)
        .build()
        .expect("the TTL configuration is valid")
}

fn persistent_config(dir: &Path) -> L2Config {
    L2Config {
        enable_l2_cache: true,
        data_dir: Some(dir.to_path_buf()),
        ..Default::default()
    }
}

fn persistent_cache(dir: &Path, l2: L2Config) -> RatMemCache {
    RatMemCacheBuilder::new()
        .l2_config(l2)
        .build()
        .unwrap_or_else(|error| panic!("a cache on {} builds: {error}", dir.display()))
}

fn value(cache: &RatMemCache, key: &str) -> Option<Bytes> {
    cache.get(key).expect("a valid key on an open cache")
}

fn config_error(builder: RatMemCacheBuilder) -> String {
    match builder.build() {
        Err(Error::Config(message)) => message,
        Err(other) => panic!("expected a configuration error, got {other}"),
        Ok(_) => panic!("expected a configuration error, the cache was built"),
    }
}

#[test]
fn set_and_get_take_keys_and_values_of_every_byte_type() {
    let cache = memory_cache();
    let owned = String::from("string key");
    cache.set(&owned, "from &str").unwrap();
    assert_eq!(cache.get(&owned).unwrap(), Some(Bytes::from("from &str")));
    assert_eq!(
        cache.get(owned.clone()).unwrap(),
        Some(Bytes::from("from &str"))
    );
    assert_eq!(
        cache.get("string key").unwrap(),
        Some(Bytes::from("from &str"))
    );

    let binary_key: &[u8] = b"\x00 key with space\r\n\xff";
    cache.set(binary_key, vec![0u8, 1, 2, 255]).unwrap();
    let owned_binary_key: Vec<u8> = binary_key.into();
    assert_eq!(
        cache.get(owned_binary_key).unwrap().as_deref(),
        Some(&[0u8, 1, 2, 255][..])
    );

    cache
        .set(
            Bytes::from_static(b"bytes key"),
            Bytes::from_static(b"bytes value"),
        )
        .unwrap();
    cache
        .set("bytes key", Bytes::from_static(b"replaced"))
        .unwrap();
    assert_eq!(
        value(&cache, "bytes key").as_deref(),
        Some(&b"replaced"[..])
    );

    cache.set("empty value", "").unwrap();
    assert_eq!(value(&cache, "empty value"), Some(Bytes::new()));
    assert_eq!(value(&cache, "never set"), None);

    let longest = "k".repeat(MAX_KEY_LEN);
    cache.set(&longest, "fits").unwrap();
    assert_eq!(value(&cache, &longest).as_deref(), Some(&b"fits"[..]));
}

#[test]
fn get_many_answers_in_the_order_asked() {
    let cache = memory_cache();
    cache.set("a", "1").unwrap();
    cache.set("c", "3").unwrap();
    let values = cache.get_many(&["c", "b", "a", "c"]).unwrap();
    assert_eq!(
        values,
        vec![
            Some(Bytes::from("3")),
            None,
            Some(Bytes::from("1")),
            Some(Bytes::from("3"))
        ]
    );
    let none: &[&str] = &[];
    assert_eq!(cache.get_many(none).unwrap(), Vec::<Option<Bytes>>::new());
    let stats = cache.get_cache_stats();
    assert_eq!((stats.l1_stats.hits, stats.l1_stats.misses), (3, 1));
}

#[test]
fn gets_and_cas_follow_memcached() {
    let cache = memory_cache();
    assert_eq!(cache.gets("k").unwrap(), None);
    assert!(matches!(cache.cas("k", "v", 1), Err(Error::NotFound)));

    cache.set("k", "v1").unwrap();
    let (stored, cas) = cache.gets("k").unwrap().unwrap();
    assert_eq!(stored, Bytes::from("v1"));
    assert!(matches!(cache.cas("k", "v2", cas + 1), Err(Error::Exists)));
    assert_eq!(value(&cache, "k").as_deref(), Some(&b"v1"[..]));
    cache.cas("k", "v2", cas).unwrap();
    assert_eq!(value(&cache, "k").as_deref(), Some(&b"v2"[..]));
    let (_, new_cas) = cache.gets("k").unwrap().unwrap();
    assert!(new_cas > cas, "a store gives a new, larger CAS value");
    assert!(matches!(cache.cas("k", "v3", cas), Err(Error::Exists)));

    assert!(cache.touch("k", 600).unwrap());
    assert_eq!(
        cache.gets("k").unwrap().unwrap().1,
        new_cas,
        "touch keeps the CAS"
    );
}

#[test]
fn conditional_stores_answer_not_stored() {
    let cache = memory_cache();
    assert!(matches!(cache.replace("k", "v"), Err(Error::NotStored)));
    assert!(matches!(cache.append("k", "v"), Err(Error::NotStored)));
    assert!(matches!(cache.prepend("k", "v"), Err(Error::NotStored)));
    assert_eq!(value(&cache, "k"), None);

    cache.add("k", "middle").unwrap();
    assert!(matches!(cache.add("k", "other"), Err(Error::NotStored)));
    cache.append("k", ">").unwrap();
    cache.prepend("k", "<").unwrap();
    assert_eq!(value(&cache, "k").as_deref(), Some(&b"<middle>"[..]));
    cache.replace("k", "replaced").unwrap();
    assert_eq!(value(&cache, "k").as_deref(), Some(&b"replaced"[..]));
}

#[test]
fn incr_and_decr_follow_memcached() {
    let cache = memory_cache();
    assert!(matches!(cache.incr("n", 1), Err(Error::NotFound)));
    assert!(matches!(cache.decr("n", 1), Err(Error::NotFound)));

    cache.set("n", "10").unwrap();
    assert_eq!(cache.incr("n", 5).unwrap(), 15);
    assert_eq!(cache.decr("n", 3).unwrap(), 12);
    assert_eq!(cache.decr("n", 100).unwrap(), 0, "decr stops at 0");
    assert_eq!(
        value(&cache, "n").as_deref(),
        Some(&b"0 "[..]),
        "a shorter result is padded in place, as memcached does"
    );
    assert_eq!(cache.incr("n", 7).unwrap(), 7);

    cache.set("n", u64::MAX.to_string()).unwrap();
    assert_eq!(cache.incr("n", 2).unwrap(), 1, "incr wraps at 2^64");

    cache.set("text", "ten").unwrap();
    assert!(matches!(cache.incr("text", 1), Err(Error::NonNumeric)));
    assert!(matches!(cache.decr("text", 1), Err(Error::NonNumeric)));
    cache.set("too big", "18446744073709551616").unwrap();
    assert!(matches!(cache.incr("too big", 1), Err(Error::NonNumeric)));
    assert_eq!(value(&cache, "text").as_deref(), Some(&b"ten"[..]));
}

#[test]
fn delete_contains_and_touch_report_presence() {
    let cache = memory_cache();
    assert!(!cache.contains_key("k").unwrap());
    assert!(!cache.delete("k").unwrap());
    assert!(!cache.touch("k", 10).unwrap());

    cache.set("k", "v").unwrap();
    assert!(cache.contains_key("k").unwrap());
    assert!(cache.touch("k", 10).unwrap());
    assert!(cache.delete("k").unwrap());
    assert!(!cache.contains_key("k").unwrap());
    assert!(!cache.delete("k").unwrap());
    assert_eq!(value(&cache, "k"), None);

    let stats = cache.get_cache_stats();
    assert_eq!(
        (stats.l1_stats.hits, stats.l1_stats.misses),
        (0, 1),
        "contains_key is no lookup; the one get is a miss"
    );
}

#[test]
fn every_call_refuses_an_empty_or_overlong_key() {
    let cache = memory_cache();
    let long = vec![b'k'; MAX_KEY_LEN + 1];
    for key in [&b""[..], &long[..]] {
        let len = key.len();
        let refused = |result: Result<(), Error>, call: &str| match result {
            Err(Error::InvalidKey { len: reported }) => assert_eq!(reported, len, "{call}"),
            Err(other) => panic!("{call} with a {len}-byte key: {other}"),
            Ok(()) => panic!("{call} accepted a {len}-byte key"),
        };
        refused(cache.set(key, "v"), "set");
        refused(cache.set_with_ttl(key, "v", 5), "set_with_ttl");
        refused(cache.add(key, "v"), "add");
        refused(cache.replace(key, "v"), "replace");
        refused(cache.append(key, "v"), "append");
        refused(cache.prepend(key, "v"), "prepend");
        refused(cache.cas(key, "v", 1), "cas");
        refused(cache.get(key).map(drop), "get");
        refused(cache.gets(key).map(drop), "gets");
        refused(cache.get_many(&[&b"fine"[..], key]).map(drop), "get_many");
        refused(cache.contains_key(key).map(drop), "contains_key");
        refused(cache.delete(key).map(drop), "delete");
        refused(cache.touch(key, 5).map(drop), "touch");
        refused(cache.incr(key, 1).map(drop), "incr");
        refused(cache.decr(key, 1).map(drop), "decr");
    }
    assert_eq!(cache.get_cache_stats().total_entries, 0);
    assert_eq!(
        cache.get_hit_rate(),
        None,
        "refused lookups are not counted"
    );
    assert_eq!(
        cache.set("", "v").unwrap_err().to_string(),
        "invalid key: the key is empty"
    );
    assert_eq!(
        cache.set(&long, "v").unwrap_err().to_string(),
        "invalid key: 251 bytes, longer than the 250-byte limit"
    );
}

#[test]
fn an_item_over_the_size_limit_is_too_large_and_replaces_nothing() {
    let cache = RatMemCacheBuilder::new()
        .l1_config(L1Config {
            max_item_size: 1024,
            ..Default::default()
        })
        .build()
        .unwrap();
    let key = "big\n\"key\"";
    cache.set(key, "small").unwrap();
    let error = cache.set(key, vec![b'x'; 1024]).unwrap_err();
    match &error {
        Error::TooLarge { key: shown, limit } => {
            assert_eq!(shown, "big\\n\\\"key\\\"");
            assert_eq!(*limit, 1024);
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    assert_eq!(
        error.to_string(),
        "the item under key \"big\\n\\\"key\\\"\" is over the item size limit of 1024 bytes"
    );
    assert_eq!(
        value(&cache, key),
        None,
        "a failed set removes the old value"
    );

    cache.set("log", vec![b'x'; 900]).unwrap();
    assert!(
        matches!(cache.append("log", vec![b'y'; 200]), Err(Error::NotStored)),
        "an append that would outgrow the limit is not stored"
    );
    assert_eq!(value(&cache, "log").map(|v| v.len()), Some(900));
}

#[test]
fn an_item_larger_than_memory_finds_no_memory() {
    let cache = RatMemCacheBuilder::new()
        .l1_config(L1Config {
            max_memory: 1024 * 1024,
            max_item_size: 4 * 1024 * 1024,
            ..Default::default()
        })
        .build()
        .unwrap();
    let error = cache.set("huge", vec![0u8; 2 * 1024 * 1024]).unwrap_err();
    assert!(matches!(error, Error::NoMemory), "got {error}");
    assert_eq!(
        error.to_string(),
        "out of memory: nothing could be evicted to make room"
    );
    cache.set("small", "fits").unwrap();
}

#[test]
fn a_full_cache_evicts_to_stay_within_its_limits() {
    let cache = RatMemCacheBuilder::new()
        .l1_config(L1Config {
            max_memory: 1024 * 1024,
            max_entries: 100,
            ..Default::default()
        })
        .build()
        .unwrap();
    let keys: Vec<String> = (0..300).map(|i| format!("filler {i}")).collect();
    for key in &keys {
        cache.set(key, vec![b'x'; 100]).unwrap();
    }
    let stats = cache.get_cache_stats();
    assert_eq!(stats.l1_stats.entry_count, 100);
    assert_eq!(stats.total_entries, 100);
    assert_eq!(stats.l1_stats.evictions, 200);
    let present = keys
        .iter()
        .filter(|key| cache.contains_key(key).unwrap())
        .count();
    assert_eq!(present, 100);
    assert!(
        cache.contains_key("filler 299").unwrap(),
        "the newest item stays"
    );
}

#[test]
fn configurations_that_cannot_be_honoured_are_refused_by_name() {
    let l1 = |l1: L1Config| RatMemCacheBuilder::new().l1_config(l1);
    let l2 = |l2: L2Config| RatMemCacheBuilder::new().l2_config(l2);
    let dir = PathBuf::from("unused");
    let cases = [
        (
            l1(L1Config {
                max_memory: 0,
                ..Default::default()
            }),
            "max_memory",
        ),
        (
            l1(L1Config {
                max_item_size: 0,
                ..Default::default()
            }),
            "max_item_size",
        ),
        (
            l2(L2Config {
                enable_l2_cache: true,
                ..Default::default()
            }),
            "data_dir",
        ),
        (
            l2(L2Config {
                max_disk_size: 0,
                ..persistent_config(&dir)
            }),
            "max_disk_size",
        ),
        (
            l2(L2Config {
                flush_interval: Duration::ZERO,
                ..persistent_config(&dir)
            }),
            "flush_interval",
        ),
        (
            RatMemCacheBuilder::new().ttl_config(TtlConfig {
                default_ttl: 100,
                max_ttl: 10,
                ..Default::default()
            }),
            "default_ttl",
        ),
        (
            RatMemCacheBuilder::new().performance_config(PerformanceConfig {
                enable_background_stats: true,
                stats_interval: 0,
            }),
            "stats_interval",
        ),
    ];
    for (builder, field) in cases {
        let message = config_error(builder);
        assert!(message.contains(field), "{field}: {message}");
    }
    assert!(
        !dir.exists(),
        "a refused configuration touches no directory"
    );

    let error = RatMemCacheBuilder::new()
        .l1_config(L1Config {
            max_memory: 0,
            ..Default::default()
        })
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid configuration: L1Config::max_memory must not be 0"
    );
}

#[test]
fn every_eviction_strategy_keeps_within_memory_and_evicts_its_own_way() {
    for strategy in EvictionStrategy::ALL {
        let cache = RatMemCacheBuilder::new()
            .l1_config(L1Config {
                max_memory: 1024 * 1024,
                eviction_strategy: strategy,
                ..Default::default()
            })
            .build()
            .unwrap();
        cache.set("hot", "kept by use").unwrap();
        for i in 0..5_000 {
            cache.set(format!("filler {i}"), [b'x'; 1000]).unwrap();
            cache.get("hot").unwrap();
        }
        let stats = cache.get_cache_stats().l1_stats;
        assert!(stats.memory_usage <= 1024 * 1024, "{strategy}: {stats:?}");
        assert!(stats.evictions > 4_000, "{strategy}: {stats:?}");
        assert!(
            cache.contains_key("filler 4999").unwrap(),
            "{strategy}: the newest item stays"
        );
        // FIFO evicts the oldest write however often it is read; the others keep it.
        assert_eq!(
            cache.contains_key("hot").unwrap(),
            strategy != EvictionStrategy::Fifo,
            "{strategy}"
        );
    }
}

#[test]
fn a_data_directory_in_use_is_a_persistence_error() {
    let dir = TempDir::new("in-use");
    let first = persistent_cache(dir.path(), persistent_config(dir.path()));
    let error = RatMemCacheBuilder::new()
        .l2_config(persistent_config(dir.path()))
        .build()
        .unwrap_err();
    assert!(matches!(error, Error::Persistence(_)), "got {error}");
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string()),
        "the message names the directory: {error}"
    );
    assert!(std::error::Error::source(&error).is_some());

    // Shut down but still held: the directory stays locked until the last handle goes.
    first.shutdown().unwrap();
    assert!(matches!(
        RatMemCacheBuilder::new()
            .l2_config(persistent_config(dir.path()))
            .build(),
        Err(Error::Persistence(_))
    ));
    drop(first);
    persistent_cache(dir.path(), persistent_config(dir.path()))
        .shutdown()
        .unwrap();
}

#[test]
fn after_shutdown_every_clone_is_closed() {
    let cache = memory_cache();
    let clone = cache.clone();
    cache.set("k", "v").unwrap();
    cache.get("k").unwrap();
    cache.shutdown().unwrap();
    cache.shutdown().unwrap();

    let closed = |result: Result<(), Error>, call: &str| {
        assert!(matches!(result, Err(Error::Closed)), "{call}: {result:?}");
    };
    closed(clone.set("k", "v"), "set");
    closed(clone.set_with_ttl("k", "v", 5), "set_with_ttl");
    closed(clone.add("new", "v"), "add");
    closed(clone.replace("k", "v"), "replace");
    closed(clone.append("k", "v"), "append");
    closed(clone.prepend("k", "v"), "prepend");
    closed(clone.cas("k", "v", 1), "cas");
    closed(clone.get("k").map(drop), "get");
    closed(clone.gets("k").map(drop), "gets");
    closed(clone.get_many(&["k"]).map(drop), "get_many");
    closed(clone.contains_key("k").map(drop), "contains_key");
    closed(clone.delete("k").map(drop), "delete");
    closed(clone.touch("k", 5).map(drop), "touch");
    closed(clone.incr("k", 1).map(drop), "incr");
    closed(clone.decr("k", 1).map(drop), "decr");
    closed(clone.flush(), "flush");
    assert_eq!(
        clone.get("k").unwrap_err().to_string(),
        "the cache was shut down"
    );

    let stats = clone.get_cache_stats();
    assert_eq!(stats.total_entries, 1, "statistics stay readable");
    assert_eq!(stats.l1_stats.hits, 1);
    assert_eq!(clone.get_hit_rate(), Some(1.0));
}

#[test]
fn ttls_expire_on_the_real_clock() {
    let plain = memory_cache();
    let defaulted = ttl_cache(TtlConfig {
        default_ttl: 2,
        ..Default::default()
    });
    let capped = ttl_cache(TtlConfig {
        max_ttl: 2,
        ..Default::default()
    });
    let swept = ttl_cache(TtlConfig {
        cleanup_interval: 1,
        ..Default::default()
    });
    let unswept = ttl_cache(TtlConfig {
        cleanup_interval: 0,
        ..Default::default()
    });
    for cache in [&swept, &unswept] {
        for i in 0..10 {
            cache.set_with_ttl(format!("sweep {i}"), "v", 1).unwrap();
        }
        cache.set("sweep never", "v").unwrap();
    }

    // Set in the same second, a 2 s TTL ends 1 to 2 s from now: every item is visible
    // at first and gone after 2.1 s.
    plain.set_with_ttl("short", "v", 2).unwrap();
    plain.set_with_ttl("long", "v", 60).unwrap();
    plain.set("never", "v").unwrap();
    plain.set("touched short", "v").unwrap();
    assert!(plain.touch("touched short", 2).unwrap());
    plain.set_with_ttl("touched long", "v", 2).unwrap();
    assert!(plain.touch("touched long", 60).unwrap());
    plain.set_with_ttl("appended", "v", 2).unwrap();
    plain.append("appended", "w").unwrap();
    plain.set_with_ttl("counter", "1", 2).unwrap();
    plain.incr("counter", 1).unwrap();
    plain
        .set_with_ttl("past 30 days", "v", 31 * 24 * 3600)
        .unwrap();
    plain.set_with_ttl("longest", "v", u64::MAX).unwrap();
    defaulted.set("default", "v").unwrap();
    defaulted.set_with_ttl("zero is default", "v", 0).unwrap();
    defaulted.set_with_ttl("own ttl", "v", 60).unwrap();
    capped.set("never capped", "v").unwrap();
    capped.set_with_ttl("long capped", "v", 3600).unwrap();
    assert!(capped.touch("never capped", 3600).unwrap());

    let present = |cache: &RatMemCache, key: &str| cache.contains_key(key).unwrap();
    let all = [
        (&plain, "short"),
        (&plain, "long"),
        (&plain, "never"),
        (&plain, "touched short"),
        (&plain, "touched long"),
        (&plain, "appended"),
        (&plain, "counter"),
        (&plain, "past 30 days"),
        (&plain, "longest"),
        (&defaulted, "default"),
        (&defaulted, "zero is default"),
        (&defaulted, "own ttl"),
        (&capped, "never capped"),
        (&capped, "long capped"),
    ];
    for (cache, key) in all {
        assert!(present(cache, key), "{key} is there at first");
    }

    thread::sleep(Duration::from_millis(2100));

    let expired: HashSet<&str> = [
        "short",
        "touched short",
        "appended",
        "counter",
        "default",
        "zero is default",
        "never capped",
        "long capped",
    ]
    .into();
    for (cache, key) in all {
        assert_eq!(
            present(cache, key),
            !expired.contains(key),
            "{key} after 2.1 s"
        );
        assert_eq!(
            cache.get(key).unwrap().is_some(),
            !expired.contains(key),
            "{key} after 2.1 s, by get"
        );
    }
    assert!(
        !plain.touch("short", 60).unwrap(),
        "an expired item cannot be touched"
    );
    assert!(matches!(plain.incr("counter", 1), Err(Error::NotFound)));
}

#[test]
fn flush_empties_the_cache() {
    let cache = memory_cache();
    for i in 0..50 {
        cache.set(format!("k{i}"), "v").unwrap();
    }
    assert_eq!(cache.get_cache_stats().total_entries, 50);
    cache.flush().unwrap();
    let stats = cache.get_cache_stats();
    assert_eq!(stats.total_entries, 0);
    assert_eq!(stats.total_memory_usage, 0);
    assert_eq!(value(&cache, "k0"), None);
    cache.set("k0", "after").unwrap();
    assert_eq!(value(&cache, "k0").as_deref(), Some(&b"after"[..]));
}

#[test]
fn stats_count_items_memory_and_lookups() {
    let cache = RatMemCacheBuilder::new()
        .l1_config(L1Config {
            max_memory: 8 * 1024 * 1024,
            ..Default::default()
        })
        .performance_config(PerformanceConfig {
            enable_background_stats: true,
            stats_interval: 1,
        })
        .build()
        .unwrap();
    assert_eq!(cache.get_hit_rate(), None);
    let empty = cache.get_cache_stats();
    assert_eq!(empty.l1_stats.max_memory, 8 * 1024 * 1024);
    assert_eq!((empty.total_entries, empty.total_memory_usage), (0, 0));
    assert!(empty.l2_stats.is_none());

    cache.set("a", vec![0u8; 1000]).unwrap();
    cache.set("b", "v").unwrap();
    let stats = cache.get_cache_stats();
    assert_eq!(stats.l1_stats.entry_count, 2);
    assert!(
        stats.total_memory_usage > 1000,
        "memory counts the value and its bookkeeping: {}",
        stats.total_memory_usage
    );
    assert_eq!(stats.total_memory_usage, stats.l1_stats.memory_usage);

    cache.get("a").unwrap();
    cache.gets("b").unwrap();
    cache.get("c").unwrap();
    cache.get("a").unwrap();
    assert_eq!(cache.get_hit_rate(), Some(0.75));
    assert_eq!(cache.get_cache_stats().hit_rate(), Some(0.75));
}

/// Collects what the crate logs (the one logger of this test binary).
struct CapturedLog(parking_lot::Mutex<Vec<String>>);

impl log::Log for CapturedLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().push(record.args().to_string());
    }

    fn flush(&self) {}
}

#[test]
fn background_stats_are_logged() {
    static LOG: CapturedLog = CapturedLog(parking_lot::Mutex::new(Vec::new()));
    log::set_logger(&LOG).expect("no other test sets a logger");
    log::set_max_level(log::LevelFilter::Info);
    let cache = RatMemCacheBuilder::new()
        .l1_config(L1Config {
            max_memory: 3 * 1024 * 1024,
            ..Default::default()
        })
        .performance_config(PerformanceConfig {
            enable_background_stats: true,
            stats_interval: 1,
        })
        .build()
        .unwrap();
    cache.set("k", "v").unwrap();
    cache.get("k").unwrap();
    let memory = cache.get_cache_stats().l1_stats.memory_usage;
    thread::sleep(Duration::from_millis(1300));
    let expected = format!(
        "rat_memcache: L1 1 items, {memory} of 3145728 bytes, hit rate 100.0 %, 0 evictions"
    );
    assert!(
        LOG.0.lock().contains(&expected),
        "{expected:?} in {:?}",
        LOG.0.lock()
    );
}

#[test]
fn lookups_from_many_threads_are_all_counted() {
    let cache = memory_cache();
    cache.set("hit", "v").unwrap();
    let threads: Vec<_> = (0..24)
        .map(|_| {
            let cache = cache.clone();
            thread::spawn(move || {
                for _ in 0..100 {
                    cache.get("hit").unwrap();
                    cache.get("miss").unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = cache.get_cache_stats();
    assert_eq!((stats.l1_stats.hits, stats.l1_stats.misses), (2400, 2400));
}

#[test]
fn concurrent_increments_lose_no_update() {
    const THREADS: u64 = 8;
    const INCREMENTS: u64 = 1000;
    let cache = memory_cache();
    cache.set("counter", "0").unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let cache = cache.clone();
            thread::spawn(move || {
                let mut seen = Vec::with_capacity(INCREMENTS as usize);
                for _ in 0..INCREMENTS {
                    seen.push(cache.incr("counter", 1).unwrap());
                }
                seen
            })
        })
        .collect();
    let mut results = HashSet::new();
    for thread in threads {
        for result in thread.join().unwrap() {
            assert!(results.insert(result), "{result} was returned twice");
        }
    }
    assert_eq!(results, (1..=THREADS * INCREMENTS).collect::<HashSet<_>>());
    assert_eq!(
        value(&cache, "counter").as_deref(),
        Some((THREADS * INCREMENTS).to_string().as_bytes())
    );
}

#[test]
fn a_cas_race_has_exactly_one_winner() {
    const THREADS: usize = 8;
    let cache = memory_cache();
    for round in 0..20 {
        cache.set("contended", "start").unwrap();
        let barrier = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let cache = cache.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    let (_, cas) = cache.gets("contended").unwrap().unwrap();
                    // Everyone has read the same CAS before anyone writes.
                    barrier.wait();
                    match cache.cas("contended", format!("thread {thread}"), cas) {
                        Ok(()) => Some(thread),
                        Err(Error::Exists) => None,
                        Err(other) => panic!("cas failed with {other}"),
                    }
                })
            })
            .collect();
        let winners: Vec<usize> = threads
            .into_iter()
            .filter_map(|thread| thread.join().unwrap())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        assert_eq!(
            value(&cache, "contended"),
            Some(Bytes::from(format!("thread {}", winners[0])))
        );
    }
}

#[test]
fn the_persistent_tier_survives_shutdown_and_a_new_cache() {
    let dir = TempDir::new("round-trip");
    let cache = persistent_cache(dir.path(), persistent_config(dir.path()));
    let binary: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    cache.set("text", "hello").unwrap();
    cache.set("binary", &binary).unwrap();
    cache.set_with_ttl("with ttl", "v", 3600).unwrap();
    cache.set("counter", "10").unwrap();
    cache.incr("counter", 5).unwrap();
    cache.set("log", "a").unwrap();
    cache.append("log", "b").unwrap();
    cache.set("deleted", "v").unwrap();
    assert!(cache.delete("deleted").unwrap());
    cache.set("swapped", "old").unwrap();
    let (_, cas) = cache.gets("swapped").unwrap().unwrap();
    cache.cas("swapped", "new", cas).unwrap();
    let (_, last_cas) = cache.gets("swapped").unwrap().unwrap();
    let before = cache.get_cache_stats();
    assert!(before.l2_stats.is_some());
    cache.shutdown().unwrap();
    assert!(matches!(cache.set("late", "v"), Err(Error::Closed)));
    let after_shutdown = cache.get_cache_stats().l2_stats.unwrap();
    assert_eq!(
        after_shutdown.entry_count, 6,
        "every write reached the disk"
    );
    assert_eq!(after_shutdown.pending_writes, 0);
    assert_eq!(after_shutdown.fault, None);
    drop(cache);

    // Without warm-up every key comes from disk when asked for.
    let cache = persistent_cache(
        dir.path(),
        L2Config {
            warmup: false,
            ..persistent_config(dir.path())
        },
    );
    assert_eq!(value(&cache, "text").as_deref(), Some(&b"hello"[..]));
    assert_eq!(value(&cache, "binary").as_deref(), Some(&binary[..]));
    assert_eq!(value(&cache, "with ttl").as_deref(), Some(&b"v"[..]));
    assert_eq!(cache.incr("counter", 1).unwrap(), 16);
    assert_eq!(value(&cache, "log").as_deref(), Some(&b"ab"[..]));
    assert_eq!(value(&cache, "deleted"), None);
    assert_eq!(value(&cache, "late"), None);
    let (swapped, cas) = cache.gets("swapped").unwrap().unwrap();
    assert_eq!(swapped, Bytes::from("new"));
    assert_eq!(
        cas, last_cas,
        "an item keeps its CAS value across a restart"
    );
    cache.set("written after restart", "v").unwrap();
    let (_, new_cas) = cache.gets("written after restart").unwrap().unwrap();
    assert!(new_cas > last_cas, "CAS values stay unique across restarts");
    let l2 = cache.get_cache_stats().l2_stats.unwrap();
    assert_eq!(
        (l2.reads, l2.hits, l2.promotions),
        (8, 6, 6),
        "every key was looked up on disk, and the six present ones brought in: {l2:?}"
    );

    // Dropping the last handle without a shutdown persists too.
    drop(cache);
    let cache = persistent_cache(dir.path(), persistent_config(dir.path()));
    assert_eq!(
        value(&cache, "written after restart").as_deref(),
        Some(&b"v"[..])
    );
    cache.shutdown().unwrap();
    drop(cache);

    let cache = persistent_cache(
        dir.path(),
        L2Config {
            clear_on_startup: true,
            ..persistent_config(dir.path())
        },
    );
    assert_eq!(
        value(&cache, "text"),
        None,
        "clear_on_startup discards the data"
    );
    assert_eq!(cache.get_cache_stats().total_entries, 0);
    cache.shutdown().unwrap();
}

#[test]
fn the_persistent_tier_holds_more_than_memory() {
    let dir = TempDir::new("larger-than-memory");
    let cache = RatMemCacheBuilder::new()
        .l1_config(L1Config {
            max_memory: 256 * 1024,
            ..Default::default()
        })
        .l2_config(L2Config {
            enable_compression: false,
            ..persistent_config(dir.path())
        })
        .build()
        .unwrap();
    let item = |i: usize| vec![(i % 251) as u8; 1000];
    for i in 0..1000 {
        cache.set(format!("item {i}"), item(i)).unwrap();
    }
    let stats = cache.get_cache_stats();
    assert!(stats.l1_stats.entry_count < 1000, "{:?}", stats.l1_stats);
    assert!(stats.l1_stats.evictions > 0);
    for i in 0..1000 {
        let key = format!("item {i}");
        assert_eq!(value(&cache, &key).as_deref(), Some(&item(i)[..]), "{key}");
    }
    cache.shutdown().unwrap();
    let stats = cache.get_cache_stats();
    assert_eq!(stats.total_entries, 1000);
    assert_eq!(stats.l2_stats.unwrap().entry_count, 1000);
}

#[test]
fn the_quick_start_tour_runs() {
    let dir = TempDir::new("quick-start");
    let mut out = Vec::new();
    quick_start::quick_start(dir.path(), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    let expected_start = [
        format!(
            "built a cache with its persistent tier in {}",
            dir.path().display()
        ),
        "set user:1, got back \"Ada\"".to_string(),
        "session stored for 2 s: present = true".to_string(),
        "2.1 s later: present = false".to_string(),
        "visits counted up to 2".to_string(),
        "deleted scratch: true, present = false".to_string(),
        "keys: user:1, visits".to_string(),
    ];
    assert_eq!(lines[..7], expected_start, "{out}");
    let memory = lines[7]
        .strip_prefix("2 items in memory (")
        .and_then(|rest| rest.strip_suffix(" bytes), hit rate 100 %"))
        .and_then(|bytes| bytes.parse::<u64>().ok());
    assert!(memory.is_some_and(|bytes| bytes > 0), "{out}");
    assert_eq!(
        lines[8..],
        [
            "shut down: everything written to disk",
            "a new cache on the same directory finds user:1 = \"Ada\" and visits = \"2\"",
        ],
        "{out}"
    );
}

#[test]
fn keys_lists_memory_and_disk() {
    let memory = memory_cache();
    assert!(memory.keys().unwrap().is_empty());
    memory.set("a", "1").unwrap();
    memory.set_with_ttl("soon", "x", 1).unwrap();
    memory.delete("soon").unwrap();
    assert_eq!(memory.keys().unwrap(), [b"a".to_vec()]);

    let dir = TempDir::new("keys");
    let cache = persistent_cache(dir.path(), persistent_config(dir.path()));
    for key in ["k1", "k2", "k3"] {
        cache.set(key, "v").unwrap();
    }
    cache.delete("k2").unwrap();
    cache.shutdown().unwrap();
    drop(cache);
    // Without warm-up nothing is in memory: the keys come from disk.
    let cache = persistent_cache(
        dir.path(),
        L2Config {
            warmup: false,
            ..persistent_config(dir.path())
        },
    );
    cache.set("k4", "v").unwrap();
    let mut keys = cache.keys().unwrap();
    keys.sort();
    assert_eq!(keys, [b"k1".to_vec(), b"k3".to_vec(), b"k4".to_vec()]);
    assert!(matches!(
        cache.shutdown().and(cache.keys()),
        Err(Error::Closed)
    ));
}

// The other examples' code, checked the same way.
#[allow(dead_code)]
#[path = "../examples/advanced_config.rs"]
mod advanced_config;
#[allow(dead_code)]
#[path = "../examples/monitoring.rs"]
mod monitoring;

#[test]
fn the_advanced_configuration_example_runs() {
    let dir = TempDir::new("advanced-config");
    let mut out = Vec::new();
    advanced_config::advanced_config(dir.path(), &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "memory limit 2048 MB, disk limit 20480 MB\n\
         stored a 2048 byte report, 4096 bytes of noise and one 5 s item\n\
         on disk after shutdown: 3 items, 1 of them compressed\n\
         reopened: report intact, noise intact\n"
    );
    // Its TTL limits hold: no TTL means an hour, a longer one is cut to a day.
    let cache = advanced_config::build(dir.path()).unwrap();
    cache.set("default", "v").unwrap();
    cache.set_with_ttl("long", "v", 30 * 86_400).unwrap();
    let ttl = |key: &str| {
        cache
            .store()
            .peek(key.as_bytes(), |entry| entry.ttl())
            .flatten()
    };
    assert!(
        matches!(ttl("default"), Some(3599..=3600)),
        "{:?}",
        ttl("default")
    );
    assert!(
        matches!(ttl("long"), Some(86_399..=86_400)),
        "{:?}",
        ttl("long")
    );
    cache.shutdown().unwrap();
}

#[test]
fn the_monitoring_example_exports_every_counter() {
    let cache = memory_cache();
    cache.set("a", "1").unwrap();
    cache.get("a").unwrap();
    cache.get("b").unwrap();
    let text = monitoring::prometheus_text(&cache.get_cache_stats());
    let samples: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
    assert!(samples.contains(&"rat_memcache_l1_items 1"), "{text}");
    assert!(samples.contains(&"rat_memcache_hits_total 1"), "{text}");
    assert!(samples.contains(&"rat_memcache_misses_total 1"), "{text}");
    assert!(
        !text.contains("l2_"),
        "no disk tier, no disk metrics: {text}"
    );
    // Every sample has its HELP and TYPE lines, in Prometheus's order.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), samples.len() * 3);
    for chunk in lines.chunks(3) {
        let name = chunk[2].split(' ').next().unwrap();
        assert!(
            chunk[0].starts_with(&format!("# HELP {name} ")),
            "{chunk:?}"
        );
        assert!(
            chunk[1].starts_with(&format!("# TYPE {name} ")),
            "{chunk:?}"
        );
    }

    let dir = TempDir::new("monitoring");
    let cache = persistent_cache(dir.path(), persistent_config(dir.path()));
    cache.set("k", "v").unwrap();
    cache.shutdown().unwrap();
    let text = monitoring::prometheus_text(&cache.get_cache_stats());
    assert!(
        text.lines().any(|line| line == "rat_memcache_l2_items 1"),
        "{text}"
    );
    assert!(
        text.lines().any(|line| line == "rat_memcache_l2_fault 0"),
        "{text}"
    );
}
