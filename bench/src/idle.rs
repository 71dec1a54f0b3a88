//! Idle connections: how many a server keeps open, held still long enough to measure what
//! each one costs it.
//!
//! A cache server with tens of thousands of clients spends memory on every connection
//! whether it is busy or not: buffers, a slot in its tables, kernel socket state. This mode
//! makes that cost measurable from outside. It opens the connections, holds
//! them without sending a byte while a script reads the server's resident memory, and
//! finally checks that the server still serves every one of them. The memory sampled
//! before and while holding, divided by the connections kept, is the cost per idle
//! connection.
//!
//! # Opening many connections quickly
//!
//! All connections live on one thread and one `mio` poll, and connects are non-blocking.
//! A server accepts at its own pace, though, and a client that connects faster fills the
//! server's listen queue; the kernel then drops the SYNs that find it full, and a dropped
//! connect sits a whole second before its SYN goes out again. So connects are paced
//! (`Pacing`): a window of at most [`CONNECT_WINDOW`] in progress, and a connect that
//! takes several times longer than connects have been taking is taken to be dropped,
//! abandoned and tried again after a short pause in which no connect starts and the server
//! drains its queue. A connect the server turns away (`ECONNREFUSED`, also what a server not
//! yet listening answers) or the kernel cannot start for now (`EAGAIN`, no free local port)
//! is retried the same way. The connects give up when none has completed for `timeout`: a
//! limit per connection would, with only a window of them in progress at once, let a
//! server that accepts no more keep the client waiting for the timeout many times over.
//!
//! One source address has only as many ports as the ephemeral port range (28,232 on a
//! default Linux), and every connection to one server needs its own. Towards a loopback
//! server the connections are therefore spread over several source addresses, 127.0.0.1,
//! 127.0.0.2, ..., [`CONNS_PER_SOURCE`] to each; any 127.x.y.z address is the local host on
//! Linux.
//!
//! # Checking the connections
//!
//! Holding a connection is not the same as the server keeping it: a server over its
//! connection limit may accept and close at once, after a last `ERROR Too many open
//! connections` line, as memcached does; or it may close idle connections later. So after
//! the hold every connection sends `version` and must read back one `VERSION ...` line.
//! Anything else, an `ERROR` line, end of stream, a reset, counts as *refused*. When no
//! answer at all has come for `timeout`, the connections still waiting count as *timed
//! out*. The checks, too, go out in a sliding window
//! ([`CHECK_WINDOW`]) rather than all at once, so the server answers a steady stream of
//! requests instead of one burst the size of the whole run.
//!
//! A connection the server closed may have said so during the connects; its readiness
//! event was taken then. Each check therefore reads right after writing, and only then
//! waits for readiness, so a reply or an end of stream that arrived long ago is not missed.

use crate::report::{json_object, Value};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use socket2::{Domain, Socket, Type};
use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Most connects in progress at once.
pub const CONNECT_WINDOW: usize = 256;
/// Fewest connects in progress at once, however often connects stall.
const MIN_CONNECT_WINDOW: usize = 8;
/// A connect still in progress after this long, before any connect has completed, is
/// abandoned and tried again: the kernel would send its SYN again only after a second.
const FIRST_STALL: Duration = Duration::from_secs(1);
/// Shortest time after which a connect counts as stalled, however fast the others were.
const STALL_FLOOR: Duration = Duration::from_millis(5);
/// Connections waiting for their `VERSION` line at once.
pub const CHECK_WINDOW: usize = 1024;
/// Connections to one server from one loopback source address: well below the smallest
/// usual ephemeral port range (16,384 ports on macOS and the BSDs), so that picking a free
/// port never turns into a long search.
pub const CONNS_PER_SOURCE: usize = 12_000;
/// Pause before a turned-away or stalled connect is tried again, and before any new connect
/// starts after a stall.
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// Longest wait in the poll, so that timeouts are noticed when nothing else happens.
const TICK: Duration = Duration::from_millis(50);
/// The check request; every memcached-compatible server answers it with one line.
const VERSION_REQUEST: &[u8] = b"version\r\n";
/// The part of a reply line that is kept for classifying it.
const LINE_MAX: usize = 64;

