//! One binary-protocol connection: request packets in, store calls, response
//! packets out.
//!
//! The session answers as memcached 1.6's `proto_bin.c` does, down to what
//! it leaves unsaid: quiet commands answer only their errors, quiet gets
//! not even a miss; every error response carries CAS 0; a delete answers
//! CAS 0 and every other success the item's new CAS.
//!
//! memcached also decides *when* replies leave, and that is observable when
//! a connection goes bad. It collects replies and hands them to the socket
//! only at a noop, after an error reply, or when the input runs out; a
//! packet with a wrong magic byte closes the connection on the spot and
//! the replies collected since are lost. The session keeps the same mark
//! (`sent`) and drops what lies beyond it when it meets a wrong magic byte.

use super::auth;
use super::counters::{bump, count_cas, count_fetch};
use super::prefetch::{KeyBatch, PREFETCH_AHEAD};
use super::stats::{self, Gathered, StatSink};
use super::ServerContext;
use crate::protocol::binary::{
    self, opcode, Body, Command, Parse, Request, Response, Status, StoreKind, NO_CREATE,
};
use crate::reactor::{Next, Progress, Session, TurnLimits};
use crate::store::{
    DeleteOutcome, DeltaError, DeltaRequest, Expiry, ItemView, Store, StoreMode, StoreOptions,
    StoreOutcome,
};
use std::fmt::Display;
use std::sync::Arc;

pub struct BinarySession {
    ctx: Arc<ServerContext>,
    worker: usize,
    state: Conversation,
}

/// What a binary connection remembers between requests. Kept apart from the
/// shared context so a request can borrow both without touching the
/// context's reference count.
struct Conversation {
    /// Bytes still to throw away: a refused value, or what memcached skips
    /// after an unknown command.
    swallow: usize,
    /// The error reply that waits until they are: memcached sends nothing
    /// while it skips bytes.
    after_swallow: Option<(Response, Status)>,
    /// Set when a reply was one that memcached sends at once.
    flushed: bool,
    /// Whether requests other than SASL's and version may run: always when
    /// SASL is off, after a successful SASL exchange when it is on.
    authenticated: bool,
    /// A SASL PLAIN auth came without credentials: the next step carries them.
    plain_pending: bool,
}

/// What one request did to the connection.
enum Step {
    /// Go on after `usize` bytes.
    Consumed(usize),
    /// The request's value is still on its way; the packet will be this long.
    AwaitValue(usize),
    /// Send what was produced, then close, after `usize` bytes.
    Close(usize),
}

impl BinarySession {
    /// The server this session belongs to and its worker thread.
    pub fn context(&self) -> (&Arc<ServerContext>, usize) {
        (&self.ctx, self.worker)
    }

    pub fn new(ctx: Arc<ServerContext>, worker: usize) -> BinarySession {
        let ctx_has_no_sasl = ctx.auth.sasl.is_none();
        BinarySession {
            ctx,
            worker,
            state: Conversation {
                swallow: 0,
                after_swallow: None,
                flushed: false,
                authenticated: ctx_has_no_sasl,
                plain_pending: false,
            },
        }
    }
}

impl Conversation {
    /// An error reply; memcached sends these at once.
    fn fail(&mut self, out: &mut Vec<u8>, reply: Response, status: Status) {
        reply.error(out, status);
        self.flushed = true;
    }

    /// The miss of a get: quiet gets say nothing, getk and gatk return the
    /// key, the others "Not found".
    fn miss(&mut self, out: &mut Vec<u8>, reply: Response, quiet: bool, key: Option<&[u8]>) {
        match (quiet, key) {
            (true, _) => {}
            (false, Some(key)) => reply.miss_with_key(out, key),
            (false, None) => self.fail(out, reply, Status::KeyNotFound),
        }
    }

    /// Refuses a value before it arrives: it is thrown away as it comes, and
    /// answered once it has been.
    fn refuse_value(
        &mut self,
        reply: Response,
        status: Status,
        head_len: usize,
        value_len: usize,
    ) -> Step {
        self.swallow = value_len;
        self.after_swallow = Some((reply, status));
        Step::Consumed(head_len)
    }

