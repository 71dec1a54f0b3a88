//! The closed-loop driver: threads, connections, and the event loop that keeps each
//! connection's pipeline full.
//!
//! A run opens `conns` TCP connections spread over `threads` threads. Each thread owns its
//! connections and one `mio` poll; nothing on the request path is shared between threads
//! except the read-only dataset and protocol. A connection keeps exactly `pipeline` requests
//! in flight: every complete reply is checked, timed and immediately replaced by a new
//! request, so the offered load is whatever the server can answer (closed loop), and the
//! latency of a reply is the time from queuing its request to parsing its last byte.
//!
//! The hot path is built to cost the generator as little CPU as possible, because on a small
//! machine the generator and the server share the cores and every cycle spent here is one
//! the server does not get:
//! - requests are encoded into a per-connection output buffer that is reused, and replies
//!   parsed in place in a per-connection input buffer; nothing is allocated per request;
//! - one `Instant::now()` per batch of replies read, not one per reply;
//! - a read that returns less than the free buffer space is taken to have drained the
//!   socket (edge-triggered readiness fires again when more bytes arrive), which saves the
//!   extra `read` that would only return `WouldBlock`;
//! - all requests produced while handling a batch of replies leave in one `write`.
//!
//! All threads connect first and then start together behind a barrier, so connection setup
//! is not measured. A run ends when its duration is over or its request budget is spent,
//! after the requests still in flight have been answered.

use crate::cpu::process_cpu_time;
use crate::dataset::Dataset;
use crate::histogram::Histogram;
use crate::protocol::{printable, Protocol, Request, RequestKind};
use crate::workload::{KeyChooser, Mix, RequestSource};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Initial size of a connection's input buffer; it grows when one reply is larger.
const INPUT_BUFFER: usize = 64 * 1024;
/// How often an idle event loop wakes to check the clock and the abort flag.
const TICK: Duration = Duration::from_millis(50);

/// When a measured run stops issuing requests.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    After(Duration),
    /// This many requests in total, shared out evenly over the connections.
    Requests(u64),
    /// When the workload runs dry (a fill).
    Exhausted,
}

/// What a run asks for.
pub enum Workload {
    Mixed {
        mix: Mix,
        seed: u64,
    },
    /// Set every key of the dataset once.
    Fill,
}

/// How a run is driven.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub server: SocketAddr,
    pub threads: usize,
    pub conns: usize,
    pub pipeline: usize,
    pub stop: Stop,
    pub verify: bool,
    /// Longest wait for any reply while requests are in flight before giving up.
    pub reply_timeout: Duration,
}

/// Request and key counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub gets: u64,
    pub sets: u64,
    /// Keys carried by all requests (a multi-get of K keys counts K).
    pub keys: u64,
    pub hits: u64,
    pub misses: u64,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.requests += other.requests;
        self.gets += other.gets;
        self.sets += other.sets;
        self.keys += other.keys;
        self.hits += other.hits;
        self.misses += other.misses;
    }
}

/// What a run measured.
pub struct RunResult {
    pub elapsed: Duration,
    pub counters: Counters,
    /// Reply latencies in nanoseconds.
    pub latency: Histogram,
    /// CPU time the whole generator process used during the run, where known.
    pub cpu: Option<Duration>,
}

/// Everything the threads of one run read and never write.
struct Shared<'a> {
    protocol: &'a dyn Protocol,
    dataset: &'a Dataset,
    config: &'a RunConfig,
    workload: &'a Workload,
    chooser: Option<Arc<KeyChooser>>,
    /// Set by the first thread that fails, so the others stop early.
    abort: AtomicBool,
}

