//! The open-files limit, raised as far as the process may raise it by itself.
//!
//! Every connection is a file descriptor, and a process starts with the soft limit of
//! `RLIMIT_NOFILE`, often 1024, while the hard limit above it (the most an unprivileged
//! process may set its soft limit to) is commonly far higher. A tool that holds tens of
//! thousands of connections therefore raises its soft limit to the hard one first; past
//! the hard limit only root (`ulimit -n` in the starting shell) can help.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the limit now in force:
/// how many descriptors this process may have open.
///
/// Where the raise is refused (macOS caps the soft limit at `OPEN_MAX` whatever the hard
/// limit says) the soft limit stays as it was and is what is returned.
#[cfg(unix)]
// `rlim_t` is `u64` on the usual targets but narrower on some 32-bit ones.
#[allow(clippy::unnecessary_cast)]
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, owned one.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the `rlimit` it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(raised.rlim_cur as u64);
        }
    }
    Ok(limit.rlim_cur as u64)
}

/// Windows has no per-process descriptor limit to raise.
#[cfg(not(unix))]
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    Ok(u64::MAX)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unnecessary_cast)]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_open_files_limit().expect("getrlimit");
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert_eq!(limit, now.rlim_cur as u64);
        if cfg!(target_os = "linux") {
            assert_eq!(now.rlim_cur, now.rlim_max);
        }
    }
}
