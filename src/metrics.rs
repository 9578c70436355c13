//! Metrics: call counts, errors and latency histograms per operation, fdatasync latency, group
//! commit sizes, bytes written and read.
//!
//! Hand-written rather than the `metrics` crate: that crate is a facade that sends every
//! observation to one process-wide recorder the application installs, while a store needs its
//! own numbers (two stores in one process must not mix), readable by its owner at any moment
//! (`LogStore::metrics`, `LogSaver.metrics()`) and by another process (`logsaver stats` reads the
//! `METRICS.json` the writer leaves in its directory). What it takes is a few atomics per
//! operation and a fixed array of atomic buckets per histogram: recording is lock-free and
//! allocation-free on the hot path (about 20 ns).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::Result;

/// Sub-buckets per power of two: values are kept within 1/8 (12.5%) of what was recorded.
const SUB_BUCKETS: u64 = 8;
/// Values below this are their own bucket.
const LINEAR: u64 = 16;
/// Enough buckets for values up to 2^48 (78 hours in nanoseconds).
#[expect(clippy::cast_possible_truncation, reason = "the constant 368")]
const BUCKETS: usize = (LINEAR + (48 - 4) * SUB_BUCKETS) as usize;

/// A histogram of u64 values (nanoseconds, group sizes) in log-linear buckets, recorded with
/// relaxed atomics.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.summary(1.0))
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

/// The bucket of `value`.
fn bucket_of(value: u64) -> usize {
    if value < LINEAR {
        return usize::try_from(value).unwrap_or(0);
    }
    let exponent = u64::from(63 - value.leading_zeros()); // ≥ 4
    let sub = (value >> (exponent - 3)) & (SUB_BUCKETS - 1);
    let bucket = LINEAR + (exponent - 4) * SUB_BUCKETS + sub;
    usize::try_from(bucket).unwrap_or(usize::MAX).min(BUCKETS - 1)
}

/// The largest value bucket `bucket` holds (what a percentile in it reports: never an
/// understatement).
fn bucket_high(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < LINEAR {
        return bucket;
    }
    let exponent = (bucket - LINEAR) / SUB_BUCKETS + 4;
    let sub = (bucket - LINEAR) % SUB_BUCKETS;
    let low = (1u64 << exponent) + (sub << (exponent - 3));
    low + (1u64 << (exponent - 3)) - 1
}

impl Histogram {
    /// Record one value.
    pub fn record(&self, value: u64) {
        if let Some(bucket) = self.buckets.get(bucket_of(value)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    /// Record a duration in nanoseconds.
    pub fn record_duration(&self, elapsed: Duration) {
        self.record(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Count, mean, p50, p99 and max, with values divided by `scale` (1000: nanoseconds to µs).
    pub fn summary(&self, scale: f64) -> Summary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let percentile = |p: f64| {
            if total == 0 {
                return 0.0;
            }
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "a rank among at most 2^64 observations"
            )]
            let rank = ((p * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (bucket, &n) in counts.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return to_f64(bucket_high(bucket)) / scale;
                }
            }
            0.0
        };
        let count = self.count.load(Ordering::Relaxed);
        let max = to_f64(self.max.load(Ordering::Relaxed)) / scale;
        Summary {
            count,
            mean: if count == 0 { 0.0 } else { to_f64(self.sum.load(Ordering::Relaxed)) / to_f64(count) / scale },
            p50: percentile(0.50).min(max),
            p99: percentile(0.99).min(max),
            max,
        }
    }
}

#[expect(clippy::cast_precision_loss, reason = "metrics: 53 bits of precision are plenty")]
fn to_f64(value: u64) -> f64 {
    value as f64
}

/// A histogram's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Median (the upper bound of its bucket: within 12.5%).
    pub p50: f64,
    /// 99th percentile (likewise).
    pub p99: f64,
    /// The largest value recorded (exact).
    pub max: f64,
}

/// The operations measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `put`.
    Put,
    /// `put_writes`.
    PutWrites,
    /// `get_tuple`.
    GetTuple,
    /// `list`.
    List,
    /// `delete_thread`.
    DeleteThread,
    /// `delete_for_runs`.
    DeleteForRuns,
    /// `copy_thread`.
    CopyThread,
    /// `prune`.
    Prune,
    /// `flush`.
    Flush,
    /// A compaction (asked for or automatic).
    Compaction,
    /// A retention pass (asked for or automatic).
    Retention,
    /// `backup`.
    Backup,
}

