//! The meta parser against memcached 1.6.18's `_meta_flag_preparse` and its callers.

use super::*;
use crate::protocol::text::{parse, Command, Parse};
use crate::test_rng::TestRng;

/// Parses one complete line into its meta request.
fn request(line: &[u8]) -> Request<'_> {
    match parse(line) {
        Parse::Line {
            command: Command::Meta(request),
            len,
        } => {
            assert_eq!(len, line.len(), "{}", String::from_utf8_lossy(line));
            request
        }
        other => panic!("{}: {other:?}", String::from_utf8_lossy(line)),
    }
}

fn command(line: &[u8]) -> MetaCommand<'_> {
    match request(line) {
        Request::Command(command) => command,
        other => panic!("{}: {other:?}", String::from_utf8_lossy(line)),
    }
}

fn error_of(line: &[u8]) -> (&'static str, usize) {
    match request(line) {
        Request::Error { reply, swallow } => (reply, swallow),
        other => panic!("{}: {other:?}", String::from_utf8_lossy(line)),
    }
}

#[test]
fn mg_flags_are_recorded_and_kept_in_order() {
    let parsed = command(b"mg foo v t T30 N-1 R5 Oab k q u h\r\n");
    assert_eq!(parsed.kind, MetaKind::Get);
    assert_eq!(parsed.key.raw(), b"foo");
    let options = parsed.options;
    assert!(options.value && options.quiet && options.no_update && options.locked);
    assert_eq!(
        (options.ttl, options.vivify, options.recache),
        (Some(30), Some(-1), Some(5))
    );
    let flags: Vec<&[u8]> = parsed.flags().collect();
    let expected: [&[u8]; 10] = [
        b"v", b"t", b"T30", b"N-1", b"R5", b"Oab", b"k", b"q", b"u", b"h",
    ];
    assert_eq!(flags, expected);
}

#[test]
fn only_h_l_n_t_r_lock_the_item() {
    assert!(!command(b"mg k v c f s t k O1 q u\r\n").options.locked);
    for flag in ["h", "l", "N1", "T1", "R1"] {
        let line = format!("mg k {flag}\r\n");
        assert!(command(line.as_bytes()).options.locked, "{flag}");
    }
}

#[test]
fn ms_carries_its_length_mode_and_store_options() {
    let parsed = command(b"ms a2V5 5 MA C77 F9 T-1 I b\r\n");
    assert_eq!(
        parsed.kind,
        MetaKind::Set {
            mode: SetMode::Append,
            value_len: 5
        }
    );
    let options = parsed.options;
    assert_eq!(options.compare_cas, Some(77));
    assert_eq!((options.client_flags, options.ttl), (9, Some(-1)));
    assert!(options.invalidate);
    assert!(parsed.key.is_binary());
    for (mode, expected) in [
        ("", SetMode::Set),
        (" MS", SetMode::Set),
        (" ME", SetMode::Add),
        (" MP", SetMode::Prepend),
        (" MR", SetMode::Replace),
    ] {
        let line = format!("ms k 1{mode}\r\n");
        let kind = command_kind(line.as_bytes());
        assert_eq!(
            kind,
            MetaKind::Set {
                mode: expected,
                value_len: 1
            },
            "{mode}"
        );
    }
}

fn command_kind(line: &[u8]) -> MetaKind {
    command(line).kind
}

#[test]
fn ma_modes_and_numbers() {
    let parsed = command(b"ma n MD D10 J5 N0 v\r\n");
    assert_eq!(parsed.kind, MetaKind::Arithmetic { incr: false });
    assert_eq!((parsed.options.delta, parsed.options.initial), (10, 5));
    assert_eq!(
        command_kind(b"ma n M-\r\n"),
        MetaKind::Arithmetic { incr: false }
    );
    assert_eq!(
        command_kind(b"ma n M+\r\n"),
        MetaKind::Arithmetic { incr: true }
    );
    assert_eq!(
        command_kind(b"ma n MI\r\n"),
        MetaKind::Arithmetic { incr: true }
    );
    assert_eq!(command(b"ma n\r\n").options.delta, 1, "delta defaults to 1");
}

