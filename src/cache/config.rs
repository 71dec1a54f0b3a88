//! The library's configuration: four plain structs, one per concern, each with public
//! fields and a [`Default`], so a caller names only what differs from the defaults:
//!
//! ```
//! use rat_memcache::{L1Config, TtlConfig};
//!
//! let l1 = L1Config { max_memory: 16 * 1024 * 1024, ..Default::default() };
//! let ttl = TtlConfig { default_ttl: 300, ..Default::default() };
//! assert_eq!(l1.max_entries, 0);
//! assert_eq!(ttl.max_ttl, 0);
//! ```
//!
//! [`RatMemCacheBuilder::build`](super::RatMemCacheBuilder::build) checks them together
//! and turns them into the store's own configuration; a combination it cannot honour is
//! an [`Error::Config`] naming the field, never a silent substitute.

use std::path::PathBuf;
use std::time::Duration;

use crate::store::{StoreConfig, TierConfig};

use super::Error;

pub use crate::store::EvictionStrategy;

/// The in-memory tier.
///
/// ```
/// use rat_memcache::L1Config;
///
/// let l1 = L1Config::default();
/// assert_eq!(l1.max_memory, 64 * 1024 * 1024);
/// assert_eq!(l1.max_item_size, 1024 * 1024);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L1Config {
    /// Hard limit, in bytes, on the memory items take, their bookkeeping included
    /// (64 MiB by default). Must not be 0.
    pub max_memory: usize,
    /// Most items held at once; 0 (the default) sets no limit besides memory.
    pub max_entries: usize,
    /// Which items go first when the tier is full.
    pub eviction_strategy: EvictionStrategy,
    /// Largest item, in bytes, counting its key, its value and about 50 bytes of
    /// bookkeeping (1 MiB by default, memcached's `-I`). Must not be 0.
    pub max_item_size: usize,
    /// Give items CAS values (the default); without, every CAS reads 0 and
    /// [`cas`](crate::RatMemCache::cas) never matches (memcached's `-C`).
    pub cas_enabled: bool,
    /// Make room for new items by evicting old ones (the default); without, a full
    /// cache answers [`Error::NoMemory`](crate::Error::NoMemory) (memcached's `-M`).
    pub evictions_enabled: bool,
}

impl Default for L1Config {
    fn default() -> Self {
        let store = StoreConfig::default();
        L1Config {
            max_memory: store.max_memory,
            max_entries: 0,
            eviction_strategy: EvictionStrategy::Lru,
            max_item_size: store.max_item_size,
            cas_enabled: store.cas_enabled,
            evictions_enabled: store.evictions_enabled,
        }
    }
}

/// The persistent tier on disk: every change is written behind to a melange_db
/// database in `data_dir`, so a restart finds the cache as it was and the cache can hold
/// more than fits in memory (an L1 miss reads the disk and brings the item back in).
///
/// Off by default. Turning it on requires a `data_dir`:
///
/// ```
/// use rat_memcache::L2Config;
///
/// let dir = std::env::temp_dir().join("rat_memcache-doc-l2config");
/// let l2 = L2Config { enable_l2_cache: true, data_dir: Some(dir), ..Default::default() };
/// assert!(l2.enable_compression);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Config {
    /// Whether there is a persistent tier at all.
    pub enable_l2_cache: bool,
    /// Where its database lives; created if missing. One cache (or server) at a time
    /// may use a directory.
    pub data_dir: Option<PathBuf>,
    /// Discard what the directory holds when the cache is built.
    pub clear_on_startup: bool,
    /// Bytes of keys and values the tier may hold (1 GiB by default); beyond it the
    /// oldest writes are dropped. Must not be 0.
    pub max_disk_size: u64,
    /// LZ4-compress values on disk (when that makes them smaller).
    pub enable_compression: bool,
    /// Values shorter than this many bytes are stored uncompressed.
    pub compression_threshold: usize,
    /// The crash window: a write reaches the disk and is fsynced within about this long
    /// after the call that made it returned (100 ms by default). Must not be zero.
    pub flush_interval: Duration,
    /// Every writing call returns only once its write is fsynced (slower, nothing lost
    /// in a crash).
    pub sync_writes: bool,
    /// Load L1 from the disk in the background after the cache is built, most recently
    /// written items first, until L1 is full. Calls are served meanwhile, and a key not
    /// loaded yet is read from the disk when asked for.
    pub warmup: bool,
    /// Most queued writes applied to the disk in one batch (4096 by default).
    pub batch_size: usize,
    /// Bytes of writes the queue may hold before calls wait for the disk (64 MiB by
    /// default; the writer keeps it smaller, to what it applies in a quarter of the
    /// crash window).
    pub max_queue_size: usize,
    /// Bytes of melange_db's own page cache (32 MiB by default).
    pub cache_size: usize,
}

impl Default for L2Config {
    fn default() -> Self {
        // The tier's own defaults, for a directory not chosen yet.
        let tier = TierConfig::new(PathBuf::new());
        L2Config {
            enable_l2_cache: false,
            data_dir: None,
            clear_on_startup: tier.clear_on_startup,
            max_disk_size: tier.max_disk_bytes,
            enable_compression: tier.compress_from.is_some(),
            compression_threshold: tier.compress_from.unwrap_or(256),
            flush_interval: tier.flush_interval,
            sync_writes: tier.sync_writes,
            warmup: true,
            batch_size: tier.batch_size,
            max_queue_size: tier.queue_max_bytes,
            cache_size: tier.cache_bytes,
        }
    }
}

