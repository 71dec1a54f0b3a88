//! One text-protocol connection: parsed requests in, store calls, replies out.
//!
//! This is where the protocol meets the store. The parser hands over
//! commands that borrow from the connection's input; the session runs them
//! against the store and writes memcached's replies, so a key or a value is
//! copied exactly once on its way into the store and once on its way out.
//!
//! Over UDP the same session serves one datagram at a time. It then also
//! marks where each reply unit ends, since memcached 1.6 frames every
//! response object on its own: one per command, and one per key of a
//! multi-key `get`, whose `END` goes with the last key's.

use super::auth::{self, TextStep};
use super::counters::{bump, count_cas, count_fetch, WorkerCounters};
use super::meta::{self, MetaStep};
use super::prefetch::{KeyBatch, PREFETCH_AHEAD};
use super::stats;
use super::ServerContext;
use crate::protocol::meta::{MetaKind, Request as MetaRequest};
use crate::protocol::reply;
use crate::protocol::text::{
    self, Command, DataBlock, GetKind, Keys, Parse, ShutdownMode, StoreHeader, StoreKind,
};
use crate::reactor::{Next, Progress, Session, TurnLimits};
use crate::store::{DeltaError, Expiry, Store, StoreMode, StoreOutcome, PREFETCH_GROUP};
use std::sync::Arc;

pub struct TextSession {
    ctx: Arc<ServerContext>,
    worker: usize,
    /// Bytes of a refused data block still to be thrown away.
    swallow: usize,
    /// The reply to send once they are: memcached answers a refused value
    /// only after it has swallowed all of it.
    after_swallow: Option<&'static str>,
    /// While serving a datagram: the end offsets of the reply units so far.
    unit_ends: Vec<usize>,
    datagram: bool,
    /// Whether commands may run: always without text authentication (`-Y`),
    /// after a `set` with good credentials with it.
    authenticated: bool,
}

impl TextSession {
    /// The server this session belongs to and its worker thread.
    pub fn context(&self) -> (&Arc<ServerContext>, usize) {
        (&self.ctx, self.worker)
    }

    pub fn new(ctx: Arc<ServerContext>, worker: usize) -> TextSession {
        TextSession {
            worker,
            swallow: 0,
            after_swallow: None,
            unit_ends: Vec::new(),
            datagram: false,
            authenticated: ctx.auth.text.is_none(),
            ctx,
        }
    }

    /// Ends a reply unit that started at `start`, if the command answered.
    fn end_unit(&mut self, out: &[u8], start: usize) {
        if self.datagram && out.len() > start {
            self.unit_ends.push(out.len());
        }
    }

    fn counters(&self) -> &WorkerCounters {
        &self.ctx.counters[self.worker]
    }
}

