//! Feeds arbitrary bytes to the text-protocol parser with meta commands in mind:
//! request after request, an `ms` data block (or the data an `ms` error throws away)
//! skipped by its length. The parser must never panic nor claim more bytes than it
//! was given; a meta command's key must decode into its buffer, and its flags must be
//! the tokens of its line. Base64 must round-trip through memcached's decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rat_memcache::protocol::meta::{self, MetaKind, Request};
use rat_memcache::protocol::text::{data_block, parse, Command, DataBlock, Parse, KEY_MAX_LENGTH};

fuzz_target!(|input: &[u8]| {
    let mut encoded = Vec::new();
    meta::base64_encode(input, &mut encoded);
    let mut decoded = vec![0; encoded.len()];
    match meta::base64_decode(&encoded, &mut decoded) {
        Some(len) => assert_eq!(&decoded[..len], input),
        None => assert!(input.is_empty()),
    }

    let mut rest = input;
    while !rest.is_empty() {
        let (command, len) = match parse(rest) {
            Parse::Incomplete | Parse::Close => break,
            Parse::Line { command, len } => (command, len),
        };
        assert!(len > 0 && len <= rest.len());
        assert_eq!(parse(&rest[..len]), Parse::Line { command, len });
        let line = &rest[..len];
        rest = &rest[len..];
        let skip = match command {
            Command::Meta(Request::Command(command)) => {
                let mut buf = [0; KEY_MAX_LENGTH];
                let key = command.key.decode(&mut buf);
                assert!(!key.is_empty() && key.len() <= command.key.raw().len());
                for flag in command.flags() {
                    assert!(!flag.is_empty() && !flag.contains(&b' '));
                    assert!(line.windows(flag.len()).any(|window| window == flag));
                }
                match command.kind {
                    MetaKind::Set { value_len, .. } => Some(value_len as usize),
                    _ => None,
                }
            }
            Command::Meta(Request::Debug(key)) => {
                let mut buf = [0; KEY_MAX_LENGTH];
                assert!(!key.decode(&mut buf).is_empty());
                None
            }
            Command::Meta(Request::Error { swallow, .. }) if swallow > 0 => Some(swallow - 2),
            Command::Store(header) => Some(header.value_len),
            _ => None,
        };
        if let Some(value_len) = skip {
            match data_block(rest, value_len) {
                DataBlock::Incomplete => break,
                DataBlock::Complete(value) => assert_eq!(value.len(), value_len),
                DataBlock::BadChunk => {}
            }
            rest = &rest[DataBlock::wire_len(value_len).min(rest.len())..];
        }
    }
});
