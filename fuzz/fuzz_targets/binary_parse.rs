//! Feeds arbitrary bytes to the binary-protocol parser as a connection would:
//! request after request, values and skipped bytes passed over by their
//! announced lengths. The parser must never panic, must never claim more
//! bytes than it was given, and must give the same answer for a packet
//! whether or not more input follows it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rat_memcache::protocol::binary::{parse, Body, Command, Parse, HEADER_LEN};

fuzz_target!(|input: &[u8]| {
    let mut rest = input;
    while !rest.is_empty() {
        let request = match parse(rest) {
            Parse::Incomplete { wanted } => {
                assert!(wanted > rest.len());
                break;
            }
            Parse::BadMagic => break,
            Parse::Request(request) => request,
        };
        assert!(request.len >= HEADER_LEN && request.len <= rest.len());
        assert_eq!(parse(&rest[..request.len]), Parse::Request(request));
        rest = &rest[request.len..];
        let skip = match request.command {
            Command::Store { value, .. }
            | Command::Concat { value, .. }
            | Command::SaslAuth { message: value, .. } => match value {
                Body::Complete(_) => 0,
                Body::Pending { len } => {
                    assert!(len > rest.len());
                    len
                }
            },
            Command::Unknown { swallow } => swallow,
            Command::Refused { .. } | Command::Quit => break,
            _ => 0,
        };
        rest = &rest[skip.min(rest.len())..];
    }
});
