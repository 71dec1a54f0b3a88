//! The writer: the one thread that changes the persistent tier.
//!
//! It takes messages off the queue in the order commands queued them and gathers up to
//! `batch_size` of them into one melange_db batch. Before an item is written the old
//! record under its key is looked up (in the batch first, then on disk), so that its
//! write-order entry goes and the tier's item and byte counts stay exact; the counts,
//! the CAS high-water mark and the flush floor are written in the same batch, so a crash
//! never leaves them disagreeing with the items. Only after a batch is applied are its
//! messages counted as applied, which is what lets readers trust the disk for their keys.
//!
//! Each applied batch is handed to the syncer (`syncer`), which makes it durable. The
//! writer bounds its queue to what it applies in a quarter of the crash window, and
//! once a second it checks the free disk space, drops the oldest items while the tier
//! is over its size limit, and removes a chunk of expired and flushed items.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use melange_db::Batch;

use super::record::{
    self, decode_header, disk_charge, order_key, order_seq, prefixed, Bookkeeping, ItemHeader,
    ITEM_SPACE, MAX_PREFIXED_KEY,
};
use super::{free_disk_bytes, guarded, unix_now, Db, FlushFloor, Message, TierShared};

/// How often the writer looks after the disk when nothing else wakes it.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);
/// Items looked at per maintenance tick for expiry and flushes.
const SWEEP_CHUNK: usize = 4096;
/// How long the writer measures before it sets the queue's bound again.
const PACE_SAMPLE: Duration = Duration::from_millis(50);
/// The queue's bound never goes below this.
const MIN_QUEUE_LIMIT: usize = 64 * 1024;
/// How long the writer lets messages gather after the first one of a batch.
const GATHER_TIME: Duration = Duration::from_millis(5);
/// Items dropped per step when over the disk limit.
const EVICTION_CHUNK: usize = 256;

/// A batch being gathered: the melange_db writes, and what to settle once it is applied.
#[derive(Default)]
struct Staged {
    batch: Batch,
    /// Bucket and queue weight of every message in it.
    settle: Vec<(u32, usize)>,
    /// Commands waiting for their write to be durable.
    done: Vec<Sender<()>>,
    /// Whether the bookkeeping changed.
    changed: bool,
    /// Queue bytes of its messages.
    bytes: usize,
}

pub(super) struct Writer {
    db: Db,
    shared: Arc<TierShared>,
    receiver: Receiver<Message>,
    book: Bookkeeping,
    last_maintenance: Instant,
    /// Where the next sweep continues (an item key); `None` starts over.
    sweep_from: Option<Vec<u8>>,
    /// Bytes applied since the queue's bound was last set, and when that was.
    paced_bytes: usize,
    paced_since: Instant,
}

impl Writer {
    pub(super) fn new(
        db: Db,
        shared: Arc<TierShared>,
        receiver: Receiver<Message>,
        book: Bookkeeping,
    ) -> Writer {
        Writer {
            db,
            shared,
            receiver,
            book,
            last_maintenance: Instant::now(),
            sweep_from: None,
            paced_bytes: 0,
            paced_since: Instant::now(),
        }
    }

