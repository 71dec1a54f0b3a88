//! Helpers shared by the integration tests: starting servers and talking to them.
//!
//! Every test that needs a server starts its own process on a free loopback port and
//! holds a [`Server`] guard; dropping the guard kills the process, so a failing test
//! never leaves a server behind. Two kinds of server can be started:
//!
//! * [`start_rat`] runs the `rat_memcached` binary that Cargo built for this package;
//! * [`start_memcached`] runs the reference `memcached` if it is installed, and returns
//!   `None` when it is not, so the caller can print a skip notice instead of failing.
//!
//! Both always get `-p PORT -l 127.0.0.1 -U 0`; the caller adds anything else.
//!
//! [`start_server_under_test`] is what most tests call: it starts `rat_memcached`, or,
//! when the environment variable `RAT_DIFF_SELFTEST=1` is set, the reference memcached
//! in its place. Running the suites that way checks the tests themselves: whatever
//! fails against memcached is a wrong test, not a wrong server.
//!
//! [`RawClient`] is a deliberately dumb TCP client for tests that care about exact bytes:
//! it sends what it is given and reads until a terminator, a byte count or end of stream.

// Each test binary compiles this module separately and uses only part of it.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Environment variable that makes the reference memcached stand in for rat_memcached.
pub const SELFTEST_ENV: &str = "RAT_DIFF_SELFTEST";

/// How long a freshly started server may take before it accepts TCP connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a start is retried with a new port (another process may grab the port
/// between our probe and the server's bind).
const START_ATTEMPTS: usize = 5;

/// Default read timeout of [`RawClient`]: long enough for a slow debug build on a busy
/// machine, short enough that a missing reply fails the test instead of hanging it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// True when `RAT_DIFF_SELFTEST=1`: memcached plays the role of the server under test.
pub fn selftest() -> bool {
    std::env::var(SELFTEST_ENV).is_ok_and(|v| v == "1")
}

/// Path of the `rat_memcached` binary built for these tests.
pub fn rat_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rat_memcached"))
}

/// Path of the reference memcached, from `PATH` or `/usr/bin`.
pub fn memcached_binary() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("memcached"))
        .find(|candidate| candidate.is_file())
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// True when this process runs as root, in which case memcached needs `-u root`.
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A running server process; killed when dropped.
pub struct Server {
    child: Child,
    port: u16,
    name: String,
    log_path: PathBuf,
}

impl Server {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Human-readable name, e.g. `rat_memcached` or `memcached`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A raw client connected to this server.
    pub fn client(&self) -> RawClient {
        RawClient::connect(self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log_path);
    }
}

/// A fresh log file path for one server process.
fn log_path(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("{name}-test-{}-{n}.log", std::process::id()))
}

/// Starts `program` with `base_args(port)` followed by `extra`, retrying on a new port if
/// the process dies before listening. Panics with the server's output if it never comes up.
/// Whether something listens on TCP `port`. On Linux this reads the kernel's socket table
/// instead of connecting, so the check leaves no connection behind for the server to
/// count and close later, while a test is reading its connection counters.
fn listening(port: u16) -> bool {
    if cfg!(target_os = "linux") {
        let local_port = format!(":{port:04X}");
        ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
            fs::read_to_string(table).is_ok_and(|text| {
                text.lines().skip(1).any(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // local_address is ADDR:PORT in hex; state 0A is LISTEN.
                    fields.len() > 3 && fields[1].ends_with(&local_port) && fields[3] == "0A"
                })
            })
        })
    } else {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }
}