/// What the connections are opened to, and how long to wait for each.
#[derive(Clone, Debug)]
pub struct IdleConfig {
    pub server: SocketAddr,
    pub conns: usize,
    /// How long the connects may go without one completing, and the check without one
    /// reply, before the rest are given up.
    pub timeout: Duration,
}

/// How the server dealt with the connections.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdleReport {
    pub server: String,
    pub requested: usize,
    /// Connects that completed.
    pub opened: usize,
    /// Opened connections that answered the check with a `VERSION` line.
    pub kept: usize,
    /// Connections the server turned away: connect refused when the connects gave up, or
    /// closed, reset or answered with anything but `VERSION` at the check.
    pub refused: usize,
    /// Connects that had not completed, and checks that had no answer, when the connects or
    /// the check gave up.
    pub timed_out: usize,
    pub connect_secs: f64,
    pub hold_secs: f64,
    pub check_secs: f64,
    /// The first reply line that was not a `VERSION` line, to show why connections were
    /// refused.
    pub first_refusal: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not connecting now: not yet started, or waiting to retry.
    Waiting,
    Connecting,
    Open,
    /// `version` sent (or partly), reply not yet complete.
    Checking,
    Kept,
    Refused,
    TimedOut,
}

struct Connection {
    stream: Option<TcpStream>,
    state: State,
    /// The last connect attempt was refused (or reset) rather than left unanswered.
    refused: bool,
    /// When the connect in progress was tried, or the check was sent.
    waiting_since: Option<Instant>,
    /// Bytes of the check request written so far.
    sent: usize,
    /// The reply line read so far; empty (and unallocated) for all but a split reply.
    line: Vec<u8>,
}

impl Connection {
    /// When the connect in progress counts as stalled.
    fn stalls_at(&self, stall: Duration) -> Instant {
        self.waiting_since.expect("a connect has a start") + stall
    }
}

/// Connections after the connect phase, held open until this value is dropped.
pub struct OpenConnections {
    config: IdleConfig,
    poll: Poll,
    connections: Vec<Connection>,
    report: IdleReport,
}

/// Opens `config.conns` connections and returns them once every connect has completed,
/// been refused or timed out. Fails only on errors that are not the server's doing (no
/// descriptors, no poll, an unreachable network).
pub fn open(config: &IdleConfig) -> Result<OpenConnections, String> {
    let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let connections = (0..config.conns)
        .map(|_| Connection {
            stream: None,
            state: State::Waiting,
            refused: false,
            waiting_since: None,
            sent: 0,
            line: Vec::new(),
        })
        .collect();
    let mut open = OpenConnections {
        config: config.clone(),
        poll,
        connections,
        report: IdleReport {
            server: config.server.to_string(),
            requested: config.conns,
            ..IdleReport::default()
        },
    };
    let start = Instant::now();
    open.connect_all()?;
    open.report.connect_secs = start.elapsed().as_secs_f64();
    Ok(open)
}

/// The source address of connection `index` to `server`: the system's choice, except for
/// a loopback IPv4 server once the first address has its share of connections.
fn source_address(server: SocketAddr, index: usize) -> Option<IpAddr> {
    let block = index / CONNS_PER_SOURCE;
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() && block > 0 => {
            let host = u32::try_from(block + 1).ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(
                0x7f00_0000 | (host & 0x00ff_ffff),
            )))
        }
        _ => None,
    }
}

/// Errors after which a connect is worth trying again.
fn retriable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::WouldBlock
            | ErrorKind::AddrNotAvailable
            | ErrorKind::AddrInUse
            | ErrorKind::TimedOut
    )
}

/// True for the error a non-blocking connect returns while the handshake goes on.
fn in_progress(error: &io::Error) -> bool {
    #[cfg(unix)]
    if error.raw_os_error() == Some(libc::EINPROGRESS) {
        return true;
    }
    error.kind() == ErrorKind::WouldBlock
}

