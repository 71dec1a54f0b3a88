//! memcached's binary protocol, as the load generator speaks it.
//!
//! Every packet is a 24-byte header (magic, opcode, key length, extras length, status or
//! vbucket, total body length, opaque, CAS; big-endian) followed by extras, key and value.
//!
//! - A get of one key is a `Get`, answered by a `Get` response: status 0 with 4 bytes of
//!   flags and the value on a hit, status 1 (key not found) on a miss.
//! - A multi-get is one quiet `GetKQ` per key followed by a `Noop`, the way libmemcached
//!   sends it: the server answers only the hits, each carrying its key, and the `Noop`
//!   response says every earlier request has been answered. Each `GetKQ` carries its
//!   position in the request as its opaque, so a hit is matched to the key it answers and
//!   a hit out of order is caught.
//! - A set is a `Set` with 8 bytes of extras (flags 0, expiry 0), answered by a `Set`
//!   response with status 0 and an empty body.

use super::{printable, Dataset, Protocol, ProtocolError, Reply, Request, RequestKind};

const REQUEST_MAGIC: u8 = 0x80;
const RESPONSE_MAGIC: u8 = 0x81;
const HEADER: usize = 24;

const GET: u8 = 0x00;
const SET: u8 = 0x01;
const NOOP: u8 = 0x0a;
const GETKQ: u8 = 0x0d;

const STATUS_OK: u16 = 0;
const STATUS_NOT_FOUND: u16 = 1;

/// Largest body accepted in a response: a reply claiming more is garbage, not a value.
const MAX_BODY: usize = 64 * 1024 * 1024;

pub struct BinaryProtocol;

/// Appends a request header.
fn header(
    out: &mut Vec<u8>,
    opcode: u8,
    key_len: usize,
    extras_len: u8,
    body_len: usize,
    opaque: u32,
) {
    out.push(REQUEST_MAGIC);
    out.push(opcode);
    // Keys and values of the dataset are far below these fields' limits.
    out.extend_from_slice(&(key_len as u16).to_be_bytes());
    out.push(extras_len);
    out.push(0); // data type
    out.extend_from_slice(&0u16.to_be_bytes()); // vbucket
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes()); // CAS
}

/// A response header's fields.
struct Response {
    opcode: u8,
    key_len: usize,
    extras_len: usize,
    status: u16,
    body_len: usize,
    opaque: u32,
}

impl Response {
    /// The header at the front of `input`, once its whole packet is there.
    fn complete(input: &[u8]) -> Result<Option<Response>, ProtocolError> {
        // A wrong magic byte is reported at once: a server answering in text sends fewer
        // than 24 bytes and would otherwise leave the reply waiting for the rest.
        if input.first().is_some_and(|&magic| magic != RESPONSE_MAGIC) {
            return Err(ProtocolError(format!(
                "malformed response header `{}`",
                printable(&input[..input.len().min(HEADER)])
            )));
        }
        if input.len() < HEADER {
            return Ok(None);
        }
        let be16 = |at: usize| u16::from_be_bytes([input[at], input[at + 1]]);
        let be32 = |at: usize| {
            u32::from_be_bytes([input[at], input[at + 1], input[at + 2], input[at + 3]])
        };
        let response = Response {
            opcode: input[1],
            key_len: usize::from(be16(2)),
            extras_len: usize::from(input[4]),
            status: be16(6),
            body_len: be32(8) as usize,
            opaque: be32(12),
        };
        if response.body_len > MAX_BODY
            || response.key_len + response.extras_len > response.body_len
        {
            return Err(ProtocolError(format!(
                "malformed response header `{}`",
                printable(&input[..HEADER])
            )));
        }
        Ok((input.len() >= HEADER + response.body_len).then_some(response))
    }

    fn key<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        let start = HEADER + self.extras_len;
        &packet[start..start + self.key_len]
    }

    fn value<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        &packet[HEADER + self.extras_len + self.key_len..HEADER + self.body_len]
    }

    fn unexpected(&self, what: &str, packet: &[u8]) -> ProtocolError {
        ProtocolError(format!(
            "{what}: unexpected response (opcode {:#04x}, status {:#06x}, opaque {}): `{}`",
            self.opcode,
            self.status,
            self.opaque,
            printable(&packet[..HEADER + self.body_len])
        ))
    }
}

