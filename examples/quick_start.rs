//! A first tour of the rat_memcache library: a cache with a persistent tier in a
//! temporary directory, the everyday calls (set, get, TTL, contains, incr, delete, keys), a shutdown, and the data found again by a
//! new cache on the same directory.
//!
//! Run it with `cargo run --example quick_start`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use rat_memcache::{L1Config, L2Config, RatMemCache, RatMemCacheBuilder, TtlConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data_dir =
        std::env::temp_dir().join(format!("rat_memcache-quick_start-{}", std::process::id()));
    let result = quick_start(&data_dir, &mut io::stdout().lock());
    // The directory was only for the tour.
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

/// The tour, writing what it does to `out`; keeps its data in `data_dir`.
pub fn quick_start(
    data_dir: &Path,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let cache = open(data_dir.to_path_buf())?;
    writeln!(
        out,
        "built a cache with its persistent tier in {}",
        data_dir.display()
    )?;

    cache.set("user:1", "Ada")?;
    let name = cache.get("user:1")?.unwrap_or_default();
    writeln!(
        out,
        "set user:1, got back {:?}",
        String::from_utf8_lossy(&name)
    )?;

    // Expiry counts whole seconds, so a 2 s TTL ends between 1 and 2 s from now.
    cache.set_with_ttl("session", "token", 2)?;
    writeln!(
        out,
        "session stored for 2 s: present = {}",
        cache.contains_key("session")?
    )?;
    thread::sleep(Duration::from_millis(2100));
    writeln!(
        out,
        "2.1 s later: present = {}",
        cache.contains_key("session")?
    )?;

    cache.set("visits", "0")?;
    cache.incr("visits", 1)?;
    let visits = cache.incr("visits", 1)?;
    writeln!(out, "visits counted up to {visits}")?;

    cache.set("scratch", "temporary")?;
    let deleted = cache.delete("scratch")?;
    writeln!(
        out,
        "deleted scratch: {deleted}, present = {}",
        cache.contains_key("scratch")?
    )?;

    let mut keys: Vec<String> = cache
        .keys()?
        .iter()
        .map(|key| String::from_utf8_lossy(key).into_owned())
        .collect();
    keys.sort();
    writeln!(out, "keys: {}", keys.join(", "))?;

    let stats = cache.get_cache_stats();
    writeln!(
        out,
        "{} items in memory ({} bytes), hit rate {:.0} %",
        stats.l1_stats.entry_count,
        stats.l1_stats.memory_usage,
        cache.get_hit_rate().unwrap_or(0.0) * 100.0
    )?;

    cache.shutdown()?;
    writeln!(out, "shut down: everything written to disk")?;
    drop(cache);

    let cache = open(data_dir.to_path_buf())?;
    let name = cache.get("user:1")?.unwrap_or_default();
    let visits = cache.get("visits")?.unwrap_or_default();
    writeln!(
        out,
        "a new cache on the same directory finds user:1 = {:?} and visits = {:?}",
        String::from_utf8_lossy(&name),
        String::from_utf8_lossy(&visits)
    )?;
    cache.shutdown()?;
    Ok(())
}

/// A cache with 16 MiB of memory, items kept for an hour unless told otherwise, and
/// its persistent tier in `data_dir`.
fn open(data_dir: PathBuf) -> Result<RatMemCache, rat_memcache::Error> {
    RatMemCacheBuilder::new()
        .l1_config(L1Config {
            max_memory: 16 * 1024 * 1024,
            ..Default::default()
        })
        .l2_config(L2Config {
            enable_l2_cache: true,
            data_dir: Some(data_dir),
            ..Default::default()
        })
        .ttl_config(TtlConfig {
            default_ttl: 3600,
            ..Default::default()
        })
        .build()
}
