use super::*;

fn line(input: &[u8]) -> Command<'_> {
    match parse(input) {
        Parse::Line { command, len } => {
            assert_eq!(len, input.len(), "the whole line is one request");
            command
        }
        other => panic!("expected a line from {input:?}, got {other:?}"),
    }
}

fn err(reply: &'static str, noreply: bool) -> Command<'static> {
    Command::Error { reply, noreply }
}

fn keys<'a>(command: &Command<'a>) -> Vec<&'a [u8]> {
    match command {
        Command::Get { keys, .. } => (*keys).collect(),
        other => panic!("not a get: {other:?}"),
    }
}

#[test]
fn get_variants_and_their_keys() {
    let get = line(b"get a bb  ccc\r\n");
    assert!(matches!(
        get,
        Command::Get {
            kind: GetKind::Get,
            ..
        }
    ));
    assert_eq!(keys(&get), vec![&b"a"[..], b"bb", b"ccc"]);
    assert!(matches!(
        line(b"gets a\n"),
        Command::Get {
            kind: GetKind::Gets,
            ..
        }
    ));
    assert!(matches!(
        line(b"bget a\r\n"),
        Command::Get {
            kind: GetKind::Get,
            ..
        }
    ));
    let gat = line(b"gat 100 a b\r\n");
    assert!(matches!(
        gat,
        Command::Get {
            kind: GetKind::Gat,
            exptime: 100,
            ..
        }
    ));
    assert_eq!(keys(&gat), vec![&b"a"[..], b"b"]);
    let gats = line(b"gats -1 a\r\n");
    assert!(matches!(
        gats,
        Command::Get {
            kind: GetKind::Gats,
            exptime: -1,
            ..
        }
    ));
    // memcached answers a gat without keys with a bare END.
    assert_eq!(keys(&line(b"gat 10\r\n")), Vec::<&[u8]>::new());
    assert_eq!(line(b"gat x a\r\n"), err(BAD_EXPTIME, false));
    assert_eq!(line(b"get\r\n"), err(ERROR, false));
}

