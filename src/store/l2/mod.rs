//! The persistent tier (L2): every change to the store also goes to a melange_db tree on
//! disk, so the cache survives a restart and can hold more than its memory.
//!
//! # Write-behind
//!
//! A request never waits for the disk. Whatever a command leaves behind in L1 (a new
//! item, a changed one, a deleted one) is copied, while the item's stripe is still
//! locked, into a message on a crossbeam channel; one background thread, the *writer*
//! (`writer`), takes the messages in order, applies them to melange_db in batches of up
//! to `batch_size` (one atomic melange_db batch each, so repeated writes to one key
//! cost one write), and fsyncs.
//!
//! The crash window, `flush_interval` (100 ms by default), is shared by two waits. A
//! write waits in the queue: the writer measures how many queued bytes it applies per
//! second and keeps the queue to a quarter of the window's worth (never above
//! `queue_max_bytes`); a command that finds the queue full waits for room. So when the
//! disk cannot keep up, the cache slows down to what the disk can take instead of
//! dropping writes (a dropped write would leave an older value on disk to be served
//! later) or letting the backlog, and with it what a crash loses, grow. `stats` counts
//! those waits (`l2_queue_waits`) and the log says when they start. Then an applied
//! write waits for the syncer (`syncer`) to fsync it, which it schedules within the
//! rest of the window. An fsync rewrites every leaf written since the last one, and
//! takes longer as the tree grows; once it takes more than half the window, the
//! syncer runs them back to back and a crash loses about two fsyncs' time
//! (`l2_last_sync_ms` in `stats`). With `sync_writes` a command waits, after
//! releasing its lock, until its own write is fsynced.
//!
//! # Reading
//!
//! An L1 miss looks the key up in melange_db, from a handle of its own (melange_db's
//! handles must not be used by two threads at once, so readers borrow clones from a
//! pool), and puts what it finds into L1: a *promotion*, which writes nothing to disk.
//! It must never bring back something older than what L1 last said about the key, so
//! keys are spread over [`BUCKETS`] buckets, each counting the messages queued for it
//! and the messages the writer has applied. A promotion reads the disk only when its
//! bucket has nothing in flight (waiting, at most one crash window, for the writer to
//! apply what is: the item was evicted before its write reached the disk), and
//! inserts what it read only if, under the stripe lock, no message was queued for the
//! bucket meanwhile and L1 still lacks the key. Otherwise it is a miss. A command that
//! finds no item in L1 (when bringing it in failed) tells the tier the key is absent,
//! so the disk never keeps what the client was told is gone.
//!
//! # Faults
//!
//! melange_db reports some failures by panicking; every call into it runs under
//! `catch_unwind`. Any failure (an I/O error, a panic, a corrupt record, the disk
//! running within `min_free_disk` of full) puts the tier in a fault state: the writer
//! keeps draining the queue without writing, reads stop, L1 keeps serving, and `stats`
//! and the log say why. Since the disk then misses acknowledged writes, a `FAULT` file is
//! left in the data directory, and the next start discards the stale contents.

mod record;
mod syncer;
mod writer;

use std::fs;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use record::{prefixed, Bookkeeping, ITEM_SPACE, MAX_PREFIXED_KEY};

pub(crate) use record::ItemHeader;

use super::tier::{TierConfig, TierError, TierStats};

/// Buckets of in-flight write counters (see the module docs); a power of two.
const BUCKETS: usize = 1 << 16;

/// Bytes a queued message takes besides its key and value.
const MESSAGE_OVERHEAD: usize = 64;

/// The queue's bound before the writer has measured its pace.
const INITIAL_QUEUE_LIMIT: usize = 1024 * 1024;

/// Waits for queue room are logged at most this often.
const WAIT_LOG_INTERVAL_SECS: u32 = 10;

/// How long a conflict on the directory's lock file is retried (see `lock_dir`).
const OWN_LOCK_WAIT: Duration = Duration::from_secs(1);

/// How long a conflict on melange_db's own lock is retried (see `open_db`).
const MELANGE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// The file whose lock says a process is using the directory.
const LOCK_FILE: &str = "rat_memcached.lock";

