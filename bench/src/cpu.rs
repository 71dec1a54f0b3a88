//! CPU time used by this process, so a report can show whether the generator itself was the
//! bottleneck: a generator thread near 100 % of a core measures its own limit, not the
//! server's.

use std::time::Duration;

/// User plus system CPU time consumed so far by all threads of this process, where the
/// platform reports it.
#[cfg(unix)]
pub fn process_cpu_time() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete `rusage` into the pointer on success and reads
    // nothing from it; the buffer is only read after success was checked.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

/// User plus system CPU time consumed so far by all threads of this process, where the
/// platform reports it.
#[cfg(not(unix))]
pub fn process_cpu_time() -> Option<Duration> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn busy_work_shows_up_as_cpu_time() {
        let before = process_cpu_time().expect("getrusage works on unix");
        let start = Instant::now();
        let mut x = 1u64;
        // Spin until 50 ms of CPU time are counted; a machine busy with other work may
        // take the core away for a while, hence the generous wall-clock limit.
        while process_cpu_time().unwrap() - before < Duration::from_millis(50) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "CPU time does not advance"
            );
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    }
}
