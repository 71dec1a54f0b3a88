//! The reactor: sockets, readiness and bytes, nothing about commands.
//!
//! One acceptor thread owns the listening sockets and hands every accepted
//! connection to one of a fixed pool of worker threads in turn (the same
//! design as memcached's dispatcher, and portable: it needs no
//! `SO_REUSEPORT`). Each worker runs its own mio `Poll` and keeps its
//! connections in a `slab`, so a connection lives on one thread for its whole
//! life and its state needs no lock.
//!
//! A worker reads what a connection has sent and hands the bytes, in place,
//! to the connection's [`Session`] (the protocol side), which consumes every
//! complete request and appends the replies to one output buffer; the worker
//! then writes that buffer with one `write` call. Pipelined requests thus get
//! their replies batched, and the session never sees a socket.
//!
//! Memory per connection stays small and bounded:
//! - bytes are read into a buffer shared by all connections of the worker;
//!   only a request cut in the middle is copied into a buffer of the
//!   connection's own, which is freed again once it is consumed;
//! - replies are built in a shared buffer too; what the socket doesn't take
//!   at once is kept per connection, and while any is left the connection is
//!   not read from, so a client that sends but never reads cannot make the
//!   server buffer without bound: its requests wait in the kernel.
//!
//! Three transports feed the same workers. TCP and unix domain sockets are
//! streams: the acceptor takes their connections alike and a worker cannot
//! tell them apart (`socket`). UDP has no connections: every worker reads the
//! UDP sockets itself and hands each datagram to a session of its own, whose
//! replies it frames as memcached does (`udp`).

mod acceptor;
mod registry;
mod socket;
mod udp;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use registry::{ConnEntry, ConnRegistry, Endpoint, Transport};
pub use udp::{frame_replies, FrameHeader, MAX_DATAGRAM};

/// What a session did with the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes used by complete requests; the rest is kept for later.
    pub consumed: usize,
    /// What the connection should do next.
    pub next: Next,
}

/// What happens to a connection after a batch of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Every complete request was handled; what is left is the start of an
    /// incomplete one. `wanted` is the total size that request will have,
    /// when known (a value announced by its header), so the input buffer can
    /// be sized once; 0 when unknown.
    NeedInput {
        /// Total bytes the incomplete request will have; 0 when unknown.
        wanted: usize,
    },
    /// Complete requests are left but the output limit was reached: call
    /// again once the output has been sent.
    OutputFull,
    /// Complete requests are left but the turn's request budget is used up:
    /// other connections go first (memcached's `-R`).
    Yield,
    /// Send what was produced, then close (`quit`, or a peer that does not
    /// speak the protocol).
    Close,
    /// Send what was produced, then stop the whole server (`shutdown`).
    Shutdown,
}

/// How much one call of [`Session::on_input`] may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnLimits {
    /// Stop once the output holds at least this many bytes.
    pub output_bytes: usize,
    /// Stop after this many requests.
    pub requests: usize,
}

/// The protocol side of one connection.
pub trait Session {
    /// Handles the complete requests at the start of `input`, appending their
    /// replies to `output`, until the input runs out or a limit is reached.
    fn on_input(&mut self, input: &[u8], output: &mut Vec<u8>, limits: TurnLimits) -> Progress;

    /// Handles the requests of one datagram, which stands alone: nothing is
    /// carried over from the previous datagram or to the next, and a request
    /// cut off at its end is dropped. Replies are appended to `output`, and
    /// the end offset of each reply unit to `unit_ends`, since a datagram
    /// transport frames every unit on its own (see the `udp` module). A
    /// unit may be empty; a request that must not be answered adds none.
    ///
    /// By default the whole reply is one unit.
    fn on_datagram(
        &mut self,
        input: &[u8],
        output: &mut Vec<u8>,
        unit_ends: &mut Vec<usize>,
    ) -> Next {
        let unlimited = TurnLimits {
            output_bytes: usize::MAX,
            requests: usize::MAX,
        };
        let progress = self.on_input(input, output, unlimited);
        if !output.is_empty() {
            unit_ends.push(output.len());
        }
        progress.next
    }
}

