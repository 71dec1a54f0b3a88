//! The embeddable cache: [`RatMemCache`], a synchronous, thread-safe handle on the same
//! store `rat_memcached` serves.
//!
//! # A first look
//!
//! ```
//! use rat_memcache::{RatMemCacheBuilder, TtlConfig};
//!
//! let cache = RatMemCacheBuilder::new()
//!     .ttl_config(TtlConfig { default_ttl: 3600, ..Default::default() })
//!     .build()?;
//! cache.set("greeting", "hello")?;
//! assert_eq!(cache.get("greeting")?.as_deref(), Some(&b"hello"[..]));
//! assert_eq!(cache.incr("visits", 1).unwrap_err().to_string(), "no item under the key");
//! cache.shutdown()?;
//! # Ok::<(), rat_memcache::Error>(())
//! ```
//!
//! # Handles and threads
//!
//! A [`RatMemCache`] is an `Arc` around the store: clone it freely and use the clones
//! from any number of threads. Every call runs on the calling thread and returns when it
//! is done; there is no runtime and no task to spawn. The store is striped (see the
//! [`store`](crate::store) module), so calls on different keys rarely wait for each
//! other, and each call on one key is atomic: eight threads incrementing one counter
//! never lose an update, and of several `cas` calls with the same CAS value exactly one
//! succeeds.
//!
//! # Keys and values
//!
//! A key is anything that is `AsRef<[u8]>` (`&str`, `String`, `&[u8]`, `Vec<u8>`,
//! `Bytes`), of 1 to 250 bytes ([`MAX_KEY_LEN`]); any bytes are allowed, spaces and
//! control characters included, since nothing here goes over a text protocol. Values go
//! in the same way and come back as [`Bytes`]. A value is copied once into the store's
//! own allocation on the way in, and once into the returned `Bytes` on the way out,
//! while the key's stripe is locked, so a read allocates nothing but what it returns.
//!
//! # Expiry
//!
//! TTLs are whole seconds from the moment of the call; 0 means the configured
//! [`TtlConfig::default_ttl`], itself 0 for "never"; [`TtlConfig::max_ttl`], when not 0,
//! caps every TTL ("never" included). Unlike memcached's wire protocol, a TTL over 30
//! days is still relative, never a Unix timestamp. Expiry is counted on the store's
//! monotonic clock in whole seconds, as memcached counts it: a TTL of `n` seconds
//! ends when the clock's second counter has moved on `n` times, between `n - 1` and `n`
//! seconds after the call. An expired item is never returned; a background thread
//! removes the ones nobody asks for every [`TtlConfig::cleanup_interval`] seconds.
//!
//! # The persistent tier
//!
//! With [`L2Config::enable_l2_cache`], every change is also written behind to a
//! database in [`L2Config::data_dir`], within [`L2Config::flush_interval`] of the call.
//! A later cache built on the same directory serves it all again; an L1 miss reads the
//! disk, so the cache may hold more than its memory. [`RatMemCache::shutdown`] writes
//! everything queued and fsyncs it; dropping the last handle does the same. Only one
//! cache (or server) at a time may use a directory, and it keeps the directory until its
//! last handle is dropped.
//!
//! # Shutting down
//!
//! After [`shutdown`](RatMemCache::shutdown), every call that reads or changes items, on
//! every clone of the handle, returns [`Error::Closed`]: nothing written afterwards
//! could be persisted, so nothing is accepted. Statistics stay readable. A call already
//! running when `shutdown` starts may finish in memory without reaching the disk.

mod config;
mod error;
mod stats;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{RecvTimeoutError, Sender};
use parking_lot::Mutex;

use crate::store::clock::{self, MAX_RELATIVE_EXPTIME};
use crate::store::{DeltaError, Expiry, Store, StoreMode, StoreOutcome, TierError};

pub use config::{EvictionStrategy, L1Config, L2Config, PerformanceConfig, TtlConfig};
pub use error::{Error, MAX_KEY_LEN};
pub use stats::{CacheStats, L1Stats, L2Stats};

use config::Plan;
use error::{check_key, printable_key};
use stats::LookupCounters;