/// Starts a non-blocking connect and registers the socket. The outer error is this side's
/// (no descriptor left, no registration), the inner one the connect's own.
fn start_connect(
    registry: &Registry,
    server: SocketAddr,
    index: usize,
) -> io::Result<Result<TcpStream, io::Error>> {
    let socket = Socket::new(Domain::for_address(server), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    if let Some(source) = source_address(server, index) {
        bind_address_only(&socket)?;
        if let Err(e) = socket.bind(&SocketAddr::new(source, 0).into()) {
            return Ok(Err(e));
        }
    }
    match socket.connect(&server.into()) {
        Ok(()) => {}
        Err(e) if in_progress(&e) => {}
        Err(e) => return Ok(Err(e)),
    }
    let mut stream = TcpStream::from_std(socket.into());
    registry.register(
        &mut stream,
        Token(index),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    Ok(Ok(stream))
}

/// Has a later `bind` fix only the source address and leave the port to the connect.
///
/// A port chosen by `bind` is one no other socket has, and the kernel keeps it from every
/// connect, from any address, while the socket lingers in TIME_WAIT after it closes; a
/// few runs in a row would exhaust the port range. A port chosen by `connect` needs only to
/// differ within its address pair.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn bind_address_only(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let enable: libc::c_int = 1;
    // SAFETY: setsockopt reads one int, of the size given, from a live local.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&enable as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere `bind` picks the port; fine for the few connects most runs make.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn bind_address_only(_socket: &Socket) -> io::Result<()> {
    Ok(())
}

fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Duration) -> Result<(), String> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(format!("poll: {e}")),
    }
}

/// How fast connects start.
///
/// A server accepts connections at its own pace, and a client that connects faster fills
/// the listen queue; the kernel then drops the SYNs that find it full, and a dropped
/// connect waits a second before its SYN is sent again. The client cannot see the queue,
/// but it sees the stall: a connect that takes several times longer than connects have
/// been taking. A stalled connect is abandoned and tried again after a pause in which no
/// connect starts, so the server can drain its queue, and the window of connects in
/// progress halves; every completed connect widens it by one again.
struct Pacing {
    window: usize,
    /// No connect starts before this.
    paused_until: Instant,
    /// Smoothed time from starting a connect to seeing it complete.
    smoothed: Option<Duration>,
}

impl Pacing {
    fn new(now: Instant) -> Pacing {
        Pacing {
            window: CONNECT_WINDOW,
            paused_until: now,
            smoothed: None,
        }
    }

    fn stall_after(&self) -> Duration {
        self.smoothed
            .map_or(FIRST_STALL, |smoothed| (smoothed * 4).max(STALL_FLOOR))
            .min(FIRST_STALL)
    }

    fn completed(&mut self, took: Duration) {
        self.smoothed = Some(match self.smoothed {
            None => took,
            Some(smoothed) => (smoothed * 7 + took) / 8,
        });
        self.window = (self.window + 1).min(CONNECT_WINDOW);
    }

    /// Connects stalled. The stalls of one burst show over several polls; only the first
    /// after a pause narrows the window.
    fn stalled(&mut self, now: Instant) {
        if now >= self.paused_until {
            self.window = (self.window / 2).max(MIN_CONNECT_WINDOW);
        }
        self.paused_until = now + RETRY_PAUSE;
    }
}

impl OpenConnections {
    /// Connections currently open (as far as this side knows: the server may have closed
    /// some already, which only the check finds out).
    pub fn opened(&self) -> usize {
        self.report.opened
    }

