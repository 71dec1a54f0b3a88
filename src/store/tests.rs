//! Behaviour of the whole store, checked against memcached 1.6's semantics.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread;

use super::item::item_cost;
use super::*;
use crate::test_rng::TestRng;

fn store_with(config: StoreConfig) -> Store {
    Store::new(config)
}

fn small_store() -> Store {
    store_with(StoreConfig {
        stripes: 4,
        ..StoreConfig::default()
    })
}

/// (value, flags, cas) of a visible item.
fn fetch(store: &Store, key: &[u8]) -> Option<(Vec<u8>, u32, u64)> {
    store.get(key, |item| {
        assert_eq!(item.key, key);
        (item.value.to_vec(), item.flags, item.cas)
    })
}

fn try_value(store: &Store, key: &[u8]) -> Option<Vec<u8>> {
    fetch(store, key).map(|(value, _, _)| value)
}

fn cas_of(store: &Store, key: &[u8]) -> u64 {
    fetch(store, key).expect("item present").2
}

fn set(store: &Store, key: &[u8], value: &[u8]) {
    assert_eq!(
        store.store(StoreMode::Set, key, 0, Expiry::NEVER, value),
        StoreOutcome::Stored
    );
}

/// The memory one item with this key and value is charged.
fn cost(key: &[u8], value_len: usize) -> usize {
    item_cost(key.len() + value_len)
}

/// What the items the store holds are charged, summed item by item.
fn resident_cost(store: &Store) -> u64 {
    store
        .keys()
        .iter()
        .filter_map(|key| Some(cost(key, try_value(store, key)?.len()) as u64))
        .sum()
}

#[test]
fn set_then_get_returns_value_flags_and_cas() {
    let store = small_store();
    assert_eq!(fetch(&store, b"k"), None);
    assert_eq!(
        store.store(StoreMode::Set, b"k", 42, Expiry::NEVER, b"hello"),
        StoreOutcome::Stored
    );
    let (value, flags, cas) = fetch(&store, b"k").unwrap();
    assert_eq!((value.as_slice(), flags), (&b"hello"[..], 42));
    assert_ne!(cas, 0);
    set(&store, b"k", b"bye");
    assert_eq!(value_of(&store, b"k"), b"bye");
    let stats = store.stats();
    assert_eq!((stats.curr_items, stats.total_items), (1, 2));
    assert_eq!(stats.bytes, cost(b"k", 3) as u64);
}

fn value_of(store: &Store, key: &[u8]) -> Vec<u8> {
    try_value(store, key).expect("item present")
}

#[test]
fn add_stores_only_when_absent() {
    let store = small_store();
    assert_eq!(
        store.store(StoreMode::Add, b"k", 1, Expiry::NEVER, b"first"),
        StoreOutcome::Stored
    );
    assert_eq!(
        store.store(StoreMode::Add, b"k", 2, Expiry::NEVER, b"second"),
        StoreOutcome::NotStored
    );
    assert_eq!(fetch(&store, b"k").unwrap().0, b"first");
    // An expired item does not block an add.
    store.store(StoreMode::Set, b"gone", 0, Expiry::from_memcached(-1), b"x");
    assert_eq!(
        store.store(StoreMode::Add, b"gone", 0, Expiry::NEVER, b"new"),
        StoreOutcome::Stored
    );
    assert_eq!(value_of(&store, b"gone"), b"new");
}

#[test]
fn replace_needs_an_existing_item() {
    let store = small_store();
    assert_eq!(
        store.store(StoreMode::Replace, b"k", 0, Expiry::NEVER, b"v"),
        StoreOutcome::NotStored
    );
    assert_eq!(try_value(&store, b"k"), None);
    set(&store, b"k", b"old");
    assert_eq!(
        store.store(StoreMode::Replace, b"k", 9, Expiry::NEVER, b"new"),
        StoreOutcome::Stored
    );
    assert_eq!(fetch(&store, b"k").unwrap().0, b"new");
    assert_eq!(fetch(&store, b"k").unwrap().1, 9);
}

#[test]
fn append_and_prepend_need_an_item_and_keep_its_flags_and_expiry() {
    let store = small_store();
    for mode in [StoreMode::Append, StoreMode::Prepend] {
        assert_eq!(
            store.store(mode, b"k", 0, Expiry::NEVER, b"x"),
            StoreOutcome::NotStored
        );
    }
    assert_eq!(try_value(&store, b"k"), None);

    store.store(StoreMode::Set, b"k", 7, Expiry::from_memcached(100), b"mid");
    let cas_before = cas_of(&store, b"k");
    assert_eq!(
        store.store(StoreMode::Append, b"k", 99, Expiry::NEVER, b"-end"),
        StoreOutcome::Stored
    );
    assert_eq!(
        store.store(
            StoreMode::Prepend,
            b"k",
            98,
            Expiry::from_memcached(5000),
            b"start-"
        ),
        StoreOutcome::Stored
    );
    let (value, flags, cas) = fetch(&store, b"k").unwrap();
    assert_eq!(value, b"start-mid-end");
    assert_eq!(flags, 7);
    assert!(cas > cas_before);
    // Still the original 100 s expiry, not NEVER nor 5000 s.
    store.advance_clock_for_test(99);
    assert!(try_value(&store, b"k").is_some());
    store.advance_clock_for_test(1);
    assert_eq!(try_value(&store, b"k"), None);
}

#[test]
fn cas_outcomes() {
    let store = small_store();
    assert_eq!(
        store.store(StoreMode::Cas(1), b"k", 0, Expiry::NEVER, b"v"),
        StoreOutcome::NotFound
    );
    set(&store, b"k", b"v1");
    let cas = cas_of(&store, b"k");
    assert_eq!(
        store.store(StoreMode::Cas(cas + 1), b"k", 0, Expiry::NEVER, b"v2"),
        StoreOutcome::Exists
    );
    assert_eq!(
        store.store(StoreMode::Cas(0), b"k", 0, Expiry::NEVER, b"v2"),
        StoreOutcome::Exists
    );
    assert_eq!(value_of(&store, b"k"), b"v1");
    assert_eq!(
        store.store(StoreMode::Cas(cas), b"k", 3, Expiry::NEVER, b"v2"),
        StoreOutcome::Stored
    );
    let (value, flags, new_cas) = fetch(&store, b"k").unwrap();
    assert_eq!((value.as_slice(), flags), (&b"v2"[..], 3));
    assert!(new_cas > cas);
    // The old unique value no longer matches.
    assert_eq!(
        store.store(StoreMode::Cas(cas), b"k", 0, Expiry::NEVER, b"v3"),
        StoreOutcome::Exists
    );
}