/// Builds a [`RatMemCache`] from its four configurations; each one left out keeps its
/// `Default`.
///
/// ```
/// use rat_memcache::{L1Config, L2Config, PerformanceConfig, RatMemCacheBuilder, TtlConfig};
///
/// let cache = RatMemCacheBuilder::new()
///     .l1_config(L1Config { max_memory: 8 * 1024 * 1024, ..Default::default() })
///     .l2_config(L2Config::default())
///     .ttl_config(TtlConfig { default_ttl: 60, max_ttl: 3600, ..Default::default() })
///     .performance_config(PerformanceConfig::default())
///     .build()?;
/// assert_eq!(cache.get_cache_stats().l1_stats.max_memory, 8 * 1024 * 1024);
/// # Ok::<(), rat_memcache::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct RatMemCacheBuilder {
    l1: L1Config,
    l2: L2Config,
    ttl: TtlConfig,
    performance: PerformanceConfig,
}

impl RatMemCacheBuilder {
    /// A builder with every configuration at its default: 64 MiB in memory, nothing on
    /// disk, no expiry unless asked for.
    pub fn new() -> RatMemCacheBuilder {
        RatMemCacheBuilder::default()
    }

    /// The in-memory tier.
    pub fn l1_config(mut self, config: L1Config) -> RatMemCacheBuilder {
        self.l1 = config;
        self
    }

    /// The persistent tier.
    pub fn l2_config(mut self, config: L2Config) -> RatMemCacheBuilder {
        self.l2 = config;
        self
    }

    /// Default and maximum TTL, and the background sweep.
    pub fn ttl_config(mut self, config: TtlConfig) -> RatMemCacheBuilder {
        self.ttl = config;
        self
    }

    /// Background statistics.
    pub fn performance_config(mut self, config: PerformanceConfig) -> RatMemCacheBuilder {
        self.performance = config;
        self
    }

    /// Checks the configuration, opens the persistent tier if there is one, and starts
    /// the background threads.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a configuration that cannot be honoured (an eviction
    /// strategy other than LRU, the persistent tier without a directory, a zero size
    /// limit, a default TTL over the maximum); [`Error::Persistence`] when the data
    /// directory cannot be used.
    ///
    /// ```
    /// use rat_memcache::{Error, L2Config, RatMemCacheBuilder};
    ///
    /// let l2 = L2Config { enable_l2_cache: true, data_dir: None, ..Default::default() };
    /// let error = RatMemCacheBuilder::new().l2_config(l2).build().unwrap_err();
    /// assert!(matches!(error, Error::Config(_)));
    /// assert!(error.to_string().contains("data_dir"));
    /// ```
    pub fn build(self) -> Result<RatMemCache, Error> {
        let plan = Plan::new(&self.l1, &self.l2, &self.ttl, &self.performance)?;
        let (store, warm_up, data_dir) = match plan.tier {
            Some((tier, warm_up)) => {
                let data_dir = tier.data_dir.clone();
                (Store::open(plan.store, tier)?, warm_up, Some(data_dir))
            }
            None => (Store::new(plan.store), false, None),
        };
        let store = Arc::new(store);
        let lookups = Arc::new(LookupCounters::default());
        let mut background = Background::default();
        if plan.sweep_every.is_some() || plan.stats_every.is_some() {
            background.start_maintenance(&store, &lookups, plan.sweep_every, plan.stats_every);
        }
        if warm_up {
            background.start_warm_up(&store);
        }
        Ok(RatMemCache {
            inner: Arc::new(Inner {
                store,
                default_ttl: plan.ttl.default_ttl,
                max_ttl: plan.ttl.max_ttl,
                closed: AtomicBool::new(false),
                lookups,
                data_dir,
                background: Mutex::new(background),
            }),
        })
    }
}

