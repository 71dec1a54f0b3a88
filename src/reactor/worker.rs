//! A worker thread: one mio `Poll`, its connections in a `slab`, and its own
//! descriptor of every UDP socket.

use super::acceptor::{Accepted, WorkerHandle};
use super::registry::{ConnEntry, ConnRegistry, Endpoint, Transport};
use super::socket::Stream;
use super::udp::{UdpBuffers, UdpEndpoint, UdpTurn};
use super::{Next, ReactorStats, Session, SessionFactory, ShutdownHandle, TurnLimits, WorkerBytes};
use crossbeam_channel::Receiver;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const WAKER: Token = Token(usize::MAX);
/// UDP socket `i` has token `UDP_TOKENS - i`: far above any slab key.
const UDP_TOKENS: usize = usize::MAX - 1;
/// At most this many UDP sockets per worker (one per listen address).
const MAX_UDP_SOCKETS: usize = 1 << 16;
/// Datagrams a UDP socket serves per turn, per request budget unit: a
/// datagram is usually one request.
const UDP_DATAGRAMS_PER_TURN: usize = 4;
/// Size of the read buffer the worker's connections share.
const READ_CHUNK: usize = 64 * 1024;
/// Replies produced in one go before the worker writes them out and the
/// session has to wait: bounds the output held for one connection.
const OUTPUT_LIMIT: usize = 256 * 1024;
/// A connection's own input buffer is kept for reuse up to this capacity and
/// freed when larger, so idle connections stay small.
const KEEP_INPUT_CAPACITY: usize = 16 * 1024;
/// The shared output buffer shrinks back to this after a large reply.
const KEEP_OUTPUT_CAPACITY: usize = 1024 * 1024;

/// One client connection.
struct Conn<S> {
    socket: Stream,
    session: S,
    entry: ConnEntry,
    /// Input not yet consumed by the session, carried to the next turn.
    input: InputBuf,
    /// The session could not use `input` without more bytes.
    input_stalled: bool,
    /// Size the pending request will reach, when the session knows it.
    wanted: usize,
    /// Replies the socket did not take yet, from `output_sent` on.
    output: Vec<u8>,
    output_sent: usize,
    /// Stop reading: close once `output` is sent.
    closing: bool,
}

/// How a turn on a connection ended.
enum Turn {
    /// Waiting for the socket to become readable or writable.
    Idle,
    /// More work is ready but others get a turn first.
    Yield,
    Close,
    Shutdown,
}

pub(super) struct Worker<F: SessionFactory> {
    index: usize,
    limits: TurnLimits,
    poll: Poll,
    /// Kept here too: closing a waker's descriptor would cancel a wake-up
    /// still on its way, e.g. when the acceptor stops right after waking us.
    _waker: Arc<Waker>,
    incoming: Receiver<Accepted>,
    conns: Slab<Conn<F::Session>>,
    udp: Vec<UdpEndpoint<F::Session>>,
    /// End offsets of the reply units of one datagram.
    unit_ends: Vec<usize>,
    factory: Arc<F>,
    stats: Arc<ReactorStats>,
    registry: Arc<ConnRegistry>,
    shutdown: ShutdownHandle,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    /// Connections that yielded and must be served again without an event.
    ready: Vec<usize>,
    /// The same for UDP sockets, by index.
    ready_udp: Vec<usize>,
}