/// Runs `workload` against the server and returns what was measured, or the first error
/// (a connection failure, a timeout, or a reply the protocol rejects).
pub fn run(
    protocol: &dyn Protocol,
    dataset: &Dataset,
    config: &RunConfig,
    workload: &Workload,
) -> Result<RunResult, String> {
    let conns = config.conns.max(1);
    let threads = config.threads.clamp(1, conns);
    let chooser = match workload {
        Workload::Mixed { mix, .. } => Some(Arc::new(KeyChooser::new(
            &mix.distribution,
            dataset.count(),
        ))),
        Workload::Fill => None,
    };
    let shared = Shared {
        protocol,
        dataset,
        config,
        workload,
        chooser,
        abort: AtomicBool::new(false),
    };
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let first = thread * conns / threads;
                let last = (thread + 1) * conns / threads;
                let (shared, barrier) = (&shared, &barrier);
                scope.spawn(move || {
                    let result = drive(shared, first..last, barrier);
                    if result.is_err() {
                        shared.abort.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        barrier.wait();
        let cpu_start = process_cpu_time();
        let start = Instant::now();
        let mut counters = Counters::default();
        let mut latency = Histogram::new();
        let mut first_error = None;
        for worker in workers {
            match worker.join() {
                Ok(Ok(done)) => {
                    counters.add(&done.counters);
                    latency.merge(&done.latency);
                }
                Ok(Err(error)) => {
                    first_error.get_or_insert(error);
                }
                Err(_) => {
                    first_error.get_or_insert_with(|| "a generator thread panicked".to_string());
                }
            }
        }
        let elapsed = start.elapsed();
        let cpu = process_cpu_time()
            .zip(cpu_start)
            .map(|(end, start)| end - start);
        match first_error {
            Some(error) => Err(error),
            None => Ok(RunResult {
                elapsed,
                counters,
                latency,
                cpu,
            }),
        }
    })
}

/// What one thread measured.
struct ThreadResult {
    counters: Counters,
    latency: Histogram,
}

/// A request on the wire, waiting for its reply.
struct Slot {
    request: Request,
    sent: Instant,
}

struct Connection {
    /// Position among all connections of the run, for messages.
    index: usize,
    stream: TcpStream,
    source: RequestSource,
    /// Requests this connection may still issue, when the run has a request budget.
    quota: Option<u64>,
    output: Vec<u8>,
    written: usize,
    input: Vec<u8>,
    /// `input[parsed..filled]` holds received bytes not yet parsed.
    parsed: usize,
    filled: usize,
    /// A ring of `pipeline` slots; `in_flight` of them, starting at `oldest`, are in use.
    slots: Vec<Slot>,
    oldest: usize,
    in_flight: usize,
    /// The source ran dry: no more requests, ever.
    exhausted: bool,
}

impl Connection {
    fn error(&self, message: impl std::fmt::Display) -> String {
        format!("connection {}: {message}", self.index)
    }

    /// Queues requests until the pipeline is full or the run says stop.
    fn refill(&mut self, shared: &Shared, now: Instant, deadline: Option<Instant>) {
        let depth = self.slots.len();
        while self.in_flight < depth
            && !self.exhausted
            && self.quota != Some(0)
            && deadline.map_or(true, |deadline| now < deadline)
            && !shared.abort.load(Ordering::Relaxed)
        {
            let slot = &mut self.slots[(self.oldest + self.in_flight) % depth];
            if !self.source.next_into(&mut slot.request) {
                self.exhausted = true;
                break;
            }
            shared
                .protocol
                .encode(shared.dataset, &slot.request, &mut self.output);
            slot.sent = now;
            self.in_flight += 1;
            if let Some(quota) = self.quota.as_mut() {
                *quota -= 1;
            }
        }
    }

    /// Writes queued output until done or the socket is full.
    fn flush(&mut self) -> Result<(), String> {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(self.error("server stopped accepting data")),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(format!("write: {e}"))),
            }
        }
        self.output.clear();
        self.written = 0;
        Ok(())
    }

    /// Makes room at the end of the input buffer: drop parsed bytes, grow if still full.
    fn make_room(&mut self) {
        if self.parsed > 0 {
            self.input.copy_within(self.parsed..self.filled, 0);
            self.filled -= self.parsed;
            self.parsed = 0;
        }
        if self.filled == self.input.len() {
            self.input.resize(self.input.len() * 2, 0);
        }
    }

    /// Reads what arrived and handles every complete reply in it.
    fn receive(
        &mut self,
        shared: &Shared,
        stats: &mut ThreadResult,
        deadline: Option<Instant>,
    ) -> Result<(), String> {
        loop {
            if self.filled == self.input.len() {
                self.make_room();
            }
            let free = self.input.len() - self.filled;
            match self.stream.read(&mut self.input[self.filled..]) {
                Ok(0) => return Err(self.error("server closed the connection")),
                Ok(n) => {
                    self.filled += n;
                    let now = Instant::now();
                    self.handle_replies(shared, stats, now)?;
                    self.refill(shared, now, deadline);
                    if n < free {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(format!("read: {e}"))),
            }
        }
    }

    fn handle_replies(
        &mut self,
        shared: &Shared,
        stats: &mut ThreadResult,
        now: Instant,
    ) -> Result<(), String> {
        while self.in_flight > 0 {
            let slot = &self.slots[self.oldest];
            let reply = shared
                .protocol
                .parse_reply(
                    shared.dataset,
                    &slot.request,
                    shared.config.verify,
                    &self.input[self.parsed..self.filled],
                )
                .map_err(|e| self.error(e))?;
            let Some(reply) = reply else {
                break;
            };
            self.parsed += reply.consumed;
            let nanos = now.saturating_duration_since(slot.sent).as_nanos();
            stats
                .latency
                .record(u64::try_from(nanos).unwrap_or(u64::MAX));
            let counters = &mut stats.counters;
            counters.requests += 1;
            counters.keys += slot.request.keys.len() as u64;
            match slot.request.kind {
                RequestKind::Get => counters.gets += 1,
                RequestKind::Set => counters.sets += 1,
            }
            counters.hits += u64::from(reply.hits);
            counters.misses += u64::from(reply.misses);
            self.oldest = (self.oldest + 1) % self.slots.len();
            self.in_flight -= 1;
        }
        if self.parsed < self.filled && self.in_flight == 0 {
            return Err(self.error(format!(
                "unsolicited bytes from the server: `{}`",
                printable(&self.input[self.parsed..self.filled])
            )));
        }
        if self.parsed == self.filled {
            self.parsed = 0;
            self.filled = 0;
        }
        Ok(())
    }
}