    pub(super) fn run(mut self) {
        let config = self.shared.config.clone();
        // A quarter of the crash window is for a write's wait in the queue; the syncer
        // has the rest.
        let queue_budget = config.flush_interval / 4;
        let mut stopping = false;
        while !stopping {
            let wait = MAINTENANCE_INTERVAL.saturating_sub(self.last_maintenance.elapsed());
            let mut staged = Staged::default();
            let mut taken = 0;
            match self.receiver.recv_timeout(wait) {
                Ok(message) => {
                    stopping = self.take(message, &mut staged);
                    taken += 1;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stopping = true,
            }
            if taken > 0 && !stopping && self.receiver.len() < config.batch_size {
                // Let a batch gather: one melange_db batch costs about as much as a
                // few dozen single writes, and the crash window allows the wait.
                std::thread::sleep(GATHER_TIME.min(queue_budget / 4));
            }
            while !stopping && taken < config.batch_size {
                let Ok(message) = self.receiver.try_recv() else {
                    break;
                };
                stopping = self.take(message, &mut staged);
                taken += 1;
            }
            let bytes = staged.bytes;
            self.commit(staged);
            self.pace(bytes, queue_budget);
            if !stopping && self.last_maintenance.elapsed() >= MAINTENANCE_INTERVAL {
                self.maintain();
                self.last_maintenance = Instant::now();
            }
        }
        self.shared.writer_running.store(false, Ordering::Release);
        self.shared.room_made();
    }

    /// Keeps the queue to what the writer can apply in `budget`: measures how many
    /// queued bytes it applied per second, by the wall clock (it shares the CPU with
    /// the commands it serves, and fsyncs take their share), and bounds the queue to
    /// that rate times `budget`.
    fn pace(&mut self, bytes: usize, budget: Duration) {
        self.paced_bytes += bytes;
        let elapsed = self.paced_since.elapsed();
        if elapsed < PACE_SAMPLE {
            return;
        }
        let applied = std::mem::take(&mut self.paced_bytes);
        self.paced_since = Instant::now();
        if applied == 0 {
            // Idle: nothing measured, the bound stays.
            return;
        }
        let per_second = applied as f64 / elapsed.as_secs_f64();
        let ceiling = self.shared.config.queue_max_bytes;
        let floor = MIN_QUEUE_LIMIT.min(ceiling);
        let limit = ((per_second * budget.as_secs_f64()) as usize).clamp(floor, ceiling);
        self.shared.queue_limit.store(limit, Ordering::Relaxed);
        self.shared.room_made();
    }

    fn faulted(&self) -> bool {
        self.shared.faulted.load(Ordering::Acquire)
    }

    /// Adds a message to the batch; true when it asks the writer to stop.
    fn take(&mut self, message: Message, staged: &mut Staged) -> bool {
        let weight = message.weight();
        staged.bytes += weight;
        match message {
            Message::Put {
                data,
                key_len,
                mut header,
                bucket,
                done,
            } => {
                staged.settle.push((bucket, weight));
                if self.faulted() {
                    self.count_dropped();
                    return false;
                }
                staged.done.extend(done);
                let (key, value) = data.split_at(key_len);
                let mut buffer = [0; MAX_PREFIXED_KEY];
                let item_key = prefixed(&mut buffer, ITEM_SPACE, key);
                if let Err(error) = self.forget_old(staged, item_key) {
                    self.shared.fault(error);
                    return false;
                }
                self.book.last_seq += 1;
                header.seq = self.book.last_seq;
                let record = record::encode(&header, value, self.shared.config.compress_from);
                if record.len() - record::HEADER_LEN < value.len() {
                    self.shared
                        .counters
                        .compressed
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.book.items += 1;
                self.book.bytes += disk_charge(key_len, record.len());
                self.book.max_cas = self.book.max_cas.max(header.cas);
                staged.batch.insert(item_key, record);
                staged.batch.insert(&order_key(header.seq)[..], key);
                staged.changed = true;
            }
            Message::Delete { key, bucket, done } => {
                staged.settle.push((bucket, weight));
                if self.faulted() {
                    self.count_dropped();
                    return false;
                }
                staged.done.extend(done);
                let mut buffer = [0; MAX_PREFIXED_KEY];
                let item_key = prefixed(&mut buffer, ITEM_SPACE, &key);
                match self.forget_old(staged, item_key) {
                    Ok(true) => {
                        staged.batch.remove(item_key);
                        staged.changed = true;
                    }
                    Ok(false) => {}
                    Err(error) => self.shared.fault(error),
                }
            }
            Message::Flush { floor } => {
                self.shared.settle(None, weight);
                self.book.flush_at = floor.time;
                self.book.flush_cas = floor.cas;
                // The flush took a CAS value too; a restarted store must not hand it out.
                self.book.max_cas = self.book.max_cas.max(floor.cas);
                staged.changed = true;
            }
            Message::Stop => return true,
        }
        false
    }

    fn count_dropped(&self) {
        self.shared
            .counters
            .dropped_writes
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the record now under `item_key` (in this batch or on disk) out of the
    /// write order and the counts. Returns whether there was one.
    fn forget_old(&mut self, staged: &mut Staged, item_key: &[u8]) -> Result<bool, String> {
        let old = match staged.batch.get(item_key) {
            Some(in_batch) => in_batch.cloned(),
            None => guarded(|| self.db.get(item_key))
                .map_err(|error| format!("reading from melange_db failed: {error}"))?,
        };
        let Some(old) = old else {
            return Ok(false);
        };
        self.forget_record(&mut staged.batch, item_key, &old);
        Ok(true)
    }

    /// Takes `record`, stored under `item_key`, out of the write order (in `batch`) and
    /// out of the counts; the caller removes or replaces the record itself. A record
    /// that cannot be read keeps its order entry, which eviction drops when it gets there.
    fn forget_record(&mut self, batch: &mut Batch, item_key: &[u8], record: &[u8]) {
        if let Ok(header) = decode_header(record) {
            batch.remove(&order_key(header.seq)[..]);
        }
        self.book.items = self.book.items.saturating_sub(1);
        self.book.bytes = self
            .book
            .bytes
            .saturating_sub(disk_charge(item_key.len() - 1, record.len()));
    }

    /// Applies a gathered batch with the bookkeeping, then settles its messages.
    fn commit(&mut self, mut staged: Staged) {
        if staged.changed && !self.faulted() {
            staged
                .batch
                .insert(record::BOOKKEEPING_KEY, &self.book.encode()[..]);
            let batch = std::mem::take(&mut staged.batch);
            match guarded(|| self.db.apply_batch(batch)) {
                Ok(()) => {
                    let counters = &self.shared.counters;
                    counters.batches.fetch_add(1, Ordering::Relaxed);
                    counters
                        .writes
                        .fetch_add(staged.settle.len() as u64, Ordering::Relaxed);
                    self.publish_counts();
                    self.hand_to_syncer(std::mem::take(&mut staged.done));
                }
                Err(error) => self
                    .shared
                    .fault(format!("writing a batch to melange_db failed: {error}")),
            }
        }
        if staged.settle.is_empty() {
            return;
        }
        for &(bucket, weight) in &staged.settle {
            self.shared.settle(Some(bucket), weight);
        }
        self.shared.room_made();
    }

    fn publish_counts(&self) {
        let counters = &self.shared.counters;
        counters.items.store(self.book.items, Ordering::Relaxed);
        counters.bytes.store(self.book.bytes, Ordering::Relaxed);
    }

    /// Counts an applied batch and wakes the syncer to make it durable; `done` are
    /// the commands of the batch waiting for that.
    fn hand_to_syncer(&self, done: Vec<Sender<()>>) {
        let shared = &self.shared;
        let batch = shared.applied_batches.fetch_add(1, Ordering::AcqRel) + 1;
        let mut state = shared.sync_state.lock();
        state
            .waiting
            .extend(done.into_iter().map(|done| (batch, done)));
        shared.sync_wakeup.notify_one();
    }

    /// The once-a-second work: disk space, the size limit, expiry.
    fn maintain(&mut self) {
        if self.faulted() {
            return;
        }
        let config = &self.shared.config;
        if let Some(free) = free_disk_bytes(&config.data_dir) {
            if free < config.min_free_disk {
                self.shared.fault(format!(
                    "only {} MB free on the disk of {} (writing stops below {} MB)",
                    free >> 20,
                    config.data_dir.display(),
                    config.min_free_disk >> 20
                ));
                return;
            }
        }
        let result = self
            .evict_over_limit()
            .and_then(|()| self.sweep())
            .map_err(|error| format!("maintaining melange_db failed: {error}"));
        if let Err(error) = result {
            self.shared.fault(error);
        }
    }

    /// Once the tier is over `max_disk_bytes`, drops the oldest writes until it is a
    /// tenth below, so that it is not back over the limit after the next few writes.
    fn evict_over_limit(&mut self) -> Result<(), String> {
        let limit = self.shared.config.max_disk_bytes;
        if self.book.bytes <= limit {
            return Ok(());
        }
        let target = limit - limit / 10;
        while self.book.bytes > target {
            let oldest: Vec<_> = guarded(|| {
                self.db
                    .range(order_key(0)..=order_key(u64::MAX))
                    .take(EVICTION_CHUNK)
                    .collect::<Result<Vec<_>, _>>()
            })?;
            if oldest.is_empty() {
                // The counts disagree with the items: trust the items.
                self.book.bytes = 0;
                self.book.items = 0;
                break;
            }
            let mut staged = Staged::default();
            for (order, key) in oldest {
                if self.book.bytes <= target {
                    break;
                }
                staged.batch.remove(order.clone());
                let seq = order_seq(&order);
                let mut buffer = [0; MAX_PREFIXED_KEY];
                let item_key = prefixed(&mut buffer, ITEM_SPACE, &key);
                let record = guarded(|| self.db.get(item_key))?;
                let Some(record) = record else { continue };
                // An order entry left behind by a record that was since rewritten.
                if decode_header(&record).ok().map(|header| header.seq) != seq {
                    continue;
                }
                self.forget_record(&mut staged.batch, item_key, &record);
                staged.batch.remove(item_key);
                self.shared
                    .counters
                    .evictions
                    .fetch_add(1, Ordering::Relaxed);
            }
            staged.changed = true;
            self.commit(staged);
            if self.faulted() {
                break;
            }
        }
        Ok(())
    }

    /// Removes expired and flushed items from the next chunk of keys.
    fn sweep(&mut self) -> Result<(), String> {
        let start = self.sweep_from.take().unwrap_or_else(|| vec![ITEM_SPACE]);
        let end = vec![ITEM_SPACE + 1];
        let chunk: Vec<_> = guarded(|| {
            self.db
                .range(start..end)
                .take(SWEEP_CHUNK)
                .collect::<Result<Vec<_>, _>>()
        })?;
        if chunk.len() == SWEEP_CHUNK {
            let mut next = chunk[chunk.len() - 1].0.to_vec();
            next.push(0);
            self.sweep_from = Some(next);
        }
        let now = unix_now();
        let floor = FlushFloor {
            time: self.book.flush_at,
            cas: self.book.flush_cas,
        };
        let mut staged = Staged::default();
        for (item_key, record) in chunk {
            let gone = match decode_header(&record) {
                Ok(header) => gone(&header, &floor, now),
                // Unreadable: it can never be served, so it only takes room.
                Err(_) => true,
            };
            if !gone {
                continue;
            }
            self.forget_record(&mut staged.batch, &item_key, &record);
            staged.batch.remove(item_key);
            self.shared
                .counters
                .reclaimed
                .fetch_add(1, Ordering::Relaxed);
            staged.changed = true;
        }
        self.commit(staged);
        Ok(())
    }
}

/// Whether an item on disk can no longer be served.
fn gone(header: &ItemHeader, floor: &FlushFloor, now: u32) -> bool {
    (header.exptime != 0 && header.exptime <= now) || floor.hides(header, now)
}
