//! rat_memcache: a memcached-compatible cache.
pub mod protocol;
