//! The memcached text protocol: request lines in, commands out.
//!
//! A request is one line terminated by `\n` (an optional `\r` before it is
//! dropped), split on single spaces into at most 24 tokens exactly as
//! memcached's `tokenize_command` does; storage commands are followed by a
//! data block of the announced length plus `\r\n`. Parsing is a pure function
//! over the bytes already received: it never copies a key or a value, it
//! borrows them from the connection's buffer, and it reports `Incomplete`
//! until a whole line is there, so a request split at any byte boundary
//! parses the same as one that arrived in one piece.
//!
//! A first token of `m` and one more byte is a meta command, handed to the `meta`
//! module before any other command is looked at, as memcached does.
//!
//! Errors that memcached reports for a malformed line come back as
//! [`Command::Error`] carrying memcached's exact reply text and whether
//! `noreply` was already seen (memcached suppresses most of its error replies
//! for `noreply` requests, but not `ERROR` for an unknown or short command).

use super::meta;
use crate::ascii::{parse_i32, parse_u32, parse_u64};

/// Longest key memcached accepts.
pub const KEY_MAX_LENGTH: usize = 250;
/// memcached tokenizes at most this many tokens (the last holds the rest).
const MAX_TOKENS: usize = 23;
/// Without a newline in this many bytes the client is not speaking the
/// protocol, unless it is sending a long multi-key get.
pub const MAX_LINE_WITHOUT_NEWLINE: usize = 2048;
/// Upper bound for a multi-key get line, so a client can't make us buffer
/// without limit while we wait for its newline.
pub const MAX_GET_LINE: usize = 2 * 1024 * 1024;

/// Reply to an unknown command, or one with too few tokens.
pub const ERROR: &str = "ERROR";
/// Reply to a line whose arguments memcached cannot read.
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
/// Reply to a data block that does not end in `\r\n` where its length says.
pub const BAD_DATA_CHUNK: &str = "CLIENT_ERROR bad data chunk";
/// Reply to an expiration time that is not a number.
pub const BAD_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";
/// Reply to an incr or decr amount that is not a number.
pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument";
/// Reply to a `delete` with too many arguments.
pub const BAD_DELETE: &str = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";
/// Reply to an incr or decr of a value that is not a number.
pub const NON_NUMERIC: &str = "CLIENT_ERROR cannot increment or decrement non-numeric value";
/// Reply to a value larger than the largest item.
pub const TOO_LARGE: &str = "SERVER_ERROR object too large for cache";
/// Reply when the cache has no room for a stored value.
pub const NO_MEMORY: &str = "SERVER_ERROR out of memory storing object";
/// Reply when the cache has no room for the result of an incr or decr.
pub const NO_MEMORY_DELTA: &str = "SERVER_ERROR out of memory";
/// Reply to `flush_all` when flushing is disabled (`-F`).
pub const FLUSH_DISABLED: &str = "CLIENT_ERROR flush_all not allowed";
/// Reply to `shutdown` when it is not enabled (`-A`).
pub const SHUTDOWN_DISABLED: &str = "ERROR: shutdown not enabled";
/// Reply to `shutdown` with an argument other than `graceful`.
pub const BAD_SHUTDOWN: &str = "CLIENT_ERROR invalid shutdown mode";
/// Reply to `cache_memlimit` below 8 megabytes.
pub const MEMLIMIT_TOO_SMALL: &str = "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m";
/// Reply to `cache_memlimit` above 1000000000, most likely meant as bytes.
pub const MEMLIMIT_NOT_BYTES: &str = "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes";
/// Reply to `stats detail` without `on`, `off` or `dump`.
pub const STATS_DETAIL_USAGE: &str = "CLIENT_ERROR usage: stats detail on|off|dump";

/// The result of looking at the start of a connection's input.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// No complete line yet: read more.
    Incomplete,
    /// One request line; `len` bytes (including the newline) were used.
    Line {
        /// The request.
        command: Command<'a>,
        /// Bytes of input used, the newline included.
        len: usize,
    },
    /// The peer is not speaking the protocol (an endless line, HTTP):
    /// memcached drops such a connection without a reply.
    Close,
}

/// Which of the retrieval commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetKind {
    /// `get`: values only.
    Get,
    /// `gets`: values with their CAS.
    Gets,
    /// get-and-touch; `Gats` also returns CAS.
    Gat,
    /// `gats`: get-and-touch with CAS.
    Gats,
}

impl GetKind {
    /// Whether the reply carries each item's CAS value (gets, gats).
    pub fn with_cas(self) -> bool {
        matches!(self, GetKind::Gets | GetKind::Gats)
    }
}

