//! The `rat_memcached` server: the reactor, the protocol and the store joined.
//!
//! [`Server::start`] builds the store from the settings (opening its persistent
//! tier when there is a data directory), starts the reactor with a
//! `ProtocolSession` per connection (text or binary, decided by its first byte),
//! a background thread that sweeps expired items and, with a persistent tier, one
//! that warms memory up from disk. [`Server::wait`] returns once a signal or a
//! client's `shutdown` (enabled with `-A`) stopped the reactor and the persistent
//! tier has written out its queue. Before it listens, the server raises its
//! open-files limit to what `-c` needs ([`fdlimit`]).

mod auth;
mod binary;
mod counters;
pub mod fdlimit;
mod meta;
mod prefetch;
mod protocol;
mod session;
mod stats;

use crate::cache::{L1Config, L2Config, RatMemCache, RatMemCacheBuilder, TtlConfig};
use crate::config::Settings;
use crate::reactor::{
    ConnEntry, ConnRegistry, Endpoints, Reactor, ReactorConfig, ReactorStats, SessionFactory,
    UnixEndpoint,
};
use crate::store::Store;
use auth::Credentials;
use counters::{CounterTotals, WorkerCounters};
use parking_lot::Mutex;
use protocol::ProtocolSession;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The memcached release whose protocol and behaviour this server follows;
/// clients read it from `version` to decide which features they may use.
pub const PROTOCOL_VERSION: &str = "1.6.18";

/// What every connection of the server shares.
pub struct ServerContext {
    /// The configuration the server runs with.
    pub settings: Settings,
    /// The cache, built through the library API like any embedding program's.
    cache: RatMemCache,
    counters: Vec<WorkerCounters>,
    stats_base: Mutex<CounterTotals>,
    reactor_stats: Arc<ReactorStats>,
    registry: Arc<ConnRegistry>,
    started: Instant,
    version: String,
    verbosity: AtomicU32,
    /// The password files of the authentication the settings ask for.
    auth: Authentication,
}

/// Who may use the server, per protocol; `None` lets everyone in.
#[derive(Default)]
struct Authentication {
    /// Text-protocol token authentication (`-Y`).
    text: Option<Credentials>,
    /// SASL over the binary protocol (`-S`).
    sasl: Option<Credentials>,
}

impl Authentication {
    /// Reads the password files: `-Y`'s for text authentication, and for
    /// SASL the file `MEMCACHED_SASL_PWDB` names, or else `-Y`'s.
    fn load(settings: &Settings) -> io::Result<Authentication> {
        let load = |path: &Path| Credentials::load(path).map_err(io::Error::other);
        let text = settings.auth_file.as_deref().map(load).transpose()?;
        let sasl = if settings.sasl_enabled {
            let path = settings
                .sasl_password_file
                .as_deref()
                .or(settings.auth_file.as_deref())
                .ok_or_else(|| {
                    io::Error::other(format!(
                        "-S: SASL needs a password file: set {} to a file of \
                             user:password lines",
                        crate::config::SASL_PASSWORD_FILE_VAR
                    ))
                })?;
            Some(load(path)?)
        } else {
            None
        };
        Ok(Authentication { text, sasl })
    }
}

impl ServerContext {
    /// The shared state of a server with these settings.
    fn new(settings: Settings) -> io::Result<ServerContext> {
        let cache = build_cache(&settings)?;
        Ok(ServerContext {
            counters: (0..settings.threads.max(1))
                .map(|_| WorkerCounters::default())
                .collect(),
            stats_base: Mutex::new(CounterTotals::default()),
            reactor_stats: Arc::new(ReactorStats::new(settings.threads)),
            registry: Arc::new(ConnRegistry::default()),
            started: Instant::now(),
            version: format!(
                "{PROTOCOL_VERSION}-rat_memcached-{}",
                env!("CARGO_PKG_VERSION")
            ),
            verbosity: AtomicU32::new(u32::from(settings.verbosity)),
            cache,
            settings,
            auth: Authentication::default(),
        })
    }

    /// The store every command works on.
    #[inline]
    pub fn store(&self) -> &Store {
        self.cache.store()
    }

    /// A one-worker context with default settings, for session tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> ServerContext {
        ServerContext::for_tests_with(Settings {
            threads: 1,
            ..Settings::default()
        })
    }

    #[cfg(test)]
    pub(crate) fn for_tests_with(settings: Settings) -> ServerContext {
        ServerContext::new(settings).expect("the test store opens")
    }

    /// Runs `flush_all`; the cache's background thread gives the memory of what an
    /// immediate flush hid back on its next tick (see [`Store::maintain`]).
    fn flush_all(&self, delay_secs: i64) {
        self.store().flush_all(delay_secs);
    }

    fn set_verbosity(&self, level: u32) {
        self.verbosity.store(level, Ordering::Relaxed);
        // memcached's levels: 0 quiet, 1 errors and warnings, 2 requests, 3 internals.
        let filter = match level {
            0 => log::LevelFilter::Warn,
            1 => log::LevelFilter::Info,
            2 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        };
        log::set_max_level(filter);
    }
}

struct Sessions(Arc<ServerContext>);

impl SessionFactory for Sessions {
    type Session = ProtocolSession;

    fn open(&self, worker: usize, _conn: &ConnEntry) -> ProtocolSession {
        ProtocolSession::new(Arc::clone(&self.0), worker)
    }
}

/// A started server.
pub struct Server {
    reactor: Reactor,
    ctx: Arc<ServerContext>,
}

