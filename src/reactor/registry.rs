//! The table of open connections, for `stats conns`.
//!
//! It is touched on connect and disconnect only; a connection's last-activity
//! time is a shared atomic the owning worker updates without the lock. The
//! UDP sockets are in it too, one entry per worker that reads them, since
//! memcached lists them as connections of their own.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How a connection reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection.
    Tcp,
    /// A UDP socket.
    Udp,
    /// A unix-domain stream connection.
    Unix,
}

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An IP address and port.
    Inet(SocketAddr),
    /// A unix socket's path; `None` for the unnamed socket a client
    /// connects from.
    Unix(Option<Arc<Path>>),
}

/// One open connection as `stats conns` shows it.
#[derive(Debug, Clone)]
pub struct ConnEntry {
    /// The connection's number, unique for the registry's life.
    pub id: u64,
    /// TCP, UDP or unix socket.
    pub transport: Transport,
    /// The client; for a UDP socket, the socket itself (it has no one peer).
    pub peer: Endpoint,
    /// The listening socket the connection came through.
    pub local: Endpoint,
    /// Seconds since the registry was created, at the last request.
    pub last_active: Arc<AtomicU64>,
}

/// Every open connection and UDP socket, shared by the workers.
#[derive(Debug)]
pub struct ConnRegistry {
    started: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, ConnEntry>>,
}

impl Default for ConnRegistry {
    fn default() -> Self {
        ConnRegistry {
            started: Instant::now(),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
        }
    }
}

impl ConnRegistry {
    /// Seconds since the registry started, the unit of `last_active`.
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Adds a connection under a fresh id, active now; the caller keeps the
    /// returned entry to update its `last_active`.
    pub fn register(&self, transport: Transport, peer: Endpoint, local: Endpoint) -> ConnEntry {
        let entry = ConnEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            transport,
            peer,
            local,
            last_active: Arc::new(AtomicU64::new(self.now())),
        };
        self.conns.lock().insert(entry.id, entry.clone());
        entry
    }

    /// Removes connection `id`, once it has closed.
    pub fn unregister(&self, id: u64) {
        self.conns.lock().remove(&id);
    }

    /// A copy of the table, ordered by connection id.
    pub fn snapshot(&self) -> Vec<ConnEntry> {
        let mut conns: Vec<ConnEntry> = self.conns.lock().values().cloned().collect();
        conns.sort_by_key(|c| c.id);
        conns
    }
}
