//! One cached item: its [`Slot`] in a stripe's arena, and what it costs.
//!
//! # Layout
//!
//! A stripe keeps its items in a `Vec<Slot>` arena and finds them through a hash table of
//! `u32` slot indices, so an item is reached with one probe and one index, and its key is
//! stored once, in the item. Each item owns exactly one heap allocation: its key bytes
//! immediately followed by its value bytes. Everything else lives inline in the slot:
//!
//! ```text
//! Slot (48 bytes)
//! ┌──────────────────────────┬─────────┬───────┬─────────┬───────┬─────────────┬─────┬──────┬────────┐
//! │ data: Box<[u8]> (16)     │ cas (8) │ flags │ exptime │ time  │ links (2×4) │ key │ bits │ policy │
//! │ ─> [key bytes|value ...] │         │  (4)  │   (4)   │  (4)  │ prev, next  │ len │      │  (2)   │
//! └──────────────────────────┴─────────┴───────┴─────────┴───────┴─────────────┴─────┴──────┴────────┘
//! ```
//!
//! `time` is memcached's `it->time`: when the item was stored or modified, moved once more
//! to the moment of its second fetch (see [`Slot::bump`]). A delayed `flush_all` compares
//! against it, as memcached's does; since every access before the flush deadline is
//! earlier than the deadline, moving it on access never saves an item from a flush.
//! `links` and `policy` belong to the eviction policy (its queues are threaded through
//! `links`; `policy` holds a use bit, a frequency or a queue tag); a free slot reuses
//! `links.next` for the free list.
//!
//! # Cost
//!
//! The store's memory limit is a limit on [`item_cost`], which estimates everything an item
//! really takes from the heap, not just its value bytes:
//!
//! * the key+value allocation rounded up to the allocator's size class ([`allocation_size`]);
//! * its slot and a 2-byte ghost entry (the hybrid eviction policy keeps one per slot; the
//!   other policies are charged it too, so no policy costs more per item than another),
//!   plus their share of the arena's spare room: the arena grows in steps of an eighth and
//!   is compacted once an eighth of it is free, so 9/7 of a slot per item;
//! * its hash-table entry: a `u32` and a tag byte, twelve to a 64-byte bucket, in a table
//!   kept between 7/16 and 7/8 full (compaction shrinks it too), so up to
//!   64/12 / (7/16) ≈ 12.2 bytes per item.
//!
//! A store's live heap blocks therefore stay within its limit, give or take the value a
//! `set` is copying in before it takes its stripe lock.
//!
//! What the process holds for them is close to that too, because the server's allocator
//! (`crate::allocator`) maps every block of [`MAPPED_MIN`] bytes or more on its own and
//! unmaps it when it is freed. A general-purpose allocator carves pages (mimalloc: 64 KiB
//! to 4 MiB) into blocks of one size class and can return a page only once all its blocks
//! are free; under eviction, pages still holding one live item of a large class kept
//! 10-30 MiB resident beyond `-m 64` with values of 10 B to 100 KB. Below [`MAPPED_MIN`]
//! the pages are small and the slack stays a few MiB (the README's "Memory" section and
//! `tests/memory.rs` measure it).

use std::mem::size_of;

use super::eviction::GHOST_ENTRY_SIZE;
use super::table::TABLE_COST;

/// memcached's limit on key length; longer keys are never stored.
pub const MAX_KEY_LEN: usize = 250;

/// Index of a slot in a stripe's arena; [`NIL`] is "none".
pub type SlotIndex = u32;

/// The null slot index for lists threaded through slots.
pub const NIL: SlotIndex = u32::MAX;

/// Links an eviction policy threads through the arena (a free slot uses `next` for the
/// free list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Links {
    pub prev: SlotIndex,
    pub next: SlotIndex,
}

impl Links {
    pub const UNLINKED: Links = Links {
        prev: NIL,
        next: NIL,
    };
}

