//! memcached's meta text protocol, as the load generator speaks it.
//!
//! A get of one key is `mg <key> v\r\n`, answered by `VA <bytes>\r\n<data>\r\n` on a hit and
//! `EN\r\n` on a miss. A set is `ms <key> <bytes>\r\n<data>\r\n`, answered by `HD\r\n`.
//!
//! A multi-get is one plain `mg` per key, pipelined in one write, so every key gets its own
//! reply (hit or miss) in request order. Clients that hide misses (`mg <key> v q k` for every
//! key, then `mn` to mark the end) save the `EN` lines, but a miss then shows only as an
//! absent key; a reply per key lets the parser check each one where it stands, and costs
//! the server the same lookups.

use super::{
    line, number, printable, Dataset, Protocol, ProtocolError, Reply, Request, RequestKind,
};

pub struct MetaProtocol {
    /// `" <value size>\r\n"`, the constant tail of every `ms` line.
    set_tail: Vec<u8>,
}

impl MetaProtocol {
    pub fn new(dataset: &Dataset) -> MetaProtocol {
        MetaProtocol {
            set_tail: format!(" {}\r\n", dataset.value_size()).into_bytes(),
        }
    }
}

impl Protocol for MetaProtocol {
    fn encode(&self, dataset: &Dataset, request: &Request, out: &mut Vec<u8>) {
        match request.kind {
            RequestKind::Get => {
                for &key in &request.keys {
                    out.extend_from_slice(b"mg ");
                    out.extend_from_slice(dataset.key(key));
                    out.extend_from_slice(b" v\r\n");
                }
            }
            RequestKind::Set => {
                let key = request.keys[0];
                out.extend_from_slice(b"ms ");
                out.extend_from_slice(dataset.key(key));
                out.extend_from_slice(&self.set_tail);
                dataset.write_value(key, out);
                out.extend_from_slice(b"\r\n");
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
        if request.kind == RequestKind::Set {
            let Some(reply) = line(input)? else {
                return Ok(None);
            };
            if reply != b"HD" {
                return Err(ProtocolError(format!(
                    "ms {}: expected HD, got `{}`",
                    printable(dataset.key(request.keys[0])),
                    printable(reply)
                )));
            }
            return Ok(Some(Reply {
                consumed: reply.len() + 2,
                hits: 0,
                misses: 0,
            }));
        }
        let mut position = 0;
        let mut hits = 0;
        for &key in &request.keys {
            let Some(header) = line(&input[position..])? else {
                return Ok(None);
            };
            let data_start = position + header.len() + 2;
            if header == b"EN" {
                position = data_start;
                continue;
            }
            // Only `v` was asked for, so `VA <bytes>` carries no flags after the size.
            let size = header
                .strip_prefix(b"VA ")
                .and_then(|size| number(size, u64::from(u32::MAX)))
                .ok_or_else(|| {
                    ProtocolError(format!(
                        "mg {}: unexpected reply line `{}`",
                        printable(dataset.key(key)),
                        printable(header)
                    ))
                })? as usize;
            let data_end = data_start + size;
            if input.len() < data_end + 2 {
                return Ok(None);
            }
            if &input[data_end..data_end + 2] != b"\r\n" {
                return Err(ProtocolError(format!(
                    "mg {}: data block of {size} bytes not followed by \\r\\n",
                    printable(dataset.key(key))
                )));
            }
            if verify && !dataset.value_matches(key, &input[data_start..data_end]) {
                return Err(ProtocolError(format!(
                    "mg {}: value differs from the one stored: `{}`",
                    printable(dataset.key(key)),
                    printable(&input[data_start..data_end])
                )));
            }
            hits += 1;
            position = data_end + 2;
        }
        Ok(Some(Reply {
            consumed: position,
            hits,
            misses: request.keys.len() as u32 - hits,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::tests::{get, set};

    fn hit(dataset: &Dataset, key: u32) -> Vec<u8> {
        let mut reply = format!("VA {}\r\n", dataset.value_size()).into_bytes();
        dataset.write_value(key, &mut reply);
        reply.extend_from_slice(b"\r\n");
        reply
    }

    #[test]
    fn encodes_gets_as_one_mg_per_key_and_sets_as_ms() {
        let dataset = Dataset::new(100, 8);
        let meta = MetaProtocol::new(&dataset);
        let mut out = Vec::new();
        meta.encode(&dataset, &get(&[1, 22]), &mut out);
        assert_eq!(out, b"mg key:01 v\r\nmg key:22 v\r\n");
        out.clear();
        meta.encode(&dataset, &set(5), &mut out);
        let mut expected = b"ms key:05 8\r\n".to_vec();
        dataset.write_value(5, &mut expected);
        expected.extend_from_slice(b"\r\n");
        assert_eq!(out, expected);
    }

    #[test]
    fn parses_hits_and_misses_in_order() {
        let dataset = Dataset::new(100, 20);
        let meta = MetaProtocol::new(&dataset);
        let mut reply = hit(&dataset, 3);
        reply.extend_from_slice(b"EN\r\n");
        reply.extend(hit(&dataset, 9));
        let whole = reply.len();
        reply.extend_from_slice(b"HD\r\n");
        let request = get(&[3, 4, 9]);
        assert_eq!(
            meta.parse_reply(&dataset, &request, true, &reply),
            Ok(Some(Reply {
                consumed: whole,
                hits: 2,
                misses: 1
            }))
        );
        for cut in 0..whole {
            assert_eq!(
                meta.parse_reply(&dataset, &request, true, &reply[..cut]),
                Ok(None),
                "cut at {cut}"
            );
        }
        assert_eq!(
            meta.parse_reply(&dataset, &set(1), true, b"HD\r\n"),
            Ok(Some(Reply {
                consumed: 4,
                hits: 0,
                misses: 0
            }))
        );
        assert_eq!(meta.parse_reply(&dataset, &set(1), true, b"H"), Ok(None));
    }

    #[test]
    fn rejects_wrong_values_only_when_verifying() {
        let dataset = Dataset::new(100, 20);
        let meta = MetaProtocol::new(&dataset);
        let reply = hit(&dataset, 4);
        let error = meta
            .parse_reply(&dataset, &get(&[3]), true, &reply)
            .unwrap_err();
        assert!(error.0.contains("value differs"), "{error}");
        assert!(meta
            .parse_reply(&dataset, &get(&[3]), false, &reply)
            .unwrap()
            .is_some());
    }

    #[test]
    fn rejects_malformed_replies() {
        let dataset = Dataset::new(100, 4);
        let meta = MetaProtocol::new(&dataset);
        let cases: &[(&Request, &[u8], &str)] = &[
            (&set(1), b"NS\r\n", "expected HD"),
            (&set(1), b"STORED\r\n", "expected HD"),
            (&set(1), b"HD\n", "not ended by"),
            (&get(&[1]), b"ERROR\r\n", "unexpected reply line"),
            (&get(&[1]), b"VA 4 f0\r\nabcd\r\n", "unexpected reply line"),
            (&get(&[1]), b"VA -4\r\n", "unexpected reply line"),
            (&get(&[1]), b"HD\r\n", "unexpected reply line"),
            (&get(&[1]), b"VA 4\r\nabcdXX", "not followed by"),
        ];
        for (request, reply, expected) in cases {
            let error = meta
                .parse_reply(&dataset, request, false, reply)
                .unwrap_err();
            assert!(error.0.contains(expected), "{}: {error}", printable(reply));
        }
    }
}
