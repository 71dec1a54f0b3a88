//! Authentication end to end: text-protocol tokens (`-Y`) and SASL PLAIN over
//! the binary protocol (`-S`), through a real `rat_memcached` process.
//!
//! Text authentication is also run against memcached started with the same
//! `-Y` file when it is installed, and the two must answer byte for byte
//! alike. memcached's SASL goes through Cyrus SASL, whose password store
//! Debian's build cannot be pointed at a plain file, so SASL successes are
//! checked against memcached's documented replies; its failures are compared
//! with a memcached whose Cyrus SASL offers PLAIN.

#![cfg(feature = "server")]

mod common;

use common::{free_port, rat_binary, run_to_exit, start_memcached, start_rat, RawClient, Server};
use std::fs;
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

const USERS: &str = "alice:secret\nbob:hunter2\n";

/// A password file for this test process.
fn password_file() -> PathBuf {
    static WRITE: Once = Once::new();
    let path = std::env::temp_dir().join(format!("rat-auth-users-{}", std::process::id()));
    WRITE.call_once(|| fs::write(&path, USERS).expect("write password file"));
    path
}

/// One request and the exact reply it must get; `None` when the server must
/// close the connection instead.
struct Exchange {
    request: Vec<u8>,
    reply: Option<&'static [u8]>,
}

fn exchange(request: &[u8], reply: &'static [u8]) -> Exchange {
    Exchange {
        request: request.to_vec(),
        reply: Some(reply),
    }
}

fn closes(request: Vec<u8>) -> Exchange {
    Exchange {
        request,
        reply: None,
    }
}

/// Runs each conversation on its own connection, one request at a time, and
/// returns everything received.
fn converse(server: &Server, conversations: &[Vec<Exchange>]) -> Vec<Vec<u8>> {
    let mut received = Vec::new();
    for conversation in conversations {
        let mut client = server.client();
        for step in conversation {
            client.send(&step.request);
            received.push(match step.reply {
                Some(reply) => client.read_exact(reply.len()),
                None => client.read_to_end(),
            });
        }
    }
    received
}

fn expected(conversations: &[Vec<Exchange>]) -> Vec<Vec<u8>> {
    conversations
        .iter()
        .flatten()
        .map(|step| step.reply.unwrap_or_default().to_vec())
        .collect()
}

/// A text `stats` reply's value for `name`.
fn stat(client: &mut RawClient, group: &str, name: &str) -> String {
    client.send(
        format!("stats {group}\r\n")
            .trim_end_matches(' ')
            .as_bytes(),
    );
    let reply = String::from_utf8(client.read_until(b"END\r\n")).expect("stats are text");
    reply
        .lines()
        .find_map(|line| line.strip_prefix(&format!("STAT {name} ")))
        .unwrap_or_else(|| panic!("no {name} in {reply}"))
        .to_owned()
}