/// Creates the session of each new connection.
pub trait SessionFactory: Send + Sync + 'static {
    /// The session type this factory makes.
    type Session: Session + Send;
    /// `worker` is the index of the worker thread that will own the
    /// connection, so sessions can share per-thread state such as counters.
    fn open(&self, worker: usize, conn: &ConnEntry) -> Self::Session;
}

/// How the reactor is sized.
#[derive(Debug, Clone)]
pub struct ReactorConfig {
    /// Worker threads, each with its own poll and connections.
    pub threads: usize,
    /// Client connections served at once; one more is told so and closed.
    pub max_connections: usize,
    /// Requests served on one connection before the others get a turn.
    pub requests_per_turn: usize,
    /// Connections each listener lets wait to be accepted (memcached's `-b`; Unix only,
    /// elsewhere the standard library's 128).
    pub listen_backlog: u32,
}

/// Where the reactor listens.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// TCP addresses to listen on.
    pub tcp: Vec<SocketAddr>,
    /// UDP addresses to read datagrams from; every worker reads them all.
    pub udp: Vec<SocketAddr>,
    /// A unix domain socket to listen on, if any.
    pub unix: Option<UnixEndpoint>,
}

/// A unix domain socket to listen on.
#[derive(Debug, Clone)]
pub struct UnixEndpoint {
    /// Filesystem path of the socket.
    pub path: PathBuf,
    /// Permission bits of the socket file (memcached's `-a`).
    pub mode: u32,
}

/// Connection counters, kept by the reactor and read by `stats`.
#[derive(Debug)]
pub struct ReactorStats {
    /// Open connections; as in memcached, each worker's UDP socket counts as
    /// one.
    pub curr_connections: AtomicU64,
    /// Connections opened since start, UDP sockets included.
    pub total_connections: AtomicU64,
    /// Connections refused because `max_connections` was reached.
    pub rejected_connections: AtomicU64,
    /// Connections made to wait for others after a large burst of input.
    pub conn_yields: AtomicU64,
    /// Bytes each worker read from and wrote to its clients.
    io: Box<[WorkerBytes]>,
}

impl ReactorStats {
    /// Counters for a reactor of `workers` worker threads.
    pub fn new(workers: usize) -> ReactorStats {
        ReactorStats {
            curr_connections: AtomicU64::new(0),
            total_connections: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            conn_yields: AtomicU64::new(0),
            io: (0..workers.max(1))
                .map(|_| WorkerBytes::default())
                .collect(),
        }
    }

    /// Bytes read from clients, over every transport.
    pub fn bytes_read(&self) -> u64 {
        self.io
            .iter()
            .map(|io| io.read.load(Ordering::Relaxed))
            .sum()
    }

    /// Bytes written to clients, over every transport.
    pub fn bytes_written(&self) -> u64 {
        self.io
            .iter()
            .map(|io| io.written.load(Ordering::Relaxed))
            .sum()
    }

    /// Worker `index`'s byte counters.
    fn worker_bytes(&self, index: usize) -> &WorkerBytes {
        &self.io[index % self.io.len()]
    }
}

/// One worker's byte counts, on cache lines of their own: every request adds to
/// them, and counters shared by all workers would bounce their line from core to
/// core on each.
#[derive(Debug, Default)]
#[repr(align(128))]
struct WorkerBytes {
    read: AtomicU64,
    written: AtomicU64,
}

/// A handle to stop the reactor from anywhere.
#[derive(Clone)]
pub struct ShutdownHandle {
    requested: Arc<AtomicBool>,
    acceptor: Arc<mio::Waker>,
}

impl ShutdownHandle {
    /// Asks every thread of the reactor to stop.
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::SeqCst);
        // A failed wake means the acceptor is gone already.
        let _ = self.acceptor.wake();
    }

    /// Whether a shutdown has been asked for.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// A running reactor.
pub struct Reactor {
    shutdown: ShutdownHandle,
    threads: Vec<JoinHandle<()>>,
    local_addrs: Vec<SocketAddr>,
    udp_addrs: Vec<SocketAddr>,
    socket_file: Option<socket::SocketFile>,
}

