//! The `rat_memcached` server: the reactor, the protocol and the store joined.
//!
//! [`Server::start`] builds the store from the settings (opening its persistent
//! tier when there is a data directory), starts the reactor with a
//! `ProtocolSession` per connection (text or binary, decided by its first byte),
//! a background thread that sweeps expired items and, with a persistent tier, one
//! that warms memory up from disk. [`Server::wait`] returns once a signal or a
//! client's `shutdown` (enabled with `-A`) stopped the reactor and the persistent
//! tier has written out its queue.

mod auth;
mod binary;
mod counters;
mod meta;
mod protocol;
mod session;
mod stats;

use crate::config::{L2Settings, Settings};
use crate::reactor::{
    ConnEntry, ConnRegistry, Endpoints, Reactor, ReactorConfig, ReactorStats, SessionFactory,
    UnixEndpoint,
};
#[cfg(feature = "l2")]
use crate::store::TierConfig;
use crate::store::{Store, StoreConfig};
use auth::Credentials;
use counters::{CounterTotals, WorkerCounters};
use parking_lot::Mutex;
use protocol::ProtocolSession;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
#[cfg(feature = "l2")]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The memcached release whose protocol and behaviour this server follows;
/// clients read it from `version` to decide which features they may use.
pub const PROTOCOL_VERSION: &str = "1.6.18";

/// Expired items removed per sweep step, so one step never holds a stripe
/// long.
const SWEEP_BUDGET: usize = 10_000;

/// What every connection of the server shares.
pub struct ServerContext {
    pub settings: Settings,
    pub store: Store,
    counters: Vec<WorkerCounters>,
    stats_base: Mutex<CounterTotals>,
    reactor_stats: Arc<ReactorStats>,
    registry: Arc<ConnRegistry>,
    started: Instant,
    version: String,
    verbosity: AtomicU32,
    /// Work for the background thread.
    maintenance: crossbeam_channel::Sender<Maintenance>,
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

/// What the background thread is asked to do besides its periodic sweep.
enum Maintenance {
    /// Free what an immediate `flush_all` made invisible.
    DropFlushed,
    Stop,
}

impl ServerContext {
    /// The shared state of a server with these settings, and the receiving
    /// end of its background thread's work queue.
    fn new(
        settings: Settings,
    ) -> io::Result<(ServerContext, crossbeam_channel::Receiver<Maintenance>)> {
        let store_config = StoreConfig {
            max_memory: settings.max_memory_bytes,
            max_entries: settings.max_entries,
            max_item_size: settings.max_item_size,
            stripes: 0,
            cas_enabled: settings.cas_enabled,
            evictions_enabled: settings.evictions_enabled,
        };
        let store = open_store(store_config, &settings.l2)?;
        let (maintenance, requests) = crossbeam_channel::bounded(1);
        let ctx = ServerContext {
            maintenance,
            counters: (0..settings.threads.max(1))
                .map(|_| WorkerCounters::default())
                .collect(),
            stats_base: Mutex::new(CounterTotals::default()),
            reactor_stats: Arc::new(ReactorStats::default()),
            registry: Arc::new(ConnRegistry::default()),
            started: Instant::now(),
            version: format!(
                "{PROTOCOL_VERSION}-rat_memcached-{}",
                env!("CARGO_PKG_VERSION")
            ),
            verbosity: AtomicU32::new(u32::from(settings.verbosity)),
            store,
            settings,
            auth: Authentication::default(),
        };
        Ok((ctx, requests))
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
        ServerContext::new(settings)
            .expect("the test store opens")
            .0
    }