/// A handle on an in-memory cache with an optional persistent tier.
///
/// Cheap to clone (an `Arc`), `Send` and `Sync`; every method takes `&self`. See the
/// [module documentation](self) for keys, values, TTLs and shutting down.
///
/// ```
/// use rat_memcache::RatMemCacheBuilder;
///
/// let cache = RatMemCacheBuilder::new().build()?;
/// let worker = cache.clone();
/// std::thread::spawn(move || worker.set("from", "another thread")).join().unwrap()?;
/// assert!(cache.contains_key("from")?);
/// # Ok::<(), rat_memcache::Error>(())
/// ```
#[derive(Clone)]
pub struct RatMemCache {
    inner: Arc<Inner>,
}

/// What the handles share.
struct Inner {
    store: Arc<Store>,
    default_ttl: u64,
    max_ttl: u64,
    closed: AtomicBool,
    lookups: Arc<LookupCounters>,
    /// The persistent tier's directory, for error messages.
    data_dir: Option<PathBuf>,
    background: Mutex<Background>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The store itself closes its persistent tier when the last `Arc` goes, which
        // is here once the background threads have let go of theirs.
        self.background.get_mut().stop();
    }
}

impl fmt::Debug for RatMemCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatMemCache")
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .field("data_dir", &self.inner.data_dir)
            .finish_non_exhaustive()
    }
}

