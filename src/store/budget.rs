//! The store-wide memory and entry budget.
//!
//! The memory limit is global, not split per stripe: one stripe may hold far more than its
//! 1/N share (a single 1 MiB item must fit in a 2 MiB store whatever its stripe). Every
//! item's cost is reserved here before it is linked and released when it leaves, with a
//! compare-and-swap so that concurrent inserts can never push the total past the limit.
//! This counter (and the entry counter, when an entry limit is set) is the only memory
//! bookkeeping shared between threads.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// An amount reserved against the budget: bytes of cost and a number of items.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Charge {
    pub bytes: usize,
    pub entries: usize,
}

impl Charge {
    pub const ZERO: Charge = Charge {
        bytes: 0,
        entries: 0,
    };

    /// What is left of `self` after `other` has been taken from it (never negative).
    pub fn saturating_sub(self, other: Charge) -> Charge {
        Charge {
            bytes: self.bytes.saturating_sub(other.bytes),
            entries: self.entries.saturating_sub(other.entries),
        }
    }

    pub fn add(&mut self, other: Charge) {
        self.bytes += other.bytes;
        self.entries += other.entries;
    }
}

/// Which limit a reservation ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortage {
    Memory,
    Entries,
}

/// Global accounting of charged bytes and, when limited, item count.
#[derive(Debug)]
pub struct Budget {
    /// Adjustable at run time (`cache_memlimit`); a lower limit is reached by
    /// evicting as new items arrive.
    max_bytes: AtomicUsize,
    used_bytes: AtomicUsize,
    /// `None`: items are not counted here at all.
    max_entries: Option<usize>,
    used_entries: AtomicUsize,
}

impl Budget {
    pub fn max_bytes(&self) -> usize {
        self.max_bytes.load(Relaxed)
    }

    pub fn set_max_bytes(&self, max_bytes: usize) {
        self.max_bytes.store(max_bytes, Relaxed);
    }

    pub fn new(max_bytes: usize, max_entries: Option<usize>) -> Budget {
        Budget {
            max_bytes: AtomicUsize::new(max_bytes),
            used_bytes: AtomicUsize::new(0),
            max_entries,
            used_entries: AtomicUsize::new(0),
        }
    }

    /// Whether `charge` could be reserved in an otherwise empty store.
    pub fn can_ever_fit(&self, charge: Charge) -> bool {
        charge.bytes <= self.max_bytes() && self.max_entries.is_none_or(|max| charge.entries <= max)
    }

    /// Which limit `charge` would break right now, if any (reserves nothing).
    pub fn shortage(&self, charge: Charge) -> Option<Shortage> {
        if self.used_bytes.load(Relaxed) + charge.bytes > self.max_bytes() {
            return Some(Shortage::Memory);
        }
        match self.max_entries {
            Some(max)
                if charge.entries > 0 && self.used_entries.load(Relaxed) + charge.entries > max =>
            {
                Some(Shortage::Entries)
            }
            _ => None,
        }
    }

    /// Takes `charge` from the budget, or takes nothing and says which limit is in the way.
    pub fn try_reserve(&self, charge: Charge) -> Result<(), Shortage> {
        if charge.bytes > 0 {
            reserve(&self.used_bytes, charge.bytes, self.max_bytes())
                .map_err(|()| Shortage::Memory)?;
        }
        if let (Some(max), true) = (self.max_entries, charge.entries > 0) {
            if reserve(&self.used_entries, charge.entries, max).is_err() {
                self.used_bytes.fetch_sub(charge.bytes, Relaxed);
                return Err(Shortage::Entries);
            }
        }
        Ok(())
    }

    /// Gives `charge` back.
    pub fn release(&self, charge: Charge) {
        if charge.bytes > 0 {
            self.used_bytes.fetch_sub(charge.bytes, Relaxed);
        }
        if self.max_entries.is_some() && charge.entries > 0 {
            self.used_entries.fetch_sub(charge.entries, Relaxed);
        }
    }

    /// Bytes currently charged (including reservations in flight).
    pub fn used_bytes(&self) -> usize {
        self.used_bytes.load(Relaxed)
    }
}

/// Adds `amount` to `counter` unless that would pass `max`.
fn reserve(counter: &AtomicUsize, amount: usize, max: usize) -> Result<(), ()> {
    counter
        .fetch_update(Relaxed, Relaxed, |used| {
            used.checked_add(amount).filter(|&total| total <= max)
        })
        .map(drop)
        .map_err(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_up_to_the_limit_and_no_further() {
        let budget = Budget::new(100, None);
        let sixty = Charge {
            bytes: 60,
            entries: 1,
        };
        assert_eq!(budget.try_reserve(sixty), Ok(()));
        assert_eq!(budget.shortage(sixty), Some(Shortage::Memory));
        assert_eq!(budget.try_reserve(sixty), Err(Shortage::Memory));
        assert_eq!(budget.used_bytes(), 60);
        budget.release(sixty);
        assert_eq!(budget.used_bytes(), 0);
        assert!(budget.can_ever_fit(Charge {
            bytes: 100,
            entries: 1
        }));
        assert!(!budget.can_ever_fit(Charge {
            bytes: 101,
            entries: 1
        }));
    }

    #[test]
    fn entry_limit_fails_without_keeping_bytes() {
        let budget = Budget::new(1000, Some(1));
        let one = Charge {
            bytes: 10,
            entries: 1,
        };
        assert_eq!(budget.try_reserve(one), Ok(()));
        assert_eq!(budget.try_reserve(one), Err(Shortage::Entries));
        assert_eq!(budget.used_bytes(), 10);
        // Growing an existing item takes bytes but no entry.
        assert_eq!(
            budget.try_reserve(Charge {
                bytes: 10,
                entries: 0
            }),
            Ok(())
        );
        assert!(!budget.can_ever_fit(Charge {
            bytes: 1,
            entries: 2
        }));
    }
}
