//! memcached's binary protocol: request packets in, response packets out.
//!
//! # Packets
//!
//! Every request and every response starts with the same 24-byte header,
//! numbers in network byte order:
//!
//! ```text
//!  0       1       2       3       4       5       6       7
//! ┌───────┬───────┬───────────────┬───────┬───────┬───────────────┐
//! │ magic │opcode │ key length    │extras │ data  │ vbucket (req) │
//! │       │       │               │length │ type  │ status (resp) │
//! ├───────┴───────┴───────────────┼───────┴───────┴───────────────┤
//! │ total body length             │ opaque (echoed back)          │
//! ├───────────────────────────────┴───────────────────────────────┤
//! │ CAS                                                           │
//! └───────────────────────────────────────────────────────────────┘
//! ```
//!
//! and is followed by the body: extras, then the key, then the value, whose
//! length is what the body has left. Requests carry magic 0x80, responses
//! 0x81.
//!
//! # How memcached reads them, and so how this parser does
//!
//! memcached does not wait for a whole packet before it acts. It waits for
//! the header, the extras and the key, checks them, and only then reads the
//! value of the commands that have one. Several of its observable
//! behaviours follow from that order, and [`parse`] keeps them:
//!
//! - a wrong magic byte closes the connection at once, without a reply;
//! - lengths that do not add up (a key or extras longer than the body) are
//!   answered "Unknown command", and the connection is closed;
//! - a key longer than 250 bytes, or extras, key or body of the wrong size
//!   for the opcode, are answered "Invalid arguments", and the connection
//!   is closed;
//! - an unknown opcode is answered "Unknown command" and the connection
//!   goes on, but memcached then skips `body length` bytes *after* the
//!   extras and key it has already read, eating into whatever follows;
//! - `stat`, `touch` and the get-and-touch family read only extras and
//!   key: body bytes beyond them are read as the next packet;
//! - a storage command's value is read only once its header checked out, so
//!   a value too large for the cache is refused before it arrives
//!   ([`Body::Pending`] lets the caller decide).
//!
//! The parser borrows extras, key and value from the input and copies
//! nothing. [`Response`] writes response packets into the caller's output
//! buffer.

use super::text::StatsGroup;
use std::fmt::{self, Write as _};

/// Bytes in a request or response header.
pub const HEADER_LEN: usize = 24;
/// First byte of every request.
pub const REQUEST_MAGIC: u8 = 0x80;
/// First byte of every response.
pub const RESPONSE_MAGIC: u8 = 0x81;
/// memcached's longest key.
pub const KEY_MAX_LENGTH: usize = 250;
/// The expiration an increment or decrement carries to mean "do not create
/// the item when it is missing".
pub const NO_CREATE: u32 = 0xffff_ffff;