    fn connect_all(&mut self) -> Result<(), String> {
        let total = self.connections.len();
        let mut events = Events::with_capacity(1024);
        let mut retries: VecDeque<(Instant, usize)> = VecDeque::new();
        let mut in_progress: Vec<usize> = Vec::with_capacity(CONNECT_WINDOW);
        let mut pacing = Pacing::new(Instant::now());
        let mut last_progress = Instant::now();
        let mut next = 0;
        while self.report.opened < total {
            let now = Instant::now();
            while in_progress.len() < pacing.window && now >= pacing.paused_until {
                let index = match retries.front() {
                    Some(&(due, index)) if due <= now => {
                        retries.pop_front();
                        index
                    }
                    _ if next < total => {
                        next += 1;
                        next - 1
                    }
                    _ => break,
                };
                self.connections[index].waiting_since = Some(now);
                let started = start_connect(self.poll.registry(), self.config.server, index)
                    .map_err(|e| format!("connection {index}: socket: {e}"))?;
                match started {
                    Ok(stream) => {
                        let connection = &mut self.connections[index];
                        connection.stream = Some(stream);
                        connection.state = State::Connecting;
                        in_progress.push(index);
                    }
                    Err(error) => self.connect_failed(index, &error, now, &mut retries)?,
                }
            }
            // Wake for the next retry, the end of a pause or the next connect to stall.
            let stall = pacing.stall_after();
            let next_stall = in_progress
                .iter()
                .map(|&index| self.connections[index].stalls_at(stall))
                .min();
            let wait = [
                retries.front().map(|&(due, _)| due),
                Some(pacing.paused_until),
                next_stall,
            ]
            .into_iter()
            .flatten()
            .filter(|&due| due > now)
            .map(|due| due - now)
            .fold(TICK, Duration::min);
            poll_once(&mut self.poll, &mut events, wait)?;
            let now = Instant::now();
            for event in events.iter() {
                let index = event.token().0;
                let connection = &self.connections[index];
                if connection.state != State::Connecting {
                    continue;
                }
                let stream = connection
                    .stream
                    .as_ref()
                    .expect("a connecting connection has a socket");
                let outcome = match stream.take_error() {
                    Ok(Some(error)) | Err(error) => Err(error),
                    Ok(None) => match stream.peer_addr() {
                        Ok(_) => Ok(true),
                        Err(error) if error.kind() == ErrorKind::NotConnected => Ok(false),
                        Err(error) => Err(error),
                    },
                };
                match outcome {
                    Ok(true) => {
                        let began = connection.waiting_since.expect("a connect has a start");
                        pacing.completed(now.duration_since(began));
                        self.connections[index].state = State::Open;
                        self.report.opened += 1;
                        last_progress = now;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        self.close(index);
                        self.connect_failed(index, &error, now, &mut retries)?;
                    }
                }
            }
            // Connects that stalled are tried again; a completion whose event has not been
            // seen yet is not mistaken for a stall.
            let mut overdue = Vec::new();
            in_progress.retain(|&index| {
                let connection = &self.connections[index];
                if connection.state != State::Connecting {
                    return false;
                }
                if now < connection.stalls_at(stall) {
                    return true;
                }
                overdue.push(index);
                false
            });
            let mut stalls = false;
            for index in overdue {
                let connection = &mut self.connections[index];
                let connected = connection
                    .stream
                    .as_ref()
                    .is_some_and(|stream| stream.peer_addr().is_ok());
                if connected {
                    connection.state = State::Open;
                    self.report.opened += 1;
                    last_progress = now;
                    continue;
                }
                if !stalls {
                    pacing.stalled(now);
                    stalls = true;
                }
                connection.refused = false;
                self.close(index);
                self.connections[index].state = State::Waiting;
                retries.push_back((pacing.paused_until, index));
            }
            if now.duration_since(last_progress) >= self.config.timeout {
                self.give_up_connects();
                break;
            }
        }
        Ok(())
    }

    /// Deals with a connect that failed: schedules it to be tried again, unless the error
    /// is not one a retry can mend.
    fn connect_failed(
        &mut self,
        index: usize,
        error: &io::Error,
        now: Instant,
        retries: &mut VecDeque<(Instant, usize)>,
    ) -> Result<(), String> {
        if !retriable(error) {
            return Err(format!(
                "connection {index}: connect to {}: {error}",
                self.config.server
            ));
        }
        let connection = &mut self.connections[index];
        connection.stream = None;
        connection.state = State::Waiting;
        connection.refused = matches!(
            error.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
        );
        retries.push_back((now + RETRY_PAUSE, index));
        Ok(())
    }

