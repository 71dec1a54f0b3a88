//! Running meta commands: a parsed [`Request`] against the store, memcached's reply out.
//!
//! The reply of `mg`, `ma` and the others is built while the item is lent by the store
//! under its stripe lock, walking the request's flags in the order given, because that
//! is how memcached answers them: a returned flag appears where it was asked for, and
//! the flags that change the item (`T`, `N`) take effect where they stand, so `t T30`
//! reports the TTL before the change and `T30 t` the one after. An opaque token found
//! too long on that walk stops the command there with an error, keeping what the walk
//! already did, as memcached does.
//!
//! `q` drops the nominal reply (a hit's `HD` for `md` and `ms`, a miss's `EN` for `mg`,
//! …) but never an error or an unexpected outcome (`EX`, `NS`, `NF`).
//!
//! Counters follow memcached: `mg` counts as a get (or, when it sets a TTL on a hit, as
//! a touch), `ms` as a set, `md` and `ma` as delete and incr/decr, and `cmd_meta` counts
//! only `me`.

use super::counters::{bump, count_cas, count_fetch, WorkerCounters};
use super::ServerContext;
use crate::ascii::{format_u64, MAX_DIGITS};
use crate::protocol::meta::{self, Key, KeyBuf, MetaCommand, MetaKind, Request, SetMode};
use crate::protocol::reply;
use crate::protocol::text::{self, DataBlock, KEY_MAX_LENGTH};
use crate::store::{
    DeleteOutcome, DeltaError, Expiry, MetaEntry, StoreMode, StoreOptions, StoreOutcome,
};
use std::io::Write;