/// Opcodes, as numbered by the binary protocol.
pub mod opcode {
    /// `get`: the value of a key; a miss is answered "Not found".
    pub const GET: u8 = 0x00;
    /// `set`: store a value unconditionally.
    pub const SET: u8 = 0x01;
    /// `add`: store a value only if the key is missing.
    pub const ADD: u8 = 0x02;
    /// `replace`: store a value only if the key is present.
    pub const REPLACE: u8 = 0x03;
    /// `delete`: remove a key.
    pub const DELETE: u8 = 0x04;
    /// `increment`: add to a numeric value, optionally creating it.
    pub const INCREMENT: u8 = 0x05;
    /// `decrement`: subtract from a numeric value, stopping at 0.
    pub const DECREMENT: u8 = 0x06;
    /// `quit`: answer, then close the connection.
    pub const QUIT: u8 = 0x07;
    /// `flush`: invalidate every item, now or after a delay.
    pub const FLUSH: u8 = 0x08;
    /// `getq`: quiet `get`, a miss goes unanswered.
    pub const GETQ: u8 = 0x09;
    /// `noop`: answered at once; ends a run of quiet requests.
    pub const NOOP: u8 = 0x0a;
    /// `version`: the server's version string.
    pub const VERSION: u8 = 0x0b;
    /// `getk`: `get` whose response carries the key.
    pub const GETK: u8 = 0x0c;
    /// `getkq`: quiet `getk`.
    pub const GETKQ: u8 = 0x0d;
    /// `append`: add bytes after an existing value.
    pub const APPEND: u8 = 0x0e;
    /// `prepend`: add bytes before an existing value.
    pub const PREPEND: u8 = 0x0f;
    /// `stat`: statistics, one packet per line, then an empty one.
    pub const STAT: u8 = 0x10;
    /// `setq`: quiet `set`.
    pub const SETQ: u8 = 0x11;
    /// `addq`: quiet `add`.
    pub const ADDQ: u8 = 0x12;
    /// `replaceq`: quiet `replace`.
    pub const REPLACEQ: u8 = 0x13;
    /// `deleteq`: quiet `delete`.
    pub const DELETEQ: u8 = 0x14;
    /// `incrementq`: quiet `increment`.
    pub const INCREMENTQ: u8 = 0x15;
    /// `decrementq`: quiet `decrement`.
    pub const DECREMENTQ: u8 = 0x16;
    /// `quitq`: quiet `quit`, closes without an answer.
    pub const QUITQ: u8 = 0x17;
    /// `flushq`: quiet `flush`.
    pub const FLUSHQ: u8 = 0x18;
    /// `appendq`: quiet `append`.
    pub const APPENDQ: u8 = 0x19;
    /// `prependq`: quiet `prepend`.
    pub const PREPENDQ: u8 = 0x1a;
    /// `verbosity`: memcached answers it "Unknown command".
    pub const VERBOSITY: u8 = 0x1b;
    /// `touch`: set a key's expiration without fetching it.
    pub const TOUCH: u8 = 0x1c;
    /// `gat`: get and touch.
    pub const GAT: u8 = 0x1d;
    /// `gatq`: quiet `gat`.
    pub const GATQ: u8 = 0x1e;
    /// SASL list mechanisms.
    pub const SASL_LIST_MECHS: u8 = 0x20;
    /// SASL authenticate: first step.
    pub const SASL_AUTH: u8 = 0x21;
    /// SASL step: a further step of an authentication.
    pub const SASL_STEP: u8 = 0x22;
    /// `gatk`: `gat` whose response carries the key.
    pub const GATK: u8 = 0x23;
    /// `gatkq`: quiet `gatk`.
    pub const GATKQ: u8 = 0x24;
}

/// Response status codes, with the text memcached sends as the body of an
/// error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    /// The request succeeded.
    Success = 0x00,
    /// The key is not in the cache.
    KeyNotFound = 0x01,
    /// The key exists (add), or its CAS value did not match.
    KeyExists = 0x02,
    /// The value is larger than the largest item.
    TooLarge = 0x03,
    /// Lengths or values in the packet are wrong for the opcode.
    InvalidArguments = 0x04,
    /// The item was not stored: an append or prepend to a missing key, or one
    /// with no room for the longer value.
    NotStored = 0x05,
    /// incr or decr of a value that is not a decimal number.
    NonNumeric = 0x06,
    /// Also memcached's answer to a flush when flushing is disabled (`-F`).
    AuthError = 0x20,
    /// SASL wants another step; the body is the server's challenge.
    AuthContinue = 0x21,
    /// The opcode is unknown, or the packet's lengths do not add up.
    UnknownCommand = 0x81,
    /// The cache has no room for the item.
    OutOfMemory = 0x82,
}

impl Status {
    /// The body of memcached's error response with this status.
    pub fn message(self) -> &'static str {
        match self {
            Status::Success => "",
            Status::KeyNotFound => "Not found",
            Status::KeyExists => "Data exists for key.",
            Status::TooLarge => "Too large.",
            Status::InvalidArguments => "Invalid arguments",
            Status::NotStored => "Not stored.",
            Status::NonNumeric => "Non-numeric server-side value for incr or decr",
            Status::AuthError => "Auth failure.",
            Status::AuthContinue => "",
            Status::UnknownCommand => "Unknown command",
            Status::OutOfMemory => "Out of memory",
        }
    }
}

/// The fixed part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// [`REQUEST_MAGIC`] or [`RESPONSE_MAGIC`].
    pub magic: u8,
    /// The command, one of the [`opcode`] constants.
    pub opcode: u8,
    /// Length of the key, which follows the extras.
    pub key_len: u16,
    /// Length of the extras, which follow the header.
    pub extras_len: u8,
    /// Reserved: always 0.
    pub data_type: u8,
    /// vbucket id in a request, status in a response.
    pub vbucket_or_status: u16,
    /// Length of extras, key and value together.
    pub body_len: u32,
    /// Chosen by the client, echoed back in the response.
    pub opaque: u32,
    /// Compare-and-swap value: a request's condition, a response's item version.
    pub cas: u64,
}

impl Header {
    /// Reads a header from the first [`HEADER_LEN`] bytes of `bytes`.
    pub fn read(bytes: &[u8; HEADER_LEN]) -> Header {
        let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let u32_at =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Header {
            magic: bytes[0],
            opcode: bytes[1],
            key_len: u16_at(2),
            extras_len: bytes[4],
            data_type: bytes[5],
            vbucket_or_status: u16_at(6),
            body_len: u32_at(8),
            opaque: u32_at(12),
            cas: u64::from(u32_at(16)) << 32 | u64::from(u32_at(20)),
        }
    }

