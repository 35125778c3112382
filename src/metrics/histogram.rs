//! A latency histogram of fixed size: log-linear buckets (as HdrHistogram
//! does), so recording is one array increment and percentiles are within
//! about 1.6 % of the true value, however many samples a benchmark takes.
//! `ringkv bench` records every request here instead of keeping (and
//! sorting) a vector of samples. A replica records its coordinator
//! latencies in the lock-free `AtomicHistogram`, which has the same buckets
//! and snapshots into a `Histogram`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two: the relative precision is 1/64.
const SUB_BUCKETS: u64 = 64;

/// Powers of two covered: values up to 2^40 microseconds (12 days).
const MAGNITUDES: usize = 40;

/// Counts of values, in buckets whose width grows with the value.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; MAGNITUDES * SUB_BUCKETS as usize],
            total: 0,
            max: 0,
            sum: 0,
        }
    }

    /// Which bucket holds `value`: values below 64 exactly, then 64
    /// buckets per power of two.
    pub(crate) fn index(value: u64) -> usize {
        if value < SUB_BUCKETS {
            return value as usize;
        }
        let magnitude = 63 - value.leading_zeros() as u64; // >= 6
        let shift = magnitude - 6;
        let sub = (value >> shift) - SUB_BUCKETS; // 0..64
        let index = ((shift + 1) * SUB_BUCKETS + sub) as usize;
        index.min(MAGNITUDES * SUB_BUCKETS as usize - 1)
    }

    /// The largest value that falls in bucket `index`.
    fn upper_bound(index: usize) -> u64 {
        let index = index as u64;
        if index < SUB_BUCKETS {
            return index;
        }
        let shift = index / SUB_BUCKETS - 1;
        let sub = index % SUB_BUCKETS;
        ((SUB_BUCKETS + sub + 1) << shift) - 1
    }

    /// Counts one value.
    pub fn record(&mut self, value: u64) {
        self.counts[Self::index(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
        self.sum = self.sum.saturating_add(value);
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The sum of the values recorded (exact), for a mean.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// The largest value recorded (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// How many recorded values fall at or below each of `bounds` (in
    /// increasing order), as Prometheus histogram buckets count them. A
    /// value is counted under a bound when its whole bucket is (a bucket is
    /// at most 1/64 of its value wide), so a count is exact or slightly low.
    pub fn cumulative_counts(&self, bounds: &[u64]) -> Vec<u64> {
        let mut counts = Vec::with_capacity(bounds.len());
        let (mut index, mut seen) = (0, 0);
        for &bound in bounds {
            while index < self.counts.len() && Self::upper_bound(index) <= bound {
                seen += self.counts[index];
                index += 1;
            }
            counts.push(seen);
        }
        counts
    }

    /// The value at `quantile` (0.0-1.0): the upper bound of the bucket
    /// that holds it, never more than the maximum. 0 if empty.
    pub fn percentile(&self, quantile: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::upper_bound(index).min(self.max);
            }
        }
        self.max
    }
}

/// A histogram that many threads record into at once without a lock: one
/// atomic counter per bucket, with the buckets of `Histogram`. A replica's
/// request tasks record into it on the hot path; `snapshot` turns it into a
/// plain `Histogram` for percentiles.
pub struct AtomicHistogram {
    counts: Box<[AtomicU64]>,
    max: AtomicU64,
    sum: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl AtomicHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        AtomicHistogram {
            counts: (0..MAGNITUDES * SUB_BUCKETS as usize)
                .map(|_| AtomicU64::new(0))
                .collect(),
            max: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts one value: three relaxed atomic operations, no lock.
    pub fn record(&self, value: u64) {
        self.counts[Histogram::index(value)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// A copy of the counts so far. Values being recorded meanwhile may or
    /// may not be in it; the total is always the sum of the buckets copied.
    pub fn snapshot(&self) -> Histogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect();
        let total = counts.iter().sum();
        Histogram {
            counts,
            total,
            max: self.max.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_counts_count_each_value_under_every_bound_it_is_within() {
        let mut histogram = Histogram::new();
        for value in [5, 63, 100, 1_000, 250_000] {
            histogram.record(value);
        }
        assert_eq!(
            histogram.cumulative_counts(&[4, 5, 63, 99, 1_100, 1_000_000]),
            vec![0, 1, 2, 2, 4, 5]
        );
        assert_eq!(histogram.sum(), 5 + 63 + 100 + 1_000 + 250_000);
        let atomic = AtomicHistogram::new();
        atomic.record(7);
        atomic.record(9);
        assert_eq!(atomic.snapshot().sum(), 16);
    }

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last_index = 0;
        for value in (0..100_000u64).chain([1 << 20, 1 << 30, u64::MAX]) {
            let index = Histogram::index(value);
            assert!(index >= last_index, "{value}");
            last_index = index;
            if value < 1 << 39 {
                let upper = Histogram::upper_bound(index);
                assert!(upper >= value, "{value} above its bucket's bound {upper}");
                assert!(
                    (upper - value) as f64 <= value as f64 / 64.0 + 1.0,
                    "{value}: bucket too wide ({upper})"
                );
            }
        }
    }

    #[test]
    fn percentiles_are_within_the_precision() {
        let mut histogram = Histogram::new();
        for value in 1..=10_000u64 {
            histogram.record(value);
        }
        assert_eq!(histogram.count(), 10_000);
        assert_eq!(histogram.max(), 10_000);
        for (quantile, exact) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            let got = histogram.percentile(quantile) as f64;
            assert!(
                (got - exact).abs() / exact < 0.02,
                "p{quantile}: {got} vs {exact}"
            );
        }
        assert_eq!(histogram.percentile(1.0), 10_000);
        let mut other = Histogram::new();
        other.record(50_000);
        histogram.merge(&other);
        assert_eq!(histogram.max(), 50_000);
        assert_eq!(Histogram::new().percentile(0.5), 0);
    }

    #[test]
    fn concurrent_recording_gives_the_percentiles_of_the_plain_histogram() {
        let shared = std::sync::Arc::new(AtomicHistogram::new());
        let values =
            |thread: u64| (0..20_000u64).map(move |i| (i * 7919 + thread * 104_729) % 3_000_000);
        let threads: Vec<_> = (0..4u64)
            .map(|thread| {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    for value in values(thread) {
                        shared.record(value);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a recording thread panicked");
        }
        let mut plain = Histogram::new();
        for thread in 0..4u64 {
            for value in values(thread) {
                plain.record(value);
            }
        }
        let snapshot = shared.snapshot();
        assert_eq!(snapshot.count(), 80_000);
        assert_eq!(snapshot.count(), plain.count());
        assert_eq!(snapshot.max(), plain.max());
        for quantile in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                snapshot.percentile(quantile),
                plain.percentile(quantile),
                "p{quantile}"
            );
        }
        assert_eq!(AtomicHistogram::new().snapshot().percentile(0.5), 0);
    }
}
