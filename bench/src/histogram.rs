//! A log-linear latency histogram.
//!
//! Latencies span five orders of magnitude (a few microseconds on an idle loopback, tens of
//! milliseconds when a server stalls), so buckets of a fixed width would either be too coarse
//! at the bottom or far too many at the top. Like HdrHistogram, this histogram splits every
//! power-of-two range `[2^e, 2^(e+1))` into `2^SUB_BITS` equal buckets: the bucket width grows
//! with the value, and the relative error of any reported percentile stays below
//! `1 / 2^SUB_BITS` (1.6 %) across the whole `u64` range. Values below `2^SUB_BITS` are exact.
//!
//! Recording is one `leading_zeros`, two shifts and an increment: cheap enough for the hot
//! path of the load generator, where every reply records one sample. Each generator thread
//! keeps its own histogram and they are merged once at the end, so no sample is ever shared
//! between cores.

/// Sub-buckets per power of two, as a bit count.
const SUB_BITS: u32 = 6;
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Group 0 holds the exact values below `SUB_COUNT`; groups 1..=64-SUB_BITS hold one power of two each.
const BUCKETS: usize = ((65 - SUB_BITS) as usize) << SUB_BITS;

/// Counts of `u64` samples (the load generator records nanoseconds).
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    /// The bucket a value falls into.
    fn index(value: u64) -> usize {
        if value < SUB_COUNT {
            return value as usize;
        }
        let msb = 63 - value.leading_zeros();
        let shift = msb - SUB_BITS;
        let group = (shift + 1) as usize;
        let sub = ((value >> shift) - SUB_COUNT) as usize;
        (group << SUB_BITS) + sub
    }

    /// The smallest and largest value that fall into bucket `index`.
    fn bucket_range(index: usize) -> (u64, u64) {
        let group = (index >> SUB_BITS) as u32;
        let sub = (index as u64) & (SUB_COUNT - 1);
        if group == 0 {
            return (sub, sub);
        }
        let shift = group - 1;
        let low = (SUB_COUNT + sub) << shift;
        (low, low + ((1u64 << shift) - 1))
    }

    pub fn record(&mut self, value: u64) {
        self.counts[Self::index(value)] += 1;
        self.total += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += u128::from(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest sample, or 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The smallest sample, or 0 when empty.
    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0.0..=1.0): the top of the bucket holding the
    /// `ceil(q * count)`-th smallest sample, clamped to the recorded range, so a reported
    /// percentile never understates the latency it stands for. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (_, high) = Self::bucket_range(index);
                return high.clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_ranges_tile_the_value_space_without_gaps() {
        let mut expected_low = 0;
        for index in 0..BUCKETS {
            let (low, high) = Histogram::bucket_range(index);
            assert_eq!(low, expected_low, "bucket {index}");
            assert!(high >= low);
            assert_eq!(Histogram::index(low), index);
            assert_eq!(Histogram::index(high), index);
            if index + 1 < BUCKETS {
                expected_low = high + 1;
            } else {
                assert_eq!(high, u64::MAX);
            }
        }
    }

    #[test]
    fn small_values_are_exact() {
        let mut histogram = Histogram::new();
        for value in 1..=50 {
            histogram.record(value);
        }
        assert_eq!(histogram.quantile(0.5), 25);
        assert_eq!(histogram.quantile(0.9), 45);
        assert_eq!(histogram.quantile(1.0), 50);
        assert_eq!(histogram.min(), 1);
        assert_eq!(histogram.mean(), 25.5);
    }

    #[test]
    fn large_values_stay_within_the_relative_error() {
        let mut histogram = Histogram::new();
        // 1..=100_000 microseconds in nanoseconds, uniformly.
        for micros in 1..=100_000u64 {
            histogram.record(micros * 1000);
        }
        for (q, exact) in [
            (0.5, 50_000_000u64),
            (0.99, 99_000_000),
            (0.999, 99_900_000),
        ] {
            let reported = histogram.quantile(q);
            assert!(reported >= exact, "q={q}: {reported} < {exact}");
            let error = (reported - exact) as f64 / exact as f64;
            assert!(
                error <= 1.0 / SUB_COUNT as f64,
                "q={q}: {reported} vs {exact}"
            );
        }
        assert_eq!(histogram.quantile(1.0), 100_000_000);
        assert_eq!(histogram.max(), 100_000_000);
    }

    #[test]
    fn merge_adds_counts_and_keeps_extremes() {
        let mut left = Histogram::new();
        let mut right = Histogram::new();
        left.record(10);
        left.record(20);
        right.record(5);
        right.record(1_000_000);
        left.merge(&right);
        assert_eq!(left.count(), 4);
        assert_eq!(left.min(), 5);
        assert_eq!(left.max(), 1_000_000);
        assert_eq!(left.quantile(0.5), 10);
        assert_eq!(left.quantile(0.75), 20);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let histogram = Histogram::new();
        assert_eq!(histogram.quantile(0.99), 0);
        assert_eq!(histogram.min(), 0);
        assert_eq!(histogram.max(), 0);
        assert_eq!(histogram.mean(), 0.0);
    }
}