    /// Appends the header's 24 bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.magic);
        out.push(self.opcode);
        out.extend_from_slice(&self.key_len.to_be_bytes());
        out.push(self.extras_len);
        out.push(self.data_type);
        out.extend_from_slice(&self.vbucket_or_status.to_be_bytes());
        out.extend_from_slice(&self.body_len.to_be_bytes());
        out.extend_from_slice(&self.opaque.to_be_bytes());
        out.extend_from_slice(&self.cas.to_be_bytes());
    }
}

/// A value that has arrived, or the length of one still on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// The whole value, borrowed from the input.
    Complete(&'a [u8]),
    /// A value the input does not hold yet.
    Pending {
        /// The value's length.
        len: usize,
    },
}

/// The storage command a set-family packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `set`: store unconditionally.
    Set,
    /// `add`: store only when the key is missing.
    Add,
    /// `replace`: store only when the key is present.
    Replace,
}

/// A request, checked the way memcached checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// get, getq, getk, getkq.
    Get {
        /// The key to look up.
        key: &'a [u8],
        /// Whether the response carries the key (getk, getkq).
        with_key: bool,
    },
    /// set, add, replace and their quiet forms.
    Store {
        /// Which of set, add and replace.
        kind: StoreKind,
        /// The key to store under.
        key: &'a [u8],
        /// The client's opaque flags, stored with the item.
        flags: u32,
        /// Expiration time, as in the text protocol.
        exptime: u32,
        /// The value, or its length if it has yet to arrive.
        value: Body<'a>,
    },
    /// append, prepend and their quiet forms.
    Concat {
        /// Append (true) or prepend (false).
        append: bool,
        /// The key whose value grows.
        key: &'a [u8],
        /// The bytes to add.
        value: Body<'a>,
    },
    /// delete and deleteq.
    Delete {
        /// The key to remove.
        key: &'a [u8],
    },
    /// increment, decrement and their quiet forms.
    Delta {
        /// Increment (true) or decrement (false).
        incr: bool,
        /// The key of the counter.
        key: &'a [u8],
        /// The amount to add or subtract.
        delta: u64,
        /// The value to create a missing counter with.
        initial: u64,
        /// [`NO_CREATE`]: fail when the item is missing.
        exptime: u32,
    },
    /// quit and quitq.
    Quit,
    /// `exptime` 0 flushes now.
    Flush {
        /// Delay before the flush, in seconds or as a Unix time.
        exptime: u32,
    },
    /// noop.
    Noop,
    /// version.
    Version,
    /// `group` is the key: empty for the general statistics.
    Stat {
        /// The statistics group to report.
        group: &'a [u8],
    },
    /// touch.
    Touch {
        /// The key to touch.
        key: &'a [u8],
        /// Its new expiration time.
        exptime: u32,
    },
    /// gat, gatq, gatk, gatkq.
    GetAndTouch {
        /// The key to fetch and touch.
        key: &'a [u8],
        /// Its new expiration time.
        exptime: u32,
        /// Whether the response carries the key (gatk, gatkq).
        with_key: bool,
    },
    /// SASL list mechanisms.
    SaslListMechs,
    /// SASL auth (`step` false) or step: the mechanism is the key, the
    /// client's message the value.
    SaslAuth {
        /// Auth (false) or step (true).
        step: bool,
        /// The SASL mechanism name, sent as the key.
        mechanism: &'a [u8],
        /// The client's SASL message, sent as the value.
        message: Body<'a>,
    },
    /// An opcode memcached does not serve (including verbosity): answer
    /// "Unknown command" once `swallow` more bytes have been skipped.
    Unknown {
        /// Bytes still to skip after the extras and key already read.
        swallow: usize,
    },
    /// A packet memcached refuses: answer with `status` and close.
    Refused {
        /// The status to answer with before closing.
        status: Status,
    },
}

/// One parsed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The request's header, as read.
    pub header: Header,
    /// Whether success (and for gets, a miss) goes unanswered.
    pub quiet: bool,
    /// What the request asks for.
    pub command: Command<'a>,
    /// Bytes of input the request used; for a [`Body::Pending`] value, the
    /// bytes before the value.
    pub len: usize,
}

