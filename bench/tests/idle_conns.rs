//! `rat_loadgen --idle-conns` against a real `rat_memcached`: every connection kept while
//! the server has room, and exactly its `-c` limit kept when it has not.
//!
//! `rat_memcached` belongs to the parent package, so Cargo does not build it for these
//! tests; they build it once (a no-op when it is up to date) with the same Cargo and
//! profile, or take the binary named by `RAT_MEMCACHED`.

mod common;

use common::{field, free_port, loadgen};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// Path of an up-to-date `rat_memcached`.
fn rat_memcached() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("RAT_MEMCACHED") {
            return PathBuf::from(path);
        }
        // The package's own binaries sit in the profile directory, next to the parent's.
        let profile_dir = Path::new(env!("CARGO_BIN_EXE_rat_loadgen"))
            .parent()
            .expect("the binary has a directory");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "--bin",
                "rat_memcached",
                "--manifest-path",
            ])
            .arg(&manifest);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building rat_memcached failed");
        let binary = profile_dir.join(format!("rat_memcached{}", std::env::consts::EXE_SUFFIX));
        assert!(binary.is_file(), "no {}", binary.display());
        binary
    })
}

/// A running `rat_memcached`, stopped when dropped.
struct RatMemcached {
    child: Child,
    address: String,
}

impl RatMemcached {
    /// Starts the server with at most `max_conns` client connections. Nothing waits for it
    /// to listen: `rat_loadgen` retries refused connects, and a probe connection would
    /// itself take one of the `max_conns` places until the server noticed it closed.
    fn start(max_conns: usize) -> RatMemcached {
        let port = free_port();
        let child = Command::new(rat_memcached())
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
            .args(["-c", &max_conns.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rat_memcached");
        RatMemcached {
            child,
            address: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for RatMemcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the idle mode with 300 connections held for a second; returns the JSON report and
/// what was printed on standard error.
fn hold_300(server: &RatMemcached, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "--server",
        &server.address,
        "--idle-conns",
        "300",
        "--hold",
        "1",
        "--json",
    ];
    args.extend_from_slice(extra);
    let output = loadgen(&args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}{stderr}");
    (stdout, stderr)
}

#[test]
fn a_server_with_room_keeps_every_connection() {
    let server = RatMemcached::start(1024);
    let signal = std::env::temp_dir().join(format!("idle_conns_signal_{}", std::process::id()));
    let signal_text = signal.to_str().expect("a UTF-8 temporary directory");
    let (stdout, stderr) = hold_300(&server, &["--hold-signal-file", signal_text]);
    assert!(stdout.starts_with("{\"mode\": \"idle\""), "{stdout}");
    assert_eq!(field(&stdout, "requested"), 300.0, "{stdout}");
    assert_eq!(field(&stdout, "opened"), 300.0, "{stdout}");
    assert_eq!(field(&stdout, "kept"), 300.0, "{stdout}");
    assert_eq!(field(&stdout, "refused"), 0.0, "{stdout}");
    assert!(field(&stdout, "hold_secs") >= 1.0, "{stdout}");
    assert!(field(&stdout, "connect_secs") > 0.0, "{stdout}");
    assert!(field(&stdout, "check_secs") > 0.0, "{stdout}");
    assert!(
        stderr.contains("holding 300 connections for 1 s"),
        "{stderr}"
    );
    let written = std::fs::read_to_string(&signal).expect("the signal file");
    let _ = std::fs::remove_file(&signal);
    assert_eq!(written, "300\n");
}

#[test]
fn a_full_server_keeps_exactly_its_limit_and_refuses_the_rest() {
    let server = RatMemcached::start(100);
    let (stdout, stderr) = hold_300(&server, &[]);
    // Every connect completes: the server accepts the ones over its limit, answers them
    // `ERROR Too many open connections` and closes them, as memcached does.
    assert_eq!(field(&stdout, "opened"), 300.0, "{stdout}");
    // rat_memcached counts only client connections against -c (with -U 0 there are no
    // UDP sockets to count), so exactly 100 stay. memcached would keep a few fewer: it
    // counts its listening sockets and internal connections too.
    assert_eq!(field(&stdout, "kept"), 100.0, "{stdout}");
    assert_eq!(field(&stdout, "refused"), 200.0, "{stdout}");
    assert_eq!(field(&stdout, "timed_out"), 0.0, "{stdout}");
    assert!(
        stderr.contains("first refusal: ERROR Too many open connections"),
        "{stderr}"
    );
}

#[test]
fn text_output_names_every_count() {
    let server = RatMemcached::start(1024);
    let output = loadgen(&[
        "--server",
        &server.address,
        "--idle-conns",
        "20",
        "--hold",
        "0",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("idle connections: opened 20 of 20, kept 20, refused 0, connect time "),
        "{stdout}"
    );
    assert!(stdout.contains(" s, check time "), "{stdout}");
}

#[test]
fn more_connections_than_the_open_files_limit_is_a_setup_error() {
    let output = loadgen(&["--idle-conns", "2000000000", "--hold", "0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("RLIMIT_NOFILE"), "{stderr}");
    assert!(stderr.contains("2000000064"), "{stderr}");
}

#[test]
fn load_options_do_not_mix_with_idle_connections() {
    let output = loadgen(&["--idle-conns", "5", "--conns", "3"]);
    assert_eq!(output.status.code(), Some(1));
    let output = loadgen(&["--idle-conns", "5", "--hold", "-1"]);
    assert_eq!(output.status.code(), Some(1));
}
