use super::opcode::*;
use super::*;
use crate::test_rng::TestRng;

/// A request packet as a client builds it.
fn packet(op: u8, extras: &[u8], key: &[u8], value: &[u8], cas: u64, opaque: u32) -> Vec<u8> {
    let mut out = Vec::new();
    Header {
        magic: REQUEST_MAGIC,
        opcode: op,
        key_len: key.len() as u16,
        extras_len: extras.len() as u8,
        data_type: 0,
        vbucket_or_status: 0,
        body_len: (extras.len() + key.len() + value.len()) as u32,
        opaque,
        cas,
    }
    .write(&mut out);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// A packet whose header lengths are given rather than derived.
fn raw(op: u8, key_len: u16, extras_len: u8, body_len: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Header {
        magic: REQUEST_MAGIC,
        opcode: op,
        key_len,
        extras_len,
        body_len,
        ..Header::default()
    }
    .write(&mut out);
    out.extend_from_slice(body);
    out
}

fn request(input: &[u8]) -> Request<'_> {
    match parse(input) {
        Parse::Request(request) => request,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn store_extras(flags: u32, exptime: u32) -> Vec<u8> {
    [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
}

fn delta_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    [
        &delta.to_be_bytes()[..],
        &initial.to_be_bytes(),
        &exptime.to_be_bytes(),
    ]
    .concat()
}

#[test]
fn header_round_trips() {
    let header = Header {
        magic: RESPONSE_MAGIC,
        opcode: 0x42,
        key_len: 0x1234,
        extras_len: 4,
        data_type: 1,
        vbucket_or_status: 0x81,
        body_len: 0x0102_0304,
        opaque: 0xdead_beef,
        cas: 0x0102_0304_0506_0708,
    };
    let mut out = Vec::new();
    header.write(&mut out);
    assert_eq!(out.len(), HEADER_LEN);
    assert_eq!(&out[..8], &[0x81, 0x42, 0x12, 0x34, 4, 1, 0, 0x81]);
    assert_eq!(Header::read(out.as_slice().try_into().unwrap()), header);
}

#[test]
fn parses_every_served_opcode() {
    let set = packet(SETQ, &store_extras(5, 100), b"k", b"val", 9, 7);
    let parsed = request(&set);
    assert!(parsed.quiet);
    assert_eq!(parsed.len, set.len());
    assert_eq!((parsed.header.cas, parsed.header.opaque), (9, 7));
    assert_eq!(
        parsed.command,
        Command::Store {
            kind: StoreKind::Set,
            key: b"k",
            flags: 5,
            exptime: 100,
            value: Body::Complete(b"val"),
        }
    );
    let incr = packet(DECREMENT, &delta_extras(3, 10, NO_CREATE), b"n", b"", 0, 0);
    assert_eq!(
        request(&incr).command,
        Command::Delta {
            incr: false,
            key: b"n",
            delta: 3,
            initial: 10,
            exptime: NO_CREATE
        }
    );
    let cases: Vec<(Vec<u8>, Command<'static>, bool)> = vec![
        (
            packet(GETKQ, &[], b"key", b"", 0, 0),
            Command::Get {
                key: b"key",
                with_key: true,
            },
            true,
        ),
        (
            packet(GET, &[], b"key", b"", 0, 0),
            Command::Get {
                key: b"key",
                with_key: false,
            },
            false,
        ),
        (
            packet(PREPENDQ, &[], b"k", b"xy", 0, 0),
            Command::Concat {
                append: false,
                key: b"k",
                value: Body::Complete(b"xy"),
            },
            true,
        ),
        (
            packet(DELETE, &[], b"k", b"", 0, 0),
            Command::Delete { key: b"k" },
            false,
        ),
        (packet(QUITQ, &[], b"", b"", 0, 0), Command::Quit, true),
        (
            packet(FLUSH, &7u32.to_be_bytes(), b"", b"", 0, 0),
            Command::Flush { exptime: 7 },
            false,
        ),
        (
            packet(FLUSHQ, &[], b"", b"", 0, 0),
            Command::Flush { exptime: 0 },
            true,
        ),
        (packet(NOOP, &[], b"", b"", 0, 0), Command::Noop, false),
        (
            packet(VERSION, &[], b"", b"", 0, 0),
            Command::Version,
            false,
        ),
        (
            packet(STAT, &[], b"items", b"", 0, 0),
            Command::Stat { group: b"items" },
            false,
        ),
        (
            packet(TOUCH, &9u32.to_be_bytes(), b"k", b"", 0, 0),
            Command::Touch {
                key: b"k",
                exptime: 9,
            },
            false,
        ),
        (
            packet(GATKQ, &9u32.to_be_bytes(), b"k", b"", 0, 0),
            Command::GetAndTouch {
                key: b"k",
                exptime: 9,
                with_key: true,
            },
            true,
        ),
        (
            packet(VERBOSITY, &1u32.to_be_bytes(), b"", b"", 0, 0),
            Command::Unknown { swallow: 4 },
            false,
        ),
        (
            packet(SASL_AUTH, &[], b"PLAIN", b"\0u\0p", 0, 0),
            Command::SaslAuth {
                step: false,
                mechanism: b"PLAIN",
                message: Body::Complete(b"\0u\0p"),
            },
            false,
        ),
        (
            packet(SASL_STEP, &[], b"PLAIN", b"", 0, 0),
            Command::SaslAuth {
                step: true,
                mechanism: b"PLAIN",
                message: Body::Complete(b""),
            },
            false,
        ),
        (
            packet(SASL_LIST_MECHS, &[], b"", b"", 0, 0),
            Command::SaslListMechs,
            false,
        ),
    ];
    for (bytes, command, quiet) in cases {
        let parsed = request(&bytes);
        assert_eq!(parsed.command, command, "{bytes:02x?}");
        assert_eq!(parsed.quiet, quiet, "{bytes:02x?}");
    }
}

#[test]
fn refuses_what_memcached_refuses() {
    let refused = |bytes: &[u8]| match request(bytes).command {
        Command::Refused { status } => Some(status),
        _ => None,
    };
    use Status::*;
    // Key and extras longer than the body.
    assert_eq!(refused(&raw(GET, 3, 0, 2, b"abc")), Some(UnknownCommand));
    assert_eq!(refused(&raw(SET, 1, 8, 8, &[0; 9])), Some(UnknownCommand));
    // Keys over 250 bytes.
    assert_eq!(
        refused(&packet(GET, &[], &[b'k'; 251], b"", 0, 0)),
        Some(InvalidArguments)
    );
    assert_eq!(refused(&packet(GET, &[], &[b'k'; 250], b"", 0, 0)), None);
    // Wrong extras, key or body for the opcode.
    for bytes in [
        packet(GET, &[1, 2, 3, 4], b"abc", b"", 0, 0),
        packet(GET, &[], b"", b"", 0, 0),
        packet(GET, &[], b"k", b"v", 0, 0),
        packet(SET, &[], b"abc", b"v", 0, 0),
        packet(SET, &store_extras(0, 0), b"", b"v", 0, 0),
        packet(APPEND, &[0; 4], b"k", b"v", 0, 0),
        packet(DELETE, &[], b"", b"", 0, 0),
        packet(INCREMENT, &[0; 8], b"n", b"", 0, 0),
        packet(INCREMENT, &delta_extras(1, 1, 1), b"n", b"x", 0, 0),
        packet(NOOP, &[], b"", b"xx", 0, 0),
        packet(VERSION, &[], b"k", b"", 0, 0),
        packet(QUIT, &[0; 4], b"", b"", 0, 0),
        packet(FLUSH, b"abc", b"", b"", 0, 0),
        packet(FLUSH, &[0; 4], b"", b"x", 0, 0),
        packet(STAT, &[0; 4], b"", b"", 0, 0),
        packet(TOUCH, &[], b"k", b"", 0, 0),
        packet(GAT, &[0; 4], b"", b"", 0, 0),
        packet(SASL_LIST_MECHS, &[], b"", b"x", 0, 0),
        packet(SASL_AUTH, &[], b"", b"x", 0, 0),
    ] {
        assert_eq!(refused(&bytes), Some(InvalidArguments), "{bytes:02x?}");
    }
}

#[test]
fn reads_only_what_memcached_reads() {
    // An unknown opcode: header, extras and key are read, then `body length`
    // more bytes are skipped.
    let unknown = packet(0x50, &[], b"abc", b"", 0, 0);
    let parsed = request(&unknown);
    assert_eq!(parsed.len, HEADER_LEN + 3);
    assert_eq!(parsed.command, Command::Unknown { swallow: 3 });
    // stat and touch leave body bytes beyond the key for the next packet.
    let mut stat = raw(STAT, 5, 0, 5 + 24, b"items");
    stat.extend_from_slice(&packet(NOOP, &[], b"", b"", 0, 0));
    assert_eq!(request(&stat).len, HEADER_LEN + 5);
    let touch = raw(TOUCH, 1, 4, 9, b"\0\0\0\x01k");
    assert_eq!(request(&touch).len, HEADER_LEN + 5);
}

#[test]
fn a_storage_request_is_known_before_its_value_arrives() {
    let set = packet(SET, &store_extras(0, 0), b"key", b"0123456789", 0, 0);
    let head = HEADER_LEN + 8 + 3;
    for cut in 0..set.len() {
        match parse(&set[..cut]) {
            Parse::Incomplete { wanted } => {
                assert!(cut < head);
                assert_eq!(wanted, if cut < HEADER_LEN { HEADER_LEN } else { head });
            }
            Parse::Request(request) => {
                assert!(cut >= head);
                assert_eq!(request.len, head);
                let Command::Store { value, .. } = request.command else {
                    panic!("not a store: {request:?}");
                };
                assert_eq!(value, Body::Pending { len: 10 });
            }
            Parse::BadMagic => panic!("bad magic at {cut}"),
        }
    }
    assert_eq!(request(&set).len, set.len());
}

#[test]
fn a_wrong_magic_byte_is_refused_once_a_header_is_there() {
    let mut bytes = packet(NOOP, &[], b"", b"", 0, 0);
    bytes[0] = RESPONSE_MAGIC;
    assert_eq!(
        parse(&bytes[..23]),
        Parse::Incomplete { wanted: HEADER_LEN }
    );
    assert_eq!(parse(&bytes), Parse::BadMagic);
}

#[test]
fn responses_match_memcached_bytes() {
    let reply = Response {
        opcode: GET,
        opaque: 0x0102_0304,
    };
    let mut out = Vec::new();
    reply.error(&mut out, Status::KeyNotFound);
    let mut expected = vec![0x81, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4];
    expected.extend_from_slice(&[0; 8]);
    expected.extend_from_slice(b"Not found");
    assert_eq!(out, expected);

    out.clear();
    reply.success(&mut out, 0x2a, &5u32.to_be_bytes(), b"", b"hello");
    let mut expected = vec![0x81, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4];
    expected.extend_from_slice(&0x2au64.to_be_bytes());
    expected.extend_from_slice(&[0, 0, 0, 5]);
    expected.extend_from_slice(b"hello");
    assert_eq!(out, expected);

    out.clear();
    Response {
        opcode: STAT,
        opaque: 0,
    }
    .stat(&mut out, "pid", 1234);
    assert_eq!(&out[2..4], &[0, 3]);
    assert_eq!(&out[8..12], &[0, 0, 0, 7]);
    assert_eq!(&out[HEADER_LEN..], b"pid1234");

    out.clear();
    Response {
        opcode: GETK,
        opaque: 0,
    }
    .miss_with_key(&mut out, b"zz");
    assert_eq!(&out[..12], &[0x81, GETK, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    assert_eq!(&out[HEADER_LEN..], b"zz");
}

/// Fewer than `n` random bytes.
fn bytes_below(rng: &mut TestRng, n: usize) -> Vec<u8> {
    let len = rng.below(n as u64) as usize;
    rng.bytes(len)
}

/// A random valid request: its bytes and what parsing them must give.
fn random_request(rng: &mut TestRng) -> (Vec<u8>, u8, Vec<u8>, Vec<u8>, Vec<u8>) {
    const OPS: &[u8] = &[
        GET, GETQ, GETK, GETKQ, SET, SETQ, ADD, ADDQ, REPLACE, REPLACEQ, DELETE, DELETEQ,
        INCREMENT, INCREMENTQ, DECREMENT, DECREMENTQ, APPEND, APPENDQ, PREPEND, PREPENDQ, TOUCH,
        GAT, GATQ, GATK, GATKQ, NOOP, VERSION, FLUSH, FLUSHQ, STAT,
    ];
    let op = OPS[rng.below(OPS.len() as u64) as usize];
    let key_len = 1 + rng.below(KEY_MAX_LENGTH as u64) as usize;
    let key = rng.bytes(key_len);
    let (extras, key, value) = match op {
        GET | GETQ | GETK | GETKQ | DELETE | DELETEQ => (vec![], key, vec![]),
        SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ => {
            let value = bytes_below(rng, 300);
            (rng.bytes(8), key, value)
        }
        APPEND | APPENDQ | PREPEND | PREPENDQ => {
            let value = bytes_below(rng, 300);
            (vec![], key, value)
        }
        INCREMENT | INCREMENTQ | DECREMENT | DECREMENTQ => (rng.bytes(20), key, vec![]),
        TOUCH | GAT | GATQ | GATK | GATKQ => (rng.bytes(4), key, vec![]),
        FLUSH | FLUSHQ if rng.below(2) == 0 => (rng.bytes(4), vec![], vec![]),
        STAT => (vec![], bytes_below(rng, 12), vec![]),
        _ => (vec![], vec![], vec![]),
    };
    let bytes = packet(op, &extras, &key, &value, rng.next(), rng.next() as u32);
    (bytes, op, extras, key, value)
}

/// Checks that `parsed` says what `extras`, `key` and `value` said.
fn check_fields(parsed: &Request<'_>, op: u8, extras: &[u8], key: &[u8], value: &[u8]) {
    let u32_at = |at: usize| u32::from_be_bytes(extras[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_be_bytes(extras[at..at + 8].try_into().unwrap());
    assert_eq!(parsed.header.opcode, op);
    match parsed.command {
        Command::Get { key: k, .. } | Command::Delete { key: k } => assert_eq!(k, key),
        Command::Store {
            key: k,
            flags,
            exptime,
            value: v,
            ..
        } => {
            assert_eq!((k, flags, exptime), (key, u32_at(0), u32_at(4)));
            assert_eq!(v, Body::Complete(value));
        }
        Command::Concat {
            key: k, value: v, ..
        } => assert_eq!((k, v), (key, Body::Complete(value))),
        Command::Delta {
            key: k,
            delta,
            initial,
            exptime,
            ..
        } => assert_eq!(
            (k, delta, initial, exptime),
            (key, u64_at(0), u64_at(8), u32_at(16))
        ),
        Command::Touch { key: k, exptime }
        | Command::GetAndTouch {
            key: k, exptime, ..
        } => {
            assert_eq!((k, exptime), (key, u32_at(0)))
        }
        Command::Flush { exptime } => {
            assert_eq!(exptime, if extras.is_empty() { 0 } else { u32_at(0) })
        }
        Command::Stat { group } => assert_eq!(group, key),
        Command::Noop | Command::Version => {}
        other => panic!("valid request parsed as {other:?}"),
    }
}

#[test]
fn random_valid_requests_parse_back() {
    let mut rng = TestRng::new(0x9e37_79b9_7f4a_7c15);
    for _ in 0..5_000 {
        let (bytes, op, extras, key, value) = random_request(&mut rng);
        let parsed = request(&bytes);
        assert_eq!(parsed.len, bytes.len(), "{op:#x}");
        check_fields(&parsed, op, &extras, &key, &value);
    }
}

#[test]
fn a_stream_fed_byte_by_byte_parses_like_a_whole_one() {
    let mut rng = TestRng::new(42);
    let packets: Vec<_> = (0..200).map(|_| random_request(&mut rng)).collect();
    let stream: Vec<u8> = packets.iter().flat_map(|p| p.0.clone()).collect();
    // Grow the visible input one byte at a time, consuming each packet once
    // all of it is there, as a connection does.
    let mut start = 0;
    let mut next = 0;
    for end in 0..=stream.len() {
        let visible = &stream[start..end];
        let (bytes, op, extras, key, value) = &packets[next.min(packets.len() - 1)];
        match parse(visible) {
            Parse::Incomplete { wanted } => assert!(wanted > visible.len()),
            Parse::BadMagic => panic!("desynchronised at byte {end}"),
            Parse::Request(request) => {
                let value_pending = matches!(
                    request.command,
                    Command::Store {
                        value: Body::Pending { .. },
                        ..
                    } | Command::Concat {
                        value: Body::Pending { .. },
                        ..
                    }
                );
                if value_pending {
                    assert!(visible.len() < bytes.len());
                    continue;
                }
                assert_eq!(visible.len(), bytes.len(), "packet {next} parsed early");
                check_fields(&request, *op, extras, key, value);
                start += request.len;
                next += 1;
            }
        }
    }
    assert_eq!(next, packets.len());
    assert_eq!(start, stream.len());
}

#[test]
fn random_bytes_never_panic_and_never_overrun() {
    let mut rng = TestRng::new(7);
    for _ in 0..20_000 {
        let mut bytes = bytes_below(&mut rng, 80);
        if !bytes.is_empty() && rng.below(4) > 0 {
            bytes[0] = REQUEST_MAGIC;
        }
        if let Parse::Request(request) = parse(&bytes) {
            assert!(request.len <= bytes.len());
            assert!(request.len >= HEADER_LEN);
        }
    }
}

#[test]
fn stat_keys_name_groups_as_memcached_reads_them() {
    let cases: [(&[u8], StatsGroup<'_>); 12] = [
        (b"", StatsGroup::General),
        (b"settings", StatsGroup::Settings),
        (b"settingsx", StatsGroup::Settings),
        (b"resetfoo", StatsGroup::Reset),
        (b"items", StatsGroup::Items),
        (b"itemsx", StatsGroup::Unknown),
        (b"slabs", StatsGroup::Slabs),
        (b"conns", StatsGroup::Unknown),
        (b"detail offx", StatsGroup::Detail(Some(b"off"))),
        (b"detail dumpy", StatsGroup::Detail(Some(b"dump"))),
        (b"detail on", StatsGroup::Detail(Some(b"on"))),
        (b"detail", StatsGroup::Detail(None)),
    ];
    for (key, group) in cases {
        assert_eq!(stats_group(key), group, "{}", String::from_utf8_lossy(key));
    }
}
