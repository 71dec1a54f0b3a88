//! The unix socket and UDP transports of the `rat_memcached` binary.
//!
//! Unix socket tests run the server with `-s` and talk over the socket: values up to the
//! item limit, pipelining, the file's mode from `-a`, what happens to a socket file left
//! behind or still in use, and that TCP is not served alongside.
//!
//! UDP tests send memcached's framed datagrams: replies echo the request id, long replies
//! arrive in numbered datagrams that reassemble into the value, and malformed datagrams
//! are dropped without harm. A differential test sends the same datagrams to the
//! reference memcached, when installed, and compares every reply datagram byte for byte.

#![cfg(feature = "server")]

mod common;

use common::{
    start_memcached_udp, start_rat_udp, udp_frame, udp_header, RawClient, Server, UdpClient,
};
use std::time::{Duration, Instant};

/// How long to wait for more datagrams after the last one of a reply.
const QUIET: Duration = Duration::from_millis(300);

/// Bytes of a frame header, and the largest reply datagram memcached sends.
const HEADER: usize = 8;
const MAX_DATAGRAM: usize = 1400;

/// A value of `len` bytes that is not the same byte over and over.
fn value_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn set_command(key: &str, value: &[u8]) -> Vec<u8> {
    let mut command = format!("set {key} 7 0 {}\r\n", value.len()).into_bytes();
    command.extend_from_slice(value);
    command.extend_from_slice(b"\r\n");
    command
}

fn get_reply(key: &str, value: &[u8]) -> Vec<u8> {
    let mut reply = format!("VALUE {key} 7 {}\r\n", value.len()).into_bytes();
    reply.extend_from_slice(value);
    reply.extend_from_slice(b"\r\nEND\r\n");
    reply
}

/// The reply to `stats` (`group` empty) or `stats GROUP` over TCP.
fn stats_reply(client: &mut RawClient, group: &str) -> String {
    let request = if group.is_empty() {
        "stats\r\n".to_string()
    } else {
        format!("stats {group}\r\n")
    };
    String::from_utf8(client.request(request.as_bytes(), b"END\r\n")).expect("stats are text")
}

/// The value of `STAT name value` in a stats reply.
fn stat_in(reply: &str, name: &str) -> String {
    reply
        .lines()
        .find_map(|line| line.strip_prefix(&format!("STAT {name} ")))
        .unwrap_or_else(|| panic!("no {name} in {reply}"))
        .to_string()
}

fn stat(server: &Server, group: &str, name: &str) -> String {
    stat_in(&stats_reply(&mut server.client(), group), name)
}

#[cfg(unix)]
mod unix_socket {
    use super::*;
    use common::{rat_binary, run_to_exit, start_rat_unix};
    use std::net::TcpStream;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// A socket path in the temporary directory, removed on drop.
    struct SocketPath(PathBuf);