impl Server {
    /// Binds the listening sockets and starts serving.
    pub fn start(settings: Settings) -> io::Result<Server> {
        let auth = Authentication::load(&settings)?;
        let mut ctx = ServerContext::new(settings)?;
        ctx.auth = auth;
        let ctx = Arc::new(ctx);
        let threads = ctx.counters.len();
        let endpoints = endpoints(&ctx.settings);
        let own_descriptors = fdlimit::own_descriptors(
            threads,
            endpoints.tcp.len() + usize::from(endpoints.unix.is_some()),
            endpoints.udp.len(),
            ctx.settings.l2.data_dir.is_some(),
        );
        let config = ReactorConfig {
            threads,
            max_connections: fdlimit::fit_connections(
                ctx.settings.max_connections,
                own_descriptors,
            ),
            requests_per_turn: ctx.settings.reqs_per_event,
            listen_backlog: ctx.settings.listen_backlog,
        };
        let reactor = Reactor::start(
            &endpoints,
            &config,
            Arc::new(Sessions(Arc::clone(&ctx))),
            Arc::clone(&ctx.reactor_stats),
            Arc::clone(&ctx.registry),
        )?;
        Ok(Server { reactor, ctx })
    }

    /// A handle that stops the server from another thread (signals).
    pub fn shutdown_handle(&self) -> crate::reactor::ShutdownHandle {
        self.reactor.shutdown_handle()
    }

    /// The TCP addresses served.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.reactor.local_addrs()
    }

    /// The UDP addresses served.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        self.reactor.udp_addrs()
    }

    /// The unix socket served.
    pub fn unix_path(&self) -> Option<&Path> {
        self.reactor.unix_path()
    }

    /// Waits until the server has stopped (see [`shutdown_handle`](Self::shutdown_handle)),
    /// then writes what is queued for the persistent tier and fsyncs it.
    pub fn wait(self) {
        self.reactor.join();
        let cache = &self.ctx.cache;
        if let Err(error) = cache.shutdown() {
            log::error!("{error}");
        }
        if let Some(l2) = cache.get_cache_stats().l2_stats {
            log::info!(
                "persistent tier: {} items ({} bytes) written and synced",
                l2.entry_count,
                l2.data_bytes
            );
        }
    }
}

/// The cache the settings describe, built as any program embedding rat_memcache builds
/// one: the server reads and writes it through [`RatMemCache::store`].
fn build_cache(settings: &Settings) -> io::Result<RatMemCache> {
    const MB: u64 = 1024 * 1024;
    let l1 = L1Config {
        max_memory: settings.max_memory_bytes,
        max_entries: settings.max_entries.unwrap_or(0),
        eviction_strategy: settings.eviction,
        max_item_size: settings.max_item_size,
        cas_enabled: settings.cas_enabled,
        evictions_enabled: settings.evictions_enabled,
    };
    let disk = &settings.l2;
    // The settings are validated to fit in a usize once multiplied out.
    let l2 = L2Config {
        enable_l2_cache: disk.data_dir.is_some(),
        data_dir: disk.data_dir.clone(),
        clear_on_startup: disk.clear_on_startup,
        max_disk_size: disk.max_disk_size_mb * MB,
        enable_compression: disk.enable_compression,
        compression_threshold: disk.compression_threshold,
        flush_interval: Duration::from_millis(disk.flush_interval_ms),
        sync_writes: disk.sync_writes,
        warmup: disk.warmup,
        batch_size: disk.batch_size,
        max_queue_size: (disk.queue_max_mb * MB) as usize,
        cache_size: (disk.cache_mb * MB) as usize,
    };
    // The cache's background thread sweeps expired items and frees flushed ones.
    let ttl = TtlConfig {
        cleanup_interval: u64::from(settings.cleanup_interval_secs.max(1)),
        ..TtlConfig::default()
    };
    RatMemCacheBuilder::new()
        .l1_config(l1)
        .l2_config(l2)
        .ttl_config(ttl)
        .build()
        .map_err(io::Error::other)
}

/// Where to listen. As memcached does, a unix socket is served alone: `-s`
/// turns TCP and UDP off, whatever `-l`, `-p` and `-U` say.
fn endpoints(settings: &Settings) -> Endpoints {
    match &settings.unix_socket {
        Some(path) => Endpoints {
            unix: Some(UnixEndpoint {
                path: path.clone(),
                mode: settings.unix_socket_mask,
            }),
            ..Endpoints::default()
        },
        None => Endpoints {
            tcp: settings.listen.clone(),
            udp: settings.udp_listen.clone(),
            unix: None,
        },
    }
}

/// User and system CPU time of the process so far.
#[cfg(unix)]
pub(crate) fn process_cpu_times() -> (Duration, Duration) {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return (Duration::ZERO, Duration::ZERO);
        }
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (time(usage.ru_utime), time(usage.ru_stime))
}

#[cfg(not(unix))]
pub(crate) fn process_cpu_times() -> (Duration, Duration) {
    (Duration::ZERO, Duration::ZERO)
}

#[cfg(all(test, not(feature = "l2")))]
mod tests {
    use super::*;
    use crate::config::L2Settings;

    #[test]
    fn a_data_directory_is_refused_without_the_persistent_tier() {
        let data_dir = std::env::temp_dir().join("rat-memcache-no-tier");
        let settings = Settings {
            threads: 1,
            l2: L2Settings {
                data_dir: Some(data_dir.clone()),
                ..L2Settings::default()
            },
            ..Settings::default()
        };
        let error = match ServerContext::new(settings) {
            Ok(_) => panic!("a data directory was accepted by a build without the tier"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains(&format!("data directory {}: ", data_dir.display())),
            "{error}"
        );
        assert!(
            error.contains("this build has no persistent tier (cargo feature `l2`)"),
            "{error}"
        );
        assert!(!data_dir.exists(), "the refused directory was created");
    }
}