/// The slot holds an item (otherwise it is on the free list).
const LIVE: u8 = 1;
/// The item was read by a get since it was stored (memcached's `ITEM_FETCHED`).
const FETCHED: u8 = 2;
/// Fetched again after its first fetch (memcached's `ITEM_ACTIVE`): that second fetch
/// moved `time` to the moment of access, later ones leave it.
const ACTIVE: u8 = 4;
/// Invalidated: still served, but marked as needing a refresh (memcached's `ITEM_STALE`).
const STALE: u8 = 8;
/// One client was already told to refresh the item (memcached's `ITEM_TOKEN_SENT`).
const TOKEN_SENT: u8 = 16;
/// The key was given base64-encoded when the item was stored, so it is shown that way
/// (memcached's `ITEM_KEY_BINARY`).
const KEY_BINARY: u8 = 32;

/// One arena entry: an item's metadata and its single key+value allocation.
/// 48 bytes on 64-bit targets (asserted below).
#[derive(Debug)]
pub struct Slot {
    /// Key bytes followed by value bytes; empty for a free slot.
    data: Box<[u8]>,
    pub cas: u64,
    pub flags: u32,
    /// Expiry moment on the store's clock; 0 = never.
    pub exptime: u32,
    /// When the item was last stored or modified, on the store's clock.
    pub time: u32,
    pub links: Links,
    key_len: u8,
    bits: u8,
    /// What the eviction policy remembers about the item (a use bit, a frequency, which
    /// queue it is on); [`replace`](Self::replace) keeps it, so a rewritten item keeps its
    /// standing.
    pub policy: u16,
}

/// Bytes one slot occupies in the arena.
pub const SLOT_SIZE: usize = size_of::<Slot>();

#[cfg(target_pointer_width = "64")]
const _: () = assert!(SLOT_SIZE == 48);

/// What one item costs in the arena: its slot and ghost entry plus their share of the
/// arena's spare room. Up to an eighth of an arena's length may be free slots before it is
/// compacted, and its capacity (and the ghost table's length) runs up to an eighth past its
/// length before it grows, so an arena takes at most 9/8 × 8/7 = 9/7 of a slot per live
/// item.
const ARENA_COST: usize = ((SLOT_SIZE + GHOST_ENTRY_SIZE) * 9).div_ceil(7);

/// memcached's `sizeof(item)` on 64-bit builds; part of the item size limit (`-I`).
const MEMCACHED_ITEM_HEADER: usize = 48;

impl Slot {
    /// A free slot whose `links.next` continues the free list.
    pub fn free(next_free: SlotIndex) -> Slot {
        Slot {
            data: Box::default(),
            cas: 0,
            flags: 0,
            exptime: 0,
            time: 0,
            links: Links {
                prev: NIL,
                next: next_free,
            },
            key_len: 0,
            bits: 0,
            policy: 0,
        }
    }

    /// A live item. `data` is the key followed by the value; `key_len <= MAX_KEY_LEN`.
    pub fn item(data: Box<[u8]>, key_len: usize, meta: ItemMeta) -> Slot {
        debug_assert!(key_len <= MAX_KEY_LEN && key_len <= data.len());
        Slot {
            data,
            cas: meta.cas,
            flags: meta.flags,
            exptime: meta.exptime,
            time: meta.time,
            links: Links::UNLINKED,
            key_len: key_len as u8,
            bits: LIVE,
            policy: 0,
        }
    }

    /// Puts new contents into a live slot in place (a replacing store): the key is
    /// unchanged, the item counts as never fetched. Returns the old allocation.
    pub fn replace(&mut self, data: Box<[u8]>, meta: ItemMeta) -> Box<[u8]> {
        debug_assert!(self.is_live() && data.len() >= self.key_len());
        self.cas = meta.cas;
        self.flags = meta.flags;
        self.exptime = meta.exptime;
        self.time = meta.time;
        self.bits = LIVE;
        std::mem::replace(&mut self.data, data)
    }

