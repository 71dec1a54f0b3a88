//! Store statistics.
//!
//! Each stripe counts its own events in a [`ShardCounters`] under the stripe lock it already
//! holds, so counting costs no shared writes; [`Store::stats`](super::Store::stats) sums
//! the stripes when asked.

/// A snapshot of the store's counters, named as in memcached's `stats`.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct StoreStats {
    /// Items currently stored (expired ones not yet removed included, as memcached does).
    pub curr_items: u64,
    /// Items ever stored.
    pub total_items: u64,
    /// Bytes charged against the memory limit (see the `item` module for what an item costs).
    pub bytes: u64,
    /// The memory limit.
    pub limit_maxbytes: u64,
    /// Live items given up to make room.
    pub evictions: u64,
    /// Evictions because the memory limit was reached.
    pub evictions_memory: u64,
    /// Evictions because the entry limit was reached.
    pub evictions_entries: u64,
    /// Expired or flushed items removed, by any path, that had never been read.
    pub expired_unfetched: u64,
    /// Evicted items that had never been read.
    pub evicted_unfetched: u64,
    /// Expired or flushed items removed to make room or by the sweeper (those a request
    /// stumbles on count in `get_expired` / `get_flushed` instead, as in memcached).
    pub reclaimed: u64,
    /// Gets that found their item expired.
    pub get_expired: u64,
    /// Gets that found their item flushed.
    pub get_flushed: u64,
    /// Number of stripes.
    pub curr_stripes: u64,
}

/// One stripe's counters.
#[derive(Default, Debug)]
pub struct ShardCounters {
    pub curr_items: u64,
    pub total_items: u64,
    pub evictions_memory: u64,
    pub evictions_entries: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub reclaimed: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
}

impl ShardCounters {
    /// Adds this stripe's counters into `total`.
    pub fn add_to(&self, total: &mut StoreStats) {
        total.curr_items += self.curr_items;
        total.total_items += self.total_items;
        total.evictions += self.evictions_memory + self.evictions_entries;
        total.evictions_memory += self.evictions_memory;
        total.evictions_entries += self.evictions_entries;
        total.expired_unfetched += self.expired_unfetched;
        total.evicted_unfetched += self.evicted_unfetched;
        total.reclaimed += self.reclaimed;
        total.get_expired += self.get_expired;
        total.get_flushed += self.get_flushed;
    }
}
