//! One stripe of the store: a hash table of slot indices over an arena of slots.
//!
//! A [`Shard`] is only ever used under its stripe's lock, so nothing in it is atomic
//! except the store-wide budget and CAS counter it is handed. The table stores `u32` slot
//! indices and compares keys through the arena, so a key is stored once, inside its item.
//!
//! Operations that may need memory return `Err(shortfall)` when this stripe cannot evict
//! enough by itself; the store then drops the lock, evicts from other stripes, reserves
//! the shortfall on the caller's behalf (`prepaid`) and runs the operation again. Nothing
//! observable has changed when an operation returns `Err`.

use super::budget::{Charge, Shortage};
use super::clock::{Expiry, RelTime};
use super::eviction::{EvictionPolicy, EvictionStrategy, Policy};
use super::item::{
    compact_arena, item_cost, item_data, memcached_item_size, ItemMeta, Markers, Slot, SlotIndex,
    NIL,
};
use super::stats::ShardCounters;
use super::table::{prefetch_line, SlotTable};
use super::{
    DeleteOutcome, DeltaError, ItemView, MetaEntry, Shared, StoreMode, StoreOptions, StoreOutcome,
};
use crate::ascii::{format_u64, parse_u64, MAX_DIGITS};

/// A stripe whose arena is at least this long is compacted once more than an eighth of it
/// is free (smaller arenas cost at most 12 KiB of free slots each).
const COMPACT_MIN_SLOTS: usize = 256;

/// How much of an item [`Shard::prefetch_item`] loads: a short item whole, the start
/// of a long one (the copy that follows streams the rest).
const PREFETCH_ITEM_BYTES: usize = 192;

/// The smallest step by which an arena grows (it otherwise grows by an eighth).
const MIN_ARENA_GROWTH: usize = 16;

/// The store's clock and flush state, read once per request before taking the lock.
#[derive(Clone, Copy, Debug)]
pub struct Moment {
    pub now: RelTime,
    /// Items stored at or before this time are flushed; 0 when no flush is in effect.
    pub oldest_live: RelTime,
    /// Items whose CAS is below this are flushed (set by immediate flushes); 0 = none.
    pub oldest_cas: u64,
}

/// Why an item that is still in the table must not be seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gone {
    Expired,
    Flushed,
}

impl Moment {
    /// memcached's `item_is_flushed` and expiry checks, flush first as memcached does.
    #[inline]
    fn gone(&self, slot: &Slot) -> Option<Gone> {
        if self.oldest_live != 0 && (slot.time <= self.oldest_live || slot.cas < self.oldest_cas) {
            Some(Gone::Flushed)
        } else if Expiry::from_rel_time(slot.exptime).has_passed(self.now) {
            Some(Gone::Expired)
        } else {
            None
        }
    }
}

/// Who is looking an item up: only gets count expired and flushed hits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Get,
    Other,
}

/// A set/add/replace/append/prepend/cas as the shard sees it.
pub struct StoreRequest<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: Expiry,
    pub value: &'a [u8],
    /// `key` followed by `value`, built before the lock was taken; used by every mode but
    /// append and prepend, and kept for the next attempt when one fails for want of room.
    pub data: Option<Box<[u8]>>,
    pub options: StoreOptions,
}

/// A delete's conditions: the classic commands' plain delete, the binary protocol's
/// CAS-conditional one, and the meta protocol's, which may invalidate instead.
pub struct Deletion {
    /// The item's CAS must be this.
    pub compare: Option<u64>,
    /// Keep the item, marked stale, with this new expiry if any.
    pub invalidate: Option<Option<Expiry>>,
    /// Whether a miss on an expired or flushed item counts as a get's.
    pub by: Lookup,
}

/// What an incr or decr did, for the caller to look at the item afterwards.
pub struct Arith {
    pub index: SlotIndex,
    pub value: u64,
    pub created: bool,
    /// The number outgrew the item, which was replaced by a new one; the caller's view is
    /// of the item it replaced, whose expiry changes go nowhere (as in memcached).
    pub replaced: bool,
}

