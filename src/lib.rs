//! rat_memcache: a memcached-compatible cache server and library.
//!
//! The crate is built in layers, one folder each:
//! - [`protocol`] turns bytes into commands and results into bytes;
//! - [`store`] is the in-memory cache with memcached's semantics;
//! - [`reactor`] moves bytes between sockets and sessions;
//! - [`server`] joins the three into `rat_memcached`;
//! - [`config`] reads the command line and the TOML configuration;
//! - [`ascii`] holds memcached's way of reading and writing decimal numbers.

pub mod ascii;
pub mod cache;
pub mod config;
pub mod protocol;
pub mod reactor;
pub mod server;
pub mod store;

pub use cache::{
    CacheStats, Error, EvictionStrategy, L1Config, L1Stats, L2Config, L2Stats, PerformanceConfig,
    RatMemCache, RatMemCacheBuilder, TtlConfig, MAX_KEY_LEN,
};