    impl SocketPath {
        fn new(name: &str) -> SocketPath {
            let path = std::env::temp_dir()
                .join(format!("rat_memcached-{}-{name}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            SocketPath(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for SocketPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("socket file")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn set_and_get_over_the_socket_incl_a_mebibyte_value() {
        let socket = SocketPath::new("large");
        // The item limit counts the item header too, so a 1 MiB value needs -I above 1m.
        let _server = start_rat_unix(socket.path(), &["-I", "2m"]);
        let mut client = RawClient::connect_unix(socket.path());
        let value = value_of(1024 * 1024);
        assert_eq!(
            client.request(&set_command("big", &value), b"\r\n"),
            b"STORED\r\n"
        );
        let expected = get_reply("big", &value);
        client.send(b"get big\r\n");
        assert_eq!(client.read_exact(expected.len()), expected);
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let socket = SocketPath::new("pipeline");
        let _server = start_rat_unix(socket.path(), &[]);
        let mut client = RawClient::connect_unix(socket.path());
        let mut batch = Vec::new();
        let mut expected = Vec::new();
        for i in 0..200 {
            let value = format!("value-{i}").into_bytes();
            batch.extend(set_command(&format!("k{i}"), &value));
            batch.extend(format!("get k{i}\r\n").into_bytes());
            expected.extend_from_slice(b"STORED\r\n");
            expected.extend(get_reply(&format!("k{i}"), &value));
        }
        client.send(&batch);
        assert_eq!(client.read_exact(expected.len()), expected);
    }

    #[test]
    fn the_file_mode_comes_from_the_mask() {
        let socket = SocketPath::new("mode-default");
        let _server = start_rat_unix(socket.path(), &[]);
        assert_eq!(mode(socket.path()), 0o700, "memcached's default -a 0700");

        let socket = SocketPath::new("mode-660");
        let _server = start_rat_unix(socket.path(), &["-a", "0660"]);
        assert_eq!(mode(socket.path()), 0o660);
    }

    #[test]
    fn tcp_is_not_served_alongside_and_stats_show_the_socket() {
        let socket = SocketPath::new("stats");
        let port = common::free_port().to_string();
        let _server = start_rat_unix(socket.path(), &["-p", &port, "-a", "755", "-U", "0"]);
        assert!(
            TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err(),
            "with -s, memcached serves neither TCP nor UDP"
        );
        let mut client = RawClient::connect_unix(socket.path());
        let settings =
            String::from_utf8(client.request(b"stats settings\r\n", b"END\r\n")).unwrap();
        assert!(
            settings.contains(&format!(
                "STAT domain_socket {}\r\nSTAT umask 755\r\n",
                socket.path().display()
            )),
            "{settings}"
        );
        let conns = String::from_utf8(client.request(b"stats conns\r\n", b"END\r\n")).unwrap();
        // memcached keeps no address for a unix client.
        assert!(conns.contains(":addr ?:<AF 0>\r\n"), "{conns}");
        assert!(
            conns.contains(&format!(
                ":listen_addr unix:{}\r\n",
                socket.path().display()
            )),
            "{conns}"
        );
    }

    #[test]
    fn a_stale_socket_file_is_replaced() {
        let socket = SocketPath::new("stale");
        // A listener that is gone leaves its file behind, and nothing answers there.
        drop(UnixListener::bind(socket.path()).expect("bind"));
        assert!(socket.path().exists());
        let _server = start_rat_unix(socket.path(), &[]);
        let mut client = RawClient::connect_unix(socket.path());
        assert!(client
            .request(b"version\r\n", b"\r\n")
            .starts_with(b"VERSION "));
    }

    #[test]
    fn a_socket_in_use_or_a_plain_file_refuses_the_start() {
        let socket = SocketPath::new("in-use");
        let listener = UnixListener::bind(socket.path()).expect("bind");
        let path = socket.path().to_str().unwrap();
        let finished = run_to_exit(rat_binary(), &["-s", path], Duration::from_secs(10));
        assert!(!finished.status.success());
        assert!(
            finished.stderr.contains(&format!(
                "cannot listen on {path}: another process is listening on it"
            )),
            "{}",
            finished.stderr
        );
        // The other server's socket is left alone.
        assert!(UnixStream::connect(socket.path()).is_ok());
        drop(listener);

        let file = SocketPath::new("plain-file");
        std::fs::write(file.path(), b"data").unwrap();
        let path = file.path().to_str().unwrap();
        let finished = run_to_exit(rat_binary(), &["-s", path], Duration::from_secs(10));
        assert!(!finished.status.success());
        assert!(
            finished.stderr.contains("exists and is not a socket"),
            "{}",
            finished.stderr
        );
        assert_eq!(std::fs::read(file.path()).unwrap(), b"data");
    }

    #[test]
    fn a_clean_stop_removes_the_socket_file() {
        let socket = SocketPath::new("cleanup");
        let mut server = start_rat_unix(socket.path(), &[]);
        let status = Command::new("kill")
            .args(["-TERM", &server.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let exit = server
            .wait_exit(Duration::from_secs(10))
            .expect("server stops on SIGTERM");
        assert!(exit.success(), "{exit}: {}", server.output());
        assert!(!socket.path().exists(), "the socket file is removed");
    }
}

#[test]
fn udp_set_and_get_echo_the_request_id() {
    let (server, udp_port) = start_rat_udp(&[]);
    let client = UdpClient::connect(udp_port);
    let replies = client.request(0xbeef, b"set k 0 0 5\r\nhello\r\n", QUIET);
    assert_eq!(replies, [udp_frame(0xbeef, 0, 1, b"STORED\r\n")]);
    let replies = client.request(7, b"get k\r\n", QUIET);
    assert_eq!(
        replies,
        [udp_frame(7, 0, 1, b"VALUE k 0 5\r\nhello\r\nEND\r\n")]
    );
    // What UDP stored, TCP sees.
    let mut tcp = server.client();
    assert_eq!(
        tcp.request(b"get k\r\n", b"END\r\n"),
        b"VALUE k 0 5\r\nhello\r\nEND\r\n"
    );
}

#[test]
fn a_long_reply_arrives_in_numbered_datagrams() {
    let (server, udp_port) = start_rat_udp(&[]);
    let value = value_of(100_000);
    let mut tcp = server.client();
    assert_eq!(
        tcp.request(&set_command("big", &value), b"\r\n"),
        b"STORED\r\n"
    );

    let client = UdpClient::connect(udp_port);
    let datagrams = client.request(0x1234, b"get big\r\n", QUIET);
    let expected = get_reply("big", &value);
    let total = expected.len().div_ceil(MAX_DATAGRAM - HEADER);
    assert_eq!(datagrams.len(), total, "every datagram arrives on loopback");
    // Datagrams may in principle arrive out of order: put them back by sequence number.
    let mut parts: Vec<(u16, &[u8])> = datagrams
        .iter()
        .map(|d| {
            assert!(d.len() <= MAX_DATAGRAM, "a datagram of {} bytes", d.len());
            let [id, sequence, count, reserved] = udp_header(d);
            assert_eq!((id, count as usize, reserved), (0x1234, total, 0));
            (sequence, &d[HEADER..])
        })
        .collect();
    parts.sort_by_key(|&(sequence, _)| sequence);
    let sequences: Vec<u16> = parts.iter().map(|&(s, _)| s).collect();
    assert_eq!(sequences, (0..total as u16).collect::<Vec<_>>());
    let reassembled: Vec<u8> = parts
        .iter()
        .flat_map(|&(_, payload)| payload.to_vec())
        .collect();
    assert_eq!(reassembled, expected);
}

#[test]
fn malformed_datagrams_are_dropped_and_the_server_goes_on() {
    let (server, udp_port) = start_rat_udp(&[]);
    let client = UdpClient::connect(udp_port);
    let malformed: [Vec<u8>; 6] = [
        b"abc".to_vec(),
        // A header and nothing else.
        udp_frame(1, 0, 1, b""),
        // Parts of a request spread over two datagrams: memcached serves neither.
        udp_frame(2, 0, 2, b"get k\r\n"),
        udp_frame(3, 1, 2, b"get k\r\n"),
        // A count of zero datagrams.
        udp_frame(4, 0, 0, b"get k\r\n"),
        // A request cut off at the end of the datagram.
        udp_frame(5, 0, 1, b"set k 0 0 10\r\nabc"),
    ];
    for datagram in &malformed {
        client.send_raw(datagram);
    }
    assert!(
        client.receive(QUIET).is_empty(),
        "no answer to a malformed datagram"
    );
    // The cut-off set stored nothing, and both transports still answer.
    assert_eq!(
        client.request(6, b"get k\r\n", QUIET),
        [udp_frame(6, 0, 1, b"END\r\n")]
    );
    let mut tcp = server.client();
    assert_eq!(tcp.request(b"get k\r\n", b"END\r\n"), b"END\r\n");
}

#[test]
fn udp_sockets_count_as_connections_and_traffic() {
    let (server, udp_port) = start_rat_udp(&["-t", "2"]);
    // One UDP "connection" per worker thread, as memcached counts them, plus this
    // client, once the connection that checked the server was up has been closed.
    let mut observer = server.client();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let current = stat_in(&stats_reply(&mut observer, ""), "curr_connections");
        if current == "3" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "curr_connections stays {current}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let conns = stats_reply(&mut server.client(), "conns");
    let udp_line = format!(":addr udp:127.0.0.1:{udp_port}\r\n");
    assert_eq!(conns.matches(&udp_line).count(), 2, "{conns}");
    assert_eq!(conns.matches(":UDP UDP\r\n").count(), 2, "{conns}");
    assert_eq!(stat(&server, "settings", "udpport"), udp_port.to_string());

    // Frame headers count, both ways.
    let mut tcp = server.client();
    let before = stats_reply(&mut tcp, "");
    let client = UdpClient::connect(udp_port);
    let request = b"set u 0 0 2\r\nhi\r\n";
    let replies = client.request(1, request, QUIET);
    assert_eq!(replies, [udp_frame(1, 0, 1, b"STORED\r\n")]);
    let after = stats_reply(&mut tcp, "");
    let counter = |reply: &str, name: &str| stat_in(reply, name).parse::<usize>().unwrap();
    // Each `stats` request is counted before its reply is made, its reply after.
    assert_eq!(
        counter(&after, "bytes_read") - counter(&before, "bytes_read"),
        HEADER + request.len() + b"stats\r\n".len()
    );
    assert_eq!(
        counter(&after, "bytes_written") - counter(&before, "bytes_written"),
        before.len() + replies[0].len()
    );
}

/// Datagrams whose replies rat_memcached and memcached must frame identically.
const DIFFERENTIAL_SCRIPT: &[&[u8]] = &[
    b"set a 1 0 3\r\nabc\r\n",
    b"set b 2 0 1\r\nx\r\nset c 0 0 0\r\n\r\n",
    b"get a b c\r\n",
    b"get nope a\r\n",
    b"get a nope\r\n",
    b"get nope other\r\n",
    b"gets nope\r\n",
    b"set q 0 0 1 noreply\r\nq\r\nget q\r\n",
    b"bogus\r\ndelete nope\r\nincr nope 1\r\ntouch a 100\r\n",
    b"incr q 5\r\ndecr q 100\r\n",
    b"append a 0 0 2\r\nde\r\nprepend a 0 0 2\r\nxy\r\nget a\r\n",
    b"quit\r\nget a\r\n",
    // One command with a bare newline. (Two such commands in one datagram are
    // not compared: memcached 1.6.18 sometimes answers only the first.)
    b"get a\n",
    b"get\r\n",
];

#[test]
fn udp_replies_match_memcached_byte_for_byte() {
    let Some((memcached, memcached_udp)) = start_memcached_udp(&[]) else {
        eprintln!("memcached is not installed: skipping the UDP differential test");
        return;
    };
    let (rat, rat_udp) = start_rat_udp(&[]);
    let big = value_of(5000);
    for (server, _) in [(&memcached, memcached_udp), (&rat, rat_udp)] {
        let mut tcp = server.client();
        assert_eq!(
            tcp.request(&set_command("big", &big), b"\r\n"),
            b"STORED\r\n"
        );
    }
    let mut script: Vec<&[u8]> = DIFFERENTIAL_SCRIPT.to_vec();
    script.push(b"get big a\r\n");
    let memcached_client = UdpClient::connect(memcached_udp);
    let rat_client = UdpClient::connect(rat_udp);
    for (i, request) in script.iter().enumerate() {
        let id = 100 + i as u16;
        let expected = memcached_client.request(id, request, QUIET);
        assert!(!expected.is_empty(), "memcached answers {request:?}");
        let actual = rat_client.request(id, request, QUIET);
        assert_eq!(
            actual,
            expected,
            "replies to {:?} differ",
            String::from_utf8_lossy(request)
        );
    }
}