impl Session for TextSession {
    fn on_input(&mut self, input: &[u8], out: &mut Vec<u8>, limits: TurnLimits) -> Progress {
        let mut pos = 0;
        let mut requests = 0;
        // Input before this offset had its keys prefetched.
        let mut prefetched = 0;
        loop {
            if self.swallow > 0 {
                let n = self.swallow.min(input.len() - pos);
                self.swallow -= n;
                pos += n;
                if self.swallow > 0 {
                    return carry_on(pos, 0);
                }
                if let Some(line) = self.after_swallow.take() {
                    let start = out.len();
                    reply::line(out, line);
                    self.end_unit(out, start);
                }
            }
            if pos == input.len() {
                return carry_on(pos, 0);
            }
            if out.len() >= limits.output_bytes {
                return paused(pos, Next::OutputFull);
            }
            if requests == limits.requests {
                return paused(pos, Next::Yield);
            }
            requests += 1;
            let start = out.len();
            let rest = &input[pos..];
            if pos >= prefetched {
                prefetched = pos + prefetch_ahead(self.ctx.store(), rest);
            }
            if let Some(step) = self.authenticate(rest, out) {
                match step {
                    TextStep::Incomplete { wanted } => return carry_on(pos, wanted),
                    TextStep::Close => {
                        return Progress {
                            consumed: pos,
                            next: Next::Close,
                        }
                    }
                    TextStep::Answer { consumed, .. } => {
                        pos += consumed;
                        self.end_unit(out, start);
                        continue;
                    }
                }
            }
            let (command, line_len) = match text::parse(rest) {
                Parse::Incomplete => return carry_on(pos, 0),
                Parse::Close => {
                    return Progress {
                        consumed: pos,
                        next: Next::Close,
                    }
                }
                Parse::Line { command, len } => (command, len),
            };
            match command {
                Command::Store(header) => {
                    let body = &rest[line_len..];
                    match self.store(header, body, out) {
                        Some(used) => {
                            pos += line_len + used;
                            self.end_unit(out, start);
                        }
                        // Wait for the whole value: the reactor sizes its
                        // buffer for it once.
                        None => {
                            let wanted = line_len + DataBlock::wire_len(header.value_len);
                            return carry_on(pos, wanted);
                        }
                    }
                }
                Command::Meta(request) => {
                    let body = &rest[line_len..];
                    let counters = &self.ctx.counters[self.worker];
                    match meta::run(&self.ctx, counters, request, body, out) {
                        MetaStep::Done { used } => {
                            pos += line_len + used;
                            self.end_unit(out, start);
                        }
                        MetaStep::NeedData { wanted } => return carry_on(pos, line_len + wanted),
                        MetaStep::Swallow { bytes, reply } => {
                            pos += line_len;
                            self.swallow = bytes;
                            self.after_swallow = Some(reply);
                        }
                    }
                }
                Command::Quit if self.datagram => {
                    // memcached drops the rest of the datagram, and sends
                    // the empty reply it began for `quit` only when nothing
                    // was answered before it.
                    if self.unit_ends.is_empty() {
                        self.unit_ends.push(out.len());
                    }
                    return Progress {
                        consumed: pos + line_len,
                        next: Next::Close,
                    };
                }
                other => {
                    pos += line_len;
                    let next = self.execute(other, out);
                    self.end_unit(out, start);
                    if let Some(next) = next {
                        return Progress {
                            consumed: pos,
                            next,
                        };
                    }
                }
            }
        }
    }

    fn on_datagram(&mut self, input: &[u8], out: &mut Vec<u8>, unit_ends: &mut Vec<usize>) -> Next {
        // Nothing carries over between datagrams, not even a value being
        // thrown away.
        self.swallow = 0;
        self.after_swallow = None;
        // Fill the caller's list in place of ours, without allocating.
        std::mem::swap(&mut self.unit_ends, unit_ends);
        self.datagram = true;
        let unlimited = TurnLimits {
            output_bytes: usize::MAX,
            requests: usize::MAX,
        };
        let progress = self.on_input(input, out, unlimited);
        self.datagram = false;
        std::mem::swap(&mut self.unit_ends, unit_ends);
        progress.next
    }
}

/// Prefetches the keys of up to [`PREFETCH_AHEAD`] complete requests at the
/// start of `input` (see the `prefetch` module) and returns how far it looked.
/// Parsing twice costs less than one cache miss saved.
fn prefetch_ahead(store: &Store, input: &[u8]) -> usize {
    let first_line = input.iter().position(|&byte| byte == b'\n');
    if first_line.is_none_or(|end| end + 1 == input.len()) {
        return 0;
    }
    let mut batch = KeyBatch::new();
    let mut pos = 0;
    for _ in 0..PREFETCH_AHEAD {
        let Parse::Line { command, len } = text::parse(&input[pos..]) else {
            break;
        };
        let mut end = pos + len;
        match command {
            Command::Get { keys, .. } => keys.for_each(|key| batch.push(key)),
            Command::Store(header) => {
                batch.push(header.key);
                end += DataBlock::wire_len(header.value_len);
            }
            Command::Delete { key, .. }
            | Command::IncrDecr { key, .. }
            | Command::Touch { key, .. } => batch.push(key),
            Command::Meta(MetaRequest::Command(command)) => {
                if !command.key.is_binary() {
                    batch.push(command.key.raw());
                }
                if let MetaKind::Set { value_len, .. } = command.kind {
                    end += DataBlock::wire_len(value_len as usize);
                }
            }
            Command::Meta(MetaRequest::Error { swallow, .. }) => end += swallow,
            _ => {}
        }
        pos = end.min(input.len());
        if pos == input.len() || batch.is_full() {
            break;
        }
    }
    batch.prefetch(store);
    pos
}

