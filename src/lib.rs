//! # logsaver
//!
//! An embedded, log-structured checkpoint store for LangGraph-style agent runtimes.
//!
//! - [`CheckpointSaver`]: the standard saver trait (LangGraph's `BaseCheckpointSaver`).
//! - [`LogStore`]: the durable engine: append-only segments of CRC-framed records, a
//!   pending-writes area, a per-thread in-memory index, group commit and crash recovery.
//! - [`MemorySaver`]: the in-memory reference implementation.
//!
//! ```
//! use logsaver::{CheckpointSaver, Checkpoint, Config, LogStore, Options, Blob, ChannelVersion};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = LogStore::open(dir.path(), Options::default())?;
//! let mut checkpoint = Checkpoint::empty(store.next_checkpoint_id());
//! checkpoint.channel_values.insert("messages".into(), Blob::new("json", b"[\"hi\"]".to_vec()));
//! checkpoint.channel_versions.insert("messages".into(), ChannelVersion::Int(1));
//! let new_versions = checkpoint.channel_versions.clone();
//! let saved = store.put(&Config::thread("t1"), &checkpoint, &Default::default(), &new_versions)?;
//! let latest = store.get_tuple(&Config::thread("t1"))?.expect("stored");
//! assert_eq!(latest.config, saved);
//! assert_eq!(latest.checkpoint.channel_values["messages"].bytes, b"[\"hi\"]");
//! # Ok::<(), logsaver::Error>(())
//! ```

#[cfg(feature = "tokio")]
mod async_saver;
mod backup;
mod codec;
mod commit;
mod compaction;
mod delta;
mod engine;
mod error;
mod follow;
mod format;
mod id;
mod index;
mod inspect;
mod logstore;
mod maintenance;
mod manifest;
mod memory;
mod metrics;
mod model;
mod options;
mod pending;
mod plans;
mod reads;
mod records;
mod recovery;
mod retention;
mod saver;
mod segment;
mod snapshot;
mod stats;
#[cfg(feature = "testing")]
pub mod testing;
mod text;
mod value_cache;
mod values;
pub mod vfs;
mod writes;

#[cfg(feature = "tokio")]
pub use async_saver::AsyncSaver;
pub use backup::BackupStats;
pub use compaction::CompactionStats;
pub use engine::LOCK_FILE;
pub use error::{Error, Result};
pub use id::CheckpointIdGenerator;
pub use inspect::{Problem, ThreadSummary, VerifyReport};
pub use logstore::LogStore;
pub use memory::MemorySaver;
pub use metrics::{METRICS_FILE, MetricsSnapshot, OpMetrics, Summary};
pub use model::{
    Blob, ChannelVersion, ChannelVersions, Checkpoint, CheckpointTuple, Config, DeltaChannelHistory, ListQuery,
    Metadata, PendingWrite, PruneStrategy,
};
pub use options::{AutoCompaction, Durability, Options, RecoveryMode, Retention, ValueEncoding};
pub use recovery::{Damage, RecoveryReport};
pub use retention::RetentionStats;
pub use saver::{CheckpointSaver, metadata_matches, next_version, write_slot};
pub use stats::{SegmentSpace, SpaceStats, StoreStats, ValueCacheStats, ValueSpace};

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