#[test]
fn noop_and_debug() {
    assert_eq!(request(b"mn\r\n"), Request::Noop);
    assert_eq!(request(b"mn with anything\r\n"), Request::Noop);
    let Request::Debug(key) = request(b"me Zm9v b\r\n") else {
        panic!("me");
    };
    assert!(key.is_binary());
    assert_eq!(key.decode(&mut [0; KEY_MAX_LENGTH]), b"foo");
    // `me` only looks for a lone `b` right after the key.
    let Request::Debug(key) = request(b"me Zm9v x b\r\n") else {
        panic!("me");
    };
    assert!(!key.is_binary());
    assert_eq!(error_of(b"me\r\n"), (BAD_FORMAT, 0));
    assert_eq!(error_of(b"me !!!! b\r\n"), (BAD_FORMAT, 0));
}

#[test]
fn short_and_unknown_commands_are_errors() {
    for line in [
        &b"mg\r\n"[..],
        b"ms\r\n",
        b"md\r\n",
        b"ma\r\n",
        b"mz k\r\n",
        b"mG k\r\n",
    ] {
        assert_eq!(
            error_of(line),
            (ERROR, 0),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    // Three letters is not a meta command, nor is upper case.
    assert!(matches!(
        parse(b"mgg k\r\n"),
        Parse::Line {
            command: Command::Error { .. },
            ..
        }
    ));
    assert!(matches!(
        parse(b"MG k\r\n"),
        Parse::Line {
            command: Command::Error { .. },
            ..
        }
    ));
}

#[test]
fn flag_errors_follow_memcacheds_precedence() {
    let cases: &[(&[u8], &str)] = &[
        (b"mg k E\r\n", INVALID_FLAG),
        (b"mg k v v\r\n", DUPLICATE_FLAG),
        (b"mg k \x80\r\n", DUPLICATE_FLAG),
        (b"mg k Tx\r\n", BAD_TOKEN),
        (b"mg k T\r\n", BAD_TOKEN),
        (b"mg k Nx\r\n", BAD_TOKEN),
        (b"mg k R1.5\r\n", BAD_TOKEN),
        (b"mg k Cx\r\n", BAD_TOKEN),
        // A bad F sets no message of its own.
        (b"mg k Fx\r\n", BAD_FORMAT),
        (b"mg k Tx Fx\r\n", BAD_TOKEN),
        (b"mg k Fx Tx\r\n", BAD_TOKEN),
        // The scan goes on after a bad token; an unknown flag then wins.
        (b"mg k Tx zz\r\n", INVALID_FLAG),
        (b"mg k Tx Dx\r\n", INVALID_DELTA),
        (b"mg k Jx\r\n", INVALID_INITIAL),
        (b"mg k MAB\r\n", BAD_MODE_LENGTH),
        (b"mg k M\r\n", BAD_MODE_LENGTH),
        (b"mg k b\r\n", BAD_KEY_ENCODING),
        (b"mg k b v v\r\n", DUPLICATE_FLAG),
        (b"md k Cx\r\n", INVALID_OR_DUPLICATE),
        (b"md k E\r\n", INVALID_OR_DUPLICATE),
        (b"ma k Dx\r\n", INVALID_OR_DUPLICATE),
        (b"ma k MX\r\n", BAD_ARITH_MODE),
        (
            b"md k O123456789012345678901234567890123\r\n",
            OPAQUE_TOO_LONG,
        ),
    ];
    for &(line, reply) in cases {
        assert_eq!(
            error_of(line),
            (reply, 0),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    // The mode is not checked by mg or md.
    assert!(matches!(request(b"mg k MX\r\n"), Request::Command(_)));
    // A 32-byte opaque is fine; mg and ma meet longer ones while answering.
    assert!(matches!(
        request(b"md k O1234567890123456789012345678901\r\n"),
        Request::Command(_)
    ));
    assert!(matches!(
        request(b"mg k O123456789012345678901234567890123\r\n"),
        Request::Command(_)
    ));
}

#[test]
fn ms_errors_swallow_the_data_once_its_length_is_known() {
    let cases: &[(&[u8], &str, usize)] = &[
        (b"ms k\r\n", BAD_FORMAT, 0),
        (b"ms k abc\r\n", BAD_FORMAT, 0),
        (b"ms k -1\r\n", BAD_FORMAT, 0),
        (b"ms k 2147483646\r\n", BAD_FORMAT, 0),
        (b"ms k 3 zz\r\n", INVALID_FLAG, 5),
        (b"ms k 3 Fx\r\n", BAD_FORMAT, 5),
        (b"ms k 3 MX\r\n", BAD_SET_MODE, 5),
        (
            b"ms k 3 O123456789012345678901234567890123\r\n",
            OPAQUE_TOO_LONG,
            5,
        ),
        // An invalid mode is reported before an over-long opaque.
        (
            b"ms k 3 O123456789012345678901234567890123 MX\r\n",
            BAD_SET_MODE,
            5,
        ),
        (b"ms k 2147483645 q q\r\n", DUPLICATE_FLAG, 2147483647),
    ];
    for &(line, reply, swallow) in cases {
        assert_eq!(
            error_of(line),
            (reply, swallow),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn key_and_token_count_limits() {
    let long_key = format!("mg {} v\r\n", "k".repeat(251));
    assert_eq!(error_of(long_key.as_bytes()), (BAD_FORMAT, 0));
    let ok_key = format!("mg {} v\r\n", "k".repeat(250));
    assert!(matches!(request(ok_key.as_bytes()), Request::Command(_)));
    // 17 flags make 20 tokens with the command, the key and memcached's terminal one.
    let flags = "v c f s t k h l u q O1 P L T1 N1 R1 F1";
    let line = format!("mg k {flags}\r\n");
    assert!(matches!(request(line.as_bytes()), Request::Command(_)));
    let line = format!("mg k {flags} C1\r\n");
    assert_eq!(error_of(line.as_bytes()), (GET_FLAGS_TOO_LONG, 0));
    let line = format!("md k {flags} C1\r\n");
    assert_eq!(error_of(line.as_bytes()), (FLAGS_TOO_LONG, 0));
    let line = format!("ms k 1 {flags}\r\n");
    assert_eq!(error_of(line.as_bytes()), (FLAGS_TOO_LONG, 0));
}

#[test]
fn base64_decoding_matches_memcached() {
    let mut buf = [0; KEY_MAX_LENGTH];
    let cases: &[(&[u8], Option<&[u8]>)] = &[
        (b"YWJj", Some(b"abc")),
        (b"YWI=", Some(b"ab")),
        (b"YQ==", Some(b"a")),
        // Bytes outside the alphabet are skipped.
        (b"Y!W-Jj", Some(b"abc")),
        // Decoding stops after the first padded group.
        (b"YQ==YWJj", Some(b"a")),
        (b"YWJ", None),
        (b"", None),
        (b"!!!!", None),
        (b"A===", None),
        (b"====", None),
    ];
    for &(encoded, decoded) in cases {
        let got = base64_decode(encoded, &mut buf).map(|len| buf[..len].to_vec());
        assert_eq!(
            got.as_deref(),
            decoded,
            "{}",
            String::from_utf8_lossy(encoded)
        );
    }
    for input in [&b""[..], b"a", b"ab", b"abc", b"\x00\xff\x10binary"] {
        let mut encoded = Vec::new();
        base64_encode(input, &mut encoded);
        if input.is_empty() {
            assert!(encoded.is_empty());
            continue;
        }
        let len = base64_decode(&encoded, &mut buf).expect("round trip");
        assert_eq!(&buf[..len], input);
    }
    let mut encoded = Vec::new();
    base64_encode(b"abcd", &mut encoded);
    assert_eq!(encoded, b"YWJjZA==");
}

#[test]
fn reply_encoders() {
    let mut out = Vec::new();
    value_header(&mut out, 3);
    flag_number(&mut out, b'c', 42);
    flag_ttl(&mut out, b't', None);
    flag_ttl(&mut out, b't', Some(7));
    echo(&mut out, b"Oxy");
    key(&mut out, b"abc", true);
    key(&mut out, b"plain", false);
    flag(&mut out, b'W');
    end_line(&mut out);
    data(&mut out, b"abc");
    code(&mut out, b"EN");
    end_line(&mut out);
    assert_eq!(
        out,
        b"VA 3 c42 t-1 t7 Oxy kYWJj b kplain W\r\nabc\r\nEN\r\n".as_slice()
    );
}

/// Requests covering every command and flag shape, each a complete line.
const REQUESTS: &[&[u8]] = &[
    b"mg foo v t T30 N-1 R5 Oab k q u h l s c f\r\n",
    b"mg Zm9v b k v\r\n",
    b"ms key 5 MA C77 F9 T-1 I b k c O1 q\r\n",
    b"ms key 5 MX\r\n",
    b"md key I T30 C5 q k Oz\r\n",
    b"ma key MD D10 J5 N0 v t c T5 k O1\r\n",
    b"mn\r\n",
    b"me Zm9v b\r\n",
    b"mg k E\n",
    b"mg\r\n",
];

#[test]
fn every_request_cut_at_every_byte_waits_for_its_line() {
    for &full in REQUESTS {
        let whole = parse(full);
        assert!(matches!(whole, Parse::Line { len, .. } if len == full.len()));
        for cut in 0..full.len() {
            assert_eq!(
                parse(&full[..cut]),
                Parse::Incomplete,
                "{} cut at {cut}",
                String::from_utf8_lossy(full)
            );
        }
        // Whatever follows the line does not change how it parses.
        let mut longer = full.to_vec();
        longer.extend_from_slice(b"mn\r\n");
        assert_eq!(parse(&longer), whole);
    }
}

/// What a random request asked for, to compare with what the parser read.
#[derive(Default)]
struct Asked {
    options: Options,
    tokens: Vec<Vec<u8>>,
}

impl Asked {
    fn token(&mut self, token: Vec<u8>) {
        self.tokens.push(token);
    }

    fn number(&mut self, letter: u8, n: impl std::fmt::Display) {
        let mut token = vec![letter];
        token.extend_from_slice(n.to_string().as_bytes());
        self.tokens.push(token);
    }
}

/// Random valid `mg`, `ms`, `md` and `ma` requests, encoded as a client
/// would and parsed back: every key, flag and number must come back as sent.
#[test]
fn random_valid_requests_parse_back() {
    let mut rng = TestRng::new(0x2545_f491_4f6c_dd1d);
    for _ in 0..5000 {
        let key: Vec<u8> = (0..1 + rng.below(40))
            .map(|_| b'!' + rng.below(94) as u8)
            .collect();
        let base64 = rng.chance();
        let mut asked = Asked::default();
        asked.options.delta = 1;
        let command = rng.below(4);
        let mut value_len = 0;
        let mut mode = b'S';
        // Flags without a value that each command takes.
        let switches: &[u8] = match command {
            0 => b"cfhklqstvu",
            1 => b"cIkq",
            2 => b"Ikq",
            _ => b"Oqtcvk",
        };
        for &letter in switches {
            if letter != b'O' && rng.chance() {
                asked.token(vec![letter]);
                match letter {
                    b'v' => asked.options.value = true,
                    b'q' => asked.options.quiet = true,
                    b'I' => asked.options.invalidate = true,
                    b'u' => asked.options.no_update = true,
                    b'h' | b'l' => asked.options.locked = true,
                    _ => {}
                }
            }
        }
        if rng.chance() {
            let opaque: Vec<u8> = (0..rng.below(MAX_OPAQUE_LEN as u64 - 1))
                .map(|_| b'a' + rng.below(26) as u8)
                .collect();
            asked.token([&b"O"[..], &opaque].concat());
        }
        if rng.chance() {
            let ttl = rng.below(200_000) as i32 - 1000;
            asked.number(b'T', ttl);
            asked.options.ttl = Some(ttl);
            asked.options.locked = true;
        }
        if command != 0 && rng.chance() {
            let cas = rng.next();
            asked.number(b'C', cas);
            asked.options.compare_cas = Some(cas);
        }
        if (command == 0 || command == 3) && rng.chance() {
            let exptime = rng.below(100_000) as i32;
            asked.number(b'N', exptime);
            asked.options.vivify = Some(exptime);
            asked.options.locked = true;
        }
        match command {
            0 if rng.chance() => {
                let recache = rng.below(100_000) as i32;
                asked.number(b'R', recache);
                asked.options.recache = Some(recache);
                asked.options.locked = true;
            }
            1 => {
                value_len = rng.below(1_000_000) as u32;
                if rng.chance() {
                    let flags = rng.next() as u32;
                    asked.number(b'F', flags);
                    asked.options.client_flags = flags;
                }
                mode = b"SEAPR"[rng.below(5) as usize];
                if rng.chance() {
                    asked.token(vec![b'M', mode]);
                } else {
                    mode = b'S';
                }
            }
            3 => {
                if rng.chance() {
                    let initial = rng.next();
                    asked.number(b'J', initial);
                    asked.options.initial = initial;
                }
                if rng.chance() {
                    let delta = rng.next();
                    asked.number(b'D', delta);
                    asked.options.delta = delta;
                }
                mode = b"I+D-"[rng.below(4) as usize];
                if rng.chance() {
                    asked.token(vec![b'M', mode]);
                } else {
                    mode = b'I';
                }
            }
            _ => {}
        }
        if base64 {
            asked.token(b"b".to_vec());
        }
        // The order of flags is the client's to choose.
        for i in (1..asked.tokens.len()).rev() {
            asked.tokens.swap(i, rng.below(i as u64 + 1) as usize);
        }

        let mut line = [&b"mg"[..], b"ms", b"md", b"ma"][command as usize].to_vec();
        line.push(b' ');
        let mut sent_key = Vec::new();
        if base64 {
            base64_encode(&key, &mut sent_key);
        } else {
            sent_key.clone_from(&key);
        }
        line.extend_from_slice(&sent_key);
        if command == 1 {
            line.extend_from_slice(format!(" {value_len}").as_bytes());
        }
        for token in &asked.tokens {
            line.push(b' ');
            line.extend_from_slice(token);
        }
        line.extend_from_slice(b"\r\n");

        let parsed = command_of(&line);
        let expected_kind = match command {
            0 => MetaKind::Get,
            1 => MetaKind::Set {
                mode: match mode {
                    b'S' => SetMode::Set,
                    b'E' => SetMode::Add,
                    b'A' => SetMode::Append,
                    b'P' => SetMode::Prepend,
                    _ => SetMode::Replace,
                },
                value_len,
            },
            2 => MetaKind::Delete,
            _ => MetaKind::Arithmetic {
                incr: matches!(mode, b'I' | b'+'),
            },
        };
        let shown = String::from_utf8_lossy(&line);
        assert_eq!(parsed.kind, expected_kind, "{shown}");
        assert_eq!(parsed.options, asked.options, "{shown}");
        assert_eq!(parsed.key.is_binary(), base64, "{shown}");
        assert_eq!(parsed.key.raw(), &sent_key[..], "{shown}");
        let mut buf = [0; KEY_MAX_LENGTH];
        assert_eq!(parsed.key.decode(&mut buf), &key[..], "{shown}");
        let flags: Vec<&[u8]> = parsed.flags().collect();
        let sent: Vec<&[u8]> = asked.tokens.iter().map(Vec::as_slice).collect();
        assert_eq!(flags, sent, "{shown}");
    }
}

/// `command`, for a line that may carry a data block after it.
fn command_of(line: &[u8]) -> MetaCommand<'_> {
    match parse(line) {
        Parse::Line {
            command: Command::Meta(Request::Command(command)),
            ..
        } => command,
        other => panic!("{}: {other:?}", String::from_utf8_lossy(line)),
    }
}