fn start(
    name: &str,
    program: &Path,
    base_args: impl Fn(u16) -> Vec<String>,
    extra: &[&str],
) -> Server {
    let mut last_failure = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let log_path = log_path(name);
        let log = File::create(&log_path).expect("create server log file");
        let child = Command::new(program)
            .args(base_args(port))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let mut server = Server {
            child,
            port,
            name: name.to_owned(),
            log_path,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait().expect("poll child") {
                last_failure = format!(
                    "exited with {status} before listening:\n{}",
                    server.output()
                );
                break;
            }
            if listening(port) {
                return server;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{name} did not accept connections on port {port} within {STARTUP_TIMEOUT:?}; output:\n{}",
                    server.output()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("{name} failed to start {START_ATTEMPTS} times; last attempt {last_failure}");
}

/// Starts `rat_memcached -p PORT -l 127.0.0.1 -U 0 <extra>`.
pub fn start_rat(extra: &[&str]) -> Server {
    start(
        "rat_memcached",
        rat_binary(),
        |port| {
            vec![
                "-p".into(),
                port.to_string(),
                "-l".into(),
                "127.0.0.1".into(),
                "-U".into(),
                "0".into(),
            ]
        },
        extra,
    )
}

/// Starts the reference `memcached -U 0 -p PORT -l 127.0.0.1 <extra>` (with `-u root` when
/// running as root), or returns `None` when memcached is not installed.
pub fn start_memcached(extra: &[&str]) -> Option<Server> {
    let program = memcached_binary()?;
    let as_root = running_as_root();
    Some(start(
        "memcached",
        &program,
        |port| {
            let mut args: Vec<String> = Vec::new();
            if as_root {
                args.extend(["-u".into(), "root".into()]);
            }
            args.extend([
                "-U".into(),
                "0".into(),
                "-p".into(),
                port.to_string(),
                "-l".into(),
                "127.0.0.1".into(),
            ]);
            args
        },
        extra,
    ))
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    socket.local_addr().expect("local address").port()
}

/// Starts `rat_memcached` serving UDP too: `-U UDP_PORT` after the usual arguments.
/// Returns the server and its UDP port.
pub fn start_rat_udp(extra: &[&str]) -> (Server, u16) {
    let udp_port = free_udp_port().to_string();
    let mut args = vec!["-U", udp_port.as_str()];
    args.extend_from_slice(extra);
    (start_rat(&args), udp_port.parse().expect("a port"))
}

/// The reference memcached serving UDP too, or `None` when it is not installed.
pub fn start_memcached_udp(extra: &[&str]) -> Option<(Server, u16)> {
    let udp_port = free_udp_port().to_string();
    let mut args = vec!["-U", udp_port.as_str()];
    args.extend_from_slice(extra);
    start_memcached(&args).map(|server| (server, udp_port.parse().expect("a port")))
}

/// Starts `rat_memcached -s SOCKET <extra>` and waits until the socket accepts
/// connections; the returned server's `port()` is 0.
#[cfg(unix)]
pub fn start_rat_unix(socket: &Path, extra: &[&str]) -> Server {
    let log_path = log_path("rat_memcached");
    let log = File::create(&log_path).expect("create server log file");
    let child = Command::new(rat_binary())
        .arg("-s")
        .arg(socket)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", rat_binary().display()));
    let mut server = Server {
        child,
        port: 0,
        name: "rat_memcached".to_owned(),
        log_path,
    };
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = server.child.try_wait().expect("poll child") {
            panic!(
                "rat_memcached exited with {status} before listening on {}:\n{}",
                socket.display(),
                server.output()
            );
        }
        if UnixStream::connect(socket).is_ok() {
            return server;
        }
        if Instant::now() >= deadline {
            panic!(
                "rat_memcached did not accept connections on {} within {STARTUP_TIMEOUT:?}; \
                 output:\n{}",
                socket.display(),
                server.output()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the server under test: rat_memcached, or memcached under `RAT_DIFF_SELFTEST=1`.
pub fn start_server_under_test(extra: &[&str]) -> Server {
    if selftest() {
        start_memcached(extra).expect("RAT_DIFF_SELFTEST=1 needs memcached installed")
    } else {
        start_rat(extra)
    }
}

/// What a process printed before it exited.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program` with `args` to completion; panics if it runs longer than `timeout`
/// (a server that should have refused its arguments but started anyway).
pub fn run_to_exit(program: &Path, args: &[&str], timeout: Duration) -> Finished {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    // Drain both pipes on their own threads so a chatty process cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} still running after {timeout:?}; stderr: {}",
                program.display(),
                stderr.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Shows bytes as an escaped string: printable ASCII as is, everything else as `\r`, `\n`,
/// `\t` or `\xNN`; long results are cut in the middle.
pub fn escape(bytes: &[u8]) -> String {
    const LIMIT: usize = 4000;
    let mut out = String::new();
    let shown: Vec<&[u8]> = if bytes.len() > LIMIT {
        vec![&bytes[..LIMIT / 2], &bytes[bytes.len() - LIMIT / 2..]]
    } else {
        vec![bytes]
    };
    for (i, part) in shown.iter().enumerate() {
        if i > 0 {
            out.push_str(&format!("...<{} bytes omitted>...", bytes.len() - LIMIT));
        }
        for &b in *part {
            match b {
                b'\r' => out.push_str("\\r"),
                b'\n' => out.push_str("\\n"),
                b'\t' => out.push_str("\\t"),
                b'\\' => out.push_str("\\\\"),
                0x20..=0x7e => out.push(b as char),
                _ => out.push_str(&format!("\\x{b:02x}")),
            }
        }
    }
    out
}

/// A blocking client that moves raw bytes, for tests about exact wire behaviour: over
/// TCP by default, or over any other stream (a unix socket).
pub struct RawClient<S = TcpStream> {
    stream: S,
    /// Bytes received but not yet handed to the caller.
    pending: Vec<u8>,
}

#[cfg(unix)]
impl RawClient<UnixStream> {
    /// Connects to the unix socket at `path`; panics if the server is not there.
    pub fn connect_unix(path: &Path) -> RawClient<UnixStream> {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set read timeout");
        RawClient {
            stream,
            pending: Vec::new(),
        }
    }
}

impl RawClient {
    /// Connects to 127.0.0.1:`port`; panics if the server is not there.
    pub fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set read timeout");
        stream.set_nodelay(true).expect("set nodelay");
        RawClient {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Stops sending; the server sees end of stream.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

impl<S: Read + Write> RawClient<S> {
    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send {:?}: {e}", escape(bytes)));
    }

    /// Reads once more from the socket into `pending`; returns false at end of stream.
    /// A connection reset counts as end of stream: a server that closes a connection
    /// with unread input makes the kernel send RST instead of FIN.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.pending.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return false,
                Err(e) => panic!(
                    "read failed ({e}) with {} bytes pending: {}",
                    self.pending.len(),
                    escape(&self.pending)
                ),
            }
        }
    }

    /// Reads until `terminator` arrives and returns everything up to and including it.
    pub fn read_until(&mut self, terminator: &[u8]) -> Vec<u8> {
        let mut searched = 0;
        loop {
            if let Some(at) = find(&self.pending[searched..], terminator) {
                let end = searched + at + terminator.len();
                return self.pending.drain(..end).collect();
            }
            searched = self.pending.len().saturating_sub(terminator.len());
            if !self.fill() {
                panic!(
                    "connection closed before {:?}; received {}",
                    escape(terminator),
                    escape(&self.pending)
                );
            }
        }
    }

    /// Reads one line including its `\r\n`.
    pub fn read_line(&mut self) -> Vec<u8> {
        self.read_until(b"\r\n")
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.pending.len() < n {
            if !self.fill() {
                panic!(
                    "connection closed after {} of {n} bytes",
                    self.pending.len()
                );
            }
        }
        self.pending.drain(..n).collect()
    }

    /// Reads until the server closes the connection and returns what came before.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.pending)
    }

    /// Sends `request` and reads the reply up to and including `terminator`.
    pub fn request(&mut self, request: &[u8], terminator: &[u8]) -> Vec<u8> {
        self.send(request);
        self.read_until(terminator)
    }
}

/// Position of the first occurrence of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A datagram of memcached's UDP protocol: the 8-byte frame header, then `payload`.
pub fn udp_frame(request_id: u16, sequence: u16, total: u16, payload: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(8 + payload.len());
    for field in [request_id, sequence, total, 0] {
        datagram.extend_from_slice(&field.to_be_bytes());
    }
    datagram.extend_from_slice(payload);
    datagram
}

/// The frame header of a reply datagram: request id, sequence number, total, reserved.
pub fn udp_header(datagram: &[u8]) -> [u16; 4] {
    assert!(
        datagram.len() >= 8,
        "datagram shorter than its header: {datagram:?}"
    );
    let field = |at: usize| u16::from_be_bytes([datagram[at], datagram[at + 1]]);
    [field(0), field(2), field(4), field(6)]
}

/// A UDP client of one server, for tests of memcached's UDP framing.
pub struct UdpClient {
    socket: UdpSocket,
}

impl UdpClient {
    /// A socket on 127.0.0.1 that talks to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> UdpClient {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        socket
            .connect(("127.0.0.1", port))
            .expect("connect the UDP socket");
        UdpClient { socket }
    }

    /// Sends one datagram as it is.
    pub fn send_raw(&self, datagram: &[u8]) {
        self.socket
            .send(datagram)
            .unwrap_or_else(|e| panic!("send {}: {e}", escape(datagram)));
    }

    /// Sends `payload` as a one-datagram request with `request_id`.
    pub fn send(&self, request_id: u16, payload: &[u8]) {
        self.send_raw(&udp_frame(request_id, 0, 1, payload));
    }

    /// The next datagram, or `None` if none arrives within `timeout`.
    pub fn receive_one(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.socket
            .set_read_timeout(Some(timeout))
            .expect("set read timeout");
        let mut buf = vec![0u8; 65536];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("UDP receive failed: {e}"),
        }
    }

    /// Every datagram that arrives until none has for `quiet`.
    pub fn receive(&self, quiet: Duration) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.receive_one(quiet)).collect()
    }

    /// Sends a request and returns the reply datagrams, waiting up to [`READ_TIMEOUT`]
    /// for the first and `quiet` after the last.
    pub fn request(&self, request_id: u16, payload: &[u8], quiet: Duration) -> Vec<Vec<u8>> {
        self.send(request_id, payload);
        let Some(first) = self.receive_one(READ_TIMEOUT) else {
            return Vec::new();
        };
        let mut datagrams = vec![first];
        datagrams.extend(self.receive(quiet));
        datagrams
    }
}