/// An incr or decr: incr wraps at 2^64, decr stops at 0.
#[derive(Clone, Copy, Debug)]
pub enum Delta {
    Incr(u64),
    Decr(u64),
}

/// What became of an item offered to [`Shard::adopt`].
#[cfg(feature = "l2")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    Adopted,
    /// Another thread put the key into L1 meanwhile.
    Present,
    /// The key changed since it was read, or there was nothing to adopt.
    Skipped,
    /// There was no memory for it.
    NoRoom,
}

/// How far a sweep of one stripe got.
pub struct SweepProgress {
    pub removed: usize,
    /// Where to continue in this stripe, or `None` when its end was reached.
    pub next: Option<usize>,
}

/// One stripe's items.
pub struct Shard {
    /// This stripe's number: where it publishes its table's place in `Shared`.
    stripe: usize,
    table: SlotTable,
    slots: Vec<Slot>,
    free_head: SlotIndex,
    policy: Policy,
    counters: ShardCounters,
}

impl Shard {
    pub fn new(stripe: usize, strategy: EvictionStrategy) -> Shard {
        Shard {
            stripe,
            table: SlotTable::default(),
            slots: Vec::new(),
            free_head: NIL,
            policy: Policy::new(strategy),
            counters: ShardCounters::default(),
        }
    }

    pub fn counters(&self) -> &ShardCounters {
        &self.counters
    }

    /// Slots in the arena, live or free.
    #[cfg(test)]
    pub fn arena_len(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn find(&self, hash: u64, key: &[u8]) -> Option<SlotIndex> {
        let slots = &self.slots;
        self.table
            .find(hash, |index| slots[index as usize].key() == key)
    }

    /// Starts loading the slot a lookup of `hash` will most likely read (its table line
    /// should be loaded already).
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        if let Some(slot) = self.likely_slot(hash) {
            // A 48-byte slot straddles two cache lines half the time.
            let start: *const u8 = (slot as *const Slot).cast();
            prefetch_line(start);
            prefetch_line(start.wrapping_add(size_of::<Slot>() - 1));
        }
    }

    /// Starts loading the key and the first bytes of the value of the item a lookup of
    /// `hash` will most likely read (its slot should be loaded already).
    #[inline]
    pub fn prefetch_item(&self, hash: u64) {
        if let Some(slot) = self.likely_slot(hash) {
            let data = slot.data();
            let start = data.as_ptr() as usize;
            let end = start + data.len().min(PREFETCH_ITEM_BYTES);
            // Every line the bytes touch: an item starts anywhere in its first one.
            for line in (start & !63..end).step_by(64) {
                prefetch_line(line as *const u8);
            }
        }
    }

    #[inline]
    fn likely_slot(&self, hash: u64) -> Option<&Slot> {
        self.slots.get(self.table.likely(hash)? as usize)
    }

    /// Finds a visible item; an expired or flushed one is removed on the way.
    fn lookup(
        &mut self,
        shared: &Shared,
        hash: u64,
        key: &[u8],
        moment: &Moment,
        by: Lookup,
    ) -> Option<SlotIndex> {
        let index = self.find(hash, key)?;
        let Some(gone) = moment.gone(&self.slots[index as usize]) else {
            return Some(index);
        };
        if by == Lookup::Get {
            match gone {
                Gone::Expired => self.counters.get_expired += 1,
                Gone::Flushed => self.counters.get_flushed += 1,
            }
        }
        if !self.slots[index as usize].was_fetched() {
            self.counters.expired_unfetched += 1;
        }
        self.unlink(shared, hash, index);
        None
    }