/// Which storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `set`: store unconditionally.
    Set,
    /// `add`: store only when the key is missing.
    Add,
    /// `replace`: store only when the key is present.
    Replace,
    /// `append`: add the data after an existing value.
    Append,
    /// `prepend`: add the data before an existing value.
    Prepend,
    /// `cas`: store only when the item's CAS still matches.
    Cas,
}

/// A storage command's line; its data block follows it in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreHeader<'a> {
    /// Which storage command.
    pub kind: StoreKind,
    /// The key to store under.
    pub key: &'a [u8],
    /// The client's opaque flags, stored with the item.
    pub flags: u32,
    /// Expiration time: seconds from now, a Unix time, or negative for already expired.
    pub exptime: i32,
    /// Announced data length, without the trailing `\r\n`.
    pub value_len: usize,
    /// Compare-and-swap token, 0 unless `kind` is `Cas`.
    pub cas: u64,
    /// Whether the client asked for no reply.
    pub noreply: bool,
}

/// The stats groups memcached's `stats <group>` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsGroup<'a> {
    /// `stats`: the general statistics.
    General,
    /// `stats settings`.
    Settings,
    /// `stats items`: per slab class item counts.
    Items,
    /// `stats slabs`: per slab class memory use.
    Slabs,
    /// `stats sizes`: item counts by size.
    Sizes,
    /// `stats conns`: one block per open connection.
    Conns,
    /// `stats reset`: zero the resettable counters.
    Reset,
    /// `stats detail on|off|dump`; `None` when the argument is missing.
    Detail(Option<&'a [u8]>),
    /// Anything else: memcached answers `ERROR`.
    Unknown,
}

/// `shutdown` and its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// `shutdown`: stop now.
    Now,
    /// `shutdown graceful`.
    Graceful,
    /// Any other argument, or too many: a client error.
    Invalid,
}

/// One parsed request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// get, gets, gat, gats.
    Get {
        /// Which retrieval command.
        kind: GetKind,
        /// For gat/gats; 0 otherwise.
        exptime: i32,
        /// The keys to look up, in order.
        keys: Keys<'a>,
    },
    /// set, add, replace, append, prepend, cas.
    Store(StoreHeader<'a>),
    /// `delete <key> [noreply]`.
    Delete {
        /// The key to remove.
        key: &'a [u8],
        /// Whether the client asked for no reply.
        noreply: bool,
    },
    /// `incr` or `decr`.
    IncrDecr {
        /// Increment (true) or decrement (false).
        incr: bool,
        /// The key of the counter.
        key: &'a [u8],
        /// The amount to add or subtract.
        delta: u64,
        /// Whether the client asked for no reply.
        noreply: bool,
    },
    /// `touch <key> <exptime> [noreply]`.
    Touch {
        /// The key to touch.
        key: &'a [u8],
        /// Its new expiration time.
        exptime: i32,
        /// Whether the client asked for no reply.
        noreply: bool,
    },
    /// `delay` is `None` when the argument was not a number.
    FlushAll {
        /// Seconds (or a Unix time) before everything is invalidated.
        delay: Option<i32>,
        /// Whether the client asked for no reply.
        noreply: bool,
    },
    /// `verbosity <level> [noreply]`.
    Verbosity {
        /// The requested verbosity.
        level: u32,
        /// Whether the client asked for no reply.
        noreply: bool,
    },
    /// `stats [group]`.
    Stats(StatsGroup<'a>),
    /// `cache_memlimit <megabytes>`: already checked against memcached's
    /// bounds (at least 8, at most 1000000000).
    CacheMemlimit {
        /// The new memory limit, in megabytes.
        megabytes: u32,
        /// Whether the client asked for no reply.
        noreply: bool,
    },
    /// `version`.
    Version,
    /// `quit`: close the connection.
    Quit,
    /// `shutdown [graceful]`.
    Shutdown(ShutdownMode),
    /// `mg`, `ms`, `md`, `ma`, `mn`, `me` (and any other `m?`, which is an error).
    Meta(meta::Request<'a>),
    /// memcached's reply to a malformed line.
    Error {
        /// memcached's reply text.
        reply: &'static str,
        /// Whether `noreply` had been seen, which silences most error replies.
        noreply: bool,
    },
}

/// The keys of a retrieval command, split lazily so a get of many keys needs
/// no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys<'a> {
    rest: &'a [u8],
}

impl<'a> Keys<'a> {
    /// Keys from `rest`: the tokens after the command, separated by spaces.
    pub fn new(rest: &'a [u8]) -> Keys<'a> {
        Keys { rest }
    }
}

impl<'a> Iterator for Keys<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let rest = &self.rest[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }
}

/// A line split into tokens the way memcached's `tokenize_command` splits it:
/// on single spaces, at most [`MAX_TOKENS`] of them, the remainder kept.
pub(super) struct Tokens<'a> {
    line: &'a [u8],
    /// Start and end of each token within `line`.
    spans: [(u32, u32); MAX_TOKENS],
    count: usize,
    /// Where the untokenized remainder starts when the line had more than
    /// `MAX_TOKENS` tokens; `line.len()` otherwise.
    rest: usize,
}

