//! memcached's meta commands: `mg`, `ms`, `md`, `ma`, `mn` and `me`.
//!
//! A meta request is a two-letter command, a key, for `ms` a data length, and then
//! single-letter flags, some carrying a token glued to the letter (`T30`, `Oabc`):
//!
//! ```text
//! mg <key> <flags>*\r\n
//! ms <key> <datalen> <flags>*\r\n<data>\r\n
//! ```
//!
//! The text parser spots a meta command the way memcached does, before anything else:
//! any first token that is `m` plus one letter comes here. Parsing is memcached's
//! `_meta_flag_preparse` and the checks around it, reproduced to the letter because the
//! error a client gets depends on their order: the key length, then the number of
//! tokens, then each flag left to right (an unknown or repeated flag stops the scan at
//! once; a bad numeric token is remembered and the scan goes on, so the last such
//! complaint wins). `md` and `ma` replace every flag complaint with one message of their
//! own. For `ms`, errors found once the data length is known come with the number of
//! data bytes to throw away.
//!
//! A [`MetaCommand`] borrows the line: its flags are walked again, in order, when the
//! reply is built, because memcached answers flags in the order they were given and
//! some of them act as they are reached (`T` before `t` reports the new TTL). A base64
//! key (`b`) is checked here and decoded again by the caller into a buffer of its own
//! ([`Key::decode`]), so parsing allocates nothing.
//!
//! The second half of the module encodes replies: `HD`, `VA <len>`, `EN`, … and their
//! returned flags.

use super::text::{Tokens, BAD_FORMAT, ERROR, KEY_MAX_LENGTH};
use crate::ascii::{parse_i32, parse_u32, parse_u64, push_u64};

/// memcached's `MFLAG_MAX_OPT_LENGTH`: more tokens than this (counting the command,
/// the key and memcached's terminal token) is refused.
const MAX_TOKENS: usize = 20;
/// Longest opaque token, its `O` included.
pub const MAX_OPAQUE_LEN: usize = 32;

/// Reply to a flag letter the command does not know.
pub const INVALID_FLAG: &str = "CLIENT_ERROR invalid flag";
/// Reply to a flag given twice.
pub const DUPLICATE_FLAG: &str = "CLIENT_ERROR duplicate flag";
/// Reply to a flag token that is not a number where one is needed (`N`, `T`, `R`, `C`).
pub const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
/// Reply to a `b` key that is not valid base64.
pub const BAD_KEY_ENCODING: &str = "CLIENT_ERROR error decoding key";
/// Reply to a `J` (initial value) token that is not a number.
pub const INVALID_INITIAL: &str = "CLIENT_ERROR invalid numeric initial value";
/// Reply to a `D` (delta) token that is not a number.
pub const INVALID_DELTA: &str = "CLIENT_ERROR invalid numeric delta value";
/// Reply to an `M` flag with more than one mode letter.
pub const BAD_MODE_LENGTH: &str = "CLIENT_ERROR incorrect length for M token";
/// Reply to an `ms` `M` mode other than `S`, `E`, `A`, `P` or `R`.
pub const BAD_SET_MODE: &str = "CLIENT_ERROR invalid mode for ms M token";
/// Reply to an `ma` `M` mode other than `I`, `+`, `D` or `-`.
pub const BAD_ARITH_MODE: &str = "CLIENT_ERROR invalid mode for ma M token";
/// Reply to an `O` token longer than [`MAX_OPAQUE_LEN`].
pub const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";
/// `mg`'s wording.
pub const GET_FLAGS_TOO_LONG: &str = "CLIENT_ERROR options flags are too long";
/// `ms`, `md` and `ma`'s wording.
pub const FLAGS_TOO_LONG: &str = "CLIENT_ERROR options flags too long";
/// `md` and `ma` answer every flag problem with this.
pub const INVALID_OR_DUPLICATE: &str = "CLIENT_ERROR invalid or duplicate flag";

