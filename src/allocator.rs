//! The server's global allocator: mimalloc, with large blocks mapped straight from the OS.
//!
//! A cache that evicts is the hardest load for a general-purpose allocator. mimalloc, like
//! most, keeps blocks of one size class together in pages (from 64 KiB for small blocks to
//! 4 MiB for blocks of hundreds of KiB), and can only give a page back once every block in
//! it is free. Items of many sizes, evicted in an order that has nothing to do with where
//! they were allocated, leave many pages holding a few live items each: with values of
//! 10 B to 100 KB at `-m 64`, that kept 10-30 MiB resident beyond the items' own memory.
//!
//! So blocks of [`MAPPED_MIN`] bytes and more get a private anonymous mapping of their own
//! (`mmap`), and go back to the OS the moment they are freed (`munmap`). They waste at
//! most a page to rounding, which the store's item cost charges
//! ([`allocation_size`](crate::store::allocation_size)); smaller blocks stay with mimalloc,
//! whose pages of small size classes are small enough that the slack stays a few MiB.
//!
//! Mapping and unmapping take the kernel's lock on the process's address space, for which
//! worker threads storing large values at a high rate queue up (filling 1 GiB of 10 B to
//! 100 KB values took 2.6 times as long as with mimalloc alone). So up to [`STASH_BYTES`]
//! of freed mappings up to [`STASH_MAX_PAGES`] pages are kept, a few of each page count,
//! and handed out again for requests of the same page count: no system call and no page
//! faults, at the price of that much memory kept.
//!
//! The kernel limits the mappings of a process (`vm.max_map_count`, 65,530 by default);
//! past that limit less [`RESERVED_MAPPINGS`] live mappings (some 57,000 items of 16 KiB to
//! 1 MiB, 0.9 to 57 GB of them), and whenever `mmap` fails, large blocks come from mimalloc
//! instead, which is always correct, only less tight: those items may then take up to an
//! eighth more than they are charged. Raise `vm.max_map_count` for caches holding more
//! large items. A freed large block is returned to whichever of the two it came from:
//! mimalloc knows its own memory.
//!
//! mimalloc is also told to return freed pages at once rather than after its default delay
//! of a second: it has no thread of its own and purges only when called again, so under
//! eviction churn freed but unpurged pages grew with the write rate and, once traffic
//! stopped, stayed resident for good.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_int, c_long, c_void};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use mimalloc::MiMalloc;

use crate::store::{MAPPED_MIN, MAPPED_PAGE};

/// Mappings of the process's limit left to everything else (code, libraries, thread
/// stacks, mimalloc's own arenas).
pub const RESERVED_MAPPINGS: usize = 8 * 1024;

/// The kernel's limit on a process's mappings when it cannot be read.
const DEFAULT_MAX_MAP_COUNT: usize = 65_530;

// mimalloc's C API, linked in through the `mimalloc` crate (whose bindings declare these
// only with its `extended` feature).
extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_option_set_default(option: c_int, value: c_long);
    fn mi_is_in_heap_region(p: *const c_void) -> bool;
}

/// `mi_option_purge_delay` in `mi_option_t` (mimalloc 3, and 2 alike).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// `mi_option_arena_reserve` in `mi_option_t` (mimalloc 3, and 2 alike).
const MI_OPTION_ARENA_RESERVE: c_int = 23;

/// The address space mimalloc reserves for its first arenas, in KiB (its default is
/// 1 GiB). The bitmaps that track an arena's slices grow with its size, and mimalloc
/// writes the first page of each of its dozens of bitmaps at once: a 1 GiB arena kept
/// about 350 KiB resident before the server stored anything, a 64 MiB one a tenth of
/// that. Arenas reserved later grow in size, doubling every 8, so large caches still
/// need few of them.
const ARENA_RESERVE_KIB: c_long = 64 * 1024;

/// Makes [`ARENA_RESERVE_KIB`] mimalloc's arena reservation, unless the environment
/// sets one (`MIMALLOC_ARENA_RESERVE`). mimalloc reserves its first arena while it
/// initialises, in a constructor of the process, so the server binary runs this from a
/// constructor that comes before every other (`.init_array.00100`).
pub extern "C" fn reserve_small_arenas() {
    // SAFETY: a plain setter of a global option; constructors run on one thread.
    unsafe { mi_option_set_default(MI_OPTION_ARENA_RESERVE, ARENA_RESERVE_KIB) };
}

/// The largest freed mappings kept for reuse, in pages (256 KiB).
pub const STASH_MAX_PAGES: usize = 64;

/// Freed mappings kept for reuse per page count.
const STASH_PER_SIZE: usize = 8;

/// Most bytes of freed mappings kept for reuse.
pub const STASH_BYTES: usize = 4 * 1024 * 1024;

/// Freed mappings of one page count, kept for reuse.
struct Stash {
    blocks: [*mut u8; STASH_PER_SIZE],
    len: usize,
}

// SAFETY: the pointers are mappings no one else refers to; whoever takes one owns it.
unsafe impl Send for Stash {}

