//! Request encoding and reply parsing, one implementation per wire protocol.
//!
//! The load generator knows requests only as "get these keys" or "set this key"; a
//! [`Protocol`] turns those into bytes and recognises the matching reply at the front of a
//! receive buffer. Encoding appends to the connection's reusable output buffer and parsing
//! reads the receive buffer in place, so neither allocates while a run is measured.
//!
//! Parsing is also validation: a reply that is not exactly what the protocol prescribes for
//! the request (a wrong line, a key that was not asked for, a data block without its
//! terminator, a value that differs from the one the key's derivation says, when verifying)
//! is a [`ProtocolError`], and the generator stops with a non-zero exit.
//!
//! A reply that is only partly in the buffer yields `Ok(None)`; the caller reads more and
//! parses again from the start of the reply. Replies are small next to a read, so the rare
//! re-parse costs less than keeping a resumable parser state.

use crate::dataset::Dataset;
use std::fmt;

mod binary;
mod meta;

pub use binary::BinaryProtocol;
pub use meta::MetaProtocol;

/// What a request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// Fetch every key in `keys` (one request, however many keys).
    Get,
    /// Store the value of `keys[0]`.
    Set,
}

/// One request, kept until its reply arrives so the reply can be checked against it.
#[derive(Clone, Debug)]
pub struct Request {
    pub kind: RequestKind,
    /// Key indices into the [`Dataset`].
    pub keys: Vec<u32>,
}

impl Request {
    /// An empty request with room for `max_keys` keys.
    pub fn new(max_keys: usize) -> Request {
        Request {
            kind: RequestKind::Get,
            keys: Vec::with_capacity(max_keys),
        }
    }
}

/// A complete, valid reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Bytes of the receive buffer the reply took.
    pub consumed: usize,
    /// Keys of a get that were found.
    pub hits: u32,
    /// Keys of a get that were not found.
    pub misses: u32,
}

/// A reply that does not answer the request the protocol's way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// A wire protocol, as seen by a client.
pub trait Protocol: Send + Sync {
    /// Appends the bytes of `request` to `out`.
    fn encode(&self, dataset: &Dataset, request: &Request, out: &mut Vec<u8>);

    /// Parses the reply to `request` at the front of `input`: `Ok(None)` while incomplete.
    /// With `verify`, every returned value must be byte for byte the key's derived value.
    fn parse_reply(
        &self,
        dataset: &Dataset,
        request: &Request,
        verify: bool,
        input: &[u8],
    ) -> Result<Option<Reply>, ProtocolError>;
}

/// Longest reply line accepted before the reply is declared malformed: a VALUE line with a
/// 250-byte key and every number at its widest is under 330 bytes.
const MAX_LINE: usize = 1024;

/// Shows `bytes` the way a person reading a protocol trace wants them: printable ASCII as is,
/// everything else escaped, cut after 120 bytes.
pub fn printable(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(120)];
    let mut text: String = shown.escape_ascii().to_string();
    if bytes.len() > shown.len() {
        text.push_str("...");
    }
    text
}

/// memcached's classic text protocol.
///
/// Get: `get k1 k2 ...\r\n`, answered by `VALUE <key> <flags> <bytes>\r\n<data>\r\n` for every
/// key found, in request order, then `END\r\n`. Set: `set <key> 0 0 <bytes>\r\n<data>\r\n`,
/// answered by `STORED\r\n`.
pub struct TextProtocol {
    /// `" 0 0 <value size>\r\n"`, the constant tail of every set line.
    set_tail: Vec<u8>,
}

impl TextProtocol {
    pub fn new(dataset: &Dataset) -> TextProtocol {
        TextProtocol {
            set_tail: format!(" 0 0 {}\r\n", dataset.value_size()).into_bytes(),
        }
    }
}

/// The line at the front of `input` without its `\r\n`, or `None` if it is not all there.
fn line(input: &[u8]) -> Result<Option<&[u8]>, ProtocolError> {
    let window = &input[..input.len().min(MAX_LINE)];
    match window.iter().position(|&b| b == b'\n') {
        Some(end) if end > 0 && window[end - 1] == b'\r' => Ok(Some(&window[..end - 1])),
        Some(_) => Err(ProtocolError(format!(
            "reply line not ended by \\r\\n: `{}`",
            printable(window)
        ))),
        None if window.len() == MAX_LINE => Err(ProtocolError(format!(
            "reply line longer than {MAX_LINE} bytes: `{}`",
            printable(window)
        ))),
        None => Ok(None),
    }
}