/// A buffer for a decoded key: a base64 key of at most 250 bytes decodes to fewer.
pub type KeyBuf = [u8; KEY_MAX_LENGTH];

/// One meta request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// `mn`: answered `MN`.
    Noop,
    /// `me <key> [b]`: the item's metadata.
    Debug(Key<'a>),
    /// `mg`, `ms`, `md` or `ma`.
    Command(MetaCommand<'a>),
    /// memcached's reply to a bad request, sent after `swallow` bytes of data (an `ms`
    /// value, with its `\r\n`) were thrown away.
    Error {
        /// memcached's reply text.
        reply: &'static str,
        /// Data bytes to discard before replying.
        swallow: usize,
    },
}

/// A key as the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    raw: &'a [u8],
    binary: bool,
}

impl<'a> Key<'a> {
    /// The key as sent: base64 when [`is_binary`](Self::is_binary).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The client sent it base64-encoded (flag `b`).
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// The key to look up: decoded into `buf` when it is base64.
    pub fn decode<'b>(&self, buf: &'b mut KeyBuf) -> &'b [u8]
    where
        'a: 'b,
    {
        if !self.binary {
            return self.raw;
        }
        // Parsing checked that it decodes.
        let len = base64_decode(self.raw, buf).unwrap_or(0);
        &buf[..len]
    }
}

/// Which meta command, with its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    /// `mg`: fetch an item.
    Get,
    /// `value_len` bytes of data (and `\r\n`) follow the line.
    Set {
        /// How the data is stored (`M` flag).
        mode: SetMode,
        /// Announced data length, without the trailing `\r\n`.
        value_len: u32,
    },
    /// `md`: delete or invalidate an item.
    Delete,
    /// `ma`: increment or decrement a counter.
    Arithmetic {
        /// Increment (true) or decrement (false), from the `M` flag.
        incr: bool,
    },
}

/// `ms`'s `M` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// `MS` (the default): store unconditionally.
    Set,
    /// `ME`
    Add,
    /// `MA`: add the data after an existing value.
    Append,
    /// `MP`: add the data before an existing value.
    Prepend,
    /// `MR`: store only when the key is present.
    Replace,
}

/// What the flags asked for, as memcached's preparse records it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `u`: don't bump the item.
    pub no_update: bool,
    /// `v`: return the value.
    pub value: bool,
    /// `q`: leave out the nominal reply.
    pub quiet: bool,
    /// `I`: invalidate (`md`), or accept an older CAS as stale (`ms`).
    pub invalidate: bool,
    /// `T`: new TTL, as the client's exptime.
    pub ttl: Option<i32>,
    /// `N`: create on a miss, with this exptime.
    pub vivify: Option<i32>,
    /// `R`: win the refresh when less than this much time is left.
    pub recache: Option<i32>,
    /// `F`: client flags to store.
    pub client_flags: u32,
    /// `C`: CAS to compare.
    pub compare_cas: Option<u64>,
    /// `J`: the number a created counter starts at.
    pub initial: u64,
    /// `D`: how much to add or subtract (1 by default).
    pub delta: u64,
    /// One of `h l N T R`: memcached reads the item under its lock and bumps it only
    /// after building the reply, so a failure part-way leaves it unbumped.
    pub locked: bool,
}

/// A well-formed `mg`, `ms`, `md` or `ma`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaCommand<'a> {
    /// Which command, with its mode.
    pub kind: MetaKind,
    /// The key, possibly base64.
    pub key: Key<'a>,
    /// What the flags asked for.
    pub options: Options,
    /// The flag tokens, as sent.
    flags: &'a [u8],
}

impl<'a> MetaCommand<'a> {
    /// The flag tokens in the order given, each with its letter first.
    pub fn flags(&self) -> impl Iterator<Item = &'a [u8]> {
        self.flags
            .split(|&b| b == b' ')
            .filter(|token| !token.is_empty())
    }
}

