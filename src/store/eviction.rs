//! Eviction policies: which item a full stripe gives up first.
//!
//! A stripe tells its policy about every item that enters, is used or leaves, and asks it
//! for a victim when the store needs room. Each stripe runs its own policy over its own
//! items, under the stripe lock it already holds, so a get never touches anything shared
//! with other stripes. Policies allocate nothing per item: their queues are circular
//! lists threaded through the `links` of the [`Slot`]s (two `u32` arena indices), and
//! what they remember about an item fits in its 16-bit `policy` field.
//!
//! Four policies, chosen per store by [`EvictionStrategy`]:
//!
//! * [`Lru`], least recently used, promoted lazily like memcached's LRU: a hit only sets a
//!   bit in its own slot, and a marked item reaching the tail goes back to the head
//!   instead of being evicted. A get therefore writes nothing outside the item it reads
//!   (relinking on every hit would touch two neighbours and the list head, three more
//!   cache misses on a large cache), and an item read since it last reached the tail is
//!   never evicted before one that was not.
//! * [`Fifo`]: the oldest write goes first, whatever was read since; a get costs nothing.
//! * [`Lfu`]: the least frequently used goes first, oldest first among equals. Frequency
//!   is a logarithmic counter (class `c` grows to `c + 1` with probability `2^-(c-1)`, so
//!   16 classes cover tens of thousands of uses); items sit on one queue per class and,
//!   as in the LRU, a hit only updates its own slot: an item whose class grew moves up
//!   when the victim search reaches it. Counts age so that yesterday's popular keys do not
//!   stay forever: after eight uses per item every class drops by one, which is one
//!   splice of two queues and a shift of the queue heads, since classes are stored
//!   relative to an epoch.
//! * [`S3Fifo`], the hybrid (S3-FIFO, Yang et al., SOSP 2023): new items enter a small
//!   FIFO queue holding about a tenth of the stripe's bytes; one that is used again while
//!   there moves to the main queue when it reaches the tail, the others are evicted and
//!   their key hashes remembered in a ghost table; a key found in the ghost when stored
//!   again goes straight to the main queue. The main queue is a FIFO that gives items
//!   used since their last pass (up to three uses) another lap. One-hit wonders and scans
//!   thus leave through the small queue without disturbing the main one, and frequently
//!   used items stay; hits only bump a 2-bit counter in their slot. It was chosen over
//!   W-TinyLFU because it needs no frequency sketch (only a ghost of 2 bytes per slot)
//!   and no work on a hit beyond that counter.

use std::fmt;

use super::item::{Links, Slot, SlotIndex, NIL};

/// Which eviction policy a store runs.
///
/// ```
/// use rat_memcache::{EvictionStrategy, L1Config, RatMemCacheBuilder};
///
/// let l1 = L1Config { eviction_strategy: EvictionStrategy::Hybrid, ..Default::default() };
/// let cache = RatMemCacheBuilder::new().l1_config(l1).build().unwrap();
/// cache.set("k", "v").unwrap();
/// assert_eq!(EvictionStrategy::Hybrid.as_str(), "hybrid");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "server",
    derive(serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum EvictionStrategy {
    /// Least recently used goes first.
    #[default]
    Lru,
    /// Least frequently used goes first, with counts that age.
    Lfu,
    /// Oldest write goes first, whether read since or not.
    Fifo,
    /// S3-FIFO: resists scans and one-time keys, keeps what is used again (a
    /// configuration file may call it `"s3fifo"`).
    #[cfg_attr(feature = "server", serde(alias = "s3fifo"))]
    Hybrid,
}

impl EvictionStrategy {
    /// Every strategy, in the order they are listed in help texts.
    pub const ALL: [EvictionStrategy; 4] = [
        EvictionStrategy::Lru,
        EvictionStrategy::Lfu,
        EvictionStrategy::Fifo,
        EvictionStrategy::Hybrid,
    ];

    /// The name configuration files and `--eviction` use.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionStrategy::Lru => "lru",
            EvictionStrategy::Lfu => "lfu",
            EvictionStrategy::Fifo => "fifo",
            EvictionStrategy::Hybrid => "hybrid",
        }
    }

    /// The strategy a name stands for (`"s3fifo"` is the hybrid too).
    pub fn from_name(name: &str) -> Option<EvictionStrategy> {
        match name {
            "s3fifo" => Some(EvictionStrategy::Hybrid),
            _ => Self::ALL
                .into_iter()
                .find(|strategy| strategy.as_str() == name),
        }
    }
}