    /// Runs `flush_all` and, when it took effect at once, has the background
    /// thread give the memory back on its next tick.
    fn flush_all(&self, delay_secs: i64) {
        if self.store.flush_all(delay_secs) {
            // A full queue already holds a pending drop.
            let _ = self.maintenance.try_send(Maintenance::DropFlushed);
        }
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
    sweeper: Option<std::thread::JoinHandle<()>>,
    #[cfg(feature = "l2")]
    warm_up: Option<WarmUp>,
    ctx: Arc<ServerContext>,
}

/// The thread that loads L1 from the persistent tier after start-up, while
/// requests are served.
#[cfg(feature = "l2")]
struct WarmUp {
    thread: std::thread::JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

#[cfg(feature = "l2")]
impl WarmUp {
    /// Starts the warm-up when there is a persistent tier and the settings want it.
    fn start(ctx: &Arc<ServerContext>) -> io::Result<Option<WarmUp>> {
        if ctx.settings.l2.data_dir.is_none() || !ctx.settings.l2.warmup {
            return Ok(None);
        }
        let background = Arc::clone(ctx);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_requested = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("warm-up".into())
            .spawn(move || {
                let started = Instant::now();
                let loaded = background.store.warm_up(&stop_requested);
                log::info!(
                    "persistent tier: warm-up loaded {loaded} items into memory in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            })?;
        Ok(Some(WarmUp { thread, stop }))
    }

    /// Stops loading and waits for the thread.
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

impl Server {
    /// Binds the listening sockets and starts serving.
    pub fn start(settings: Settings) -> io::Result<Server> {
        let auth = Authentication::load(&settings)?;
        let (mut ctx, requests) = ServerContext::new(settings)?;
        ctx.auth = auth;
        let ctx = Arc::new(ctx);
        let threads = ctx.counters.len();
        let config = ReactorConfig {
            threads,
            max_connections: ctx.settings.max_connections,
            requests_per_turn: ctx.settings.reqs_per_event,
        };
        let reactor = Reactor::start(
            &endpoints(&ctx.settings),
            &config,
            Arc::new(Sessions(Arc::clone(&ctx))),
            Arc::clone(&ctx.reactor_stats),
            Arc::clone(&ctx.registry),
        )?;
        let interval = Duration::from_secs(u64::from(ctx.settings.cleanup_interval_secs.max(1)));
        let background = Arc::clone(&ctx);
        let sweeper = std::thread::Builder::new()
            .name("sweeper".into())
            .spawn(move || maintain(&background, &requests, interval))?;
        Ok(Server {
            reactor,
            sweeper: Some(sweeper),
            #[cfg(feature = "l2")]
            warm_up: WarmUp::start(&ctx)?,
            ctx,
        })
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

    /// Serves until the reactor is shut down.
    /// Waits until the server has stopped (see [`shutdown_handle`](Self::shutdown_handle)),
    /// then writes what is queued for the persistent tier and fsyncs it.
    pub fn wait(mut self) {
        self.reactor.join();
        let _ = self.ctx.maintenance.send(Maintenance::Stop);
        if let Some(sweeper) = self.sweeper.take() {
            let _ = sweeper.join();
        }
        #[cfg(feature = "l2")]
        close_tier(self.warm_up.take(), &self.ctx.store);
    }
}

/// Stops the warm-up, then writes what is queued for the persistent tier and
/// fsyncs it.
#[cfg(feature = "l2")]
fn close_tier(warm_up: Option<WarmUp>, store: &Store) {
    if let Some(warm_up) = warm_up {
        warm_up.stop();
    }
    store.close();
    if let Some(l2) = store.l2_stats() {
        log::info!(
            "persistent tier: {} items ({} bytes) written and synced",
            l2.items,
            l2.bytes
        );
    }
}

/// Where to listen. As memcached does, a unix socket is served alone: `-s`
/// turns TCP and UDP off, whatever `-l`, `-p` and `-U` say.
/// The store, with its persistent tier when the settings name a data directory.
#[cfg(feature = "l2")]
fn open_store(config: StoreConfig, settings: &L2Settings) -> io::Result<Store> {
    match l2_config(settings) {
        Some(l2) => Store::open(config, l2).map_err(io::Error::other),
        None => Ok(Store::new(config)),
    }
}

/// The store, memory-only: this build has no persistent tier, so a data
/// directory is refused rather than silently not written to.
#[cfg(not(feature = "l2"))]
fn open_store(config: StoreConfig, settings: &L2Settings) -> io::Result<Store> {
    match &settings.data_dir {
        Some(dir) => Err(io::Error::other(format!(
            "data directory {}: this rat_memcached was built without the persistent tier \
             (cargo feature `l2`); remove --data-dir and [melange_db] data_dir, or rebuild \
             with the feature",
            dir.display()
        ))),
        None => Ok(Store::new(config)),
    }
}

/// The store's persistent tier as the settings describe it; `None` without a data dir.
#[cfg(feature = "l2")]
fn l2_config(settings: &L2Settings) -> Option<TierConfig> {
    const MB: u64 = 1024 * 1024;
    let data_dir = settings.data_dir.clone()?;
    let defaults = TierConfig::new(&data_dir);
    Some(TierConfig {
        max_disk_bytes: settings.max_disk_size_mb * MB,
        compress_from: settings
            .enable_compression
            .then_some(settings.compression_threshold),
        flush_interval: Duration::from_millis(settings.flush_interval_ms),
        batch_size: settings.batch_size,
        // The settings are validated to fit in a usize.
        queue_max_bytes: (settings.queue_max_mb * MB) as usize,
        sync_writes: settings.sync_writes,
        clear_on_startup: settings.clear_on_startup,
        cache_bytes: (settings.cache_mb * MB) as usize,
        ..defaults
    })
}

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

/// The background thread: sweeps expired items every `interval`, and on the
/// tick after an immediate `flush_all` frees everything it hid. Waiting for
/// the tick keeps memcached's lazy behaviour visible to clients (a get right
/// after a flush still meets the flushed item and counts it in
/// `get_flushed`) while the memory still comes back within one interval.
fn maintain(
    ctx: &ServerContext,
    requests: &crossbeam_channel::Receiver<Maintenance>,
    interval: Duration,
) {
    let mut flushed = false;
    let mut next_tick = Instant::now() + interval;
    loop {
        match requests.recv_deadline(next_tick) {
            Ok(Maintenance::DropFlushed) => flushed = true,
            Ok(Maintenance::Stop) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                next_tick = Instant::now() + interval;
                if std::mem::take(&mut flushed) {
                    ctx.store.drop_flushed();
                }
                while ctx.store.sweep_expired(SWEEP_BUDGET) == SWEEP_BUDGET {}
            }
        }
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
            error.starts_with(&format!("data directory {}: ", data_dir.display())),
            "{error}"
        );
        assert!(error.contains("without the persistent tier"), "{error}");
        assert!(!data_dir.exists(), "the refused directory was created");
    }
}