/// A decimal number of at most `max` with no sign, no leading `+` and no spaces.
fn number(field: &[u8], max: u64) -> Option<u64> {
    if field.is_empty() || field.len() > 20 {
        return None;
    }
    let mut value: u64 = 0;
    for &digit in field {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    (value <= max).then_some(value)
}

impl Protocol for TextProtocol {
    fn encode(&self, dataset: &Dataset, request: &Request, out: &mut Vec<u8>) {
        match request.kind {
            RequestKind::Get => {
                out.extend_from_slice(b"get");
                for &key in &request.keys {
                    out.push(b' ');
                    out.extend_from_slice(dataset.key(key));
                }
                out.extend_from_slice(b"\r\n");
            }
            RequestKind::Set => {
                let key = request.keys[0];
                out.extend_from_slice(b"set ");
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
        match request.kind {
            RequestKind::Set => {
                let Some(reply) = line(input)? else {
                    return Ok(None);
                };
                if reply != b"STORED" {
                    return Err(ProtocolError(format!(
                        "set {}: expected STORED, got `{}`",
                        printable(dataset.key(request.keys[0])),
                        printable(reply)
                    )));
                }
                Ok(Some(Reply {
                    consumed: reply.len() + 2,
                    hits: 0,
                    misses: 0,
                }))
            }
            RequestKind::Get => parse_get_reply(dataset, request, verify, input),
        }
    }
}

/// The `VALUE ... END` sequence answering a (multi-)get.
fn parse_get_reply(
    dataset: &Dataset,
    request: &Request,
    verify: bool,
    input: &[u8],
) -> Result<Option<Reply>, ProtocolError> {
    let mut position = 0;
    // Hits come back in request order, so each returned key is looked for only after the
    // previous one; a key asked twice comes back twice.
    let mut next_key = 0;
    let mut hits = 0;
    loop {
        let Some(header) = line(&input[position..])? else {
            return Ok(None);
        };
        let data_start = position + header.len() + 2;
        if header == b"END" {
            let misses = (request.keys.len() - hits) as u32;
            return Ok(Some(Reply {
                consumed: data_start,
                hits: hits as u32,
                misses,
            }));
        }
        let malformed = || {
            ProtocolError(format!(
                "get: unexpected reply line `{}`",
                printable(header)
            ))
        };
        let mut fields = header.split(|&b| b == b' ');
        if fields.next() != Some(b"VALUE") {
            return Err(malformed());
        }
        let (Some(key), Some(flags), Some(size)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed());
        };
        // An optional CAS unique follows when the request was `gets`; nothing else may.
        if let Some(cas) = fields.next() {
            if number(cas, u64::MAX).is_none() || fields.next().is_some() {
                return Err(malformed());
            }
        }
        if number(flags, u64::from(u32::MAX)).is_none() {
            return Err(malformed());
        }
        let size = number(size, u64::from(u32::MAX)).ok_or_else(malformed)? as usize;
        let Some(offset) = request.keys[next_key..]
            .iter()
            .position(|&k| dataset.key(k) == key)
        else {
            return Err(ProtocolError(format!(
                "get: VALUE for key `{}` that was not asked for (or out of order)",
                printable(key)
            )));
        };
        let key_index = request.keys[next_key + offset];
        next_key += offset + 1;
        let data_end = data_start + size;
        if input.len() < data_end + 2 {
            return Ok(None);
        }
        if &input[data_end..data_end + 2] != b"\r\n" {
            return Err(ProtocolError(format!(
                "get {}: data block of {size} bytes not followed by \\r\\n",
                printable(key)
            )));
        }
        if verify && !dataset.value_matches(key_index, &input[data_start..data_end]) {
            return Err(ProtocolError(format!(
                "get {}: value differs from the one stored: `{}`",
                printable(key),
                printable(&input[data_start..data_end])
            )));
        }
        hits += 1;
        position = data_end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn get(keys: &[u32]) -> Request {
        Request {
            kind: RequestKind::Get,
            keys: keys.to_vec(),
        }
    }

    pub(crate) fn set(key: u32) -> Request {
        Request {
            kind: RequestKind::Set,
            keys: vec![key],
        }
    }

    fn value_line(dataset: &Dataset, key: u32) -> Vec<u8> {
        let mut reply = format!(
            "VALUE {} 0 {}\r\n",
            String::from_utf8_lossy(dataset.key(key)),
            dataset.value_size()
        )
        .into_bytes();
        dataset.write_value(key, &mut reply);
        reply.extend_from_slice(b"\r\n");
        reply
    }

    #[test]
    fn encodes_gets_and_sets() {
        let dataset = Dataset::new(100, 8);
        let text = TextProtocol::new(&dataset);
        let mut out = Vec::new();
        text.encode(&dataset, &get(&[1, 22]), &mut out);
        assert_eq!(out, b"get key:01 key:22\r\n");
        out.clear();
        text.encode(&dataset, &set(5), &mut out);
        let mut expected = b"set key:05 0 0 8\r\n".to_vec();
        dataset.write_value(5, &mut expected);
        expected.extend_from_slice(b"\r\n");
        assert_eq!(out, expected);
        assert!(out.starts_with(b"set key:05 0 0 8\r\nkey:05:"));
    }

    #[test]
    fn parses_a_multiget_with_hits_and_misses() {
        let dataset = Dataset::new(100, 20);
        let text = TextProtocol::new(&dataset);
        let mut reply = value_line(&dataset, 3);
        reply.extend(value_line(&dataset, 9));
        reply.extend_from_slice(b"END\r\n");
        reply.extend_from_slice(b"STORED\r\n");
        let parsed = text
            .parse_reply(&dataset, &get(&[3, 4, 9]), true, &reply)
            .unwrap();
        assert_eq!(
            parsed,
            Some(Reply {
                consumed: reply.len() - 8,
                hits: 2,
                misses: 1
            })
        );
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete() {
        let dataset = Dataset::new(100, 20);
        let text = TextProtocol::new(&dataset);
        let mut reply = value_line(&dataset, 3);
        reply.extend_from_slice(b"END\r\n");
        for cut in 0..reply.len() {
            assert_eq!(
                text.parse_reply(&dataset, &get(&[3]), true, &reply[..cut]),
                Ok(None)
            );
        }
        assert_eq!(
            text.parse_reply(&dataset, &set(1), false, b"STOR"),
            Ok(None)
        );
    }

    #[test]
    fn accepts_a_cas_field() {
        let dataset = Dataset::new(10, 4);
        let text = TextProtocol::new(&dataset);
        let mut reply = b"VALUE key:1 7 4 123456\r\n".to_vec();
        dataset.write_value(1, &mut reply);
        reply.extend_from_slice(b"\r\nEND\r\n");
        let parsed = text
            .parse_reply(&dataset, &get(&[1]), true, &reply)
            .unwrap();
        assert_eq!(parsed.map(|r| (r.hits, r.misses)), Some((1, 0)));
    }

    #[test]
    fn rejects_wrong_values_only_when_verifying() {
        let dataset = Dataset::new(100, 20);
        let text = TextProtocol::new(&dataset);
        let mut reply = value_line(&dataset, 3);
        reply[25] ^= 0x20;
        reply.extend_from_slice(b"END\r\n");
        let error = text
            .parse_reply(&dataset, &get(&[3]), true, &reply)
            .unwrap_err();
        assert!(error.0.contains("value differs"), "{error}");
        assert!(text
            .parse_reply(&dataset, &get(&[3]), false, &reply)
            .unwrap()
            .is_some());
    }

    #[test]
    fn rejects_malformed_replies() {
        let dataset = Dataset::new(100, 4);
        let text = TextProtocol::new(&dataset);
        let cases: &[(&Request, &[u8], &str)] = &[
            (&set(1), b"NOT_STORED\r\n", "expected STORED"),
            (
                &set(1),
                b"SERVER_ERROR out of memory storing object\r\n",
                "expected STORED",
            ),
            (&set(1), b"STORED\n", "not ended by"),
            (&get(&[1]), b"ERROR\r\n", "unexpected reply line"),
            (
                &get(&[1]),
                b"VALUE key:02 0 4\r\nabcd\r\nEND\r\n",
                "not asked for",
            ),
            (
                &get(&[1, 2]),
                b"VALUE key:02 0 4\r\nabcd\r\nVALUE key:01 0 4\r\n",
                "not asked for",
            ),
            (&get(&[1]), b"VALUE key:01 0 x\r\n", "unexpected reply line"),
            (
                &get(&[1]),
                b"VALUE key:01 -1 4\r\n",
                "unexpected reply line",
            ),
            (
                &get(&[1]),
                b"VALUE key:01 0 4 1 2\r\n",
                "unexpected reply line",
            ),
            (
                &get(&[1]),
                b"VALUE key:01 0 4\r\nabcdXXEND\r\n",
                "not followed by",
            ),
        ];
        for (request, reply, expected) in cases {
            let error = text
                .parse_reply(&dataset, request, false, reply)
                .unwrap_err();
            assert!(error.0.contains(expected), "{}: {error}", printable(reply));
        }
        let endless = vec![b'x'; MAX_LINE + 10];
        assert!(text
            .parse_reply(&dataset, &get(&[1]), false, &endless)
            .is_err());
    }
}