/// What [`parse`] found at the start of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse<'a> {
    /// More input is needed; `wanted` is the size the packet's known part
    /// will have.
    Incomplete {
        /// Bytes needed before parsing can go on.
        wanted: usize,
    },
    /// The input does not start with a request's magic byte: memcached
    /// closes the connection without a reply.
    BadMagic,
    /// A request that checked out (or must be refused: see [`Command::Refused`]).
    Request(Request<'a>),
}

/// Parses the request at the start of `input` (see the module docs for the
/// order of checks).
pub fn parse(input: &[u8]) -> Parse<'_> {
    let Some(head) = input.first_chunk::<HEADER_LEN>() else {
        return Parse::Incomplete { wanted: HEADER_LEN };
    };
    let header = Header::read(head);
    if header.magic != REQUEST_MAGIC {
        return Parse::BadMagic;
    }
    let extras_len = usize::from(header.extras_len);
    let key_len = usize::from(header.key_len);
    let body_len = header.body_len as usize;
    let head_len = HEADER_LEN + extras_len + key_len;
    if input.len() < head_len {
        return Parse::Incomplete { wanted: head_len };
    }
    let extras = &input[HEADER_LEN..HEADER_LEN + extras_len];
    let key = &input[HEADER_LEN + extras_len..head_len];
    let refuse = |status| {
        Parse::Request(Request {
            header,
            quiet: false,
            command: Command::Refused { status },
            len: head_len,
        })
    };
    if key_len + extras_len > body_len {
        return refuse(Status::UnknownCommand);
    }
    if key_len > KEY_MAX_LENGTH {
        return refuse(Status::InvalidArguments);
    }
    // The value of a storage command: the rest of the body.
    let value_len = body_len - key_len - extras_len;
    let value = match input.get(head_len..head_len.saturating_add(value_len)) {
        Some(value) => Body::Complete(value),
        None => Body::Pending { len: value_len },
    };
    let with_value = match value {
        Body::Complete(_) => head_len + value_len,
        Body::Pending { .. } => head_len,
    };
    let only = |extras_ok: bool, key_ok: bool, body_ok: bool| extras_ok && key_ok && body_ok;
    let bare = only(extras_len == 0, key_len == 0, body_len == 0);
    let keyed = only(extras_len == 0, key_len > 0, body_len == key_len);
    use opcode::*;
    let op = header.opcode;
    let quiet = matches!(
        op,
        GETQ | GETKQ
            | SETQ
            | ADDQ
            | REPLACEQ
            | DELETEQ
            | INCREMENTQ
            | DECREMENTQ
            | QUITQ
            | FLUSHQ
            | APPENDQ
            | PREPENDQ
            | GATQ
            | GATKQ
    );
    let (valid, command, len) = match op {
        GET | GETQ | GETK | GETKQ => (
            keyed,
            Command::Get {
                key,
                with_key: matches!(op, GETK | GETKQ),
            },
            head_len,
        ),
        SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ => {
            let kind = match op {
                SET | SETQ => StoreKind::Set,
                ADD | ADDQ => StoreKind::Add,
                _ => StoreKind::Replace,
            };
            (
                extras_len == 8 && key_len > 0,
                Command::Store {
                    kind,
                    key,
                    flags: be_u32(extras, 0),
                    exptime: be_u32(extras, 4),
                    value,
                },
                with_value,
            )
        }
        APPEND | APPENDQ | PREPEND | PREPENDQ => (
            extras_len == 0 && key_len > 0,
            Command::Concat {
                append: matches!(op, APPEND | APPENDQ),
                key,
                value,
            },
            with_value,
        ),
        DELETE | DELETEQ => (keyed, Command::Delete { key }, head_len),
        INCREMENT | INCREMENTQ | DECREMENT | DECREMENTQ => (
            extras_len == 20 && key_len > 0 && body_len == key_len + 20,
            Command::Delta {
                incr: matches!(op, INCREMENT | INCREMENTQ),
                key,
                delta: be_u64(extras, 0),
                initial: be_u64(extras, 8),
                exptime: be_u32(extras, 16),
            },
            head_len,
        ),
        QUIT | QUITQ => (bare, Command::Quit, head_len),
        FLUSH | FLUSHQ => (
            key_len == 0 && body_len == extras_len && (extras_len == 0 || extras_len == 4),
            Command::Flush {
                exptime: be_u32(extras, 0),
            },
            head_len,
        ),
        NOOP => (bare, Command::Noop, head_len),
        VERSION => (bare, Command::Version, head_len),
        STAT => (extras_len == 0, Command::Stat { group: key }, head_len),
        TOUCH | GAT | GATQ | GATK | GATKQ => {
            let exptime = be_u32(extras, 0);
            let command = if op == TOUCH {
                Command::Touch { key, exptime }
            } else {
                Command::GetAndTouch {
                    key,
                    exptime,
                    with_key: matches!(op, GATK | GATKQ),
                }
            };
            (extras_len == 4 && key_len > 0, command, head_len)
        }
        SASL_LIST_MECHS => (bare, Command::SaslListMechs, head_len),
        SASL_AUTH | SASL_STEP => (
            extras_len == 0 && key_len > 0,
            Command::SaslAuth {
                step: op == SASL_STEP,
                mechanism: key,
                message: value,
            },
            with_value,
        ),
        _ => (true, Command::Unknown { swallow: body_len }, head_len),
    };
    if !valid {
        return refuse(Status::InvalidArguments);
    }
    Parse::Request(Request {
        header,
        quiet,
        command,
        len,
    })
}