impl fmt::Display for EvictionStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The seam between a stripe and its eviction policy.
///
/// Every live item is known to the policy between `on_insert` and `on_remove`; `victim`
/// only ever names such an item. An item about to be rewritten is taken out with `hold`
/// (so making room never evicts it) and put back with `restore` once it has its new
/// contents.
pub trait EvictionPolicy {
    /// A new item entered the stripe; `hash` is its key's hash.
    fn on_insert(&mut self, slots: &mut [Slot], index: SlotIndex, hash: u64);
    /// An item was read or changed in place.
    fn on_access(&mut self, slots: &mut [Slot], index: SlotIndex);
    /// An item is leaving the stripe.
    fn on_remove(&mut self, slots: &mut [Slot], index: SlotIndex);
    /// The item `victim` named is about to be removed to make room (`on_remove` follows).
    fn on_evict(&mut self, _slots: &[Slot], _index: SlotIndex, _hash: u64) {}
    /// Takes an item out of reach while it is rewritten; its standing is kept for
    /// `restore`.
    fn hold(&mut self, slots: &mut [Slot], index: SlotIndex) {
        self.on_remove(slots, index);
    }
    /// Puts back a held item, now rewritten: a use of it.
    fn restore(&mut self, slots: &mut [Slot], index: SlotIndex);
    /// The item to give up next, if any (the policy may reorder its items to choose).
    fn victim(&mut self, slots: &mut [Slot]) -> Option<SlotIndex>;
    /// The arena was compacted: the item at old index `i` now sits at `new_index[i]`
    /// (items that left are never looked up).
    fn remap(&mut self, slots: &mut [Slot], new_index: &[SlotIndex]);
    /// Every item left at once.
    fn clear(&mut self);
}

/// A circular doubly-linked list threaded through slot links: `head` is the newest entry
/// and its `prev` the oldest, so both ends are one step away and moving the oldest entry
/// to the front is a change of `head` alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ring {
    head: SlotIndex,
}

impl Ring {
    const EMPTY: Ring = Ring { head: NIL };

    fn is_empty(self) -> bool {
        self.head == NIL
    }

    /// The oldest entry.
    fn tail(self, slots: &[Slot]) -> Option<SlotIndex> {
        (self.head != NIL).then(|| slots[self.head as usize].links.prev)
    }

    fn push_front(&mut self, slots: &mut [Slot], index: SlotIndex) {
        slots[index as usize].links = if self.head == NIL {
            Links {
                prev: index,
                next: index,
            }
        } else {
            let tail = slots[self.head as usize].links.prev;
            slots[tail as usize].links.next = index;
            slots[self.head as usize].links.prev = index;
            Links {
                prev: tail,
                next: self.head,
            }
        };
        self.head = index;
    }

    /// Takes `index`, which is on this ring, off it.
    fn unlink(&mut self, slots: &mut [Slot], index: SlotIndex) {
        let next = detach(slots, index);
        if self.head == index {
            self.head = next;
        }
    }

    /// Makes the oldest entry the newest.
    fn rotate(&mut self, slots: &[Slot]) {
        if let Some(tail) = self.tail(slots) {
            self.head = tail;
        }
    }

    /// Puts every entry of `newer` in front of this ring's, both keeping their order.
    fn absorb(&mut self, slots: &mut [Slot], newer: Ring) {
        if newer.is_empty() {
            return;
        }
        if !self.is_empty() {
            let (newer_head, old_head) = (newer.head as usize, self.head as usize);
            let newer_tail = slots[newer_head].links.prev;
            let old_tail = slots[old_head].links.prev;
            slots[newer_tail as usize].links.next = self.head;
            slots[old_head].links.prev = newer_tail;
            slots[old_tail as usize].links.next = newer.head;
            slots[newer_head].links.prev = old_tail;
        }
        self.head = newer.head;
    }

    fn remap(&mut self, new_index: &[SlotIndex]) {
        self.head = moved(new_index, self.head);
    }
}

/// Takes `index` off the ring it is on; returns the entry that followed it, or [`NIL`]
/// when it was alone.
fn detach(slots: &mut [Slot], index: SlotIndex) -> SlotIndex {
    let Links { prev, next } = std::mem::replace(&mut slots[index as usize].links, Links::UNLINKED);
    if next == index {
        return NIL;
    }
    slots[prev as usize].links.next = next;
    slots[next as usize].links.prev = prev;
    next
}

