//! The statistics of `stats` and its groups, in memcached's names and order.
//!
//! The groups are gathered once, into a [`StatSink`], and each protocol
//! encodes them its own way: the text protocol as `STAT name value` lines
//! ending in `END`, the binary protocol as one packet per statistic ending
//! in an empty one. What a group answers besides its statistics (`RESET`,
//! the detail switches, an unknown group) comes back as a [`Gathered`] for
//! the protocol to word.

use super::counters::{self, CounterTotals};
use super::ServerContext;
use crate::protocol::reply;
use crate::protocol::text::{self, StatsGroup};
use crate::reactor::{Endpoint, Transport};
#[cfg(feature = "l2")]
use crate::store::TierStats;
use std::fmt::Display;
use std::sync::atomic::Ordering;

/// Where statistics go, one `(name, value)` at a time.
pub trait StatSink {
    fn stat(&mut self, name: &str, value: &dyn Display);
}

/// The text protocol's sink: `STAT name value\r\n` lines.
pub struct StatLines<'a>(pub &'a mut Vec<u8>);

impl StatSink for StatLines<'_> {
    fn stat(&mut self, name: &str, value: &dyn Display) {
        reply::stat(self.0, name, value);
    }
}

/// What a `stats` request did besides listing statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gathered {
    /// The group's statistics went to the sink.
    Listed,
    /// `stats reset` cleared the counters.
    Reset,
    /// `stats detail on|off` was accepted.
    DetailSwitched,
    /// `stats detail dump`: per-prefix statistics are not collected, so the
    /// dump is empty.
    DetailDump,
    /// `stats detail` without a known argument.
    DetailUsage,
    Unknown,
}

/// Gathers `group` into `sink`.
pub fn gather(ctx: &ServerContext, group: StatsGroup<'_>, sink: &mut dyn StatSink) -> Gathered {
    match group {
        StatsGroup::General => general(ctx, sink),
        StatsGroup::Settings => settings(ctx, sink),
        StatsGroup::Items => items(ctx, sink),
        StatsGroup::Slabs => slabs(ctx, sink),
        StatsGroup::Sizes => stat(sink, "sizes_status", "disabled"),
        StatsGroup::Conns => conns(ctx, sink),
        StatsGroup::Reset => {
            *ctx.stats_base.lock() = counters::total(&ctx.counters);
            return Gathered::Reset;
        }
        // Per-prefix statistics are not collected; the switches are
        // accepted so tools that flip them keep working.
        StatsGroup::Detail(arg) => {
            return match arg {
                Some(b"on") | Some(b"off") => Gathered::DetailSwitched,
                Some(b"dump") => Gathered::DetailDump,
                _ => Gathered::DetailUsage,
            }
        }
        StatsGroup::Unknown => return Gathered::Unknown,
    }
    Gathered::Listed
}

/// The text protocol's reply to `stats [group]`.
pub fn write(ctx: &ServerContext, group: StatsGroup<'_>, out: &mut Vec<u8>) {
    match gather(ctx, group, &mut StatLines(out)) {
        Gathered::Listed | Gathered::DetailDump => reply::end(out),
        Gathered::Reset => reply::line(out, "RESET"),
        Gathered::DetailSwitched => reply::line(out, "OK"),
        Gathered::DetailUsage => reply::line(out, text::STATS_DETAIL_USAGE),
        Gathered::Unknown => reply::line(out, text::ERROR),
    }
}

fn stat(sink: &mut dyn StatSink, name: &str, value: impl Display) {
    sink.stat(name, &value);
}

fn command_totals(ctx: &ServerContext) -> CounterTotals {
    counters::total(&ctx.counters).since(&ctx.stats_base.lock())
}

