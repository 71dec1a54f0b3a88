//! The syncer: the thread that makes applied writes durable.
//!
//! melange_db keeps what the writer applies in memory until `flush` serializes every
//! leaf written since the last flush and fsyncs it. That takes longer as the tree
//! grows (tens of milliseconds for 100,000 items), so it runs on a thread of its own,
//! with its own melange_db handle, while the writer goes on applying batches: the
//! writer never stalls behind an fsync, and a key's write stays queued only as long
//! as it takes to apply, not to fsync.
//!
//! A flush makes durable every batch applied before it began. The syncer starts the
//! next flush early enough for a write applied just after one began to be on disk
//! within its share of the crash window (the writer's queue has the rest), which means
//! back to back when flushes take that long; with `sync_writes`, it starts one as soon
//! as there is anything to make durable, then tells the commands waiting for it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{guarded, Db, TierShared};

pub(super) fn run(db: Db, shared: Arc<TierShared>) {
    let config = &shared.config;
    let budget = config.flush_interval - config.flush_interval / 4;
    let mut last_duration = Duration::ZERO;
    let mut last_start = Instant::now();
    loop {
        let target = {
            let mut guard = shared.sync_state.lock();
            loop {
                let applied = shared.applied_batches.load(Ordering::Acquire);
                let pending = applied > guard.durable;
                if !pending && guard.stop {
                    return;
                }
                let every = budget
                    .saturating_sub(last_duration)
                    .max(Duration::from_millis(1));
                let due = last_start + every;
                if pending && (guard.stop || config.sync_writes || Instant::now() >= due) {
                    break applied;
                }
                if pending {
                    shared.sync_wakeup.wait_until(&mut guard, due);
                } else {
                    shared.sync_wakeup.wait(&mut guard);
                }
            }
        };
        last_start = Instant::now();
        let flushed = if shared.faulted.load(Ordering::Acquire) {
            // Nothing more reaches the disk; release whoever waits.
            Err(String::new())
        } else {
            guarded(|| db.flush().map(drop))
        };
        last_duration = last_start.elapsed();
        shared
            .counters
            .last_sync_ms
            .store(last_duration.as_millis() as u64, Ordering::Relaxed);
        let mut guard = shared.sync_state.lock();
        guard.durable = target;
        let waiting = std::mem::take(&mut guard.waiting);
        let (done, later): (Vec<_>, Vec<_>) =
            waiting.into_iter().partition(|(batch, _)| *batch <= target);
        guard.waiting = later;
        drop(guard);
        match flushed {
            Ok(()) => {
                shared.counters.flushes.fetch_add(1, Ordering::Relaxed);
                for (_, done) in done {
                    // The command may have given up waiting; nothing to tell then.
                    let _ = done.send(());
                }
            }
            Err(error) if error.is_empty() => {}
            Err(error) => shared.fault(format!("fsyncing melange_db failed: {error}")),
        }
    }
}
