//! Eviction policies: which item a full stripe gives up first.
//!
//! A stripe tells its policy about every item that enters, is read or leaves, and asks it
//! for a victim when the store needs room. Policies keep their per-item state in the
//! [`Links`] and the accessed bit of each [`Slot`], so they allocate
//! nothing per item and work under the stripe lock that is already held.
//!
//! [`Lru`] is the policy in use: an intrusive doubly-linked list, newest at the head, the
//! victim at the tail. Like memcached's LRU it promotes lazily: a hit only marks its own
//! slot, and a marked item is moved back to the head when it reaches the tail instead of
//! being evicted. A get therefore writes nothing outside the item it reads (relinking on
//! every hit would touch two neighbours and the list head, three more cache misses on a
//! large cache), and eviction order stays that of LRU for everything that matters: an item
//! read since it last reached the tail is never evicted before one that was not.

use super::item::{Links, Slot, SlotIndex, NIL};

/// The seam between a stripe and its eviction policy.
///
/// Every live item is known to the policy between `on_insert` and `on_remove`; `victim`
/// only ever names such an item. The stripe may take an item out (`on_remove`) and put it
/// back (`on_insert`) to keep it from being chosen while it is being modified.
pub trait EvictionPolicy: Default {
    /// A new item entered the stripe.
    fn on_insert(&mut self, slots: &mut [Slot], index: SlotIndex);
    /// An item was read or rewritten.
    fn on_access(&mut self, slots: &mut [Slot], index: SlotIndex);
    /// An item is leaving the stripe.
    fn on_remove(&mut self, slots: &mut [Slot], index: SlotIndex);
    /// The item to give up next, if any (the policy may reorder its items to choose).
    fn victim(&mut self, slots: &mut [Slot]) -> Option<SlotIndex>;
    /// The arena was compacted: the item at old index `i` now sits at `new_index[i]`
    /// (items that left are never looked up).
    fn remap(&mut self, slots: &mut [Slot], new_index: &[SlotIndex]);
    /// Every item left at once.
    fn clear(&mut self);
}

/// Least recently used with lazy promotion: a list threaded through the slots, newest at
/// `head`; hits are marked in the slot and acted on at the tail.
#[derive(Debug)]
pub struct Lru {
    head: SlotIndex,
    tail: SlotIndex,
}

impl Default for Lru {
    fn default() -> Self {
        Lru {
            head: NIL,
            tail: NIL,
        }
    }
}

impl Lru {
    fn push_front(&mut self, slots: &mut [Slot], index: SlotIndex) {
        slots[index as usize].take_accessed();
        slots[index as usize].links = Links {
            prev: NIL,
            next: self.head,
        };
        if self.head == NIL {
            self.tail = index;
        } else {
            slots[self.head as usize].links.prev = index;
        }
        self.head = index;
    }

    fn unlink(&mut self, slots: &mut [Slot], index: SlotIndex) {
        let Links { prev, next } = slots[index as usize].links;
        if prev == NIL {
            self.head = next;
        } else {
            slots[prev as usize].links.next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            slots[next as usize].links.prev = prev;
        }
        slots[index as usize].links = Links::UNLINKED;
    }
}

impl EvictionPolicy for Lru {
    #[inline]
    fn on_insert(&mut self, slots: &mut [Slot], index: SlotIndex) {
        self.push_front(slots, index);
    }

    #[inline]
    fn on_access(&mut self, slots: &mut [Slot], index: SlotIndex) {
        slots[index as usize].mark_accessed();
    }

    #[inline]
    fn on_remove(&mut self, slots: &mut [Slot], index: SlotIndex) {
        self.unlink(slots, index);
    }

    fn victim(&mut self, slots: &mut [Slot]) -> Option<SlotIndex> {
        // Each marked item is moved once and unmarked, so this ends within one lap.
        while self.tail != NIL {
            let tail = self.tail;
            if !slots[tail as usize].take_accessed() {
                return Some(tail);
            }
            self.unlink(slots, tail);
            self.push_front(slots, tail);
        }
        None
    }

    fn remap(&mut self, slots: &mut [Slot], new_index: &[SlotIndex]) {
        let moved = |index: SlotIndex| {
            if index == NIL {
                NIL
            } else {
                new_index[index as usize]
            }
        };
        for slot in slots.iter_mut().filter(|slot| slot.is_live()) {
            slot.links = Links {
                prev: moved(slot.links.prev),
                next: moved(slot.links.next),
            };
        }
        self.head = moved(self.head);
        self.tail = moved(self.tail);
    }

    fn clear(&mut self) {
        *self = Lru::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::item::{item_data, ItemMeta};

    fn arena(n: usize) -> Vec<Slot> {
        let meta = ItemMeta {
            cas: 1,
            flags: 0,
            exptime: 0,
            time: 2,
        };
        (0..n)
            .map(|i| Slot::item(item_data(&[i as u8], b""), 1, meta))
            .collect()
    }

    /// Drains the policy by repeatedly taking its victim.
    fn eviction_order(lru: &mut Lru, slots: &mut [Slot]) -> Vec<SlotIndex> {
        let mut order = Vec::new();
        while let Some(victim) = lru.victim(slots) {
            lru.on_remove(slots, victim);
            order.push(victim);
        }
        order
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let mut slots = arena(4);
        let mut lru = Lru::default();
        for i in 0..4 {
            lru.on_insert(&mut slots, i);
        }
        lru.on_access(&mut slots, 0);
        lru.on_access(&mut slots, 2);
        assert_eq!(eviction_order(&mut lru, &mut slots), [1, 3, 0, 2]);
    }

    #[test]
    fn a_hit_saves_an_item_once() {
        let mut slots = arena(3);
        let mut lru = Lru::default();
        for i in 0..3 {
            lru.on_insert(&mut slots, i);
        }
        lru.on_access(&mut slots, 0);
        assert_eq!(lru.victim(&mut slots), Some(1));
        lru.on_remove(&mut slots, 1);
        // 0 went back to the head unmarked: 2 goes first, then 0.
        assert_eq!(eviction_order(&mut lru, &mut slots), [2, 0]);
    }

    #[test]
    fn all_marked_items_are_unmarked_in_one_lap() {
        let mut slots = arena(3);
        let mut lru = Lru::default();
        for i in 0..3 {
            lru.on_insert(&mut slots, i);
            lru.on_access(&mut slots, i);
        }
        assert_eq!(eviction_order(&mut lru, &mut slots), [0, 1, 2]);
    }

    #[test]
    fn removal_from_middle_head_and_tail_keeps_list_whole() {
        let mut slots = arena(5);
        let mut lru = Lru::default();
        for i in 0..5 {
            lru.on_insert(&mut slots, i);
        }
        lru.on_remove(&mut slots, 2);
        lru.on_remove(&mut slots, 4);
        lru.on_remove(&mut slots, 0);
        assert_eq!(eviction_order(&mut lru, &mut slots), [1, 3]);
        assert_eq!(lru.victim(&mut slots), None);
    }

    #[test]
    fn remap_follows_moved_slots() {
        let mut slots = arena(3);
        let mut lru = Lru::default();
        for i in 0..3 {
            lru.on_insert(&mut slots, i);
        }
        // Reverse the arena: old i moves to 2 - i.
        slots.reverse();
        lru.remap(&mut slots, &[2, 1, 0]);
        assert_eq!(eviction_order(&mut lru, &mut slots), [2, 1, 0]);
    }
}