/// Parses a line whose first token is `m` and one more byte.
pub(super) fn parse<'a>(tokens: &Tokens<'a>) -> Request<'a> {
    let ntokens = tokens.ntokens();
    match tokens.get(0)[1] {
        b'n' => Request::Noop,
        b'e' => parse_debug(tokens),
        letter @ (b'g' | b's' | b'd' | b'a') => {
            if ntokens < 3 {
                return error(ERROR, 0);
            }
            if tokens.get(1).len() > KEY_MAX_LENGTH {
                return error(BAD_FORMAT, 0);
            }
            match letter {
                b'g' => parse_get(tokens),
                b's' => parse_set(tokens),
                _ => parse_delete_or_arith(tokens, letter == b'a'),
            }
        }
        _ => error(ERROR, 0),
    }
}

fn error(reply: &'static str, swallow: usize) -> Request<'static> {
    Request::Error { reply, swallow }
}

fn parse_debug<'a>(tokens: &Tokens<'a>) -> Request<'a> {
    let ntokens = tokens.ntokens();
    let raw = tokens.get(1);
    if ntokens < 3 || raw.len() > KEY_MAX_LENGTH {
        return error(BAD_FORMAT, 0);
    }
    // Only a lone `b` right after the key counts; `me` ignores anything else.
    let binary = ntokens >= 4 && tokens.get(2) == b"b";
    if binary && base64_decode(raw, &mut [0; KEY_MAX_LENGTH]).is_none() {
        return error(BAD_FORMAT, 0);
    }
    Request::Debug(Key { raw, binary })
}

fn parse_get<'a>(tokens: &Tokens<'a>) -> Request<'a> {
    if tokens.ntokens() > MAX_TOKENS {
        return error(GET_FLAGS_TOO_LONG, 0);
    }
    match preparse(tokens, 2) {
        Ok((key, options)) => Request::Command(MetaCommand {
            kind: MetaKind::Get,
            key,
            options,
            flags: tokens.tail(2),
        }),
        Err(reply) => error(reply, 0),
    }
}

fn parse_set<'a>(tokens: &Tokens<'a>) -> Request<'a> {
    let ntokens = tokens.ntokens();
    if ntokens == 3 {
        return error(BAD_FORMAT, 0);
    }
    if ntokens > MAX_TOKENS {
        return error(FLAGS_TOO_LONG, 0);
    }
    let value_len = match parse_i32(tokens.get(2)) {
        Some(len) if (0..=i32::MAX - 2).contains(&len) => len as u32,
        _ => return error(BAD_FORMAT, 0),
    };
    // From here on memcached knows how much data to throw away after an error.
    let swallow = value_len as usize + 2;
    let (key, options) = match preparse(tokens, 3) {
        Ok(parsed) => parsed,
        Err(reply) => return error(reply, swallow),
    };
    let opaque_too_long = opaque_too_long(tokens.tail(3));
    let mode = match options_mode(tokens, 3) {
        None | Some(b'S') => SetMode::Set,
        Some(b'E') => SetMode::Add,
        Some(b'A') => SetMode::Append,
        Some(b'P') => SetMode::Prepend,
        Some(b'R') => SetMode::Replace,
        Some(_) => return error(BAD_SET_MODE, swallow),
    };
    if opaque_too_long {
        return error(OPAQUE_TOO_LONG, swallow);
    }
    Request::Command(MetaCommand {
        kind: MetaKind::Set { mode, value_len },
        key,
        options,
        flags: tokens.tail(3),
    })
}

fn parse_delete_or_arith<'a>(tokens: &Tokens<'a>, arith: bool) -> Request<'a> {
    if tokens.ntokens() > MAX_TOKENS {
        return error(FLAGS_TOO_LONG, 0);
    }
    let Ok((key, options)) = preparse(tokens, 2) else {
        return error(INVALID_OR_DUPLICATE, 0);
    };
    let flags = tokens.tail(2);
    let kind = if arith {
        let incr = match options_mode(tokens, 2) {
            None | Some(b'I' | b'+') => true,
            Some(b'D' | b'-') => false,
            Some(_) => return error(BAD_ARITH_MODE, 0),
        };
        // `ma` meets an over-long opaque only while answering, after the arithmetic.
        MetaKind::Arithmetic { incr }
    } else {
        if opaque_too_long(flags) {
            return error(OPAQUE_TOO_LONG, 0);
        }
        MetaKind::Delete
    };
    Request::Command(MetaCommand {
        kind,
        key,
        options,
        flags,
    })
}

