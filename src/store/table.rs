//! A stripe's hash table: slot indices in cache-line buckets.
//!
//! A get's cost is mostly waiting for memory: the table, then the item's slot, then its key
//! and value, each a likely cache miss when the data set is larger than the CPU's caches.
//! This table keeps a key's candidates in one 64-byte line: twelve one-byte tags and the
//! twelve `u32` slot indices they stand for, so finding a key touches one line of table
//! before its slot. And because that line's address follows from the hash alone, a caller
//! that knows which keys come next can [`prefetch`] their lines before locking anything,
//! so the misses of a multiget or a pipelined batch overlap instead of queueing one after
//! another.
//!
//! Buckets are probed linearly. Each counts how many entries passed it while it was full
//! (`overflow`), so a lookup stops at the first bucket nothing passed, and a removal takes
//! back the counts its entry left on the way. The table holds at most 7/8 of its entries'
//! room, doubles when it would hold more, and is rebuilt (never shrunk in place) when the
//! arena is compacted.
//!
//! The table stores no hashes: callers hand a way to rehash an entry (from its slot's key)
//! to the operations that move entries.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::item::SlotIndex;

/// Entries in one bucket: twelve tags, a counter and twelve indices fill 64 bytes.
const BUCKET_ENTRIES: usize = 12;

/// A tag of 0 marks an empty entry.
const EMPTY: u8 = 0;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Bucket {
    tags: [u8; BUCKET_ENTRIES],
    /// Entries stored past this bucket whose probe went through it.
    overflow: u32,
    slots: [SlotIndex; BUCKET_ENTRIES],
}

const _: () = assert!(size_of::<Bucket>() == 64);

const EMPTY_BUCKET: Bucket = Bucket {
    tags: [EMPTY; BUCKET_ENTRIES],
    overflow: 0,
    slots: [0; BUCKET_ENTRIES],
};

impl Bucket {
    /// Bit i is set when entry i carries `tag`.
    #[inline]
    fn matches(&self, tag: u8) -> u32 {
        let mut mask = 0;
        for (i, &entry) in self.tags.iter().enumerate() {
            mask |= u32::from(entry == tag) << i;
        }
        mask
    }
}

/// What one item costs in the table at its lowest load, 7/16 (just after it doubled):
/// 64/12 bytes of bucket per entry × 16/7, rounded up.
pub const TABLE_COST: usize = 13;

/// The byte of the hash a bucket keeps to tell its entries apart: bits 32-39, below the
/// store's stripe bits and above any bucket index.
#[inline]
fn tag_of(hash: u64) -> u8 {
    match (hash >> 32) as u8 {
        EMPTY => 1,
        tag => tag,
    }
}

/// Where a key's table line lives, published for [`prefetch`] by whoever may move it: the
/// bucket array's address with the log2 of its bucket count in the low six bits (the
/// array is 64-byte aligned), or 0 for an empty table.
#[derive(Default)]
pub struct TableHint(AtomicUsize);

impl TableHint {
    fn publish(&self, buckets: &[Bucket]) {
        let hint = if buckets.is_empty() {
            0
        } else {
            buckets.as_ptr() as usize | buckets.len().trailing_zeros() as usize
        };
        self.0.store(hint, Ordering::Relaxed);
    }

    /// Asks the CPU to start loading the bucket `hash` probes first. Reads only the
    /// published hint, never the table: the table may be moving meanwhile, and a prefetch
    /// of memory it just left is harmless (a prefetch never faults).
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let hint = self.0.load(Ordering::Relaxed);
        if hint == 0 {
            return;
        }
        let mask = (1usize << (hint & 63)) - 1;
        let line = (hint & !63).wrapping_add((hash as usize & mask) * size_of::<Bucket>());
        prefetch_line(line as *const u8);
    }
}