/// Stopped for want of input.
fn carry_on(consumed: usize, wanted: usize) -> Progress {
    Progress {
        consumed,
        next: Next::NeedInput { wanted },
    }
}

/// Stopped with complete requests left.
fn paused(consumed: usize, next: Next) -> Progress {
    Progress { consumed, next }
}

/// Writes a reply line unless the request asked for no reply.
fn answer(out: &mut Vec<u8>, noreply: bool, line: &str) {
    if !noreply {
        reply::line(out, line);
    }
}

impl TextSession {
    /// Serves the request at the start of `input` if the connection has yet
    /// to authenticate (see [`auth`]); `None` lets it run as a command.
    fn authenticate(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<TextStep> {
        if self.authenticated {
            return None;
        }
        let credentials = self.ctx.auth.text.as_ref()?;
        let step = auth::text_step(input, credentials);
        if let TextStep::Answer { reply, verdict, .. } = step {
            reply::line(out, reply);
            let counters = &self.ctx.counters[self.worker];
            match verdict {
                Some(true) => {
                    bump(&counters.auth_cmds);
                    self.authenticated = true;
                }
                Some(false) => {
                    bump(&counters.auth_cmds);
                    bump(&counters.auth_errors);
                }
                None => {}
            }
        }
        Some(step)
    }

    /// Runs a storage command whose data block starts `body`. Returns the
    /// bytes of `body` used, or `None` while the block is incomplete.
    fn store(&mut self, header: StoreHeader<'_>, body: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let store = self.ctx.store();
        let wire_len = DataBlock::wire_len(header.value_len);
        if !store.item_fits(header.key.len(), header.flags, header.value_len) {
            // memcached refuses before reading the value, throws the value
            // away as it arrives, and drops any older value of a `set` so a
            // stale one is not served.
            bump(&self.counters().store_too_large);
            if header.kind == StoreKind::Set {
                store.delete(header.key);
            }
            self.swallow = wire_len;
            self.after_swallow = (!header.noreply).then_some(text::TOO_LARGE);
            return Some(0);
        }
        let value = match text::data_block(body, header.value_len) {
            DataBlock::Incomplete => return None,
            DataBlock::BadChunk => {
                // memcached counts the command before it checks the data.
                bump(&self.counters().cmd_set);
                answer(out, header.noreply, text::BAD_DATA_CHUNK);
                return Some(wire_len);
            }
            DataBlock::Complete(value) => value,
        };
        let counters = &self.ctx.counters[self.worker];
        bump(&counters.cmd_set);
        let mode = match header.kind {
            StoreKind::Set => StoreMode::Set,
            StoreKind::Add => StoreMode::Add,
            StoreKind::Replace => StoreMode::Replace,
            StoreKind::Append => StoreMode::Append,
            StoreKind::Prepend => StoreMode::Prepend,
            StoreKind::Cas => StoreMode::Cas(header.cas),
        };
        // An operator's default TTL applies to items stored without one.
        let exptime = match (header.exptime, self.ctx.settings.default_ttl) {
            (0, ttl) if ttl > 0 => Expiry::from_memcached(i64::from(ttl)),
            (exptime, _) => Expiry::from_memcached(i64::from(exptime)),
        };
        let outcome = store.store(mode, header.key, header.flags, exptime, value);
        if header.kind == StoreKind::Cas {
            count_cas(counters, outcome);
        }
        let line = match outcome {
            StoreOutcome::Stored => "STORED",
            StoreOutcome::NotStored => "NOT_STORED",
            StoreOutcome::Exists => "EXISTS",
            StoreOutcome::NotFound => "NOT_FOUND",
            StoreOutcome::TooLarge => {
                bump(&counters.store_too_large);
                text::TOO_LARGE
            }
            StoreOutcome::NoMemory => {
                bump(&counters.store_no_memory);
                text::NO_MEMORY
            }
        };
        answer(out, header.noreply, line);
        Some(wire_len)
    }

    /// Runs any other command; `Some` when the connection must change state.
    fn execute(&mut self, command: Command<'_>, out: &mut Vec<u8>) -> Option<Next> {
        let ctx = &*self.ctx;
        let counters = &ctx.counters[self.worker];
        match command {
            Command::Get {
                kind,
                exptime,
                keys,
            } => self.get(kind, exptime, keys, out),
            Command::Store(_) | Command::Meta(_) => {
                unreachable!("storage and meta commands are dispatched with their data")
            }
            Command::Delete { key, noreply } => {
                let line = if ctx.store().delete(key) {
                    bump(&counters.delete_hits);
                    "DELETED"
                } else {
                    bump(&counters.delete_misses);
                    "NOT_FOUND"
                };
                answer(out, noreply, line);
            }
            Command::IncrDecr {
                incr,
                key,
                delta,
                noreply,
            } => {
                let (hits, misses) = if incr {
                    (&counters.incr_hits, &counters.incr_misses)
                } else {
                    (&counters.decr_hits, &counters.decr_misses)
                };
                match ctx.store().incr_decr(key, incr, delta) {
                    Ok(value) => {
                        bump(hits);
                        if !noreply {
                            reply::number(out, value);
                        }
                    }
                    Err(DeltaError::NotFound) => {
                        bump(misses);
                        answer(out, noreply, "NOT_FOUND");
                    }
                    Err(DeltaError::NonNumeric) => answer(out, noreply, text::NON_NUMERIC),
                    // Text requests carry no CAS condition.
                    Err(DeltaError::Exists) => answer(out, noreply, "EXISTS"),
                    Err(DeltaError::NoMemory) => answer(out, noreply, text::NO_MEMORY_DELTA),
                }
            }
            Command::Touch {
                key,
                exptime,
                noreply,
            } => {
                bump(&counters.cmd_touch);
                let exptime = Expiry::from_memcached(i64::from(exptime));
                let line = if ctx.store().touch(key, exptime) {
                    bump(&counters.touch_hits);
                    "TOUCHED"
                } else {
                    bump(&counters.touch_misses);
                    "NOT_FOUND"
                };
                answer(out, noreply, line);
            }
            Command::FlushAll { delay, noreply } => {
                bump(&counters.cmd_flush);
                if !ctx.settings.flush_enabled {
                    answer(out, noreply, text::FLUSH_DISABLED);
                } else if let Some(delay) = delay {
                    ctx.flush_all(i64::from(delay));
                    answer(out, noreply, "OK");
                } else {
                    answer(out, noreply, text::BAD_EXPTIME);
                }
            }
            Command::Verbosity { level, noreply } => {
                ctx.set_verbosity(level);
                answer(out, noreply, "OK");
            }
            Command::Stats(group) => stats::write(ctx, group, out),
            Command::CacheMemlimit { megabytes, noreply } => {
                ctx.store().set_max_memory(megabytes as usize * 1024 * 1024);
                answer(out, noreply, "OK");
            }
            Command::Version => {
                out.extend_from_slice(b"VERSION ");
                reply::line(out, &ctx.version);
            }
            Command::Quit => return Some(Next::Close),
            Command::Shutdown(mode) => {
                if !ctx.settings.enable_shutdown {
                    reply::line(out, text::SHUTDOWN_DISABLED);
                } else if mode == ShutdownMode::Invalid {
                    reply::line(out, text::BAD_SHUTDOWN);
                } else {
                    return Some(Next::Shutdown);
                }
            }
            Command::Error { reply, noreply } => answer(out, noreply, reply),
        }
        None
    }

    /// get, gets, gat, gats over any number of keys.
    fn get(&mut self, kind: GetKind, exptime: i32, keys: Keys<'_>, out: &mut Vec<u8>) {
        let ctx = &*self.ctx;
        let counters = &ctx.counters[self.worker];
        let with_cas = kind.with_cas();
        let touch = matches!(kind, GetKind::Gat | GetKind::Gats);
        let expiry = Expiry::from_memcached(i64::from(exptime));
        let start = out.len();
        let units_before = self.unit_ends.len();
        // Keys still to be prefetched, a group at a time as the lookups reach them.
        let mut ahead = keys;
        let prefetch = keys.clone().nth(1).is_some();
        for (index, key) in keys.enumerate() {
            if prefetch && index % PREFETCH_GROUP == 0 {
                ctx.store().prefetch(ahead.take(PREFETCH_GROUP));
                ahead.nth(PREFETCH_GROUP - 1);
            }
            if key.len() > text::KEY_MAX_LENGTH {
                // memcached discards what this command produced so far.
                out.truncate(start);
                self.unit_ends.truncate(units_before);
                reply::line(out, text::BAD_FORMAT);
                return;
            }
            // Each key after the first starts a reply unit of its own, even
            // when the one before missed and left its unit empty.
            if self.datagram && index > 0 {
                self.unit_ends.push(out.len());
            }
            let write = |item: crate::store::ItemView<'_>| {
                let cas = with_cas.then_some(item.cas);
                reply::value(out, item.key, item.flags, item.value, cas);
            };
            let hit = if touch {
                ctx.store().get_and_touch(key, expiry, write).is_some()
            } else {
                ctx.store().get(key, write).is_some()
            };
            count_fetch(counters, touch, hit);
        }
        reply::end(out);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const NO_LIMITS: TurnLimits = TurnLimits {
        output_bytes: usize::MAX,
        requests: usize::MAX,
    };

    pub(crate) fn session() -> TextSession {
        let ctx = ServerContext::for_tests();
        TextSession::new(Arc::new(ctx), 0)
    }

    /// Feeds `input` in chunks of `chunk` bytes the way the reactor does:
    /// unconsumed bytes are handed over again with the next chunk.
    pub(crate) fn feed(session: &mut TextSession, input: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for piece in input.chunks(chunk) {
            pending.extend_from_slice(piece);
            let progress = session.on_input(&pending, &mut out, NO_LIMITS);
            pending.drain(..progress.consumed);
        }
        out
    }

    const SCRIPT: &[u8] = b"set a 5 0 3\r\nabc\r\nget a b\r\nincr n 1\r\nset n 0 0 2\r\n10\r\n\
decr n 1\r\nappend a 0 0 2 noreply\r\nde\r\ngets a\r\nset big 0 0 2000000\r\n";

    #[test]
    fn byte_by_byte_gives_the_same_replies_as_one_piece() {
        let mut big = SCRIPT.to_vec();
        big.extend(std::iter::repeat_n(b'x', 2_000_000));
        big.extend_from_slice(b"\r\nget n\r\nbogus\r\n");
        let whole = feed(&mut session(), &big, big.len());
        assert!(whole
            .starts_with(b"STORED\r\nVALUE a 5 3\r\nabc\r\nEND\r\nNOT_FOUND\r\nSTORED\r\n9\r\n"));
        assert!(whole.ends_with(
            b"SERVER_ERROR object too large for cache\r\nVALUE n 0 2\r\n9 \r\nEND\r\nERROR\r\n"
        ));
        for chunk in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(
                feed(&mut session(), &big, chunk),
                whole,
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn stops_after_the_request_budget_and_resumes() {
        let mut session = session();
        let input = b"version\r\nversion\r\nversion\r\n";
        let mut out = Vec::new();
        let limits = TurnLimits {
            output_bytes: usize::MAX,
            requests: 2,
        };
        let progress = session.on_input(input, &mut out, limits);
        assert_eq!(progress.next, Next::Yield);
        assert_eq!(progress.consumed, 18);
        let progress = session.on_input(&input[18..], &mut out, limits);
        assert_eq!(progress, carry_on(9, 0));
        assert_eq!(
            out.split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"VERSION"))
                .count(),
            3
        );
    }

    #[test]
    fn stops_when_the_output_is_full() {
        let mut session = session();
        let mut out = Vec::new();
        let limits = TurnLimits {
            output_bytes: 10,
            requests: usize::MAX,
        };
        let progress = session.on_input(b"version\r\nversion\r\n", &mut out, limits);
        assert_eq!(progress.next, Next::OutputFull);
        assert_eq!(progress.consumed, 9);
    }

    #[test]
    fn an_incomplete_value_asks_for_its_whole_size() {
        let mut session = session();
        let mut out = Vec::new();
        let progress = session.on_input(b"set k 0 0 100\r\nabc", &mut out, NO_LIMITS);
        assert_eq!(progress, carry_on(0, 15 + 102));
        assert!(out.is_empty());
    }

    #[test]
    fn quit_and_garbage_close_the_connection() {
        let mut session = session();
        let mut out = Vec::new();
        let progress = session.on_input(b"version\r\nquit\r\nversion\r\n", &mut out, NO_LIMITS);
        assert_eq!(progress.next, Next::Close);
        assert_eq!(progress.consumed, 15);
        let progress = session.on_input(b"GET / HTTP/1.1\r\n", &mut out, NO_LIMITS);
        assert_eq!(progress.next, Next::Close);
    }

    /// Random requests, valid and broken, cut at random places: the session
    /// must never panic, never claim bytes it was not given, and answer the
    /// same whatever the cuts.
    #[test]
    fn random_streams_are_answered_the_same_however_they_are_cut() {
        const PIECES: &[&[u8]] = &[
            b"get a b c\r\n",
            b"gets a\r\n",
            b"gat 10 a\r\n",
            b"set a 1 0 3\r\nabc\r\n",
            b"set b 0 0 5\r\nab\r\n",
            b"add a 0 0 1 noreply\r\nx\r\n",
            b"append a 0 0 2\r\nzz\r\n",
            b"cas a 0 0 1 1\r\ny\r\n",
            b"incr n 5\r\n",
            b"set n 0 0 2\r\n99\r\n",
            b"decr n 200\r\n",
            b"delete a\r\n",
            b"touch b 100\r\n",
            b"flush_all\r\n",
            b"set big 0 0 3000000\r\n",
            b"stats\r\n",
            b"version\r\n",
            b"bogus\r\n",
            b"\r\n",
            b"set x 0 0 -1\r\n",
            b"get \xff\x00\x01\r\n",
            b"\x80\x01\x00",
            b"incr",
            b" 1\r\n",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut input = Vec::new();
            for _ in 0..(next() % 30) {
                input.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            // Replies to `stats` differ from run to run; only compare without it.
            let comparable = !input.windows(5).any(|w| w == b"stats");
            let whole = feed(&mut session(), &input, input.len().max(1));
            let chunk = 1 + (next() % 17) as usize;
            let cut = feed(&mut session(), &input, chunk);
            if comparable {
                assert_eq!(
                    cut,
                    whole,
                    "input {:?} in chunks of {chunk}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }

    /// Serves `input` as one datagram; the replies cut into their units.
    fn datagram(session: &mut TextSession, input: &[u8]) -> (Vec<Vec<u8>>, Next) {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        let next = session.on_datagram(input, &mut out, &mut ends);
        let mut units = Vec::new();
        let mut start = 0;
        for end in ends {
            units.push(out[start..end].to_vec());
            start = end;
        }
        assert_eq!(start, out.len(), "every reply byte belongs to a unit");
        (units, next)
    }

    #[test]
    fn a_datagram_has_a_unit_per_command_and_per_get_key() {
        let mut session = session();
        let (units, _) = datagram(&mut session, b"set a 1 0 1\r\nx\r\nversion\r\n");
        assert_eq!(units.len(), 2);
        assert_eq!(units[0], b"STORED\r\n");
        assert!(units[1].starts_with(b"VERSION "));
        let (units, _) = datagram(&mut session, b"get a nope\r\n");
        assert_eq!(units, [&b"VALUE a 1 1\r\nx\r\n"[..], b"END\r\n"]);
        // A miss before the last key leaves an empty unit, as in memcached.
        let (units, _) = datagram(&mut session, b"get nope a\r\n");
        assert_eq!(units, [&b""[..], b"VALUE a 1 1\r\nx\r\nEND\r\n"]);
        let (units, _) = datagram(&mut session, b"get a\r\n");
        assert_eq!(units, [&b"VALUE a 1 1\r\nx\r\nEND\r\n"[..]]);
    }

    #[test]
    fn noreply_makes_no_unit_and_quit_an_empty_one() {
        let mut session = session();
        let (units, _) = datagram(&mut session, b"set q 0 0 1 noreply\r\nq\r\nget q\r\n");
        assert_eq!(units, [&b"VALUE q 0 1\r\nq\r\nEND\r\n"[..]]);
        let (units, next) = datagram(&mut session, b"quit\r\nget q\r\n");
        assert_eq!(next, Next::Close);
        assert_eq!(units, [&b""[..]]);
        let (units, _) = datagram(&mut session, b"set q 0 0 1 noreply\r\nq\r\nquit\r\n");
        assert_eq!(units, [&b""[..]]);
        let (units, next) = datagram(&mut session, b"version\r\nquit\r\nget q\r\n");
        assert_eq!(next, Next::Close);
        assert_eq!(units.len(), 1);
        assert!(units[0].starts_with(b"VERSION "));
    }

    #[test]
    fn nothing_carries_over_between_datagrams() {
        let mut session = session();
        // A request cut off at the end of a datagram is dropped.
        let (units, _) = datagram(&mut session, b"version\r\nset k 0 0 10\r\nabc");
        assert_eq!(units.len(), 1);
        let (units, _) = datagram(&mut session, b"get k\r\n");
        assert_eq!(units, [&b"END\r\n"[..]]);
        // So is a refused value still being thrown away.
        let (units, _) = datagram(&mut session, b"set big 0 0 2000000\r\nxyz");
        assert!(units.is_empty());
        let (units, _) = datagram(&mut session, b"get k\r\n");
        assert_eq!(units, [&b"END\r\n"[..]]);
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;
    use crate::server::auth::Credentials;
    use std::sync::atomic::Ordering;

    fn locked_session() -> TextSession {
        let mut ctx = ServerContext::for_tests();
        ctx.auth.text = Some(Credentials::parse(b"alice:secret\n").expect("well-formed"));
        TextSession::new(Arc::new(ctx), 0)
    }

    const SCRIPT: &[u8] = b"add k 0 0 1\r\nx\r\nget k\r\nset a 0 0 12\r\nalice wrong!\r\n\
        set a 0 0 12\r\nalice secret\r\nset k 0 0 1\r\ny\r\nget k\r\n";

    const REPLIES: &[u8] = b"CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\n\
        CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR authentication failure\r\nSTORED\r\n\
        STORED\r\nVALUE k 0 1\r\ny\r\nEND\r\n";

    #[test]
    fn nothing_runs_before_authentication_however_the_input_is_cut() {
        for chunk in [1, 2, 3, 7, 16, usize::MAX] {
            let mut session = locked_session();
            let mut out = Vec::new();
            let mut pending = Vec::new();
            for piece in SCRIPT.chunks(chunk) {
                pending.extend_from_slice(piece);
                let progress = session.on_input(
                    &pending,
                    &mut out,
                    TurnLimits {
                        output_bytes: usize::MAX,
                        requests: usize::MAX,
                    },
                );
                pending.drain(..progress.consumed);
            }
            // `add` is refused on its line, and its value is then a request of
            // its own.
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(REPLIES),
                "{chunk}"
            );
            let counters = &session.ctx.counters[0];
            assert_eq!(counters.auth_cmds.load(Ordering::Relaxed), 2);
            assert_eq!(counters.auth_errors.load(Ordering::Relaxed), 1);
            assert_eq!(counters.cmd_set.load(Ordering::Relaxed), 1, "{chunk}");
        }
    }

    #[test]
    fn a_long_line_without_a_newline_closes_the_connection() {
        let mut session = locked_session();
        let mut out = Vec::new();
        let limits = TurnLimits {
            output_bytes: usize::MAX,
            requests: usize::MAX,
        };
        let progress = session.on_input(&[b'g'; 2048], &mut out, limits);
        assert_eq!(progress.next, Next::NeedInput { wanted: 0 });
        let progress = session.on_input(&[b'g'; 2049], &mut out, limits);
        assert_eq!(progress.next, Next::Close);
        assert!(out.is_empty());
    }
}