/// Connects connection `index` of the run.
fn connect(shared: &Shared, index: usize) -> Result<Connection, String> {
    let config = shared.config;
    let stream = std::net::TcpStream::connect(config.server)
        .map_err(|e| format!("connection {index}: connect to {}: {e}", config.server))?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_nonblocking(true))
        .map_err(|e| format!("connection {index}: socket options: {e}"))?;
    let conns = config.conns.max(1);
    let (source, quota) = match shared.workload {
        Workload::Fill => (
            RequestSource::fill(shared.dataset.count(), index, conns),
            None,
        ),
        Workload::Mixed { mix, seed } => {
            let chooser = shared
                .chooser
                .clone()
                .expect("a mixed run has a key chooser");
            let quota = match config.stop {
                Stop::Requests(total) => {
                    let share =
                        total / conns as u64 + u64::from((index as u64) < total % conns as u64);
                    Some(share)
                }
                Stop::After(_) | Stop::Exhausted => None,
            };
            (RequestSource::mixed(mix, chooser, *seed, index), quota)
        }
    };
    let max_keys = match shared.workload {
        Workload::Mixed { mix, .. } => mix.multiget.max(1),
        Workload::Fill => 1,
    };
    let now = Instant::now();
    Ok(Connection {
        index,
        stream: TcpStream::from_std(stream),
        source,
        quota,
        output: Vec::with_capacity(INPUT_BUFFER),
        written: 0,
        input: vec![0; INPUT_BUFFER],
        parsed: 0,
        filled: 0,
        slots: (0..config.pipeline.max(1))
            .map(|_| Slot {
                request: Request::new(max_keys),
                sent: now,
            })
            .collect(),
        oldest: 0,
        in_flight: 0,
        exhausted: false,
    })
}

/// One generator thread: connects `range` of the run's connections, waits for the start,
/// and keeps them busy until the run is over.
fn drive(
    shared: &Shared,
    range: std::ops::Range<usize>,
    start: &Barrier,
) -> Result<ThreadResult, String> {
    let setup = || -> Result<(Poll, Vec<Connection>), String> {
        let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        let mut connections = Vec::with_capacity(range.len());
        for index in range.clone() {
            let mut connection = connect(shared, index)?;
            poll.registry()
                .register(
                    &mut connection.stream,
                    Token(connections.len()),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| format!("connection {index}: register: {e}"))?;
            connections.push(connection);
        }
        Ok((poll, connections))
    };
    // Every thread reaches the barrier, failed or not, or the others would wait forever.
    let setup = setup();
    start.wait();
    let (mut poll, mut connections) = setup?;

    let now = Instant::now();
    let deadline = match shared.config.stop {
        Stop::After(duration) => Some(now + duration),
        Stop::Requests(_) | Stop::Exhausted => None,
    };
    let mut stats = ThreadResult {
        counters: Counters::default(),
        latency: Histogram::new(),
    };
    let mut active = 0;
    let mut done = vec![false; connections.len()];
    for (connection, done) in connections.iter_mut().zip(done.iter_mut()) {
        connection.refill(shared, now, deadline);
        connection.flush()?;
        if connection.in_flight == 0 {
            *done = true;
        } else {
            active += 1;
        }
    }

    let mut events = Events::with_capacity(1024);
    let mut last_progress = (now, 0);
    while active > 0 {
        if shared.abort.load(Ordering::Relaxed) {
            // Another thread failed and reports why; what this one measured is moot.
            return Ok(stats);
        }
        poll.poll(&mut events, Some(TICK)).or_else(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(format!("poll: {e}"))
            }
        })?;
        for event in events.iter() {
            let token = event.token().0;
            let connection = &mut connections[token];
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                connection.receive(shared, &mut stats, deadline)?;
            }
            connection.flush()?;
            if connection.in_flight == 0 && !done[token] {
                done[token] = true;
                active -= 1;
            }
        }
        let now = Instant::now();
        if stats.counters.requests != last_progress.1 {
            last_progress = (now, stats.counters.requests);
        } else if now.duration_since(last_progress.0) > shared.config.reply_timeout {
            let waiting: usize = connections.iter().map(|c| c.in_flight).sum();
            return Err(format!(
                "no reply for {:?} with {waiting} requests in flight",
                shared.config.reply_timeout
            ));
        }
    }
    Ok(stats)
}
