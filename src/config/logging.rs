//! Logging to stderr through `log` and `fern`.
//!
//! memcached's `-v` levels map onto `log` levels: nothing extra prints warnings and
//! errors, `-v` adds info, `-vv` debug and `-vvv` trace. Each line starts with a UTC
//! timestamp, so logs stay readable when stderr goes to a file rather than to a journal
//! that stamps lines itself.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use log::LevelFilter;

use super::ConfigError;

/// Installs the process-wide logger. Fails if a logger is already installed.
pub fn init_logging(verbosity: u8) -> Result<(), ConfigError> {
    fern::Dispatch::new()
        .level(level_for(verbosity))
        .format(|out, message, record| {
            out.finish(format_args!(
                "{} {:<5} {}: {}",
                UtcTimestamp::now(),
                record.level(),
                record.target(),
                message
            ))
        })
        .chain(std::io::stderr())
        .apply()
        .map_err(|error| ConfigError::new(format!("logging: {error}")))
}

/// The most detailed level shown at a `-v` count.
fn level_for(verbosity: u8) -> LevelFilter {
    match verbosity {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// A point in time printed as RFC 3339 UTC with milliseconds, `2024-05-01T12:00:00.123Z`.
struct UtcTimestamp {
    unix_millis: u64,
}

impl UtcTimestamp {
    fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        UtcTimestamp {
            unix_millis: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl fmt::Display for UtcTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.unix_millis / 1000;
        let (year, month, day) = civil_from_days(seconds / 86_400);
        let second_of_day = seconds % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60,
            self.unix_millis % 1000
        )
    }
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), after
/// Howard Hinnant's `civil_from_days`: shifting the year to start in March puts the leap
/// day last, so each 400-year era has a fixed layout.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(level_for(0), LevelFilter::Warn);
        assert_eq!(level_for(1), LevelFilter::Info);
        assert_eq!(level_for(2), LevelFilter::Debug);
        assert_eq!(level_for(3), LevelFilter::Trace);
        assert_eq!(level_for(200), LevelFilter::Trace);
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let at = |unix_millis| UtcTimestamp { unix_millis }.to_string();
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        // `date -u -d @951782400` = Tue Feb 29 00:00:00 UTC 2000, a leap day.
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(at(1_709_251_199_000), "2024-02-29T23:59:59.000Z");
        assert_eq!(at(4_102_444_800_123), "2100-01-01T00:00:00.123Z");
    }

    #[test]
    fn a_second_logger_is_refused_with_a_message() {
        // The first call may succeed or find another test's logger; the second must fail.
        let _ = init_logging(0);
        let error = init_logging(1).unwrap_err();
        assert!(error.to_string().starts_with("logging: "), "{error}");
    }
}
