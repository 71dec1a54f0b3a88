//! The acceptor thread: takes new connections and deals them to workers.

use super::registry::{ConnEntry, ConnRegistry, Endpoint};
use super::socket::{Listener, Stream};
use super::ReactorStats;
use crossbeam_channel::Sender;
use mio::{Events, Poll, Token, Waker};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// memcached's answer to a connection over the `-c` limit.
const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";
pub(super) const WAKER: Token = Token(usize::MAX);
/// How long to wait before accepting again after running out of file
/// descriptors (the pending connections wait in the listen backlog).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A connection on its way to a worker.
pub(super) struct Accepted {
    pub stream: Stream,
    pub entry: ConnEntry,
}

/// How the acceptor reaches one worker.
pub(super) struct WorkerHandle {
    pub sender: Sender<Accepted>,
    pub waker: Arc<Waker>,
}

pub(super) struct Acceptor {
    poll: Poll,
    listeners: Vec<Listener>,
    workers: Vec<WorkerHandle>,
    next_worker: usize,
    /// Entries of the connection count, UDP sockets included, above which a
    /// client is refused.
    max_connections: usize,
    stats: Arc<ReactorStats>,
    registry: Arc<ConnRegistry>,
    shutdown: Arc<AtomicBool>,
}

impl Acceptor {
    pub fn new(
        poll: Poll,
        mut listeners: Vec<Listener>,
        workers: Vec<WorkerHandle>,
        max_connections: usize,
        stats: Arc<ReactorStats>,
        registry: Arc<ConnRegistry>,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<Acceptor> {
        for (i, listener) in listeners.iter_mut().enumerate() {
            listener.register(poll.registry(), Token(i))?;
        }
        Ok(Acceptor {
            poll,
            listeners,
            workers,
            next_worker: 0,
            max_connections,
            stats,
            registry,
            shutdown,
        })
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut retry = false;
        loop {
            let timeout = retry.then_some(ACCEPT_RETRY);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("acceptor poll failed: {e}");
                break;
            }
            if self.shutdown.load(Ordering::SeqCst) {
                break;
            }
            if retry || !events.is_empty() {
                // Edge-triggered: drain every listener on any wake-up.
                retry = false;
                for i in 0..self.listeners.len() {
                    retry |= self.accept_all(i);
                }
            }
        }
        for worker in &self.workers {
            let _ = worker.waker.wake();
        }
    }

    /// Accepts until the listener has no more; true if it must be retried
    /// later because the process ran out of descriptors.
    fn accept_all(&mut self, listener: usize) -> bool {
        loop {
            match self.listeners[listener].accept() {
                Ok((stream, peer)) => self.dispatch(stream, peer, listener),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    log::warn!("accept failed: {e}; retrying shortly");
                    return true;
                }
            }
        }
    }

    fn dispatch(&mut self, mut stream: Stream, peer: Endpoint, listener: usize) {
        let current = self.stats.curr_connections.load(Ordering::Relaxed);
        if current >= self.max_connections as u64 {
            self.stats
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            // Best effort, as memcached: the socket is fresh, the line fits.
            let _ = stream.write(TOO_MANY_CONNECTIONS);
            return;
        }
        let listener = &self.listeners[listener];
        let local = listener.local().unwrap_or_else(|_| peer.clone());
        let entry = self.registry.register(listener.transport(), peer, local);
        self.stats.curr_connections.fetch_add(1, Ordering::Relaxed);
        self.stats.total_connections.fetch_add(1, Ordering::Relaxed);
        let worker = &self.workers[self.next_worker];
        self.next_worker = (self.next_worker + 1) % self.workers.len();
        let id = entry.id;
        if worker.sender.send(Accepted { stream, entry }).is_err() {
            // The worker is gone (shutting down): drop the connection.
            self.registry.unregister(id);
            self.stats.curr_connections.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let _ = worker.waker.wake();
    }
}
