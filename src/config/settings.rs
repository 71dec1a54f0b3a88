//! The server's [`Settings`]: what the command line and the configuration file decide,
//! merged and checked (see the `config` module docs for the layers).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use super::units;
use crate::cache::EvictionStrategy;

/// TCP port memcached and rat_memcached listen on by default.
pub const DEFAULT_PORT: u16 = 11211;
/// Item memory, in megabytes, when neither `-m` nor `[cache] max_memory_mb` is given.
pub const DEFAULT_MEMORY_MB: u64 = 64;
/// Largest item accepted by default (memcached's `-I 1m`).
pub const DEFAULT_MAX_ITEM_SIZE: usize = 1024 * 1024;
/// Simultaneous client connections allowed by default (memcached's `-c 1024`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Requests served per connection before yielding to others (memcached's `-R 20`).
pub const DEFAULT_REQS_PER_EVENT: usize = 20;
/// memcached's default listen backlog (`-b`).
pub const DEFAULT_LISTEN_BACKLOG: u32 = 1024;
/// Worker threads when the number of CPU cores cannot be determined (memcached's default).
pub const FALLBACK_THREADS: usize = 4;
/// Permission bits of a unix socket's file when `-a` does not set them (memcached's 0700).
pub const DEFAULT_UNIX_SOCKET_MASK: u32 = 0o700;
/// Disk budget of the persistent tier, in megabytes, when `[melange_db]` does not set one.
pub const DEFAULT_MAX_DISK_SIZE_MB: u64 = 1024;
/// Values of this many bytes or more are LZ4-compressed on disk unless configured otherwise.
pub const DEFAULT_L2_COMPRESSION_THRESHOLD: usize = 256;
/// Milliseconds between two fsyncs of the persistent tier: the most a crash can lose.
pub const DEFAULT_L2_FLUSH_INTERVAL_MS: u64 = 100;
/// Longest flush interval accepted; a longer crash window is a misconfiguration.
pub const MAX_L2_FLUSH_INTERVAL_MS: u64 = 60_000;
/// Queued writes applied to the persistent tier in one melange_db batch, at most.
pub const DEFAULT_L2_BATCH_SIZE: usize = 4096;
/// Megabytes of queued, not yet applied writes before writers wait for the disk.
pub const DEFAULT_L2_QUEUE_MAX_MB: u64 = 64;
/// Megabytes of melange_db's own page cache.
pub const DEFAULT_L2_CACHE_MB: u64 = 32;

/// Which wire protocols a connection may speak (memcached's `-B`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolMode {
    /// Decide per connection from its first byte: 0x80 is binary, anything else text.
    Auto,
    /// Text protocol only (classic and meta commands).
    Ascii,
    /// Binary protocol only.
    Binary,
}

impl ProtocolMode {
    /// The name `-B` accepts and the config file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolMode::Auto => "auto",
            ProtocolMode::Ascii => "ascii",
            ProtocolMode::Binary => "binary",
        }
    }

    /// The value memcached reports as `binding_protocol` in `stats settings`.
    pub fn stats_name(self) -> &'static str {
        match self {
            ProtocolMode::Auto => "auto-negotiate",
            ProtocolMode::Ascii => "ascii",
            ProtocolMode::Binary => "binary",
        }
    }
}

/// Settings of the persistent L2 tier: melange_db on disk, behind the in-memory L1.
///
/// The tier is off unless `data_dir` is given (`--data-dir` or `[melange_db] data_dir`).
/// Every value here has been checked against the bounds its doc states, and every
/// megabyte count, multiplied out to bytes, fits in a `usize`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Settings {
    /// Directory of the on-disk database; `None` keeps the cache memory-only.
    pub data_dir: Option<PathBuf>,
    /// Upper bound of the database size on disk, in megabytes; at least 1.
    pub max_disk_size_mb: u64,
    /// Whether values of `compression_threshold` bytes or more are LZ4-compressed on disk.
    pub enable_compression: bool,
    /// Smallest value, in bytes, that is compressed; 0 compresses every value.
    pub compression_threshold: usize,
    /// Milliseconds between fsyncs of written data, 1 to [`MAX_L2_FLUSH_INTERVAL_MS`]:
    /// the window of acknowledged writes a crash can lose (unless `sync_writes`).
    pub flush_interval_ms: u64,
    /// Most queued writes applied in one melange_db batch; at least 1.
    pub batch_size: usize,
    /// Megabytes of queued, not yet applied writes beyond which writers wait
    /// (backpressure); at least 1.
    pub queue_max_mb: u64,
    /// Whether every write is fsynced before it is acknowledged, closing the crash window.
    pub sync_writes: bool,
    /// Whether the database in `data_dir` is emptied at startup.
    pub clear_on_startup: bool,
    /// Whether L1 is filled from L2 in the background at startup.
    pub warmup: bool,
    /// Megabytes of melange_db's own page cache; at least 1.
    pub cache_mb: u64,
}

