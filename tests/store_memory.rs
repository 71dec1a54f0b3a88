//! The store's memory accounting checked against the real heap.
//!
//! A counting global allocator records every byte this test binary has allocated and not
//! freed. Filling a store far past its limit must leave the heap it really uses (what was
//! requested from the allocator, before the allocator's own rounding) within the limit.
//! This file holds a single test so nothing else allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use rat_memcache::store::{EvictionStrategy, Expiry, Store, StoreConfig, StoreMode, StoreOutcome};

struct CountingAllocator;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged from our caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged from our caller.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged from our caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn live_bytes() -> usize {
    LIVE_BYTES.load(Relaxed) as usize
}

const LIMIT: usize = 8 * 1024 * 1024;

/// Stores `count` items with value sizes from `sizes` in turn, checking the real heap the
/// store holds never passes the limit, and returns the largest heap seen.
fn fill(store: &Store, baseline: usize, prefix: &str, count: usize, sizes: &[usize]) -> usize {
    let data = vec![b'x'; *sizes.iter().max().unwrap()];
    let mut peak = 0;
    for i in 0..count {
        let key = format!("{prefix}-{i}");
        let size = sizes[i % sizes.len()];
        let outcome = store.store(
            StoreMode::Set,
            key.as_bytes(),
            0,
            Expiry::NEVER,
            &data[..size],
        );
        assert_eq!(outcome, StoreOutcome::Stored);
        // Everything allocated since the baseline is the store's, but for our buffers.
        let heap = live_bytes() - baseline - data.len() - key.len();
        assert!(
            heap <= LIMIT,
            "heap {heap} over the {LIMIT}-byte limit after {key} ({:?})",
            store.config().eviction
        );
        peak = peak.max(heap);
    }
    peak
}

#[test]
fn real_heap_stays_within_the_memory_limit() {
    for eviction in EvictionStrategy::ALL {
        heap_stays_within_the_memory_limit_with(eviction);
    }
}

fn heap_stays_within_the_memory_limit_with(eviction: EvictionStrategy) {
    let baseline = live_bytes();
    let store = Store::new(StoreConfig {
        max_memory: LIMIT,
        stripes: 16,
        eviction,
        ..StoreConfig::default()
    });

    // Tiny items: the case where per-item overhead dominates.
    let tiny_peak = fill(&store, baseline, "tiny", 200_000, &[10]);
    // The accounting is not wildly conservative either: the heap really holds most of it.
    assert!(
        tiny_peak > LIMIT / 2,
        "{eviction}: tiny items used only {tiny_peak} bytes"
    );
    // Big items push the tiny ones out; their slots and buckets must not linger uncharged.
    fill(&store, baseline, "big", 300, &[100_000, 50_000]);
    // A mix from 10 bytes to 100 KB, then tiny items again.
    let mixed = [10, 100, 1000, 10_000, 100_000, 37, 5000, 64 * 1024 + 1, 300];
    fill(&store, baseline, "mixed", 20_000, &mixed);
    fill(&store, baseline, "tiny-again", 200_000, &[10, 20]);
    let stats = store.stats();
    assert!(stats.bytes as usize <= LIMIT);
    // Every item stored and not resident was evicted to make room (none were deleted).
    assert_eq!(
        stats.evictions,
        stats.total_items - stats.curr_items,
        "{stats:?}"
    );

    // An immediate flush gives the memory back.
    store.flush_all(0);
    store.drop_flushed();
    let heap_after_flush = live_bytes() - baseline;
    assert!(
        heap_after_flush < 64 * 1024,
        "{eviction}: flush left {heap_after_flush} bytes"
    );
}