/// Checks a hit's value, when verifying.
fn check_value(
    dataset: &Dataset,
    key: u32,
    verify: bool,
    value: &[u8],
) -> Result<(), ProtocolError> {
    if verify && !dataset.value_matches(key, value) {
        return Err(ProtocolError(format!(
            "get {}: value differs from the one stored: `{}`",
            printable(dataset.key(key)),
            printable(value)
        )));
    }
    Ok(())
}

impl Protocol for BinaryProtocol {
    fn encode(&self, dataset: &Dataset, request: &Request, out: &mut Vec<u8>) {
        match (request.kind, request.keys.as_slice()) {
            (RequestKind::Get, &[key]) => {
                let key = dataset.key(key);
                header(out, GET, key.len(), 0, key.len(), 0);
                out.extend_from_slice(key);
            }
            (RequestKind::Get, keys) => {
                for (position, &key) in keys.iter().enumerate() {
                    let key = dataset.key(key);
                    header(out, GETKQ, key.len(), 0, key.len(), position as u32);
                    out.extend_from_slice(key);
                }
                header(out, NOOP, 0, 0, 0, keys.len() as u32);
            }
            (RequestKind::Set, keys) => {
                let key = keys[0];
                let key_bytes = dataset.key(key);
                header(
                    out,
                    SET,
                    key_bytes.len(),
                    8,
                    8 + key_bytes.len() + dataset.value_size(),
                    0,
                );
                out.extend_from_slice(&[0; 8]); // flags, expiry
                out.extend_from_slice(key_bytes);
                dataset.write_value(key, out);
            }
        }
    }

