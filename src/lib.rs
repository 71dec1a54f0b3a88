//! rat_memcache: a memcached-compatible cache.
pub mod config;
pub mod protocol;
pub mod store;
