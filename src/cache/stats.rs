//! What [`RatMemCache::get_cache_stats`](super::RatMemCache::get_cache_stats) reports,
//! and the hit and miss counters behind it.
//!
//! The store counts what it holds; lookups are counted here. A shared counter bumped on
//! every read would bounce one cache line between all reading threads, so each thread
//! bumps one of [`COUNTER_STRIPES`] padded slots, chosen once per thread, and a snapshot
//! sums them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::store::{StoreStats, TierStats};

/// Slots of hit and miss counters; threads beyond this many share slots.
const COUNTER_STRIPES: usize = 16;

/// A snapshot of the cache's counters.
///
/// ```
/// use rat_memcache::RatMemCacheBuilder;
///
/// let cache = RatMemCacheBuilder::new().build()?;
/// cache.set("k", "v")?;
/// cache.get("k")?;
/// cache.get("absent")?;
/// let stats = cache.get_cache_stats();
/// assert_eq!((stats.l1_stats.hits, stats.l1_stats.misses), (1, 1));
/// assert_eq!(stats.total_entries, 1);
/// assert!(stats.l2_stats.is_none());
/// # Ok::<(), rat_memcache::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// The in-memory tier, and the lookups made through it.
    pub l1_stats: L1Stats,
    /// The persistent tier, when there is one.
    pub l2_stats: Option<L2Stats>,
    /// Bytes of memory L1 takes (the persistent tier's own page cache not included).
    pub total_memory_usage: u64,
    /// Items in the cache: L1's count, or with a persistent tier (which is written
    /// every item L1 holds) the larger of the two tiers' counts. Writes still queued
    /// for the disk are not counted there yet, and items that expired but were not
    /// removed yet still are.
    pub total_entries: u64,
}

/// The in-memory tier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L1Stats {
    /// Items held (expired ones not removed yet included).
    pub entry_count: u64,
    /// Bytes charged against the memory limit: keys, values and their bookkeeping.
    pub memory_usage: u64,
    /// The memory limit, in bytes.
    pub max_memory: u64,
    /// Lookups (`get`, `gets`, each key of `get_many`) that found an item, in memory or
    /// on disk.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Live items dropped to make room.
    pub evictions: u64,
    /// Expired items removed by the background sweep or to make room.
    pub expired_removed: u64,
}

/// The persistent tier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L2Stats {
    /// Items on disk.
    pub entry_count: u64,
    /// Bytes of keys and values on disk (what `max_disk_size` limits).
    pub data_bytes: u64,
    /// Bytes of the database's files.
    pub disk_bytes: u64,
    /// The disk size limit, in bytes.
    pub max_disk_size: u64,
    /// L1 misses that looked on disk.
    pub reads: u64,
    /// Disk reads that found the item (and brought it into L1).
    pub hits: u64,
    /// Items brought into L1, by misses and by the start-up warm-up.
    pub promotions: u64,
    /// Changes written to disk.
    pub writes: u64,
    /// Changes waiting to be written.
    pub pending_writes: u64,
    /// Values stored compressed.
    pub compressed: u64,
    /// Items dropped to stay under the disk size limit.
    pub evictions: u64,
    /// Why the tier stopped writing, if it did. L1 then keeps serving, but changes are
    /// no longer persisted, and the next start discards the directory's contents.
    pub fault: Option<String>,
}

impl CacheStats {
    pub(super) fn new(
        store: &StoreStats,
        tier: Option<(TierStats, Option<String>)>,
        lookups: Lookups,
    ) -> CacheStats {
        let l1_stats = L1Stats {
            entry_count: store.curr_items,
            memory_usage: store.bytes,
            max_memory: store.limit_maxbytes,
            hits: lookups.hits,
            misses: lookups.misses,
            evictions: store.evictions,
            expired_removed: store.reclaimed,
        };
        let l2_stats = tier.map(|(tier, fault)| L2Stats {
            entry_count: tier.items,
            data_bytes: tier.bytes,
            disk_bytes: tier.disk_bytes,
            max_disk_size: tier.limit_bytes,
            reads: tier.reads,
            hits: tier.hits,
            promotions: tier.promotions,
            writes: tier.writes,
            pending_writes: tier.queue_depth,
            compressed: tier.compressed,
            evictions: tier.evictions,
            fault,
        });
        let total_entries = l2_stats.as_ref().map_or(l1_stats.entry_count, |l2| {
            l2.entry_count.max(l1_stats.entry_count)
        });
        CacheStats {
            total_memory_usage: l1_stats.memory_usage,
            total_entries,
            l1_stats,
            l2_stats,
        }
    }

    /// Hits over lookups, `None` before the first lookup.
    pub fn hit_rate(&self) -> Option<f64> {
        Lookups {
            hits: self.l1_stats.hits,
            misses: self.l1_stats.misses,
        }
        .hit_rate()
    }
}

/// Hits and misses summed over the counter slots.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Lookups {
    pub hits: u64,
    pub misses: u64,
}

impl Lookups {
    pub fn hit_rate(self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total != 0).then(|| self.hits as f64 / total as f64)
    }
}

/// One thread's hit and miss counters, alone on their cache lines.
#[derive(Default)]
#[repr(align(128))]
struct CounterSlot {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Hit and miss counters, striped by thread.
#[derive(Default)]
pub(super) struct LookupCounters {
    slots: [CounterSlot; COUNTER_STRIPES],
}

/// Hands each thread the next slot in turn.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % COUNTER_STRIPES;
}

impl LookupCounters {
    /// Counts one lookup.
    #[inline]
    pub fn record(&self, hit: bool) {
        let slot = &self.slots[SLOT.with(|slot| *slot)];
        let counter = if hit { &slot.hits } else { &slot.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sum(&self) -> Lookups {
        self.slots
            .iter()
            .fold(Lookups::default(), |total, slot| Lookups {
                hits: total.hits + slot.hits.load(Ordering::Relaxed),
                misses: total.misses + slot.misses.load(Ordering::Relaxed),
            })
    }
}
