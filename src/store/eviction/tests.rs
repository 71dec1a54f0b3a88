use std::collections::HashMap;

use super::*;
use crate::store::item::{compact_arena, item_data, ItemMeta};
use crate::test_rng::TestRng;

/// A stripe's arena driven by one policy the way a shard drives it, holding at most
/// `capacity` items of equal size, keyed by numbers.
struct Cache {
    policy: Policy,
    slots: Vec<Slot>,
    index: HashMap<u64, SlotIndex>,
    free: Vec<SlotIndex>,
    capacity: usize,
}

fn key_hash(key: u64) -> u64 {
    key.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(29) ^ key
}

fn item(key: u64) -> Slot {
    let meta = ItemMeta {
        cas: 1,
        flags: 0,
        exptime: 0,
        time: 2,
    };
    Slot::item(item_data(&key.to_le_bytes(), b"value"), 8, meta)
}

impl Cache {
    fn new(strategy: EvictionStrategy, capacity: usize) -> Cache {
        Cache {
            policy: Policy::new(strategy),
            slots: Vec::new(),
            index: HashMap::new(),
            free: Vec::new(),
            capacity,
        }
    }

    fn contains(&self, key: u64) -> bool {
        self.index.contains_key(&key)
    }

    fn key_at(&self, index: SlotIndex) -> u64 {
        u64::from_le_bytes(self.slots[index as usize].key().try_into().unwrap())
    }

    /// A read of `key`, stored on a miss (cache-aside). Returns whether it hit.
    fn request(&mut self, key: u64) -> bool {
        if let Some(&index) = self.index.get(&key) {
            self.policy.on_access(&mut self.slots, index);
            return true;
        }
        self.insert(key);
        false
    }

    fn read(&mut self, key: u64, times: usize) {
        for _ in 0..times {
            assert!(self.request(key), "{key} is cached");
        }
    }

    fn insert(&mut self, key: u64) {
        while self.index.len() >= self.capacity {
            self.evict();
        }
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index as usize] = item(key);
                index
            }
            None => {
                self.slots.push(item(key));
                (self.slots.len() - 1) as SlotIndex
            }
        };
        self.policy.on_insert(&mut self.slots, index, key_hash(key));
        self.index.insert(key, index);
    }

    /// Evicts the policy's victim and returns its key.
    fn evict(&mut self) -> u64 {
        let victim = self.policy.victim(&mut self.slots).expect("a victim");
        let key = self.key_at(victim);
        self.policy.on_evict(&self.slots, victim, key_hash(key));
        self.remove(key);
        key
    }

    fn remove(&mut self, key: u64) {
        let index = self.index.remove(&key).expect("a cached key");
        self.policy.on_remove(&mut self.slots, index);
        drop(self.slots[index as usize].release(NIL));
        self.free.push(index);
    }

    /// A store over an existing item, as the shard does it.
    fn rewrite(&mut self, key: u64) {
        let index = self.index[&key];
        self.policy.hold(&mut self.slots, index);
        let meta = ItemMeta {
            cas: 2,
            flags: 0,
            exptime: 0,
            time: 3,
        };
        drop(self.slots[index as usize].replace(item_data(&key.to_le_bytes(), b"other"), meta));
        self.policy.restore(&mut self.slots, index);
    }

    /// Evicts everything, returning the keys in eviction order.
    fn drain(&mut self) -> Vec<u64> {
        let order = (0..self.index.len()).map(|_| self.evict()).collect();
        assert_eq!(self.policy.victim(&mut self.slots), None);
        order
    }

    /// Moves every live slot to the front of a new arena, as a shard's compaction does.
    fn compact(&mut self) {
        let (mut compacted, new_index) = compact_arena(&mut self.slots, self.index.len());
        self.policy.remap(&mut compacted, &new_index);
        for index in self.index.values_mut() {
            *index = new_index[*index as usize];
        }
        self.slots = compacted;
        self.free.clear();
    }
}

fn filled(strategy: EvictionStrategy, keys: u64) -> Cache {
    let mut cache = Cache::new(strategy, keys as usize);
    for key in 0..keys {
        cache.insert(key);
    }
    cache
}

#[test]
fn strategies_have_names() {
    for strategy in EvictionStrategy::ALL {
        assert_eq!(
            EvictionStrategy::from_name(strategy.as_str()),
            Some(strategy)
        );
        assert_eq!(strategy.to_string(), strategy.as_str());
    }
    assert_eq!(
        EvictionStrategy::from_name("s3fifo"),
        Some(EvictionStrategy::Hybrid)
    );
    assert_eq!(EvictionStrategy::from_name("LRU"), None);
}

#[test]
fn unused_items_leave_in_insertion_order_under_every_policy() {
    for strategy in EvictionStrategy::ALL {
        assert_eq!(filled(strategy, 5).drain(), [0, 1, 2, 3, 4], "{strategy}");
    }
}