    /// Settles every connection not yet open: refused if its last connect was refused,
    /// timed out otherwise (stalled, in progress, or never tried).
    fn give_up_connects(&mut self) {
        for index in 0..self.connections.len() {
            let connection = &self.connections[index];
            if !matches!(connection.state, State::Waiting | State::Connecting) {
                continue;
            }
            let refused = connection.refused;
            self.close(index);
            if refused {
                self.connections[index].state = State::Refused;
                self.report.refused += 1;
            } else {
                self.connections[index].state = State::TimedOut;
                self.report.timed_out += 1;
            }
        }
    }

    /// Closes connection `index`'s socket, if it has one.
    fn close(&mut self, index: usize) {
        if let Some(mut stream) = self.connections[index].stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
    }

    /// Sends `version` on every open connection and reads the answers; returns the report,
    /// `hold` being how long the connections were held before. The connections stay
    /// open until the check is over, so that the last ones checked see the same server as
    /// the first.
    pub fn check(mut self, hold: Duration) -> Result<IdleReport, String> {
        self.report.hold_secs = hold.as_secs_f64();
        let start = Instant::now();
        let mut events = Events::with_capacity(1024);
        let mut checking: Vec<usize> = Vec::with_capacity(CHECK_WINDOW);
        let mut next = 0;
        let mut unsettled = self.report.opened;
        let mut last_progress = start;
        while unsettled > 0 {
            let now = Instant::now();
            while checking.len() < CHECK_WINDOW && next < self.connections.len() {
                let index = next;
                next += 1;
                if self.connections[index].state != State::Open {
                    continue;
                }
                self.connections[index].state = State::Checking;
                self.connections[index].waiting_since = Some(now);
                checking.push(index);
                self.advance_check(index);
            }
            poll_once(&mut self.poll, &mut events, TICK)?;
            for event in events.iter() {
                let index = event.token().0;
                if self.connections[index].state == State::Checking {
                    self.advance_check(index);
                }
            }
            let now = Instant::now();
            let report = &mut self.report;
            checking.retain(|&index| {
                match self.connections[index].state {
                    State::Checking => return true,
                    State::Kept => report.kept += 1,
                    _ => report.refused += 1,
                }
                unsettled -= 1;
                last_progress = now;
                false
            });
            if now.duration_since(last_progress) >= self.config.timeout {
                // The server answers no more: whatever has not answered yet never will.
                for connection in &mut self.connections {
                    if matches!(connection.state, State::Open | State::Checking) {
                        connection.state = State::TimedOut;
                        self.report.timed_out += 1;
                    }
                }
                break;
            }
        }
        self.report.check_secs = start.elapsed().as_secs_f64();
        Ok(self.report)
    }

