//! Command counters for `stats`, one set per worker thread.
//!
//! Each set is written only by the worker thread that owns it, so a counter
//! is bumped with a plain relaxed load and store (no atomic read-modify-write,
//! no shared cache line between threads); `stats` sums the sets on read.

use crate::store::StoreOutcome;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// One worker's counters.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct WorkerCounters {
            $(pub $name: AtomicU64,)*
        }

        /// A plain copy of counters, summed over workers.
        #[derive(Debug, Default, Clone, Copy)]
        pub struct CounterTotals {
            $(pub $name: u64,)*
        }

        impl CounterTotals {
            pub fn add(&mut self, counters: &WorkerCounters) {
                $(self.$name += counters.$name.load(Ordering::Relaxed);)*
            }

            /// These totals less an earlier snapshot (`stats reset`).
            pub fn since(&self, base: &CounterTotals) -> CounterTotals {
                CounterTotals { $($name: self.$name.wrapping_sub(base.$name),)* }
            }
        }
    };
}

counters!(
    cmd_get,
    cmd_set,
    cmd_flush,
    cmd_touch,
    meta_cmds,
    get_hits,
    get_misses,
    delete_hits,
    delete_misses,
    incr_hits,
    incr_misses,
    decr_hits,
    decr_misses,
    cas_hits,
    cas_misses,
    cas_badval,
    touch_hits,
    touch_misses,
    store_too_large,
    store_no_memory,
    auth_cmds,
    auth_errors,
);

/// Adds one to a counter owned by the calling worker thread.
#[inline]
pub fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Counts a compare-and-swap's outcome, the same for every protocol.
pub fn count_cas(counters: &WorkerCounters, outcome: StoreOutcome) {
    match outcome {
        StoreOutcome::Stored => bump(&counters.cas_hits),
        StoreOutcome::Exists => bump(&counters.cas_badval),
        StoreOutcome::NotFound => bump(&counters.cas_misses),
        _ => {}
    }
}

/// Counts one key of a retrieval: a get, or a get-and-touch (which memcached
/// counts among touches, not gets).
pub fn count_fetch(counters: &WorkerCounters, touch: bool, hit: bool) {
    let (command, hits, misses) = if touch {
        (
            &counters.cmd_touch,
            &counters.touch_hits,
            &counters.touch_misses,
        )
    } else {
        (&counters.cmd_get, &counters.get_hits, &counters.get_misses)
    };
    bump(command);
    bump(if hit { hits } else { misses });
}

/// Sums every worker's counters.
pub fn total(workers: &[WorkerCounters]) -> CounterTotals {
    let mut totals = CounterTotals::default();
    for worker in workers {
        totals.add(worker);
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_workers_and_subtract_a_baseline() {
        let workers = [WorkerCounters::default(), WorkerCounters::default()];
        bump(&workers[0].cmd_get);
        bump(&workers[1].cmd_get);
        bump(&workers[1].get_hits);
        let base = total(&workers);
        assert_eq!((base.cmd_get, base.get_hits), (2, 1));
        bump(&workers[0].cmd_get);
        let since = total(&workers).since(&base);
        assert_eq!((since.cmd_get, since.get_hits), (1, 0));
    }
}