impl Default for L2Settings {
    fn default() -> Self {
        L2Settings {
            data_dir: None,
            max_disk_size_mb: DEFAULT_MAX_DISK_SIZE_MB,
            enable_compression: true,
            compression_threshold: DEFAULT_L2_COMPRESSION_THRESHOLD,
            flush_interval_ms: DEFAULT_L2_FLUSH_INTERVAL_MS,
            batch_size: DEFAULT_L2_BATCH_SIZE,
            queue_max_mb: DEFAULT_L2_QUEUE_MAX_MB,
            sync_writes: false,
            clear_on_startup: false,
            warmup: true,
            cache_mb: DEFAULT_L2_CACHE_MB,
        }
    }
}

/// Everything the server needs to know to start, validated and with addresses resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// TCP addresses to listen on (`-l`, `--bind`, `[server] listen`), never empty. Not
    /// served when `unix_socket` is set, as memcached serves only the unix socket then.
    pub listen: Vec<SocketAddr>,
    /// UDP port (`-U`, `[server] udp_port`); 0 = no UDP.
    pub udp_port: u16,
    /// UDP addresses, empty when `udp_port` is 0: the hosts of `listen` at `udp_port`, or,
    /// as in memcached, at their own port when the listen item names one.
    pub udp_listen: Vec<SocketAddr>,
    /// Unix domain socket to listen on instead of TCP and UDP (`-s`, `[server] unix_socket`).
    pub unix_socket: Option<PathBuf>,
    /// Permission bits of the unix socket's file (`-a`, `[server] unix_socket_mask`).
    pub unix_socket_mask: u32,
    /// Item memory limit in bytes (`-m` megabytes, `[cache] max_memory_mb`).
    pub max_memory_bytes: usize,
    /// Upper bound on the number of items (`[cache] max_entries`); `None` = no bound.
    pub max_entries: Option<usize>,
    /// Simultaneous client connections (`-c`, `[server] max_connections`).
    pub max_connections: usize,
    /// Reactor worker threads (`-t`, `[performance] worker_threads`).
    pub threads: usize,
    /// Largest accepted item in bytes (`-I`, `[server] max_item_size`).
    pub max_item_size: usize,
    /// Log verbosity: 0 warnings, 1 info (`-v`), 2 debug (`-vv`), 3+ trace (`-vvv`).
    pub verbosity: u8,
    /// Whether the ASCII `shutdown` command is honoured (`-A`).
    pub enable_shutdown: bool,
    /// Whether `flush_all` is honoured (`-F` turns it off).
    pub flush_enabled: bool,
    /// Whether CAS values are kept and checked (`-C` turns it off).
    pub cas_enabled: bool,
    /// Whether the store may evict items to make room (`-M` turns it off: a store that
    /// is full then answers `SERVER_ERROR out of memory storing object`, like memcached).
    pub evictions_enabled: bool,
    /// Which protocols clients may speak (`-B`).
    pub protocol: ProtocolMode,
    /// Password file of text-protocol authentication (`-Y`, `--auth-file`,
    /// `[server] auth_file`); `None` = no authentication. Makes the server
    /// text-only, as in memcached.
    pub auth_file: Option<PathBuf>,
    /// Whether binary connections must authenticate with SASL (`-S`). Makes the
    /// server binary-only unless `auth_file` is set, as in memcached.
    pub sasl_enabled: bool,
    /// SASL's password file, named by the `MEMCACHED_SASL_PWDB` environment
    /// variable as for memcached's built-in password database.
    pub sasl_password_file: Option<PathBuf>,
    /// Requests served per connection before moving to the next one (`-R`).
    pub reqs_per_event: usize,
    /// Connections waiting to be accepted per listener (`-b`).
    pub listen_backlog: u32,
    /// User to switch to after binding, when started as root (`-u`).
    pub run_as_user: Option<String>,
    /// Whether to detach from the terminal (`-d`, `--daemon`).
    pub daemonize: bool,
    /// File to write the process id to (`-P`, `--pidfile`, `--pid-file`).
    pub pid_file: Option<PathBuf>,
    /// Eviction strategy of the in-memory tier (`[cache] eviction_strategy`).
    pub eviction: EvictionStrategy,
    /// TTL in seconds given to items stored with exptime 0; 0 keeps them forever, as
    /// memcached does (`[ttl] default_ttl_seconds`).
    pub default_ttl: u32,
    /// Period in seconds of the background sweep of expired items
    /// (`[ttl] cleanup_interval_seconds`).
    pub cleanup_interval_secs: u32,
    /// Settings of the persistent L2 tier (`[melange_db]`, `--data-dir` and the other
    /// persistence flags); the tier runs when `l2.data_dir` is set.
    pub l2: L2Settings,
    /// Startup messages about accepted-but-ineffective flags and keys, to be logged at
    /// warning level once logging is initialised.
    pub notices: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT))],
            udp_port: 0,
            udp_listen: Vec::new(),
            unix_socket: None,
            unix_socket_mask: DEFAULT_UNIX_SOCKET_MASK,
            max_memory_bytes: (DEFAULT_MEMORY_MB as usize) * units::MEGABYTE,
            max_entries: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            threads: default_threads(),
            max_item_size: DEFAULT_MAX_ITEM_SIZE,
            verbosity: 0,
            enable_shutdown: false,
            flush_enabled: true,
            cas_enabled: true,
            evictions_enabled: true,
            protocol: ProtocolMode::Auto,
            auth_file: None,
            sasl_enabled: false,
            sasl_password_file: None,
            reqs_per_event: DEFAULT_REQS_PER_EVENT,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            run_as_user: None,
            daemonize: false,
            pid_file: None,
            eviction: EvictionStrategy::Lru,
            default_ttl: 0,
            cleanup_interval_secs: 1,
            l2: L2Settings::default(),
            notices: Vec::new(),
        }
    }
}