    /// Writes what is left of the check request, then reads what has arrived, and settles
    /// the connection as kept or refused once a whole line is in (or the stream ended).
    fn advance_check(&mut self, index: usize) {
        let connection = &mut self.connections[index];
        let stream = connection
            .stream
            .as_mut()
            .expect("an open connection has a socket");
        while connection.sent < VERSION_REQUEST.len() {
            match stream.write(&VERSION_REQUEST[connection.sent..]) {
                Ok(0) => break,
                Ok(n) => connection.sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A reply or an end of stream may still be waiting to be read.
                Err(_) => break,
            }
        }
        let mut buffer = [0u8; 256];
        let outcome = loop {
            match stream.read(&mut buffer) {
                Ok(0) => break Some(None),
                Ok(n) => {
                    let received = &buffer[..n];
                    let end = received.iter().position(|&b| b == b'\n');
                    let wanted = end.map_or(n, |end| end + 1);
                    let room = LINE_MAX.saturating_sub(connection.line.len());
                    connection
                        .line
                        .extend_from_slice(&received[..wanted.min(room)]);
                    if end.is_some() || connection.line.len() >= LINE_MAX {
                        break Some(Some(std::mem::take(&mut connection.line)));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break None,
                Err(_) => break Some(None),
            }
        };
        match outcome {
            None => {}
            Some(Some(line)) if line.starts_with(b"VERSION ") => connection.state = State::Kept,
            Some(line) => {
                connection.state = State::Refused;
                if self.report.first_refusal.is_none() {
                    self.report.first_refusal = Some(match line {
                        Some(line) => String::from_utf8_lossy(&line).trim_end().to_string(),
                        None => "connection closed".to_string(),
                    });
                }
            }
        }
    }
}

impl IdleReport {
    /// The one-line terminal rendering.
    pub fn human(&self) -> String {
        let mut text = format!(
            "idle connections: opened {} of {}, kept {}, refused {}, connect time {:.2} s, \
             check time {:.2} s",
            self.opened,
            self.requested,
            self.kept,
            self.refused,
            self.connect_secs,
            self.check_secs
        );
        if self.timed_out > 0 {
            text.push_str(&format!(", timed out {}", self.timed_out));
        }
        text
    }

    /// One flat JSON object.
    pub fn json(&self) -> String {
        let count = |n: usize| Value::Integer(n as u64);
        json_object(&[
            ("mode", Value::Text("idle".to_string())),
            ("server", Value::Text(self.server.clone())),
            ("requested", count(self.requested)),
            ("opened", count(self.opened)),
            ("kept", count(self.kept)),
            ("refused", count(self.refused)),
            ("timed_out", count(self.timed_out)),
            ("connect_secs", Value::Real(Some(self.connect_secs))),
            ("hold_secs", Value::Real(Some(self.hold_secs))),
            ("check_secs", Value::Real(Some(self.check_secs))),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn loopback_connections_spread_over_source_addresses() {
        let loopback: SocketAddr = "127.0.0.1:11211".parse().unwrap();
        assert_eq!(source_address(loopback, 0), None);
        assert_eq!(source_address(loopback, CONNS_PER_SOURCE - 1), None);
        assert_eq!(
            source_address(loopback, CONNS_PER_SOURCE),
            Some("127.0.0.2".parse().unwrap())
        );
        assert_eq!(
            source_address(loopback, 4 * CONNS_PER_SOURCE + 5),
            Some("127.0.0.5".parse().unwrap())
        );
        let remote: SocketAddr = "192.0.2.1:11211".parse().unwrap();
        assert_eq!(source_address(remote, 4 * CONNS_PER_SOURCE), None);
    }

    /// A listener that answers the check on its first `answer` connections with a
    /// `VERSION` line and on the others with memcached's refusal, then closes them.
    fn scripted_server(answer: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for (number, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                if number < answer {
                    held.push(std::thread::spawn(move || {
                        let mut request = [0u8; 16];
                        let mut read = 0;
                        while !request[..read].ends_with(b"\r\n") {
                            match stream.read(&mut request[read..]) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => read += n,
                            }
                        }
                        // Split, to exercise a reply line that arrives in two reads.
                        let _ = stream.write_all(b"VERS");
                        std::thread::sleep(Duration::from_millis(20));
                        let _ = stream.write_all(b"ION 1.0\r\n");
                        std::thread::sleep(Duration::from_secs(5));
                    }));
                } else {
                    let _ = stream.write_all(b"ERROR Too many open connections\r\n");
                }
            }
        });
        address
    }

    #[test]
    fn connections_are_opened_held_and_checked() {
        let server = scripted_server(7);
        let config = IdleConfig {
            server,
            conns: 10,
            timeout: Duration::from_secs(5),
        };
        let open = open(&config).expect("connects");
        assert_eq!(open.opened(), 10);
        let report = open.check(Duration::ZERO).expect("check");
        assert_eq!(
            (report.opened, report.kept, report.refused, report.timed_out),
            (10, 7, 3, 0),
            "{report:?}"
        );
        assert_eq!(
            report.first_refusal.as_deref(),
            Some("ERROR Too many open connections")
        );
    }

    #[test]
    fn a_server_that_is_not_there_refuses_every_connect_until_the_timeout() {
        let server = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let config = IdleConfig {
            server,
            conns: 3,
            timeout: Duration::from_millis(300),
        };
        let start = Instant::now();
        let report = open(&config)
            .expect("connects")
            .check(Duration::ZERO)
            .expect("check");
        assert!(start.elapsed() >= Duration::from_millis(250));
        assert_eq!(
            (report.opened, report.kept, report.refused, report.timed_out),
            (0, 0, 3, 0)
        );
    }

    #[test]
    fn pacing_narrows_once_per_stall_and_widens_per_completion() {
        let start = Instant::now();
        let mut pacing = Pacing::new(start);
        assert_eq!(pacing.stall_after(), FIRST_STALL);
        pacing.completed(Duration::from_micros(100));
        assert_eq!(pacing.stall_after(), STALL_FLOOR);
        pacing.completed(Duration::from_millis(900));
        // Smoothed: (100 us * 7 + 900 ms) / 8, four times over, below the first stall.
        assert_eq!(pacing.stall_after(), Duration::from_micros(450_350));
        pacing.stalled(start);
        assert_eq!(pacing.window, CONNECT_WINDOW / 2);
        assert_eq!(pacing.paused_until, start + RETRY_PAUSE);
        // More stalls of the same burst, seen during the pause, do not narrow it again.
        pacing.stalled(start + RETRY_PAUSE / 2);
        assert_eq!(pacing.window, CONNECT_WINDOW / 2);
        pacing.stalled(start + RETRY_PAUSE * 2);
        assert_eq!(pacing.window, CONNECT_WINDOW / 4);
        pacing.completed(Duration::from_micros(100));
        assert_eq!(pacing.window, CONNECT_WINDOW / 4 + 1);
        for _ in 0..20 {
            pacing.stalled(start + RETRY_PAUSE * 100);
            pacing.paused_until = start;
        }
        assert_eq!(pacing.window, MIN_CONNECT_WINDOW);
    }

    #[test]
    fn connects_that_a_full_listen_queue_drops_are_tried_again_at_once() {
        // A listen queue of one or two that is emptied one connection a millisecond:
        // most SYNs find it full and are dropped by the kernel.
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).expect("bind");
        socket.listen(1).expect("listen");
        let listener: TcpListener = socket.into();
        let server = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept() {
                held.push(stream);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let config = IdleConfig {
            server,
            conns: 60,
            timeout: Duration::from_secs(10),
        };
        let start = Instant::now();
        let open = open(&config).expect("connects");
        assert_eq!(open.opened(), 60);
        assert_eq!(open.report.timed_out, 0);
        // Waiting out the kernel's own SYN retransmissions (1 s, then 3 s, ...) would take
        // seconds; retrying stalled connects takes a fraction of one.
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_server_that_accepts_no_more_is_given_up_after_the_timeout() {
        // A listen queue of one or two that is never emptied: its connections complete on
        // the client's side and are never answered; all others stall.
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).expect("bind");
        socket.listen(1).expect("listen");
        let server = socket
            .local_addr()
            .expect("address")
            .as_socket()
            .expect("inet");
        let config = IdleConfig {
            server,
            conns: 600,
            timeout: Duration::from_millis(300),
        };
        let start = Instant::now();
        let open = open(&config).expect("connects");
        let opened = open.opened();
        assert!((1..=2).contains(&opened), "{opened} in a queue of 1");
        let report = open.check(Duration::ZERO).expect("check");
        // Well short of 600 connects waiting 300 ms each, a window at a time.
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            (report.kept, report.refused, report.timed_out),
            (0, 0, 600),
            "{report:?}"
        );
        drop(socket);
    }

    #[test]
    fn the_reports_carry_every_figure() {
        let report = IdleReport {
            server: "127.0.0.1:1".to_string(),
            requested: 300,
            opened: 300,
            kept: 100,
            refused: 200,
            timed_out: 0,
            connect_secs: 0.25,
            hold_secs: 1.0,
            check_secs: 0.125,
            first_refusal: None,
        };
        assert_eq!(
            report.human(),
            "idle connections: opened 300 of 300, kept 100, refused 200, connect time 0.25 s, \
             check time 0.12 s"
        );
        assert_eq!(
            report.json(),
            "{\"mode\": \"idle\", \"server\": \"127.0.0.1:1\", \"requested\": 300, \
             \"opened\": 300, \"kept\": 100, \"refused\": 200, \"timed_out\": 0, \
             \"connect_secs\": 0.250, \"hold_secs\": 1.000, \"check_secs\": 0.125}"
        );
        let late = IdleReport {
            timed_out: 2,
            ..report
        };
        assert!(late.human().ends_with(", timed out 2"));
    }
}