/// The byte after `M`, when an `M` flag is there (preparse checked its length).
fn options_mode(tokens: &Tokens<'_>, first_flag: usize) -> Option<u8> {
    (first_flag..tokens.ntokens() - 1)
        .map(|i| tokens.get(i))
        .find(|token| token[0] == b'M')
        .map(|token| token[1])
}

fn opaque_too_long(flags: &[u8]) -> bool {
    flags
        .split(|&b| b == b' ')
        .any(|token| token.first() == Some(&b'O') && token.len() > MAX_OPAQUE_LEN)
}

/// memcached's `_meta_flag_preparse` over the flags from token `first_flag` on.
fn preparse<'a>(
    tokens: &Tokens<'a>,
    first_flag: usize,
) -> Result<(Key<'a>, Options), &'static str> {
    let mut key = Key {
        raw: tokens.get(1),
        binary: false,
    };
    let mut options = Options {
        delta: 1,
        ..Options::default()
    };
    let mut seen = [false; 127];
    // memcached flags a bad token and carries on; the last message set is the one sent,
    // and a bad `F` sets none (the default is then sent).
    let mut failed = false;
    let mut reply = BAD_FORMAT;
    let mut fail = |message: Option<&'static str>| {
        failed = true;
        if let Some(message) = message {
            reply = message;
        }
    };
    for i in first_flag..tokens.ntokens() - 1 {
        let token = tokens.get(i);
        let letter = token[0];
        let argument = &token[1..];
        if letter >= 127 || seen[usize::from(letter)] {
            return Err(DUPLICATE_FLAG);
        }
        seen[usize::from(letter)] = true;
        match letter {
            b'b' => {
                key.binary = true;
                if base64_decode(key.raw, &mut [0; KEY_MAX_LENGTH]).is_none() {
                    fail(Some(BAD_KEY_ENCODING));
                }
            }
            b'N' | b'T' | b'R' => {
                options.locked = true;
                match parse_i32(argument) {
                    None => fail(Some(BAD_TOKEN)),
                    Some(exptime) => match letter {
                        b'N' => options.vivify = Some(exptime),
                        b'T' => options.ttl = Some(exptime),
                        _ => options.recache = Some(exptime),
                    },
                }
            }
            b'l' | b'h' => options.locked = true,
            b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' => {}
            b'v' => options.value = true,
            b'u' => options.no_update = true,
            b'q' => options.quiet = true,
            b'F' => match parse_u32(argument) {
                Some(flags) => options.client_flags = flags,
                None => fail(None),
            },
            b'C' => match parse_u64(argument) {
                Some(cas) => options.compare_cas = Some(cas),
                None => fail(Some(BAD_TOKEN)),
            },
            b'M' => {
                if token.len() != 2 {
                    fail(Some(BAD_MODE_LENGTH));
                }
            }
            b'J' => match parse_u64(argument) {
                Some(initial) => options.initial = initial,
                None => fail(Some(INVALID_INITIAL)),
            },
            b'D' => match parse_u64(argument) {
                Some(delta) => options.delta = delta,
                None => fail(Some(INVALID_DELTA)),
            },
            b'I' => options.invalidate = true,
            _ => return Err(INVALID_FLAG),
        }
    }
    if failed {
        Err(reply)
    } else {
        Ok((key, options))
    }
}