#[test]
fn get_keys_beyond_the_token_limit_are_all_kept() {
    let mut request = b"get".to_vec();
    let names: Vec<String> = (0..100).map(|i| format!("key{i}")).collect();
    for name in &names {
        request.push(b' ');
        request.extend_from_slice(name.as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let command = line(&request);
    let got: Vec<String> = keys(&command)
        .iter()
        .map(|k| String::from_utf8(k.to_vec()).unwrap())
        .collect();
    assert_eq!(got, names);
}

#[test]
fn storage_commands() {
    assert_eq!(
        line(b"set k 5 100 3\r\n"),
        Command::Store(StoreHeader {
            kind: StoreKind::Set,
            key: b"k",
            flags: 5,
            exptime: 100,
            value_len: 3,
            cas: 0,
            noreply: false
        })
    );
    assert_eq!(
        line(b"cas k 0 0 1 77 noreply\r\n"),
        Command::Store(StoreHeader {
            kind: StoreKind::Cas,
            key: b"k",
            flags: 0,
            exptime: 0,
            value_len: 1,
            cas: 77,
            noreply: true
        })
    );
    for (name, kind) in [
        (&b"add"[..], StoreKind::Add),
        (b"replace", StoreKind::Replace),
        (b"append", StoreKind::Append),
        (b"prepend", StoreKind::Prepend),
    ] {
        let mut request = name.to_vec();
        request.extend_from_slice(b" k 1 2 3\r\n");
        match line(&request) {
            Command::Store(header) => assert_eq!(header.kind, kind),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn storage_numbers_follow_memcached_truncation() {
    match line(b"set k 4294967297 0 4294967297\r\n") {
        Command::Store(h) => {
            assert_eq!(h.flags, 1);
            assert_eq!(h.value_len, 1);
        }
        other => panic!("{other:?}"),
    }
    match line(b"set k +5 -1 007\r\n") {
        Command::Store(h) => {
            assert_eq!((h.flags, h.exptime, h.value_len), (5, -1, 7));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn storage_errors() {
    assert_eq!(line(b"set k 0 0\r\n"), err(ERROR, false));
    assert_eq!(line(b"set k 0 0 1 noreply extra\r\n"), err(ERROR, false));
    assert_eq!(line(b"cas k 0 0 1\r\n"), err(ERROR, false));
    assert_eq!(line(b"set k x 0 1\r\n"), err(BAD_FORMAT, false));
    assert_eq!(line(b"set k 0 x 1\r\n"), err(BAD_FORMAT, false));
    assert_eq!(line(b"set k 0 0 -1\r\n"), err(BAD_FORMAT, false));
    assert_eq!(line(b"set k -1 0 1\r\n"), err(BAD_FORMAT, false));
    assert_eq!(line(b"set k 0 0 x noreply\r\n"), err(BAD_FORMAT, true));
    assert_eq!(line(b"cas k 0 0 1 x\r\n"), err(BAD_FORMAT, false));
    let long_key = format!("set {} 0 0 1\r\n", "k".repeat(251));
    assert_eq!(line(long_key.as_bytes()), err(BAD_FORMAT, false));
    let max_key = format!("set {} 0 0 1\r\n", "k".repeat(250));
    assert!(matches!(line(max_key.as_bytes()), Command::Store(_)));
}

#[test]
fn delete_forms() {
    let del = |noreply| Command::Delete { key: b"k", noreply };
    assert_eq!(line(b"delete k\r\n"), del(false));
    assert_eq!(line(b"delete k 0\r\n"), del(false));
    assert_eq!(line(b"delete k noreply\r\n"), del(true));
    assert_eq!(line(b"delete k 0 noreply\r\n"), del(true));
    assert_eq!(line(b"delete k 1\r\n"), err(BAD_DELETE, false));
    assert_eq!(line(b"delete k 1 noreply\r\n"), err(BAD_DELETE, true));
    assert_eq!(line(b"delete k 0 0\r\n"), err(BAD_DELETE, false));
    assert_eq!(line(b"delete\r\n"), err(ERROR, false));
    assert_eq!(line(b"delete a b c d\r\n"), err(ERROR, false));
}

#[test]
fn arithmetic_touch_flush_verbosity() {
    assert_eq!(
        line(b"incr k 5\r\n"),
        Command::IncrDecr {
            incr: true,
            key: b"k",
            delta: 5,
            noreply: false
        }
    );
    assert_eq!(
        line(b"decr k 18446744073709551615 noreply\r\n"),
        Command::IncrDecr {
            incr: false,
            key: b"k",
            delta: u64::MAX,
            noreply: true
        }
    );
    assert_eq!(line(b"incr k -1\r\n"), err(BAD_DELTA, false));
    assert_eq!(line(b"incr k\r\n"), err(ERROR, false));
    assert_eq!(
        line(b"touch k 10 noreply\r\n"),
        Command::Touch {
            key: b"k",
            exptime: 10,
            noreply: true
        }
    );
    assert_eq!(line(b"touch k x\r\n"), err(BAD_EXPTIME, false));
    assert_eq!(
        line(b"flush_all\r\n"),
        Command::FlushAll {
            delay: Some(0),
            noreply: false
        }
    );
    assert_eq!(
        line(b"flush_all noreply\r\n"),
        Command::FlushAll {
            delay: Some(0),
            noreply: true
        }
    );
    assert_eq!(
        line(b"flush_all 10\r\n"),
        Command::FlushAll {
            delay: Some(10),
            noreply: false
        }
    );
    assert_eq!(
        line(b"flush_all x noreply\r\n"),
        Command::FlushAll {
            delay: None,
            noreply: true
        }
    );
    assert_eq!(
        line(b"verbosity 1\r\n"),
        Command::Verbosity {
            level: 1,
            noreply: false
        }
    );
    assert_eq!(line(b"verbosity x noreply\r\n"), err(BAD_FORMAT, true));
    assert_eq!(line(b"verbosity\r\n"), err(ERROR, false));
}

#[test]
fn cache_memlimit_bounds() {
    assert_eq!(
        line(b"cache_memlimit 8\r\n"),
        Command::CacheMemlimit {
            megabytes: 8,
            noreply: false
        }
    );
    assert_eq!(
        line(b"cache_memlimit 64 noreply\r\n"),
        Command::CacheMemlimit {
            megabytes: 64,
            noreply: true
        }
    );
    assert_eq!(
        line(b"cache_memlimit 7\r\n"),
        err(MEMLIMIT_TOO_SMALL, false)
    );
    assert_eq!(
        line(b"cache_memlimit 1000000001\r\n"),
        err(MEMLIMIT_NOT_BYTES, false)
    );
    assert_eq!(line(b"cache_memlimit x\r\n"), err(ERROR, false));
    assert_eq!(line(b"cache_memlimit\r\n"), err(ERROR, false));
    assert_eq!(line(b"cache_memlimit 100 x y\r\n"), err(ERROR, false));
}

#[test]
fn misc_commands() {
    assert_eq!(line(b"version\r\n"), Command::Version);
    assert_eq!(line(b"quit\r\n"), Command::Quit);
    assert_eq!(line(b"stats\r\n"), Command::Stats(StatsGroup::General));
    assert_eq!(
        line(b"stats settings\r\n"),
        Command::Stats(StatsGroup::Settings)
    );
    assert_eq!(
        line(b"stats detail\r\n"),
        Command::Stats(StatsGroup::Detail(None))
    );
    assert_eq!(
        line(b"stats detail on\r\n"),
        Command::Stats(StatsGroup::Detail(Some(b"on")))
    );
    assert_eq!(
        line(b"stats bogus\r\n"),
        Command::Stats(StatsGroup::Unknown)
    );
    assert_eq!(line(b"shutdown\r\n"), Command::Shutdown(ShutdownMode::Now));
    assert_eq!(
        line(b"shutdown graceful\r\n"),
        Command::Shutdown(ShutdownMode::Graceful)
    );
    assert_eq!(
        line(b"shutdown now\r\n"),
        Command::Shutdown(ShutdownMode::Invalid)
    );
    assert_eq!(line(b"bogus\r\n"), err(ERROR, false));
    assert_eq!(line(b"GET a\r\n"), err(ERROR, false));
    assert_eq!(line(b"\r\n"), err(ERROR, false));
    assert_eq!(line(b"\n"), err(ERROR, false));
    assert_eq!(line(b"g\r\n"), err(ERROR, false));
}

#[test]
fn line_endings_and_nul() {
    assert_eq!(line(b"version\n"), Command::Version);
    // A NUL ends the line for memcached, whatever follows it.
    assert_eq!(line(b"version\0junk\r\n"), Command::Version);
    // Only one CR is stripped.
    assert_eq!(line(b"version\r\r\n"), err(ERROR, false));
}

#[test]
fn browsers_and_endless_lines_are_hung_up_on() {
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parse::Close);
    let endless = vec![b'x'; MAX_LINE_WITHOUT_NEWLINE + 1];
    assert_eq!(parse(&endless), Parse::Close);
    let short = vec![b'x'; MAX_LINE_WITHOUT_NEWLINE];
    assert_eq!(parse(&short), Parse::Incomplete);
    let mut long_get = b"get ".to_vec();
    long_get.resize(MAX_LINE_WITHOUT_NEWLINE + 10, b'k');
    assert_eq!(parse(&long_get), Parse::Incomplete);
    let mut huge_get = b"get ".to_vec();
    huge_get.resize(MAX_GET_LINE + 1, b'k');
    assert_eq!(parse(&huge_get), Parse::Close);
}

#[test]
fn data_blocks() {
    assert_eq!(data_block(b"ab", 3), DataBlock::Incomplete);
    assert_eq!(data_block(b"abc\r", 3), DataBlock::Incomplete);
    assert_eq!(data_block(b"abc\r\nget", 3), DataBlock::Complete(b"abc"));
    assert_eq!(data_block(b"abcde", 3), DataBlock::BadChunk);
    assert_eq!(data_block(b"\r\n", 0), DataBlock::Complete(b""));
}

/// Every request, cut at every byte, must parse as `Incomplete` until the
/// whole line is there and then exactly as the whole does.
#[test]
fn split_at_every_byte_boundary() {
    let requests: &[&[u8]] = &[
        b"get a b c\r\n",
        b"gets k\n",
        b"gat 10 a\r\n",
        b"set k 1 2 3 noreply\r\n",
        b"cas k 0 0 1 99\r\n",
        b"delete k 0 noreply\r\n",
        b"incr k 1\r\n",
        b"touch k 1\r\n",
        b"flush_all 5\r\n",
        b"verbosity 1\r\n",
        b"stats items\r\n",
        b"version\r\n",
        b"bogus x y\r\n",
        b"\r\n",
    ];
    for request in requests {
        let whole = parse(request);
        assert!(matches!(whole, Parse::Line { .. }));
        for cut in 0..request.len() {
            assert_eq!(
                parse(&request[..cut]),
                Parse::Incomplete,
                "{request:?} cut at {cut}"
            );
        }
        // Extra bytes after the line never change the parse.
        let mut padded = request.to_vec();
        padded.extend_from_slice(b"get next\r\n");
        assert_eq!(parse(&padded), whole);
    }
}

#[test]
fn data_block_split_at_every_byte_boundary() {
    let block = b"hello\r\n";
    for cut in 0..block.len() {
        assert_eq!(data_block(&block[..cut], 5), DataBlock::Incomplete);
    }
    assert_eq!(data_block(block, 5), DataBlock::Complete(b"hello"));
}
