//! The pending-writes area: `put_writes` records, kept apart from checkpoint records.
//!
//! Each `put_writes` call becomes one [`WritesRecord`], indexed per (thread, namespace,
//! checkpoint id) independently of the checkpoint itself, so writes may arrive before their
//! checkpoint's `put`. Concurrent calls of one step share a group commit and so sit next to
//! each other in the log. Nothing is read on the write path: the insert-if-absent rule for
//! regular writes and the overwrite rule for special ones are applied when the records are read
//! back, replaying them in commit order ([`resolve_pending_writes`]). A checkpoint's writes are
//! read in one pass over its records, one read per call rather than per write.

use std::borrow::Cow;

use crate::commit::Batch;
use crate::error::{Error, Result};
use crate::model::{Blob, Config, PendingWrite};
use crate::records::{BlobRef, WriteEntry, WritesKey, WritesRecord, decode};
use crate::saver::{WriteBatch, required_checkpoint_id, resolve_pending_writes, write_slot};
use crate::segment::{Loc, Pinned, SegmentSet};

/// Encode one `put_writes` call: each write takes its position as `idx`, or its special
/// channel's fixed slot. `max_value` bounds each value.
pub fn encode_writes(
    batch: &mut Batch,
    config: &Config,
    writes: &[(String, Blob)],
    task_id: &str,
    task_path: &str,
    max_value: u64,
) -> Result<()> {
    let mut slotted = Vec::with_capacity(writes.len());
    for (position, (channel, value)) in writes.iter().enumerate() {
        if value.bytes.len() as u64 > max_value {
            return Err(Error::TooLarge {
                what: format!("write to channel {channel:?} of thread {:?}", config.thread_id),
                size: value.bytes.len() as u64,
                limit: max_value,
            });
        }
        slotted.push((write_slot(channel, position), channel.as_str(), value));
    }
    encode_slotted_writes(batch, config, task_id, task_path, &slotted)
}

/// Encode writes whose `idx` slots are already decided (`put_writes`, or an import restoring
/// exactly what was exported).
pub fn encode_slotted_writes(
    batch: &mut Batch,
    config: &Config,
    task_id: &str,
    task_path: &str,
    writes: &[(i64, &str, &Blob)],
) -> Result<()> {
    let checkpoint_id = required_checkpoint_id(config)?;
    let record = WritesRecord {
        key: WritesKey {
            thread_id: Cow::Borrowed(&config.thread_id),
            checkpoint_ns: Cow::Borrowed(&config.checkpoint_ns),
            checkpoint_id: Cow::Borrowed(checkpoint_id),
        },
        task_id: Cow::Borrowed(task_id),
        task_path: Cow::Borrowed(task_path),
        writes: writes
            .iter()
            .map(|&(idx, channel, value)| WriteEntry {
                idx,
                channel: Cow::Borrowed(channel),
                value: BlobRef::of(value),
            })
            .collect(),
    };
    batch.push(&record)
}

/// Read the writes records `pinned` (in commit order) and resolve them into pending writes.
pub fn load_pending_writes(pinned: &[Pinned]) -> Result<Vec<PendingWrite>> {
    let mut batches = Vec::with_capacity(pinned.len());
    for record in pinned {
        let bytes = record.read()?;
        let record: WritesRecord = decode(bytes.view().body).map_err(|reason| record.corruption(reason))?;
        batches.push(WriteBatch {
            task_id: record.task_id.into_owned(),
            task_path: record.task_path.into_owned(),
            writes: record.writes.into_iter().map(|w| (w.idx, w.channel.into_owned(), w.value.to_blob())).collect(),
        });
    }
    Ok(resolve_pending_writes(batches))
}

/// A corruption error for a record that passed its CRC but does not decode.
pub fn record_error(segments: &SegmentSet, loc: Loc, reason: String) -> Error {
    let file = segments.get(loc.segment).map(|s| s.path.clone()).unwrap_or_default();
    Error::corruption(file, u64::from(loc.offset), reason)
}