impl Stash {
    const EMPTY: Stash = Stash {
        blocks: [std::ptr::null_mut(); STASH_PER_SIZE],
        len: 0,
    };
}

/// mimalloc, with blocks of [`MAPPED_MIN`] bytes and more mapped on their own.
pub struct ServerAllocator {
    /// Live mappings, stashed ones included.
    mappings: AtomicUsize,
    /// Freed mappings by page count (index 0 holds those of one page).
    stash: [Mutex<Stash>; STASH_MAX_PAGES],
    stashed_bytes: AtomicUsize,
    /// Most mappings at once; 0 (until [`configure`](Self::configure), or when the OS
    /// pages are not the size the store charges for) maps nothing.
    max_mappings: AtomicUsize,
}

impl ServerAllocator {
    /// The allocator, mapping nothing until [`configure`](Self::configure) is called.
    pub const fn new() -> ServerAllocator {
        ServerAllocator {
            mappings: AtomicUsize::new(0),
            stash: [const { Mutex::new(Stash::EMPTY) }; STASH_MAX_PAGES],
            stashed_bytes: AtomicUsize::new(0),
            max_mappings: AtomicUsize::new(0),
        }
    }

    /// Turns the mapping of large blocks on (where the OS page is [`MAPPED_PAGE`] bytes)
    /// and mimalloc's immediate purging. Call first thing in `main`.
    pub fn configure(&self) {
        // SAFETY: sysconf only reads a system value.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page == MAPPED_PAGE as c_long {
            let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count")
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(DEFAULT_MAX_MAP_COUNT);
            self.max_mappings
                .store(limit.saturating_sub(RESERVED_MAPPINGS), Relaxed);
        }
        // SAFETY: a plain setter of a global option, called before other threads run.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }

    fn is_mapped_size(layout: Layout) -> bool {
        layout.size() >= MAPPED_MIN && layout.align() <= MAPPED_PAGE
    }

    /// The stash for mappings of `size` bytes, if they are kept.
    fn stash_for(&self, size: usize) -> Option<&Mutex<Stash>> {
        self.stash.get(size.div_ceil(MAPPED_PAGE).checked_sub(1)?)
    }

    /// A freed mapping of `size` bytes from the stash (its old contents still in it).
    fn unstash(&self, size: usize) -> *mut u8 {
        let Some(stash) = self.stash_for(size) else {
            return std::ptr::null_mut();
        };
        let mut stash = stash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if stash.len == 0 {
            return std::ptr::null_mut();
        }
        stash.len -= 1;
        self.stashed_bytes
            .fetch_sub(size.next_multiple_of(MAPPED_PAGE), Relaxed);
        stash.blocks[stash.len]
    }

    /// Keeps a freed mapping of `size` bytes for reuse; false when there is no room.
    fn stash(&self, block: *mut u8, size: usize) -> bool {
        let Some(stash) = self.stash_for(size) else {
            return false;
        };
        let bytes = size.next_multiple_of(MAPPED_PAGE);
        let mut stash = stash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if stash.len == STASH_PER_SIZE || self.stashed_bytes.load(Relaxed) + bytes > STASH_BYTES {
            return false;
        }
        let len = stash.len;
        stash.blocks[len] = block;
        stash.len = len + 1;
        self.stashed_bytes.fetch_add(bytes, Relaxed);
        true
    }

    /// A mapping of `size` bytes, or null when mapping is off, at its limit, or fails.
    fn map(&self, size: usize) -> *mut u8 {
        if self.mappings.fetch_add(1, Relaxed) >= self.max_mappings.load(Relaxed) {
            self.mappings.fetch_sub(1, Relaxed);
            return std::ptr::null_mut();
        }
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let block = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if block == libc::MAP_FAILED {
            self.mappings.fetch_sub(1, Relaxed);
            return std::ptr::null_mut();
        }
        block.cast()
    }
}

impl Default for ServerAllocator {
    fn default() -> Self {
        ServerAllocator::new()
    }
}

