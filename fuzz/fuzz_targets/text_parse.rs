//! Feeds arbitrary bytes to the text-protocol parser as a connection would:
//! request after request, each data block skipped by its announced length.
//! The parser must never panic, must never claim more bytes than it was
//! given, and must give the same answer for a line whether or not more
//! input follows it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rat_memcache::protocol::text::{data_block, parse, Command, DataBlock, Parse};

fuzz_target!(|input: &[u8]| {
    let mut rest = input;
    while !rest.is_empty() {
        let (command, len) = match parse(rest) {
            Parse::Incomplete | Parse::Close => break,
            Parse::Line { command, len } => (command, len),
        };
        assert!(len > 0 && len <= rest.len());
        assert_eq!(parse(&rest[..len]), Parse::Line { command, len });
        rest = &rest[len..];
        if let Command::Store(header) = command {
            match data_block(rest, header.value_len) {
                DataBlock::Incomplete => break,
                DataBlock::Complete(value) => assert_eq!(value.len(), header.value_len),
                DataBlock::BadChunk => {}
            }
            rest = &rest[DataBlock::wire_len(header.value_len).min(rest.len())..];
        }
    }
});
