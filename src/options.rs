//! How a store is opened: [`Options`], background compaction ([`AutoCompaction`]), retention
//! ([`Retention`]), what a write promises ([`Durability`]) and how recovery treats damage
//! ([`RecoveryMode`]), with their validation and their names (`FromStr`, `Display`: the CLI and
//! the Python binding parse the same strings).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How a [`crate::LogStore`] is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// What a write call promises when it returns. Default: [`Durability::Sync`].
    pub durability: Durability,
    /// Capacity of each new segment file. Default: 8 MiB (the fastest durable puts in
    /// `cargo bench --bench tuning`; see the README's tuning table).
    pub segment_size: u64,
    /// Zero-fill new segments, so fdatasync does not have to journal block allocation.
    /// Default: true.
    pub preallocate: bool,
    /// How recovery treats damage. Default: [`RecoveryMode::TolerateTornTail`].
    pub recovery: RecoveryMode,
    /// Largest single value (channel value or write). Default: 1 GiB.
    pub max_value_bytes: u64,
    /// Durability `None`: bytes buffered in memory before they are written to the file.
    /// Default: 1 MiB.
    pub buffer_bytes: usize,
    /// Create and preallocate the next segment on a background thread, so a rotation does not
    /// stall a commit for the zero-fill. Default: true.
    pub prepare_segments_ahead: bool,
    /// Load the index snapshot at open when it is valid. Default: true; `false` replays (and so
    /// checks) every frame of the log.
    pub use_snapshot: bool,
    /// Background compaction; `None` turns it off. Default: on, see [`AutoCompaction`].
    pub auto_compaction: Option<AutoCompaction>,
    /// Retention applied by [`LogStore::apply_retention`] and, with an interval, in the
    /// background. Default: keep everything.
    pub retention: Retention,
    /// How often the writer leaves its metrics in `METRICS.json` (also at close), for
    /// `logsaver stats` in another process; `None`: only at close. Default: 10 s.
    pub metrics_interval: Option<std::time::Duration>,
    /// How channel values are stored: deltas against the previous version of the same channel,
    /// compression, and the cache of each channel's last value. See [`ValueEncoding`].
    pub values: ValueEncoding,
}

/// How channel values are stored (format version 2). A new version of a channel whose previous
/// version is known is stored as a delta against it when that is smaller; every stored payload
/// is compressed when that pays. Reads and writes keep the last value of each (thread,
/// namespace, channel) in a cache, so a write does not read its base back and the latest
/// checkpoint is read without decoding its chain.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueEncoding {
    /// Store deltas. Default: true.
    pub deltas: bool,
    /// A read decodes at most this many records for one value: after this many deltas in a row,
    /// the next version is stored whole (also when the chain's deltas would outgrow the whole
    /// value they rest on). Default: 64 (`cargo bench --bench values`; the README's table).
    pub max_chain: u32,
    /// zstd level for stored payloads (values, deltas, checkpoint bodies); `None` stores them
    /// uncompressed. Default: `Some(1)`.
    pub compression_level: Option<i32>,
    /// Memory for the last value of each (thread, namespace, channel), least recently used
    /// evicted first. Default: 64 MiB; 0 turns the cache off (a write then reads its base back).
    pub cache_bytes: u64,
}

impl Default for ValueEncoding {
    fn default() -> Self {
        ValueEncoding { deltas: true, max_chain: 64, compression_level: Some(1), cache_bytes: 64 << 20 }
    }
}

/// The longest chain any store reads, whatever its options say: a bound on the work one damaged
/// or hostile record can ask of a read.
pub const MAX_CHAIN_LIMIT: u32 = 4096;

/// When the background compactor rewrites the oldest segments.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoCompaction {
    /// Compact a prefix of sealed segments once this share of its bytes is garbage. Default 0.5.
    pub garbage_ratio: f64,
    /// ... and it holds at least this many garbage bytes. Default 32 MiB.
    pub min_garbage_bytes: u64,
    /// How often the compactor looks. Default 10 s.
    pub interval: std::time::Duration,
}

impl Default for AutoCompaction {
    fn default() -> Self {
        AutoCompaction { garbage_ratio: 0.5, min_garbage_bytes: 32 << 20, interval: std::time::Duration::from_secs(10) }
    }
}

/// What to keep. A checkpoint is removed if it is not among the newest `keep_last` of its
/// namespace, or if it is older than `max_age` (by the time in its uuid6 id, else its `ts`). A
/// kept checkpoint whose parent is removed gets no parent, cleanly; its values and pending
/// writes are untouched.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Retention {
    /// Keep at most this many checkpoints per (thread, namespace).
    pub keep_last: Option<usize>,
    /// Remove checkpoints older than this.
    pub max_age: Option<std::time::Duration>,
    /// Apply in the background this often (`None`: only when asked).
    pub interval: Option<std::time::Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            segment_size: 8 << 20,
            preallocate: true,
            recovery: RecoveryMode::TolerateTornTail,
            max_value_bytes: 1 << 30,
            buffer_bytes: 1 << 20,
            prepare_segments_ahead: true,
            use_snapshot: true,
            auto_compaction: Some(AutoCompaction::default()),
            retention: Retention::default(),
            metrics_interval: Some(std::time::Duration::from_secs(10)),
            values: ValueEncoding::default(),
        }
    }
}