/// A directory of its own under the system temp directory, removed with everything in it
/// when dropped, so a test that keeps data on disk leaves nothing behind.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<temp>/<label>-<pid>-<n>`, empty.
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{label}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as a command-line argument.
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("temp dir path is UTF-8")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Starts `rat_memcached` keeping its cache in `data_dir` (`--data-dir DIR <extra>`).
pub fn start_rat_with_data_dir(data_dir: &TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--data-dir", data_dir.arg()];
    args.extend_from_slice(extra);
    start_rat(&args)
}

/// How a start of `rat_memcached` that is allowed to fail turned out.
pub enum Launch {
    /// It accepts connections.
    Serving(Server),
    /// It exited before it did.
    Exited { status: ExitStatus, output: String },
}

/// Starts `rat_memcached -p PORT -l 127.0.0.1 -U 0 <extra>` once and reports whether it
/// came up or exited, with everything it printed (tries another port only when the
/// chosen one turned out to be taken).
pub fn launch_rat(extra: &[&str]) -> Launch {
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let log_path = log_path("rat_memcached");
        let log = File::create(&log_path).expect("create server log file");
        let child = Command::new(rat_binary())
            .args(["-p", &port.to_string(), "-l", "127.0.0.1", "-U", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", rat_binary().display()));
        let mut server = Server {
            child,
            port,
            name: "rat_memcached".to_owned(),
            log_path,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait().expect("poll child") {
                let output = server.output();
                if output.contains(&format!("cannot listen on 127.0.0.1:{port}")) {
                    break; // the port was taken meanwhile: try another
                }
                return Launch::Exited { status, output };
            }
            if listening(port) {
                return Launch::Serving(server);
            }
            if Instant::now() >= deadline {
                panic!(
                    "rat_memcached neither exited nor accepted connections on port {port} \
                     within {STARTUP_TIMEOUT:?}; output:\n{}",
                    server.output()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("rat_memcached found no free port in {START_ATTEMPTS} attempts");
}

#[cfg(unix)]
impl Server {
    /// Sends `signal` (`libc::SIGTERM`, `libc::SIGKILL`, ...) to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child,
        // which has not been reaped yet (the guard reaps it only when dropped or waited).
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            result,
            0,
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// SIGTERM, then waits up to `timeout` for the process to finish; panics with its
    /// output unless it exits with status 0 (a graceful stop, with everything saved).
    pub fn terminate(&mut self, timeout: Duration) {
        self.signal(libc::SIGTERM);
        match self.wait_exit(timeout) {
            Some(status) if status.success() => {}
            Some(status) => panic!(
                "{} exited with {status} after SIGTERM; output:\n{}",
                self.name,
                self.output()
            ),
            None => panic!(
                "{} still running {timeout:?} after SIGTERM; output:\n{}",
                self.name,
                self.output()
            ),
        }
    }

    /// SIGKILL, and waits until the process is gone: a crash that saves nothing.
    pub fn crash(&mut self) {
        self.signal(libc::SIGKILL);
        let status = self
            .wait_exit(Duration::from_secs(10))
            .expect("a process exits on SIGKILL");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "exit status {status}");
    }
}

/// Sends `command` (`stats`, `stats settings`, ...) and returns its `STAT name value`
/// lines as a map.
pub fn stats_of<S: Read + Write>(
    client: &mut RawClient<S>,
    command: &str,
) -> std::collections::HashMap<String, String> {
    let reply = client.request(format!("{command}\r\n").as_bytes(), b"END\r\n");
    let text = String::from_utf8_lossy(&reply);
    text.lines()
        .filter_map(|line| line.strip_prefix("STAT "))
        .filter_map(|line| line.split_once(' '))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// One stat as a number; panics naming it when it is missing or not a number.
pub fn stat_u64(stats: &std::collections::HashMap<String, String>, name: &str) -> u64 {
    let value = stats
        .get(name)
        .unwrap_or_else(|| panic!("no stat {name} in {stats:?}"));
    value
        .parse()
        .unwrap_or_else(|e| panic!("stat {name} = {value:?} is not a number: {e}"))
}

/// An item as a `gets` reply shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub key: String,
    pub flags: u32,
    pub value: Vec<u8>,
    /// `None` when the reply came from `get`, which shows no CAS.
    pub cas: Option<u64>,
}

/// Reads one `get`/`gets` reply (any number of `VALUE` blocks, then `END`); panics with
/// the bytes received when it is malformed.
pub fn read_fetched<S: Read + Write>(client: &mut RawClient<S>) -> Vec<Fetched> {
    let mut items = Vec::new();
    loop {
        let line = client.read_line();
        if line == b"END\r\n" {
            return items;
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let fields: Vec<&str> = text.trim_end().split(' ').collect();
        let malformed = || -> ! { panic!("malformed reply line {:?}", escape(&line)) };
        if fields.len() < 4 || fields.len() > 5 || fields[0] != "VALUE" {
            malformed();
        }
        let flags: u32 = fields[2].parse().unwrap_or_else(|_| malformed());
        let len: usize = fields[3].parse().unwrap_or_else(|_| malformed());
        let cas: Option<u64> = fields
            .get(4)
            .map(|cas| cas.parse().unwrap_or_else(|_| malformed()));
        let mut value = client.read_exact(len + 2);
        assert!(
            value.ends_with(b"\r\n"),
            "value of {} not followed by \\r\\n: {}",
            fields[1],
            escape(&value)
        );
        value.truncate(len);
        items.push(Fetched {
            key: fields[1].to_owned(),
            flags,
            value,
            cas,
        });
    }
}

/// splitmix64: a well-mixed 64-bit number for every input, so that every property of a
/// generated item can follow from its index alone and nothing needs to be remembered.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