    /// Turns the slot into a free slot, handing back its allocation.
    pub fn release(&mut self, next_free: SlotIndex) -> Box<[u8]> {
        let data = std::mem::take(&mut self.data);
        *self = Slot::free(next_free);
        data
    }

    #[inline]
    pub fn is_live(&self) -> bool {
        self.bits & LIVE != 0
    }

    #[inline]
    pub fn was_fetched(&self) -> bool {
        self.bits & FETCHED != 0
    }

    /// A fetch as memcached's segmented LRU records it (`do_item_bump`): the first fetch
    /// marks the item fetched, the second marks it active and moves its access time to
    /// `now`, and later fetches change nothing.
    #[inline]
    pub fn bump(&mut self, now: u32) {
        if self.bits & ACTIVE != 0 {
            return;
        }
        if self.bits & FETCHED == 0 {
            self.bits |= FETCHED;
        } else {
            self.bits |= ACTIVE;
            self.time = now;
        }
    }

    #[inline]
    pub fn is_stale(&self) -> bool {
        self.bits & STALE != 0
    }

    #[inline]
    pub fn token_sent(&self) -> bool {
        self.bits & TOKEN_SENT != 0
    }

    #[inline]
    pub fn key_is_binary(&self) -> bool {
        self.bits & KEY_BINARY != 0
    }

    /// Marks the item stale; the next client to see it may refresh it.
    #[inline]
    pub fn mark_stale(&mut self) {
        self.bits = (self.bits | STALE) & !TOKEN_SENT;
    }

    /// Records that a client was told to refresh the item.
    #[inline]
    pub fn mark_token_sent(&mut self) {
        self.bits |= TOKEN_SENT;
    }

    /// Sets the markers an item keeps across a stale overwrite or that its store gave it.
    #[inline]
    pub fn set_markers(&mut self, markers: Markers) {
        if markers.stale {
            self.bits |= STALE;
        }
        if markers.token_sent {
            self.bits |= TOKEN_SENT;
        }
        if markers.key_binary {
            self.bits |= KEY_BINARY;
        }
    }

    #[inline]
    pub fn key_len(&self) -> usize {
        usize::from(self.key_len)
    }

    #[inline]
    pub fn key(&self) -> &[u8] {
        &self.data[..self.key_len()]
    }

    /// The whole allocation: key then value.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    #[inline]
    pub fn value(&self) -> &[u8] {
        &self.data[self.key_len()..]
    }

    #[inline]
    pub fn value_mut(&mut self) -> &mut [u8] {
        let key_len = self.key_len();
        &mut self.data[key_len..]
    }

    /// What this item is charged against the memory limit.
    #[inline]
    pub fn cost(&self) -> usize {
        item_cost(self.data.len())
    }
}

/// Per-item markers a store can set on the item it writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Markers {
    pub stale: bool,
    pub token_sent: bool,
    pub key_binary: bool,
}

/// An item's metadata as written on store.
#[derive(Clone, Copy, Debug)]
pub struct ItemMeta {
    pub cas: u64,
    pub flags: u32,
    pub exptime: u32,
    pub time: u32,
}

/// Builds an item's single allocation: `key` then `value`.
pub fn item_data(key: &[u8], value: &[u8]) -> Box<[u8]> {
    let mut data = Vec::with_capacity(key.len() + value.len());
    data.extend_from_slice(key);
    data.extend_from_slice(value);
    data.into_boxed_slice()
}

/// Bytes charged against the memory limit for an item whose key+value take `data_len` bytes.
#[inline]
pub fn item_cost(data_len: usize) -> usize {
    allocation_size(data_len) + ARENA_COST + TABLE_COST
}