fn general(ctx: &ServerContext, out: &mut dyn StatSink) {
    let c = command_totals(ctx);
    let r = &ctx.reactor_stats;
    let s = ctx.store().stats();
    let (user, system) = super::process_cpu_times();
    stat(out, "pid", std::process::id());
    stat(out, "uptime", ctx.started.elapsed().as_secs());
    stat(out, "time", crate::store::clock::unix_now());
    stat(out, "version", &ctx.version);
    stat(out, "pointer_size", usize::BITS);
    stat(
        out,
        "rusage_user",
        format_args!("{}.{:06}", user.as_secs(), user.subsec_micros()),
    );
    stat(
        out,
        "rusage_system",
        format_args!("{}.{:06}", system.as_secs(), system.subsec_micros()),
    );
    stat(out, "max_connections", ctx.settings.max_connections);
    let curr = r.curr_connections.load(Ordering::Relaxed);
    stat(out, "curr_connections", curr);
    stat(
        out,
        "total_connections",
        r.total_connections.load(Ordering::Relaxed),
    );
    stat(
        out,
        "rejected_connections",
        r.rejected_connections.load(Ordering::Relaxed),
    );
    stat(out, "connection_structures", curr);
    stat(out, "cmd_get", c.cmd_get);
    stat(out, "cmd_set", c.cmd_set);
    stat(out, "cmd_flush", c.cmd_flush);
    stat(out, "cmd_touch", c.cmd_touch);
    stat(out, "cmd_meta", c.meta_cmds);
    stat(out, "get_hits", c.get_hits);
    stat(out, "get_misses", c.get_misses);
    stat(out, "get_expired", s.get_expired);
    stat(out, "get_flushed", s.get_flushed);
    stat(out, "delete_misses", c.delete_misses);
    stat(out, "delete_hits", c.delete_hits);
    stat(out, "incr_misses", c.incr_misses);
    stat(out, "incr_hits", c.incr_hits);
    stat(out, "decr_misses", c.decr_misses);
    stat(out, "decr_hits", c.decr_hits);
    stat(out, "cas_misses", c.cas_misses);
    stat(out, "cas_hits", c.cas_hits);
    stat(out, "cas_badval", c.cas_badval);
    stat(out, "touch_hits", c.touch_hits);
    stat(out, "touch_misses", c.touch_misses);
    stat(out, "store_too_large", c.store_too_large);
    stat(out, "store_no_memory", c.store_no_memory);
    stat(out, "auth_cmds", c.auth_cmds);
    stat(out, "auth_errors", c.auth_errors);
    stat(out, "bytes_read", r.bytes_read());
    stat(out, "bytes_written", r.bytes_written());
    stat(out, "limit_maxbytes", s.limit_maxbytes);
    stat(out, "accepting_conns", 1);
    stat(out, "threads", ctx.settings.threads);
    stat(out, "conn_yields", r.conn_yields.load(Ordering::Relaxed));
    stat(out, "bytes", s.bytes);
    stat(out, "curr_items", s.curr_items);
    stat(out, "total_items", s.total_items);
    stat(out, "expired_unfetched", s.expired_unfetched);
    stat(out, "evicted_unfetched", s.evicted_unfetched);
    stat(out, "evictions", s.evictions);
    stat(out, "evictions_memory", s.evictions_memory);
    stat(out, "evictions_entries", s.evictions_entries);
    stat(out, "reclaimed", s.reclaimed);
    #[cfg(feature = "l2")]
    if let Some(l2) = ctx.store().l2_stats() {
        l2_stats(&l2, out);
    }
}

