//! The open-files limit, raised to what `-c` needs.
//!
//! Every client connection is a file descriptor, and a process starts with the soft
//! limit of `RLIMIT_NOFILE`, often 1024, however many connections `-c` allows. Past the
//! soft limit `accept` fails with `EMFILE`, and the clients beyond it wait unanswered in
//! the listen backlog. So, as memcached does at startup, the server raises its soft limit
//! to what `-c` needs: the connections plus the descriptors the server holds itself (see
//! [`own_descriptors`]).
//!
//! The soft limit may go up to the hard limit; past it only a privileged process may
//! lift the hard limit too, and [`raise_open_files_limit`] tries that when it has to.
//! Where even that falls short, memcached refuses to start; this server starts anyway,
//! says so, and serves as many connections as its descriptors allow ([`fit_connections`]),
//! so that the clients beyond them are told `ERROR Too many open connections` instead of
//! waiting. A soft limit already high enough is left as it is.
//!
//! [`raise_open_files_limit`] is public so that the load generators of the benchmarks,
//! which hold tens of thousands of connections, raise their limit the same way.

use std::io;

/// Descriptors kept in reserve for what the server opens now and then: the one it
/// accepts only to refuse, the pid file, the name-service files `-u` reads, `/proc`.
const SPARE_DESCRIPTORS: u64 = 16;

/// Descriptors the persistent tier keeps open: its log segments, snapshots and data
/// files, with room for the ones a compaction opens before closing the old.
const PERSISTENT_TIER_DESCRIPTORS: u64 = 64;

/// What the server holds open besides its clients' connections, with `threads` workers
/// and `listeners` TCP or unix listening sockets and `udp_sockets` UDP ones.
pub(crate) fn own_descriptors(
    threads: usize,
    listeners: usize,
    udp_sockets: usize,
    persistent_tier: bool,
) -> u64 {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let stdio = 3;
    // A poll and a waker for the acceptor and for each worker.
    let polls = 2 * (1 + count(threads));
    // Each worker reads every UDP socket through a descriptor of its own.
    let udp = count(udp_sockets).saturating_mul(1 + count(threads));
    let tier = if persistent_tier {
        PERSISTENT_TIER_DESCRIPTORS
    } else {
        0
    };
    [stdio, polls, count(listeners), udp, tier, SPARE_DESCRIPTORS]
        .into_iter()
        .fold(0, u64::saturating_add)
}

/// Raises the open-files limit for `max_connections` clients on top of `own`
/// descriptors and returns how many clients fit in the limit obtained: all of them, or,
/// when the limit stays short, fewer, after a warning that names `-c` and the limit.
pub(crate) fn fit_connections(max_connections: usize, own: u64) -> usize {
    let clients = u64::try_from(max_connections).unwrap_or(u64::MAX);
    let wanted = clients.saturating_add(own);
    let limit = match raise_open_files_limit(wanted) {
        Ok(limit) => limit,
        Err(e) => {
            log::warn!("cannot read the open-files limit: {e}");
            return max_connections;
        }
    };
    if limit >= wanted {
        return max_connections;
    }
    let fit = limit.saturating_sub(own);
    log::warn!(
        "-c {max_connections} needs {wanted} open files, but the limit is {limit}; \
         serving at most {fit} connections (raise the hard limit, `ulimit -Hn`, to serve more)"
    );
    usize::try_from(fit).unwrap_or(max_connections)
}

/// Raises the soft `RLIMIT_NOFILE` towards `wanted` descriptors and returns the limit
/// now in force: how many descriptors this process may have open.
///
/// The soft limit goes up to `wanted` or to the hard limit, whichever is lower; when the
/// hard limit is lower, a privileged process lifts it to `wanted` first. A soft limit of
/// `wanted` or more is left as it is. `u64::MAX` asks for as many as the hard limit allows.
/// Where a raise is refused (macOS caps the soft limit at `OPEN_MAX` whatever the hard
/// limit says) the limit stays as it was and is what is returned.
#[cfg(unix)]
pub fn raise_open_files_limit(wanted: u64) -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, owned one.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (soft, hard) = (from_rlim(limit.rlim_cur), from_rlim(limit.rlim_max));
    if soft >= wanted {
        return Ok(soft);
    }
    // Only a process with the privilege to (CAP_SYS_RESOURCE) may raise the hard limit;
    // for the others the call fails and changes nothing.
    if hard < wanted && set_open_files_limit(wanted, wanted) {
        return Ok(wanted);
    }
    let reachable = wanted.min(hard);
    if reachable > soft && set_open_files_limit(reachable, hard) {
        return Ok(reachable);
    }
    Ok(soft)
}

/// Windows has no per-process descriptor limit to raise.
#[cfg(not(unix))]
pub fn raise_open_files_limit(_wanted: u64) -> io::Result<u64> {
    Ok(u64::MAX)
}

/// Sets the soft and hard `RLIMIT_NOFILE`; false if the system refused.
#[cfg(unix)]
fn set_open_files_limit(soft: u64, hard: u64) -> bool {
    let limit = libc::rlimit {
        rlim_cur: to_rlim(soft),
        rlim_max: to_rlim(hard),
    };
    // SAFETY: setrlimit only reads the `rlimit` it is given.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 }
}

/// `rlim_t` is `u64` on the usual targets but narrower on some 32-bit ones, where a
/// count past it means "unlimited".
#[cfg(unix)]
fn to_rlim(count: u64) -> libc::rlim_t {
    libc::rlim_t::try_from(count).unwrap_or(libc::RLIM_INFINITY)
}

#[cfg(unix)]
// An identity conversion where `rlim_t` is `u64`, a widening one elsewhere.
#[allow(clippy::useless_conversion)]
fn from_rlim(limit: libc::rlim_t) -> u64 {
    if limit == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        u64::from(limit)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn current_limit() -> (u64, u64) {
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_open_files_limit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        (from_rlim(now.rlim_cur), from_rlim(now.rlim_max))
    }

    #[test]
    fn the_limit_returned_is_the_limit_in_force() {
        let (soft_before, _) = current_limit();
        // Asking for no more than the process has changes nothing.
        assert_eq!(raise_open_files_limit(soft_before).unwrap(), soft_before);
        assert_eq!(current_limit().0, soft_before);
        let limit = raise_open_files_limit(u64::MAX).expect("getrlimit");
        let (soft, hard) = current_limit();
        assert_eq!(limit, soft);
        assert!(soft >= soft_before);
        if cfg!(target_os = "linux") {
            assert_eq!(soft, hard, "the soft limit did not reach the hard one");
        }
    }

    #[test]
    fn the_own_descriptors_grow_with_what_the_server_holds() {
        let plain = own_descriptors(2, 1, 0, false);
        assert_eq!(plain, 3 + 2 * 3 + 1 + SPARE_DESCRIPTORS);
        assert_eq!(own_descriptors(4, 1, 0, false), plain + 4);
        // A UDP socket is bound once and cloned for each of the two workers.
        assert_eq!(own_descriptors(2, 1, 1, false), plain + 3);
        assert_eq!(
            own_descriptors(2, 1, 0, true),
            plain + PERSISTENT_TIER_DESCRIPTORS
        );
    }
}