    /// The reply to a storage command that was given its value.
    fn stored(
        &mut self,
        out: &mut Vec<u8>,
        reply: Response,
        quiet: bool,
        outcome: StoreOutcome,
        new_cas: u64,
        not_stored: Status,
    ) {
        match outcome {
            StoreOutcome::Stored => {
                if !quiet {
                    reply.success(out, new_cas, b"", b"", b"");
                }
            }
            StoreOutcome::Exists => self.fail(out, reply, Status::KeyExists),
            StoreOutcome::NotFound => self.fail(out, reply, Status::KeyNotFound),
            StoreOutcome::NotStored => self.fail(out, reply, not_stored),
            // memcached refuses these while reading the value: it answers
            // them as it answers a refused value, and (unlike the text
            // protocol) counts them nowhere.
            StoreOutcome::TooLarge => reply.error(out, Status::TooLarge),
            StoreOutcome::NoMemory => reply.error(out, Status::OutOfMemory),
        }
    }
}

impl Session for BinarySession {
    fn on_input(&mut self, input: &[u8], out: &mut Vec<u8>, limits: TurnLimits) -> Progress {
        let mut pos = 0;
        let mut requests = 0;
        // Replies before this mark count as sent (see the module docs).
        let mut sent = out.len();
        // Input before this offset had its keys prefetched.
        let mut prefetched = 0;
        loop {
            if self.state.swallow > 0 {
                let n = self.state.swallow.min(input.len() - pos);
                self.state.swallow -= n;
                pos += n;
                if self.state.swallow > 0 {
                    return need_input(pos, 0);
                }
                if let Some((reply, status)) = self.state.after_swallow.take() {
                    reply.error(out, status);
                }
            }
            if pos == input.len() {
                return need_input(pos, 0);
            }
            if out.len() >= limits.output_bytes {
                return stop(pos, Next::OutputFull);
            }
            if requests == limits.requests {
                return stop(pos, Next::Yield);
            }
            if pos >= prefetched {
                prefetched = pos + prefetch_ahead(self.ctx.store(), &input[pos..]);
            }
            let request = match binary::parse(&input[pos..]) {
                Parse::Incomplete { wanted } => return need_input(pos, wanted),
                Parse::BadMagic => {
                    out.truncate(sent);
                    return stop(pos, Next::Close);
                }
                Parse::Request(request) => request,
            };
            requests += 1;
            let step = self.execute(request, out);
            if std::mem::take(&mut self.state.flushed) {
                sent = out.len();
            }
            match step {
                Step::Consumed(len) => pos += len,
                Step::AwaitValue(wanted) => return need_input(pos, wanted),
                Step::Close(len) => return stop(pos + len, Next::Close),
            }
        }
    }
}

/// Prefetches the keys of up to [`PREFETCH_AHEAD`] complete requests at the
/// start of `input` (see the `prefetch` module) and returns how far it looked:
/// a client's pipeline of quiet gets, say, waits for memory once.
fn prefetch_ahead(store: &Store, input: &[u8]) -> usize {
    let mut batch = KeyBatch::new();
    let mut pos = 0;
    for _ in 0..PREFETCH_AHEAD {
        let Parse::Request(request) = binary::parse(&input[pos..]) else {
            break;
        };
        match request.command {
            Command::Get { key, .. }
            | Command::Store {
                key,
                value: Body::Complete(_),
                ..
            } => batch.push(key),
            // The value is not all here, and what follows it even less.
            Command::Store {
                value: Body::Pending { .. },
                ..
            }
            | Command::Concat {
                value: Body::Pending { .. },
                ..
            } => break,
            _ => {}
        }
        pos += request.len;
        if pos >= input.len() || batch.is_full() {
            break;
        }
    }
    batch.prefetch(store);
    pos.min(input.len())
}

/// What memcached lets through before SASL authentication: the SASL
/// requests, version, and lengths so wrong that it refuses them first.
fn may_run_unauthenticated(request: &Request<'_>) -> bool {
    matches!(
        request.header.opcode,
        opcode::SASL_LIST_MECHS | opcode::SASL_AUTH | opcode::SASL_STEP | opcode::VERSION
    ) || request.command
        == (Command::Refused {
            status: Status::UnknownCommand,
        })
}

fn need_input(consumed: usize, wanted: usize) -> Progress {
    Progress {
        consumed,
        next: Next::NeedInput { wanted },
    }
}