impl Reactor {
    /// Binds every endpoint and starts the acceptor and workers.
    pub fn start<F: SessionFactory>(
        endpoints: &Endpoints,
        config: &ReactorConfig,
        factory: Arc<F>,
        stats: Arc<ReactorStats>,
        registry: Arc<ConnRegistry>,
    ) -> io::Result<Reactor> {
        let mut listeners = Vec::with_capacity(endpoints.tcp.len() + 1);
        let mut local_addrs = Vec::with_capacity(endpoints.tcp.len());
        for addr in &endpoints.tcp {
            let listener = mio::net::TcpListener::bind(*addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            local_addrs.push(listener.local_addr()?);
            listeners.push(socket::Listener::Tcp(listener));
        }
        let mut udp_sockets = Vec::with_capacity(endpoints.udp.len());
        let mut udp_addrs = Vec::with_capacity(endpoints.udp.len());
        for addr in &endpoints.udp {
            let socket = std::net::UdpSocket::bind(addr).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on UDP {addr}: {e}"))
            })?;
            socket.set_nonblocking(true)?;
            udp_addrs.push(socket.local_addr()?);
            udp_sockets.push(socket);
        }
        // Last, so a failure above leaves no socket file behind.
        let socket_file = match &endpoints.unix {
            Some(unix) => {
                let (listener, file) = socket::bind_unix(&unix.path, unix.mode)?;
                listeners.push(listener);
                Some(file)
            }
            None => None,
        };
        #[cfg(unix)]
        for listener in &listeners {
            listener.set_backlog(config.listen_backlog)?;
        }
        let started = Self::spawn(listeners, &udp_sockets, config, factory, stats, registry);
        match started {
            Ok((shutdown, threads)) => Ok(Reactor {
                shutdown,
                threads,
                local_addrs,
                udp_addrs,
                socket_file,
            }),
            Err(e) => {
                if let Some(file) = &socket_file {
                    file.remove();
                }
                Err(e)
            }
        }
    }

    /// Starts the workers, each with its own descriptor of every UDP socket,
    /// and the acceptor.
    fn spawn<F: SessionFactory>(
        listeners: Vec<socket::Listener>,
        udp_sockets: &[std::net::UdpSocket],
        config: &ReactorConfig,
        factory: Arc<F>,
        stats: Arc<ReactorStats>,
        registry: Arc<ConnRegistry>,
    ) -> io::Result<(ShutdownHandle, Vec<JoinHandle<()>>)> {
        // The acceptor's poll comes first so workers can wake it to stop.
        let acceptor_poll = mio::Poll::new()?;
        let shutdown = ShutdownHandle {
            requested: Arc::new(AtomicBool::new(false)),
            acceptor: Arc::new(mio::Waker::new(acceptor_poll.registry(), acceptor::WAKER)?),
        };
        let mut workers = Vec::with_capacity(config.threads);
        let mut threads = Vec::with_capacity(config.threads + 1);
        for index in 0..config.threads.max(1) {
            let udp = udp_sockets
                .iter()
                .map(|socket| socket.try_clone().map(mio::net::UdpSocket::from_std))
                .collect::<io::Result<Vec<_>>>()?;
            let (worker, handle) = worker::Worker::new(
                index,
                config.requests_per_turn.max(1),
                udp,
                Arc::clone(&factory),
                Arc::clone(&stats),
                Arc::clone(&registry),
                shutdown.clone(),
            )?;
            workers.push(handle);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("worker-{index}"))
                    .spawn(move || worker.run())?,
            );
        }
        // The UDP sockets count as connections, one per worker, but do not
        // take places from clients.
        let udp_entries = udp_sockets.len() * workers.len();
        let acceptor = acceptor::Acceptor::new(
            acceptor_poll,
            listeners,
            workers,
            config.max_connections + udp_entries,
            stats,
            registry,
            Arc::clone(&shutdown.requested),
        )?;
        threads.push(
            std::thread::Builder::new()
                .name("acceptor".into())
                .spawn(move || acceptor.run())?,
        );
        Ok((shutdown, threads))
    }

    /// A handle that stops this reactor.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The UDP addresses actually bound.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// The unix socket listened on.
    pub fn unix_path(&self) -> Option<&Path> {
        self.socket_file.as_ref().map(|file| file.path())
    }

    /// Waits until every reactor thread has stopped, then removes the unix
    /// socket file.
    pub fn join(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                log::error!("a reactor thread panicked");
            }
        }
        if let Some(file) = &self.socket_file {
            file.remove();
        }
    }
}