fn moved(new_index: &[SlotIndex], index: SlotIndex) -> SlotIndex {
    if index == NIL {
        NIL
    } else {
        new_index[index as usize]
    }
}

/// Renumbers the links of every live slot after a compaction.
fn remap_links(slots: &mut [Slot], new_index: &[SlotIndex]) {
    for slot in slots.iter_mut().filter(|slot| slot.is_live()) {
        slot.links = Links {
            prev: moved(new_index, slot.links.prev),
            next: moved(new_index, slot.links.next),
        };
    }
}

/// A stripe's policy, one of the four.
pub enum Policy {
    Lru(Lru),
    Lfu(Lfu),
    Fifo(Fifo),
    Hybrid(S3Fifo),
}

impl Policy {
    pub fn new(strategy: EvictionStrategy) -> Policy {
        match strategy {
            EvictionStrategy::Lru => Policy::Lru(Lru::default()),
            EvictionStrategy::Lfu => Policy::Lfu(Lfu::default()),
            EvictionStrategy::Fifo => Policy::Fifo(Fifo::default()),
            EvictionStrategy::Hybrid => Policy::Hybrid(S3Fifo::default()),
        }
    }
}

/// Forwards a call to the policy in use.
macro_rules! dispatch {
    ($self:ident, $policy:ident => $call:expr) => {
        match $self {
            Policy::Lru($policy) => $call,
            Policy::Lfu($policy) => $call,
            Policy::Fifo($policy) => $call,
            Policy::Hybrid($policy) => $call,
        }
    };
}

impl EvictionPolicy for Policy {
    #[inline]
    fn on_insert(&mut self, slots: &mut [Slot], index: SlotIndex, hash: u64) {
        dispatch!(self, policy => policy.on_insert(slots, index, hash))
    }
    #[inline]
    fn on_access(&mut self, slots: &mut [Slot], index: SlotIndex) {
        dispatch!(self, policy => policy.on_access(slots, index))
    }
    #[inline]
    fn on_remove(&mut self, slots: &mut [Slot], index: SlotIndex) {
        dispatch!(self, policy => policy.on_remove(slots, index))
    }
    fn on_evict(&mut self, slots: &[Slot], index: SlotIndex, hash: u64) {
        dispatch!(self, policy => policy.on_evict(slots, index, hash))
    }
    fn hold(&mut self, slots: &mut [Slot], index: SlotIndex) {
        dispatch!(self, policy => policy.hold(slots, index))
    }
    fn restore(&mut self, slots: &mut [Slot], index: SlotIndex) {
        dispatch!(self, policy => policy.restore(slots, index))
    }
    fn victim(&mut self, slots: &mut [Slot]) -> Option<SlotIndex> {
        dispatch!(self, policy => policy.victim(slots))
    }
    fn remap(&mut self, slots: &mut [Slot], new_index: &[SlotIndex]) {
        dispatch!(self, policy => policy.remap(slots, new_index))
    }
    fn clear(&mut self) {
        dispatch!(self, policy => policy.clear())
    }
}

/// The LRU's mark on an item used since the policy last looked at it.
const USED: u16 = 1;

/// Least recently used with lazy promotion: hits are marked in the slot and acted on at
/// the tail.
#[derive(Debug)]
pub struct Lru {
    ring: Ring,
}

impl Default for Lru {
    fn default() -> Self {
        Lru { ring: Ring::EMPTY }
    }
}

impl EvictionPolicy for Lru {
    fn on_insert(&mut self, slots: &mut [Slot], index: SlotIndex, _hash: u64) {
        self.restore(slots, index);
    }

    #[inline]
    fn on_access(&mut self, slots: &mut [Slot], index: SlotIndex) {
        // Written only when it changes: a hot item's slot then stays clean, and shared
        // between the cores that read it, instead of bouncing from one to the other.
        let slot = &mut slots[index as usize];
        if slot.policy & USED == 0 {
            slot.policy |= USED;
        }
    }

    fn on_remove(&mut self, slots: &mut [Slot], index: SlotIndex) {
        self.ring.unlink(slots, index);
    }

    fn restore(&mut self, slots: &mut [Slot], index: SlotIndex) {
        slots[index as usize].policy = 0;
        self.ring.push_front(slots, index);
    }