impl<F: SessionFactory> Worker<F> {
    pub fn new(
        index: usize,
        requests_per_turn: usize,
        udp_sockets: Vec<UdpSocket>,
        factory: Arc<F>,
        stats: Arc<ReactorStats>,
        registry: Arc<ConnRegistry>,
        shutdown: ShutdownHandle,
    ) -> io::Result<(Worker<F>, WorkerHandle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (sender, incoming) = crossbeam_channel::unbounded();
        if udp_sockets.len() > MAX_UDP_SOCKETS {
            return Err(io::Error::other("too many UDP sockets"));
        }
        let mut udp = Vec::with_capacity(udp_sockets.len());
        for (i, mut socket) in udp_sockets.into_iter().enumerate() {
            poll.registry()
                .register(&mut socket, Token(UDP_TOKENS - i), Interest::READABLE)?;
            let local = Endpoint::Inet(socket.local_addr()?);
            let entry = registry.register(Transport::Udp, local.clone(), local);
            stats.curr_connections.fetch_add(1, Ordering::Relaxed);
            stats.total_connections.fetch_add(1, Ordering::Relaxed);
            let session = factory.open(index, &entry);
            udp.push(UdpEndpoint {
                socket,
                session,
                entry,
            });
        }
        let worker = Worker {
            index,
            limits: TurnLimits {
                output_bytes: OUTPUT_LIMIT,
                requests: requests_per_turn,
            },
            poll,
            _waker: Arc::clone(&waker),
            incoming,
            conns: Slab::new(),
            udp,
            unit_ends: Vec::new(),
            factory,
            stats,
            registry,
            shutdown,
            read_buf: vec![0; READ_CHUNK],
            write_buf: Vec::with_capacity(READ_CHUNK),
            ready: Vec::new(),
            ready_udp: Vec::new(),
        };
        Ok((worker, WorkerHandle { sender, waker }))
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut ready = Vec::new();
        let mut ready_udp = Vec::new();
        loop {
            let timeout = if self.ready.is_empty() && self.ready_udp.is_empty() {
                None
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("worker {} poll failed: {e}", self.index);
                break;
            }
            if self.shutdown.is_requested() {
                break;
            }
            std::mem::swap(&mut ready, &mut self.ready);
            for key in ready.drain(..) {
                self.serve(key, Reading::UntilBlocked);
            }
            std::mem::swap(&mut ready_udp, &mut self.ready_udp);
            for index in ready_udp.drain(..) {
                self.serve_udp(index);
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => self.adopt_new_connections(),
                    Token(token) if token > UDP_TOKENS - MAX_UDP_SOCKETS => {
                        self.serve_udp(UDP_TOKENS - token)
                    }
                    // The peer's FIN, if it came before this event was taken, raises no
                    // event of its own later: read until the socket says so.
                    Token(key) if event.is_read_closed() || event.is_error() => {
                        self.serve(key, Reading::UntilBlocked)
                    }
                    Token(key) => self.serve(key, Reading::UntilShort),
                }
            }
            if self.shutdown.is_requested() {
                break;
            }
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key);
        }
        for endpoint in &self.udp {
            self.forget(&endpoint.entry);
        }
    }

    fn adopt_new_connections(&mut self) {
        while let Ok(Accepted { mut stream, entry }) = self.incoming.try_recv() {
            let slot = self.conns.vacant_entry();
            let token = Token(slot.key());
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("cannot watch connection from {:?}: {e}", entry.peer);
                self.forget(&entry);
                continue;
            }
            let session = self.factory.open(self.index, &entry);
            slot.insert(Conn {
                socket: stream,
                session,
                entry,
                input: InputBuf::default(),
                input_stalled: false,
                wanted: 0,
                output: Vec::new(),
                output_sent: 0,
                closing: false,
            });
            // Data may have arrived before the registration.
            self.serve(token.0, Reading::UntilBlocked);
        }
    }

    fn serve(&mut self, key: usize, reading: Reading) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let now = self.registry.now();
        let buffers = Buffers {
            read: &mut self.read_buf,
            write: &mut self.write_buf,
        };
        let bytes = self.stats.worker_bytes(self.index);
        let turn = drive(conn, buffers, self.limits, bytes, now, reading);
        if self.write_buf.capacity() > KEEP_OUTPUT_CAPACITY {
            self.write_buf = Vec::with_capacity(READ_CHUNK);
        }
        match turn {
            Turn::Idle => {}
            Turn::Yield => {
                self.stats.conn_yields.fetch_add(1, Ordering::Relaxed);
                self.ready.push(key);
            }
            Turn::Close => self.close(key),
            Turn::Shutdown => {
                self.close(key);
                log::info!("shutdown requested by a client");
                self.shutdown.shutdown();
            }
        }
    }

    fn serve_udp(&mut self, index: usize) {
        let Some(endpoint) = self.udp.get_mut(index) else {
            return;
        };
        let buffers = UdpBuffers {
            read: &mut self.read_buf,
            write: &mut self.write_buf,
            unit_ends: &mut self.unit_ends,
        };
        let budget = self.limits.requests.saturating_mul(UDP_DATAGRAMS_PER_TURN);
        let bytes = self.stats.worker_bytes(self.index);
        let turn = endpoint.serve(buffers, budget, bytes, self.registry.now());
        if self.write_buf.capacity() > KEEP_OUTPUT_CAPACITY {
            self.write_buf = Vec::with_capacity(READ_CHUNK);
        }
        match turn {
            UdpTurn::Drained => {}
            UdpTurn::Yield => self.ready_udp.push(index),
            UdpTurn::Shutdown => {
                log::info!("shutdown requested by a client");
                self.shutdown.shutdown();
            }
        }
    }

    fn close(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        let _ = self.poll.registry().deregister(&mut conn.socket);
        self.forget(&conn.entry);
    }

    fn forget(&self, entry: &ConnEntry) {
        self.registry.unregister(entry.id);
        self.stats.curr_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The worker's buffers, shared by all its connections.
struct Buffers<'a> {
    read: &'a mut [u8],
    write: &'a mut Vec<u8>,
}

