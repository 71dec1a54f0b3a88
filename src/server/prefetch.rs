//! Looking ahead in a connection's input, so a batch of requests waits for memory once.
//!
//! When a read brings several requests (a pipelining client), the sessions collect the
//! keys of the next few and hand them to [`Store::prefetch`] before running the first:
//! the cache misses of all their lookups then overlap, instead of each lookup paying its
//! own. A lone key is not prefetched: its misses have nothing to overlap with.

use crate::store::Store;

/// How many requests ahead of the one being answered have their keys prefetched.
pub(super) const PREFETCH_AHEAD: usize = 16;

/// The most keys prefetched at once.
const PREFETCH_KEYS: usize = 32;

/// The keys of the requests looked ahead at, on the stack.
pub(super) struct KeyBatch<'a> {
    keys: [&'a [u8]; PREFETCH_KEYS],
    count: usize,
}

impl<'a> KeyBatch<'a> {
    pub fn new() -> KeyBatch<'a> {
        KeyBatch {
            keys: [&[]; PREFETCH_KEYS],
            count: 0,
        }
    }

    /// Adds a key; past the batch's room, keys are left out.
    pub fn push(&mut self, key: &'a [u8]) {
        if let Some(slot) = self.keys.get_mut(self.count) {
            *slot = key;
            self.count += 1;
        }
    }

    pub fn is_full(&self) -> bool {
        self.count == PREFETCH_KEYS
    }

    /// Starts loading what looking the keys up will read, when there are several:
    /// the loads for one key depend on each other, so prefetching it alone only adds
    /// its lock and its misses ahead of the lookup that would take them anyway.
    pub fn prefetch(&self, store: &Store) {
        if self.count > 1 {
            store.prefetch(self.keys[..self.count].iter().copied());
        }
    }
}