    fn parse_reply(
        &self,
        dataset: &Dataset,
        request: &Request,
        verify: bool,
        input: &[u8],
    ) -> Result<Option<Reply>, ProtocolError> {
        match (request.kind, request.keys.as_slice()) {
            (RequestKind::Set, keys) => {
                let Some(response) = Response::complete(input)? else {
                    return Ok(None);
                };
                if response.opcode != SET || response.status != STATUS_OK || response.body_len != 0
                {
                    let what = format!("set {}", printable(dataset.key(keys[0])));
                    return Err(response.unexpected(&what, input));
                }
                Ok(Some(Reply {
                    consumed: HEADER,
                    hits: 0,
                    misses: 0,
                }))
            }
            (RequestKind::Get, &[key]) => {
                let Some(response) = Response::complete(input)? else {
                    return Ok(None);
                };
                let what = || format!("get {}", printable(dataset.key(key)));
                if response.opcode != GET || response.opaque != 0 {
                    return Err(response.unexpected(&what(), input));
                }
                let hit = match response.status {
                    STATUS_OK if response.extras_len == 4 && response.key_len == 0 => true,
                    STATUS_NOT_FOUND => false,
                    _ => return Err(response.unexpected(&what(), input)),
                };
                if hit {
                    check_value(dataset, key, verify, response.value(input))?;
                }
                Ok(Some(Reply {
                    consumed: HEADER + response.body_len,
                    hits: u32::from(hit),
                    misses: u32::from(!hit),
                }))
            }
            (RequestKind::Get, keys) => {
                let mut position = 0;
                // Hits come in request order: each one must answer a later key than the last.
                let mut next_key = 0;
                let mut hits = 0;
                loop {
                    let packet = &input[position..];
                    let Some(response) = Response::complete(packet)? else {
                        return Ok(None);
                    };
                    let end = position + HEADER + response.body_len;
                    if response.opcode == NOOP {
                        if response.status != STATUS_OK
                            || response.body_len != 0
                            || response.opaque as usize != keys.len()
                        {
                            return Err(response.unexpected("multi-get noop", packet));
                        }
                        return Ok(Some(Reply {
                            consumed: end,
                            hits,
                            misses: keys.len() as u32 - hits,
                        }));
                    }
                    let index = response.opaque as usize;
                    if response.opcode != GETKQ
                        || response.status != STATUS_OK
                        || response.extras_len != 4
                        || index < next_key
                        || index >= keys.len()
                        || response.key(packet) != dataset.key(keys[index])
                    {
                        return Err(response.unexpected("multi-get", packet));
                    }
                    check_value(dataset, keys[index], verify, response.value(packet))?;
                    hits += 1;
                    next_key = index + 1;
                    position = end;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::tests::{get, set};

    /// A response packet.
    fn response(
        opcode: u8,
        status: u16,
        opaque: u32,
        extras: &[u8],
        key: &[u8],
        value: &[u8],
    ) -> Vec<u8> {
        let mut packet = vec![RESPONSE_MAGIC, opcode];
        packet.extend_from_slice(&(key.len() as u16).to_be_bytes());
        packet.push(extras.len() as u8);
        packet.push(0);
        packet.extend_from_slice(&status.to_be_bytes());
        packet.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
        packet.extend_from_slice(&opaque.to_be_bytes());
        packet.extend_from_slice(&1u64.to_be_bytes());
        packet.extend_from_slice(extras);
        packet.extend_from_slice(key);
        packet.extend_from_slice(value);
        packet
    }

    fn value(dataset: &Dataset, key: u32) -> Vec<u8> {
        let mut value = Vec::new();
        dataset.write_value(key, &mut value);
        value
    }

    #[test]
    fn encodes_get_getkq_noop_and_set() {
        let dataset = Dataset::new(100, 8);
        let mut out = Vec::new();
        BinaryProtocol.encode(&dataset, &get(&[7]), &mut out);
        let mut expected = vec![0x80, GET, 0, 6, 0, 0, 0, 0, 0, 0, 0, 6];
        expected.extend_from_slice(&[0; 12]);
        expected.extend_from_slice(b"key:07");
        assert_eq!(out, expected);

        out.clear();
        BinaryProtocol.encode(&dataset, &get(&[1, 2]), &mut out);
        assert_eq!(out.len(), 3 * HEADER + 12);
        assert_eq!((out[1], &out[12..16]), (GETKQ, &[0, 0, 0, 0][..]));
        assert_eq!(&out[24..30], b"key:01");
        assert_eq!((out[31], &out[42..46]), (GETKQ, &[0, 0, 0, 1][..]));
        assert_eq!(&out[54..60], b"key:02");
        assert_eq!((out[61], &out[72..76]), (NOOP, &[0, 0, 0, 2][..]));

        out.clear();
        BinaryProtocol.encode(&dataset, &set(5), &mut out);
        let mut expected = vec![0x80, SET, 0, 6, 8, 0, 0, 0, 0, 0, 0, 22];
        expected.extend_from_slice(&[0; 12]);
        expected.extend_from_slice(&[0; 8]);
        expected.extend_from_slice(b"key:05");
        expected.extend(value(&dataset, 5));
        assert_eq!(out, expected);
    }

    #[test]
    fn parses_single_gets_and_sets() {
        let dataset = Dataset::new(100, 20);
        let hit = response(GET, 0, 0, &[0; 4], b"", &value(&dataset, 3));
        assert_eq!(
            BinaryProtocol.parse_reply(&dataset, &get(&[3]), true, &hit),
            Ok(Some(Reply {
                consumed: hit.len(),
                hits: 1,
                misses: 0
            }))
        );
        let miss = response(GET, 1, 0, b"", b"", b"Not found");
        assert_eq!(
            BinaryProtocol.parse_reply(&dataset, &get(&[3]), true, &miss),
            Ok(Some(Reply {
                consumed: miss.len(),
                hits: 0,
                misses: 1
            }))
        );
        let stored = response(SET, 0, 0, b"", b"", b"");
        assert_eq!(
            BinaryProtocol.parse_reply(&dataset, &set(3), true, &stored),
            Ok(Some(Reply {
                consumed: HEADER,
                hits: 0,
                misses: 0
            }))
        );
        for cut in 0..hit.len() {
            assert_eq!(
                BinaryProtocol.parse_reply(&dataset, &get(&[3]), true, &hit[..cut]),
                Ok(None)
            );
        }
    }

    #[test]
    fn parses_a_multiget_of_hits_then_noop() {
        let dataset = Dataset::new(100, 20);
        let request = get(&[3, 4, 9]);
        let mut reply = response(GETKQ, 0, 0, &[0; 4], b"key:03", &value(&dataset, 3));
        reply.extend(response(
            GETKQ,
            0,
            2,
            &[0; 4],
            b"key:09",
            &value(&dataset, 9),
        ));
        reply.extend(response(NOOP, 0, 3, b"", b"", b""));
        let whole = reply.len();
        reply.extend(response(SET, 0, 0, b"", b"", b""));
        assert_eq!(
            BinaryProtocol.parse_reply(&dataset, &request, true, &reply),
            Ok(Some(Reply {
                consumed: whole,
                hits: 2,
                misses: 1
            }))
        );
        for cut in 0..whole {
            assert_eq!(
                BinaryProtocol.parse_reply(&dataset, &request, true, &reply[..cut]),
                Ok(None)
            );
        }
    }

    #[test]
    fn rejects_wrong_values_only_when_verifying() {
        let dataset = Dataset::new(100, 20);
        let hit = response(GET, 0, 0, &[0; 4], b"", &value(&dataset, 4));
        let error = BinaryProtocol
            .parse_reply(&dataset, &get(&[3]), true, &hit)
            .unwrap_err();
        assert!(error.0.contains("value differs"), "{error}");
        assert!(BinaryProtocol
            .parse_reply(&dataset, &get(&[3]), false, &hit)
            .unwrap()
            .is_some());
    }

    #[test]
    fn rejects_malformed_replies() {
        let dataset = Dataset::new(100, 4);
        let value1 = value(&dataset, 1);
        let mut bad_magic = response(GET, 1, 0, b"", b"", b"");
        bad_magic[0] = 0x80;
        let cases: Vec<(Request, Vec<u8>, &str)> = vec![
            (
                set(1),
                response(SET, 5, 0, b"", b"", b""),
                "unexpected response",
            ),
            (
                set(1),
                response(GET, 0, 0, b"", b"", b""),
                "unexpected response",
            ),
            (
                get(&[1]),
                response(GET, 0x81, 0, b"", b"", b"Unknown command"),
                "unexpected response",
            ),
            (
                get(&[1]),
                response(GET, 0, 7, &[0; 4], b"", &value1),
                "unexpected response",
            ),
            (
                get(&[1]),
                response(GETKQ, 0, 0, &[0; 4], b"key:01", &value1),
                "unexpected response",
            ),
            (get(&[1]), bad_magic, "malformed response header"),
            (
                get(&[1]),
                b"ERROR\r\n".to_vec(),
                "malformed response header",
            ),
            (
                get(&[1, 2]),
                response(GETKQ, 0, 0, &[0; 4], b"key:02", &value1),
                "multi-get",
            ),
            (
                get(&[1, 2]),
                response(GETKQ, 0, 5, &[0; 4], b"key:01", &value1),
                "multi-get",
            ),
            (
                get(&[1, 2]),
                response(NOOP, 0, 1, b"", b"", b""),
                "multi-get noop",
            ),
            (
                get(&[1, 2]),
                response(GET, 1, 0, b"", b"", b"Not found"),
                "multi-get",
            ),
        ];
        for (request, reply, expected) in cases {
            let error = BinaryProtocol
                .parse_reply(&dataset, &request, false, &reply)
                .unwrap_err();
            assert!(error.0.contains(expected), "{}: {error}", printable(&reply));
        }
        let mut out_of_order = response(GETKQ, 0, 1, &[0; 4], b"key:02", &value1);
        out_of_order.extend(response(GETKQ, 0, 0, &[0; 4], b"key:01", &value1));
        assert!(BinaryProtocol
            .parse_reply(&dataset, &get(&[1, 2]), false, &out_of_order)
            .is_err());
    }
}