/// How far a meta request got.
#[derive(Debug, PartialEq, Eq)]
pub enum MetaStep {
    /// Answered; `used` bytes after the request line (an `ms` data block) were consumed.
    Done { used: usize },
    /// An `ms` whose data block has not all arrived: `wanted` bytes after the line.
    NeedData { wanted: usize },
    /// Throw away the next `bytes` of input, then answer `reply`.
    Swallow { bytes: usize, reply: &'static str },
}

/// Runs one meta request; `body` is the input after its line.
pub fn run(
    ctx: &ServerContext,
    counters: &WorkerCounters,
    request: Request<'_>,
    body: &[u8],
    out: &mut Vec<u8>,
) -> MetaStep {
    let command = match request {
        Request::Noop => {
            reply::line(out, "MN");
            return MetaStep::Done { used: 0 };
        }
        Request::Debug(key) => {
            bump(&counters.meta_cmds);
            debug(ctx, key, out);
            return MetaStep::Done { used: 0 };
        }
        Request::Error { reply, swallow: 0 } => {
            reply::line(out, reply);
            return MetaStep::Done { used: 0 };
        }
        Request::Error { reply, swallow } => {
            return MetaStep::Swallow {
                bytes: swallow,
                reply,
            }
        }
        Request::Command(command) => command,
    };
    let mut key_buf: KeyBuf = [0; KEY_MAX_LENGTH];
    let key = command.key.decode(&mut key_buf);
    match command.kind {
        MetaKind::Get => get(ctx, counters, &command, key, out),
        MetaKind::Set { mode, value_len } => {
            return set(
                ctx,
                counters,
                &command,
                key,
                mode,
                value_len as usize,
                body,
                out,
            )
        }
        MetaKind::Delete => delete(ctx, counters, &command, key, out),
        MetaKind::Arithmetic { incr } => arithmetic(ctx, counters, &command, key, incr, out),
    }
    MetaStep::Done { used: 0 }
}

fn expiry(exptime: Option<i32>) -> Expiry {
    Expiry::from_memcached(i64::from(exptime.unwrap_or(0)))
}

/// Echoes `O` and `k` flags for a reply without an item; false when an opaque token is
/// too long.
fn echo_without_item(command: &MetaCommand<'_>, key: &[u8], out: &mut Vec<u8>) -> bool {
    for token in command.flags() {
        match token[0] {
            b'O' if token.len() > meta::MAX_OPAQUE_LEN => return false,
            b'O' => meta::echo(out, token),
            b'k' => meta::key(out, key, command.key.is_binary()),
            _ => {}
        }
    }
    true
}

/// Replaces whatever this command wrote from `start` on with an error line.
fn fail(out: &mut Vec<u8>, start: usize, error: &str) {
    out.truncate(start);
    reply::line(out, error);
}

fn get(
    ctx: &ServerContext,
    counters: &WorkerCounters,
    command: &MetaCommand<'_>,
    key: &[u8],
    out: &mut Vec<u8>,
) {
    let options = command.options;
    let start = out.len();
    let mut touched = false;
    let found = ctx.store().meta_get(
        key,
        options.vivify.is_some(),
        !options.no_update,
        |entry: &mut MetaEntry<'_>| {
            if options.value {
                meta::value_header(out, entry.value().len());
            } else {
                meta::code(out, b"HD");
            }
            let mut won = false;
            for token in command.flags() {
                match token[0] {
                    b'T' => {
                        touched = true;
                        entry.set_expiry(expiry(options.ttl));
                    }
                    b'N' if entry.created() => {
                        entry.set_expiry(expiry(options.vivify));
                        won = true;
                    }
                    b'R' => won |= entry.recache_due(expiry(options.recache)),
                    b's' => meta::flag_number(out, b's', entry.value().len() as u64),
                    b't' => meta::flag_ttl(out, b't', entry.ttl()),
                    b'c' => meta::flag_number(out, b'c', entry.cas()),
                    b'f' => meta::flag_number(out, b'f', u64::from(entry.flags())),
                    b'l' => meta::flag_number(out, b'l', u64::from(entry.idle())),
                    b'h' => meta::flag_number(out, b'h', u64::from(entry.was_fetched())),
                    b'O' if token.len() > meta::MAX_OPAQUE_LEN => {
                        // memcached bumps before building the reply unless it locked the
                        // item for one of these flags.
                        if options.locked {
                            entry.skip_bump();
                        }
                        return false;
                    }
                    b'O' => meta::echo(out, token),
                    b'k' => meta::key(out, entry.key(), entry.key_is_binary()),
                    _ => {}
                }
            }
            let refresh = entry.settle_refresh(won);
            if refresh.already_sent {
                meta::flag(out, b'Z');
            }
            if refresh.stale {
                meta::flag(out, b'X');
            }
            if refresh.won {
                meta::flag(out, b'W');
            }
            meta::end_line(out);
            if options.value {
                meta::data(out, entry.value());
            }
            true
        },
    );
    match found {
        Some(false) => fail(out, start, meta::OPAQUE_TOO_LONG),
        Some(true) => count_fetch(counters, touched, true),
        None => {
            // memcached counts a miss as a get even when `T` asked for a touch.
            count_fetch(counters, false, false);
            meta::code(out, b"EN");
            if !echo_without_item(command, key, out) {
                fail(out, start, meta::OPAQUE_TOO_LONG);
            } else if options.quiet {
                out.truncate(start);
            } else {
                meta::end_line(out);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn set(
    ctx: &ServerContext,
    counters: &WorkerCounters,
    command: &MetaCommand<'_>,
    key: &[u8],
    mode: SetMode,
    value_len: usize,
    body: &[u8],
    out: &mut Vec<u8>,
) -> MetaStep {
    let options = command.options;
    let store = ctx.store();
    let wire_len = DataBlock::wire_len(value_len);
    if !store.item_fits(key.len(), options.client_flags, value_len) {
        // Refused before the data is read, which is then thrown away; whatever was
        // stored under the key goes too, so no outdated value is served.
        bump(&counters.store_too_large);
        store.delete(key);
        return MetaStep::Swallow {
            bytes: wire_len,
            reply: text::TOO_LARGE,
        };
    }
    let value = match text::data_block(body, value_len) {
        DataBlock::Incomplete => return MetaStep::NeedData { wanted: wire_len },
        DataBlock::BadChunk => {
            bump(&counters.cmd_set);
            reply::line(out, text::BAD_DATA_CHUNK);
            return MetaStep::Done { used: wire_len };
        }
        DataBlock::Complete(value) => value,
    };
    bump(&counters.cmd_set);
    let compare = options.compare_cas;
    let store_mode = match (mode, compare) {
        // With a CAS, set and replace are memcached's `cas`.
        (SetMode::Set | SetMode::Replace, Some(cas)) => StoreMode::Cas(cas),
        (SetMode::Set, None) => StoreMode::Set,
        (SetMode::Replace, None) => StoreMode::Replace,
        (SetMode::Add, _) => StoreMode::Add,
        (SetMode::Append, _) => StoreMode::Append,
        (SetMode::Prepend, _) => StoreMode::Prepend,
    };
    let store_options = StoreOptions {
        compare_cas: compare.unwrap_or(0),
        stale_ok: options.invalidate,
        key_binary: command.key.is_binary(),
    };
    // An operator's default TTL applies to items stored without one.
    let exptime = match (options.ttl.unwrap_or(0), ctx.settings.default_ttl) {
        (0, ttl) if ttl > 0 => Expiry::from_memcached(i64::from(ttl)),
        (exptime, _) => Expiry::from_memcached(i64::from(exptime)),
    };
    let (outcome, cas) = store.store_with(
        store_mode,
        key,
        options.client_flags,
        exptime,
        value,
        store_options,
    );
    if let StoreMode::Cas(_) = store_mode {
        count_cas(counters, outcome);
    }
    let code = match outcome {
        StoreOutcome::Stored if options.quiet => return MetaStep::Done { used: wire_len },
        StoreOutcome::Stored => b"HD",
        StoreOutcome::NotStored => b"NS",
        StoreOutcome::Exists => b"EX",
        StoreOutcome::NotFound => b"NF",
        StoreOutcome::TooLarge => {
            bump(&counters.store_too_large);
            reply::line(out, text::TOO_LARGE);
            return MetaStep::Done { used: wire_len };
        }
        StoreOutcome::NoMemory => {
            bump(&counters.store_no_memory);
            reply::line(out, text::NO_MEMORY);
            return MetaStep::Done { used: wire_len };
        }
    };
    meta::code(out, code);
    for token in command.flags() {
        match token[0] {
            b'O' => meta::echo(out, token),
            b'k' => meta::key(out, key, command.key.is_binary()),
            b'c' => meta::flag_number(out, b'c', cas),
            _ => {}
        }
    }
    meta::end_line(out);
    MetaStep::Done { used: wire_len }
}

fn delete(
    ctx: &ServerContext,
    counters: &WorkerCounters,
    command: &MetaCommand<'_>,
    key: &[u8],
    out: &mut Vec<u8>,
) {
    let options = command.options;
    let invalidate = options
        .invalidate
        .then(|| options.ttl.map(|ttl| expiry(Some(ttl))));
    let outcome = ctx
        .store()
        .meta_delete(key, options.compare_cas, invalidate);
    let code = match outcome {
        DeleteOutcome::Deleted => {
            bump(&counters.delete_hits);
            b"HD"
        }
        DeleteOutcome::Invalidated => b"HD",
        DeleteOutcome::Exists => {
            bump(&counters.delete_misses);
            b"EX"
        }
        DeleteOutcome::NotFound => {
            bump(&counters.delete_misses);
            b"NF"
        }
    };
    if options.quiet && code == b"HD" {
        return;
    }
    meta::code(out, code);
    // Parsing refused over-long opaque tokens already.
    echo_without_item(command, key, out);
    meta::end_line(out);
}

fn arithmetic(
    ctx: &ServerContext,
    counters: &WorkerCounters,
    command: &MetaCommand<'_>,
    key: &[u8],
    incr: bool,
    out: &mut Vec<u8>,
) {
    let options = command.options;
    let start = out.len();
    let create = options.vivify.map(|_| options.initial);
    let compare = options.compare_cas.unwrap_or(0);
    let result = ctx.store().meta_arith(
        key,
        incr,
        options.delta,
        compare,
        create,
        |entry: &mut MetaEntry<'_>, number| {
            let mut buf = [0; MAX_DIGITS];
            let digits = format_u64(number, &mut buf);
            if options.value {
                meta::value_header(out, digits.len());
            } else {
                meta::code(out, b"HD");
            }
            for token in command.flags() {
                match token[0] {
                    b'c' => meta::flag_number(out, b'c', entry.cas()),
                    b't' => meta::flag_ttl(out, b't', entry.ttl()),
                    b'T' => entry.set_expiry(expiry(options.ttl)),
                    b'N' if entry.created() => entry.set_expiry(expiry(options.vivify)),
                    b'O' if token.len() > meta::MAX_OPAQUE_LEN => return (entry.created(), false),
                    b'O' => meta::echo(out, token),
                    b'k' => meta::key(out, key, command.key.is_binary()),
                    _ => {}
                }
            }
            meta::end_line(out);
            if options.value {
                meta::data(out, digits);
            }
            (entry.created(), true)
        },
    );
    let (hits, misses) = if incr {
        (&counters.incr_hits, &counters.incr_misses)
    } else {
        (&counters.decr_hits, &counters.decr_misses)
    };
    let code = match result {
        Ok((created, answered)) => {
            // The arithmetic counts even when the reply then fails.
            if !created {
                bump(hits);
            }
            if !answered {
                fail(out, start, meta::OPAQUE_TOO_LONG);
            } else if options.quiet && !created {
                // A created counter is answered even under `q`.
                out.truncate(start);
            }
            return;
        }
        Err(DeltaError::NonNumeric) => return reply::line(out, text::NON_NUMERIC),
        Err(DeltaError::NoMemory) => return reply::line(out, text::NO_MEMORY_DELTA),
        Err(DeltaError::NotFound) => {
            bump(misses);
            b"NF"
        }
        Err(DeltaError::Exists) => b"EX",
    };
    meta::code(out, code);
    if echo_without_item(command, key, out) {
        meta::end_line(out);
    } else {
        fail(out, start, meta::OPAQUE_TOO_LONG);
    }
}

/// `me`: memcached's debug line for an item.
fn debug(ctx: &ServerContext, key: Key<'_>, out: &mut Vec<u8>) {
    let mut key_buf: KeyBuf = [0; KEY_MAX_LENGTH];
    let key = key.decode(&mut key_buf);
    let item_size_max = ctx.settings.max_item_size;
    let found = ctx.store().peek(key, |entry| {
        out.extend_from_slice(b"ME ");
        if entry.key_is_binary() {
            meta::base64_encode(entry.key(), out);
        } else {
            out.extend_from_slice(entry.key());
        }
        // memcached prints the expiry as now minus it: negative while it lies ahead.
        let exp = entry.ttl().map_or(-1, |ttl| 0u32.wrapping_sub(ttl) as i32);
        let size = entry.memcached_size();
        let class = slab_class(size, item_size_max);
        let fetch = if entry.was_fetched() { "yes" } else { "no" };
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            " exp={exp} la={} cas={} fetch={fetch} cls={class} size={size}\r\n",
            entry.idle(),
            entry.cas(),
        );
    });
    if found.is_none() {
        reply::line(out, "EN");
    }
}

/// memcached's largest slab chunk (`slab_chunk_size_max`, half its 1 MB slab page).
const SLAB_CHUNK_MAX: usize = 512 * 1024;

/// The slab class memcached, with its default slab settings (`-n 48 -f 1.25`), gives an
/// item of `size` bytes. An item larger than the largest chunk is chained from several,
/// and is still labelled with the largest class.
fn slab_class(size: usize, item_size_max: usize) -> u32 {
    const ITEM_HEADER: usize = 48;
    const MAX_CLASSES: u32 = 63;
    if size == 0 || size > item_size_max {
        return 0;
    }
    let mut chunk = (ITEM_HEADER + 48) as f64;
    let mut class = 0;
    loop {
        class += 1;
        if class >= MAX_CLASSES || chunk >= SLAB_CHUNK_MAX as f64 / 1.25 {
            return class;
        }
        let aligned = (chunk as usize).next_multiple_of(8);
        if size <= aligned {
            return class;
        }
        // memcached keeps the chunk size in an unsigned int.
        chunk = ((aligned as f64) * 1.25).trunc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::session::tests::{feed, session};

    const SCRIPT: &[u8] = b"ms a 3 T0 F5 c\r\nabc\r\nmg a v f k Oo q\r\nmg none q v\r\n\
ms YWJj 2 b k\r\nhi\r\nmg YWJj b k v\r\nma n N0 J9 v\r\nma n v\r\nmd a I\r\nmg a c\r\n\
mg a\r\nms x 2 zz\r\nxy\r\nms big 2000000\r\n";

    #[test]
    fn meta_requests_split_anywhere_give_the_same_replies() {
        let mut input = SCRIPT.to_vec();
        input.resize(input.len() + 2_000_000, b'x');
        input.extend_from_slice(b"\r\nme YWJj b\r\nmn\r\n");
        let whole = feed(&mut session(), &input, input.len());
        let text = String::from_utf8_lossy(&whole);
        assert!(text.starts_with(
            "HD c1\r\nVA 3 f5 ka Oo\r\nabc\r\nHD kYWJj b\r\nVA 2 kYWJj b\r\nhi\r\n\
VA 1\r\n9\r\nVA 2\r\n10\r\nHD\r\nHD c"
        ));
        assert!(text.contains("X W\r\nHD Z X\r\nCLIENT_ERROR invalid flag\r\n"));
        assert!(text.ends_with(
            "SERVER_ERROR object too large for cache\r\n\
ME YWJj exp=-1 la=0 cas=2 fetch=yes cls=1 size=64\r\nMN\r\n"
        ));
        for chunk in [1, 2, 3, 5, 64, 4096] {
            assert_eq!(
                feed(&mut session(), &input, chunk),
                whole,
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn slab_classes_match_memcached_defaults() {
        // From `memcached -vv`: class 1 holds 96 bytes, 2 120, 3 152, 39 524288.
        let max = 1024 * 1024;
        assert_eq!(slab_class(61, max), 1);
        assert_eq!(slab_class(96, max), 1);
        assert_eq!(slab_class(97, max), 2);
        assert_eq!(slab_class(152, max), 3);
        assert_eq!(slab_class(153, max), 4);
        assert_eq!(slab_class(394_840, max), 38);
        assert_eq!(slab_class(394_841, max), 39);
        assert_eq!(slab_class(524_288, max), 39);
        // Chained items keep the largest class.
        assert_eq!(slab_class(600_060, max), 39);
        assert_eq!(slab_class(max, max), 39);
    }
}