/// The `stats` group a stat request's key names, by memcached's binary
/// rules: `reset`, `settings` and `detail` (and the detail switches) match
/// as prefixes, the other groups exactly; `conns` is a text-only group.
pub fn stats_group(key: &[u8]) -> StatsGroup<'_> {
    if key.is_empty() {
        return StatsGroup::General;
    }
    if key.starts_with(b"reset") {
        return StatsGroup::Reset;
    }
    if key.starts_with(b"settings") {
        return StatsGroup::Settings;
    }
    if let Some(rest) = key.strip_prefix(b"detail") {
        let switch: [&'static [u8]; 3] = [b"dump", b"on", b"off"];
        let arg = switch.into_iter().find(|word| {
            rest.strip_prefix(b" ")
                .is_some_and(|rest| rest.starts_with(word))
        });
        return StatsGroup::Detail(arg);
    }
    match key {
        b"items" => StatsGroup::Items,
        b"slabs" => StatsGroup::Slabs,
        b"sizes" => StatsGroup::Sizes,
        _ => StatsGroup::Unknown,
    }
}

/// The big-endian `u32` at `at` in `bytes`, 0 when `bytes` is too short
/// (only reached for packets that are then refused).
fn be_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// Writes the response packets of one request.
#[derive(Debug, Clone, Copy)]
pub struct Response {
    /// The request's opcode, which every response repeats.
    pub opcode: u8,
    /// The request's opaque, echoed back.
    pub opaque: u32,
}

impl Response {
    /// The response to `request`'s header.
    pub fn to(header: &Header) -> Response {
        Response {
            opcode: header.opcode,
            opaque: header.opaque,
        }
    }

    fn header(&self, status: Status, extras: usize, key: usize, body: usize, cas: u64) -> Header {
        Header {
            magic: RESPONSE_MAGIC,
            opcode: self.opcode,
            key_len: key as u16,
            extras_len: extras as u8,
            data_type: 0,
            vbucket_or_status: status as u16,
            body_len: body as u32,
            opaque: self.opaque,
            cas,
        }
    }

    /// A response with `extras`, `key` and `value` and status success.
    pub fn success(&self, out: &mut Vec<u8>, cas: u64, extras: &[u8], key: &[u8], value: &[u8]) {
        let body = extras.len() + key.len() + value.len();
        out.reserve(HEADER_LEN + body);
        self.header(Status::Success, extras.len(), key.len(), body, cas)
            .write(out);
        out.extend_from_slice(extras);
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }

    /// An error response: memcached's message for `status` as the body.
    pub fn error(&self, out: &mut Vec<u8>, status: Status) {
        let message = status.message();
        self.header(status, 0, 0, message.len(), 0).write(out);
        out.extend_from_slice(message.as_bytes());
    }

    /// The miss of getk/gatk: status "not found" with the key as the body
    /// and no message.
    pub fn miss_with_key(&self, out: &mut Vec<u8>, key: &[u8]) {
        self.header(Status::KeyNotFound, 0, key.len(), key.len(), 0)
            .write(out);
        out.extend_from_slice(key);
    }

    /// One statistic: its name as the key and its value as the value. An
    /// empty name and value end a `stat` reply.
    pub fn stat(&self, out: &mut Vec<u8>, name: &str, value: impl fmt::Display) {
        let start = out.len();
        self.header(Status::Success, 0, name.len(), 0, 0).write(out);
        out.extend_from_slice(name.as_bytes());
        // The value is formatted in place, then its length patched in.
        let _ = write!(VecWriter(out), "{value}");
        let body_len = (out.len() - start - HEADER_LEN) as u32;
        out[start + 8..start + 12].copy_from_slice(&body_len.to_be_bytes());
    }
}

/// `fmt::Write` into a byte buffer.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