impl Options {
    /// Default options with another durability.
    pub fn with_durability(durability: Durability) -> Self {
        Options { durability, ..Options::default() }
    }

    /// Check the options a store is opened with.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.segment_size < 4096 || self.segment_size > u64::from(u32::MAX) {
            return Err(Error::invalid(format!("segment_size {} must be between 4 KiB and 4 GiB", self.segment_size)));
        }
        if self.values.max_chain > MAX_CHAIN_LIMIT {
            return Err(Error::invalid(format!(
                "values.max_chain {} must be at most {MAX_CHAIN_LIMIT}",
                self.values.max_chain
            )));
        }
        if let Some(level) = self.values.compression_level
            && !zstd::compression_level_range().contains(&level)
        {
            return Err(Error::invalid(format!(
                "values.compression_level {level} must be in {:?}",
                zstd::compression_level_range()
            )));
        }
        if let Some(auto) = &self.auto_compaction
            && !(0.0..=1.0).contains(&auto.garbage_ratio)
        {
            return Err(Error::invalid(format!(
                "auto_compaction garbage_ratio {} must be between 0 and 1",
                auto.garbage_ratio
            )));
        }
        Ok(())
    }
}

/// What a call promises about its data when it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// The call returns after an fdatasync covers its record: it survives a power cut.
    /// Concurrent callers share one fdatasync (group commit).
    #[default]
    Sync,
    /// The call returns after its record is handed to the operating system: it survives a crash
    /// of the process, not of the machine.
    Flush,
    /// The record is buffered in memory until `flush()`, `close()` or the buffer fills; a crash
    /// of the process loses what was buffered.
    None,
}

impl Durability {
    /// Every mode with its name.
    pub const NAMES: [(&'static str, Durability); 3] =
        [("sync", Durability::Sync), ("flush", Durability::Flush), ("none", Durability::None)];
}

impl FromStr for Durability {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Durability::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, mode)| *mode)
            .ok_or_else(|| Error::invalid(format!("durability must be \"sync\", \"flush\" or \"none\", not {name:?}")))
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Durability::NAMES.iter().find(|(_, mode)| mode == self).map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

/// How recovery treats damage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// Any damage is an error, a torn tail included.
    AbsoluteConsistency,
    /// A torn tail of the last segment is truncated and reported; other damage is an error.
    #[default]
    TolerateTornTail,
    /// Damaged frames anywhere are skipped and reported; the store opens with what is valid.
    SkipCorrupted,
}

impl RecoveryMode {
    /// Every mode with its name.
    pub const NAMES: [(&'static str, RecoveryMode); 3] = [
        ("absolute_consistency", RecoveryMode::AbsoluteConsistency),
        ("tolerate_torn_tail", RecoveryMode::TolerateTornTail),
        ("skip_corrupted", RecoveryMode::SkipCorrupted),
    ];
}

impl FromStr for RecoveryMode {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        RecoveryMode::NAMES.iter().find(|(n, _)| *n == name).map(|(_, mode)| *mode).ok_or_else(|| {
            Error::invalid(format!(
                "recovery must be \"absolute_consistency\", \"tolerate_torn_tail\" or \"skip_corrupted\", not {name:?}"
            ))
        })
    }
}

impl fmt::Display for RecoveryMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = RecoveryMode::NAMES.iter().find(|(_, mode)| mode == self).map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip() {
        for (name, mode) in Durability::NAMES {
            assert_eq!(name.parse::<Durability>().expect("parses"), mode);
            assert_eq!(mode.to_string(), name);
        }
        for (name, mode) in RecoveryMode::NAMES {
            assert_eq!(name.parse::<RecoveryMode>().expect("parses"), mode);
            assert_eq!(mode.to_string(), name);
        }
        assert!(matches!("fast".parse::<Durability>(), Err(Error::InvalidArgument(_))));
        assert!(matches!("lenient".parse::<RecoveryMode>(), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn options_are_validated() {
        assert!(Options::default().validate().is_ok());
        assert!(Options { segment_size: 100, ..Options::default() }.validate().is_err());
        let auto = AutoCompaction { garbage_ratio: 1.5, ..AutoCompaction::default() };
        assert!(Options { auto_compaction: Some(auto), ..Options::default() }.validate().is_err());
    }
}