/// The name of the file that marks a data directory whose contents missed writes.
const FAULT_FILE: &str = "FAULT";

/// Items per melange_db leaf (its default). Every fsync rewrites each leaf a write
/// touched; larger leaves made that cheaper under random writes (4096: about 12 % more
/// sets per second) but make a read that misses melange_db's cache decompress a larger
/// leaf, so the default stays.
const LEAF_FANOUT: usize = 1024;

/// The melange_db tree type the tier uses.
type Db = melange_db::Db<LEAF_FANOUT>;

/// A change for the writer, in the order commands made them.
pub(crate) enum Message {
    /// The key's item as L1 now holds it.
    Put {
        /// Key then value, as in L1.
        data: Box<[u8]>,
        key_len: usize,
        header: ItemHeader,
        bucket: u32,
        done: Option<Sender<()>>,
    },
    /// L1 no longer holds the key.
    Delete {
        key: Box<[u8]>,
        bucket: u32,
        done: Option<Sender<()>>,
    },
    /// A `flush_all`: items stored at or before `time` (Unix seconds), or with a CAS
    /// below `cas`, are gone once `time` has come.
    Flush { floor: FlushFloor },
    /// Apply everything before, and stop (the syncer then makes it durable).
    Stop,
}

impl Message {
    /// The key's bucket, for a put or a delete.
    fn bucket(&self) -> Option<u32> {
        match self {
            Message::Put { bucket, .. } | Message::Delete { bucket, .. } => Some(*bucket),
            Message::Flush { .. } | Message::Stop => None,
        }
    }

    /// Bytes the message holds, for the queue bound.
    fn weight(&self) -> usize {
        match self {
            Message::Put { data, .. } => data.len() + MESSAGE_OVERHEAD,
            Message::Delete { key, .. } => key.len() + MESSAGE_OVERHEAD,
            Message::Flush { .. } | Message::Stop => MESSAGE_OVERHEAD,
        }
    }
}

/// memcached's flush state in Unix time: `flush_all` makes items stored at or before
/// `time`, or given a CAS below `cas`, invisible once `time` is not in the future.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FlushFloor {
    pub time: u32,
    pub cas: u64,
}

impl FlushFloor {
    fn hides(&self, header: &ItemHeader, now: u32) -> bool {
        self.time != 0 && self.time <= now && (header.time <= self.time || header.cas < self.cas)
    }
}

/// An item read from L2, ready to go into L1.
pub(crate) struct Loaded {
    pub data: Box<[u8]>,
    pub flags: u32,
    /// Unix times, as stored.
    pub exptime: u32,
    pub time: u32,
    pub cas: u64,
    /// The bucket's queued count when the read started: the promotion is void if it moved.
    pub queued: u32,
}

/// State shared by the request threads, the writer and the syncer.
pub(crate) struct TierShared {
    config: TierConfig,
    /// Per bucket: messages queued and messages applied (wrapping; only equality counts).
    queued: Box<[AtomicU32]>,
    applied: Box<[AtomicU32]>,
    queue_bytes: AtomicUsize,
    queue_depth: AtomicUsize,
    /// Bytes the queue may hold now: what the writer applies in a quarter of the crash
    /// window, within `queue_max_bytes` (the writer sets it).
    queue_limit: AtomicUsize,
    room: Mutex<()>,
    room_freed: Condvar,
    faulted: AtomicBool,
    fault_reason: Mutex<Option<String>>,
    writer_running: AtomicBool,
    /// When a wait for queue room was last logged (Unix seconds).
    last_wait_logged: AtomicU32,
    /// Batches the writer has applied; the syncer makes them durable.
    applied_batches: AtomicU64,
    sync_state: Mutex<SyncState>,
    /// Wakes the syncer when a batch was applied or the tier closes.
    sync_wakeup: Condvar,
    /// The latest flush, as commands see it before the writer has stored it.
    flush_time: AtomicU32,
    flush_cas: AtomicU64,
    counters: Counters,
}

/// What the syncer has done and who waits for it.
#[derive(Default)]
struct SyncState {
    /// Applied batches known to be on disk.
    durable: u64,
    /// Commands (with `sync_writes`) waiting for the batch they were applied in.
    waiting: Vec<(u64, Sender<()>)>,
    /// Make everything applied durable, then stop.
    stop: bool,
}

