//! The L1 store: a striped, memory-bounded, in-memory cache with memcached 1.6 semantics.
//!
//! The store knows nothing about sockets or the wire protocol. The protocol layer hands it
//! keys, values and already-converted expiry times, and copies item bytes out through a
//! closure while the item's stripe is locked. Every reactor thread shares one
//! `Arc<Store>`.
//!
//! # Stripes
//!
//! Items are spread over N stripes (a power of two; by default eight per CPU, between 16
//! and 1024), each a [`parking_lot::Mutex`] around one shard (a stripe's state), padded to
//! its own 128 bytes so that locking one stripe never bounces another's cache line. A key
//! is hashed once, with foldhash under a per-store random seed: bits 40 and up choose the
//! stripe, and the same hash then probes the stripe's table, which takes a bucket from the
//! low bits and a one-byte tag from bits 32-39.
//!
//! A get takes exactly one stripe lock and no other lock, allocates nothing, and writes
//! nothing but its own item's slot (every eviction policy acts on a hit lazily, see
//! [`EvictionStrategy`] and the `eviction` module). The only
//! shared writes a request can make are the CAS counter (on modifications) and the memory
//! budget (when an item's size changes).
//!
//! # Items
//!
//! A stripe is an arena of 48-byte slots plus a hash table of `u32` slot indices in
//! 64-byte buckets (the `table` module), whose line for a key a caller about to look up
//! several keys can load ahead with [`Store::prefetch`]. Each item is one heap allocation holding its key and then its value;
//! its flags, expiry, CAS, store time, eviction queue links and state and a fetched bit
//! sit inline in the slot.
//! Freed slots go on a free list and are reused before the arena grows; an arena more than
//! an eighth free is compacted, and its table shrunk. The `item` module draws the slot
//! layout.
//!
//! # Memory
//!
//! [`StoreConfig::max_memory`] is a hard limit on accounted bytes, and what an item is
//! charged counts its real overhead: the allocator's size class for its key+value
//! allocation, its slot with the arena's spare room, and its hash-table bucket at the
//! table's lowest load (the `item` module's `item_cost`). The charge is reserved in one global
//! atomic budget before an item is linked, so a single stripe may use any share of the
//! memory. When the budget is short, the storing thread evicts the victims its own stripe's
//! policy names (while holding only that lock); if its stripe runs dry it releases the
//! lock, evicts from other stripes one lock at a time, reserves what it freed, and tries
//! again. Only when no
//! stripe has anything left does a store answer [`StoreOutcome::NoMemory`]. Victims that
//! had already expired count as `reclaimed`, live ones as `evictions`.
//! [`StoreConfig::max_entries`] caps the item count the same way.
//!
//! # Time, expiry and flush
//!
//! Times are memcached's `rel_time` ([`clock`]). Expired and flushed items are never
//! returned: a request that finds one removes it and reports a miss, and a background
//! thread calls [`Store::sweep_expired`] to remove the ones nobody asks for. `flush_all`
//! records memcached's `oldest_live` (and, for an immediate flush, the CAS counter at that
//! moment); after an immediate flush, [`Store::drop_flushed`] frees the flushed items in
//! one pass.
//!
//! # Meta commands
//!
//! memcached's meta protocol reads and changes more of an item than the classic commands:
//! its remaining TTL, when it was last accessed, whether it was fetched, and two markers
//! for serving stale data while one client refreshes it. An item is *stale* once a meta
//! delete invalidated it ([`Store::meta_delete`]) or an older version was written back
//! over it ([`StoreOptions::stale_ok`]); the first client to see a stale item, to create
//! a missing one ([`Store::meta_get`] with `vivify`), or to find it close to expiring
//! *wins* and is told to refresh it, which sets the item's token-sent marker so later
//! clients are told someone else is on it. The markers live in the slot's bit byte; a
//! replacing store clears them, as memcached's new item starts without them.
//!
//! A meta get or arithmetic command lends the item as a [`MetaEntry`] while the stripe
//! is locked, so the protocol layer can report fields and make its changes in the order
//! the client's flags ask for, all under one lock, as memcached does under its item lock.

mod budget;
pub mod clock;
mod eviction;
mod item;
#[cfg(feature = "l2")]
mod l2;
mod shard;
mod stats;
mod table;
mod tier;

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::Receiver;
use hashbrown::DefaultHashBuilder;
use parking_lot::Mutex;

use budget::{Budget, Charge};
use clock::RelTime;
#[cfg(feature = "l2")]
use item::ItemMeta;
use item::{item_data, memcached_item_size, Slot, MAX_KEY_LEN};
#[cfg(feature = "l2")]
use l2::{ItemHeader, Message, Tier};
#[cfg(feature = "l2")]
use shard::Adoption;
use shard::{Deletion, Delta, Lookup, Moment, Shard, StoreRequest};
use table::TableHint;

pub use clock::Expiry;
pub use eviction::EvictionStrategy;
pub use item::{allocation_size, MAPPED_MIN, MAPPED_PAGE};
pub use stats::StoreStats;
pub use tier::{TierConfig, TierError, TierStats};

/// What a command waits on, after its lock is released, for its write to be durable
/// (only with the persistent tier's `sync_writes`).
type Durable = Option<Receiver<()>>;

/// Keys [`Store::prefetch`] loads at a time: enough for their misses to overlap, few
/// enough that the first group's lines are still in the L1 cache when they are read.
pub const PREFETCH_GROUP: usize = 16;

/// Fewest stripes chosen automatically.
const MIN_AUTO_STRIPES: usize = 16;
/// Most stripes, chosen automatically or configured.
const MAX_STRIPES: usize = 1024;
/// Automatic stripes per available CPU.
const STRIPES_PER_CPU: usize = 8;
/// The hash bits that choose a stripe start here (see the module docs).
const STRIPE_HASH_SHIFT: u32 = 40;
/// Expired items [`Store::maintain`] removes per sweep call (it calls again while there
/// are more).
const MAINTENANCE_SWEEP_CHUNK: usize = 10_000;
/// Slots a sweep looks at per stripe lock, so the sweeper never holds a lock for long.
const SWEEP_CHUNK: usize = 1024;

