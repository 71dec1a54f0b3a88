//! Exporting rat_memcache's statistics in the Prometheus text format, ready to be served
//! on a `/metrics` endpoint by whatever HTTP server the program already has.
//!
//! Run it with `cargo run --example monitoring`.

use std::fmt::Write as _;

use rat_memcache::{CacheStats, RatMemCacheBuilder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = RatMemCacheBuilder::new().build()?;
    for i in 0..100 {
        cache.set(format!("key:{i}"), "value")?;
    }
    for i in 0..150 {
        cache.get(format!("key:{i}"))?;
    }
    print!("{}", prometheus_text(&cache.get_cache_stats()));
    cache.shutdown()?;
    Ok(())
}

/// The statistics as Prometheus metrics: one `# HELP`, one `# TYPE` and one sample
/// line each, the persistent tier's only when there is one.
pub fn prometheus_text(stats: &CacheStats) -> String {
    let mut out = String::new();
    let l1 = &stats.l1_stats;
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP rat_memcache_{name} {help}\n# TYPE rat_memcache_{name} {kind}\nrat_memcache_{name} {value}"
        );
    };
    metric("l1_items", "gauge", "Items in memory.", l1.entry_count);
    metric(
        "l1_memory_bytes",
        "gauge",
        "Bytes of memory the items take.",
        l1.memory_usage,
    );
    metric(
        "l1_memory_limit_bytes",
        "gauge",
        "The memory limit.",
        l1.max_memory,
    );
    metric(
        "hits_total",
        "counter",
        "Lookups that found an item.",
        l1.hits,
    );
    metric(
        "misses_total",
        "counter",
        "Lookups that found nothing.",
        l1.misses,
    );
    metric(
        "l1_evictions_total",
        "counter",
        "Items evicted to make room.",
        l1.evictions,
    );
    metric(
        "total_items",
        "gauge",
        "Items in the cache, both tiers.",
        stats.total_entries,
    );
    if let Some(l2) = &stats.l2_stats {
        metric("l2_items", "gauge", "Items on disk.", l2.entry_count);
        metric(
            "l2_data_bytes",
            "gauge",
            "Bytes of keys and values on disk.",
            l2.data_bytes,
        );
        metric(
            "l2_disk_bytes",
            "gauge",
            "Bytes of the database's files.",
            l2.disk_bytes,
        );
        metric(
            "l2_reads_total",
            "counter",
            "Memory misses that looked on disk.",
            l2.reads,
        );
        metric(
            "l2_hits_total",
            "counter",
            "Disk reads that found the item.",
            l2.hits,
        );
        metric(
            "l2_writes_total",
            "counter",
            "Changes written to disk.",
            l2.writes,
        );
        metric(
            "l2_pending_writes",
            "gauge",
            "Changes waiting to be written.",
            l2.pending_writes,
        );
        metric(
            "l2_evictions_total",
            "counter",
            "Items dropped for the disk limit.",
            l2.evictions,
        );
        metric(
            "l2_fault",
            "gauge",
            "1 when the disk tier stopped writing.",
            u64::from(l2.fault.is_some()),
        );
    }
    out
}