/// Counters bumped off the hit path.
#[derive(Default)]
struct Counters {
    items: AtomicU64,
    bytes: AtomicU64,
    reads: AtomicU64,
    read_waits: AtomicU64,
    hits: AtomicU64,
    promotions: AtomicU64,
    warmed: AtomicU64,
    writes: AtomicU64,
    batches: AtomicU64,
    flushes: AtomicU64,
    last_sync_ms: AtomicU64,
    queue_waits: AtomicU64,
    dropped_writes: AtomicU64,
    evictions: AtomicU64,
    reclaimed: AtomicU64,
    compressed: AtomicU64,
    errors: AtomicU64,
}

impl TierShared {
    /// Records a fault: stops reads and disk writes, leaves the `FAULT` file, logs.
    fn fault(&self, reason: String) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        {
            // The reason is in place before anyone can see the fault.
            let mut first = self.fault_reason.lock();
            if first.is_some() {
                return;
            }
            *first = Some(reason.clone());
        }
        self.faulted.store(true, Ordering::Release);
        log::error!(
            "persistent tier: {reason}; writing to {} stopped, the cache goes on from memory",
            self.config.data_dir.display()
        );
        let marker = self.config.data_dir.join(FAULT_FILE);
        if let Err(error) = fs::write(&marker, format!("{reason}\n")) {
            log::error!(
                "persistent tier: cannot write {}: {error}; remove {} before the next start",
                marker.display(),
                self.config.data_dir.display()
            );
        }
    }

    /// Marks a message (of `bucket`, for a put or a delete) done with and gives its
    /// room in the queue back.
    fn settle(&self, bucket: Option<u32>, weight: usize) {
        if let Some(bucket) = bucket {
            self.applied[bucket as usize].fetch_add(1, Ordering::Release);
        }
        self.queue_depth.fetch_sub(1, Ordering::Relaxed);
        self.queue_bytes.fetch_sub(weight, Ordering::AcqRel);
    }

    /// Wakes commands waiting for room.
    fn room_made(&self) {
        let _guard = self.room.lock();
        self.room_freed.notify_all();
    }

    /// Whether the disk still holds what L1 said: not after a fault, nor once the
    /// writer stopped (a close).
    fn follows_l1(&self) -> bool {
        !self.faulted.load(Ordering::Acquire) && self.writer_running.load(Ordering::Acquire)
    }

    fn flush_floor(&self) -> FlushFloor {
        FlushFloor {
            time: self.flush_time.load(Ordering::Acquire),
            cas: self.flush_cas.load(Ordering::Acquire),
        }
    }
}

/// The persistent tier of one store.
pub(crate) struct Tier {
    shared: Arc<TierShared>,
    sender: Sender<Message>,
    writer: Mutex<Option<JoinHandle<()>>>,
    syncer: Mutex<Option<JoinHandle<()>>>,
    /// Handles for readers: taken for one lookup, given back after.
    readers: Mutex<Vec<Db>>,
    /// Where reader handles are cloned from; never used for lookups itself.
    origin: Mutex<Db>,
    /// The largest CAS on disk when the tier opened.
    pub max_cas: u64,
    /// The directory's lock, released when the tier goes.
    _lock: fs::File,
}

