//! The open-files limit of the benchmark tools, raised as far as the process may raise it.
//!
//! Every connection is a file descriptor, and a process starts with the soft limit of
//! `RLIMIT_NOFILE`, often 1024, while the hard limit above it is commonly far higher. A
//! tool that holds tens of thousands of connections therefore raises its soft limit to
//! the hard one first, the way the server raises its own for `-c`; past the hard limit
//! only root (`ulimit -n` in the starting shell) can help.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the limit now in force:
/// how many descriptors this process may have open.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    rat_memcache::server::fdlimit::raise_open_files_limit(u64::MAX)
}
