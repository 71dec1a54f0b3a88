//! The server raises its open-files limit to what `-c` needs, as memcached does.
//!
//! Each test starts `rat_memcached` under a soft `RLIMIT_NOFILE` of 1024, the usual
//! default, set in the child between fork and exec, and checks what the server does
//! with a `-c` far above it.

#![cfg(all(target_os = "linux", feature = "server"))]

mod common;

use common::{free_port, rat_binary, RawClient};
use rat_memcache::server::fdlimit::raise_open_files_limit;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The soft limit a process commonly starts with.
const DEFAULT_SOFT_LIMIT: u64 = 1024;

const MAX_CONNECTIONS: usize = 3000;

/// A server process started under a lowered open-files limit; killed when dropped.
struct LimitedServer {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl LimitedServer {
    /// Starts `rat_memcached -t 2 <extra>` with the soft limit at 1024 and the hard
    /// limit at `hard` (or where it is, when lower).
    fn start(hard: u64, extra: &[&str]) -> LimitedServer {
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "rat_memcached-open-files-{}-{port}.log",
            std::process::id()
        ));
        let output = File::create(&log).expect("create the server log");
        let mut command = Command::new(rat_binary());
        command
            .args([
                "-p",
                &port.to_string(),
                "-l",
                "127.0.0.1",
                "-U",
                "0",
                "-t",
                "2",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone the log handle"))
            .stderr(output);
        // SAFETY: the closure only calls getrlimit and setrlimit, which are
        // async-signal-safe, and touches no memory but its own locals.
        unsafe {
            command.pre_exec(move || {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                limit.rlim_max = limit.rlim_max.min(hard);
                limit.rlim_cur = limit.rlim_max.min(DEFAULT_SOFT_LIMIT);
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("run rat_memcached");
        let mut server = LimitedServer { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = server.child.try_wait().expect("poll the server") {
                panic!("exited with {status}:\n{}", server.output());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "never listened:\n{}",
                server.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The soft and hard open-files limits of the server process.
    fn open_files_limit(&self) -> (u64, u64) {
        let limits = fs::read_to_string(format!("/proc/{}/limits", self.child.id()))
            .expect("read the server's limits");
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .expect("an open-files line");
        let mut numbers = line
            .split_whitespace()
            .filter_map(|word| word.parse::<u64>().ok());
        (
            numbers.next().expect("a soft limit"),
            numbers.next().expect("a hard limit"),
        )
    }

    /// Waits until the server counts at most `n` connections (the probe of `start` may
    /// still be open).
    fn wait_for_connections_at_most(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut client = RawClient::connect(self.port);
            client.send(b"stats\r\n");
            let stats = String::from_utf8(client.read_until(b"END\r\n")).expect("stats text");
            let current: usize = stats
                .lines()
                .find_map(|line| line.strip_prefix("STAT curr_connections "))
                .and_then(|count| count.trim().parse().ok())
                .expect("curr_connections");
            // The connection asking counts itself.
            if current <= n + 1 {
                return;
            }
            assert!(Instant::now() < deadline, "{current} connections stay open");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LimitedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}

/// Connects until the server answers `version` with something else than a version (or
/// not at all), up to `most` connections; returns the clients answered and the reply
/// of the first one that was not.
fn connect_until_refused(port: u16, most: usize) -> (Vec<RawClient>, Option<Vec<u8>>) {
    let mut clients = Vec::with_capacity(most);
    while clients.len() < most {
        let mut client = RawClient::connect(port);
        client.send(b"version\r\n");
        let reply = client.read_line();
        if !reply.starts_with(b"VERSION ") {
            return (clients, Some(reply));
        }
        clients.push(client);
    }
    (clients, None)
}

/// This process holds one end of every connection, and needs the descriptors too.
fn client_limit_suffices() -> bool {
    let wanted = MAX_CONNECTIONS as u64 + 100;
    let limit = raise_open_files_limit(wanted).expect("read the open-files limit");
    if limit < wanted {
        eprintln!("skipped: this test needs {wanted} open files and the hard limit is {limit}");
    }
    limit >= wanted
}

#[test]
fn a_soft_limit_below_c_is_raised_and_every_connection_is_served() {
    if !client_limit_suffices() {
        return;
    }
    let server = LimitedServer::start(u64::MAX, &["-c", &MAX_CONNECTIONS.to_string()]);
    let (soft, hard) = server.open_files_limit();
    assert!(
        soft > MAX_CONNECTIONS as u64,
        "the soft limit is {soft} (hard {hard}) for -c {MAX_CONNECTIONS}"
    );
    server.wait_for_connections_at_most(0);
    let (clients, refusal) = connect_until_refused(server.port, MAX_CONNECTIONS + 1);
    assert_eq!(
        clients.len(),
        MAX_CONNECTIONS,
        "connection {} was answered {:?}; server output:\n{}",
        clients.len() + 1,
        refusal.as_deref().map(String::from_utf8_lossy),
        server.output()
    );
    assert_eq!(
        refusal.as_deref(),
        Some(&b"ERROR Too many open connections\r\n"[..])
    );
    assert!(
        !server.output().contains("open files"),
        "a warning although the limit sufficed:\n{}",
        server.output()
    );
}

#[test]
fn a_hard_limit_below_c_is_reported_and_the_connections_past_it_refused() {
    if !client_limit_suffices() {
        return;
    }
    const HARD_LIMIT: u64 = 2000;
    let server = LimitedServer::start(HARD_LIMIT, &["-c", &MAX_CONNECTIONS.to_string()]);
    let (soft, hard) = server.open_files_limit();
    server.wait_for_connections_at_most(0);
    let (clients, refusal) = connect_until_refused(server.port, MAX_CONNECTIONS + 1);
    assert_eq!(
        refusal.as_deref(),
        Some(&b"ERROR Too many open connections\r\n"[..]),
        "after {} connections",
        clients.len()
    );
    if soft > MAX_CONNECTIONS as u64 {
        // A privileged server lifted the hard limit as well.
        assert!(hard >= soft);
        assert_eq!(clients.len(), MAX_CONNECTIONS);
        return;
    }
    // Every descriptor the limit allows serves a client but the server's own few.
    assert_eq!(soft, HARD_LIMIT);
    assert!(
        (HARD_LIMIT as usize - 100..HARD_LIMIT as usize).contains(&clients.len()),
        "{} connections served under a limit of {HARD_LIMIT}",
        clients.len()
    );
    let output = server.output();
    assert!(
        output.contains(&format!(
            "-c {MAX_CONNECTIONS} needs {} open files, but the limit is {HARD_LIMIT}; \
             serving at most {} connections",
            HARD_LIMIT as usize - clients.len() + MAX_CONNECTIONS,
            clients.len()
        )),
        "{output}"
    );
}