impl Tier {
    /// Opens (or creates) the data directory and starts the writer and the syncer.
    pub fn open(config: TierConfig) -> Result<Tier, TierError> {
        let dir = config.data_dir.clone();
        let io_error = |source| TierError::Io {
            dir: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(io_error)?;
        // Held for the tier's life, and taken before anything in the directory is
        // touched: clearing must never reach a directory another instance is using.
        let lock = lock_dir(&dir)?;
        let fault_file = dir.join(FAULT_FILE);
        if config.clear_on_startup || fault_file.exists() {
            if !config.clear_on_startup {
                let reason = fs::read_to_string(&fault_file).unwrap_or_default();
                log::warn!(
                    "persistent tier: {} missed writes in an earlier run ({}); discarding \
                     its contents",
                    dir.display(),
                    reason.trim()
                );
            }
            clear_dir(&dir).map_err(io_error)?;
        }
        let db = open_db(&config)?;
        let book = match guarded(|| db.get(record::BOOKKEEPING_KEY)) {
            Ok(Some(bytes)) => Bookkeeping::decode(&bytes).map_err(|error| TierError::Corrupt {
                dir: dir.clone(),
                detail: error.to_string(),
            })?,
            Ok(None) => Bookkeeping::default(),
            Err(detail) => return Err(TierError::Corrupt { dir, detail }),
        };
        let (sender, receiver) = crossbeam_channel::unbounded();
        let shared = Arc::new(TierShared {
            queued: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            applied: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            queue_bytes: AtomicUsize::new(0),
            queue_depth: AtomicUsize::new(0),
            queue_limit: AtomicUsize::new(config.queue_max_bytes.min(INITIAL_QUEUE_LIMIT)),
            room: Mutex::new(()),
            room_freed: Condvar::new(),
            faulted: AtomicBool::new(false),
            fault_reason: Mutex::new(None),
            writer_running: AtomicBool::new(true),
            applied_batches: AtomicU64::new(0),
            sync_state: Mutex::new(SyncState::default()),
            sync_wakeup: Condvar::new(),
            last_wait_logged: AtomicU32::new(0),
            flush_time: AtomicU32::new(book.flush_at),
            flush_cas: AtomicU64::new(book.flush_cas),
            counters: Counters {
                items: AtomicU64::new(book.items),
                bytes: AtomicU64::new(book.bytes),
                ..Counters::default()
            },
            config,
        });
        let syncer = {
            let (db, shared) = (db.clone(), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("rat-l2-syncer".into())
                .spawn(move || syncer::run(db, shared))
                .map_err(io_error)?
        };
        let writer = writer::Writer::new(db.clone(), Arc::clone(&shared), receiver, book);
        let handle = std::thread::Builder::new()
            .name("rat-l2-writer".into())
            .spawn(move || writer.run())
            .map_err(io_error)?;
        log::info!(
            "persistent tier: {} holds {} items ({} bytes)",
            dir.display(),
            book.items,
            book.bytes
        );
        Ok(Tier {
            shared,
            sender,
            writer: Mutex::new(Some(handle)),
            syncer: Mutex::new(Some(syncer)),
            readers: Mutex::new(Vec::new()),
            origin: Mutex::new(db),
            max_cas: book.max_cas,
            _lock: lock,
        })
    }

    /// The bucket of a key's hash.
    #[inline]
    pub fn bucket(hash: u64) -> u32 {
        (hash as usize & (BUCKETS - 1)) as u32
    }

    /// Counts a message for `bucket` as queued; called under the key's stripe lock, so
    /// a promotion holding that lock sees it.
    #[inline]
    pub fn queued(&self, bucket: u32) -> u32 {
        self.shared.queued[bucket as usize].load(Ordering::Acquire)
    }

    /// Queues a change (under the key's stripe lock, so that changes to one key queue in
    /// the order they were made); [`wait_for_room`](Self::wait_for_room) came first. With `sync_writes`,
    /// returns what to wait on, after the lock is released, for the write to be durable.
    pub fn send(&self, message: Message) -> Option<Receiver<()>> {
        let (message, done) = self.with_completion(message);
        if let Some(bucket) = message.bucket() {
            self.shared.queued[bucket as usize].fetch_add(1, Ordering::Release);
        }
        let weight = message.weight();
        self.shared.queue_depth.fetch_add(1, Ordering::Relaxed);
        self.shared.queue_bytes.fetch_add(weight, Ordering::AcqRel);
        if let Err(unsent) = self.sender.send(message) {
            // The writer has stopped (the store is closing): nothing will be written.
            self.shared
                .counters
                .dropped_writes
                .fetch_add(1, Ordering::Relaxed);
            self.shared.settle(unsent.0.bucket(), weight);
            return None;
        }
        done
    }

    /// With `sync_writes`, gives a put or delete a channel the writer signals once it
    /// is fsynced.
    fn with_completion(&self, message: Message) -> (Message, Option<Receiver<()>>) {
        if !self.shared.config.sync_writes {
            return (message, None);
        }
        let (sender, receiver) = crossbeam_channel::bounded(1);
        let message = match message {
            Message::Put {
                data,
                key_len,
                header,
                bucket,
                ..
            } => Message::Put {
                data,
                key_len,
                header,
                bucket,
                done: Some(sender),
            },
            Message::Delete { key, bucket, .. } => Message::Delete {
                key,
                bucket,
                done: Some(sender),
            },
            other => return (other, None),
        };
        (message, Some(receiver))
    }

    /// Waits while the queue has no room for about `len` more bytes. Called before a
    /// command takes its stripe lock: a lock is never held while waiting, so the queue
    /// may go past its bound by about one item per thread.
    pub fn wait_for_room(&self, len: usize) {
        let weight = len + MESSAGE_OVERHEAD;
        let shared = &self.shared;
        let full = || {
            let limit = shared.queue_limit.load(Ordering::Relaxed);
            let queued = shared.queue_bytes.load(Ordering::Acquire);
            queued > 0 && queued + weight > limit && shared.writer_running.load(Ordering::Acquire)
        };
        if !full() {
            return;
        }
        shared.counters.queue_waits.fetch_add(1, Ordering::Relaxed);
        let now = unix_now();
        let last = shared.last_wait_logged.load(Ordering::Relaxed);
        if now >= last.saturating_add(WAIT_LOG_INTERVAL_SECS)
            && shared
                .last_wait_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                "persistent tier: the disk is not keeping up; {} MB of writes are queued and \
                 commands wait for room (l2_queue_waits in stats counts them)",
                shared.queue_bytes.load(Ordering::Relaxed) >> 20
            );
        }
        let mut guard = shared.room.lock();
        while full() {
            shared
                .room_freed
                .wait_for(&mut guard, Duration::from_millis(50));
        }
    }