#[test]
fn without_cas_values_are_zero_and_cas_never_matches() {
    let store = store_with(StoreConfig {
        cas_enabled: false,
        stripes: 2,
        ..StoreConfig::default()
    });
    set(&store, b"k", b"v");
    assert_eq!(cas_of(&store, b"k"), 0);
    assert_eq!(
        store.store(StoreMode::Cas(0), b"k", 0, Expiry::NEVER, b"w"),
        StoreOutcome::Exists
    );
    assert_eq!(
        store.store(StoreMode::Cas(1), b"missing", 0, Expiry::NEVER, b"w"),
        StoreOutcome::NotFound
    );
    assert_eq!(value_of(&store, b"k"), b"v");
}

#[test]
fn every_modification_gets_a_new_cas_but_touch_does_not() {
    let store = small_store();
    set(&store, b"n", b"1");
    let mut seen = vec![cas_of(&store, b"n")];
    store.incr_decr(b"n", true, 1).unwrap();
    seen.push(cas_of(&store, b"n"));
    store.store(StoreMode::Append, b"n", 0, Expiry::NEVER, b"0");
    seen.push(cas_of(&store, b"n"));
    store.store(StoreMode::Replace, b"n", 0, Expiry::NEVER, b"5");
    seen.push(cas_of(&store, b"n"));
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
    assert!(store.touch(b"n", Expiry::from_memcached(100)));
    assert_eq!(cas_of(&store, b"n"), *seen.last().unwrap());
    assert!(store
        .get_and_touch(b"n", Expiry::NEVER, |item| item.cas)
        .is_some_and(|cas| cas == *seen.last().unwrap()));
}