/// How the store is sized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Hard limit on accounted bytes (memcached `-m`, in bytes).
    pub max_memory: usize,
    /// Optional limit on the number of items.
    pub max_entries: Option<usize>,
    /// Largest item, measured as memcached does (memcached `-I`, in bytes).
    pub max_item_size: usize,
    /// Number of stripes, rounded up to a power of two; 0 chooses from the CPU count.
    pub stripes: usize,
    /// Give items CAS values; when false every CAS reads 0 and `cas` never matches
    /// (memcached `-C`).
    pub cas_enabled: bool,
    /// Make room for new items by evicting live ones; when false a full store
    /// only reclaims expired items and otherwise answers `NoMemory`
    /// (memcached `-M`).
    pub evictions_enabled: bool,
    /// Which items make room first.
    pub eviction: EvictionStrategy,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_memory: 64 * 1024 * 1024,
            max_entries: None,
            max_item_size: 1024 * 1024,
            stripes: 0,
            cas_enabled: true,
            evictions_enabled: true,
            eviction: EvictionStrategy::Lru,
        }
    }
}

/// Which storage command a [`Store::store`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// `set`: store unconditionally.
    Set,
    /// `add`: store only when the key is missing.
    Add,
    /// `replace`: store only when the key is present.
    Replace,
    /// `append`: add the value after the item's.
    Append,
    /// `prepend`: add the value before the item's.
    Prepend,
    /// `cas` with the client's unique value.
    Cas(u64),
}

/// What a storage command did, one variant per memcached reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The value was stored.
    Stored,
    /// The mode's condition failed (`add` of a present key; `replace`, `append`
    /// or `prepend` of a missing one), or an append or prepend had no room for
    /// the longer item.
    NotStored,
    /// `cas` found the item changed since the client read it.
    Exists,
    /// `cas` found no item.
    NotFound,
    /// The item is larger than the item size limit, or its key longer than 250 bytes.
    TooLarge,
    /// Nothing could be evicted to make room.
    NoMemory,
}

/// What a storage command may ask beyond its mode (the meta protocol's `ms` flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Append and prepend only: the item's CAS must be this; 0 checks nothing.
    pub compare_cas: u64,
    /// `Cas` mode: a CAS older than the item's is accepted too, and then stores the value
    /// as stale, keeping the item's expiry and refresh marker (memcached's `ms I`).
    pub stale_ok: bool,
    /// The client gave the key base64-encoded; the item remembers it.
    pub key_binary: bool,
}

/// What a delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The item was removed.
    Deleted,
    /// Kept but marked stale, under a new CAS.
    Invalidated,
    /// The item's CAS was not the one given.
    Exists,
    /// No live item has the key.
    NotFound,
}

/// Why an incr, a decr or a meta arithmetic command did not apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaError {
    /// No live item has the key, and none was to be created.
    NotFound,
    /// The item's CAS is not the one the request named.
    Exists,
    /// The item's value is not a decimal number memcached would accept.
    NonNumeric,
    /// The result needed a larger item and nothing could be evicted to make room.
    NoMemory,
}

/// An incr or decr as the binary protocol asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaRequest {
    /// Increment (true) or decrement (false, stopping at 0).
    pub incr: bool,
    /// The amount to add or subtract.
    pub delta: u64,
    /// When not 0, the item's CAS must equal it.
    pub expected_cas: u64,
    /// Create a missing item holding this number, with flags 0 and this expiry.
    pub create: Option<(u64, Expiry)>,
}

/// What an applied [`DeltaRequest`] left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaApplied {
    /// The counter's new value.
    pub value: u64,
    /// The item's new CAS (0 when CAS is disabled).
    pub cas: u64,
    /// The item was missing and was created with the initial value.
    pub created: bool,
}

/// A live item, lent to a reader while its stripe is locked.
#[derive(Clone, Copy, Debug)]
pub struct ItemView<'a> {
    /// The item's key.
    pub key: &'a [u8],
    /// The item's value.
    pub value: &'a [u8],
    /// The client's opaque flags.
    pub flags: u32,
    /// 0 when CAS is disabled.
    pub cas: u64,
}

/// A live item lent to a meta command while its stripe is locked: what memcached's meta
/// commands can report about an item, and the few changes they make to it in passing.
///
/// Expiry changes go to a working copy that is written back when the command is done,
/// so that a later flag of the same command sees them even where they are then dropped
/// (an arithmetic result that outgrew its item replaced it; memcached shows the new
/// expiry and then loses it with the old item).
pub struct MetaEntry<'a> {
    slot: &'a mut Slot,
    now: RelTime,
    cas_enabled: bool,
    created: bool,
    exptime: RelTime,
    detached: bool,
    skip_bump: bool,
}

/// The refresh markers a meta get reports, in memcached's terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Another client was already told to refresh the item (`Z`).
    pub already_sent: bool,
    /// The item was invalidated (`X`).
    pub stale: bool,
    /// This client is the one to refresh it (`W`).
    pub won: bool,
}