/// The reply to a get hit: flags as extras, the key when asked for.
fn reply_item(reply: Response, out: &mut Vec<u8>, item: ItemView<'_>, with_key: bool) {
    let shown_key = if with_key { item.key } else { b"" };
    reply.success(
        out,
        item.cas,
        &item.flags.to_be_bytes(),
        shown_key,
        item.value,
    );
}

fn stop(consumed: usize, next: Next) -> Progress {
    Progress { consumed, next }
}

/// The binary protocol's sink: one packet per statistic.
struct StatPackets<'a> {
    reply: Response,
    out: &'a mut Vec<u8>,
}

impl StatSink for StatPackets<'_> {
    fn stat(&mut self, name: &str, value: &dyn Display) {
        self.reply.stat(self.out, name, value);
    }
}

impl BinarySession {
    fn execute(&mut self, request: Request<'_>, out: &mut Vec<u8>) -> Step {
        let reply = Response::to(&request.header);
        let cas = request.header.cas;
        let quiet = request.quiet;
        let len = request.len;
        let ctx = &*self.ctx;
        let counters = &ctx.counters[self.worker];
        if !self.state.authenticated && !may_run_unauthenticated(&request) {
            // memcached refuses before it looks further than the lengths.
            reply.error(out, Status::AuthError);
            return Step::Close(len);
        }
        match request.command {
            Command::Get { key, with_key } => {
                let hit = ctx
                    .store()
                    .get(key, |item| reply_item(reply, out, item, with_key));
                count_fetch(counters, false, hit.is_some());
                if hit.is_none() {
                    self.state.miss(out, reply, quiet, with_key.then_some(key));
                }
            }
            Command::GetAndTouch {
                key,
                exptime,
                with_key,
            } => {
                let expiry = Expiry::from_memcached(i64::from(exptime));
                let hit = ctx
                    .store()
                    .get_and_touch(key, expiry, |item| reply_item(reply, out, item, with_key));
                count_fetch(counters, true, hit.is_some());
                if hit.is_none() {
                    self.state.miss(out, reply, quiet, with_key.then_some(key));
                }
            }
            Command::Touch { key, exptime } => {
                let expiry = Expiry::from_memcached(i64::from(exptime));
                let hit = ctx.store().get_and_touch(key, expiry, |item| {
                    reply.success(out, item.cas, &item.flags.to_be_bytes(), b"", b"");
                });
                if hit.is_some() {
                    bump(&counters.touch_hits);
                } else {
                    bump(&counters.touch_misses);
                    self.state.fail(out, reply, Status::KeyNotFound);
                }
            }
            Command::Store {
                kind,
                key,
                flags,
                exptime,
                value,
            } => {
                let value = match value {
                    Body::Complete(value) => value,
                    Body::Pending { len: value_len } => {
                        if ctx.store().item_fits(key.len(), flags, value_len) {
                            return Step::AwaitValue(len + value_len);
                        }
                        // Refused before it arrives; a failed set must not
                        // leave an older value behind.
                        if kind == StoreKind::Set {
                            ctx.store().delete(key);
                        }
                        return self
                            .state
                            .refuse_value(reply, Status::TooLarge, len, value_len);
                    }
                };
                bump(&counters.cmd_set);
                let mode = match (cas, kind) {
                    // Any storage command naming a CAS is a compare-and-swap.
                    (cas, _) if cas != 0 => StoreMode::Cas(cas),
                    (_, StoreKind::Set) => StoreMode::Set,
                    (_, StoreKind::Add) => StoreMode::Add,
                    (_, StoreKind::Replace) => StoreMode::Replace,
                };
                let expiry = match (exptime, self.ctx.settings.default_ttl) {
                    (0, ttl) if ttl > 0 => Expiry::from_memcached(i64::from(ttl)),
                    (exptime, _) => Expiry::from_memcached(i64::from(exptime)),
                };
                let (outcome, new_cas) = ctx.store().store_with(
                    mode,
                    key,
                    flags,
                    expiry,
                    value,
                    StoreOptions::default(),
                );
                if cas != 0 {
                    count_cas(counters, outcome);
                }
                let not_stored = match kind {
                    StoreKind::Add => Status::KeyExists,
                    StoreKind::Replace => Status::KeyNotFound,
                    StoreKind::Set => Status::NotStored,
                };
                self.state
                    .stored(out, reply, quiet, outcome, new_cas, not_stored);
                return Step::Consumed(len);
            }
            Command::Concat { append, key, value } => {
                let value = match value {
                    Body::Complete(value) => value,
                    Body::Pending { len: value_len } => {
                        if ctx.store().item_fits(key.len(), 0, value_len) {
                            return Step::AwaitValue(len + value_len);
                        }
                        return self
                            .state
                            .refuse_value(reply, Status::TooLarge, len, value_len);
                    }
                };
                bump(&counters.cmd_set);
                let mode = if append {
                    StoreMode::Append
                } else {
                    StoreMode::Prepend
                };
                let options = StoreOptions {
                    compare_cas: cas,
                    ..StoreOptions::default()
                };
                let (outcome, new_cas) =
                    ctx.store()
                        .store_with(mode, key, 0, Expiry::NEVER, value, options);
                self.state
                    .stored(out, reply, quiet, outcome, new_cas, Status::NotStored);
                return Step::Consumed(len);
            }
            Command::Delete { key } => match ctx.store().delete_if_cas(key, cas) {
                // Binary deletes never ask to invalidate; were one kept stale, it would
                // count as deleted, as a meta delete's does.
                DeleteOutcome::Deleted | DeleteOutcome::Invalidated => {
                    bump(&counters.delete_hits);
                    if !quiet {
                        reply.success(out, 0, b"", b"", b"");
                    }
                }
                DeleteOutcome::NotFound => {
                    bump(&counters.delete_misses);
                    self.state.fail(out, reply, Status::KeyNotFound);
                }
                DeleteOutcome::Exists => self.state.fail(out, reply, Status::KeyExists),
            },
            Command::Delta {
                incr,
                key,
                delta,
                initial,
                exptime,
            } => {
                let (hits, misses) = if incr {
                    (&counters.incr_hits, &counters.incr_misses)
                } else {
                    (&counters.decr_hits, &counters.decr_misses)
                };
                let create = (exptime != NO_CREATE)
                    .then(|| (initial, Expiry::from_memcached(i64::from(exptime))));
                let request = DeltaRequest {
                    incr,
                    delta,
                    expected_cas: cas,
                    create,
                };
                match ctx.store().delta(key, request) {
                    Ok(applied) => {
                        if !applied.created {
                            bump(hits);
                        }
                        if !quiet {
                            reply.success(out, applied.cas, b"", b"", &applied.value.to_be_bytes());
                        }
                    }
                    Err(DeltaError::NotFound) => {
                        bump(misses);
                        self.state.fail(out, reply, Status::KeyNotFound);
                    }
                    Err(DeltaError::Exists) => self.state.fail(out, reply, Status::KeyExists),
                    Err(DeltaError::NonNumeric) => self.state.fail(out, reply, Status::NonNumeric),
                    Err(DeltaError::NoMemory) => self.state.fail(out, reply, Status::OutOfMemory),
                }
            }
            Command::Quit => {
                if !quiet {
                    reply.success(out, 0, b"", b"", b"");
                }
                return Step::Close(len);
            }
            Command::Flush { exptime } => {
                bump(&counters.cmd_flush);
                if !ctx.settings.flush_enabled {
                    self.state.fail(out, reply, Status::AuthError);
                } else {
                    ctx.flush_all(i64::from(exptime));
                    if !quiet {
                        reply.success(out, 0, b"", b"", b"");
                    }
                }
            }
            Command::Noop => {
                reply.success(out, 0, b"", b"", b"");
                self.state.flushed = true;
            }
            Command::Version => reply.success(out, 0, b"", b"", ctx.version.as_bytes()),
            Command::Stat { group } => {
                let mut sink = StatPackets { reply, out };
                match stats::gather(ctx, binary::stats_group(group), &mut sink) {
                    Gathered::Listed | Gathered::Reset | Gathered::DetailSwitched => {}
                    Gathered::DetailDump => sink.stat("detailed", &"END\r\n"),
                    Gathered::DetailUsage | Gathered::Unknown => {
                        self.state.fail(out, reply, Status::KeyNotFound);
                        return Step::Consumed(len);
                    }
                }
                // An empty statistic ends the list.
                reply.stat(out, "", "");
            }
            Command::SaslListMechs => match ctx.auth.sasl {
                Some(_) => reply.success(out, 0, b"", b"", auth::SASL_MECHANISMS.as_bytes()),
                None => self.state.fail(out, reply, Status::UnknownCommand),
            },
            Command::SaslAuth {
                step,
                mechanism,
                message,
            } => return self.sasl_auth(out, reply, len, step, mechanism, message),
            Command::Unknown { swallow: 0 } => self.state.fail(out, reply, Status::UnknownCommand),
            Command::Unknown { swallow } => {
                self.state.swallow = swallow;
                self.state.after_swallow = Some((reply, Status::UnknownCommand));
            }
            Command::Refused { status } => {
                reply.error(out, status);
                return Step::Close(len);
            }
        }
        Step::Consumed(len)
    }