impl Op {
    const ALL: [Op; 12] = [
        Op::Put,
        Op::PutWrites,
        Op::GetTuple,
        Op::List,
        Op::DeleteThread,
        Op::DeleteForRuns,
        Op::CopyThread,
        Op::Prune,
        Op::Flush,
        Op::Compaction,
        Op::Retention,
        Op::Backup,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::PutWrites => "put_writes",
            Op::GetTuple => "get_tuple",
            Op::List => "list",
            Op::DeleteThread => "delete_thread",
            Op::DeleteForRuns => "delete_for_runs",
            Op::CopyThread => "copy_thread",
            Op::Prune => "prune",
            Op::Flush => "flush",
            Op::Compaction => "compaction",
            Op::Retention => "retention",
            Op::Backup => "backup",
        }
    }
}

#[derive(Default)]
struct OpCounters {
    errors: AtomicU64,
    latency: Histogram,
}

/// A store's registry.
pub(crate) struct Metrics {
    ops: Vec<OpCounters>,
    opened: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { ops: Op::ALL.iter().map(|_| OpCounters::default()).collect(), opened: Instant::now() }
    }
}

impl Metrics {
    /// Run `call` as operation `op`: its latency and whether it failed are recorded.
    pub(crate) fn measure<T>(&self, op: Op, call: impl FnOnce() -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let result = call();
        self.record(op, started.elapsed(), result.is_err());
        result
    }

    /// Record one call of `op`.
    pub(crate) fn record(&self, op: Op, elapsed: Duration, failed: bool) {
        if let Some(counters) = self.ops.get(op as usize) {
            counters.latency.record_duration(elapsed);
            if failed {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Per-operation summaries in microseconds.
    pub(crate) fn operations(&self) -> Vec<OpMetrics> {
        Op::ALL
            .iter()
            .zip(&self.ops)
            .map(|(op, counters)| OpMetrics {
                op: op.name(),
                errors: counters.errors.load(Ordering::Relaxed),
                latency_us: counters.latency.summary(1000.0),
            })
            .collect()
    }

    pub(crate) fn uptime(&self) -> Duration {
        self.opened.elapsed()
    }
}

/// One operation's numbers.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct OpMetrics {
    /// The operation (`put`, `get_tuple`, `compaction`, ...).
    pub op: &'static str,
    /// Calls that failed.
    pub errors: u64,
    /// Latency of every call, failed ones included, in microseconds (`count` is the calls).
    pub latency_us: Summary,
}

/// A store's metrics at one moment ([`crate::LogStore::metrics`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// When it was taken, Unix seconds.
    pub taken_at_unix: f64,
    /// Seconds since the store was opened.
    pub uptime_seconds: f64,
    /// Whether the store is the writer (false: a read-only store).
    pub writer: bool,
    /// Per operation.
    pub operations: Vec<OpMetrics>,
    /// Calls committed (put, put_writes and planned maintenance).
    pub commits: u64,
    /// Frames written (one per commit group, more when a group spans segments).
    pub frames: u64,
    /// Callers per commit group (group commit at work when above 1).
    pub group_size: Summary,
    /// fdatasync calls on segment files.
    pub fsyncs: u64,
    /// Their latency in microseconds.
    pub fsync_us: Summary,
    /// Bytes written to segment files.
    pub bytes_written: u64,
    /// Bytes of records read back.
    pub bytes_read: u64,
    /// Segments created by the writer.
    pub segments_created: u64,
}

impl MetricsSnapshot {
    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// One operation's numbers.
    pub fn operation(&self, op: &str) -> Option<&OpMetrics> {
        self.operations.iter().find(|o| o.op == op)
    }
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// File the writer leaves its metrics in (replaced atomically, never fsynced: advisory).
pub const METRICS_FILE: &str = "METRICS.json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_values_within_an_eighth() {
        for value in [0u64, 1, 15, 16, 17, 100, 1_000, 65_535, 1 << 20, 123_456_789, 1 << 40] {
            let high = bucket_high(bucket_of(value));
            assert!(high >= value, "{value}: bucket tops at {high}");
            assert!(to_f64(high - value) <= to_f64(value) / 8.0 + 1.0, "{value}: bucket tops at {high}");
        }
        let mut last = 0;
        for value in 0..100_000u64 {
            let bucket = bucket_of(value);
            assert!(bucket >= last, "buckets must not go back at {value}");
            last = bucket;
        }
    }

    #[test]
    fn percentiles_come_from_the_recorded_values() {
        let histogram = Histogram::default();
        for value in 1..=1000u64 {
            histogram.record(value * 1000);
        }
        let summary = histogram.summary(1000.0);
        assert_eq!(summary.count, 1000);
        assert!((summary.mean - 500.5).abs() < 1e-9, "{summary:?}");
        assert!((500.0..=563.0).contains(&summary.p50), "{summary:?}");
        assert!((990.0..=1000.0).contains(&summary.p99), "{summary:?}");
        assert!((summary.max - 1000.0).abs() < 1e-9);
        assert_eq!(Histogram::default().summary(1.0), Summary::default());
    }
}