impl<'a> Tokens<'a> {
    pub(super) fn split(line: &'a [u8]) -> Tokens<'a> {
        let mut tokens = Tokens {
            line,
            spans: [(0, 0); MAX_TOKENS],
            count: 0,
            rest: line.len(),
        };
        let mut i = 0;
        while i < line.len() {
            if line[i] == b' ' {
                i += 1;
                continue;
            }
            if tokens.count == MAX_TOKENS {
                tokens.rest = i;
                break;
            }
            let end = memchr(b' ', &line[i..]).map_or(line.len(), |p| i + p);
            tokens.spans[tokens.count] = (i as u32, end as u32);
            tokens.count += 1;
            i = end;
        }
        tokens
    }

    /// memcached's token count: the tokens plus its terminal token.
    pub(super) fn ntokens(&self) -> usize {
        self.count + 1
    }

    pub(super) fn get(&self, i: usize) -> &'a [u8] {
        let (start, end) = self.spans[i];
        &self.line[start as usize..end as usize]
    }

    /// The line from token `i` to its end, untokenized rest included.
    pub(super) fn tail(&self, i: usize) -> &'a [u8] {
        if i < self.count {
            &self.line[self.spans[i].0 as usize..]
        } else {
            &self.line[self.rest..]
        }
    }

    /// memcached's `set_noreply_maybe`: the last token is `noreply`.
    fn noreply(&self) -> bool {
        self.count > 0 && self.get(self.count - 1) == b"noreply"
    }
}

/// Looks for one request line at the start of `input`.
pub fn parse(input: &[u8]) -> Parse<'_> {
    let Some(newline) = memchr(b'\n', input) else {
        return line_missing(input);
    };
    let mut line = &input[..newline];
    if newline > 1 && line[newline - 1] == b'\r' {
        line = &line[..newline - 1];
    }
    // memcached handles the line as a C string: it ends at the first NUL.
    if let Some(nul) = memchr(0, line) {
        line = &line[..nul];
    }
    match parse_line(line) {
        Some(command) => Parse::Line {
            command,
            len: newline + 1,
        },
        None => Parse::Close,
    }
}

/// memcached waits for more input unless the line is clearly not a request.
fn line_missing(input: &[u8]) -> Parse<'_> {
    if input.len() <= MAX_LINE_WITHOUT_NEWLINE {
        return Parse::Incomplete;
    }
    let spaces = input.iter().take_while(|&&b| b == b' ').count();
    let rest = &input[spaces..];
    let long_get = rest.starts_with(b"get ") || rest.starts_with(b"gets ");
    if spaces > 100 || !long_get || input.len() > MAX_GET_LINE {
        Parse::Close
    } else {
        Parse::Incomplete
    }
}

fn error(reply: &'static str) -> Command<'static> {
    Command::Error {
        reply,
        noreply: false,
    }
}

/// One line to a command; `None` means close the connection.
fn parse_line(line: &[u8]) -> Option<Command<'_>> {
    let tokens = Tokens::split(line);
    let ntokens = tokens.ntokens();
    if ntokens < 2 || tokens.get(0).len() < 2 {
        return Some(error(ERROR));
    }
    let name = tokens.get(0);
    // memcached looks for a meta command before any other.
    if name.len() == 2 && name[0] == b'm' {
        return Some(Command::Meta(meta::parse(&tokens)));
    }
    let command = match name {
        b"get" | b"bget" => parse_get(&tokens, GetKind::Get),
        b"gets" => parse_get(&tokens, GetKind::Gets),
        b"gat" => parse_get(&tokens, GetKind::Gat),
        b"gats" => parse_get(&tokens, GetKind::Gats),
        b"set" => parse_store(&tokens, StoreKind::Set),
        b"add" => parse_store(&tokens, StoreKind::Add),
        b"replace" => parse_store(&tokens, StoreKind::Replace),
        b"append" => parse_store(&tokens, StoreKind::Append),
        b"prepend" => parse_store(&tokens, StoreKind::Prepend),
        b"cas" => parse_store(&tokens, StoreKind::Cas),
        b"delete" => parse_delete(&tokens),
        b"incr" => parse_incr_decr(&tokens, true),
        b"decr" => parse_incr_decr(&tokens, false),
        b"touch" => parse_touch(&tokens),
        b"flush_all" => parse_flush_all(&tokens),
        b"verbosity" => parse_verbosity(&tokens),
        b"stats" => parse_stats(&tokens),
        b"cache_memlimit" => parse_cache_memlimit(&tokens),
        b"version" => Command::Version,
        b"quit" => Command::Quit,
        b"shutdown" => parse_shutdown(&tokens),
        _ => {
            // memcached hangs up on a web browser rather than answering it.
            let last = tokens.get(tokens.count - 1);
            if last.starts_with(b"HTTP/") {
                return None;
            }
            error(ERROR)
        }
    };
    Some(command)
}