#[test]
fn cas_values_are_unique_and_increasing_across_threads() {
    let store = Arc::new(small_store());
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let key = format!("key-{thread}");
                (0..2000)
                    .map(|i| {
                        set(&store, key.as_bytes(), format!("{i}").as_bytes());
                        cas_of(&store, key.as_bytes())
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all = HashSet::new();
    for handle in threads {
        let values = handle.join().unwrap();
        assert!(values.windows(2).all(|pair| pair[0] < pair[1]));
        for cas in values {
            assert!(all.insert(cas), "cas {cas} handed out twice");
        }
    }
    assert_eq!(all.len(), 8000);
}

#[test]
fn incr_and_decr_follow_memcached() {
    let store = small_store();
    assert_eq!(store.incr_decr(b"n", true, 1), Err(DeltaError::NotFound));
    set(&store, b"n", b"18446744073709551614");
    assert_eq!(store.incr_decr(b"n", true, 1), Ok(u64::MAX));
    assert_eq!(store.incr_decr(b"n", true, 3), Ok(2));
    // The wrapped value is shorter: written in place and space padded.
    assert_eq!(value_of(&store, b"n"), b"2                   ");

    set(&store, b"d", b"3");
    assert_eq!(store.incr_decr(b"d", false, 5), Ok(0));
    assert_eq!(value_of(&store, b"d"), b"0");
    assert_eq!(store.incr_decr(b"d", false, u64::MAX), Ok(0));
}

#[test]
fn shorter_result_is_padded_in_place_and_longer_result_replaces() {
    let store = small_store();
    store.store(StoreMode::Set, b"n", 5, Expiry::from_memcached(100), b"10");
    assert_eq!(store.incr_decr(b"n", false, 5), Ok(5));
    assert_eq!(value_of(&store, b"n"), b"5 ");
    assert_eq!(store.incr_decr(b"n", true, 100), Ok(105));
    let (value, flags, _) = fetch(&store, b"n").unwrap();
    assert_eq!((value.as_slice(), flags), (&b"105"[..], 5));
    assert_eq!(store.stats().bytes, cost(b"n", 3) as u64);
    // The replacement kept the expiry.
    store.advance_clock_for_test(100);
    assert_eq!(store.incr_decr(b"n", true, 1), Err(DeltaError::NotFound));
}

#[test]
fn incr_refuses_non_numeric_values() {
    let store = small_store();
    for (data, expected) in [
        (&b" 12"[..], Ok(13)),
        (b"12 ", Ok(13)),
        (b"12abc", Err(DeltaError::NonNumeric)),
        (b"", Err(DeltaError::NonNumeric)),
        (b"abc", Err(DeltaError::NonNumeric)),
        (b"18446744073709551616", Err(DeltaError::NonNumeric)),
        (b"99999999999999999999", Err(DeltaError::NonNumeric)),
        (b"-1", Err(DeltaError::NonNumeric)),
    ] {
        set(&store, b"n", data);
        assert_eq!(store.incr_decr(b"n", true, 1), expected, "{data:?}");
        if expected.is_err() {
            assert_eq!(value_of(&store, b"n"), data);
        }
    }
}

#[test]
fn expiry_rules() {
    let store = small_store();
    let put = |key: &[u8], exptime: i64| {
        store.store(
            StoreMode::Set,
            key,
            0,
            Expiry::from_memcached(exptime),
            b"v",
        )
    };
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    put(b"never", 0);
    put(b"negative", -1);
    put(b"relative", 10);
    put(b"absolute-future", unix_now + 20);
    put(b"absolute-past", unix_now - 20);
    assert!(try_value(&store, b"never").is_some());
    assert_eq!(try_value(&store, b"negative"), None);
    assert_eq!(try_value(&store, b"absolute-past"), None);
    assert!(try_value(&store, b"relative").is_some());
    assert!(try_value(&store, b"absolute-future").is_some());

    store.advance_clock_for_test(9);
    assert!(try_value(&store, b"relative").is_some());
    store.advance_clock_for_test(1);
    assert_eq!(try_value(&store, b"relative"), None);
    assert!(try_value(&store, b"absolute-future").is_some());
    store.advance_clock_for_test(11);
    assert_eq!(try_value(&store, b"absolute-future"), None);
    assert!(try_value(&store, b"never").is_some());

    let stats = store.stats();
    assert_eq!(stats.curr_items, 1);
    assert_eq!(stats.get_expired, 4);
}

#[test]
fn expired_items_are_invisible_to_every_command() {
    let store = small_store();
    store.store(StoreMode::Set, b"k", 0, Expiry::from_memcached(5), b"1");
    store.advance_clock_for_test(5);
    assert!(!store.touch(b"k", Expiry::NEVER));
    store.store(StoreMode::Set, b"k", 0, Expiry::from_memcached(5), b"1");
    store.advance_clock_for_test(5);
    assert_eq!(store.incr_decr(b"k", true, 1), Err(DeltaError::NotFound));
    store.store(StoreMode::Set, b"k", 0, Expiry::from_memcached(5), b"1");
    store.advance_clock_for_test(5);
    assert!(!store.delete(b"k"));
    assert_eq!(
        store.store(StoreMode::Replace, b"k", 0, Expiry::NEVER, b"2"),
        StoreOutcome::NotStored
    );
    let stats = store.stats();
    assert_eq!((stats.curr_items, stats.bytes), (0, 0));
    assert_eq!(stats.expired_unfetched, 3);
}

#[test]
fn prefetching_changes_nothing_a_command_can_see() {
    let store = small_store();
    let keys: Vec<Vec<u8>> = (0..300).map(|i| format!("key{i}").into_bytes()).collect();
    for (i, key) in keys.iter().enumerate() {
        let exptime = if i % 3 == 0 { 5 } else { 0 };
        let outcome = store.store(StoreMode::Set, key, 0, Expiry::from_memcached(exptime), key);
        assert_eq!(outcome, StoreOutcome::Stored);
    }
    store.advance_clock_for_test(5);
    let missing: Vec<Vec<u8>> = (0..50).map(|i| format!("absent{i}").into_bytes()).collect();
    let before = store.stats();
    // More keys than one group, present, expired and absent ones, some twice.
    store.prefetch(
        keys.iter()
            .chain(&missing)
            .chain(&keys[..20])
            .map(Vec::as_slice),
    );
    store.prefetch(std::iter::empty());
    let after = store.stats();
    assert_eq!(
        (
            after.curr_items,
            after.bytes,
            after.get_expired,
            after.expired_unfetched
        ),
        (
            before.curr_items,
            before.bytes,
            before.get_expired,
            before.expired_unfetched
        ),
        "a prefetch neither removes expired items nor counts them"
    );
    for (i, key) in keys.iter().enumerate() {
        let expected = (i % 3 != 0).then(|| key.clone());
        assert_eq!(try_value(&store, key), expected);
    }
    for key in &missing {
        assert_eq!(try_value(&store, key), None);
    }
    assert_eq!(store.stats().get_expired, 100);
}

#[test]
fn touch_and_gat_change_expiry() {
    let store = small_store();
    store.store(StoreMode::Set, b"k", 0, Expiry::from_memcached(10), b"v");
    assert!(store.touch(b"k", Expiry::from_memcached(100)));
    assert!(!store.touch(b"missing", Expiry::NEVER));
    store.advance_clock_for_test(50);
    assert_eq!(value_of(&store, b"k"), b"v");
    assert_eq!(
        store.get_and_touch(b"k", Expiry::from_memcached(10), |item| item.value.to_vec()),
        Some(b"v".to_vec())
    );
    store.advance_clock_for_test(10);
    assert_eq!(try_value(&store, b"k"), None);
    assert_eq!(
        store.get_and_touch(b"k", Expiry::NEVER, |item| item.value.len()),
        None
    );

    // A negative exptime through gat returns the item once, then it is gone.
    set(&store, b"j", b"w");
    assert_eq!(
        store.get_and_touch(b"j", Expiry::from_memcached(-1), |item| item.value.len()),
        Some(1)
    );
    assert_eq!(try_value(&store, b"j"), None);
}

#[test]
fn delete_removes_and_reports() {
    let store = small_store();
    set(&store, b"k", b"v");
    assert!(store.delete(b"k"));
    assert!(!store.delete(b"k"));
    assert_eq!(try_value(&store, b"k"), None);
    assert_eq!(store.stats().bytes, 0);
}

#[test]
fn flush_all_now_hides_and_frees_everything_stored_before() {
    let store = small_store();
    for i in 0..100 {
        set(&store, format!("k{i}").as_bytes(), b"value");
    }
    store.flush_all(0);
    for i in 0..100 {
        assert_eq!(try_value(&store, format!("k{i}").as_bytes()), None);
    }
    let stats = store.stats();
    assert_eq!((stats.curr_items, stats.bytes), (0, 0));
    assert_eq!(store.shared.budget.used_bytes(), 0);
    // Stored after the flush, in the same second: visible.
    set(&store, b"after", b"v");
    assert_eq!(value_of(&store, b"after"), b"v");
    store.flush_all(-1);
    assert_eq!(try_value(&store, b"after"), None);
}

#[test]
fn delayed_flush_all_hides_items_stored_before_the_deadline() {
    let store = small_store();
    set(&store, b"early", b"1");
    store.flush_all(10);
    store.advance_clock_for_test(5);
    set(&store, b"before-deadline", b"2");
    store.advance_clock_for_test(3);
    assert!(try_value(&store, b"early").is_some());
    assert!(try_value(&store, b"before-deadline").is_some());
    store.advance_clock_for_test(2);
    assert_eq!(try_value(&store, b"early"), None);
    assert_eq!(try_value(&store, b"before-deadline"), None);
    assert_eq!(store.stats().get_flushed, 2);
    store.advance_clock_for_test(1);
    set(&store, b"after-deadline", b"3");
    store.advance_clock_for_test(100);
    assert_eq!(value_of(&store, b"after-deadline"), b"3");
}

#[test]
fn sweeper_removes_expired_and_flushed_items() {
    let store = small_store();
    for i in 0..50 {
        let exptime = if i % 2 == 0 { 10 } else { 0 };
        store.store(
            StoreMode::Set,
            format!("k{i}").as_bytes(),
            0,
            Expiry::from_memcached(exptime),
            b"v",
        );
    }
    assert_eq!(store.sweep_expired(100), 0);
    store.advance_clock_for_test(10);
    // A budget caps each call; calls continue where the last stopped.
    assert_eq!(store.sweep_expired(10), 10);
    assert_eq!(store.sweep_expired(100), 15);
    assert_eq!(store.sweep_expired(100), 0);
    let stats = store.stats();
    assert_eq!(
        (stats.curr_items, stats.reclaimed, stats.expired_unfetched),
        (25, 25, 25)
    );
    assert_eq!(stats.bytes, 25 * cost(b"k10", 1) as u64);

    store.flush_all(5);
    store.advance_clock_for_test(5);
    assert_eq!(store.sweep_expired(100), 25);
    assert_eq!(store.stats().bytes, 0);
}

#[test]
fn item_size_limit_matches_memcached() {
    let store = store_with(StoreConfig {
        max_memory: 8 * 1024 * 1024,
        max_item_size: 1024 * 1024,
        stripes: 4,
        ..StoreConfig::default()
    });
    let big = vec![b'x'; 1024 * 1024 + 1];
    // memcached 1.6 -I 1m: 1048516 value bytes under a one-byte key fit, one more does not.
    assert_eq!(
        store.store(StoreMode::Set, b"k", 0, Expiry::NEVER, &big[..1_048_516]),
        StoreOutcome::Stored
    );
    assert_eq!(
        store.store(StoreMode::Set, b"j", 0, Expiry::NEVER, &big[..1_048_517]),
        StoreOutcome::TooLarge
    );
    assert_eq!(
        store.store(
            StoreMode::Set,
            b"j",
            0,
            Expiry::NEVER,
            &big[..1024 * 1024 - 100]
        ),
        StoreOutcome::Stored
    );
    // A failed set takes the old item with it; other modes leave it alone.
    assert_eq!(
        store.store(StoreMode::Replace, b"k", 0, Expiry::NEVER, &big),
        StoreOutcome::TooLarge
    );
    assert!(try_value(&store, b"k").is_some());
    assert_eq!(
        store.store(StoreMode::Set, b"k", 0, Expiry::NEVER, &big),
        StoreOutcome::TooLarge
    );
    assert_eq!(try_value(&store, b"k"), None);
    // Appending past the limit is refused with NOT_STORED, as memcached does.
    assert_eq!(
        store.store(StoreMode::Append, b"j", 0, Expiry::NEVER, &big[..200]),
        StoreOutcome::NotStored
    );
    assert_eq!(value_of(&store, b"j").len(), 1024 * 1024 - 100);
    // Keys longer than 250 bytes are refused.
    assert_eq!(
        store.store(StoreMode::Set, &[b'a'; 251], 0, Expiry::NEVER, b"v"),
        StoreOutcome::TooLarge
    );
    assert_eq!(
        store.store(StoreMode::Set, &[b'a'; 250], 0, Expiry::NEVER, b"v"),
        StoreOutcome::Stored
    );
}

#[test]
fn lru_evicts_the_oldest_unread_item() {
    let value = [b'v'; 100];
    let store = store_with(StoreConfig {
        max_memory: 3 * cost(b"a", value.len()),
        stripes: 1,
        ..StoreConfig::default()
    });
    set(&store, b"a", &value);
    set(&store, b"b", &value);
    set(&store, b"c", &value);
    assert!(try_value(&store, b"a").is_some());
    set(&store, b"d", &value);
    assert!(try_value(&store, b"b").is_none());
    for key in [b"a", b"c", b"d"] {
        assert!(try_value(&store, key).is_some());
    }
    // A failed add bumps the item like a read, so "c" (read before "a" and "d") goes next.
    assert_eq!(
        store.store(StoreMode::Add, b"a", 0, Expiry::NEVER, &value),
        StoreOutcome::NotStored
    );
    set(&store, b"e", &value);
    assert!(try_value(&store, b"c").is_none());
    let stats = store.stats();
    assert_eq!((stats.evictions, stats.evictions_memory), (2, 2));
    // "b" went unread, "c" had been read.
    assert_eq!(stats.evicted_unfetched, 1);
    assert_eq!(stats.curr_items, 3);
}

#[test]
fn expired_victims_count_as_reclaimed() {
    let value = [b'v'; 100];
    let store = store_with(StoreConfig {
        max_memory: 2 * cost(b"a", value.len()),
        stripes: 1,
        ..StoreConfig::default()
    });
    store.store(StoreMode::Set, b"a", 0, Expiry::from_memcached(5), &value);
    set(&store, b"b", &value);
    store.advance_clock_for_test(5);
    set(&store, b"c", &value);
    set(&store, b"d", &value);
    let stats = store.stats();
    assert_eq!((stats.reclaimed, stats.expired_unfetched), (1, 1));
    assert_eq!((stats.evictions, stats.evicted_unfetched), (1, 1));
    assert!(try_value(&store, b"c").is_some() && try_value(&store, b"d").is_some());
}

#[test]
fn without_evictions_a_full_store_refuses_but_still_reclaims_expired() {
    let value = [b'v'; 100];
    let store = store_with(StoreConfig {
        max_memory: 2 * cost(b"a", value.len()),
        stripes: 1,
        evictions_enabled: false,
        ..StoreConfig::default()
    });
    store.store(StoreMode::Set, b"a", 0, Expiry::from_memcached(5), &value);
    set(&store, b"b", &value);
    let refused = store.store(StoreMode::Set, b"c", 0, Expiry::NEVER, &value);
    assert_eq!(refused, StoreOutcome::NoMemory);
    store.advance_clock_for_test(5);
    set(&store, b"c", &value);
    let stats = store.stats();
    assert_eq!((stats.reclaimed, stats.evictions), (1, 0));
    assert!(try_value(&store, b"b").is_some() && try_value(&store, b"c").is_some());
}

#[test]
fn memory_limit_holds_under_mixed_sizes() {
    for eviction in EvictionStrategy::ALL {
        memory_limit_holds_under_mixed_sizes_with(eviction);
    }
}

fn memory_limit_holds_under_mixed_sizes_with(eviction: EvictionStrategy) {
    let limit = 4 * 1024 * 1024;
    let store = store_with(StoreConfig {
        max_memory: limit,
        stripes: 16,
        eviction,
        ..StoreConfig::default()
    });
    let sizes = [10, 100, 1000, 10_000, 100_000, 37, 5000, 64 * 1024 + 1];
    let data = vec![b'x'; 100_000];
    let mut stored_bytes = 0;
    for i in 0..3000 {
        let size = sizes[i % sizes.len()];
        let key = format!("key-{i}");
        assert_eq!(
            store.store(
                StoreMode::Set,
                key.as_bytes(),
                0,
                Expiry::NEVER,
                &data[..size]
            ),
            StoreOutcome::Stored
        );
        stored_bytes += size;
        assert!(store.shared.budget.used_bytes() <= limit);
        // The item just stored is readable whole.
        assert_eq!(
            try_value(&store, key.as_bytes()).map(|v| v.len()),
            Some(size)
        );
    }
    assert!(stored_bytes > 10 * limit);
    let stats = store.stats();
    assert!(stats.bytes <= limit as u64);
    assert_eq!(stats.bytes, resident_cost(&store));
    assert!(stats.evictions > 0);
    // Eviction only makes the room needed: the store stays well used.
    assert!(stats.bytes > limit as u64 / 2, "{stats:?}");
    let resident = (0..3000)
        .filter(|i| try_value(&store, format!("key-{i}").as_bytes()).is_some())
        .count() as u64;
    assert_eq!(resident, stats.curr_items);
}

#[test]
fn a_megabyte_item_fits_in_a_two_megabyte_store() {
    let store = store_with(StoreConfig {
        max_memory: 2 * 1024 * 1024,
        stripes: 64,
        ..StoreConfig::default()
    });
    // Fill every stripe with small items first, so the big one must evict elsewhere.
    for i in 0..20_000 {
        set(&store, format!("small-{i}").as_bytes(), &[b's'; 50]);
    }
    // The largest value memcached -I 1m takes under a one-byte key.
    let big = vec![b'b'; 1_048_516];
    for key in [b"a", b"b", b"c"] {
        assert_eq!(
            store.store(StoreMode::Set, key, 0, Expiry::NEVER, &big),
            StoreOutcome::Stored
        );
        assert_eq!(try_value(&store, key).map(|v| v.len()), Some(big.len()));
        assert!(store.stats().bytes <= 2 * 1024 * 1024);
    }
    // Replacing the big item with another big one reuses its charge.
    assert_eq!(
        store.store(StoreMode::Set, b"c", 0, Expiry::NEVER, &big),
        StoreOutcome::Stored
    );
    // Two big items never fit together, so each store evicted the one before.
    assert_eq!(try_value(&store, b"a"), None);
    assert_eq!(try_value(&store, b"b"), None);
    assert!(try_value(&store, b"c").is_some());
}

#[test]
fn items_that_can_never_fit_are_refused_without_evicting() {
    let store = store_with(StoreConfig {
        max_memory: 100 * 1024,
        stripes: 4,
        ..StoreConfig::default()
    });
    set(&store, b"keep", b"v");
    set(&store, b"k", b"old");
    assert_eq!(
        store.store(StoreMode::Set, b"k", 0, Expiry::NEVER, &[0; 200 * 1024]),
        StoreOutcome::NoMemory
    );
    // The failed set removed the old value; nothing else was evicted.
    assert_eq!(try_value(&store, b"k"), None);
    assert!(try_value(&store, b"keep").is_some());
    assert_eq!(store.stats().evictions, 0);
}

#[test]
fn entry_limit_evicts_by_count() {
    let store = store_with(StoreConfig {
        max_entries: Some(10),
        stripes: 4,
        ..StoreConfig::default()
    });
    for i in 0..25 {
        set(&store, format!("k{i}").as_bytes(), b"v");
    }
    let stats = store.stats();
    assert_eq!(stats.curr_items, 10);
    assert_eq!((stats.evictions, stats.evictions_entries), (15, 15));
    assert_eq!(stats.evictions_memory, 0);
    // Overwriting does not need a new entry.
    set(&store, b"k24", b"w");
    assert_eq!(store.stats().evictions, 15);
}

#[test]
fn arena_compacts_after_mass_delete_and_keeps_lru_order() {
    let key = |i: usize| format!("k{i}").into_bytes();
    let store = store_with(StoreConfig {
        max_entries: Some(5000),
        stripes: 1,
        ..StoreConfig::default()
    });
    for i in 0..5000 {
        set(&store, &key(i), b"value");
    }
    for i in 0..4000 {
        assert!(store.delete(&key(i)));
    }
    let arena_len = store.stripes[0].shard.lock().arena_len();
    // Compaction keeps at most an eighth of the arena free.
    assert!(arena_len <= 1142, "arena still {arena_len} slots");
    for i in 0..4000 {
        assert_eq!(try_value(&store, &key(i)), None);
    }
    // Read the older half of the survivors: k4500 becomes the oldest unread item.
    for i in 4000..4500 {
        assert_eq!(value_of(&store, &key(i)), b"value");
    }
    // 4000 new items fill the entry limit; one more evicts the least recently read: k4500.
    for i in 5000..9000 {
        set(&store, &key(i), b"new");
    }
    assert_eq!(store.stats().evictions, 0);
    set(&store, &key(9000), b"new");
    assert_eq!(try_value(&store, &key(4500)), None);
    for i in (4000..4500).chain(4501..9001) {
        assert!(try_value(&store, &key(i)).is_some(), "k{i} lost");
    }
    assert_eq!(store.stats().curr_items, 5000);
}

#[test]
fn concurrent_increments_are_never_lost() {
    let store = Arc::new(store_with(StoreConfig {
        stripes: 16,
        ..StoreConfig::default()
    }));
    let counters: Vec<String> = (0..4).map(|i| format!("counter-{i}")).collect();
    for key in &counters {
        set(&store, key.as_bytes(), b"0");
    }
    let threads = 8;
    let rounds = 2000;
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let store = Arc::clone(&store);
            let counters = counters.clone();
            thread::spawn(move || {
                for round in 0..rounds {
                    let counter = &counters[(thread + round) % counters.len()];
                    store.incr_decr(counter.as_bytes(), true, 1).unwrap();
                    let key = format!("shared-{}", round % 64);
                    store.store(StoreMode::Set, key.as_bytes(), 0, Expiry::NEVER, b"payload");
                    store.get(key.as_bytes(), |item| item.value.len());
                    store.store(StoreMode::Append, key.as_bytes(), 0, Expiry::NEVER, b"+");
                    store.incr_decr(key.as_bytes(), false, 1).unwrap_err();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let total: u64 = counters
        .iter()
        .map(|key| {
            let text = value_of(&store, key.as_bytes());
            std::str::from_utf8(&text)
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, (threads * rounds) as u64);
}

#[test]
fn concurrent_writers_respect_a_small_memory_limit() {
    for eviction in EvictionStrategy::ALL {
        concurrent_writers_respect_a_small_memory_limit_with(eviction);
    }
}

fn concurrent_writers_respect_a_small_memory_limit_with(eviction: EvictionStrategy) {
    let limit = 512 * 1024;
    let store = Arc::new(store_with(StoreConfig {
        max_memory: limit,
        stripes: 16,
        eviction,
        ..StoreConfig::default()
    }));
    let handles: Vec<_> = (0..4)
        .map(|thread| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let data = vec![b'x'; 40_000];
                for i in 0..3000usize {
                    let key = format!("t{thread}-{}", i % 500);
                    let size = (i * 7919) % data.len();
                    let outcome = store.store(
                        StoreMode::Set,
                        key.as_bytes(),
                        0,
                        Expiry::NEVER,
                        &data[..size],
                    );
                    assert_eq!(outcome, StoreOutcome::Stored);
                    assert!(store.shared.budget.used_bytes() <= limit);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let stats = store.stats();
    assert!(stats.bytes <= limit as u64);
    assert_eq!(stats.bytes, resident_cost(&store));
}

#[test]
fn auto_stripes_are_a_power_of_two_in_range() {
    let count = stripe_count(0);
    assert!(count.is_power_of_two() && (MIN_AUTO_STRIPES..=MAX_STRIPES).contains(&count));
    assert_eq!(stripe_count(3), 4);
    assert_eq!(stripe_count(1), 1);
    assert_eq!(stripe_count(1 << 20), MAX_STRIPES);
    assert_eq!(small_store().stats().curr_stripes, 4);
}

// ---------------------------------------------------------------------------------------
// Meta protocol operations

/// (created, fetched before, ttl, refresh) as a meta get that settles nothing of its own sees it.
fn meta_look(
    store: &Store,
    key: &[u8],
    vivify: bool,
) -> Option<(bool, bool, Option<u32>, Refresh)> {
    store.meta_get(key, vivify, true, |entry| {
        let refresh = entry.settle_refresh(false);
        (entry.created(), entry.was_fetched(), entry.ttl(), refresh)
    })
}

#[test]
fn meta_get_vivifies_an_empty_item_once() {
    let store = small_store();
    assert_eq!(meta_look(&store, b"v", false), None);
    let won = store.meta_get(b"v", true, true, |entry| {
        assert!(entry.created());
        assert_eq!(entry.value(), b"");
        assert_eq!((entry.flags(), entry.ttl()), (0, None));
        entry.set_expiry(Expiry::from_memcached(30));
        entry.settle_refresh(entry.created())
    });
    assert_eq!(
        won,
        Some(Refresh {
            already_sent: false,
            stale: false,
            won: true
        })
    );
    // The creator's fetch counts: the next one sees a fetched item whose token went out.
    let (created, fetched, ttl, refresh) = meta_look(&store, b"v", true).unwrap();
    assert!(!created && fetched);
    assert_eq!(ttl, Some(30));
    assert!(refresh.already_sent && !refresh.won);
    assert_eq!(store.stats().curr_items, 1);
}

#[test]
fn meta_get_without_bump_leaves_the_item_unfetched() {
    let store = small_store();
    set(&store, b"k", b"v");
    assert_eq!(
        store.meta_get(b"k", false, false, |e| e.was_fetched()),
        Some(false)
    );
    assert_eq!(store.peek(b"k", |e| e.was_fetched()), Some(false));
    store.meta_get(b"k", false, true, |entry| entry.skip_bump());
    assert_eq!(store.peek(b"k", |e| e.was_fetched()), Some(false));
    store.meta_get(b"k", false, true, |_| ());
    assert_eq!(store.peek(b"k", |e| e.was_fetched()), Some(true));
}

#[test]
fn meta_get_expiry_changes_are_kept_and_idle_time_follows_the_second_fetch() {
    let store = small_store();
    set(&store, b"k", b"v");
    store.advance_clock_for_test(5);
    let ttl = store.meta_get(b"k", false, true, |entry| {
        assert_eq!(entry.idle(), 5);
        entry.set_expiry(Expiry::from_memcached(100));
        entry.ttl()
    });
    assert_eq!(ttl, Some(Some(100)));
    store.advance_clock_for_test(2);
    assert_eq!(
        store.peek(b"k", |e| (e.ttl(), e.idle())),
        Some((Some(98), 7))
    );
    // The second fetch moves the access time; later ones do not.
    store.meta_get(b"k", false, true, |_| ());
    store.advance_clock_for_test(3);
    assert_eq!(store.peek(b"k", |e| e.idle()), Some(3));
    store.meta_get(b"k", false, true, |_| ());
    assert_eq!(store.peek(b"k", |e| e.idle()), Some(3));
}

#[test]
fn recache_is_due_only_below_the_threshold_and_once() {
    let store = small_store();
    store.store(StoreMode::Set, b"k", 0, Expiry::from_memcached(20), b"v");
    let due = |threshold: i64| {
        store
            .meta_get(b"k", false, true, |entry| {
                let due = entry.recache_due(Expiry::from_memcached(threshold));
                entry.settle_refresh(due)
            })
            .unwrap()
    };
    assert!(!due(10).won);
    let first = due(30);
    assert!(first.won && !first.already_sent);
    let second = due(30);
    assert!(!second.won && second.already_sent);
    // Items that never expire are never due.
    set(&store, b"k", b"v");
    assert!(!due(30).won);
}

#[test]
fn meta_delete_compares_cas_and_invalidates() {
    let store = small_store();
    assert_eq!(store.meta_delete(b"k", None, None), DeleteOutcome::NotFound);
    set(&store, b"k", b"v");
    let cas = cas_of(&store, b"k");
    assert_eq!(
        store.meta_delete(b"k", Some(cas + 1), None),
        DeleteOutcome::Exists
    );
    assert_eq!(
        store.meta_delete(b"k", Some(0), None),
        DeleteOutcome::Exists
    );
    let ttl = Some(Expiry::from_memcached(30));
    assert_eq!(
        store.meta_delete(b"k", Some(cas), Some(ttl)),
        DeleteOutcome::Invalidated
    );
    let new_cas = cas_of(&store, b"k");
    assert!(new_cas > cas);
    assert_eq!(try_value(&store, b"k").as_deref(), Some(&b"v"[..]));
    // Stale: the first client to look wins the refresh, the next one is told it went out.
    let first = meta_look(&store, b"k", false).unwrap();
    assert_eq!(first.2, Some(30));
    assert!(first.3.stale && first.3.won);
    let second = meta_look(&store, b"k", false).unwrap().3;
    assert!(second.stale && second.already_sent && !second.won);
    // Invalidating again hands the refresh out again, and keeps the expiry without T.
    assert_eq!(
        store.meta_delete(b"k", None, Some(None)),
        DeleteOutcome::Invalidated
    );
    let third = meta_look(&store, b"k", false).unwrap();
    assert_eq!(third.2, Some(30));
    assert!(third.3.won);
    assert_eq!(store.meta_delete(b"k", None, None), DeleteOutcome::Deleted);
    assert_eq!(try_value(&store, b"k"), None);
}

#[test]
fn an_older_cas_may_overwrite_a_stale_item_and_keeps_it_stale() {
    let store = small_store();
    store.store(StoreMode::Set, b"k", 0, Expiry::from_memcached(50), b"v1");
    let old_cas = cas_of(&store, b"k");
    store.meta_delete(b"k", None, Some(None));
    meta_look(&store, b"k", false);
    let stale_ok = StoreOptions {
        stale_ok: true,
        ..StoreOptions::default()
    };
    let ttl = Expiry::from_memcached(999);
    let mode = StoreMode::Cas(old_cas);
    // Without the option the old CAS does not match.
    let plain = store.store_with(mode, b"k", 0, ttl, b"v2", StoreOptions::default());
    assert_eq!(plain, (StoreOutcome::Exists, 0));
    let (outcome, cas) = store.store_with(mode, b"k", 0, ttl, b"v2", stale_ok);
    assert_eq!(outcome, StoreOutcome::Stored);
    assert_eq!(cas, cas_of(&store, b"k"));
    let (_, _, ttl_left, refresh) = meta_look(&store, b"k", false).unwrap();
    assert_eq!(ttl_left, Some(50), "the stale item keeps its expiry");
    assert!(refresh.stale && refresh.already_sent && !refresh.won);
    // A newer CAS than the item's never matches.
    let newer = StoreMode::Cas(cas + 10);
    assert_eq!(
        store.store_with(newer, b"k", 0, ttl, b"x", stale_ok).0,
        StoreOutcome::Exists
    );
    // The matching CAS stores a fresh item.
    assert_eq!(
        store
            .store_with(StoreMode::Cas(cas), b"k", 0, ttl, b"v3", stale_ok)
            .0,
        StoreOutcome::Stored
    );
    assert!(!meta_look(&store, b"k", false).unwrap().3.stale);
}

#[test]
fn append_and_prepend_compare_cas_and_remember_binary_keys() {
    let store = small_store();
    let binary = StoreOptions {
        key_binary: true,
        ..StoreOptions::default()
    };
    let (outcome, cas) = store.store_with(StoreMode::Set, b"k", 3, Expiry::NEVER, b"mid", binary);
    assert_eq!(outcome, StoreOutcome::Stored);
    assert_eq!(
        store.peek(b"k", |e| (e.key_is_binary(), e.cas())),
        Some((true, cas))
    );
    let wrong = StoreOptions {
        compare_cas: cas + 1,
        ..StoreOptions::default()
    };
    assert_eq!(
        store
            .store_with(StoreMode::Append, b"k", 0, Expiry::NEVER, b"!", wrong)
            .0,
        StoreOutcome::Exists
    );
    let right = StoreOptions {
        compare_cas: cas,
        ..binary
    };
    assert_eq!(
        store
            .store_with(StoreMode::Prepend, b"k", 0, Expiry::NEVER, b"<", right)
            .0,
        StoreOutcome::Stored
    );
    // memcached's appended item is a new one without the binary-key mark.
    assert_eq!(
        store.peek(b"k", |e| (e.value().to_vec(), e.flags(), e.key_is_binary())),
        Some((b"<mid".to_vec(), 3, false))
    );
    assert_eq!(
        store
            .store_with(StoreMode::Append, b"none", 0, Expiry::NEVER, b"!", right)
            .0,
        StoreOutcome::NotStored
    );
}

#[test]
fn meta_arith_compares_creates_and_reports() {
    let store = small_store();
    let incr = |key: &[u8], compare: u64, create: Option<u64>| {
        store.meta_arith(key, true, 5, compare, create, |entry, value| {
            (value, entry.created(), entry.cas())
        })
    };
    assert_eq!(incr(b"n", 0, None), Err(DeltaError::NotFound));
    let (value, created, cas) = incr(b"n", 0, Some(40)).unwrap();
    assert_eq!((value, created), (40, true));
    assert_eq!(try_value(&store, b"n").as_deref(), Some(&b"40"[..]));
    assert_eq!(incr(b"n", cas + 1, None), Err(DeltaError::Exists));
    let (value, created, new_cas) = incr(b"n", cas, None).unwrap();
    assert_eq!((value, created), (45, false));
    assert!(new_cas > cas);
    set(&store, b"empty", b"");
    assert_eq!(
        incr(b"empty", 1, None),
        Err(DeltaError::NonNumeric),
        "empty before CAS"
    );
    set(&store, b"word", b"abc");
    assert_eq!(
        incr(b"word", 1, None),
        Err(DeltaError::Exists),
        "CAS before the number"
    );
    assert_eq!(
        store.meta_arith(b"n", false, 100, 0, None, |_, value| value),
        Ok(0)
    );
}

#[test]
fn meta_arith_expiry_change_is_lost_when_the_number_outgrows_its_item() {
    let store = small_store();
    set(&store, b"in_place", b"10");
    set(&store, b"grows", b"99");
    let set_ttl = |key: &[u8]| {
        store.meta_arith(key, true, 1, 0, None, |entry, _| {
            entry.set_expiry(Expiry::from_memcached(100));
            entry.ttl()
        })
    };
    assert_eq!(set_ttl(b"in_place"), Ok(Some(100)));
    assert_eq!(set_ttl(b"grows"), Ok(Some(100)));
    assert_eq!(store.peek(b"in_place", |e| e.ttl()), Some(Some(100)));
    assert_eq!(
        store.peek(b"grows", |e| (e.ttl(), e.value().to_vec())),
        Some((None, b"100".to_vec()))
    );
}

#[test]
fn store_with_returns_the_new_cas_and_checks_append_cas() {
    let compare = |compare_cas| StoreOptions {
        compare_cas,
        ..StoreOptions::default()
    };
    let store = small_store();
    let (outcome, cas) =
        store.store_with(StoreMode::Set, b"k", 3, Expiry::NEVER, b"ab", compare(0));
    assert_eq!(outcome, StoreOutcome::Stored);
    assert_eq!(cas, cas_of(&store, b"k"));
    // Append with the wrong CAS is refused and changes nothing.
    let refused = store.store_with(
        StoreMode::Append,
        b"k",
        0,
        Expiry::NEVER,
        b"x",
        compare(cas + 1),
    );
    assert_eq!(refused, (StoreOutcome::Exists, 0));
    assert_eq!(try_value(&store, b"k").as_deref(), Some(&b"ab"[..]));
    // With the right CAS it applies, keeps the flags and gives a new CAS.
    let (outcome, appended) = store.store_with(
        StoreMode::Append,
        b"k",
        0,
        Expiry::NEVER,
        b"c",
        compare(cas),
    );
    assert_eq!(outcome, StoreOutcome::Stored);
    assert!(appended > cas);
    assert_eq!(fetch(&store, b"k"), Some((b"abc".to_vec(), 3, appended)));
    let (outcome, prepended) =
        store.store_with(StoreMode::Prepend, b"k", 0, Expiry::NEVER, b"z", compare(0));
    assert_eq!(outcome, StoreOutcome::Stored);
    assert_eq!(fetch(&store, b"k"), Some((b"zabc".to_vec(), 3, prepended)));
    // A CAS condition on a missing item is simply not stored.
    assert_eq!(
        store.store_with(
            StoreMode::Prepend,
            b"none",
            0,
            Expiry::NEVER,
            b"z",
            compare(5)
        ),
        (StoreOutcome::NotStored, 0)
    );
    // A cas store reports the CAS it gave.
    let (outcome, swapped) = store.store_with(
        StoreMode::Cas(prepended),
        b"k",
        1,
        Expiry::NEVER,
        b"n",
        compare(0),
    );
    assert_eq!(outcome, StoreOutcome::Stored);
    assert_eq!(fetch(&store, b"k"), Some((b"n".to_vec(), 1, swapped)));
}

#[test]
fn delete_if_cas_deletes_only_the_named_version() {
    let store = small_store();
    set(&store, b"k", b"v");
    let cas = cas_of(&store, b"k");
    assert_eq!(store.delete_if_cas(b"k", cas + 1), DeleteOutcome::Exists);
    assert!(try_value(&store, b"k").is_some());
    assert_eq!(store.delete_if_cas(b"k", cas), DeleteOutcome::Deleted);
    assert_eq!(store.delete_if_cas(b"k", cas), DeleteOutcome::NotFound);
    set(&store, b"k", b"v");
    assert_eq!(store.delete_if_cas(b"k", 0), DeleteOutcome::Deleted);
    assert_eq!(store.delete_if_cas(b"k", 0), DeleteOutcome::NotFound);
}

#[test]
fn delta_creates_with_an_initial_value_and_checks_cas() {
    let store = small_store();
    let request = |delta, expected_cas, create| DeltaRequest {
        incr: true,
        delta,
        expected_cas,
        create,
    };
    // No initial value: a miss stays a miss.
    assert_eq!(
        store.delta(b"n", request(1, 0, None)),
        Err(DeltaError::NotFound)
    );
    // A miss with an initial value creates the item, whatever CAS was named.
    let created = store
        .delta(b"n", request(5, 99, Some((42, Expiry::NEVER))))
        .expect("created");
    let cas = created.cas;
    assert_eq!((created.value, created.created), (42, true));
    assert_eq!(fetch(&store, b"n"), Some((b"42".to_vec(), 0, cas)));
    // Present: the delta applies, the initial value is ignored.
    let applied = store
        .delta(b"n", request(8, cas, Some((7, Expiry::NEVER))))
        .expect("applied");
    let next = applied.cas;
    assert_eq!((applied.value, applied.created), (50, false));
    assert!(next > cas);
    assert_eq!(fetch(&store, b"n"), Some((b"50".to_vec(), 0, next)));
    // The wrong CAS changes nothing.
    assert_eq!(
        store.delta(b"n", request(1, next + 1, None)),
        Err(DeltaError::Exists)
    );
    assert_eq!(try_value(&store, b"n").as_deref(), Some(&b"50"[..]));
    // An empty value is not a number, whatever the CAS.
    set(&store, b"e", b"");
    assert_eq!(
        store.delta(b"e", request(1, 12345, None)),
        Err(DeltaError::NonNumeric)
    );
    // Decrement creates too, and a created item expires as asked.
    let decr = DeltaRequest {
        incr: false,
        delta: 3,
        expected_cas: 0,
        create: Some((10, Expiry::from_memcached(-1))),
    };
    assert_eq!(store.delta(b"d", decr).map(|d| d.value), Ok(10));
    assert_eq!(try_value(&store, b"d"), None);
}

#[test]
fn keys_lists_the_visible_items() {
    let store = small_store();
    set(&store, b"a", b"1");
    set(&store, b"b", b"2");
    store.store(StoreMode::Set, b"gone", 0, Expiry::from_memcached(-1), b"x");
    let mut keys = store.keys();
    keys.sort();
    assert_eq!(keys, [Box::from(&b"a"[..]), Box::from(&b"b"[..])]);
}

#[test]
fn maintain_frees_what_an_immediate_flush_hid_and_sweeps_the_expired() {
    let store = small_store();
    set(&store, b"a", b"1");
    store.store(
        StoreMode::Set,
        b"short",
        0,
        Expiry::from_memcached(10),
        b"x",
    );
    store.maintain();
    assert_eq!(store.stats().curr_items, 2, "nothing to free yet");
    store.advance_clock_for_test(11);
    store.maintain();
    assert_eq!(store.stats().curr_items, 1, "the expired item was swept");
    assert!(store.flush_all(0));
    // Freed only by the next maintenance (a get would find and unlink it first).
    assert_eq!(store.stats().curr_items, 1);
    store.maintain();
    let stats = store.stats();
    assert_eq!((stats.curr_items, stats.bytes), (0, 0));
    assert_eq!(fetch(&store, b"a"), None);
}

/// Random sets, appends, increments, deletes, touches and reads on a store much smaller
/// than its data, checked against a model: under every policy a key reads as its last
/// write or as missing, never as anything else, and the books balance.
#[test]
fn every_policy_serves_only_the_latest_writes_under_eviction() {
    use std::collections::HashMap;

    for eviction in EvictionStrategy::ALL {
        let limit = 256 * 1024;
        let store = store_with(StoreConfig {
            max_memory: limit,
            stripes: 4,
            eviction,
            ..StoreConfig::default()
        });
        let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut rng = TestRng::new(0x2545_F491_4F6C_DD1D);
        for round in 0..40_000u64 {
            let key = format!("key-{}", rng.below(2_000)).into_bytes();
            match rng.below(8) {
                0..=2 => {
                    let value = vec![b'a' + (round % 26) as u8; rng.below(3_000) as usize];
                    set(&store, &key, &value);
                    model.insert(key, value);
                }
                3 => {
                    let outcome = store.store(StoreMode::Append, &key, 0, Expiry::NEVER, b"+tail");
                    if outcome == StoreOutcome::Stored {
                        let expected = model.get_mut(&key).expect("appended to a known key");
                        expected.extend_from_slice(b"+tail");
                    } else {
                        model.remove(&key);
                    }
                }
                4 => {
                    let number = round.to_string().into_bytes();
                    set(&store, &key, &number);
                    match store.incr_decr(&key, true, 7) {
                        Ok(value) => {
                            assert_eq!(value, round + 7, "{eviction}");
                            model.insert(key, (round + 7).to_string().into_bytes());
                        }
                        Err(_) => {
                            model.remove(&key);
                        }
                    }
                }
                5 => {
                    store.delete(&key);
                    model.remove(&key);
                }
                _ => match try_value(&store, &key) {
                    Some(value) => {
                        assert_eq!(Some(&value), model.get(&key), "{eviction}: wrong value");
                    }
                    None => {
                        model.remove(&key);
                    }
                },
            }
        }
        let stats = store.stats();
        assert!(stats.evictions > 1_000, "{eviction}: {stats:?}");
        assert!(stats.bytes <= limit as u64, "{eviction}: {stats:?}");
        assert_eq!(stats.bytes, resident_cost(&store), "{eviction}");
        let resident = model
            .iter()
            .filter(|(key, value)| try_value(&store, key).as_ref() == Some(*value))
            .count() as u64;
        let visible = model
            .keys()
            .filter(|key| try_value(&store, key).is_some())
            .count() as u64;
        assert_eq!(resident, visible, "{eviction}: a key holds a wrong value");
        assert_eq!(
            visible, stats.curr_items,
            "{eviction}: an unknown item is stored"
        );
    }
}
