//! The store's clock: memcached's `rel_time`.
//!
//! memcached never keeps Unix timestamps on items. It counts seconds since the process
//! started (`current_time`, a `rel_time_t`) and converts every client exptime to that scale
//! once, when the command arrives. This module does the same:
//!
//! * [`now`] is whole seconds since the clock was first used, plus 2. memcached sets
//!   `process_started = time(0) - 2` so that "now" is never 0 (0 means "never expires") nor
//!   1 (1 is the value for "already expired"); we keep that convention so both special
//!   values stay below every real moment.
//! * [`Expiry::from_memcached`] applies memcached's `realtime()` rules: 0 is never,
//!   a negative value is already expired, up to 30 days is relative to now, and anything
//!   larger is an absolute Unix time.
//!
//! `now` is read from a monotonic clock, so wall-clock jumps do not expire or revive
//! items, and no ticker thread is needed. Every request reads it, so on Linux it is the
//! coarse monotonic clock, which the vDSO answers from the last timer tick without
//! reading the CPU's time counter: a few milliseconds late at worst, which whole seconds
//! do not notice. In tests each thread's clock stands still and moves
//! only through `advance_for_test`, so parallel tests do not disturb each other, nothing
//! has to sleep, and a real second ticking over mid-test cannot make a result flaky.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds on the store's clock (memcached's `rel_time_t`).
pub type RelTime = u32;

/// The largest exptime taken as relative to now; larger values are absolute Unix times.
pub const MAX_RELATIVE_EXPTIME: i64 = 60 * 60 * 24 * 30;

/// The moment that `now() == 2`: where the monotonic clock starts and what Unix time it is.
struct Epoch {
    started: Monotonic,
    /// Unix time of `rel_time` 0 (memcached's `process_started`).
    process_started: i64,
}

static EPOCH: OnceLock<Epoch> = OnceLock::new();

/// A moment on a monotonic clock, as cheap to read as the platform allows.
#[cfg(all(target_os = "linux", any(feature = "server", feature = "l2")))]
struct Monotonic(libc::timespec);

#[cfg(all(target_os = "linux", any(feature = "server", feature = "l2")))]
impl Monotonic {
    fn now() -> Monotonic {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC_COARSE exists on
        // every Linux since 2.6.32 and cannot fail with a valid pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
        Monotonic(now)
    }

    fn elapsed_secs(&self) -> u64 {
        let now = Monotonic::now().0;
        let nanos = (now.tv_sec - self.0.tv_sec) as i128 * 1_000_000_000
            + (now.tv_nsec - self.0.tv_nsec) as i128;
        u64::try_from(nanos / 1_000_000_000).unwrap_or(0)
    }
}

#[cfg(not(all(target_os = "linux", any(feature = "server", feature = "l2"))))]
struct Monotonic(std::time::Instant);

#[cfg(not(all(target_os = "linux", any(feature = "server", feature = "l2"))))]
impl Monotonic {
    fn now() -> Monotonic {
        Monotonic(std::time::Instant::now())
    }

    fn elapsed_secs(&self) -> u64 {
        self.0.elapsed().as_secs()
    }
}

/// Offset between Unix time at start-up and `rel_time`, as memcached has it.
const START_OFFSET: u32 = 2;

fn epoch() -> &'static Epoch {
    EPOCH.get_or_init(|| {
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64);
        Epoch {
            started: Monotonic::now(),
            process_started: unix_now - i64::from(START_OFFSET),
        }
    })
}

/// The current time on the store's clock. Never less than 2.
#[inline]
pub fn now() -> RelTime {
    let elapsed = epoch().started.elapsed_secs();
    let real = u32::try_from(elapsed)
        .unwrap_or(u32::MAX - START_OFFSET)
        .saturating_add(START_OFFSET);
    test_clock(real)
}

/// The wall clock's Unix time, in seconds (memcached's `time` stat; what the persistent
/// tier stores, since its times must mean the same to the next process).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Unix time at which the store's clock read 0.
pub fn process_started() -> i64 {
    epoch().process_started
}

/// A moment on the store's clock as Unix time, as the persistent tier stores times
/// (0, "never", stays 0).
#[cfg(feature = "l2")]
pub(crate) fn to_unix(rel: RelTime) -> u32 {
    if rel == 0 {
        return 0;
    }
    u32::try_from(process_started() + i64::from(rel)).unwrap_or(u32::MAX)
}

/// A Unix time on the store's clock (0 stays 0; the past becomes 1, always passed).
#[cfg(feature = "l2")]
pub(crate) fn from_unix(unix: u32) -> RelTime {
    if unix == 0 {
        return 0;
    }
    u32::try_from(i64::from(unix) - process_started())
        .unwrap_or(1)
        .max(1)
}

/// memcached's `realtime()`: a positive client time (relative or absolute) on the store's clock.
fn realtime(exptime: i64) -> RelTime {
    debug_assert!(exptime > 0);
    if exptime > MAX_RELATIVE_EXPTIME {
        let started = process_started();
        if exptime <= started {
            // An absolute time before we started: already in the past.
            return Expiry::EXPIRED.0;
        }
        u32::try_from(exptime - started).unwrap_or(u32::MAX)
    } else {
        // `exptime` is at most 30 days here, so it fits in a u32.
        now().saturating_add(exptime as u32)
    }
}

