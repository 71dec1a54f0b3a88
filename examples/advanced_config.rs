//! Every configuration a program can give rat_memcache, for a large cache: 2 GB of
//! memory evicted least-recently-used first, a persistent tier on a data directory with
//! LZ4 compression of values from 512 bytes, default and maximum TTLs, and a statistics
//! line in the log every minute.
//!
//! Run it with `cargo run --example advanced_config`. The data directory is a temporary
//! one here; a real program names its own.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use rat_memcache::{
    EvictionStrategy, L1Config, L2Config, PerformanceConfig, RatMemCache, RatMemCacheBuilder,
    TtlConfig,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = std::env::temp_dir().join(format!(
        "rat_memcache-advanced_config-{}",
        std::process::id()
    ));
    let result = advanced_config(&data_dir, &mut io::stdout().lock());
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

/// The cache this example configures, on `data_dir`.
pub fn build(data_dir: &Path) -> Result<RatMemCache, rat_memcache::Error> {
    RatMemCacheBuilder::new()
        .l1_config(L1Config {
            // Memory is charged as it is used: a large limit costs nothing up front.
            max_memory: 2 * 1024 * 1024 * 1024,
            eviction_strategy: EvictionStrategy::Lru,
            max_item_size: 8 * 1024 * 1024,
            ..Default::default()
        })
        .l2_config(L2Config {
            enable_l2_cache: true,
            data_dir: Some(data_dir.to_path_buf()),
            max_disk_size: 20 * 1024 * 1024 * 1024,
            enable_compression: true,
            compression_threshold: 512,
            // A crash loses about the last half second of writes; fsyncs cost less
            // CPU than with the default 100 ms.
            flush_interval: Duration::from_millis(500),
            ..Default::default()
        })
        .ttl_config(TtlConfig {
            // `set` without a TTL keeps a value an hour; nothing stays over a day.
            default_ttl: 3600,
            max_ttl: 86_400,
            cleanup_interval: 60,
        })
        .performance_config(PerformanceConfig {
            enable_background_stats: true,
            stats_interval: 60,
        })
        .build()
}

/// Builds the cache, stores a compressible and an incompressible value, and reports
/// what the tiers hold once it is shut down.
pub fn advanced_config(
    data_dir: &Path,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let cache = build(data_dir)?;
    let stats = cache.get_cache_stats();
    writeln!(
        out,
        "memory limit {} MB, disk limit {} MB",
        stats.l1_stats.max_memory >> 20,
        stats
            .l2_stats
            .as_ref()
            .map_or(0, |l2| l2.max_disk_size >> 20)
    )?;

    let report = "all quiet on the western front. ".repeat(64);
    cache.set("report", report.as_bytes())?;
    // Bytes that do not repeat: LZ4 would only make them longer, so they stay raw.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    cache.set("noise", &noise)?;
    cache.set_with_ttl("short", "lived", 5)?;
    writeln!(
        out,
        "stored a {} byte report, {} bytes of noise and one 5 s item",
        report.len(),
        noise.len()
    )?;

    cache.shutdown()?;
    let stats = cache.get_cache_stats();
    let l2 = stats.l2_stats.unwrap_or_default();
    writeln!(
        out,
        "on disk after shutdown: {} items, {} of them compressed",
        l2.entry_count, l2.compressed
    )?;
    drop(cache);

    let cache = build(data_dir)?;
    let report_back = cache.get("report")?.unwrap_or_default();
    let noise_back = cache.get("noise")?.unwrap_or_default();
    writeln!(
        out,
        "reopened: report {}, noise {}",
        if report_back == report.as_bytes() {
            "intact"
        } else {
            "CHANGED"
        },
        if noise_back == noise {
            "intact"
        } else {
            "CHANGED"
        }
    )?;
    cache.shutdown()?;
    Ok(())
}