impl<'a> MetaEntry<'a> {
    fn new(slot: &'a mut Slot, now: RelTime, cas_enabled: bool, created: bool) -> MetaEntry<'a> {
        let exptime = slot.exptime;
        MetaEntry {
            slot,
            now,
            cas_enabled,
            created,
            exptime,
            detached: false,
            skip_bump: false,
        }
    }

    /// The item's key.
    pub fn key(&self) -> &[u8] {
        self.slot.key()
    }

    /// The item's value.
    pub fn value(&self) -> &[u8] {
        self.slot.value()
    }

    /// The client's opaque flags.
    pub fn flags(&self) -> u32 {
        self.slot.flags
    }

    /// 0 when CAS is disabled.
    pub fn cas(&self) -> u64 {
        if self.cas_enabled {
            self.slot.cas
        } else {
            0
        }
    }

    /// Seconds until the item expires, `None` if it never does. Counted on the store's
    /// 32-bit clock as memcached counts it, so an expiry set in the past by this same
    /// command wraps around.
    pub fn ttl(&self) -> Option<u32> {
        (self.exptime != 0).then(|| self.exptime.wrapping_sub(self.now))
    }

    /// Seconds since the item was stored or last counted as accessed (see `Slot::bump`).
    pub fn idle(&self) -> u32 {
        self.now.wrapping_sub(self.slot.time)
    }

    /// Whether the item had been fetched before this command.
    pub fn was_fetched(&self) -> bool {
        self.slot.was_fetched()
    }

    /// Whether this command created the item.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Whether the client gave the key base64-encoded (meta flag `b`), so replies show it so.
    pub fn key_is_binary(&self) -> bool {
        self.slot.key_is_binary()
    }

    /// The size memcached gives this item (`ITEM_ntotal`).
    pub fn memcached_size(&self) -> usize {
        let key_len = self.slot.key().len();
        memcached_item_size(
            key_len,
            self.slot.flags,
            self.slot.value().len(),
            self.cas_enabled,
        )
    }

    /// Sets the item's expiry, written back when the command is done.
    pub fn set_expiry(&mut self, exptime: Expiry) {
        self.exptime = exptime.rel_time();
    }

    /// Whether a client asking to refresh items with less than `threshold` to live should
    /// refresh this one: it expires before then, nobody was told yet, and this command did
    /// not just create it.
    pub fn recache_due(&self, threshold: Expiry) -> bool {
        !self.slot.token_sent()
            && !self.created
            && self.exptime != 0
            && self.exptime < threshold.rel_time()
    }

    /// Settles who refreshes the item: `won` is what the command's own flags decided; a
    /// stale item nobody was told about yet is won too. A win is recorded on the item.
    pub fn settle_refresh(&mut self, won: bool) -> Refresh {
        let already_sent = self.slot.token_sent();
        let stale = self.slot.is_stale();
        let won = won || (stale && !already_sent);
        if won {
            self.slot.mark_token_sent();
        }
        Refresh {
            already_sent,
            stale,
            won,
        }
    }

    /// The command failed part-way: leave the item unbumped.
    pub fn skip_bump(&mut self) {
        self.skip_bump = true;
    }

    /// Expiry changes from now on go nowhere.
    fn detach(&mut self) {
        self.detached = true;
    }

    /// Writes the expiry back; returns whether the item may be bumped.
    fn finish(&mut self) -> bool {
        if !self.detached {
            self.slot.exptime = self.exptime;
        }
        !self.skip_bump
    }
}

/// What every stripe needs from the store while it works.
pub(crate) struct Shared {
    hasher: DefaultHashBuilder,
    budget: Budget,
    last_cas: AtomicU64,
    cas_enabled: bool,
    evictions_enabled: bool,
    max_item_size: usize,
    /// Where each stripe's table lives, for [`Store::prefetch`] to read without its lock.
    table_hints: Box<[TableHint]>,
}

impl Shared {
    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key);
        hasher.finish()
    }

    /// A new unique CAS value, greater than every one before it.
    #[inline]
    fn next_cas(&self) -> u64 {
        self.last_cas.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// One stripe, alone on its cache lines.
#[repr(align(128))]
struct Stripe {
    shard: Mutex<Shard>,
}

/// Where the sweeper continues.
#[derive(Default)]
struct SweepCursor {
    stripe: usize,
    slot: usize,
}

/// The striped in-memory cache. `Send + Sync`; share it with `Arc<Store>`.
pub struct Store {
    config: StoreConfig,
    shared: Shared,
    stripes: Box<[Stripe]>,
    stripe_mask: usize,
    /// memcached's `settings.oldest_live`: items stored at or before it are flushed once it
    /// is not in the future; 0 = never flushed.
    oldest_live: AtomicU32,
    /// memcached's `settings.oldest_cas`: with an immediate flush, items whose CAS is below
    /// it are flushed too (they were stored earlier in the same second).
    oldest_cas: AtomicU64,
    sweep_cursor: Mutex<SweepCursor>,
    /// Where the next search for a stripe to evict from starts, spreading evictions.
    evict_cursor: AtomicUsize,
    /// An immediate `flush_all` hid items that [`maintain`](Store::maintain) has not
    /// freed yet.
    flushed_to_drop: AtomicBool,
    /// The persistent tier, when there is one.
    #[cfg(feature = "l2")]
    tier: Option<Tier>,
}

impl Store {
    /// An empty store with only the in-memory tier.
    pub fn new(config: StoreConfig) -> Store {
        let stripe_count = stripe_count(config.stripes);
        let stripes = (0..stripe_count)
            .map(|stripe| Stripe {
                shard: Mutex::new(Shard::new(stripe, config.eviction)),
            })
            .collect();
        Store {
            shared: Shared {
                hasher: DefaultHashBuilder::default(),
                budget: Budget::new(config.max_memory, config.max_entries),
                last_cas: AtomicU64::new(0),
                cas_enabled: config.cas_enabled,
                evictions_enabled: config.evictions_enabled,
                max_item_size: config.max_item_size,
                table_hints: (0..stripe_count).map(|_| TableHint::default()).collect(),
            },
            stripes,
            stripe_mask: stripe_count - 1,
            oldest_live: AtomicU32::new(0),
            oldest_cas: AtomicU64::new(0),
            sweep_cursor: Mutex::new(SweepCursor::default()),
            evict_cursor: AtomicUsize::new(0),
            flushed_to_drop: AtomicBool::new(false),
            #[cfg(feature = "l2")]
            tier: None,
            config,
        }
    }

    /// A store with a persistent tier in `l2.data_dir`: what the directory holds is
    /// served again (call [`warm_up`](Self::warm_up) to load it into memory ahead of
    /// requests), and every change is written behind to it (see the `l2` module).
    #[cfg(feature = "l2")]
    pub fn open(config: StoreConfig, l2: TierConfig) -> Result<Store, TierError> {
        let tier = Tier::open(l2)?;
        let mut store = Store::new(config);
        // CAS values stay unique across restarts.
        store.shared.last_cas.store(tier.max_cas, Ordering::Relaxed);
        store.tier = Some(tier);
        Ok(store)
    }

    /// The configuration the store was built with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Starts loading into the CPU's cache what looking up `keys` will read, so that the
    /// cache misses of a multiget or of a batch of pipelined requests overlap instead of
    /// each lookup waiting for its own three (table line, slot, item). Call it with the
    /// keys about to be looked up, then look them up. Only a hint: it changes nothing.
    ///
    /// Keys go in groups of [`PREFETCH_GROUP`]. Each group takes three passes, each
    /// loading the next step for every key while the previous pass's loads arrive: the
    /// table lines (found from the hash alone, without a lock), then the slots they name,
    /// then the items those slots point to (both under each stripe's lock, held only for
    /// the read of one table entry or slot).
    pub fn prefetch<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) {
        let mut hashes = [0u64; PREFETCH_GROUP];
        let mut keys = keys.peekable();
        while keys.peek().is_some() {
            let mut count = 0;
            for (hash, key) in hashes.iter_mut().zip(keys.by_ref()) {
                *hash = self.shared.hash(key);
                count += 1;
            }
            let group = &hashes[..count];
            for &hash in group {
                self.shared.table_hints[self.stripe_index(hash)].prefetch(hash);
            }
            for &hash in group {
                self.stripe(hash).lock().prefetch_slot(hash);
            }
            for &hash in group {
                self.stripe(hash).lock().prefetch_item(hash);
            }
        }
    }

    /// Looks up a live item, bumps it for eviction, marks it fetched, and hands it to
    /// `read` while the stripe lock is held (copy the bytes out inside `read`).
    /// `None` is a miss: absent, expired or flushed.
    pub fn get<R>(&self, key: &[u8], read: impl FnOnce(ItemView<'_>) -> R) -> Option<R> {
        let hash = self.shared.hash(key);
        let moment = self.moment();
        if !self.has_tier() {
            return self
                .stripe(hash)
                .lock()
                .get(&self.shared, hash, key, &moment, None, read);
        }
        let mut read = Some(read);
        self.read_through(hash, key, || {
            let moment = self.moment();
            self.stripe(hash)
                .lock()
                .get(&self.shared, hash, key, &moment, None, |view| {
                    read.take().map(|read| read(view))
                })
                .flatten()
        })
    }

    /// gat/gats: like [`get`](Self::get), but first sets the item's expiry to `exptime`.
    pub fn get_and_touch<R>(
        &self,
        key: &[u8],
        exptime: Expiry,
        read: impl FnOnce(ItemView<'_>) -> R,
    ) -> Option<R> {
        let hash = self.shared.hash(key);
        self.make_queue_room(key.len());
        let mut read = Some(read);
        let mut durable = None;
        let result = self.read_through(hash, key, || {
            let moment = self.moment();
            let mut shard = self.stripe(hash).lock();
            let result = shard
                .get(&self.shared, hash, key, &moment, Some(exptime), |view| {
                    read.take().map(|read| read(view))
                })
                .flatten();
            durable = self.journal(&shard, hash, key, &moment, result.is_some());
            result
        });
        await_durable(durable);
        result
    }

    /// Changes the memory limit while running (memcached's `cache_memlimit`).
    /// A lower limit is reached by evicting as new items come in.
    pub fn set_max_memory(&self, bytes: usize) {
        self.shared.budget.set_max_bytes(bytes);
    }

    /// Whether an item of this shape is within the item size limit (`-I`),
    /// measured as memcached measures it, so a server can refuse a value
    /// before receiving it.
    pub fn item_fits(&self, key_len: usize, flags: u32, value_len: usize) -> bool {
        let size = memcached_item_size(key_len, flags, value_len, self.config.cas_enabled);
        key_len <= MAX_KEY_LEN && size <= self.config.max_item_size
    }

    /// set/add/replace/append/prepend/cas. `value` excludes the trailing CRLF. Append and
    /// prepend keep the item's flags and expiry and ignore the ones given.
    pub fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: Expiry,
        value: &[u8],
    ) -> StoreOutcome {
        self.store_with(mode, key, flags, exptime, value, StoreOptions::default())
            .0
    }

    /// [`store`](Self::store) with the meta protocol's options; also returns the stored
    /// item's CAS (0 when nothing was stored or CAS is off).
    pub fn store_with(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: Expiry,
        value: &[u8],
        options: StoreOptions,
    ) -> (StoreOutcome, u64) {
        if !self.item_fits(key.len(), flags, value.len()) {
            if mode == StoreMode::Set {
                // memcached unlinks the old item so that a failed set leaves no stale data.
                self.remove(key);
            }
            return (StoreOutcome::TooLarge, 0);
        }
        let hash = self.shared.hash(key);
        self.make_queue_room(key.len() + value.len());
        if mode != StoreMode::Set {
            self.fault_in(hash, key);
        }
        let concatenating = matches!(mode, StoreMode::Append | StoreMode::Prepend);
        let mut request = StoreRequest {
            mode,
            key,
            flags,
            exptime,
            value,
            // Copy the value before taking the lock; append/prepend need the old item first.
            data: (!concatenating).then(|| item_data(key, value)),
            options,
        };
        let mut durable = None;
        let outcome = self.with_room(hash, |shard, moment, prepaid| {
            let outcome = shard.store(&self.shared, hash, &mut request, moment, prepaid)?;
            let stored = outcome.0 == StoreOutcome::Stored;
            durable = self.journal(shard, hash, key, moment, stored);
            Ok(outcome)
        });
        await_durable(durable);
        match outcome {
            Some((StoreOutcome::NoMemory, _)) | None if mode == StoreMode::Set => {
                self.remove(key);
                (StoreOutcome::NoMemory, 0)
            }
            Some(outcome) => outcome,
            None if concatenating => (StoreOutcome::NotStored, 0),
            None => (StoreOutcome::NoMemory, 0),
        }
    }

    /// A meta get (`mg`): looks the item up, or with `vivify` creates an empty one on a
    /// miss, and lends it to `read`, which may change its expiry and settle who refreshes
    /// it. Afterwards the item is bumped (as a get bumps it) when `bump` is set and `read`
    /// did not call [`MetaEntry::skip_bump`]. `None` is a miss.
    pub fn meta_get<R>(
        &self,
        key: &[u8],
        vivify: bool,
        bump: bool,
        read: impl FnOnce(&mut MetaEntry<'_>) -> R,
    ) -> Option<R> {
        let hash = self.shared.hash(key);
        self.make_queue_room(key.len());
        self.fault_in(hash, key);
        // Whether the command changed what the persistent tier keeps (created the item
        // or changed its expiry).
        let changed = Cell::new(false);
        let changed_by_read = &changed;
        let mut read = Some(move |entry: &mut MetaEntry<'_>| {
            let result = read(entry);
            changed_by_read.set(entry.created || entry.exptime != entry.slot.exptime);
            result
        });
        let mut durable = None;
        let result = if !vivify {
            let moment = self.moment();
            let mut prepaid = Charge::ZERO;
            let mut shard = self.stripe(hash).lock();
            // Without vivify nothing is allocated, so this cannot come back short.
            let result = shard
                .meta_get(
                    &self.shared,
                    hash,
                    key,
                    &moment,
                    &mut prepaid,
                    false,
                    bump,
                    &mut read,
                )
                .unwrap_or(None);
            durable = self.journal(&shard, hash, key, &moment, changed.get());
            result
        } else {
            self.with_room(hash, |shard, moment, prepaid| {
                let result = shard.meta_get(
                    &self.shared,
                    hash,
                    key,
                    moment,
                    prepaid,
                    true,
                    bump,
                    &mut read,
                )?;
                durable = self.journal(shard, hash, key, moment, changed.get());
                Ok(result)
            })
            .flatten()
        };
        await_durable(durable);
        result
    }

    /// Looks at an item without bumping it or marking it fetched (`me`).
    pub fn peek<R>(&self, key: &[u8], read: impl FnOnce(&MetaEntry<'_>) -> R) -> Option<R> {
        self.meta_get(key, false, false, |entry| read(entry))
    }

    /// A meta delete (`md`): with `compare`, only if the item's CAS is that; with
    /// `invalidate`, the item is kept, marked stale under a new CAS, and given the new
    /// expiry if there is one.
    pub fn meta_delete(
        &self,
        key: &[u8],
        compare: Option<u64>,
        invalidate: Option<Option<Expiry>>,
    ) -> DeleteOutcome {
        self.delete_with(
            key,
            Deletion {
                compare,
                invalidate,
                by: Lookup::Get,
            },
        )
    }

    /// Meta arithmetic (`ma`): incr or decr by `delta` if the item's CAS is `compare` (0
    /// checks nothing); with `create`, a missing item is created holding that number.
    /// `read` then sees the item and the new number (the created one's initial value).
    pub fn meta_arith<R>(
        &self,
        key: &[u8],
        incr: bool,
        delta: u64,
        compare: u64,
        create: Option<u64>,
        read: impl FnOnce(&mut MetaEntry<'_>, u64) -> R,
    ) -> Result<R, DeltaError> {
        let hash = self.shared.hash(key);
        self.make_queue_room(key.len());
        let delta = if incr {
            Delta::Incr(delta)
        } else {
            Delta::Decr(delta)
        };
        self.fault_in(hash, key);
        let mut read = Some(read);
        let mut durable = None;
        let result = self
            .with_room(hash, |shard, moment, prepaid| {
                let done = match shard.arith(
                    &self.shared,
                    hash,
                    key,
                    delta,
                    compare,
                    create,
                    moment,
                    prepaid,
                )? {
                    Ok(done) => done,
                    Err(error) => {
                        durable = self.journal(shard, hash, key, moment, false);
                        return Ok(Err(error));
                    }
                };
                let read = read
                    .take()
                    .expect("with_room stops after the first success");
                let result = shard.after_arith(&self.shared, moment, &done, read);
                durable = self.journal(shard, hash, key, moment, true);
                Ok(Ok(result))
            })
            .unwrap_or(Err(DeltaError::NoMemory));
        await_durable(durable);
        result
    }

    /// Deletes a live item; false if there was none.
    pub fn delete(&self, key: &[u8]) -> bool {
        self.delete_if_cas(key, 0) == DeleteOutcome::Deleted
    }

    /// Deletes a live item if its CAS is `expected_cas`, or whatever its CAS when that is 0.
    pub fn delete_if_cas(&self, key: &[u8], expected_cas: u64) -> DeleteOutcome {
        self.delete_with(
            key,
            Deletion {
                compare: (expected_cas != 0).then_some(expected_cas),
                invalidate: None,
                by: Lookup::Other,
            },
        )
    }

    fn delete_with(&self, key: &[u8], deletion: Deletion) -> DeleteOutcome {
        let hash = self.shared.hash(key);
        self.make_queue_room(key.len());
        self.fault_in(hash, key);
        let moment = self.moment();
        let mut shard = self.stripe(hash).lock();
        let outcome = shard.delete(&self.shared, hash, key, &moment, deletion);
        let changed = matches!(outcome, DeleteOutcome::Deleted | DeleteOutcome::Invalidated);
        let durable = self.journal(&shard, hash, key, &moment, changed);
        drop(shard);
        await_durable(durable);
        outcome
    }

    /// Sets a live item's expiry without changing its CAS; false if there was none.
    pub fn touch(&self, key: &[u8], exptime: Expiry) -> bool {
        let hash = self.shared.hash(key);
        self.make_queue_room(key.len());
        self.fault_in(hash, key);
        let moment = self.moment();
        let mut shard = self.stripe(hash).lock();
        let touched = shard.touch(&self.shared, hash, key, exptime, &moment);
        let durable = self.journal(&shard, hash, key, &moment, touched);
        drop(shard);
        await_durable(durable);
        touched
    }

    /// incr/decr with memcached's rules: the value must be a decimal number, incr wraps at
    /// 2^64, decr stops at 0, and a shorter result is written in place padded with spaces.
    /// Returns the new value.
    pub fn incr_decr(&self, key: &[u8], incr: bool, delta: u64) -> Result<u64, DeltaError> {
        self.meta_arith(key, incr, delta, 0, None, |_, value| value)
    }

    /// incr/decr with the binary protocol's extras: a CAS condition, and an initial value
    /// to create a missing item with (whatever CAS was named, as memcached does), which
    /// then gets the request's expiry.
    pub fn delta(&self, key: &[u8], request: DeltaRequest) -> Result<DeltaApplied, DeltaError> {
        let initial = request.create.map(|(initial, _)| initial);
        self.meta_arith(
            key,
            request.incr,
            request.delta,
            request.expected_cas,
            initial,
            |entry, value| {
                if let (true, Some((_, exptime))) = (entry.created(), request.create) {
                    entry.set_expiry(exptime);
                }
                DeltaApplied {
                    value,
                    cas: entry.cas(),
                    created: entry.created(),
                }
            },
        )
    }

    /// `flush_all [delay]`: items stored before the moment become invisible from that moment.
    /// `delay_secs <= 0` is now; a positive delay is converted like an exptime (relative up
    /// to 30 days, absolute beyond). Returns whether the flush took effect at once, in
    /// which case [`drop_flushed`](Self::drop_flushed) can free the flushed items.
    pub fn flush_all(&self, delay_secs: i64) -> bool {
        let now = clock::now();
        // memcached flushes what was stored up to the second before the deadline, plus (when
        // that moment has come) everything with a CAS below the counter's current value.
        let oldest_live = clock::flush_deadline(delay_secs).saturating_sub(1);
        let immediate = oldest_live <= now;
        let oldest_cas = if immediate {
            let cas = self.shared.next_cas();
            self.oldest_cas.store(cas, Ordering::Release);
            self.flushed_to_drop.store(true, Ordering::Release);
            cas
        } else {
            0
        };
        self.oldest_live.store(oldest_live, Ordering::Release);
        self.journal_flush(oldest_live, oldest_cas);
        immediate
    }

    /// Frees every item an immediate `flush_all` made invisible, stripe by stripe. The
    /// flush itself only records the moment, as memcached's does (a get that meets a
    /// flushed item still counts it in `get_flushed`); a background thread calls this
    /// right after so the memory comes back at once instead of item by item.
    pub fn drop_flushed(&self) {
        self.flushed_to_drop.store(false, Ordering::Release);
        let moment = self.moment();
        for stripe in self.stripes.iter() {
            stripe.shard.lock().drop_flushed(&self.shared, &moment);
        }
    }

    /// A background thread's periodic work: frees what an immediate `flush_all` hid
    /// since the last call (so the memory comes back within one period, while a get
    /// right after the flush still meets the hidden item, as in memcached), then removes
    /// every expired item, a chunk at a time so no stripe is held long.
    pub fn maintain(&self) {
        if self.flushed_to_drop.load(Ordering::Acquire) {
            self.drop_flushed();
        }
        while self.sweep_expired(MAINTENANCE_SWEEP_CHUNK) == MAINTENANCE_SWEEP_CHUNK {}
    }

    /// For the background sweeper: removes up to `budget` expired or flushed items, walking
    /// the stripes from where the last call stopped. Returns how many were removed. Scans
    /// each stripe at most once per call and holds each lock only for a short chunk.
    pub fn sweep_expired(&self, budget: usize) -> usize {
        let mut cursor = self.sweep_cursor.lock();
        let moment = self.moment();
        let mut removed = 0;
        let mut stripes_finished = 0;
        while removed < budget && stripes_finished < self.stripes.len() {
            let progress = self.stripes[cursor.stripe].shard.lock().sweep(
                &self.shared,
                &moment,
                cursor.slot,
                budget - removed,
                SWEEP_CHUNK,
            );
            removed += progress.removed;
            match progress.next {
                Some(slot) => cursor.slot = slot,
                None => {
                    cursor.stripe = (cursor.stripe + 1) & self.stripe_mask;
                    cursor.slot = 0;
                    stripes_finished += 1;
                }
            }
        }
        removed
    }

    /// Counters summed over all stripes; `bytes` is the budget's, which items moving
    /// between stripes while they are summed cannot push past the limit.
    pub fn stats(&self) -> StoreStats {
        let mut stats = StoreStats {
            bytes: self.shared.budget.used_bytes() as u64,
            limit_maxbytes: self.shared.budget.max_bytes() as u64,
            curr_stripes: self.stripes.len() as u64,
            ..StoreStats::default()
        };
        for stripe in self.stripes.iter() {
            stripe.shard.lock().counters().add_to(&mut stats);
        }
        stats
    }

    /// Moves the store's clock forward by `secs` for the calling thread (tests only).
    #[cfg(test)]
    pub fn advance_clock_for_test(&self, secs: u32) {
        clock::advance_for_test(secs);
    }

    #[inline]
    fn stripe_index(&self, hash: u64) -> usize {
        (hash >> STRIPE_HASH_SHIFT) as usize & self.stripe_mask
    }

    #[inline]
    fn stripe(&self, hash: u64) -> &Mutex<Shard> {
        &self.stripes[self.stripe_index(hash)].shard
    }

    /// The clock and flush state for one request.
    #[inline]
    fn moment(&self) -> Moment {
        let now = clock::now();
        let oldest_live = self.oldest_live.load(Ordering::Acquire);
        if oldest_live != 0 && oldest_live <= now {
            Moment {
                now,
                oldest_live,
                oldest_cas: self.oldest_cas.load(Ordering::Acquire),
            }
        } else {
            Moment {
                now,
                oldest_live: 0,
                oldest_cas: 0,
            }
        }
    }

    /// Removes whatever is stored under `key`, visible or not.
    fn remove(&self, key: &[u8]) {
        let hash = self.shared.hash(key);
        self.make_queue_room(key.len());
        let mut shard = self.stripe(hash).lock();
        shard.remove(&self.shared, hash, key);
        let durable = self.journal(&shard, hash, key, &self.moment(), true);
        drop(shard);
        await_durable(durable);
    }

    /// Whether the store has a persistent tier to read through and write behind to.
    #[cfg(feature = "l2")]
    #[inline]
    fn has_tier(&self) -> bool {
        self.tier.is_some()
    }

    /// Before a command that may change an item: waits while the persistent tier's
    /// queue is full, so that the wait never holds a stripe lock. `len` is about what
    /// the command will queue (the item's size when known, else its key's).
    #[cfg(feature = "l2")]
    fn make_queue_room(&self, len: usize) {
        if let Some(tier) = &self.tier {
            tier.wait_for_room(len);
        }
    }

    /// Tells the persistent tier, if any, what L1 now holds under `key`, after a
    /// command that `changed` it. Called with the key's stripe locked, so one key's
    /// changes reach the tier in order.
    ///
    /// A command that found no item changed nothing in L1, but the tier is told the
    /// key is absent all the same: the disk may still hold it (or get it from writes
    /// in flight) when it could not be brought into memory first, and a value the
    /// client was just told does not exist must not appear later.
    #[cfg(feature = "l2")]
    fn journal(
        &self,
        shard: &Shard,
        hash: u64,
        key: &[u8],
        moment: &Moment,
        changed: bool,
    ) -> Durable {
        let tier = self.tier.as_ref()?;
        let bucket = Tier::bucket(hash);
        let live = shard.live(hash, key, moment);
        if !changed && live.is_some() {
            return None;
        }
        let message = match live {
            Some(slot) => Message::Put {
                data: Box::from(slot.data()),
                key_len: key.len(),
                header: ItemHeader {
                    flags: slot.flags,
                    exptime: clock::to_unix(slot.exptime),
                    time: clock::to_unix(slot.time),
                    cas: slot.cas,
                    seq: 0,
                },
                bucket,
                done: None,
            },
            None => Message::Delete {
                key: Box::from(key),
                bucket,
                done: None,
            },
        };
        tier.send(message)
    }

    /// Tells the persistent tier, if any, about a `flush_all` (see
    /// [`flush_all`](Self::flush_all) for the two values).
    #[cfg(feature = "l2")]
    fn journal_flush(&self, oldest_live: RelTime, oldest_cas: u64) {
        if let Some(tier) = &self.tier {
            tier.flush(clock::to_unix(oldest_live), oldest_cas);
        }
    }

    /// Before a command that depends on what a key holds: brings the key in from the
    /// persistent tier when L1 lacks it.
    #[cfg(feature = "l2")]
    fn fault_in(&self, hash: u64, key: &[u8]) {
        if self.tier.is_none() {
            return;
        }
        let moment = self.moment();
        if self.stripe(hash).lock().live(hash, key, &moment).is_some() {
            return;
        }
        self.promote(hash, key, true);
    }

    /// Runs a lookup and, when it missed and the persistent tier had the key, runs it
    /// once more.
    #[cfg(feature = "l2")]
    fn read_through<T>(
        &self,
        hash: u64,
        key: &[u8],
        mut attempt: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let result = attempt();
        if result.is_some() || self.tier.is_none() {
            return result;
        }
        match self.promote(hash, key, true) {
            // Present: another thread brought the key in between the two looks.
            Adoption::Adopted | Adoption::Present => attempt(),
            Adoption::Skipped | Adoption::NoRoom => None,
        }
    }

    /// Copies `key`'s item from the persistent tier into L1 (see the `l2` module for
    /// why this never brings back an older version). With `evict`, makes room as a
    /// store would.
    #[cfg(feature = "l2")]
    fn promote(&self, hash: u64, key: &[u8], evict: bool) -> Adoption {
        let Some(tier) = &self.tier else {
            return Adoption::Skipped;
        };
        let Some(loaded) = tier.load(hash, key) else {
            return Adoption::Skipped;
        };
        let bucket = Tier::bucket(hash);
        let meta = ItemMeta {
            cas: loaded.cas,
            flags: loaded.flags,
            exptime: clock::from_unix(loaded.exptime),
            time: clock::from_unix(loaded.time).max(1),
        };
        let mut data = Some(loaded.data);
        let adoption = self
            .with_room(hash, |shard, moment, prepaid| {
                shard.adopt(
                    &self.shared,
                    hash,
                    &mut data,
                    key.len(),
                    meta,
                    moment,
                    prepaid,
                    evict,
                    || tier.queued(bucket) == loaded.queued,
                )
            })
            .unwrap_or(Adoption::NoRoom);
        if adoption == Adoption::Adopted {
            tier.promoted(!evict);
        }
        adoption
    }

    /// Loads L1 from the persistent tier, most recently written items first, until L1
    /// is full, everything was loaded, or `stop` is set. Meant for a background thread
    /// at start-up; requests are served meanwhile. Returns how many items it loaded.
    #[cfg(feature = "l2")]
    pub fn warm_up(&self, stop: &AtomicBool) -> usize {
        /// Items in a row that did not fit before L1 counts as full.
        const NO_ROOM_LIMIT: usize = 64;
        let Some(tier) = &self.tier else {
            return 0;
        };
        let mut loaded = 0;
        let mut no_room = 0;
        let mut before = u64::MAX;
        loop {
            let keys = tier.recent_keys(before, 1024);
            if keys.is_empty() {
                return loaded;
            }
            for (seq, key) in keys {
                before = seq;
                if stop.load(Ordering::Relaxed) {
                    return loaded;
                }
                match self.promote(self.shared.hash(&key), &key, false) {
                    Adoption::Adopted => {
                        loaded += 1;
                        no_room = 0;
                    }
                    Adoption::Present | Adoption::Skipped => {}
                    Adoption::NoRoom => {
                        no_room += 1;
                        if no_room == NO_ROOM_LIMIT {
                            return loaded;
                        }
                    }
                }
            }
        }
    }

    /// The keys of every visible item, in memory or (with a persistent tier) on disk,
    /// each once, in no particular order. Locks one stripe at a time, so items stored
    /// or removed meanwhile may or may not be listed.
    pub fn keys(&self) -> Vec<Box<[u8]>> {
        let moment = self.moment();
        let mut keys = Vec::new();
        for stripe in self.stripes.iter() {
            stripe.shard.lock().live_keys(&moment, &mut keys);
        }
        #[cfg(feature = "l2")]
        if let Some(tier) = &self.tier {
            let in_memory: hashbrown::HashSet<Box<[u8]>> = keys.iter().cloned().collect();
            keys.extend(
                tier.keys()
                    .into_iter()
                    .filter(|key| !in_memory.contains(key)),
            );
        }
        keys
    }

    /// The persistent tier's counters, if there is a tier.
    #[cfg(feature = "l2")]
    pub fn l2_stats(&self) -> Option<TierStats> {
        self.tier.as_ref().map(Tier::stats)
    }

    /// Why the persistent tier stopped writing, if it has a fault.
    #[cfg(feature = "l2")]
    pub fn l2_fault(&self) -> Option<String> {
        self.tier.as_ref().and_then(Tier::fault_reason)
    }

    /// Writes everything queued for the persistent tier, fsyncs it and stops the
    /// tier's writer (a clean shutdown). Changes made afterwards stay in memory only.
    #[cfg(feature = "l2")]
    pub fn close(&self) {
        if let Some(tier) = &self.tier {
            tier.close();
        }
    }

    /// Runs `operation` on the key's stripe. When the operation comes back short of memory
    /// (`Err(shortfall)`, with its stripe already evicted dry), frees and reserves the
    /// shortfall from the other stripes and runs it again. `None` when no stripe had
    /// anything left to evict.
    fn with_room<T>(
        &self,
        hash: u64,
        mut operation: impl FnMut(&mut Shard, &Moment, &mut Charge) -> Result<T, Charge>,
    ) -> Option<T> {
        let own = self.stripe_index(hash);
        let mut prepaid = Charge::ZERO;
        let result = loop {
            let moment = self.moment();
            let attempt = operation(&mut self.stripes[own].shard.lock(), &moment, &mut prepaid);
            match attempt {
                Ok(value) => break Some(value),
                Err(shortfall) => {
                    if !self.reserve_elsewhere(own, shortfall, &moment, &mut prepaid) {
                        break None;
                    }
                }
            }
        };
        self.shared.budget.release(prepaid);
        result
    }

    /// Evicts from stripes other than `own`, one lock at a time, until `shortfall` can be
    /// reserved, and adds it to `prepaid`. False once a whole pass found every other stripe
    /// out of items while memory was still short.
    fn reserve_elsewhere(
        &self,
        own: usize,
        shortfall: Charge,
        moment: &Moment,
        prepaid: &mut Charge,
    ) -> bool {
        loop {
            let start = self.evict_cursor.fetch_add(1, Ordering::Relaxed);
            let mut all_dry = true;
            for offset in 0..self.stripes.len() {
                if self.shared.budget.try_reserve(shortfall).is_ok() {
                    prepaid.add(shortfall);
                    return true;
                }
                let stripe = (start + offset) & self.stripe_mask;
                if stripe != own {
                    let shard = &mut self.stripes[stripe].shard.lock();
                    all_dry &= !shard.evict_for(&self.shared, moment, shortfall);
                }
            }
            if self.shared.budget.try_reserve(shortfall).is_ok() {
                prepaid.add(shortfall);
                return true;
            }
            if all_dry {
                return false;
            }
        }
    }
}

/// Without the persistent tier the commands' hooks into it do nothing, and the
/// compiler drops them from the hot paths.
#[cfg(not(feature = "l2"))]
impl Store {
    /// This build has no persistent tier: always [`TierError::NotBuilt`].
    pub fn open(_config: StoreConfig, tier: TierConfig) -> Result<Store, TierError> {
        Err(TierError::NotBuilt { dir: tier.data_dir })
    }

    /// Nothing to load without a persistent tier.
    pub fn warm_up(&self, _stop: &AtomicBool) -> usize {
        0
    }

    /// There is never a tier to report on.
    pub fn l2_stats(&self) -> Option<TierStats> {
        None
    }

    /// There is never a tier to fault.
    pub fn l2_fault(&self) -> Option<String> {
        None
    }

    /// Nothing to write out without a persistent tier.
    pub fn close(&self) {}

    #[inline]
    fn has_tier(&self) -> bool {
        false
    }

    #[inline]
    fn make_queue_room(&self, _len: usize) {}

    #[inline]
    fn journal(
        &self,
        _shard: &Shard,
        _hash: u64,
        _key: &[u8],
        _moment: &Moment,
        _changed: bool,
    ) -> Durable {
        None
    }

    #[inline]
    fn journal_flush(&self, _oldest_live: RelTime, _oldest_cas: u64) {}

    #[inline]
    fn fault_in(&self, _hash: u64, _key: &[u8]) {}

    #[inline]
    fn read_through<T>(
        &self,
        _hash: u64,
        _key: &[u8],
        mut attempt: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        attempt()
    }
}

// Reactor threads share one store.
const _: () = {
    const fn shared_between_threads<T: Send + Sync>() {}
    shared_between_threads::<Store>();
};

/// Waits until a command's write is durable (`sync_writes`); returns at once otherwise.
fn await_durable(durable: Durable) {
    if let Some(done) = durable {
        // An error means the writer dropped the write (a fault or a shutdown): nothing
        // more will come.
        let _ = done.recv();
    }
}

/// The number of stripes for a configured count (0 = automatic).
fn stripe_count(configured: usize) -> usize {
    let wanted = if configured == 0 {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        (cpus * STRIPES_PER_CPU).max(MIN_AUTO_STRIPES)
    } else {
        configured
    };
    wanted.next_power_of_two().min(MAX_STRIPES)
}

#[cfg(test)]
mod tests;