    /// SASL auth and step, answered as memcached answers them with Cyrus
    /// SASL's PLAIN.
    fn sasl_auth(
        &mut self,
        out: &mut Vec<u8>,
        reply: Response,
        len: usize,
        step: bool,
        mechanism: &[u8],
        message: Body<'_>,
    ) -> Step {
        let (head_len, message_len) = match message {
            Body::Complete(message) => (len - message.len(), message.len()),
            Body::Pending { len: message_len } => (len, message_len),
        };
        let ctx = &*self.ctx;
        let Some(credentials) = &ctx.auth.sasl else {
            // With SASL off memcached knows these no better than an unknown
            // opcode, and skips what follows the key.
            if message_len == 0 {
                self.state.fail(out, reply, Status::UnknownCommand);
                return Step::Consumed(head_len);
            }
            return self
                .state
                .refuse_value(reply, Status::UnknownCommand, head_len, message_len);
        };
        if mechanism.len() > auth::MAX_SASL_MECHANISM_LEN {
            return self
                .state
                .refuse_value(reply, Status::InvalidArguments, head_len, message_len);
        }
        let message = match message {
            Body::Complete(message) => message,
            // memcached reads the message into an item, with its `\r\n`.
            Body::Pending { len: message_len } => {
                if ctx.store().item_fits(mechanism.len(), 0, message_len + 2) {
                    return Step::AwaitValue(len + message_len);
                }
                return self
                    .state
                    .refuse_value(reply, Status::OutOfMemory, head_len, message_len);
            }
        };
        let counters = &ctx.counters[self.worker];
        let plain_pending = std::mem::take(&mut self.state.plain_pending);
        if !step && message.is_empty() && mechanism.eq_ignore_ascii_case(b"PLAIN") {
            // PLAIN without an initial response: an empty challenge.
            self.state.plain_pending = true;
            reply.error(out, Status::AuthContinue);
            self.state.flushed = true;
            return Step::Consumed(len);
        }
        bump(&counters.auth_cmds);
        if (!step || plain_pending) && auth::sasl_plain(mechanism, message, credentials) {
            self.state.authenticated = true;
            reply.success(out, 0, b"", b"", b"Authenticated");
        } else {
            bump(&counters.auth_errors);
            self.state.fail(out, reply, Status::AuthError);
        }
        Step::Consumed(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::protocol::binary::{opcode, Header, HEADER_LEN, REQUEST_MAGIC};

    const NO_LIMITS: TurnLimits = TurnLimits {
        output_bytes: usize::MAX,
        requests: usize::MAX,
    };

    fn session() -> BinarySession {
        let settings = Settings {
            threads: 1,
            max_item_size: 1024,
            ..Settings::default()
        };
        BinarySession::new(Arc::new(ServerContext::for_tests_with(settings)), 0)
    }

    fn packet(op: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Header {
            magic: REQUEST_MAGIC,
            opcode: op,
            key_len: key.len() as u16,
            extras_len: extras.len() as u8,
            body_len: (extras.len() + key.len() + value.len()) as u32,
            ..Header::default()
        }
        .write(&mut out);
        out.extend_from_slice(extras);
        out.extend_from_slice(key);
        out.extend_from_slice(value);
        out
    }

    /// (opcode, status, key, value) of each response packet in `out`.
    fn responses(mut out: &[u8]) -> Vec<(u8, u16, Vec<u8>, Vec<u8>)> {
        let mut list = Vec::new();
        while let Some(head) = out.first_chunk::<HEADER_LEN>() {
            let header = Header::read(head);
            let body = &out[HEADER_LEN..HEADER_LEN + header.body_len as usize];
            let (key, value) = body[header.extras_len as usize..].split_at(header.key_len as usize);
            list.push((
                header.opcode,
                header.vbucket_or_status,
                key.to_vec(),
                value.to_vec(),
            ));
            out = &out[HEADER_LEN + body.len()..];
        }
        assert!(out.is_empty(), "trailing bytes {out:?}");
        list
    }

    /// Feeds `input` in chunks the way the reactor does.
    fn feed(session: &mut BinarySession, input: &[u8], chunk: usize) -> (Vec<u8>, Next) {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let mut next = Next::NeedInput { wanted: 0 };
        for piece in input.chunks(chunk) {
            pending.extend_from_slice(piece);
            let progress = session.on_input(&pending, &mut out, NO_LIMITS);
            pending.drain(..progress.consumed);
            next = progress.next;
            if next == Next::Close {
                break;
            }
        }
        (out, next)
    }

    fn script() -> Vec<u8> {
        let extras = [0u8, 0, 0, 7, 0, 0, 0, 0];
        [
            packet(opcode::SETQ, &extras, b"k", b"hello"),
            packet(opcode::GETQ, &[], b"missing", b""),
            packet(opcode::GETK, &[], b"k", b""),
            // Refused before its value arrives, which is then skipped.
            packet(opcode::SET, &extras, b"big", &[b'x'; 2000]),
            packet(opcode::APPENDQ, &[], b"k", b"!"),
            // Verbosity is unknown to memcached 1.6: its extras are skipped.
            packet(opcode::VERBOSITY, &[], b"", b"abcd"),
            packet(opcode::GET, &[], b"k", b""),
            packet(opcode::NOOP, &[], b"", b""),
        ]
        .concat()
    }

    #[test]
    fn chunked_input_gives_the_replies_of_whole_input() {
        let (whole, _) = feed(&mut session(), &script(), usize::MAX);
        assert_eq!(
            responses(&whole),
            vec![
                (opcode::GETK, 0, b"k".to_vec(), b"hello".to_vec()),
                (opcode::SET, 3, vec![], b"Too large.".to_vec()),
                (opcode::VERBOSITY, 0x81, vec![], b"Unknown command".to_vec()),
                (opcode::GET, 0, vec![], b"hello!".to_vec()),
                (opcode::NOOP, 0, vec![], vec![]),
            ]
        );
        for chunk in [1, 2, 5, 24, 100] {
            assert_eq!(feed(&mut session(), &script(), chunk).0, whole, "{chunk}");
        }
    }

    #[test]
    fn a_wrong_magic_byte_loses_the_replies_not_yet_sent() {
        let mut input = [
            packet(opcode::GET, &[], b"a", b""),
            packet(opcode::NOOP, &[], b"", b""),
            packet(opcode::VERSION, &[], b"", b""),
        ]
        .concat();
        input.extend_from_slice(&[0; HEADER_LEN]);
        let (out, next) = feed(&mut session(), &input, usize::MAX);
        assert_eq!(next, Next::Close);
        // The miss and the noop went out; the version reply had not.
        let codes: Vec<u8> = responses(&out).iter().map(|r| r.0).collect();
        assert_eq!(codes, vec![opcode::GET, opcode::NOOP]);
    }

    #[test]
    fn malformed_packets_are_answered_and_closed() {
        let (out, next) = feed(
            &mut session(),
            &packet(opcode::GET, &[0; 4], b"k", b""),
            usize::MAX,
        );
        assert_eq!(next, Next::Close);
        assert_eq!(
            responses(&out),
            vec![(opcode::GET, 4, vec![], b"Invalid arguments".to_vec())]
        );
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;
    use crate::protocol::binary::{opcode, Header, HEADER_LEN, REQUEST_MAGIC};
    use crate::server::auth::Credentials;
    use std::sync::atomic::Ordering;

    fn sasl_session() -> BinarySession {
        let mut ctx = ServerContext::for_tests();
        ctx.auth.sasl = Some(Credentials::parse(b"alice:secret\n").expect("well-formed"));
        BinarySession::new(Arc::new(ctx), 0)
    }

    fn packet(op: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Header {
            magic: REQUEST_MAGIC,
            opcode: op,
            key_len: key.len() as u16,
            body_len: (key.len() + value.len()) as u32,
            ..Header::default()
        }
        .write(&mut out);
        out.extend_from_slice(key);
        out.extend_from_slice(value);
        out
    }

    /// (opcode, status, body) of each response, and how the input ended.
    fn run(
        session: &mut BinarySession,
        input: &[u8],
        chunk: usize,
    ) -> (Vec<(u8, u16, Vec<u8>)>, Next) {
        let limits = TurnLimits {
            output_bytes: usize::MAX,
            requests: usize::MAX,
        };
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let mut next = Next::NeedInput { wanted: 0 };
        for piece in input.chunks(chunk) {
            pending.extend_from_slice(piece);
            let progress = session.on_input(&pending, &mut out, limits);
            pending.drain(..progress.consumed);
            next = progress.next;
            if next == Next::Close {
                break;
            }
        }
        let mut replies = Vec::new();
        let mut rest = &out[..];
        while let Some(head) = rest.first_chunk::<HEADER_LEN>() {
            let header = Header::read(head);
            let end = HEADER_LEN + header.body_len as usize;
            replies.push((
                header.opcode,
                header.vbucket_or_status,
                rest[HEADER_LEN..end].to_vec(),
            ));
            rest = &rest[end..];
        }
        (replies, next)
    }

    #[test]
    fn sasl_plain_unlocks_the_session_however_the_input_is_cut() {
        let script = [
            packet(opcode::SASL_LIST_MECHS, b"", b""),
            packet(opcode::SASL_AUTH, b"PLAIN", b"\0alice\0nope"),
            packet(opcode::SASL_STEP, b"PLAIN", b"\0alice\0secret"),
            packet(opcode::SASL_AUTH, b"PLAIN", b""),
            packet(opcode::SASL_STEP, b"PLAIN", b"alice\0alice\0secret"),
            packet(opcode::NOOP, b"", b""),
        ]
        .concat();
        let expected = vec![
            (opcode::SASL_LIST_MECHS, 0, b"PLAIN".to_vec()),
            (opcode::SASL_AUTH, 0x20, b"Auth failure.".to_vec()),
            (opcode::SASL_STEP, 0x20, b"Auth failure.".to_vec()),
            (opcode::SASL_AUTH, 0x21, vec![]),
            (opcode::SASL_STEP, 0, b"Authenticated".to_vec()),
            (opcode::NOOP, 0, vec![]),
        ];
        for chunk in [1, 5, 24, usize::MAX] {
            let mut session = sasl_session();
            assert_eq!(run(&mut session, &script, chunk).0, expected, "{chunk}");
            let counters = &session.ctx.counters[0];
            assert_eq!(counters.auth_cmds.load(Ordering::Relaxed), 3);
            assert_eq!(counters.auth_errors.load(Ordering::Relaxed), 2);
        }
    }

    #[test]
    fn other_requests_are_refused_and_close_until_authenticated() {
        let mut session = sasl_session();
        let script = [
            packet(opcode::VERSION, b"", b""),
            packet(opcode::GET, b"k", b""),
            packet(opcode::NOOP, b"", b""),
        ]
        .concat();
        let (replies, next) = run(&mut session, &script, usize::MAX);
        assert_eq!(next, Next::Close);
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0].1, 0);
        assert_eq!(replies[1], (opcode::GET, 0x20, b"Auth failure.".to_vec()));
    }

    #[test]
    fn without_sasl_its_requests_are_unknown_commands() {
        let mut session = BinarySession::new(Arc::new(ServerContext::for_tests()), 0);
        let script = [
            packet(opcode::SASL_LIST_MECHS, b"", b""),
            packet(opcode::SASL_AUTH, b"PLAIN", b"\0alice\0secret"),
            packet(opcode::NOOP, b"", b""),
        ]
        .concat();
        let unknown = b"Unknown command".to_vec();
        assert_eq!(
            run(&mut session, &script, usize::MAX).0,
            vec![
                (opcode::SASL_LIST_MECHS, 0x81, unknown.clone()),
                (opcode::SASL_AUTH, 0x81, unknown),
                (opcode::NOOP, 0, vec![]),
            ]
        );
    }
}
