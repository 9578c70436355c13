//! What the store reports about itself: counters ([`StoreStats`]) and space ([`SpaceStats`]).

/// A snapshot of the store's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Threads in the index.
    pub threads: u64,
    /// Checkpoints in the index.
    pub checkpoints: u64,
    /// Blob entries in the index.
    pub blobs: u64,
    /// `put_writes` records in the index.
    pub write_records: u64,
    /// Segment files.
    pub segments: u64,
    /// Write calls committed since open.
    pub commits: u64,
    /// Frames written since open.
    pub frames: u64,
    /// fdatasync calls on segment files since open.
    pub fsyncs: u64,
    /// Bytes written to segment files since open.
    pub bytes_written: u64,
    /// Run ids the index holds (those of live checkpoints).
    pub run_ids: u64,
}

/// Space used by one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentSpace {
    /// Segment number.
    pub seq: u32,
    /// Size of the file (the active segment's includes its preallocated tail).
    pub file_bytes: u64,
    /// Bytes of records in it.
    pub record_bytes: u64,
    /// Bytes of records still needed.
    pub live_bytes: u64,
}

/// Space used by the store, per segment in log order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpaceStats {
    /// Every segment, in log order; the last is the active one.
    pub segments: Vec<SegmentSpace>,
    /// Total size of the segment files.
    pub file_bytes: u64,
    /// Total bytes of records.
    pub record_bytes: u64,
    /// Total bytes of live records.
    pub live_bytes: u64,
}

impl SpaceStats {
    /// Share of record bytes that is garbage (0 when empty).
    pub fn garbage_ratio(&self) -> f64 {
        if self.record_bytes == 0 { 0.0 } else { 1.0 - self.live_bytes as f64 / self.record_bytes as f64 }
    }
}

/// How the store's live channel values are stored: whole or as deltas, compressed or not, and
/// what that saves. Computed by walking the index and reading each value record's head.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValueSpace {
    /// Live values (each (thread, namespace, channel, version) once).
    pub values: u64,
    /// ... stored whole.
    pub whole: u64,
    /// ... stored as deltas against an earlier version of their channel.
    pub deltas: u64,
    /// ... whose stored payload is compressed.
    pub compressed: u64,
    /// The most deltas any live value sits on (a read decodes at most this many plus one).
    pub longest_chain: u32,
    /// Bytes the live values are (what storing each whole and uncompressed would take).
    pub logical_bytes: u64,
    /// Bytes their records take on disk.
    pub stored_bytes: u64,
    /// The cache of each channel's last value.
    pub cache: ValueCacheStats,
}

impl ValueSpace {
    /// `logical_bytes / stored_bytes` (1 when nothing is stored).
    pub fn ratio(&self) -> f64 {
        if self.stored_bytes == 0 { 1.0 } else { self.logical_bytes as f64 / self.stored_bytes as f64 }
    }
}

pub use crate::value_cache::ValueCacheStats;