#[test]
fn removal_from_middle_head_and_tail_keeps_queues_whole() {
    for strategy in EvictionStrategy::ALL {
        let mut cache = filled(strategy, 5);
        cache.remove(2);
        cache.remove(4);
        cache.remove(0);
        assert_eq!(cache.drain(), [1, 3], "{strategy}");
    }
}

#[test]
fn compaction_keeps_the_eviction_order() {
    for strategy in EvictionStrategy::ALL {
        let build = || {
            let mut cache = filled(strategy, 12);
            for key in [1, 4, 7, 10] {
                cache.remove(key);
            }
            for key in [3, 3, 8, 11, 11, 11] {
                cache.read(key, 1);
            }
            cache
        };
        let mut compacted = build();
        compacted.compact();
        assert_eq!(compacted.drain(), build().drain(), "{strategy}");
    }
}

#[test]
fn a_held_item_is_never_the_victim() {
    for strategy in EvictionStrategy::ALL {
        let mut cache = filled(strategy, 3);
        let oldest = cache.index[&0];
        cache.policy.hold(&mut cache.slots, oldest);
        let victim = cache.policy.victim(&mut cache.slots).unwrap();
        assert_ne!(victim, oldest, "{strategy}");
        cache.policy.restore(&mut cache.slots, oldest);
        assert_eq!(cache.drain().len(), 3, "{strategy}");
    }
}

#[test]
fn lru_evicts_the_least_recently_used() {
    let mut cache = filled(EvictionStrategy::Lru, 4);
    cache.read(0, 1);
    cache.read(2, 1);
    assert_eq!(cache.drain(), [1, 3, 0, 2]);
}

#[test]
fn lru_keeps_what_was_just_read() {
    let mut cache = filled(EvictionStrategy::Lru, 3);
    cache.read(0, 1);
    cache.insert(3);
    assert!(cache.contains(0));
    assert!(!cache.contains(1));
    // 0 went back to the head unmarked: now it is older than 2 and 3.
    assert_eq!(cache.drain(), [2, 0, 3]);
}

#[test]
fn lru_rewrite_makes_an_item_newest() {
    let mut cache = filled(EvictionStrategy::Lru, 3);
    cache.rewrite(0);
    assert_eq!(cache.drain(), [1, 2, 0]);
}

#[test]
fn fifo_evicts_the_oldest_write_regardless_of_use() {
    let mut cache = filled(EvictionStrategy::Fifo, 4);
    cache.read(0, 50);
    cache.read(1, 1);
    cache.insert(4);
    assert!(!cache.contains(0), "the most read item was the oldest");
    cache.rewrite(1);
    assert_eq!(cache.drain(), [2, 3, 4, 1]);
}

#[test]
fn lfu_keeps_the_frequently_read() {
    let mut cache = filled(EvictionStrategy::Lfu, 8);
    cache.read(3, 200);
    cache.read(5, 3);
    let order = cache.drain();
    assert_eq!(order[..6], [0, 1, 2, 4, 6, 7]);
    assert_eq!(order[6..], [5, 3]);
}

#[test]
fn lfu_counts_age_so_old_favourites_leave() {
    let mut cache = Cache::new(EvictionStrategy::Lfu, 16);
    cache.insert(0);
    cache.read(0, 500);
    // New keys, each read a few times: at first the old favourite outranks them all.
    let mut key = 1;
    while key <= 32 {
        cache.request(key);
        cache.read(key, 2);
        key += 1;
    }
    assert!(cache.contains(0), "a heavily used key outlives newcomers");
    // Without uses its count decays, and sooner or later it is evicted like any other.
    while cache.contains(0) {
        cache.request(key);
        cache.read(key, 2);
        key += 1;
        assert!(key < 5_000, "the old favourite never aged out");
    }
}

#[test]
fn lfu_rewrite_keeps_the_count() {
    let mut cache = filled(EvictionStrategy::Lfu, 4);
    cache.read(0, 20);
    cache.rewrite(0);
    cache.rewrite(1);
    let order = cache.drain();
    assert_eq!(*order.last().unwrap(), 0);
}

/// Reads every hot key `reads` times, then streams `scan` keys never seen before.
fn hot_set_then_scan(cache: &mut Cache, hot: u64, reads: usize, scan: u64) {
    for key in 0..hot {
        cache.request(key);
    }
    for _ in 0..reads {
        for key in 0..hot {
            cache.read(key, 1);
        }
    }
    for key in 1_000_000..1_000_000 + scan {
        assert!(!cache.request(key));
    }
}