// ---------------------------------------------------------------------------------------
// Base64, as memcached's decoder reads it

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A base64 digit's value; `=` counts as 0; `None` for bytes the decoder skips.
fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// memcached's `base64_decode`: bytes outside the alphabet are skipped, the digits must
/// come in whole groups of four, decoding stops after the first group with padding
/// (one or two `=`; more is an error), and an empty result is an error too. Returns the
/// decoded length; `out` must hold three bytes per four digits.
pub fn base64_decode(src: &[u8], out: &mut [u8]) -> Option<usize> {
    let digits = src.iter().filter(|&&b| base64_value(b).is_some()).count();
    if digits == 0 || digits % 4 != 0 || digits / 4 * 3 > out.len() {
        return None;
    }
    let mut len = 0;
    let mut block = [0u8; 4];
    let mut count = 0;
    let mut pad = 0;
    for &b in src {
        let Some(value) = base64_value(b) else {
            continue;
        };
        if b == b'=' {
            pad += 1;
        }
        block[count] = value;
        count += 1;
        if count == 4 {
            out[len] = (block[0] << 2) | (block[1] >> 4);
            out[len + 1] = (block[1] << 4) | (block[2] >> 2);
            out[len + 2] = (block[2] << 6) | block[3];
            len += 3;
            count = 0;
            if pad > 0 {
                if pad > 2 {
                    return None;
                }
                len -= pad;
                break;
            }
        }
    }
    (len > 0).then_some(len)
}

/// Appends the standard, padded base64 encoding of `src`.
pub fn base64_encode(src: &[u8], out: &mut Vec<u8>) {
    let digit = |index: u8| BASE64_ALPHABET[usize::from(index & 0x3f)];
    let mut chunks = src.chunks_exact(3);
    for chunk in &mut chunks {
        out.extend_from_slice(&[
            digit(chunk[0] >> 2),
            digit((chunk[0] << 4) | (chunk[1] >> 4)),
            digit((chunk[1] << 2) | (chunk[2] >> 6)),
            digit(chunk[2]),
        ]);
    }
    match *chunks.remainder() {
        [a] => out.extend_from_slice(&[digit(a >> 2), digit(a << 4), b'=', b'=']),
        [a, b] => out.extend_from_slice(&[
            digit(a >> 2),
            digit((a << 4) | (b >> 4)),
            digit(b << 2),
            b'=',
        ]),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Replies

/// Starts a reply line with its two-letter code (`HD`, `EN`, `NF`, `NS`, `EX`, `MN`).
#[inline]
pub fn code(out: &mut Vec<u8>, code: &[u8; 2]) {
    out.extend_from_slice(code);
}

/// Starts a `VA <len>` reply line.
#[inline]
pub fn value_header(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(b"VA ");
    push_u64(out, len as u64);
}

/// Appends a returned flag with a number: ` c123`.
#[inline]
pub fn flag_number(out: &mut Vec<u8>, letter: u8, n: u64) {
    out.push(b' ');
    out.push(letter);
    push_u64(out, n);
}

/// Appends a returned flag without argument: ` W`.
#[inline]
pub fn flag(out: &mut Vec<u8>, letter: u8) {
    out.push(b' ');
    out.push(letter);
}

/// Appends a TTL flag: ` t-1` for an item that never expires.
#[inline]
pub fn flag_ttl(out: &mut Vec<u8>, letter: u8, ttl: Option<u32>) {
    match ttl {
        Some(secs) => flag_number(out, letter, u64::from(secs)),
        None => out.extend_from_slice(&[b' ', letter, b'-', b'1']),
    }
}

/// Appends a token echoed as sent (the opaque, `O` included).
#[inline]
pub fn echo(out: &mut Vec<u8>, token: &[u8]) {
    out.push(b' ');
    out.extend_from_slice(token);
}

/// Appends the key flag: ` k<key>`, or ` k<base64> b` for a binary key.
pub fn key(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    out.extend_from_slice(b" k");
    if binary {
        base64_encode(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

/// Ends a reply line.
#[inline]
pub fn end_line(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// Appends a value's data block.
#[inline]
pub fn data(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