fn parse_get<'a>(tokens: &Tokens<'a>, kind: GetKind) -> Command<'a> {
    if tokens.ntokens() < 3 {
        return error(ERROR);
    }
    let mut first_key = 1;
    let mut exptime = 0;
    if matches!(kind, GetKind::Gat | GetKind::Gats) {
        match parse_i32(tokens.get(1)) {
            Some(e) => exptime = e,
            None => return error(BAD_EXPTIME),
        }
        first_key = 2;
    }
    Command::Get {
        kind,
        exptime,
        keys: Keys::new(tokens.tail(first_key)),
    }
}

fn parse_store<'a>(tokens: &Tokens<'a>, kind: StoreKind) -> Command<'a> {
    let ntokens = tokens.ntokens();
    let valid = if kind == StoreKind::Cas {
        ntokens == 7 || ntokens == 8
    } else {
        ntokens == 6 || ntokens == 7
    };
    if !valid {
        return error(ERROR);
    }
    let noreply = tokens.noreply();
    let bad = Command::Error {
        reply: BAD_FORMAT,
        noreply,
    };
    let key = tokens.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return bad;
    }
    let (Some(flags), Some(exptime), Some(value_len)) = (
        parse_u32(tokens.get(2)),
        parse_i32(tokens.get(3)),
        parse_i32(tokens.get(4)),
    ) else {
        return bad;
    };
    let mut cas = 0;
    if kind == StoreKind::Cas {
        match parse_u64(tokens.get(5)) {
            Some(c) => cas = c,
            None => return bad,
        }
    }
    if !(0..=i32::MAX - 2).contains(&value_len) {
        return bad;
    }
    Command::Store(StoreHeader {
        kind,
        key,
        flags,
        exptime,
        value_len: value_len as usize,
        cas,
        noreply,
    })
}

fn parse_delete<'a>(tokens: &Tokens<'a>) -> Command<'a> {
    let ntokens = tokens.ntokens();
    if !(3..=5).contains(&ntokens) {
        return error(ERROR);
    }
    let mut noreply = false;
    if ntokens > 3 {
        // `delete <key> 0` is a leftover of the old hold-time argument.
        let hold_is_zero = tokens.get(2) == b"0";
        noreply = tokens.noreply();
        let valid = (ntokens == 4 && (hold_is_zero || noreply))
            || (ntokens == 5 && hold_is_zero && noreply);
        if !valid {
            return Command::Error {
                reply: BAD_DELETE,
                noreply,
            };
        }
    }
    let key = tokens.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return Command::Error {
            reply: BAD_FORMAT,
            noreply,
        };
    }
    Command::Delete { key, noreply }
}

/// The shape `<command> <key> <argument> [noreply]` of incr, decr and touch:
/// the key and the noreply flag, or memcached's reply to a bad line.
fn key_with_argument<'a>(tokens: &Tokens<'a>) -> Result<(&'a [u8], &'a [u8], bool), Command<'a>> {
    let ntokens = tokens.ntokens();
    if ntokens != 4 && ntokens != 5 {
        return Err(error(ERROR));
    }
    let noreply = tokens.noreply();
    let key = tokens.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return Err(Command::Error {
            reply: BAD_FORMAT,
            noreply,
        });
    }
    Ok((key, tokens.get(2), noreply))
}