fn text_conversations() -> Vec<Vec<Exchange>> {
    vec![
        vec![
            exchange(b"get k\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
            exchange(b"version\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
            exchange(
                b"set k 0 0 12\r\nalice wrong!\r\n",
                b"CLIENT_ERROR authentication failure\r\n",
            ),
            exchange(
                b"set k 0 0 5\r\nalice\r\n",
                b"CLIENT_ERROR bad authentication token format\r\n",
            ),
            exchange(
                b"set k 0 0 3\r\nabcde",
                b"CLIENT_ERROR bad command line termination\r\n",
            ),
            exchange(b"set k 0 0 -1\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
            // Key, flags and exptime are ignored; nothing is stored.
            exchange(b"set anykey 7 100 12\r\nbob  hunter2\r\n", b"STORED\r\n"),
            exchange(b"get anykey\r\n", b"END\r\n"),
            exchange(b"set k 3 0 2\r\nhi\r\n", b"STORED\r\n"),
            exchange(b"get k\r\n", b"VALUE k 3 2\r\nhi\r\nEND\r\n"),
        ],
        // A new connection starts unauthenticated again.
        vec![
            exchange(b"get k\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
            exchange(b"set k 0 0 12\r\nalice secret\r\n", b"STORED\r\n"),
            exchange(b"get k\r\n", b"VALUE k 3 2\r\nhi\r\nEND\r\n"),
        ],
        vec![closes(vec![b'x'; 2049])],
        vec![closes(
            [&b"set k 0 0 20000\r\n"[..], &[b'x'; 20002]].concat(),
        )],
    ]
}

#[test]
fn text_authentication_answers_as_memcached_does() {
    let file = password_file();
    let file_arg = file.to_str().expect("utf-8 temp path");
    let conversations = text_conversations();
    let rat = start_rat(&["-Y", file_arg]);
    let received = converse(&rat, &conversations);
    assert_eq!(
        received
            .iter()
            .map(|r| common::escape(r))
            .collect::<Vec<_>>(),
        expected(&conversations)
            .iter()
            .map(|r| common::escape(r))
            .collect::<Vec<_>>()
    );
    if let Some(memcached) = start_memcached(&["-Y", file_arg]) {
        assert_eq!(converse(&memcached, &conversations), received, "memcached");
    }
}

#[test]
fn text_authentication_is_counted_and_shown_in_stats() {
    let file = password_file();
    let file_arg = file.to_str().expect("utf-8 temp path");
    let mut servers = vec![start_rat(&["-Y", file_arg])];
    servers.extend(start_memcached(&["-Y", file_arg]));
    for server in &servers {
        let mut client = server.client();
        for credentials in ["alice nope", "carol secret", "bob hunter2"] {
            client.send(format!("set k 0 0 {}\r\n{credentials}\r\n", credentials.len()).as_bytes());
            client.read_line();
        }
        // Malformed tokens are not counted.
        client.send(b"set k 0 0 1\r\nx\r\n");
        client.read_line();
        let name = server.name();
        assert_eq!(stat(&mut client, "", "auth_cmds"), "3", "{name}");
        assert_eq!(stat(&mut client, "", "auth_errors"), "2", "{name}");
        assert_eq!(
            stat(&mut client, "settings", "auth_enabled_ascii"),
            file_arg,
            "{name}"
        );
        assert_eq!(
            stat(&mut client, "settings", "auth_enabled_sasl"),
            "no",
            "{name}"
        );
        assert_eq!(
            stat(&mut client, "settings", "binding_protocol"),
            "ascii",
            "{name}"
        );
    }
}

#[test]
fn an_unusable_password_file_stops_the_server() {
    let missing = std::env::temp_dir().join(format!("rat-auth-missing-{}", std::process::id()));
    let malformed = std::env::temp_dir().join(format!("rat-auth-bad-{}", std::process::id()));
    fs::write(&malformed, "alice:secret\nbob\n").expect("write malformed file");
    for (file, message) in [
        (&missing, "Could not open authfile ["),
        (
            &malformed,
            "has a malformed entry. Should be 'user:password'",
        ),
    ] {
        let port = free_port().to_string();
        let file = file.to_str().expect("utf-8 temp path");
        let args = ["-p", &port, "-l", "127.0.0.1", "-U", "0", "-Y", file];
        let finished = run_to_exit(rat_binary(), &args, Duration::from_secs(10));
        assert!(!finished.status.success(), "{file}");
        assert!(finished.stderr.contains(message), "{}", finished.stderr);
    }
}

#[test]
fn without_authentication_nothing_changes() {
    let server = start_rat(&[]);
    let mut client = server.client();
    assert_eq!(
        client.request(b"set k 0 0 12\r\nalice secret\r\n", b"\r\n"),
        b"STORED\r\n"
    );
    assert_eq!(stat(&mut client, "", "auth_cmds"), "0");
    assert_eq!(stat(&mut client, "settings", "auth_enabled_ascii"), "no");
}

mod sasl {
    use super::*;

    const LIST_MECHS: u8 = 0x20;
    const AUTH: u8 = 0x21;
    const STEP: u8 = 0x22;
    const GET: u8 = 0x00;
    const SET: u8 = 0x01;
    const VERSION: u8 = 0x0b;
    const STAT: u8 = 0x10;

    fn packet(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let body = extras.len() + key.len() + value.len();
        let mut packet = vec![0x80, opcode];
        packet.extend_from_slice(&(key.len() as u16).to_be_bytes());
        packet.push(extras.len() as u8);
        packet.extend_from_slice(&[0, 0, 0]);
        packet.extend_from_slice(&(body as u32).to_be_bytes());
        packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        packet.extend_from_slice(&[0; 8]);
        packet.extend_from_slice(extras);
        packet.extend_from_slice(key);
        packet.extend_from_slice(value);
        packet
    }

    /// A response: opcode, status, key and value.
    #[derive(Debug, PartialEq, Eq)]
    struct Response {
        opcode: u8,
        status: u16,
        key: Vec<u8>,
        value: Vec<u8>,
    }

    fn response(client: &mut RawClient) -> Response {
        let header = client.read_exact(24);
        assert_eq!(header[0], 0x81, "response magic");
        assert_eq!(&header[12..16], &0x1234_5678u32.to_be_bytes(), "opaque");
        let key_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let extras_len = usize::from(header[4]);
        let body_len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
        let body = client.read_exact(body_len);
        Response {
            opcode: header[1],
            status: u16::from_be_bytes([header[6], header[7]]),
            key: body[extras_len..extras_len + key_len].to_vec(),
            value: body[extras_len + key_len..].to_vec(),
        }
    }

    fn reply(opcode: u8, status: u16, value: &[u8]) -> Response {
        Response {
            opcode,
            status,
            key: Vec::new(),
            value: value.to_vec(),
        }
    }

    fn auth_failure(opcode: u8) -> Response {
        reply(opcode, 0x20, b"Auth failure.")
    }

    fn start_sasl_rat() -> Server {
        static POINT_AT_FILE: Once = Once::new();
        // Every server of this test process reads the same file.
        POINT_AT_FILE.call_once(|| std::env::set_var("MEMCACHED_SASL_PWDB", password_file()));
        start_rat(&["-S"])
    }

    #[test]
    fn plain_credentials_open_the_connection() {
        let server = start_sasl_rat();
        let mut client = server.client();
        client.send(&packet(LIST_MECHS, &[], b"", b""));
        assert_eq!(response(&mut client), reply(LIST_MECHS, 0, b"PLAIN"));
        client.send(&packet(AUTH, &[], b"PLAIN", b"\0alice\0wrong"));
        assert_eq!(response(&mut client), auth_failure(AUTH));
        client.send(&packet(AUTH, &[], b"PLAIN", b"\0alice\0secret"));
        assert_eq!(response(&mut client), reply(AUTH, 0, b"Authenticated"));
        client.send(&packet(SET, &[0; 8], b"k", b"v"));
        assert_eq!(response(&mut client).status, 0);
        client.send(&packet(GET, &[], b"k", b""));
        let got = response(&mut client);
        assert_eq!((got.status, got.value), (0, b"v".to_vec()));

        // PLAIN without an initial response: the credentials come in a step.
        let mut stepped = server.client();
        stepped.send(&packet(AUTH, &[], b"PLAIN", b""));
        assert_eq!(response(&mut stepped), reply(AUTH, 0x21, b""));
        stepped.send(&packet(STEP, &[], b"PLAIN", b"bob\0bob\0hunter2"));
        assert_eq!(response(&mut stepped), reply(STEP, 0, b"Authenticated"));
        stepped.send(&packet(GET, &[], b"k", b""));
        assert_eq!(response(&mut stepped).status, 0);

        let mut stats = server.client();
        stats.send(&packet(AUTH, &[], b"PLAIN", b"\0bob\0hunter2"));
        response(&mut stats);
        stats.send(&packet(STAT, &[], b"", b""));
        let mut counted = Vec::new();
        loop {
            let stat = response(&mut stats);
            if stat.key.is_empty() {
                break;
            }
            if stat.key.starts_with(b"auth_") {
                counted.push((stat.key, stat.value));
            }
        }
        let pair = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        assert_eq!(counted, [pair("auth_cmds", "4"), pair("auth_errors", "1")]);
    }

    /// Requests that fail the same way in memcached, with the replies
    /// memcached gives.
    fn failing_conversations() -> Vec<Vec<(Vec<u8>, Option<Response>)>> {
        vec![
            vec![
                (packet(VERSION, &[], b"", b""), None),
                (
                    packet(STEP, &[], b"PLAIN", b"\0alice\0secret"),
                    Some(auth_failure(STEP)),
                ),
                (
                    packet(AUTH, &[], b"CRAM-MD5", b"x"),
                    Some(auth_failure(AUTH)),
                ),
                (
                    packet(AUTH, &[], b"PLAIN", b"alice"),
                    Some(auth_failure(AUTH)),
                ),
                (
                    packet(AUTH, &[], &[b'P'; 33], b"abc"),
                    Some(reply(AUTH, 4, b"Invalid arguments")),
                ),
                (
                    packet(AUTH, &[], b"PLAIN", b"\0alice\0nope"),
                    Some(auth_failure(AUTH)),
                ),
                // Not authenticated: refused, and the connection is closed.
                (packet(GET, &[], b"k", b""), Some(auth_failure(GET))),
            ],
            vec![(packet(SET, &[0; 8], b"k", b"v"), Some(auth_failure(SET)))],
        ]
    }

    /// Runs the conversations; after each one the server must have closed.
    fn run_failures(server: &Server) -> Vec<String> {
        let mut seen = Vec::new();
        for conversation in failing_conversations() {
            let mut client = server.client();
            for (request, expected) in conversation {
                client.send(&request);
                let got = response(&mut client);
                if let Some(expected) = expected {
                    assert_eq!(got, expected, "{}", server.name());
                }
                seen.push(format!("{:?}", (got.opcode, got.status, got.key)));
            }
            assert_eq!(client.read_to_end(), b"", "{} closes", server.name());
        }
        seen
    }

    #[test]
    fn failures_answer_as_memcached_does() {
        let server = start_sasl_rat();
        let seen = run_failures(&server);
        // memcached needs a Cyrus SASL configuration that offers PLAIN.
        let config = std::env::temp_dir().join(format!("rat-auth-sasl-{}", std::process::id()));
        fs::create_dir_all(&config).expect("create sasl config dir");
        fs::write(config.join("memcached.conf"), "mech_list: plain\n").expect("sasl config");
        std::env::set_var("SASL_CONF_PATH", &config);
        if let Some(memcached) = start_memcached(&["-S"]) {
            assert_eq!(run_failures(&memcached), seen);
        }
    }

    #[test]
    fn text_clients_cannot_reach_a_sasl_server() {
        let server = start_sasl_rat();
        let mut client = server.client();
        // Read as a binary header: the wrong magic closes the connection.
        client.send(b"get a_key_long_enough_for_a_header\r\n");
        assert_eq!(client.read_to_end(), b"");
    }
}
