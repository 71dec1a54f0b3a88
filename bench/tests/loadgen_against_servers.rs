//! End-to-end runs of `rat_loadgen` against `rat_canned` and against deliberately broken
//! servers, through the real binaries and real sockets.

mod common;

use common::{field, free_port, loadgen};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

/// Every protocol `--protocol` accepts.
const PROTOCOLS: [&str; 3] = ["text", "meta", "binary"];

/// A running `rat_canned`, stopped when dropped.
struct Canned {
    child: Child,
    address: String,
}

impl Canned {
    fn start(threads: usize) -> Canned {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rat_canned"))
            .args(["-p", "0", "-t", &threads.to_string(), "--value-size", "10"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rat_canned");
        let mut line = String::new();
        BufReader::new(child.stderr.take().expect("piped stderr"))
            .read_line(&mut line)
            .expect("read the listening line");
        let address = line
            .trim()
            .strip_prefix("rat_canned listening on ")
            .unwrap_or_else(|| panic!("unexpected first line `{line}`"))
            .to_string();
        Canned { child, address }
    }
}

impl Drop for Canned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_request_budget_is_met_exactly_and_every_canned_get_hits() {
    let canned = Canned::start(2);
    let output = loadgen(&[
        "--server",
        &canned.address,
        "--threads",
        "2",
        "--conns",
        "7",
        "--pipeline",
        "3",
        "--requests",
        "5001",
        "--multiget",
        "4",
        "--dist",
        "zipf:0.9",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(field(&stdout, "requests"), 5001.0);
    let (gets, sets) = (field(&stdout, "gets"), field(&stdout, "sets"));
    assert_eq!(gets + sets, 5001.0);
    assert!(
        sets > 0.0 && gets > sets * 5.0,
        "1:10 mix gave {sets} sets, {gets} gets"
    );
    assert_eq!(field(&stdout, "hits"), gets * 4.0);
    assert_eq!(field(&stdout, "misses"), 0.0);
    assert_eq!(field(&stdout, "keys_requested"), gets * 4.0 + sets);
    assert!(field(&stdout, "p50_us") > 0.0);
    assert!(field(&stdout, "max_us") >= field(&stdout, "p99_us"));
}

#[test]
fn a_fill_sets_every_key_once() {
    let canned = Canned::start(1);
    let output = loadgen(&[
        "--server",
        &canned.address,
        "--fill",
        "--keys",
        "3333",
        "--conns",
        "5",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"phase\": \"fill\""), "{stdout}");
    assert_eq!(field(&stdout, "sets"), 3333.0);
    assert_eq!(field(&stdout, "gets"), 0.0);
}

#[test]
fn a_timed_run_with_prefill_reports_in_text() {
    let canned = Canned::start(1);
    let output = loadgen(&[
        "--server",
        &canned.address,
        "--duration",
        "0.3",
        "--prefill",
        "--keys",
        "500",
        "--conns",
        "3",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.starts_with("prefill: 500 sets in "), "{stderr}");
    for label in [
        "requests:",
        "gets:",
        "sets:",
        "latency us: p50",
        "generator:",
    ] {
        assert!(stdout.contains(label), "no `{label}` in\n{stdout}");
    }
}

#[test]
fn verify_catches_values_that_are_not_the_stored_ones() {
    // rat_canned returns the same value for every key, never the key's own value.
    let canned = Canned::start(1);
    for protocol in PROTOCOLS {
        for multiget in ["1", "2"] {
            let output = loadgen(&[
                "--server",
                &canned.address,
                "--protocol",
                protocol,
                "--requests",
                "100",
                "--set-ratio",
                "0:1",
                "--multiget",
                multiget,
                "--value-size",
                "10",
                "--verify",
            ]);
            assert_eq!(output.status.code(), Some(2), "{protocol}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("value differs from the one stored"),
                "{protocol}: {stderr}"
            );
        }
    }
}

/// A server that reads a little and answers every connection with `reply`.
fn broken_server(reply: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut request = [0u8; 512];
                if stream.read(&mut request).is_ok() {
                    let _ = stream.write_all(reply);
                }
                // Hold the connection open until the client leaves.
                let _ = stream.read(&mut request);
            });
        }
    });
    address
}