impl RatMemCache {
    /// Stores `value` under `key` with the default TTL, replacing what was there.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], [`Error::TooLarge`], [`Error::NoMemory`] (in the last two
    /// cases the key's previous value is gone too, as in memcached), [`Error::Closed`].
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("k", "one")?;
    /// cache.set("k", b"two".to_vec())?;
    /// assert_eq!(cache.get("k")?.as_deref(), Some(&b"two"[..]));
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn set<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, key: K, value: V) -> Result<(), Error> {
        self.set_with_ttl(key, value, 0)
    }

    /// Stores `value` under `key` for `ttl_secs` seconds (0: the default TTL).
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set_with_ttl("session", "data", 1800)?;
    /// assert!(cache.contains_key("session")?);
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn set_with_ttl<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        key: K,
        value: V,
        ttl_secs: u64,
    ) -> Result<(), Error> {
        self.store_value(StoreMode::Set, key.as_ref(), value.as_ref(), ttl_secs)
    }

    /// Stores `value` only if `key` holds nothing.
    ///
    /// # Errors
    ///
    /// [`Error::NotStored`] if the key holds a value; otherwise as [`set`](Self::set).
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.add("k", "first")?;
    /// assert!(matches!(cache.add("k", "second"), Err(rat_memcache::Error::NotStored)));
    /// assert_eq!(cache.get("k")?.as_deref(), Some(&b"first"[..]));
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn add<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, key: K, value: V) -> Result<(), Error> {
        self.store_value(StoreMode::Add, key.as_ref(), value.as_ref(), 0)
    }

    /// Stores `value` only if `key` holds one already; the new value gets the default
    /// TTL.
    ///
    /// # Errors
    ///
    /// [`Error::NotStored`] if the key holds nothing; otherwise as [`set`](Self::set).
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// assert!(matches!(cache.replace("k", "v"), Err(rat_memcache::Error::NotStored)));
    /// cache.set("k", "old")?;
    /// cache.replace("k", "new")?;
    /// assert_eq!(cache.get("k")?.as_deref(), Some(&b"new"[..]));
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn replace<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, key: K, value: V) -> Result<(), Error> {
        self.store_value(StoreMode::Replace, key.as_ref(), value.as_ref(), 0)
    }

    /// Adds `value` after the value `key` holds, keeping its TTL.
    ///
    /// # Errors
    ///
    /// [`Error::NotStored`] if the key holds nothing, or the combined item would be over
    /// the item size limit or find no memory; otherwise as [`set`](Self::set).
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("log", "a")?;
    /// cache.append("log", "b")?;
    /// assert_eq!(cache.get("log")?.as_deref(), Some(&b"ab"[..]));
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn append<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, key: K, value: V) -> Result<(), Error> {
        self.store_value(StoreMode::Append, key.as_ref(), value.as_ref(), 0)
    }

    /// Adds `value` before the value `key` holds, keeping its TTL.
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append).
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("log", "b")?;
    /// cache.prepend("log", "a")?;
    /// assert_eq!(cache.get("log")?.as_deref(), Some(&b"ab"[..]));
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn prepend<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, key: K, value: V) -> Result<(), Error> {
        self.store_value(StoreMode::Prepend, key.as_ref(), value.as_ref(), 0)
    }

    /// Stores `value` only if the item under `key` still has the CAS value `cas` that
    /// [`gets`](Self::gets) returned: no other write came in between. The new value gets
    /// the default TTL.
    ///
    /// # Errors
    ///
    /// [`Error::Exists`] if the item changed since, [`Error::NotFound`] if it is gone;
    /// otherwise as [`set`](Self::set).
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("k", "v1")?;
    /// let (_, cas) = cache.gets("k")?.expect("just set");
    /// cache.cas("k", "v2", cas)?;
    /// assert!(matches!(cache.cas("k", "v3", cas), Err(rat_memcache::Error::Exists)));
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn cas<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        key: K,
        value: V,
        cas: u64,
    ) -> Result<(), Error> {
        self.store_value(StoreMode::Cas(cas), key.as_ref(), value.as_ref(), 0)
    }

    /// The value under `key`, `None` if there is none (or it expired).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], [`Error::Closed`].
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("k", "v")?;
    /// assert_eq!(cache.get("k")?, Some(bytes::Bytes::from_static(b"v")));
    /// assert_eq!(cache.get("other")?, None);
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<Bytes>, Error> {
        let store = self.open_store()?;
        let key = key.as_ref();
        check_key(key)?;
        let value = store.get(key, |item| Bytes::copy_from_slice(item.value));
        self.inner.lookups.record(value.is_some());
        Ok(value)
    }

    /// The value under `key` and its CAS value, for a later [`cas`](Self::cas).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("k", "v")?;
    /// let (value, cas) = cache.gets("k")?.expect("just set");
    /// assert_eq!(&value[..], b"v");
    /// cache.set("k", "w")?;
    /// assert_ne!(cache.gets("k")?.expect("just set").1, cas);
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn gets<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<(Bytes, u64)>, Error> {
        let store = self.open_store()?;
        let key = key.as_ref();
        check_key(key)?;
        let item = store.get(key, |item| (Bytes::copy_from_slice(item.value), item.cas));
        self.inner.lookups.record(item.is_some());
        Ok(item)
    }

    /// The values under several keys, in the order of `keys`, `None` for each key that
    /// holds nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if any key is invalid (nothing is looked up then),
    /// [`Error::Closed`].
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("a", "1")?;
    /// cache.set("c", "3")?;
    /// let values = cache.get_many(&["a", "b", "c"])?;
    /// assert_eq!(values[0].as_deref(), Some(&b"1"[..]));
    /// assert_eq!(values[1], None);
    /// assert_eq!(values[2].as_deref(), Some(&b"3"[..]));
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Bytes>>, Error> {
        let store = self.open_store()?;
        for key in keys {
            check_key(key.as_ref())?;
        }
        Ok(keys
            .iter()
            .map(|key| {
                let value = store.get(key.as_ref(), |item| Bytes::copy_from_slice(item.value));
                self.inner.lookups.record(value.is_some());
                value
            })
            .collect())
    }

    /// Whether `key` holds a value. Unlike [`get`](Self::get) it copies nothing, does not
    /// count as a hit or a miss, and does not make the item less likely to be evicted.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("k", "v")?;
    /// assert!(cache.contains_key("k")?);
    /// assert!(!cache.contains_key(String::from("other"))?);
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> Result<bool, Error> {
        let store = self.open_store()?;
        let key = key.as_ref();
        check_key(key)?;
        Ok(store.peek(key, |_| ()).is_some())
    }

    /// The keys of every live item, in memory or on disk, each once, in no particular
    /// order. It walks the whole cache (one lock at a time), so items stored or removed
    /// meanwhile may or may not be listed; meant for inspection, not for a hot path.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`shutdown`](Self::shutdown).
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("a", "1")?;
    /// cache.set("b", "2")?;
    /// let mut keys = cache.keys()?;
    /// keys.sort();
    /// assert_eq!(keys, [b"a".to_vec(), b"b".to_vec()]);
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, Error> {
        let store = self.open_store()?;
        Ok(store.keys().into_iter().map(Vec::from).collect())
    }

    /// Removes the value under `key`; false if there was none.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("k", "v")?;
    /// assert!(cache.delete("k")?);
    /// assert!(!cache.delete("k")?);
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn delete<K: AsRef<[u8]>>(&self, key: K) -> Result<bool, Error> {
        let store = self.open_store()?;
        let key = key.as_ref();
        check_key(key)?;
        Ok(store.delete(key))
    }

    /// Gives the item under `key` a new TTL of `ttl_secs` seconds from now (0: the
    /// default TTL), leaving its value and CAS value alone; false if there is no item.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("k", "v")?;
    /// assert!(cache.touch("k", 600)?);
    /// assert!(!cache.touch("other", 600)?);
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn touch<K: AsRef<[u8]>>(&self, key: K, ttl_secs: u64) -> Result<bool, Error> {
        let store = self.open_store()?;
        let key = key.as_ref();
        check_key(key)?;
        Ok(store.touch(key, self.expiry(ttl_secs)))
    }

    /// Adds `delta` to the decimal number stored under `key` and returns the result,
    /// wrapping around at 2^64 as memcached does. The item keeps its TTL.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the key holds nothing (a counter must be created with
    /// [`set`](Self::set) or [`add`](Self::add) first), [`Error::NonNumeric`] if its
    /// value is not a decimal number, [`Error::NoMemory`], [`Error::InvalidKey`],
    /// [`Error::Closed`].
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("hits", "41")?;
    /// assert_eq!(cache.incr("hits", 1)?, 42);
    /// assert_eq!(cache.get("hits")?.as_deref(), Some(&b"42"[..]));
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn incr<K: AsRef<[u8]>>(&self, key: K, delta: u64) -> Result<u64, Error> {
        self.arithmetic(key.as_ref(), true, delta)
    }

    /// Subtracts `delta` from the decimal number stored under `key`, stopping at 0, and
    /// returns the result. As memcached does, a result with fewer digits than the value
    /// it replaces is written in place, padded with trailing spaces (which `incr` and
    /// `decr` still read as the number).
    ///
    /// # Errors
    ///
    /// As [`incr`](Self::incr).
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("stock", "3")?;
    /// assert_eq!(cache.decr("stock", 2)?, 1);
    /// assert_eq!(cache.decr("stock", 5)?, 0);
    /// cache.set("stock", "10")?;
    /// assert_eq!(cache.decr("stock", 1)?, 9);
    /// assert_eq!(cache.get("stock")?.as_deref(), Some(&b"9 "[..]));
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn decr<K: AsRef<[u8]>>(&self, key: K, delta: u64) -> Result<u64, Error> {
        self.arithmetic(key.as_ref(), false, delta)
    }

    /// Removes every item, from memory and from the persistent tier.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`].
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("k", "v")?;
    /// cache.flush()?;
    /// assert_eq!(cache.get("k")?, None);
    /// assert_eq!(cache.get_cache_stats().total_entries, 0);
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn flush(&self) -> Result<(), Error> {
        let store = self.open_store()?;
        store.flush_all(0);
        // The flush only hides the items; give their memory back now.
        store.drop_flushed();
        Ok(())
    }

    /// Stops the background threads and, with a persistent tier, writes everything
    /// queued to disk and fsyncs it. Afterwards every clone of the handle answers
    /// [`Error::Closed`] (see the [module documentation](self#shutting-down)); calling
    /// `shutdown` again does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Persistence`] if the persistent tier had stopped writing after a fault
    /// (a full or failing disk), so that some changes did not reach the disk; the next
    /// start on the directory discards its contents.
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// cache.set("k", "v")?;
    /// cache.shutdown()?;
    /// assert!(matches!(cache.get("k"), Err(rat_memcache::Error::Closed)));
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn shutdown(&self) -> Result<(), Error> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.background.lock().stop();
        let store = &self.inner.store;
        store.close();
        match (store.l2_fault(), &self.inner.data_dir) {
            (Some(fault), Some(dir)) => Err(Error::Persistence(TierError::Io {
                dir: dir.clone(),
                source: io::Error::other(fault),
            })),
            _ => Ok(()),
        }
    }

    /// The engine underneath: the striped store with memcached's complete command set
    /// (meta commands, CAS-conditional deletes, reads that lend an item in place instead
    /// of copying it out). The `rat_memcached` server works through it; a program that
    /// needs only what `RatMemCache` offers has no use for it.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// A snapshot of the cache's counters. Available after
    /// [`shutdown`](Self::shutdown) too.
    pub fn get_cache_stats(&self) -> CacheStats {
        snapshot(&self.inner.store, &self.inner.lookups)
    }

    /// The share of lookups that found a value, `None` before the first lookup.
    ///
    /// ```
    /// # let cache = rat_memcache::RatMemCacheBuilder::new().build()?;
    /// assert_eq!(cache.get_hit_rate(), None);
    /// cache.set("k", "v")?;
    /// cache.get("k")?;
    /// cache.get("k")?;
    /// cache.get("other")?;
    /// cache.get("other")?;
    /// assert_eq!(cache.get_hit_rate(), Some(0.5));
    /// # Ok::<(), rat_memcache::Error>(())
    /// ```
    pub fn get_hit_rate(&self) -> Option<f64> {
        self.inner.lookups.sum().hit_rate()
    }

    /// The store, unless the cache was shut down.
    #[inline]
    fn open_store(&self) -> Result<&Store, Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(&self.inner.store)
    }

    /// Runs one storage command and turns its outcome into a result.
    fn store_value(
        &self,
        mode: StoreMode,
        key: &[u8],
        value: &[u8],
        ttl_secs: u64,
    ) -> Result<(), Error> {
        let store = self.open_store()?;
        check_key(key)?;
        // Append and prepend keep the item's expiry; the store ignores this one.
        let expiry = self.expiry(ttl_secs);
        match store.store(mode, key, 0, expiry, value) {
            StoreOutcome::Stored => Ok(()),
            StoreOutcome::NotStored => Err(Error::NotStored),
            StoreOutcome::Exists => Err(Error::Exists),
            StoreOutcome::NotFound => Err(Error::NotFound),
            StoreOutcome::TooLarge => Err(Error::TooLarge {
                key: printable_key(key),
                limit: store.config().max_item_size,
            }),
            StoreOutcome::NoMemory => Err(Error::NoMemory),
        }
    }

    fn arithmetic(&self, key: &[u8], incr: bool, delta: u64) -> Result<u64, Error> {
        let store = self.open_store()?;
        check_key(key)?;
        store
            .incr_decr(key, incr, delta)
            .map_err(|error| match error {
                DeltaError::NotFound => Error::NotFound,
                DeltaError::Exists => Error::Exists,
                DeltaError::NonNumeric => Error::NonNumeric,
                DeltaError::NoMemory => Error::NoMemory,
            })
    }

    /// A TTL as the store's expiry (see the module docs for the rules).
    fn expiry(&self, ttl_secs: u64) -> Expiry {
        let ttl = if ttl_secs == 0 {
            self.inner.default_ttl
        } else {
            ttl_secs
        };
        let max = self.inner.max_ttl;
        let ttl = if max != 0 && (ttl == 0 || ttl > max) {
            max
        } else {
            ttl
        };
        expiry_after(ttl)
    }
}