    /// Records a `flush_all` (Unix time of memcached's `oldest_live`, and `oldest_cas`).
    pub fn flush(&self, time: u32, cas: u64) {
        self.shared.flush_cas.store(cas, Ordering::Release);
        self.shared.flush_time.store(time, Ordering::Release);
        self.send(Message::Flush {
            floor: FlushFloor { time, cas },
        });
    }

    /// Looks `key` up on disk for a promotion. `None` when it is not there, expired,
    /// flushed, or when its bucket has writes in flight (see the module docs).
    pub fn load(&self, hash: u64, key: &[u8]) -> Option<Loaded> {
        let shared = &self.shared;
        if !shared.follows_l1() {
            return None;
        }
        let bucket = Tier::bucket(hash) as usize;
        let queued = self.settled(bucket)?;
        shared.counters.reads.fetch_add(1, Ordering::Relaxed);
        let mut buffer = [0; MAX_PREFIXED_KEY];
        let record = self.read_disk("reading from melange_db", |db| {
            db.get(prefixed(&mut buffer, ITEM_SPACE, key))
        })??;
        let (header, data) = match record::decode(&record, key) {
            Ok(decoded) => decoded,
            Err(error) => {
                shared.fault(format!("{error} under a key of {} bytes", key.len()));
                return None;
            }
        };
        let now = unix_now();
        if (header.exptime != 0 && header.exptime <= now)
            || shared.flush_floor().hides(&header, now)
        {
            return None;
        }
        shared.counters.hits.fetch_add(1, Ordering::Relaxed);
        Some(Loaded {
            data,
            flags: header.flags,
            exptime: header.exptime,
            time: header.time,
            cas: header.cas,
            queued,
        })
    }

    /// The bucket's queued count once the writer has applied every message queued for
    /// it. A key whose write is still queued was evicted from L1 before it reached the
    /// disk; the writer applies what is queued within a quarter of the crash window,
    /// so the read waits for that (at most one crash window), then gives up: a miss.
    fn settled(&self, bucket: usize) -> Option<u32> {
        let shared = &self.shared;
        let queued = shared.queued[bucket].load(Ordering::Acquire);
        if shared.applied[bucket].load(Ordering::Acquire) == queued {
            return Some(queued);
        }
        shared.counters.read_waits.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + shared.config.flush_interval;
        let mut guard = shared.room.lock();
        loop {
            let queued = shared.queued[bucket].load(Ordering::Acquire);
            if shared.applied[bucket].load(Ordering::Acquire) == queued {
                return Some(queued);
            }
            if !shared.follows_l1()
                || shared
                    .room_freed
                    .wait_until(&mut guard, deadline)
                    .timed_out()
            {
                return None;
            }
        }
    }