fn parse_incr_decr<'a>(tokens: &Tokens<'a>, incr: bool) -> Command<'a> {
    let (key, argument, noreply) = match key_with_argument(tokens) {
        Ok(parts) => parts,
        Err(reply) => return reply,
    };
    match parse_u64(argument) {
        Some(delta) => Command::IncrDecr {
            incr,
            key,
            delta,
            noreply,
        },
        None => Command::Error {
            reply: BAD_DELTA,
            noreply,
        },
    }
}

fn parse_touch<'a>(tokens: &Tokens<'a>) -> Command<'a> {
    let (key, argument, noreply) = match key_with_argument(tokens) {
        Ok(parts) => parts,
        Err(reply) => return reply,
    };
    match parse_i32(argument) {
        Some(exptime) => Command::Touch {
            key,
            exptime,
            noreply,
        },
        None => Command::Error {
            reply: BAD_EXPTIME,
            noreply,
        },
    }
}

fn parse_flush_all<'a>(tokens: &Tokens<'a>) -> Command<'a> {
    let ntokens = tokens.ntokens();
    if !(2..=4).contains(&ntokens) {
        return error(ERROR);
    }
    let noreply = tokens.noreply();
    let bare = ntokens == if noreply { 3 } else { 2 };
    let delay = if bare {
        Some(0)
    } else {
        parse_i32(tokens.get(1))
    };
    Command::FlushAll { delay, noreply }
}

fn parse_verbosity<'a>(tokens: &Tokens<'a>) -> Command<'a> {
    let ntokens = tokens.ntokens();
    if ntokens != 3 && ntokens != 4 {
        return error(ERROR);
    }
    let noreply = tokens.noreply();
    match parse_u32(tokens.get(1)) {
        Some(level) => Command::Verbosity { level, noreply },
        None => Command::Error {
            reply: BAD_FORMAT,
            noreply,
        },
    }
}

fn parse_cache_memlimit<'a>(tokens: &Tokens<'a>) -> Command<'a> {
    let ntokens = tokens.ntokens();
    if ntokens != 3 && ntokens != 4 {
        return error(ERROR);
    }
    let noreply = tokens.noreply();
    let reply = match parse_u32(tokens.get(1)) {
        None => ERROR,
        Some(megabytes) if megabytes < 8 => MEMLIMIT_TOO_SMALL,
        Some(megabytes) if megabytes > 1_000_000_000 => MEMLIMIT_NOT_BYTES,
        Some(megabytes) => return Command::CacheMemlimit { megabytes, noreply },
    };
    Command::Error { reply, noreply }
}

fn parse_stats<'a>(tokens: &Tokens<'a>) -> Command<'a> {
    if tokens.ntokens() == 2 {
        return Command::Stats(StatsGroup::General);
    }
    let group = match tokens.get(1) {
        b"settings" => StatsGroup::Settings,
        b"items" => StatsGroup::Items,
        b"slabs" => StatsGroup::Slabs,
        b"sizes" => StatsGroup::Sizes,
        b"conns" => StatsGroup::Conns,
        b"reset" => StatsGroup::Reset,
        b"detail" => StatsGroup::Detail((tokens.ntokens() >= 4).then(|| tokens.get(2))),
        _ => StatsGroup::Unknown,
    };
    Command::Stats(group)
}

fn parse_shutdown<'a>(tokens: &Tokens<'a>) -> Command<'a> {
    let mode = match tokens.ntokens() {
        2 => ShutdownMode::Now,
        3 if tokens.get(1) == b"graceful" => ShutdownMode::Graceful,
        _ => ShutdownMode::Invalid,
    };
    Command::Shutdown(mode)
}

/// The data block that follows a storage command's line.
#[derive(Debug, PartialEq, Eq)]
pub enum DataBlock<'a> {
    /// Fewer than `value_len + 2` bytes have arrived.
    Incomplete,
    /// The value, without its `\r\n`.
    Complete(&'a [u8]),
    /// `value_len + 2` bytes arrived but they don't end in `\r\n`: memcached
    /// consumes exactly that many bytes and answers `CLIENT_ERROR bad data chunk`.
    BadChunk,
}

impl DataBlock<'_> {
    /// How many input bytes a data block of `value_len` occupies.
    pub fn wire_len(value_len: usize) -> usize {
        value_len + 2
    }
}

/// Looks for the data block of `value_len` bytes at the start of `input`.
pub fn data_block(input: &[u8], value_len: usize) -> DataBlock<'_> {
    let wire = DataBlock::wire_len(value_len);
    if input.len() < wire {
        return DataBlock::Incomplete;
    }
    if &input[value_len..wire] == b"\r\n" {
        DataBlock::Complete(&input[..value_len])
    } else {
        DataBlock::BadChunk
    }
}

#[inline]
fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests;