/// A memcached exptime converted to the store's clock: the moment the item stops being
/// visible, or never.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Expiry(RelTime);

impl Expiry {
    /// The item never expires (exptime 0).
    pub const NEVER: Expiry = Expiry(0);

    /// A moment that has always passed: negative exptimes and absolute times in the past.
    const EXPIRED: Expiry = Expiry(1);

    /// Converts a client's exptime with memcached's rules: 0 = never, negative = already
    /// expired, up to 30 days = seconds from now, beyond that = absolute Unix time.
    pub fn from_memcached(exptime: i64) -> Expiry {
        match exptime {
            0 => Expiry::NEVER,
            e if e < 0 => Expiry::EXPIRED,
            e => Expiry(realtime(e)),
        }
    }

    /// The expiry moment on the store's clock; 0 means never.
    pub fn rel_time(self) -> RelTime {
        self.0
    }

    /// Whether an item with this expiry is gone at `now`.
    #[inline]
    pub fn has_passed(self, now: RelTime) -> bool {
        self.0 != 0 && self.0 <= now
    }

    pub(crate) fn from_rel_time(rel: RelTime) -> Expiry {
        Expiry(rel)
    }
}

/// Converts a `flush_all` delay to the store's clock the way memcached does: `delay <= 0`
/// means now, a positive delay goes through `realtime()` (relative or absolute).
pub fn flush_deadline(delay_secs: i64) -> RelTime {
    if delay_secs > 0 {
        realtime(delay_secs)
    } else {
        now()
    }
}

#[cfg(not(test))]
#[inline(always)]
fn test_clock(real: RelTime) -> RelTime {
    real
}

#[cfg(test)]
thread_local! {
    /// (time of this thread's first reading, seconds advanced since).
    static TEST_CLOCK: std::cell::Cell<Option<(RelTime, RelTime)>> = const { std::cell::Cell::new(None) };
}

/// In tests each thread's clock stands still at its first reading and moves only through
/// [`advance_for_test`], so expiry tests are exact.
#[cfg(test)]
fn test_clock(real: RelTime) -> RelTime {
    TEST_CLOCK.with(|clock| {
        let (base, advanced) = clock.get().unwrap_or((real, 0));
        clock.set(Some((base, advanced)));
        base + advanced
    })
}

/// Moves the calling thread's clock forward by `secs` (tests only).
#[cfg(test)]
pub fn advance_for_test(secs: RelTime) {
    let current = now();
    TEST_CLOCK.with(|clock| {
        let (base, advanced) = clock.get().unwrap_or((current, 0));
        clock.set(Some((base, advanced + secs)));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_starts_at_two_or_later_and_advances() {
        let before = now();
        assert!(before >= 2);
        advance_for_test(10);
        assert_eq!(now(), before + 10);
    }

    #[test]
    fn zero_is_never_and_negative_is_expired() {
        assert_eq!(Expiry::from_memcached(0), Expiry::NEVER);
        assert!(!Expiry::NEVER.has_passed(now()));
        let expired = Expiry::from_memcached(-1);
        assert_eq!(expired.rel_time(), 1);
        assert!(expired.has_passed(now()));
        assert!(Expiry::from_memcached(i64::MIN).has_passed(now()));
    }

    #[test]
    fn relative_exptime_counts_from_now() {
        let start = now();
        let expiry = Expiry::from_memcached(100);
        assert_eq!(expiry.rel_time(), start + 100);
        assert!(!expiry.has_passed(now()));
        advance_for_test(99);
        assert!(!expiry.has_passed(now()));
        advance_for_test(1);
        assert!(expiry.has_passed(now()));
    }

    #[test]
    fn thirty_days_is_still_relative() {
        let expiry = Expiry::from_memcached(MAX_RELATIVE_EXPTIME);
        assert_eq!(expiry.rel_time(), now() + MAX_RELATIVE_EXPTIME as u32);
    }

    #[test]
    fn absolute_exptime_is_unix_time() {
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let future = Expiry::from_memcached(unix_now + 1000);
        assert_eq!(
            i64::from(future.rel_time()),
            unix_now + 1000 - process_started()
        );
        assert!(!future.has_passed(now()));
        advance_for_test(1001);
        assert!(future.has_passed(now()));

        // Just past 30 days is an absolute time long gone.
        let past = Expiry::from_memcached(MAX_RELATIVE_EXPTIME + 1);
        assert_eq!(past.rel_time(), 1);
        assert!(past.has_passed(now()));
        assert!(Expiry::from_memcached(unix_now - 3600).has_passed(now()));
    }

    #[test]
    fn flush_deadline_is_now_for_zero_or_negative_delay() {
        let start = now();
        assert_eq!(flush_deadline(0), start);
        assert_eq!(flush_deadline(-5), start);
        assert_eq!(flush_deadline(30), start + 30);
    }

    #[cfg(feature = "l2")]
    #[test]
    fn unix_times_round_trip_and_keep_their_special_values() {
        let now = now();
        assert_eq!(from_unix(to_unix(now)), now);
        assert_eq!(to_unix(now + 60) - to_unix(now), 60);
        assert_eq!((to_unix(0), from_unix(0)), (0, 0));
        // Before this process started: always in the past, never "never".
        assert_eq!(from_unix(1), 1);
    }
}