    /// Counts a promotion into L1.
    pub fn promoted(&self, warm_up: bool) {
        let counters = &self.shared.counters;
        counters.promotions.fetch_add(1, Ordering::Relaxed);
        if warm_up {
            counters.warmed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The keys of the live items on disk (none after a fault or a close: the disk no
    /// longer follows L1 then).
    pub fn keys(&self) -> Vec<Box<[u8]>> {
        let now = unix_now();
        let floor = self.shared.flush_floor();
        self.read_disk("listing the keys", |db| {
            let mut keys = Vec::new();
            for entry in db.range(&[ITEM_SPACE][..]..&[ITEM_SPACE + 1][..]) {
                let (item_key, record) = entry?;
                let Ok(header) = record::decode_header(&record) else {
                    continue;
                };
                let expired = header.exptime != 0 && header.exptime <= now;
                if !expired && !floor.hides(&header, now) {
                    keys.push(Box::from(&item_key[1..]));
                }
            }
            Ok(keys)
        })
        .unwrap_or_default()
    }

    /// The keys on disk, most recently written first (for warming L1), in chunks.
    pub fn recent_keys(&self, before_seq: u64, limit: usize) -> Vec<(u64, Box<[u8]>)> {
        self.read_disk("reading the write order", |db| {
            let mut keys = Vec::with_capacity(limit);
            let range = record::order_key(0)..record::order_key(before_seq);
            for entry in db.range(range).rev().take(limit) {
                let (order, key) = entry?;
                if let Some(seq) = record::order_seq(&order) {
                    keys.push((seq, Box::from(&*key)));
                }
            }
            Ok(keys)
        })
        .unwrap_or_default()
    }

    /// Runs `read` on a melange_db handle of its own (borrowed from the pool, cloned
    /// when the pool is empty, and given back). `None` when the disk no longer follows
    /// L1 (after a fault or a close), or when the read failed, which is a fault named
    /// after `what`.
    fn read_disk<T>(&self, what: &str, read: impl FnOnce(&Db) -> io::Result<T>) -> Option<T> {
        if !self.shared.follows_l1() {
            return None;
        }
        let db = self.readers.lock().pop();
        let db = db.unwrap_or_else(|| self.origin.lock().clone());
        let result = guarded(|| read(&db));
        self.readers.lock().push(db);
        result
            .map_err(|error| self.shared.fault(format!("{what} failed: {error}")))
            .ok()
    }

    pub fn stats(&self) -> TierStats {
        let shared = &self.shared;
        let counters = &shared.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TierStats {
            items: load(&counters.items),
            bytes: load(&counters.bytes),
            disk_bytes: dir_size(&shared.config.data_dir),
            limit_bytes: shared.config.max_disk_bytes,
            reads: load(&counters.reads),
            read_waits: load(&counters.read_waits),
            hits: load(&counters.hits),
            promotions: load(&counters.promotions),
            warmed: load(&counters.warmed),
            writes: load(&counters.writes),
            batches: load(&counters.batches),
            flushes: load(&counters.flushes),
            last_sync_ms: load(&counters.last_sync_ms),
            queue_depth: shared.queue_depth.load(Ordering::Relaxed) as u64,
            queue_bytes: shared.queue_bytes.load(Ordering::Relaxed) as u64,
            queue_waits: load(&counters.queue_waits),
            dropped_writes: load(&counters.dropped_writes),
            evictions: load(&counters.evictions),
            reclaimed: load(&counters.reclaimed),
            compressed: load(&counters.compressed),
            errors: load(&counters.errors),
            faulted: shared.faulted.load(Ordering::Acquire),
        }
    }

    /// Why the tier stopped writing, if it did.
    pub fn fault_reason(&self) -> Option<String> {
        self.shared.fault_reason.lock().clone()
    }

    /// Applies everything queued, fsyncs, and stops the writer. Later changes are not
    /// written. Safe to call more than once.
    pub fn close(&self) {
        let Some(handle) = self.writer.lock().take() else {
            return;
        };
        // A send only fails when the writer is already gone.
        let _ = self.sender.send(Message::Stop);
        if handle.join().is_err() {
            self.shared.fault("the writer thread panicked".to_string());
        }
        // The syncer makes what the writer applied last durable, then stops.
        self.shared.sync_state.lock().stop = true;
        self.shared.sync_wakeup.notify_all();
        if let Some(syncer) = self.syncer.lock().take() {
            if syncer.join().is_err() {
                self.shared.fault("the syncer thread panicked".to_string());
            }
        }
        self.readers.lock().clear();
    }
}

impl Drop for Tier {
    fn drop(&mut self) {
        self.close();
    }
}

/// Runs a melange_db call, turning a panic into an error.
fn guarded<T>(call: impl FnOnce() -> io::Result<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(panic) => Err(panic_message(&panic)),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        format!("melange_db panicked: {text}")
    } else if let Some(text) = panic.downcast_ref::<String>() {
        format!("melange_db panicked: {text}")
    } else {
        "melange_db panicked".to_string()
    }
}

fn open_db(config: &TierConfig) -> Result<Db, TierError> {
    let dir = &config.data_dir;
    let melange_config = melange_db::Config::new()
        .path(dir)
        // The writer fsyncs on its own schedule: melange_db's flusher thread would abort
        // the process on a write error.
        .flush_every_ms(None)
        .cache_capacity_bytes(config.cache_bytes);
    // Our own lock is held, so no other instance has the directory; but melange_db's
    // background threads let go of its lock a moment after a previous handle in this
    // process was dropped (a store closed and opened again), so a conflict is retried
    // for a while before it counts.
    let give_up = Instant::now() + MELANGE_LOCK_WAIT;
    let opened = loop {
        let opened = catch_unwind(AssertUnwindSafe(|| melange_config.open::<LEAF_FANOUT>()));
        match &opened {
            Ok(Err(error)) if is_lock_conflict(error) && Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => break opened,
        }
    };
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) if is_lock_conflict(&error) => Err(TierError::InUse { dir: dir.clone() }),
        Ok(Err(error)) if error.kind() == io::ErrorKind::PermissionDenied => Err(TierError::Io {
            dir: dir.clone(),
            source: error,
        }),
        Ok(Err(error)) => Err(TierError::Corrupt {
            dir: dir.clone(),
            detail: error.to_string(),
        }),
        Err(panic) => Err(TierError::Corrupt {
            dir: dir.clone(),
            detail: panic_message(&panic),
        }),
    }
}