/// One worker thread per CPU core, as the architecture prescribes.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|cores| cores.get())
        .unwrap_or(FALLBACK_THREADS)
}

/// What the binary should do after reading its command line.
// Made once per process, so the size of `Settings` next to a `String` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CliAction {
    /// Start the server with these settings.
    Run(Settings),
    /// Print this text to stdout and exit successfully (`--help`, `-i`/`--license`).
    Help(String),
    /// Print this line to stdout and exit successfully (`--version`).
    Version(String),
}

/// A configuration problem, described in one line that names the flag or key at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }

    /// The message, as `Display` prints it.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_memcached_and_the_spec() {
        let settings = Settings::default();
        assert_eq!(settings.listen, vec!["127.0.0.1:11211".parse().unwrap()]);
        assert_eq!(settings.udp_port, 0);
        assert_eq!(settings.unix_socket, None);
        assert_eq!(settings.unix_socket_mask, 0o700);
        assert_eq!(settings.max_memory_bytes, 64 * 1024 * 1024);
        assert_eq!(settings.max_entries, None);
        assert_eq!(settings.max_connections, 1024);
        assert_eq!(
            settings.threads,
            std::thread::available_parallelism().unwrap().get()
        );
        assert_eq!(settings.max_item_size, 1024 * 1024);
        assert_eq!(settings.verbosity, 0);
        assert!(!settings.enable_shutdown);
        assert!(settings.flush_enabled);
        assert!(settings.cas_enabled);
        assert!(settings.evictions_enabled);
        assert_eq!(settings.protocol, ProtocolMode::Auto);
        assert_eq!(settings.reqs_per_event, 20);
        assert_eq!(settings.run_as_user, None);
        assert!(!settings.daemonize);
        assert_eq!(settings.pid_file, None);
        assert_eq!(settings.eviction, EvictionStrategy::Lru);
        assert_eq!(settings.default_ttl, 0);
        assert_eq!(settings.cleanup_interval_secs, 1);
        assert_eq!(settings.l2, L2Settings::default());
        assert!(settings.notices.is_empty());
    }

    #[test]
    fn l2_is_off_by_default_with_the_documented_values() {
        let l2 = L2Settings::default();
        assert_eq!(l2.data_dir, None);
        assert_eq!(l2.max_disk_size_mb, 1024);
        assert!(l2.enable_compression);
        assert_eq!(l2.compression_threshold, 256);
        assert_eq!(l2.flush_interval_ms, 100);
        assert_eq!(l2.batch_size, 4096);
        assert_eq!(l2.queue_max_mb, 64);
        assert!(!l2.sync_writes);
        assert!(!l2.clear_on_startup);
        assert!(l2.warmup);
        assert_eq!(l2.cache_mb, 32);
        assert!((1..=MAX_L2_FLUSH_INTERVAL_MS).contains(&l2.flush_interval_ms));
    }

    #[test]
    fn protocol_names_follow_memcached() {
        assert_eq!(ProtocolMode::Auto.stats_name(), "auto-negotiate");
        assert_eq!(ProtocolMode::Ascii.stats_name(), "ascii");
        assert_eq!(ProtocolMode::Binary.as_str(), "binary");
    }
}