/// Asks the CPU to start loading the cache line holding `address`.
#[inline]
pub(super) fn prefetch_line(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it never reads or faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Slot indices keyed by hash; see the module docs.
#[derive(Default)]
pub struct SlotTable {
    buckets: Vec<Bucket>,
    len: usize,
}

impl SlotTable {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The entry for `hash` that `is_key` accepts.
    #[inline]
    pub fn find(&self, hash: u64, mut is_key: impl FnMut(SlotIndex) -> bool) -> Option<SlotIndex> {
        if self.buckets.is_empty() {
            return None;
        }
        let tag = tag_of(hash);
        let mask = self.mask();
        let mut position = hash as usize & mask;
        // Every bucket may have been passed by some entry; after all of them, stop.
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[position];
            let mut candidates = bucket.matches(tag);
            while candidates != 0 {
                let entry = candidates.trailing_zeros() as usize;
                if is_key(bucket.slots[entry]) {
                    return Some(bucket.slots[entry]);
                }
                candidates &= candidates - 1;
            }
            if bucket.overflow == 0 {
                return None;
            }
            position = (position + 1) & mask;
        }
        None
    }

    /// The first entry of `hash`'s home bucket that carries its tag: the slot a lookup of
    /// `hash` will most likely read, worth loading ahead of it.
    #[inline]
    pub fn likely(&self, hash: u64) -> Option<SlotIndex> {
        let bucket = self
            .buckets
            .get(hash as usize & self.buckets.len().wrapping_sub(1))?;
        let candidates = bucket.matches(tag_of(hash));
        (candidates != 0).then(|| bucket.slots[candidates.trailing_zeros() as usize])
    }

    /// Adds `index` under `hash`; the caller knows the key is not in the table. Grows the
    /// table (rehashing every entry with `rehash`) when it is 7/8 full, and then publishes
    /// its new place in `hint`.
    pub fn insert(
        &mut self,
        hash: u64,
        index: SlotIndex,
        hint: &TableHint,
        rehash: impl Fn(SlotIndex) -> u64,
    ) {
        if (self.len + 1) * 8 > self.buckets.len() * BUCKET_ENTRIES * 7 {
            let buckets = (self.buckets.len() * 2).max(1);
            self.rebuild(buckets, &rehash);
            hint.publish(&self.buckets);
        }
        self.place(hash, index);
        self.len += 1;
    }

    /// Puts an entry into the first bucket with room along its probe; there is room, as the
    /// table is never more than 7/8 full.
    fn place(&mut self, hash: u64, index: SlotIndex) {
        let tag = tag_of(hash);
        let mask = self.mask();
        let mut position = hash as usize & mask;
        loop {
            let bucket = &mut self.buckets[position];
            let free = bucket.matches(EMPTY);
            if free != 0 {
                let entry = free.trailing_zeros() as usize;
                bucket.tags[entry] = tag;
                bucket.slots[entry] = index;
                return;
            }
            bucket.overflow += 1;
            position = (position + 1) & mask;
        }
    }

    /// Removes `index`, stored under `hash`. Returns whether it was there.
    pub fn remove(&mut self, hash: u64, index: SlotIndex) -> bool {
        if self.buckets.is_empty() {
            return false;
        }
        let tag = tag_of(hash);
        let mask = self.mask();
        let home = hash as usize & mask;
        let mut position = home;
        for _ in 0..self.buckets.len() {
            let bucket = &mut self.buckets[position];
            let mut candidates = bucket.matches(tag);
            while candidates != 0 {
                let entry = candidates.trailing_zeros() as usize;
                if bucket.slots[entry] == index {
                    bucket.tags[entry] = EMPTY;
                    self.len -= 1;
                    // Take back what this entry's probe counted on its way here.
                    let mut passed = home;
                    while passed != position {
                        self.buckets[passed].overflow -= 1;
                        passed = (passed + 1) & mask;
                    }
                    return true;
                }
                candidates &= candidates - 1;
            }
            if bucket.overflow == 0 {
                return false;
            }
            position = (position + 1) & mask;
        }
        false
    }

    /// Every entry, in table order.
    pub fn iter(&self) -> impl Iterator<Item = SlotIndex> + '_ {
        self.buckets.iter().flat_map(|bucket| {
            bucket
                .tags
                .iter()
                .zip(bucket.slots)
                .filter(|&(&tag, _)| tag != EMPTY)
                .map(|(_, index)| index)
        })
    }

    /// Renumbers every entry (after the arena moved its slots); hashes are unchanged.
    pub fn renumber(&mut self, new_index: impl Fn(SlotIndex) -> SlotIndex) {
        for bucket in &mut self.buckets {
            for (tag, index) in bucket.tags.iter().zip(bucket.slots.iter_mut()) {
                if *tag != EMPTY {
                    *index = new_index(*index);
                }
            }
        }
    }

    /// Keeps only the entries `keep` accepts, rebuilt at the size they need.
    pub fn retain(
        &mut self,
        hint: &TableHint,
        mut keep: impl FnMut(SlotIndex) -> bool,
        rehash: impl Fn(SlotIndex) -> u64,
    ) {
        let kept: Vec<SlotIndex> = self.iter().filter(|&index| keep(index)).collect();
        self.buckets = vec![EMPTY_BUCKET; buckets_for(kept.len())];
        self.len = 0;
        for index in kept {
            self.place(rehash(index), index);
            self.len += 1;
        }
        hint.publish(&self.buckets);
    }

    /// Rebuilds the table at the smallest size that holds its entries, if that is smaller.
    pub fn shrink_to_fit(&mut self, hint: &TableHint, rehash: impl Fn(SlotIndex) -> u64) {
        let buckets = buckets_for(self.len);
        if buckets < self.buckets.len() {
            self.rebuild(buckets, &rehash);
            hint.publish(&self.buckets);
        }
    }

    fn rebuild(&mut self, buckets: usize, rehash: &impl Fn(SlotIndex) -> u64) {
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY_BUCKET; buckets]);
        for bucket in &old {
            for (&tag, &index) in bucket.tags.iter().zip(&bucket.slots) {
                if tag != EMPTY {
                    self.place(rehash(index), index);
                }
            }
        }
    }
}