/// The expiry `ttl_secs` seconds from now, 0 being never. memcached would read a TTL of
/// more than 30 days as a Unix time; here it is made one, counted from the store's own
/// clock so that it means exactly as many seconds.
fn expiry_after(ttl_secs: u64) -> Expiry {
    let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
    if ttl <= MAX_RELATIVE_EXPTIME {
        return Expiry::from_memcached(ttl);
    }
    let now_unix = clock::process_started() + i64::from(clock::now());
    Expiry::from_memcached(now_unix.saturating_add(ttl))
}

fn snapshot(store: &Store, lookups: &LookupCounters) -> CacheStats {
    let tier = store.l2_stats().map(|stats| (stats, store.l2_fault()));
    CacheStats::new(&store.stats(), tier, lookups.sum())
}

/// The cache's background threads.
#[derive(Default)]
struct Background {
    /// Dropping it stops the maintenance thread.
    stop_maintenance: Option<Sender<()>>,
    maintenance: Option<JoinHandle<()>>,
    stop_warm_up: Arc<AtomicBool>,
    warm_up: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts the thread that sweeps expired items and logs statistics. A cache without
    /// it still never returns an expired item, so failing to start it is only logged.
    fn start_maintenance(
        &mut self,
        store: &Arc<Store>,
        lookups: &Arc<LookupCounters>,
        sweep_every: Option<Duration>,
        stats_every: Option<Duration>,
    ) {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let store = Arc::clone(store);
        let lookups = Arc::clone(lookups);
        let spawned = std::thread::Builder::new()
            .name("rat_memcache-maintenance".into())
            .spawn(move || {
                let mut next_sweep = sweep_every.map(|every| Instant::now() + every);
                let mut next_stats = stats_every.map(|every| Instant::now() + every);
                loop {
                    let deadline = match (next_sweep, next_stats) {
                        (Some(sweep), Some(stats)) => sweep.min(stats),
                        (Some(at), None) | (None, Some(at)) => at,
                        (None, None) => return,
                    };
                    match stopped.recv_deadline(deadline) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    let now = Instant::now();
                    if let (Some(at), Some(every)) = (next_sweep, sweep_every) {
                        if at <= now {
                            store.maintain();
                            next_sweep = Some(now + every);
                        }
                    }
                    if let (Some(at), Some(every)) = (next_stats, stats_every) {
                        if at <= now {
                            log_stats(&snapshot(&store, &lookups));
                            next_stats = Some(now + every);
                        }
                    }
                }
            });
        match spawned {
            Ok(handle) => {
                self.stop_maintenance = Some(stop);
                self.maintenance = Some(handle);
            }
            Err(error) => log::warn!("rat_memcache: no maintenance thread: {error}"),
        }
    }