/// Expiry times, all in seconds.
///
/// A TTL given to a call is counted from the moment of the call. 0 means "use
/// `default_ttl`", and a `default_ttl` of 0 means items never expire. When `max_ttl` is
/// not 0, every item expires within it: a longer TTL, or none, is cut to `max_ttl`.
///
/// ```
/// use rat_memcache::TtlConfig;
///
/// let ttl = TtlConfig { default_ttl: 3600, max_ttl: 86_400, ..Default::default() };
/// assert_eq!(ttl.cleanup_interval, 60);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TtlConfig {
    /// The TTL of items stored without one, or with 0; 0 (the default) is never.
    pub default_ttl: u64,
    /// The longest TTL any item gets; 0 (the default) sets no cap. Must be 0 or at least
    /// `default_ttl`.
    pub max_ttl: u64,
    /// How often a background thread removes expired items nobody asked for (60 by
    /// default). 0 turns the thread off: expired items are then removed only when a call
    /// meets them or their memory is needed. Either way an expired item is never returned.
    pub cleanup_interval: u64,
}

impl Default for TtlConfig {
    fn default() -> Self {
        TtlConfig {
            default_ttl: 0,
            max_ttl: 0,
            cleanup_interval: 60,
        }
    }
}

/// Background reporting.
///
/// ```
/// use rat_memcache::PerformanceConfig;
///
/// let performance = PerformanceConfig { enable_background_stats: true, ..Default::default() };
/// assert_eq!(performance.stats_interval, 60);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerformanceConfig {
    /// Log the cache's statistics (through the `log` crate, at `info` level) every
    /// `stats_interval` seconds. Off by default.
    pub enable_background_stats: bool,
    /// Seconds between two statistics lines. Must not be 0 when they are enabled.
    pub stats_interval: u64,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        PerformanceConfig {
            enable_background_stats: false,
            stats_interval: 60,
        }
    }
}

/// The four configurations, checked and turned into what the store takes.
pub(super) struct Plan {
    pub store: StoreConfig,
    /// The persistent tier, and whether to warm L1 from it.
    pub tier: Option<(TierConfig, bool)>,
    pub ttl: TtlConfig,
    /// How often expired items are swept, if at all.
    pub sweep_every: Option<Duration>,
    /// How often statistics are logged, if at all.
    pub stats_every: Option<Duration>,
}

impl Plan {
    pub fn new(
        l1: &L1Config,
        l2: &L2Config,
        ttl: &TtlConfig,
        performance: &PerformanceConfig,
    ) -> Result<Plan, Error> {
        let invalid = |message: String| Err(Error::Config(message));
        if l1.max_memory == 0 {
            return invalid("L1Config::max_memory must not be 0".into());
        }
        if l1.max_item_size == 0 {
            return invalid("L1Config::max_item_size must not be 0".into());
        }
        if ttl.max_ttl != 0 && ttl.default_ttl > ttl.max_ttl {
            return invalid(format!(
                "TtlConfig::default_ttl ({} s) is longer than TtlConfig::max_ttl ({} s)",
                ttl.default_ttl, ttl.max_ttl
            ));
        }
        if performance.enable_background_stats && performance.stats_interval == 0 {
            return invalid(
                "PerformanceConfig::stats_interval must not be 0 when background stats are on"
                    .into(),
            );
        }
        let store = StoreConfig {
            max_memory: l1.max_memory,
            max_entries: (l1.max_entries != 0).then_some(l1.max_entries),
            max_item_size: l1.max_item_size,
            cas_enabled: l1.cas_enabled,
            evictions_enabled: l1.evictions_enabled,
            eviction: l1.eviction_strategy,
            ..StoreConfig::default()
        };
        let tier = if l2.enable_l2_cache {
            Some((tier_config(l2)?, l2.warmup))
        } else {
            None
        };
        Ok(Plan {
            store,
            tier,
            ttl: ttl.clone(),
            sweep_every: (ttl.cleanup_interval != 0)
                .then(|| Duration::from_secs(ttl.cleanup_interval)),
            stats_every: performance
                .enable_background_stats
                .then(|| Duration::from_secs(performance.stats_interval)),
        })
    }
}

/// The persistent tier's configuration for an enabled `L2Config`.
fn tier_config(l2: &L2Config) -> Result<TierConfig, Error> {
    let Some(data_dir) = &l2.data_dir else {
        return Err(Error::Config(
            "L2Config::enable_l2_cache is set but L2Config::data_dir is None".into(),
        ));
    };
    if l2.max_disk_size == 0 {
        return Err(Error::Config(
            "L2Config::max_disk_size must not be 0".into(),
        ));
    }
    if l2.flush_interval.is_zero() {
        return Err(Error::Config(
            "L2Config::flush_interval must not be zero".into(),
        ));
    }
    Ok(TierConfig {
        max_disk_bytes: l2.max_disk_size,
        compress_from: l2.enable_compression.then_some(l2.compression_threshold),
        flush_interval: l2.flush_interval,
        sync_writes: l2.sync_writes,
        clear_on_startup: l2.clear_on_startup,
        batch_size: l2.batch_size.max(1),
        queue_max_bytes: l2.max_queue_size.max(1),
        cache_bytes: l2.cache_size,
        ..TierConfig::new(data_dir)
    })
}