/// Whether opening failed because another process holds the directory's lock.
fn is_lock_conflict(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock || error.to_string().contains("lock")
}

/// Takes the directory's lock file, or fails when another process holds it.
fn lock_dir(dir: &Path) -> Result<fs::File, TierError> {
    let io_error = |source| TierError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(io_error)?;
    // A conflict is retried for a moment: a store this process is closing may not have
    // let go yet (seen in tests that close and reopen a directory at once).
    let give_up = Instant::now() + OWN_LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(TierError::InUse {
                    dir: dir.to_path_buf(),
                })
            }
            Err(fs::TryLockError::Error(error)) => return Err(io_error(error)),
        }
    }
}

/// Removes everything in `dir` but its lock file (keeping the directory itself, which
/// may be a mount).
fn clear_dir(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let path = entry?.path();
        if path.file_name() == Some(std::ffi::OsStr::new(LOCK_FILE)) {
            continue;
        }
        if path.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The current Unix time in seconds, as the tier stores times.
pub(crate) fn unix_now() -> u32 {
    u32::try_from(super::clock::unix_now()).unwrap_or(u32::MAX)
}

/// Free bytes on the file system holding `dir`, where the platform tells.
#[cfg(unix)]
fn free_disk_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stats` is written by statvfs before use.
    let result = unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) };
    if result != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `stats`.
    let stats = unsafe { stats.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some(stats.f_bavail as u64 * stats.f_frsize as u64)
}

#[cfg(not(unix))]
fn free_disk_bytes(_dir: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests;