/// Moves the live slots to the front of a new arena with room for `capacity` slots,
/// leaving free slots behind. Returns the new arena and, for each old index, the new one
/// ([`NIL`] for free slots).
pub fn compact_arena(slots: &mut [Slot], capacity: usize) -> (Vec<Slot>, Vec<SlotIndex>) {
    let mut new_index = vec![NIL; slots.len()];
    let mut compacted = Vec::with_capacity(capacity);
    for (old, slot) in slots.iter_mut().enumerate() {
        if slot.is_live() {
            new_index[old] = compacted.len() as SlotIndex;
            compacted.push(std::mem::replace(slot, Slot::free(NIL)));
        }
    }
    (compacted, new_index)
}

/// The size memcached gives an item when checking it against the item size limit (`-I`):
/// its 48-byte header, the key and its NUL, 4 bytes of flags unless they are 0, the value
/// and its CRLF, and 8 bytes of CAS when CAS is on.
pub fn memcached_item_size(key_len: usize, flags: u32, value_len: usize, cas: bool) -> usize {
    let flags_suffix = if flags == 0 { 0 } else { size_of::<u32>() };
    let cas_size = if cas { size_of::<u64>() } else { 0 };
    MEMCACHED_ITEM_HEADER + key_len + 1 + flags_suffix + value_len + 2 + cas_size
}

/// Requests of this many bytes and more get a mapping of their own from the server's
/// allocator, rounded up to whole pages (see the module docs).
pub const MAPPED_MIN: usize = 16 * 1024;

/// The page size mapped blocks are rounded to (the allocator maps nothing on systems
/// whose pages differ).
pub const MAPPED_PAGE: usize = 4096;

