//! The persistent tier's configuration, start-up errors and counters: plain types that
//! every build has, so that code using the store compiles the same with or without the
//! tier itself (cargo feature `l2`, the `l2` module).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// How the persistent tier is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierConfig {
    /// Where melange_db keeps its files; created if missing.
    pub data_dir: PathBuf,
    /// Bytes of keys and records the tier may hold; the oldest writes go first beyond it.
    pub max_disk_bytes: u64,
    /// Values at least this long are LZ4-compressed on disk when that makes them
    /// smaller; `None` stores every value as given.
    pub compress_from: Option<usize>,
    /// The crash window: how soon after it was acknowledged a write is on disk (see
    /// the module docs for when an fsync takes longer than half of it).
    pub flush_interval: Duration,
    /// Most messages applied in one melange_db batch.
    pub batch_size: usize,
    /// Bytes of queued messages beyond which writers wait for the disk.
    pub queue_max_bytes: usize,
    /// A command returns only once its write is fsynced.
    pub sync_writes: bool,
    /// Discard the directory's contents at start-up.
    pub clear_on_startup: bool,
    /// Bytes of melange_db's own page cache.
    pub cache_bytes: usize,
    /// Writing stops (a fault) when the disk has less free space than this.
    pub min_free_disk: u64,
}

impl TierConfig {
    /// The defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> TierConfig {
        TierConfig {
            data_dir: data_dir.into(),
            max_disk_bytes: 1024 * 1024 * 1024,
            compress_from: Some(256),
            flush_interval: Duration::from_millis(100),
            batch_size: 4096,
            queue_max_bytes: 64 * 1024 * 1024,
            sync_writes: false,
            clear_on_startup: false,
            cache_bytes: 32 * 1024 * 1024,
            min_free_disk: 64 * 1024 * 1024,
        }
    }
}

/// Why the tier could not start.
#[derive(Debug)]
pub enum TierError {
    /// Another running process holds the directory.
    InUse {
        /// The data directory.
        dir: PathBuf,
    },
    /// The directory's database could not be opened or read.
    Corrupt {
        /// The data directory.
        dir: PathBuf,
        /// What the database reported.
        detail: String,
    },
    /// The directory could not be created, cleared or opened.
    Io {
        /// The data directory.
        dir: PathBuf,
        /// The failing operation's error.
        source: io::Error,
    },
    /// This build has no persistent tier (it was built without the cargo feature `l2`).
    NotBuilt {
        /// The data directory.
        dir: PathBuf,
    },
}

impl std::fmt::Display for TierError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TierError::InUse { dir } => write!(
                f,
                "data directory {} is in use by another running instance",
                dir.display()
            ),
            TierError::Corrupt { dir, detail } => write!(
                f,
                "data directory {} cannot be read ({detail}); start with --clear-on-startup \
                 (or [melange_db] clear_on_startup = true) to discard its contents",
                dir.display()
            ),
            TierError::Io { dir, source } => {
                write!(f, "data directory {}: {source}", dir.display())
            }
            TierError::NotBuilt { dir } => write!(
                f,
                "data directory {}: this build has no persistent tier (cargo feature `l2`)",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for TierError {}

/// The tier's counters, for `stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Items on disk.
    pub items: u64,
    /// Bytes of keys and records (what the disk limit counts).
    pub bytes: u64,
    /// The database's files on disk.
    pub disk_bytes: u64,
    /// The disk limit, `max_disk_bytes`.
    pub limit_bytes: u64,
    /// L1 misses that looked in L2.
    pub reads: u64,
    /// Reads that first waited for the writer to apply the key's latest change.
    pub read_waits: u64,
    /// Reads that found a live item.
    pub hits: u64,
    /// Items promoted into L1 (by misses and by warm-up).
    pub promotions: u64,
    /// Items loaded into L1 by the start-up warm-up.
    pub warmed: u64,
    /// Messages applied (puts and deletes).
    pub writes: u64,
    /// Batches the writer has applied.
    pub batches: u64,
    /// fsyncs.
    pub flushes: u64,
    /// How long the last fsync took, in milliseconds.
    pub last_sync_ms: u64,
    /// Messages waiting for the writer.
    pub queue_depth: u64,
    /// Bytes of the messages waiting for the writer.
    pub queue_bytes: u64,
    /// Times a command waited for room in the queue.
    pub queue_waits: u64,
    /// Messages not written because the tier is in a fault state.
    pub dropped_writes: u64,
    /// Items dropped to stay under the disk limit.
    pub evictions: u64,
    /// Expired or flushed items removed from disk.
    pub reclaimed: u64,
    /// Values stored LZ4-compressed.
    pub compressed: u64,
    /// Errors that fault the tier (a failed read, write or fsync, a panicked
    /// thread), each one counted.
    pub errors: u64,
    /// Whether the tier stopped writing after a fault.
    pub faulted: bool,
}