    fn victim(&mut self, slots: &mut [Slot]) -> Option<SlotIndex> {
        // Each marked item is unmarked and passed over once, so this ends within one lap.
        loop {
            let tail = self.ring.tail(slots)?;
            let slot = &mut slots[tail as usize];
            if slot.policy & USED == 0 {
                return Some(tail);
            }
            slot.policy &= !USED;
            self.ring.rotate(slots);
        }
    }

    fn remap(&mut self, slots: &mut [Slot], new_index: &[SlotIndex]) {
        remap_links(slots, new_index);
        self.ring.remap(new_index);
    }

    fn clear(&mut self) {
        *self = Lru::default();
    }
}

/// First in, first out: a rewrite counts as a new write, reads count for nothing.
#[derive(Debug)]
pub struct Fifo {
    ring: Ring,
}

impl Default for Fifo {
    fn default() -> Self {
        Fifo { ring: Ring::EMPTY }
    }
}

impl EvictionPolicy for Fifo {
    fn on_insert(&mut self, slots: &mut [Slot], index: SlotIndex, _hash: u64) {
        self.ring.push_front(slots, index);
    }

    #[inline]
    fn on_access(&mut self, _slots: &mut [Slot], _index: SlotIndex) {}

    fn on_remove(&mut self, slots: &mut [Slot], index: SlotIndex) {
        self.ring.unlink(slots, index);
    }

    fn restore(&mut self, slots: &mut [Slot], index: SlotIndex) {
        self.ring.push_front(slots, index);
    }

    fn victim(&mut self, slots: &mut [Slot]) -> Option<SlotIndex> {
        self.ring.tail(slots)
    }

    fn remap(&mut self, slots: &mut [Slot], new_index: &[SlotIndex]) {
        remap_links(slots, new_index);
        self.ring.remap(new_index);
    }

    fn clear(&mut self) {
        *self = Fifo::default();
    }
}

/// Frequency classes of the LFU; an item's class is about log2 of its recent uses.
const LFU_CLASSES: usize = 16;
/// The class a new item starts in: above items whose counts have aged to nothing.
const LFU_NEW_CLASS: usize = 1;
/// Uses per item after which every class drops by one.
const LFU_AGING_USES_PER_ITEM: u64 = 8;

/// Least frequently used with logarithmic, aging counts: one queue per frequency class,
/// each oldest-first.
///
/// An item's `policy` field holds `epoch + class` (wrapping), so aging everything by one
/// class is incrementing the epoch; the queues shift down with it.
#[derive(Debug)]
pub struct Lfu {
    classes: [Ring; LFU_CLASSES],
    epoch: u8,
    /// Uses since the last aging.
    uses: u64,
    items: u64,
    /// xorshift state for the counters' coin flips.
    rng: u64,
}

