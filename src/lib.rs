//! rat_memcache: a memcached-compatible cache server and library.
//!
//! Embedding the cache: [`RatMemCache`], built with [`RatMemCacheBuilder`] (the
//! [`cache`] module), a synchronous, thread-safe handle with memcached's operations.
//!
//! The crate is built in layers, one folder each:
//! - [`cache`] is the library API over the store, which the server's store is built with too;
//! - [`protocol`] turns bytes into commands and results into bytes;
//! - [`store`] is the in-memory cache with memcached's semantics;
//! - `reactor` moves bytes between sockets and sessions;
//! - `server` joins the three into `rat_memcached`;
//! - `config` reads the command line and the TOML configuration;
//! - [`ascii`] holds memcached's way of reading and writing decimal numbers.
//!
//! # Features
//!
//! Both features are on by default; a program that embeds the cache and wants a small
//! dependency tree turns them off (`default-features = false`) and adds back what it uses.
//!
//! - `server`: the `rat_memcached` binary and the modules only it needs (`reactor`,
//!   `server`, `config`), with mio, pico-args, serde, toml, fern, mimalloc and slab.
//! - `l2`: the persistent tier, melange_db on disk behind the in-memory store
//!   (`Store::open`, `Store::warm_up`, `Store::close`, `Store::l2_stats`), with melange_db
//!   and lz4_flex. Without it the store is memory-only, and `rat_memcached` refuses a
//!   data directory.
//!
//! The two are independent: `server` without `l2` is a memory-only memcached, `l2`
//! without `server` a persistent cache for one process.

#![warn(missing_docs)]

#[cfg(all(unix, feature = "server"))]
pub mod allocator;
pub mod ascii;
pub mod cache;
pub mod config;
pub mod protocol;
#[cfg(feature = "server")]
pub mod reactor;
#[cfg(feature = "server")]
pub mod server;
pub mod store;
#[cfg(test)]
mod test_rng;

pub use cache::{
    CacheStats, Error, EvictionStrategy, L1Config, L1Stats, L2Config, L2Stats, PerformanceConfig,
    RatMemCache, RatMemCacheBuilder, TtlConfig, MAX_KEY_LEN,
};