/// Estimates how many bytes the allocator really hands out for a request of `n` bytes,
/// modelled on the server's (mimalloc, with large blocks mapped on their own):
///
/// * up to 64 bytes: rounded up to a multiple of 8 (one size class per word);
/// * below [`MAPPED_MIN`]: mimalloc's bins, four per power of two, so a request is rounded
///   up by at most 25% (12.5% on average across a doubling);
/// * from [`MAPPED_MIN`]: whole pages of [`MAPPED_PAGE`] bytes, at most 25% more and on
///   average 2 KiB.
///
/// With another allocator the estimate is close (glibc rounds small requests to 16 bytes
/// plus an 8-byte header, and maps large ones itself from 128 KiB) but not exact.
pub fn allocation_size(n: usize) -> usize {
    const WORD: usize = size_of::<usize>();
    const SMALL_MAX: usize = 8 * WORD;
    match n {
        0 => 0,
        1..=SMALL_MAX => n.next_multiple_of(WORD),
        _ if n < MAPPED_MIN => {
            // mimalloc's `mi_bin`: keep the top three bits of (words - 1), round the rest up.
            let words_minus_one = n.div_ceil(WORD) - 1;
            let top_bit = usize::BITS - 1 - words_minus_one.leading_zeros();
            let step = top_bit - 2;
            (((words_minus_one >> step) + 1) << step) * WORD
        }
        _ => n.next_multiple_of(MAPPED_PAGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_48_bytes() {
        assert_eq!(SLOT_SIZE, 48);
    }

    #[test]
    fn allocation_size_follows_mimalloc_bins() {
        assert_eq!(allocation_size(0), 0);
        assert_eq!(allocation_size(1), 8);
        assert_eq!(allocation_size(8), 8);
        assert_eq!(allocation_size(9), 16);
        assert_eq!(allocation_size(64), 64);
        // 64..128 in steps of 16, 128..256 in steps of 32.
        assert_eq!(allocation_size(65), 80);
        assert_eq!(allocation_size(80), 80);
        assert_eq!(allocation_size(81), 96);
        assert_eq!(allocation_size(128), 128);
        assert_eq!(allocation_size(129), 160);
        assert_eq!(allocation_size(1000), 1024);
        assert_eq!(allocation_size(1025), 1280);
        assert_eq!(allocation_size(MAPPED_MIN - 1), MAPPED_MIN);
        // Mapped: whole pages.
        assert_eq!(allocation_size(MAPPED_MIN), MAPPED_MIN);
        assert_eq!(allocation_size(MAPPED_MIN + 1), MAPPED_MIN + MAPPED_PAGE);
        assert_eq!(
            allocation_size(1024 * 1024 + 300),
            1024 * 1024 + MAPPED_PAGE
        );
    }

    #[test]
    fn allocation_size_never_below_request_nor_far_above() {
        for n in 1..200_000usize {
            let size = allocation_size(n);
            assert!(size >= n, "{n} -> {size}");
            // Small and binned sizes waste at most a quarter, mapped ones less than a page.
            assert!(size <= n + n / 4 + 8, "{n} -> {size}");
            if n >= MAPPED_MIN {
                assert!(size - n < MAPPED_PAGE, "{n} -> {size}");
            }
        }
    }

    #[test]
    fn memcached_item_size_matches_memcached() {
        // memcached 1.6 with -I 1m stores a 1048516-byte value under a 1-byte key with
        // flags 0, and 1048512 bytes with non-zero flags; one more byte is too large.
        assert_eq!(memcached_item_size(1, 0, 1_048_516, true), 1024 * 1024);
        assert_eq!(memcached_item_size(1, 5, 1_048_512, true), 1024 * 1024);
        assert_eq!(memcached_item_size(250, 0, 1_048_267, true), 1024 * 1024);
        // Without CAS (-C) an item is 8 bytes smaller.
        assert_eq!(memcached_item_size(1, 0, 1_048_524, false), 1024 * 1024);
    }

    #[test]
    fn slot_keeps_key_then_value_in_one_allocation() {
        let meta = ItemMeta {
            cas: 7,
            flags: 3,
            exptime: 0,
            time: 2,
        };
        let mut slot = Slot::item(item_data(b"key", b"value"), 3, meta);
        assert!(slot.is_live() && !slot.was_fetched());
        assert_eq!(slot.key(), b"key");
        assert_eq!(slot.value(), b"value");
        assert_eq!(slot.data(), b"keyvalue");
        slot.bump(5);
        let old = slot.replace(item_data(b"key", b"v2"), ItemMeta { cas: 8, ..meta });
        assert_eq!(&*old, b"keyvalue");
        assert!(!slot.was_fetched());
        assert_eq!((slot.value(), slot.cas), (&b"v2"[..], 8));
        let data = slot.release(NIL);
        assert_eq!(&*data, b"keyv2");
        assert!(!slot.is_live());
    }

    #[test]
    fn only_the_second_fetch_moves_the_access_time() {
        let meta = ItemMeta {
            cas: 1,
            flags: 0,
            exptime: 0,
            time: 10,
        };
        let mut slot = Slot::item(item_data(b"k", b"v"), 1, meta);
        slot.bump(12);
        assert!(slot.was_fetched());
        assert_eq!(slot.time, 10);
        slot.bump(13);
        assert_eq!(slot.time, 13);
        slot.bump(20);
        assert_eq!(slot.time, 13);
    }

    #[test]
    fn stale_and_token_markers() {
        let meta = ItemMeta {
            cas: 1,
            flags: 0,
            exptime: 0,
            time: 2,
        };
        let mut slot = Slot::item(item_data(b"k", b"v"), 1, meta);
        assert!(!slot.is_stale() && !slot.token_sent() && !slot.key_is_binary());
        slot.mark_token_sent();
        slot.mark_stale();
        // Invalidating hands the refresh to the next client again.
        assert!(slot.is_stale() && !slot.token_sent());
        slot.mark_token_sent();
        assert!(slot.token_sent());
        slot.replace(item_data(b"k", b"w"), meta);
        assert!(!slot.is_stale() && !slot.token_sent());
        slot.set_markers(Markers {
            stale: true,
            token_sent: false,
            key_binary: true,
        });
        assert!(slot.is_stale() && !slot.token_sent() && slot.key_is_binary());
    }
}
