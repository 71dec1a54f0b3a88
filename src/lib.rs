//! rat_memcache: a memcached-compatible cache server and embeddable cache library.

pub mod store;