impl Default for Lfu {
    fn default() -> Self {
        Lfu {
            classes: [Ring::EMPTY; LFU_CLASSES],
            epoch: 0,
            uses: 0,
            items: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

impl Lfu {
    fn class(&self, slot: &Slot) -> usize {
        // An item not used for more than 240 agings may read as a higher class than it
        // has; it is then only kept a little longer than it should be.
        let class = usize::from((slot.policy as u8).wrapping_sub(self.epoch));
        if class < LFU_CLASSES {
            class
        } else {
            0
        }
    }

    fn set_class(&self, slot: &mut Slot, class: usize) {
        slot.policy = u16::from(self.epoch.wrapping_add(class as u8));
    }

    /// A coin that comes up with probability `2^-(class-1)` (always for classes 0 and 1).
    fn promote(&mut self, class: usize) -> bool {
        if class <= 1 {
            return true;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng & ((1 << (class - 1)) - 1) == 0
    }

    /// Every class drops by one: class 1 joins class 0 (newer than what was there).
    fn age(&mut self, slots: &mut [Slot]) {
        self.epoch = self.epoch.wrapping_add(1);
        let aged = self.classes[1];
        self.classes[0].absorb(slots, aged);
        self.classes.copy_within(2.., 1);
        self.classes[LFU_CLASSES - 1] = Ring::EMPTY;
        self.uses = 0;
    }
}

impl EvictionPolicy for Lfu {
    fn on_insert(&mut self, slots: &mut [Slot], index: SlotIndex, _hash: u64) {
        self.set_class(&mut slots[index as usize], LFU_NEW_CLASS);
        self.classes[LFU_NEW_CLASS].push_front(slots, index);
        self.items += 1;
    }

    #[inline]
    fn on_access(&mut self, slots: &mut [Slot], index: SlotIndex) {
        self.uses += 1;
        let class = self.class(&slots[index as usize]);
        if class + 1 < LFU_CLASSES && self.promote(class) {
            self.set_class(&mut slots[index as usize], class + 1);
        }
    }

    fn on_remove(&mut self, slots: &mut [Slot], index: SlotIndex) {
        let next = detach(slots, index);
        // Only a queue's head names its queue; the item is at most one of them.
        if let Some(ring) = self.classes.iter_mut().find(|ring| ring.head == index) {
            ring.head = next;
        }
        self.items -= 1;
    }

    fn restore(&mut self, slots: &mut [Slot], index: SlotIndex) {
        let class = self.class(&slots[index as usize]);
        self.classes[class].push_front(slots, index);
        self.items += 1;
        self.on_access(slots, index);
    }

    fn victim(&mut self, slots: &mut [Slot]) -> Option<SlotIndex> {
        if self.uses >= LFU_AGING_USES_PER_ITEM * self.items {
            self.age(slots);
        }
        // Items only ever move to higher classes here, so this ends.
        for listed in 0..LFU_CLASSES {
            while let Some(tail) = self.classes[listed].tail(slots) {
                let class = self.class(&slots[tail as usize]);
                if class <= listed {
                    return Some(tail);
                }
                self.classes[listed].unlink(slots, tail);
                self.classes[class].push_front(slots, tail);
            }
        }
        None
    }

    fn remap(&mut self, slots: &mut [Slot], new_index: &[SlotIndex]) {
        remap_links(slots, new_index);
        for ring in &mut self.classes {
            ring.remap(new_index);
        }
    }

    fn clear(&mut self) {
        *self = Lfu {
            rng: self.rng,
            ..Lfu::default()
        };
    }
}

/// S3-FIFO's use counter in an item's `policy` field (0 to 3).
const S3_USES: u16 = 0b11;
/// The item is on the main queue (otherwise on the small one).
const S3_MAIN: u16 = 0b100;
/// The small queue's share of the stripe's bytes, in percent.
const S3_SMALL_PERCENT: usize = 10;

/// S3-FIFO: a small probationary FIFO, a main FIFO with reinsertion, and a ghost of keys
/// evicted from the small queue.
#[derive(Debug)]
pub struct S3Fifo {
    small: Ring,
    main: Ring,
    small_bytes: usize,
    main_bytes: usize,
    ghost: Ghost,
}

impl Default for S3Fifo {
    fn default() -> Self {
        S3Fifo {
            small: Ring::EMPTY,
            main: Ring::EMPTY,
            small_bytes: 0,
            main_bytes: 0,
            ghost: Ghost::default(),
        }
    }
}

impl S3Fifo {
    /// Queues an item on the queue its `policy` field names.
    fn enqueue(&mut self, slots: &mut [Slot], index: SlotIndex) {
        let slot = &slots[index as usize];
        let cost = slot.cost();
        if slot.policy & S3_MAIN != 0 {
            self.main_bytes += cost;
            self.main.push_front(slots, index);
        } else {
            self.small_bytes += cost;
            self.small.push_front(slots, index);
        }
    }

    /// Evict from the small queue: it holds its share of the bytes or more, or it is all
    /// there is.
    fn small_is_due(&self) -> bool {
        !self.small.is_empty()
            && (self.main.is_empty()
                || self.small_bytes * 100
                    >= (self.small_bytes + self.main_bytes) * S3_SMALL_PERCENT)
    }
}

impl EvictionPolicy for S3Fifo {
    fn on_insert(&mut self, slots: &mut [Slot], index: SlotIndex, hash: u64) {
        self.ghost.fit(slots.len());
        slots[index as usize].policy = if self.ghost.take(hash) { S3_MAIN } else { 0 };
        self.enqueue(slots, index);
    }

    #[inline]
    fn on_access(&mut self, slots: &mut [Slot], index: SlotIndex) {
        let slot = &mut slots[index as usize];
        if slot.policy & S3_USES != S3_USES {
            slot.policy += 1;
        }
    }

    fn on_remove(&mut self, slots: &mut [Slot], index: SlotIndex) {
        let slot = &slots[index as usize];
        let cost = slot.cost();
        if slot.policy & S3_MAIN != 0 {
            self.main_bytes -= cost;
            self.main.unlink(slots, index);
        } else {
            self.small_bytes -= cost;
            self.small.unlink(slots, index);
        }
    }

    fn on_evict(&mut self, slots: &[Slot], index: SlotIndex, hash: u64) {
        if slots[index as usize].policy & S3_MAIN == 0 {
            self.ghost.insert(hash);
        }
    }

    fn restore(&mut self, slots: &mut [Slot], index: SlotIndex) {
        self.enqueue(slots, index);
        self.on_access(slots, index);
    }

    fn victim(&mut self, slots: &mut [Slot]) -> Option<SlotIndex> {
        // Each pass moves an item from small to main or takes a use off a main item, so
        // this ends.
        loop {
            if self.small_is_due() {
                let tail = self.small.tail(slots)?;
                if slots[tail as usize].policy & S3_USES == 0 {
                    return Some(tail);
                }
                // Used while on probation: it moves to the main queue, its uses spent.
                self.on_remove(slots, tail);
                slots[tail as usize].policy = S3_MAIN;
                self.enqueue(slots, tail);
            } else {
                let tail = self.main.tail(slots)?;
                let slot = &mut slots[tail as usize];
                if slot.policy & S3_USES == 0 {
                    return Some(tail);
                }
                slot.policy -= 1;
                self.main.rotate(slots);
            }
        }
    }

    fn remap(&mut self, slots: &mut [Slot], new_index: &[SlotIndex]) {
        remap_links(slots, new_index);
        self.small.remap(new_index);
        self.main.remap(new_index);
        self.ghost.shrink(slots.len());
    }

    fn clear(&mut self) {
        *self = S3Fifo::default();
    }
}

/// Bytes per ghost entry: the item cost in `item.rs` charges this per arena slot.
pub const GHOST_ENTRY_SIZE: usize = std::mem::size_of::<u16>();

/// Tags a ghost bucket holds, newest first.
const GHOST_WAYS: usize = 4;

/// Recently evicted keys, as 15-bit tags in buckets of four, about one tag per arena slot:
/// a key maps to one bucket, where it pushes out the bucket's oldest tag. It thus
/// remembers roughly the last as many evictions as the stripe has slots (as S3-FIFO's
/// ghost queue does), at 2 bytes per slot and no links.
#[derive(Debug, Default)]
struct Ghost {
    buckets: Vec<[u16; GHOST_WAYS]>,
}

impl Ghost {
    /// The bucket for `hash` and the tag it has there (never 0, which is empty).
    fn entry(&self, hash: u64) -> (usize, u16) {
        // The bucket comes from the mixed high bits, the tag from the low bits, which the
        // stripe choice leaves free.
        let mixed = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let bucket = (mixed * self.buckets.len() as u64) >> 32;
        (bucket as usize, hash as u16 | 1)
    }

    fn insert(&mut self, hash: u64) {
        if self.buckets.is_empty() {
            return;
        }
        let (bucket, tag) = self.entry(hash);
        let tags = &mut self.buckets[bucket];
        tags.copy_within(..GHOST_WAYS - 1, 1);
        tags[0] = tag;
    }

    /// Whether `hash` was evicted recently, forgetting it.
    fn take(&mut self, hash: u64) -> bool {
        if self.buckets.is_empty() {
            return false;
        }
        let (bucket, tag) = self.entry(hash);
        match self.buckets[bucket].iter_mut().find(|held| **held == tag) {
            Some(held) => {
                *held = 0;
                true
            }
            None => false,
        }
    }

    /// Grows the table with the arena, by the arena's own steps (forgetting what it held:
    /// the arena grows only while the stripe is filling, when little is evicted).
    fn fit(&mut self, arena_len: usize) {
        if arena_len > self.buckets.len() * GHOST_WAYS {
            self.buckets = vec![[0; GHOST_WAYS]; (arena_len + arena_len / 8).div_ceil(GHOST_WAYS)];
        }
    }

    /// Shrinks the table after the arena was compacted.
    fn shrink(&mut self, arena_len: usize) {
        if self.buckets.len() * GHOST_WAYS
            > (arena_len + arena_len / 8).next_multiple_of(GHOST_WAYS)
        {
            self.buckets = vec![[0; GHOST_WAYS]; arena_len.div_ceil(GHOST_WAYS)];
        }
    }
}

#[cfg(test)]
mod tests;