/// When a connection's turn may end for want of input.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// After a read that did not fill the buffer: the socket had no more, and bytes that
    /// arrive later raise a new edge-triggered event. This spares the read that would only
    /// say "would block", a third of the system calls of an unpipelined request.
    UntilShort,
    /// Only once a read says "would block" (or the peer closed): for connections that
    /// stopped with input pending, new ones, and sockets whose FIN may already be in.
    UntilBlocked,
}

/// Serves one connection until it would block, yields, or ends.
fn drive<S: Session>(
    conn: &mut Conn<S>,
    buffers: Buffers<'_>,
    limits: TurnLimits,
    bytes: &WorkerBytes,
    now: u64,
    reading: Reading,
) -> Turn {
    let Buffers {
        read: read_buf,
        write: write_buf,
    } = buffers;
    let mut yielding = false;
    let mut shutdown = false;
    // The last read left the socket empty.
    let mut drained = false;
    loop {
        // Replies first: nothing new is read while any are unsent.
        if conn.output_sent < conn.output.len() {
            match send(&mut conn.socket, &conn.output[conn.output_sent..], bytes) {
                Ok(n) => conn.output_sent += n,
                Err(_) => return Turn::Close,
            }
            if conn.output_sent < conn.output.len() {
                return Turn::Idle;
            }
            conn.output = Vec::new();
            conn.output_sent = 0;
        }
        if shutdown {
            return Turn::Shutdown;
        }
        if conn.closing {
            return Turn::Close;
        }
        if yielding {
            return Turn::Yield;
        }
        let input_ready = !conn.input.is_empty() && !conn.input_stalled;
        if drained && reading == Reading::UntilShort && !input_ready {
            return Turn::Idle;
        }

        // Input left from an earlier turn that the session can still use
        // (it stopped for output room or its turn, not for want of bytes).
        let fresh = if input_ready {
            0
        } else {
            match receive(conn, read_buf, bytes) {
                Ok(Received { bytes: 0, .. }) => return Turn::Close,
                Ok(received) => {
                    drained = !received.filled;
                    received.bytes
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Turn::Idle,
                Err(_) => return Turn::Close,
            }
        };

        // Hand the input to the session, from the shared buffer when the
        // connection had nothing pending, else from its own buffer.
        write_buf.clear();
        let from_shared = conn.input.is_empty();
        let input: &[u8] = if from_shared {
            &read_buf[..fresh]
        } else {
            conn.input.bytes()
        };
        let progress = conn.session.on_input(input, write_buf, limits);
        let consumed = progress.consumed.min(input.len());
        if from_shared {
            conn.input.append(&read_buf[consumed..fresh]);
        } else {
            conn.input.consume(consumed);
        }
        conn.input_stalled = false;
        conn.wanted = 0;
        match progress.next {
            Next::NeedInput { wanted } => {
                conn.input_stalled = !conn.input.is_empty();
                conn.wanted = wanted;
            }
            Next::OutputFull => {}
            Next::Yield => yielding = true,
            Next::Close => conn.closing = true,
            Next::Shutdown => shutdown = true,
        }
        conn.entry.last_active.store(now, Ordering::Relaxed);

        // One write for everything this batch produced.
        if !write_buf.is_empty() {
            let sent = match send(&mut conn.socket, write_buf, bytes) {
                Ok(n) => n,
                Err(_) => return Turn::Close,
            };
            if sent < write_buf.len() {
                conn.output.extend_from_slice(&write_buf[sent..]);
                conn.output_sent = 0;
            }
        }
    }
}

/// What one read brought.
struct Received {
    bytes: usize,
    /// It filled the room it was given, so the socket may hold more.
    filled: bool,
}

/// Reads what the socket has: into the shared buffer when the connection
/// has no pending input, else appended to its own buffer.
fn receive<S>(
    conn: &mut Conn<S>,
    read_buf: &mut [u8],
    bytes: &WorkerBytes,
) -> io::Result<Received> {
    loop {
        let (result, room) = if conn.input.is_empty() {
            (conn.socket.read(read_buf), read_buf.len())
        } else {
            let room = conn.wanted.saturating_sub(conn.input.len()).max(READ_CHUNK);
            let spare = conn.input.spare(room);
            let room = spare.len();
            (
                conn.socket.read(spare).inspect(|&n| conn.input.commit(n)),
                room,
            )
        };
        match result {
            Ok(n) => {
                if n > 0 {
                    bytes.read.fetch_add(n as u64, Ordering::Relaxed);
                    conn.input_stalled = false;
                }
                return Ok(Received {
                    bytes: n,
                    filled: n == room,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A connection's own input: a partial request carried between turns.
///
/// The vector is kept zero-initialised to its full length so reads can go
/// straight into its spare room; `len` says how much of it is input.
#[derive(Default)]
struct InputBuf {
    buf: Vec<u8>,
    len: usize,
}

impl InputBuf {
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn len(&self) -> usize {
        self.len
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn append(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.spare(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// At least `room` writable bytes after the input.
    fn spare(&mut self, room: usize) -> &mut [u8] {
        if self.buf.len() < self.len + room {
            self.buf.resize(self.len + room, 0);
        }
        &mut self.buf[self.len..]
    }

    fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Drops the first `n` bytes; frees a large buffer once it is empty.
    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
        if self.len == 0 && self.buf.len() > KEEP_INPUT_CAPACITY {
            self.buf = Vec::new();
        }
    }
}

/// Writes as much of `bytes` as the socket takes; 0 when it takes none now.
fn send(socket: &mut Stream, bytes: &[u8], counts: &WorkerBytes) -> io::Result<usize> {
    // Counted before the write, and what the socket refuses taken back after:
    // a client that reads this reply and asks for `stats` at once must find
    // it counted already.
    counts
        .written
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    let mut sent = 0;
    let result = loop {
        if sent == bytes.len() {
            break Ok(sent);
        }
        match socket.write(&bytes[sent..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(sent),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
    };
    let unsent = (bytes.len() - sent) as u64;
    if unsent > 0 {
        counts.written.fetch_sub(unsent, Ordering::Relaxed);
    }
    result
}