/// The fewest buckets (a power of two, none for no entries) that hold `entries` at 7/8.
fn buckets_for(entries: usize) -> usize {
    if entries == 0 {
        return 0;
    }
    (entries * 8)
        .div_ceil(BUCKET_ENTRIES * 7)
        .next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;
    use std::collections::HashMap;

    /// A table driven against a map of index → hash, checking every entry is found under
    /// its own hash and nothing else is.
    struct Model {
        table: SlotTable,
        hint: TableHint,
        hashes: HashMap<SlotIndex, u64>,
    }

    impl Model {
        fn new() -> Model {
            Model {
                table: SlotTable::default(),
                hint: TableHint::default(),
                hashes: HashMap::new(),
            }
        }

        fn insert(&mut self, index: SlotIndex, hash: u64) {
            let hashes = &self.hashes;
            self.table
                .insert(hash, index, &self.hint, |other| hashes[&other]);
            self.hashes.insert(index, hash);
        }

        fn remove(&mut self, index: SlotIndex) {
            let hash = self.hashes.remove(&index).unwrap();
            assert!(self.table.remove(hash, index), "entry {index} was there");
        }

        fn check(&self) {
            assert_eq!(self.table.len(), self.hashes.len());
            for (&index, &hash) in &self.hashes {
                assert_eq!(self.table.find(hash, |other| other == index), Some(index));
            }
            let mut listed: Vec<_> = self.table.iter().collect();
            listed.sort_unstable();
            let mut expected: Vec<_> = self.hashes.keys().copied().collect();
            expected.sort_unstable();
            assert_eq!(listed, expected);
            // Overflow counts are exactly the probes that passed each bucket.
            let mask = self.table.buckets.len().wrapping_sub(1);
            let mut passed = vec![0u32; self.table.buckets.len()];
            for (position, bucket) in self.table.buckets.iter().enumerate() {
                for (&tag, index) in bucket.tags.iter().zip(bucket.slots) {
                    if tag == EMPTY {
                        continue;
                    }
                    let mut at = self.hashes[&index] as usize & mask;
                    while at != position {
                        passed[at] += 1;
                        at = (at + 1) & mask;
                    }
                }
            }
            let counted: Vec<u32> = self.table.buckets.iter().map(|b| b.overflow).collect();
            assert_eq!(counted, passed);
        }
    }

    #[test]
    fn finds_what_was_inserted_and_not_what_was_removed() {
        let mut model = Model::new();
        for index in 0..1000 {
            model.insert(index, u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        model.check();
        for index in (0..1000).step_by(3) {
            model.remove(index);
        }
        model.check();
        let hash = 3u64.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        assert_eq!(model.table.find(hash, |other| other == 3), None);
    }

    #[test]
    fn colliding_hashes_overflow_into_later_buckets_and_come_back() {
        // Every entry has the same home bucket and tag: the worst case.
        let mut model = Model::new();
        for index in 0..200 {
            model.insert(index, 0x5_0000_0007);
        }
        model.check();
        assert!(model.table.buckets[7 & (model.table.buckets.len() - 1)].overflow > 0);
        for index in 0..150 {
            model.remove(index);
        }
        model.check();
        for index in 150..200 {
            model.remove(index);
        }
        model.check();
        assert!(model
            .table
            .buckets
            .iter()
            .all(|bucket| bucket.overflow == 0));
    }

    #[test]
    fn random_inserts_and_removes_keep_every_count_exact() {
        let mut rng = TestRng::new(7);
        let mut model = Model::new();
        let mut next = 0;
        for round in 0..20_000 {
            if model.hashes.is_empty() || rng.below(3) != 0 {
                // Few distinct home bits, so buckets fill and overflow often.
                let hash = (rng.next() & !0xFFFF) | rng.below(64);
                model.insert(next, hash);
                next += 1;
            } else {
                let victim = *model.hashes.keys().next().unwrap();
                model.remove(victim);
            }
            if round % 997 == 0 {
                model.check();
            }
        }
        model.check();
    }

    #[test]
    fn a_missing_key_is_not_found_even_when_every_bucket_was_passed() {
        let mut model = Model::new();
        // Two buckets: thirteen entries from bucket 0 put one into bucket 1.
        for index in 0..13 {
            model.insert(index, 0);
        }
        assert_eq!(model.table.buckets.len(), 2);
        for index in 0..4 {
            model.remove(index);
        }
        // Bucket 1 fills from its own home, and the next one passes it into bucket 0.
        for index in 100..112 {
            model.insert(index, 1);
        }
        assert_eq!(model.table.buckets.len(), 2);
        model.check();
        assert!(model.table.buckets.iter().all(|bucket| bucket.overflow > 0));
        for hash in [0, 1, 1 << 32, (7 << 32) | 1] {
            assert_eq!(model.table.find(hash, |_| false), None);
        }
    }

    #[test]
    fn retain_and_shrink_rebuild_smaller_and_publish_the_new_place() {
        let mut model = Model::new();
        for index in 0..5000 {
            model.insert(index, u64::from(index).wrapping_mul(0xD6E8_FEB8_6659_FD93));
        }
        let before = model.table.buckets.len();
        let hashes = model.hashes.clone();
        model
            .table
            .retain(&model.hint, |index| index % 10 == 0, |index| hashes[&index]);
        model.hashes.retain(|index, _| index % 10 == 0);
        model.check();
        assert!(model.table.buckets.len() < before);
        let published = model.hint.0.load(Ordering::Relaxed);
        assert_eq!(published & !63, model.table.buckets.as_ptr() as usize);
        assert_eq!(1 << (published & 63), model.table.buckets.len());

        for index in (0..5000).step_by(10).skip(10) {
            model.remove(index);
        }
        let hashes = model.hashes.clone();
        model
            .table
            .shrink_to_fit(&model.hint, |index| hashes[&index]);
        model.check();
        assert_eq!(model.table.buckets.len(), buckets_for(10));
        model.table.retain(&model.hint, |_| false, |_| 0);
        assert_eq!(model.hint.0.load(Ordering::Relaxed), 0);
        model.hashes.clear();
        model.check();
    }

    #[test]
    fn renumbering_keeps_entries_findable_under_their_new_numbers() {
        let mut model = Model::new();
        for index in 0..300 {
            model.insert(index, u64::from(index) << 20 | 0xABCD_0000_0000);
        }
        model.table.renumber(|index| index + 1000);
        model.hashes = model.hashes.iter().map(|(&i, &h)| (i + 1000, h)).collect();
        model.check();
    }

    #[test]
    fn bucket_counts_follow_the_load_limit() {
        assert_eq!(buckets_for(0), 0);
        assert_eq!(buckets_for(1), 1);
        assert_eq!(buckets_for(10), 1);
        assert_eq!(buckets_for(11), 2);
        assert_eq!(buckets_for(21), 2);
        assert_eq!(buckets_for(22), 4);
    }
}