#[test]
fn protocol_errors_stop_the_run_with_status_2() {
    let cases: [(&'static [u8], &str); 3] = [
        (b"ERROR\r\n", "unexpected reply line `ERROR`"),
        (b"VALUE other 0 1\r\nx\r\nEND\r\n", "not asked for"),
        (b"END\r\nEND\r\n", "unsolicited bytes"),
    ];
    for (reply, message) in cases {
        let address = broken_server(reply);
        let output = loadgen(&[
            "--server",
            &address,
            "--requests",
            "10",
            "--conns",
            "1",
            "--set-ratio",
            "0:1",
        ]);
        assert_eq!(output.status.code(), Some(2), "reply {reply:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "reply {reply:?}: {stderr}");
    }
}

#[test]
fn a_silent_server_times_out() {
    let address = broken_server(b"");
    let output = loadgen(&[
        "--server",
        &address,
        "--requests",
        "10",
        "--conns",
        "2",
        "--timeout",
        "0.5",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no reply for"), "{stderr}");
}

#[test]
fn bad_command_lines_exit_with_status_1() {
    for args in [
        &["--set-ratio", "0:0"][..],
        &["--dist", "zipf:2"],
        &["--protocol", "ascii"],
        &["--duration", "1", "--requests", "5"],
        &["--conns", "0"],
        &["--bogus"],
    ] {
        let output = loadgen(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(output.stderr.starts_with(b"rat_loadgen: "), "{args:?}");
    }
}

#[test]
fn every_protocol_gets_every_canned_hit() {
    let canned = Canned::start(1);
    for protocol in PROTOCOLS {
        for multiget in ["1", "3"] {
            let output = loadgen(&[
                "--server",
                &canned.address,
                "--protocol",
                protocol,
                "--conns",
                "3",
                "--pipeline",
                "4",
                "--requests",
                "2000",
                "--multiget",
                multiget,
                "--json",
            ]);
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{protocol}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                stdout.contains(&format!("\"protocol\": \"{protocol}\"")),
                "{stdout}"
            );
            let keys: f64 = multiget.parse().expect("a number");
            assert_eq!(field(&stdout, "requests"), 2000.0, "{protocol}");
            assert_eq!(
                field(&stdout, "hits"),
                field(&stdout, "gets") * keys,
                "{protocol}"
            );
            assert_eq!(field(&stdout, "misses"), 0.0, "{protocol}");
        }
    }
}

/// A running reference memcached, stopped when dropped.
struct Memcached {
    child: Child,
    address: String,
}

impl Memcached {
    /// Starts memcached on a free port, or `None` when it is not installed.
    fn start() -> Option<Memcached> {
        let program = ["/usr/bin", "/usr/local/bin"]
            .iter()
            .map(|dir| PathBuf::from(dir).join("memcached"))
            .find(|path| path.is_file())?;
        let port = free_port();
        let mut command = Command::new(program);
        command.args([
            "-p",
            &port.to_string(),
            "-l",
            "127.0.0.1",
            "-U",
            "0",
            "-t",
            "2",
        ]);
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
        if as_root {
            command.args(["-u", "root"]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start memcached");
        let memcached = Memcached {
            child,
            address: format!("127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if TcpStream::connect(&memcached.address).is_ok() {
                return Some(memcached);
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("memcached did not open {}", memcached.address);
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_protocol_verifies_against_memcached() {
    let Some(memcached) = Memcached::start() else {
        eprintln!("memcached is not installed; the protocols are checked against rat_canned only");
        return;
    };
    for protocol in PROTOCOLS {
        // Keys 0..500 are filled with their values, keys 500..1000 never stored: gets find
        // exactly the filled ones, and every value found is checked byte for byte.
        let fill = loadgen(&[
            "--server",
            &memcached.address,
            "--protocol",
            protocol,
            "--fill",
            "--keys",
            "500",
            "--value-size",
            "40",
            "--conns",
            "2",
            "--json",
        ]);
        assert!(
            fill.status.success(),
            "{protocol} fill: {}",
            String::from_utf8_lossy(&fill.stderr)
        );
        for multiget in ["1", "4"] {
            let output = loadgen(&[
                "--server",
                &memcached.address,
                "--protocol",
                protocol,
                "--keys",
                "1000",
                "--value-size",
                "40",
                "--set-ratio",
                "0:1",
                "--requests",
                "3000",
                "--multiget",
                multiget,
                "--conns",
                "3",
                "--pipeline",
                "3",
                "--verify",
                "--json",
            ]);
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{protocol}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let (hits, misses) = (field(&stdout, "hits"), field(&stdout, "misses"));
            let keys: f64 = multiget.parse().expect("a number");
            assert_eq!(hits + misses, 3000.0 * keys, "{protocol}");
            // Uniform keys over 1000 with 500 stored: near half hit, and both kinds occur.
            let share = hits / (hits + misses);
            assert!((0.4..0.6).contains(&share), "{protocol}: hit share {share}");
        }
        // A verified mixed run: sets store the derived values, gets must read them back.
        let mixed = loadgen(&[
            "--server",
            &memcached.address,
            "--protocol",
            protocol,
            "--keys",
            "500",
            "--value-size",
            "40",
            "--requests",
            "2000",
            "--multiget",
            "2",
            "--verify",
            "--json",
        ]);
        let stdout = String::from_utf8_lossy(&mixed.stdout);
        assert!(
            mixed.status.success(),
            "{protocol}: {}",
            String::from_utf8_lossy(&mixed.stderr)
        );
        assert_eq!(field(&stdout, "misses"), 0.0, "{protocol}: {stdout}");
    }
}

#[test]
fn broken_meta_and_binary_replies_stop_the_run() {
    let cases: [(&str, &'static [u8], &str); 4] = [
        ("meta", b"VA 3 f1\r\nabc\r\n", "unexpected reply line"),
        ("meta", b"STORED\r\n", "unexpected reply line"),
        ("binary", b"ERROR\r\n", "malformed response header"),
        (
            "binary",
            b"\x81\x00\x00\x00\x00\x00\x00\x81\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            "unexpected response",
        ),
    ];
    for (protocol, reply, message) in cases {
        let address = broken_server(reply);
        let output = loadgen(&[
            "--server",
            &address,
            "--protocol",
            protocol,
            "--requests",
            "10",
            "--conns",
            "1",
            "--set-ratio",
            "0:1",
        ]);
        assert_eq!(output.status.code(), Some(2), "{protocol} {reply:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{protocol} {reply:?}: {stderr}");
    }
}