// SAFETY: every block is either a mapping of at least `layout.size()` bytes, page-aligned
// (which satisfies any alignment up to a page, the only ones mapped), or mimalloc's; each
// is freed by the one that made it, told apart by mimalloc's own record of its memory.
unsafe impl GlobalAlloc for ServerAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::is_mapped_size(layout) {
            let mut block = self.unstash(layout.size());
            if block.is_null() {
                block = self.map(layout.size());
            }
            if !block.is_null() {
                return block;
            }
        }
        // SAFETY: forwarded unchanged from our caller.
        unsafe { MiMalloc.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::is_mapped_size(layout) {
            let reused = self.unstash(layout.size());
            if !reused.is_null() {
                // SAFETY: the stashed mapping is at least `layout.size()` bytes and ours.
                unsafe { reused.write_bytes(0, layout.size()) };
                return reused;
            }
            // Fresh anonymous mappings are zeroed by the kernel.
            let block = self.map(layout.size());
            if !block.is_null() {
                return block;
            }
        }
        // SAFETY: forwarded unchanged from our caller.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout; a large block not in
        // mimalloc's heap is one of our mappings of `layout.size()` bytes.
        unsafe {
            if Self::is_mapped_size(layout) && !mi_is_in_heap_region(ptr.cast()) {
                if !self.stash(ptr, layout.size()) {
                    libc::munmap(ptr.cast(), layout.size());
                    self.mappings.fetch_sub(1, Relaxed);
                }
            } else {
                MiMalloc.dealloc(ptr, layout);
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from our caller; small to small stays within mimalloc, anything
        // touching the mapped range moves through alloc, copy and dealloc.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            if !Self::is_mapped_size(layout) && !Self::is_mapped_size(new_layout) {
                return MiMalloc.realloc(ptr, layout, new_size);
            }
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_every_size_round_trip_and_large_ones_are_mapped() {
        let allocator = ServerAllocator::new();
        allocator.configure();
        for size in [1, 100, 4096, MAPPED_MIN - 1, MAPPED_MIN, 100_000, 3 << 20] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: a non-zero layout; the block is written within its size and freed
            // with the same layout.
            unsafe {
                let block = allocator.alloc(layout);
                assert!(!block.is_null());
                block.write_bytes(0xAB, size);
                let mapped = !mi_is_in_heap_region(block.cast());
                assert_eq!(mapped, size >= MAPPED_MIN, "{size} bytes");
                let grown = allocator.realloc(block, layout, size * 2);
                assert_eq!(*grown.add(size - 1), 0xAB);
                allocator.dealloc(grown, Layout::from_size_align(size * 2, 8).unwrap());
            }
        }
        // Every mapping left is a freed one kept for reuse.
        let stashed: usize = allocator
            .stash
            .iter()
            .map(|stash| stash.lock().unwrap().len)
            .sum();
        assert_eq!(allocator.mappings.load(Relaxed), stashed);
    }

    #[test]
    fn freed_mappings_are_reused_for_the_same_page_count_and_zeroed_when_asked() {
        let allocator = ServerAllocator::new();
        allocator.configure();
        let layout = Layout::from_size_align(MAPPED_MIN + 100, 8).unwrap();
        let same_pages = Layout::from_size_align(MAPPED_MIN + 200, 8).unwrap();
        // SAFETY: non-zero layouts, written and read within their sizes, each block freed
        // once with the layout it was allocated with.
        unsafe {
            let first = allocator.alloc(layout);
            first.write_bytes(0xCD, layout.size());
            allocator.dealloc(first, layout);
            let again = allocator.alloc(same_pages);
            assert_eq!(again, first, "the freed mapping is handed out again");
            allocator.dealloc(again, same_pages);
            let zeroed = allocator.alloc_zeroed(layout);
            assert_eq!(zeroed, first);
            assert!(std::slice::from_raw_parts(zeroed, layout.size())
                .iter()
                .all(|&b| b == 0));
            allocator.dealloc(zeroed, layout);
            // Larger blocks are not kept: a mapping of more pages is unmapped.
            let big = Layout::from_size_align((STASH_MAX_PAGES + 1) * MAPPED_PAGE, 8).unwrap();
            let before = allocator.mappings.load(Relaxed);
            let block = allocator.alloc(big);
            assert_eq!(allocator.mappings.load(Relaxed), before + 1);
            allocator.dealloc(block, big);
            assert_eq!(allocator.mappings.load(Relaxed), before);
        }
    }

    #[test]
    fn past_the_mapping_limit_large_blocks_come_from_mimalloc_and_go_back_there() {
        let allocator = ServerAllocator::new();
        allocator.configure();
        allocator.max_mappings.store(1, Relaxed);
        let layout = Layout::from_size_align((STASH_MAX_PAGES + 1) * MAPPED_PAGE, 8).unwrap();
        // SAFETY: non-zero layouts, written within their sizes, each freed once with the
        // layout it was allocated with.
        unsafe {
            let mapped = allocator.alloc(layout);
            let fallback = allocator.alloc(layout);
            assert!(!mi_is_in_heap_region(mapped.cast()));
            assert!(mi_is_in_heap_region(fallback.cast()));
            fallback.write_bytes(0xEF, layout.size());
            assert_eq!(allocator.mappings.load(Relaxed), 1);
            allocator.dealloc(fallback, layout);
            assert_eq!(
                allocator.mappings.load(Relaxed),
                1,
                "mimalloc's block is not unmapped"
            );
            allocator.dealloc(mapped, layout);
            assert_eq!(allocator.mappings.load(Relaxed), 0);
        }
    }

    #[test]
    fn mapped_blocks_come_zeroed() {
        let allocator = ServerAllocator::new();
        allocator.configure();
        let layout = Layout::from_size_align(MAPPED_MIN * 2, 8).unwrap();
        // SAFETY: a non-zero layout, read within its size, freed with the same layout.
        unsafe {
            let block = allocator.alloc_zeroed(layout);
            assert!(std::slice::from_raw_parts(block, layout.size())
                .iter()
                .all(|&b| b == 0));
            allocator.dealloc(block, layout);
        }
    }
}