/// The persistent tier's counters (only when it is on).
#[cfg(feature = "l2")]
fn l2_stats(l2: &TierStats, out: &mut dyn StatSink) {
    stat(out, "l2_items", l2.items);
    stat(out, "l2_bytes", l2.bytes);
    stat(out, "l2_disk_bytes", l2.disk_bytes);
    stat(out, "l2_limit_bytes", l2.limit_bytes);
    stat(out, "l2_reads", l2.reads);
    stat(out, "l2_read_waits", l2.read_waits);
    stat(out, "l2_hits", l2.hits);
    stat(out, "l2_promotions", l2.promotions);
    stat(out, "l2_warmed", l2.warmed);
    stat(out, "l2_writes", l2.writes);
    stat(out, "l2_batches", l2.batches);
    stat(out, "l2_syncs", l2.flushes);
    stat(out, "l2_last_sync_ms", l2.last_sync_ms);
    stat(out, "l2_queue_depth", l2.queue_depth);
    stat(out, "l2_queue_bytes", l2.queue_bytes);
    stat(out, "l2_queue_waits", l2.queue_waits);
    stat(out, "l2_dropped_writes", l2.dropped_writes);
    stat(out, "l2_evictions", l2.evictions);
    stat(out, "l2_reclaimed", l2.reclaimed);
    stat(out, "l2_compressed", l2.compressed);
    stat(out, "l2_errors", l2.errors);
    stat(out, "l2_fault", u8::from(l2.faulted));
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn settings(ctx: &ServerContext, out: &mut dyn StatSink) {
    let s = &ctx.settings;
    stat(out, "maxbytes", ctx.store().stats().limit_maxbytes);
    stat(out, "maxconns", s.max_connections);
    let port = s.listen.first().map_or(0, |a| a.port());
    stat(out, "tcpport", port);
    stat(out, "udpport", s.udp_port);
    let inter: Vec<String> = s.listen.iter().map(|a| a.ip().to_string()).collect();
    stat(out, "inter", inter.join(","));
    stat(out, "verbosity", ctx.verbosity.load(Ordering::Relaxed));
    stat(
        out,
        "evictions",
        if s.evictions_enabled { "on" } else { "off" },
    );
    match &s.unix_socket {
        Some(path) => stat(out, "domain_socket", path.display()),
        None => stat(out, "domain_socket", "NULL"),
    }
    stat(out, "umask", format_args!("{:o}", s.unix_socket_mask));
    stat(out, "shutdown_command", yes_no(s.enable_shutdown));
    stat(out, "num_threads", s.threads);
    stat(out, "reqs_per_event", s.reqs_per_event);
    stat(out, "cas_enabled", yes_no(s.cas_enabled));
    stat(out, "tcp_backlog", s.listen_backlog);
    stat(out, "binding_protocol", s.protocol.stats_name());
    stat(
        out,
        "auth_enabled_sasl",
        if s.sasl_enabled { "yes" } else { "no" },
    );
    // memcached shows the file's name, or "no".
    match &s.auth_file {
        Some(path) => stat(out, "auth_enabled_ascii", path.display()),
        None => stat(out, "auth_enabled_ascii", "no"),
    }
    stat(out, "item_size_max", s.max_item_size);
    stat(out, "maxconns_fast", "yes");
    stat(out, "flush_enabled", yes_no(s.flush_enabled));
    stat(out, "eviction_strategy", s.eviction.as_str());
    stat(out, "default_ttl", s.default_ttl);
    if let Some(dir) = &s.l2.data_dir {
        stat(out, "l2_data_dir", dir.display());
        stat(out, "l2_flush_interval_ms", s.l2.flush_interval_ms);
        stat(out, "l2_sync_writes", yes_no(s.l2.sync_writes));
        stat(out, "l2_compression", yes_no(s.l2.enable_compression));
        stat(out, "l2_compression_threshold", s.l2.compression_threshold);
        stat(out, "l2_batch_size", s.l2.batch_size);
        stat(out, "l2_queue_max_mb", s.l2.queue_max_mb);
    }
}

/// Items live in one class here (there are no slab classes); it is listed
/// when it holds items, as memcached lists only classes in use.
fn items(ctx: &ServerContext, out: &mut dyn StatSink) {
    let s = ctx.store().stats();
    if s.curr_items == 0 {
        return;
    }
    stat(out, "items:1:number", s.curr_items);
    stat(out, "items:1:evicted", s.evictions);
    stat(out, "items:1:evicted_unfetched", s.evicted_unfetched);
    stat(out, "items:1:expired_unfetched", s.expired_unfetched);
    stat(out, "items:1:reclaimed", s.reclaimed);
    stat(
        out,
        "items:1:outofmemory",
        command_totals(ctx).store_no_memory,
    );
}

fn slabs(ctx: &ServerContext, out: &mut dyn StatSink) {
    let s = ctx.store().stats();
    let c = command_totals(ctx);
    if s.curr_items > 0 {
        // One class holds items of every size up to the item size limit.
        stat(out, "1:chunk_size", ctx.settings.max_item_size);
        stat(out, "1:used_chunks", s.curr_items);
        stat(out, "1:get_hits", c.get_hits);
        stat(out, "1:cmd_set", c.cmd_set);
        stat(out, "1:delete_hits", c.delete_hits);
        stat(out, "1:incr_hits", c.incr_hits);
        stat(out, "1:decr_hits", c.decr_hits);
        stat(out, "1:cas_hits", c.cas_hits);
        stat(out, "1:cas_badval", c.cas_badval);
        stat(out, "1:touch_hits", c.touch_hits);
    }
    stat(out, "active_slabs", u64::from(s.curr_items > 0));
    stat(out, "total_malloced", s.bytes);
}

/// memcached's `stats conns`: per connection its client and the socket it
/// came through; a UDP socket, which has no one client, shows itself.
fn conns(ctx: &ServerContext, out: &mut dyn StatSink) {
    let now = ctx.registry.now();
    for conn in ctx.registry.snapshot() {
        let id = conn.id;
        let idle = now.saturating_sub(conn.last_active.load(Ordering::Relaxed));
        if conn.transport == Transport::Udp {
            stat(out, &format!("{id}:UDP"), "UDP");
            stat(
                out,
                &format!("{id}:addr"),
                endpoint(conn.transport, &conn.local),
            );
            stat(out, &format!("{id}:state"), "conn_read");
        } else {
            stat(
                out,
                &format!("{id}:addr"),
                endpoint(conn.transport, &conn.peer),
            );
            stat(
                out,
                &format!("{id}:listen_addr"),
                endpoint(conn.transport, &conn.local),
            );
            stat(out, &format!("{id}:state"), "conn_parse_cmd");
        }
        stat(out, &format!("{id}:secs_since_last_cmd"), idle);
    }
}

/// An address in memcached's words.
fn endpoint(transport: Transport, endpoint: &Endpoint) -> String {
    match (transport, endpoint) {
        (Transport::Udp, Endpoint::Inet(addr)) => format!("udp:{addr}"),
        (_, Endpoint::Inet(addr)) => format!("tcp:{addr}"),
        (_, Endpoint::Unix(Some(path))) => format!("unix:{}", path.display()),
        // memcached keeps no address for a unix client and prints it as an
        // unknown address family of number 0.
        (_, Endpoint::Unix(None)) => "?:<AF 0>".to_string(),
    }
}
