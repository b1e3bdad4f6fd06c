//! How long a logical unit takes to answer its commands: a fixed-bucket
//! histogram kept in atomics, cheap enough to record every command on the
//! data path, read whole by monitoring (Prometheus's histogram: per-bucket
//! counts, their sum in seconds, and the total).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds; one more bucket above the
/// last holds everything slower. From 50 µs (a cached read on NVMe) to 5 s
/// (an initiator's abort is near).
pub const BUCKET_BOUNDS_MICROS: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000,
];

/// Buckets, the slower-than-all one included.
pub const BUCKETS: usize = BUCKET_BOUNDS_MICROS.len() + 1;

/// A reading of a [`LatencyRecorder`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Commands per bucket (not cumulative); the last counts those slower
    /// than every bound.
    pub buckets: [u64; BUCKETS],
    /// All recorded durations added up, in microseconds.
    pub sum_micros: u64,
}

impl LatencyHistogram {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

#[derive(Debug, Default)]
pub(crate) struct LatencyRecorder {
    buckets: [AtomicU64; BUCKETS],
    sum_micros: AtomicU64,
}

fn bucket_of(micros: u64) -> usize {
    BUCKET_BOUNDS_MICROS.partition_point(|&bound| bound < micros)
}

impl LatencyRecorder {
    pub fn record(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn read(&self) -> LatencyHistogram {
        LatencyHistogram {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_lands_in_the_first_bucket_whose_bound_it_does_not_pass() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(50), 0);
        assert_eq!(bucket_of(51), 1);
        assert_eq!(bucket_of(1_000), 4);
        assert_eq!(bucket_of(5_000_000), BUCKETS - 2);
        assert_eq!(bucket_of(5_000_001), BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn a_reading_counts_every_command_and_adds_their_durations() {
        let r = LatencyRecorder::default();
        r.record(Duration::from_micros(30));
        r.record(Duration::from_micros(700));
        r.record(Duration::from_secs(60));
        let h = r.read();
        assert_eq!(h.count(), 3);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[4], 1);
        assert_eq!(h.buckets[BUCKETS - 1], 1);
        assert_eq!(h.sum_micros, 30 + 700 + 60_000_000);
    }
}