#[test]
fn hybrid_survives_a_scan_without_losing_its_hot_set() {
    let mut hybrid = Cache::new(EvictionStrategy::Hybrid, 100);
    hot_set_then_scan(&mut hybrid, 50, 2, 5_000);
    let kept = (0..50).filter(|&key| hybrid.contains(key)).count();
    assert_eq!(kept, 50);

    // The same traffic flushes an LRU: the test tells the two apart.
    let mut lru = Cache::new(EvictionStrategy::Lru, 100);
    hot_set_then_scan(&mut lru, 50, 2, 5_000);
    assert_eq!((0..50).filter(|&key| lru.contains(key)).count(), 0);
}

#[test]
fn hybrid_evicts_one_hit_wonders_first() {
    let mut cache = Cache::new(EvictionStrategy::Hybrid, 10);
    for key in 0..10 {
        cache.request(key);
    }
    cache.read(4, 1);
    // The small queue gives up its unread items in order; the read one moves to main.
    assert_eq!(cache.evict(), 0);
    for expected in [1, 2, 3, 5, 6, 7, 8, 9] {
        assert_eq!(cache.evict(), expected);
    }
    assert_eq!(cache.evict(), 4);
}

#[test]
fn hybrid_brings_back_a_recently_evicted_key_into_main() {
    let mut cache = Cache::new(EvictionStrategy::Hybrid, 10);
    cache.request(7);
    for key in 100..110 {
        cache.request(key);
    }
    assert!(!cache.contains(7));
    // Stored again while its ghost remains: it goes to the main queue, where a stream of
    // new keys does not reach it.
    cache.request(7);
    for key in 200..300 {
        cache.request(key);
    }
    assert!(cache.contains(7));

    // FIFO, with no memory of evicted keys, loses it again.
    let mut fifo = Cache::new(EvictionStrategy::Fifo, 10);
    fifo.request(7);
    for key in (100..110).chain([7]).chain(200..300) {
        fifo.request(key);
    }
    assert!(!fifo.contains(7));
}

#[test]
fn hybrid_main_queue_gives_used_items_another_lap() {
    let mut cache = Cache::new(EvictionStrategy::Hybrid, 10);
    for key in 0..10 {
        cache.request(key);
        cache.read(key, 1);
    }
    // All move to main on the first eviction pass; then only 3 is read again.
    cache.insert(10);
    cache.read(3, 1);
    let order = cache.drain();
    assert_eq!(
        order.iter().position(|&key| key == 3),
        Some(order.len() - 1)
    );
}

/// A key from `0..keys`, small keys much more likely (density falling as 1/√k).
fn skewed(rng: &mut TestRng, keys: u64) -> u64 {
    let unit = rng.unit();
    ((unit * unit) * keys as f64) as u64
}

fn misses(strategy: EvictionStrategy, capacity: usize, trace: &[u64]) -> usize {
    let mut cache = Cache::new(strategy, capacity);
    trace.iter().filter(|&&key| !cache.request(key)).count()
}

#[test]
fn hybrid_misses_less_than_lru_when_skewed_traffic_meets_scans() {
    let mut rng = TestRng::new(0x1234_5678_9ABC_DEF1);
    let mut trace = Vec::new();
    let mut next_scan_key = 1 << 40;
    for round in 0..200 {
        trace.extend((0..500).map(|_| skewed(&mut rng, 5_000)));
        if round % 4 == 0 {
            trace.extend(next_scan_key..next_scan_key + 400);
            next_scan_key += 400;
        }
    }
    let hybrid = misses(EvictionStrategy::Hybrid, 500, &trace);
    let lru = misses(EvictionStrategy::Lru, 500, &trace);
    let fifo = misses(EvictionStrategy::Fifo, 500, &trace);
    assert!(hybrid < lru, "hybrid {hybrid} misses, lru {lru}");
    assert!(lru < fifo, "lru {lru} misses, fifo {fifo}");
}

#[test]
fn ghost_remembers_about_as_many_evictions_as_it_has_slots() {
    let mut ghost = Ghost::default();
    ghost.fit(1024);
    let hashes: Vec<u64> = (0..20_000u64).map(key_hash).collect();
    for &hash in &hashes {
        ghost.insert(hash);
    }
    let remembered = |range: std::ops::Range<usize>| {
        let mut probe = Ghost {
            buckets: ghost.buckets.clone(),
        };
        range.filter(|&i| probe.take(hashes[i])).count()
    };
    // The latest quarter of a table's worth nearly all, long-gone keys almost never.
    assert!(
        remembered(19_744..20_000) >= 240,
        "{}",
        remembered(19_744..20_000)
    );
    assert!(
        remembered(10_000..10_256) <= 2,
        "{}",
        remembered(10_000..10_256)
    );
    assert!(
        remembered(18_976..20_000) >= 700,
        "{}",
        remembered(18_976..20_000)
    );
    // Taking a key forgets it.
    assert!(ghost.take(hashes[19_999]));
    assert!(!ghost.take(hashes[19_999]));
}