    /// Starts loading L1 from the persistent tier. Keys not loaded yet are read from
    /// disk when asked for, so failing to start it is only logged.
    fn start_warm_up(&mut self, store: &Arc<Store>) {
        let store = Arc::clone(store);
        let stop = Arc::clone(&self.stop_warm_up);
        let spawned = std::thread::Builder::new()
            .name("rat_memcache-warm-up".into())
            .spawn(move || {
                let started = Instant::now();
                let loaded = store.warm_up(&stop);
                log::info!(
                    "rat_memcache: warm-up loaded {loaded} items into memory in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            });
        match spawned {
            Ok(handle) => self.warm_up = Some(handle),
            Err(error) => log::warn!("rat_memcache: no warm-up thread: {error}"),
        }
    }

    /// Stops the threads and waits for them.
    fn stop(&mut self) {
        self.stop_maintenance = None;
        self.stop_warm_up.store(true, Ordering::Relaxed);
        for handle in [self.maintenance.take(), self.warm_up.take()]
            .into_iter()
            .flatten()
        {
            // A thread that panicked has nothing left to clean up.
            let _ = handle.join();
        }
    }
}

fn log_stats(stats: &CacheStats) {
    let l1 = &stats.l1_stats;
    let hit_rate = stats
        .hit_rate()
        .map_or_else(|| "-".to_string(), |rate| format!("{:.1} %", rate * 100.0));
    match &stats.l2_stats {
        Some(l2) => log::info!(
            "rat_memcache: L1 {} items, {} of {} bytes, hit rate {hit_rate}, {} evictions; \
             L2 {} items, {} bytes, {} pending writes",
            l1.entry_count,
            l1.memory_usage,
            l1.max_memory,
            l1.evictions,
            l2.entry_count,
            l2.data_bytes,
            l2.pending_writes
        ),
        None => log::info!(
            "rat_memcache: L1 {} items, {} of {} bytes, hit rate {hit_rate}, {} evictions",
            l1.entry_count,
            l1.memory_usage,
            l1.max_memory,
            l1.evictions
        ),
    }
}

// Handles are shared between threads.
const _: () = {
    const fn shared_between_threads<T: Send + Sync + Clone>() {}
    shared_between_threads::<RatMemCache>();
};