    /// get / gets / gat / gats: marks the item fetched, bumps it, and lets `read` see it.
    pub fn get<R>(
        &mut self,
        shared: &Shared,
        hash: u64,
        key: &[u8],
        moment: &Moment,
        touch: Option<Expiry>,
        read: impl FnOnce(ItemView<'_>) -> R,
    ) -> Option<R> {
        let index = self.lookup(shared, hash, key, moment, Lookup::Get)?;
        self.policy.on_access(&mut self.slots, index);
        let slot = &mut self.slots[index as usize];
        if let Some(exptime) = touch {
            slot.exptime = exptime.rel_time();
        }
        slot.bump(moment.now);
        Some(read(ItemView {
            key: slot.key(),
            value: slot.value(),
            flags: slot.flags,
            cas: if shared.cas_enabled { slot.cas } else { 0 },
        }))
    }

    pub fn touch(
        &mut self,
        shared: &Shared,
        hash: u64,
        key: &[u8],
        exptime: Expiry,
        moment: &Moment,
    ) -> bool {
        let Some(index) = self.lookup(shared, hash, key, moment, Lookup::Other) else {
            return false;
        };
        self.policy.on_access(&mut self.slots, index);
        let slot = &mut self.slots[index as usize];
        slot.exptime = exptime.rel_time();
        slot.bump(moment.now);
        true
    }

    /// A meta get: finds the item (or, with `vivify`, creates an empty one) and lets
    /// `read` look at it and change its expiry and refresh markers; then bumps it unless
    /// told not to. `read` runs at most once, on the attempt that succeeds.
    #[allow(clippy::too_many_arguments)]
    pub fn meta_get<R>(
        &mut self,
        shared: &Shared,
        hash: u64,
        key: &[u8],
        moment: &Moment,
        prepaid: &mut Charge,
        vivify: bool,
        bump: bool,
        read: &mut Option<impl FnOnce(&mut MetaEntry<'_>) -> R>,
    ) -> Result<Option<R>, Charge> {
        let (index, created) = match self.lookup(shared, hash, key, moment, Lookup::Get) {
            Some(index) => (index, false),
            None if vivify => match self.create(shared, hash, key, b"", moment, prepaid)? {
                Some(index) => (index, true),
                None => return Ok(None),
            },
            None => return Ok(None),
        };
        let Some(read) = read.take() else {
            return Ok(None);
        };
        let slot = &mut self.slots[index as usize];
        let mut entry = MetaEntry::new(slot, moment.now, shared.cas_enabled, created);
        let result = read(&mut entry);
        let bump_allowed = entry.finish();
        if bump && bump_allowed {
            self.policy.on_access(&mut self.slots, index);
            self.slots[index as usize].bump(moment.now);
        }
        Ok(Some(result))
    }

    /// Links a new item with flags 0 and no expiry (a meta command's auto-created item).
    /// `Ok(None)` when it could never fit.
    fn create(
        &mut self,
        shared: &Shared,
        hash: u64,
        key: &[u8],
        value: &[u8],
        moment: &Moment,
        prepaid: &mut Charge,
    ) -> Result<Option<SlotIndex>, Charge> {
        let cost = item_cost(key.len() + value.len());
        let need = Charge {
            bytes: cost,
            entries: 1,
        };
        if !shared.budget.can_ever_fit(need) {
            return Ok(None);
        }
        self.make_room(shared, moment, need, prepaid)?;
        let meta = ItemMeta {
            cas: shared.next_cas(),
            flags: 0,
            exptime: 0,
            time: moment.now,
        };
        let slot = Slot::item(item_data(key, value), key.len(), meta);
        let index = self.link(shared, hash, slot);
        self.counters.total_items += 1;
        Ok(Some(index))
    }

    /// Deletes a visible item, or with `invalidate` marks it stale under a new CAS (and,
    /// given one, a new expiry). `compare` must match the item's CAS when given.
    pub fn delete(
        &mut self,
        shared: &Shared,
        hash: u64,
        key: &[u8],
        moment: &Moment,
        deletion: Deletion,
    ) -> DeleteOutcome {
        let Some(index) = self.lookup(shared, hash, key, moment, deletion.by) else {
            return DeleteOutcome::NotFound;
        };
        let slot = &mut self.slots[index as usize];
        if deletion
            .compare
            .is_some_and(|cas| cas != visible_cas(shared, slot))
        {
            return DeleteOutcome::Exists;
        }
        match deletion.invalidate {
            Some(exptime) => {
                if let Some(exptime) = exptime {
                    slot.exptime = exptime.rel_time();
                }
                slot.mark_stale();
                slot.cas = shared.next_cas();
                DeleteOutcome::Invalidated
            }
            None => {
                self.unlink(shared, hash, index);
                self.maybe_compact(shared);
                DeleteOutcome::Deleted
            }
        }
    }

    /// Removes the item under `key` whatever its state (a failed set must not leave stale
    /// data behind).
    pub fn remove(&mut self, shared: &Shared, hash: u64, key: &[u8]) {
        if let Some(index) = self.find(hash, key) {
            self.unlink(shared, hash, index);
        }
    }

    /// Runs a storage command; on success also returns the new item's CAS (0 when CAS is
    /// off).
    pub fn store(
        &mut self,
        shared: &Shared,
        hash: u64,
        request: &mut StoreRequest<'_>,
        moment: &Moment,
        prepaid: &mut Charge,
    ) -> Result<(StoreOutcome, u64), Charge> {
        let key = request.key;
        let existing = self.lookup(shared, hash, key, moment, Lookup::Other);
        match (request.mode, existing) {
            (StoreMode::Add, Some(index)) => {
                // memcached bumps the item an add failed against.
                self.policy.on_access(&mut self.slots, index);
                self.slots[index as usize].time = moment.now;
                return Ok((StoreOutcome::NotStored, 0));
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return Ok((StoreOutcome::NotStored, 0));
            }
            (StoreMode::Cas(_), None) => return Ok((StoreOutcome::NotFound, 0)),
            (StoreMode::Cas(expected), Some(index)) => {
                // memcached: 0 never matches; with `stale_ok` an older CAS is let through
                // (and stores a stale item, below).
                let current = visible_cas(shared, &self.slots[index as usize]);
                let matches = expected != 0 && expected == current;
                let older = expected != 0 && request.options.stale_ok && expected < current;
                if !matches && !older {
                    return Ok((StoreOutcome::Exists, 0));
                }
            }
            (StoreMode::Append | StoreMode::Prepend, Some(index)) => {
                let expected = request.options.compare_cas;
                if expected != 0 && expected != visible_cas(shared, &self.slots[index as usize]) {
                    return Ok((StoreOutcome::Exists, 0));
                }
            }
            _ => {}
        }
        let mut markers = Markers {
            key_binary: request.options.key_binary && !concatenating(request.mode),
            ..Markers::default()
        };

        let concatenating = concatenating(request.mode);
        let (data_len, flags, mut exptime) = match existing {
            Some(index) if concatenating => {
                // Append and prepend keep the item's flags and expiry.
                let old = &self.slots[index as usize];
                let value_len = old.value().len() + request.value.len();
                let size = memcached_item_size(key.len(), old.flags, value_len, shared.cas_enabled);
                if size > shared.max_item_size {
                    return Ok((StoreOutcome::NotStored, 0));
                }
                (key.len() + value_len, old.flags, old.exptime)
            }
            _ => (
                key.len() + request.value.len(),
                request.flags,
                request.exptime.rel_time(),
            ),
        };
        if let (StoreMode::Cas(expected), Some(index)) = (request.mode, existing) {
            let old = &self.slots[index as usize];
            if expected < visible_cas(shared, old) {
                // An older version written back over an invalidated item: stored, but
                // stale, keeping the item's expiry and refresh marker.
                exptime = old.exptime;
                markers.stale = true;
                markers.token_sent = old.token_sent();
            }
        }

        let new_cost = item_cost(data_len);
        let old_cost = existing.map_or(0, |index| self.slots[index as usize].cost());
        let need = Charge {
            bytes: new_cost.saturating_sub(old_cost),
            entries: usize::from(existing.is_none()),
        };
        let no_room = if concatenating {
            // memcached answers NOT_STORED when it cannot allocate the combined item.
            StoreOutcome::NotStored
        } else {
            StoreOutcome::NoMemory
        };
        if !shared.budget.can_ever_fit(Charge {
            bytes: new_cost,
            entries: 1,
        }) {
            return Ok((no_room, 0));
        }
        match existing {
            Some(index) => self.make_room_for_rewrite(shared, moment, need, prepaid, index)?,
            None => self.make_room(shared, moment, need, prepaid)?,
        }

        let cas = shared.next_cas();
        let meta = ItemMeta {
            cas,
            flags,
            exptime,
            time: moment.now,
        };
        let index = match existing {
            Some(index) => {
                let slot = &self.slots[index as usize];
                let data = match request.mode {
                    StoreMode::Append => concat(&[slot.data(), request.value]),
                    StoreMode::Prepend => concat(&[key, request.value, slot.value()]),
                    _ => request
                        .data
                        .take()
                        .unwrap_or_else(|| item_data(key, request.value)),
                };
                drop(self.slots[index as usize].replace(data, meta));
                self.policy.restore(&mut self.slots, index);
                if old_cost > new_cost {
                    shared.budget.release(Charge {
                        bytes: old_cost - new_cost,
                        entries: 0,
                    });
                }
                index
            }
            None => {
                let data = request
                    .data
                    .take()
                    .unwrap_or_else(|| item_data(key, request.value));
                self.link(shared, hash, Slot::item(data, key.len(), meta))
            }
        };
        self.slots[index as usize].set_markers(markers);
        self.counters.total_items += 1;
        // Making room may have emptied much of the arena.
        self.maybe_compact(shared);
        let cas = if shared.cas_enabled { cas } else { 0 };
        Ok((StoreOutcome::Stored, cas))
    }

    /// incr/decr and meta arithmetic. `compare` (0 = none) must match the item's CAS;
    /// with `create`, a missing item is created holding that number (and left unchanged).
    /// A result no longer than the old value is written in place, padded with spaces;
    /// a longer one replaces the item, keeping its flags and expiry.
    #[allow(clippy::too_many_arguments)]
    pub fn arith(
        &mut self,
        shared: &Shared,
        hash: u64,
        key: &[u8],
        delta: Delta,
        compare: u64,
        create: Option<u64>,
        moment: &Moment,
        prepaid: &mut Charge,
    ) -> Result<Result<Arith, DeltaError>, Charge> {
        let Some(index) = self.lookup(shared, hash, key, moment, Lookup::Get) else {
            let Some(initial) = create else {
                return Ok(Err(DeltaError::NotFound));
            };
            let mut buf = [0; MAX_DIGITS];
            let digits = format_u64(initial, &mut buf);
            return Ok(
                match self.create(shared, hash, key, digits, moment, prepaid)? {
                    Some(index) => Ok(Arith {
                        index,
                        value: initial,
                        created: true,
                        replaced: false,
                    }),
                    None => Err(DeltaError::NoMemory),
                },
            );
        };
        let slot = &self.slots[index as usize];
        // memcached's order: an empty value, then the CAS, then the number.
        if slot.value().is_empty() {
            return Ok(Err(DeltaError::NonNumeric));
        }
        if compare != 0 && compare != visible_cas(shared, slot) {
            return Ok(Err(DeltaError::Exists));
        }
        let Some(current) = parse_u64(slot.value()) else {
            return Ok(Err(DeltaError::NonNumeric));
        };
        let updated = match delta {
            Delta::Incr(amount) => current.wrapping_add(amount),
            Delta::Decr(amount) => current.saturating_sub(amount),
        };
        let mut buf = [0; MAX_DIGITS];
        let digits = format_u64(updated, &mut buf);

        if digits.len() <= slot.value().len() {
            // Like memcached: rewrite in place and pad with spaces, keeping the length.
            self.policy.on_access(&mut self.slots, index);
            let slot = &mut self.slots[index as usize];
            let value = slot.value_mut();
            value[..digits.len()].copy_from_slice(digits);
            value[digits.len()..].fill(b' ');
            slot.cas = shared.next_cas();
            slot.time = moment.now;
            return Ok(Ok(Arith {
                index,
                value: updated,
                created: false,
                replaced: false,
            }));
        }

        // The number grew longer than the item: replace it, keeping flags and expiry.
        let old_cost = slot.cost();
        let new_cost = item_cost(key.len() + digits.len());
        let need = Charge {
            bytes: new_cost.saturating_sub(old_cost),
            entries: 0,
        };
        self.make_room_for_rewrite(shared, moment, need, prepaid, index)?;
        let slot = &mut self.slots[index as usize];
        let meta = ItemMeta {
            cas: shared.next_cas(),
            flags: slot.flags,
            exptime: slot.exptime,
            time: moment.now,
        };
        drop(slot.replace(item_data(key, digits), meta));
        self.policy.restore(&mut self.slots, index);
        self.counters.total_items += 1;
        // No compaction here: the caller still holds the slot index.
        Ok(Ok(Arith {
            index,
            value: updated,
            created: false,
            replaced: true,
        }))
    }

    /// Lets `read` see the item an [`arith`](Self::arith) left at `index`.
    pub fn after_arith<R>(
        &mut self,
        shared: &Shared,
        moment: &Moment,
        done: &Arith,
        read: impl FnOnce(&mut MetaEntry<'_>, u64) -> R,
    ) -> R {
        let slot = &mut self.slots[done.index as usize];
        let mut entry = MetaEntry::new(slot, moment.now, shared.cas_enabled, done.created);
        if done.replaced {
            entry.detach();
        }
        let result = read(&mut entry, done.value);
        entry.finish();
        self.maybe_compact(shared);
        result
    }

    /// Reserves `need` (using `prepaid` first), evicting from this stripe as required.
    /// `Err` carries what is still missing once this stripe has nothing left to evict.
    fn make_room(
        &mut self,
        shared: &Shared,
        moment: &Moment,
        need: Charge,
        prepaid: &mut Charge,
    ) -> Result<(), Charge> {
        let outstanding = need.saturating_sub(*prepaid);
        loop {
            match shared.budget.try_reserve(outstanding) {
                Ok(()) => {
                    *prepaid = prepaid.saturating_sub(need);
                    return Ok(());
                }
                Err(shortage) => {
                    if !self.evict_one(shared, moment, shortage) {
                        return Err(outstanding);
                    }
                }
            }
        }
    }

    /// [`make_room`](Self::make_room) for rewriting the item at `index`, which is never
    /// evicted for it. On success the item is left held out of the policy: the caller
    /// rewrites it and then restores it.
    fn make_room_for_rewrite(
        &mut self,
        shared: &Shared,
        moment: &Moment,
        need: Charge,
        prepaid: &mut Charge,
        index: SlotIndex,
    ) -> Result<(), Charge> {
        self.policy.hold(&mut self.slots, index);
        let result = self.make_room(shared, moment, need, prepaid);
        if result.is_err() {
            self.policy.restore(&mut self.slots, index);
        }
        result
    }

    /// Evicts from this stripe until `need` would fit in the budget. Returns false when
    /// the stripe ran out of items while the budget was still short.
    pub fn evict_for(&mut self, shared: &Shared, moment: &Moment, need: Charge) -> bool {
        let mut room = true;
        while let Some(shortage) = shared.budget.shortage(need) {
            if !self.evict_one(shared, moment, shortage) {
                room = false;
                break;
            }
        }
        self.maybe_compact(shared);
        room
    }

    /// Removes the policy's victim, counting it as reclaimed when it had expired or been
    /// flushed anyway. Returns false when the stripe has nothing to give.
    fn evict_one(&mut self, shared: &Shared, moment: &Moment, shortage: Shortage) -> bool {
        let Some(victim) = self.policy.victim(&mut self.slots) else {
            return false;
        };
        let slot = &self.slots[victim as usize];
        let unfetched = !slot.was_fetched();
        if moment.gone(slot).is_some() {
            self.counters.reclaimed += 1;
            self.counters.expired_unfetched += u64::from(unfetched);
        } else if !shared.evictions_enabled {
            return false;
        } else {
            match shortage {
                Shortage::Memory => self.counters.evictions_memory += 1,
                Shortage::Entries => self.counters.evictions_entries += 1,
            }
            self.counters.evicted_unfetched += u64::from(unfetched);
        }
        let hash = shared.hash(slot.key());
        self.policy.on_evict(&self.slots, victim, hash);
        self.unlink(shared, hash, victim);
        true
    }

    /// Appends the key of every visible item to `keys`.
    pub fn live_keys(&self, moment: &Moment, keys: &mut Vec<Box<[u8]>>) {
        let slots = &self.slots;
        keys.extend(
            self.table
                .iter()
                .map(|index| &slots[index as usize])
                .filter(|slot| moment.gone(slot).is_none())
                .map(|slot| Box::from(slot.key())),
        );
    }

    /// Removes up to `max_remove` expired or flushed items, looking at no more than
    /// `max_scan` slots from `from`.
    pub fn sweep(
        &mut self,
        shared: &Shared,
        moment: &Moment,
        from: usize,
        max_remove: usize,
        max_scan: usize,
    ) -> SweepProgress {
        let end = self.slots.len().min(from.saturating_add(max_scan));
        let mut removed = 0;
        let mut position = from;
        while position < end && removed < max_remove {
            let slot = &self.slots[position];
            if slot.is_live() && moment.gone(slot).is_some() {
                self.counters.reclaimed += 1;
                self.counters.expired_unfetched += u64::from(!slot.was_fetched());
                let hash = shared.hash(slot.key());
                self.unlink(shared, hash, position as SlotIndex);
                removed += 1;
            }
            position += 1;
        }
        let compacted = self.maybe_compact(shared);
        SweepProgress {
            removed,
            next: (position < self.slots.len() && !compacted).then_some(position),
        }
    }

    /// The visible item under `key`, without touching it: what the persistent tier is
    /// told L1 now holds.
    #[cfg(feature = "l2")]
    pub fn live(&self, hash: u64, key: &[u8], moment: &Moment) -> Option<&Slot> {
        let slot = &self.slots[self.find(hash, key)? as usize];
        moment.gone(slot).is_none().then_some(slot)
    }

    /// Puts an item read from the persistent tier into this stripe, unless the key is
    /// here already or `still_current` says a newer change was queued since the read.
    /// With `evict`, makes room as a store does; without, only takes free memory (and
    /// reports [`Adoption::NoRoom`]). `data` is taken when the item goes in.
    #[cfg(feature = "l2")]
    #[allow(clippy::too_many_arguments)]
    pub fn adopt(
        &mut self,
        shared: &Shared,
        hash: u64,
        data: &mut Option<Box<[u8]>>,
        key_len: usize,
        meta: ItemMeta,
        moment: &Moment,
        prepaid: &mut Charge,
        evict: bool,
        still_current: impl Fn() -> bool,
    ) -> Result<Adoption, Charge> {
        let Some(item) = data.as_ref() else {
            return Ok(Adoption::Skipped);
        };
        if self.find(hash, &item[..key_len]).is_some() {
            return Ok(Adoption::Present);
        }
        if !still_current() {
            return Ok(Adoption::Skipped);
        }
        let need = Charge {
            bytes: item_cost(item.len()),
            entries: 1,
        };
        if !shared.budget.can_ever_fit(need) {
            return Ok(Adoption::NoRoom);
        }
        if evict {
            self.make_room(shared, moment, need, prepaid)?;
        } else if shared.budget.try_reserve(need).is_err() {
            return Ok(Adoption::NoRoom);
        }
        let Some(item) = data.take() else {
            return Ok(Adoption::Skipped);
        };
        self.link(shared, hash, Slot::item(item, key_len, meta));
        Ok(Adoption::Adopted)
    }

    /// Drops every flushed item at once (an immediate `flush_all`), and gives the stripe's
    /// memory back to the allocator when nothing is left.
    pub fn drop_flushed(&mut self, shared: &Shared, moment: &Moment) {
        let Shard {
            stripe,
            table,
            slots,
            free_head,
            policy,
            counters,
        } = self;
        let mut flushed = Vec::new();
        let hint = &shared.table_hints[*stripe];
        table.retain(
            hint,
            |index| {
                let gone = moment.gone(&slots[index as usize]) == Some(Gone::Flushed);
                if gone {
                    flushed.push(index);
                }
                !gone
            },
            |index| shared.hash(slots[index as usize].key()),
        );
        let mut freed = Charge::ZERO;
        for index in flushed {
            freed.add(Charge {
                bytes: slots[index as usize].cost(),
                entries: 1,
            });
            policy.on_remove(slots, index);
            drop(slots[index as usize].release(*free_head));
            *free_head = index;
        }
        counters.curr_items -= freed.entries as u64;
        shared.budget.release(freed);
        if table.is_empty() {
            *slots = Vec::new();
            *free_head = NIL;
            policy.clear();
        } else {
            self.maybe_compact(shared);
        }
    }

    /// Puts a new item into the arena and table. Its cost must already be reserved.
    fn link(&mut self, shared: &Shared, hash: u64, slot: Slot) -> SlotIndex {
        let index = if self.free_head != NIL {
            let index = self.free_head;
            self.free_head = self.slots[index as usize].links.next;
            self.slots[index as usize] = slot;
            index
        } else {
            if self.slots.len() == self.slots.capacity() {
                // Grow by an eighth rather than doubling: the headroom is what item_cost charges.
                let growth = (self.slots.len() / 8).max(MIN_ARENA_GROWTH);
                self.slots.reserve_exact(growth);
            }
            let index = SlotIndex::try_from(self.slots.len())
                .ok()
                .filter(|&index| index != NIL)
                .expect("a stripe holds fewer than 2^32 - 1 items");
            self.slots.push(slot);
            index
        };
        let Shard {
            stripe,
            table,
            slots,
            ..
        } = self;
        table.insert(hash, index, &shared.table_hints[*stripe], |other| {
            shared.hash(slots[other as usize].key())
        });
        self.policy.on_insert(&mut self.slots, index, hash);
        self.counters.curr_items += 1;
        index
    }

    /// Takes an item out of the table, the policy and the arena, and gives its cost back.
    fn unlink(&mut self, shared: &Shared, hash: u64, index: SlotIndex) {
        let found = self.table.remove(hash, index);
        debug_assert!(found, "a live slot is always in the table");
        self.policy.on_remove(&mut self.slots, index);
        let slot = &mut self.slots[index as usize];
        let cost = slot.cost();
        drop(slot.release(self.free_head));
        self.free_head = index;
        self.counters.curr_items -= 1;
        shared.budget.release(Charge {
            bytes: cost,
            entries: 1,
        });
    }

    /// Compacts the arena (and shrinks the table) when more than an eighth of a large arena
    /// is free, so memory freed by deletes, expiry, flushes and evictions of many small items
    /// goes back to the allocator instead of sitting uncharged in free slots. Moves slots:
    /// callers must hold no slot index across it. Returns whether it ran.
    fn maybe_compact(&mut self, shared: &Shared) -> bool {
        let len = self.slots.len();
        let live = self.table.len();
        if len < COMPACT_MIN_SLOTS || live * 8 >= len * 7 {
            return false;
        }
        let (mut compacted, new_index) = compact_arena(&mut self.slots, live + live / 8);
        self.policy.remap(&mut compacted, &new_index);
        self.table.renumber(|index| new_index[index as usize]);
        self.table
            .shrink_to_fit(&shared.table_hints[self.stripe], |index| {
                shared.hash(compacted[index as usize].key())
            });
        self.slots = compacted;
        self.free_head = NIL;
        true
    }
}

/// The CAS a client sees: 0 when CAS is off.
#[inline]
fn visible_cas(shared: &Shared, slot: &Slot) -> u64 {
    if shared.cas_enabled {
        slot.cas
    } else {
        0
    }
}

fn concatenating(mode: StoreMode) -> bool {
    matches!(mode, StoreMode::Append | StoreMode::Prepend)
}

/// One allocation holding `parts` back to back.
fn concat(parts: &[&[u8]]) -> Box<[u8]> {
    let mut data = Vec::with_capacity(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        data.extend_from_slice(part);
    }
    data.into_boxed_slice()
}
