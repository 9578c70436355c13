//! What the operator CLI needs beyond the saver trait: per-thread summaries, a full
//! verification pass, and a raw write path for importers.

use std::path::{Path, PathBuf};

use crate::commit::Batch;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::follow::recover_read_only;
use crate::index::Index;
use crate::index::blob_hash;
use crate::model::{Blob, Config};
use crate::options::RecoveryMode;
use crate::pending::{encode_slotted_writes, record_error};
use crate::records::{BlobKey, StoredBlob, WritesRecord, checkpoint_of, decode, decode_prefix};
use crate::recovery::RecoveryReport;
use crate::segment::{Loc, SegmentSet};
use crate::vfs::Vfs;

/// Verify the store in `dir` without changing one byte of it: replay every frame read-only
/// (no snapshot; damage listed, not repaired: nothing truncated, zeroed, removed or written),
/// then read back every record the rebuilt index names. Takes no lock: beside a live writer it
/// checks the prefix of the log written when it ran.
pub(crate) fn verify_dir(
    vfs: &dyn Vfs,
    dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(RecoveryReport, VerifyReport)> {
    if !vfs.is_dir(dir) {
        return Err(Error::invalid(format!("{} is not a store directory", dir.display())));
    }
    let (recovered, _) = recover_read_only(vfs, dir, RecoveryMode::SkipCorrupted, false, true)?;
    let checked = check_records(&recovered.index, &recovered.segments, progress);
    Ok((recovered.report, checked))
}

/// One thread at a glance.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThreadSummary {
    /// Thread id.
    pub thread_id: String,
    /// Namespaces.
    pub namespaces: usize,
    /// Checkpoints, all namespaces.
    pub checkpoints: usize,
    /// Bytes of its records (checkpoints, blobs, writes) on disk.
    pub bytes: u64,
    /// The id of its newest checkpoint (the time of the last update, for uuid6 ids).
    pub latest_checkpoint_id: Option<String>,
}

/// A problem `verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// Byte offset in it.
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

/// What `verify` checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Records read back and decoded through the index.
    pub records_checked: u64,
    /// Blob references of checkpoints checked.
    pub references_checked: u64,
    /// Everything wrong, with file and offset.
    pub problems: Vec<Problem>,
}

impl Engine {
    /// Every thread, sorted by id.
    pub(crate) fn thread_summaries(&self) -> Vec<ThreadSummary> {
        let index = self.index.read();
        let mut out: Vec<ThreadSummary> = index
            .threads()
            .map(|(thread_id, thread)| {
                let mut summary = ThreadSummary {
                    thread_id: thread_id.to_owned(),
                    namespaces: thread.namespaces.len(),
                    checkpoints: 0,
                    bytes: 0,
                    latest_checkpoint_id: None,
                };
                let mut latest = None;
                for ns in thread.namespaces.values() {
                    summary.checkpoints += ns.checkpoints.len();
                    summary.bytes += ns.checkpoints.values().map(|s| s.loc.disk_len()).sum::<u64>();
                    summary.bytes += ns.blobs.values().filter(|b| b.is_stored()).map(|b| b.loc.disk_len()).sum::<u64>();
                    summary.bytes += ns.writes.values().flatten().map(Loc::disk_len).sum::<u64>();
                    if let Some((key, _)) = ns.checkpoints.last_key_value()
                        && latest.as_ref().is_none_or(|l| key > l)
                    {
                        latest = Some(key.clone());
                    }
                }
                summary.latest_checkpoint_id = latest.map(|k| k.as_str().into_owned());
                summary
            })
            .collect();
        out.sort_by(|a, b| a.thread_id.cmp(&b.thread_id));
        out
    }

    /// Read back every indexed record of the open store (see [`check_records`]).
    pub(crate) fn verify(&self, progress: &mut dyn FnMut(u64, u64)) -> VerifyReport {
        check_records(&self.index.read(), &self.segments, progress)
    }
}

/// Read back every record `index` names (checking its CRC and decoding it) and every blob
/// reference of every checkpoint. `progress` is called with (done, total) records.
pub(crate) fn check_records(index: &Index, segments: &SegmentSet, progress: &mut dyn FnMut(u64, u64)) -> VerifyReport {
    let mut report = VerifyReport::default();
    let total = index.counts();
    let total = total.checkpoints + total.blobs + total.write_records;
    let file_of =
        |seq: u32| segments.get(seq).map(|s| s.path.clone()).unwrap_or_else(|| PathBuf::from(format!("segment {seq}")));
    let problem = |report: &mut VerifyReport, loc: Loc, what: String| {
        report.problems.push(Problem { file: file_of(loc.segment), offset: u64::from(loc.offset), what });
    };
    for (thread, thread_index) in index.threads() {
        for (ns_name, ns) in &thread_index.namespaces {
            for slot in ns.blobs.values().filter(|slot| slot.is_stored()) {
                if let Err(e) = check_value(ns, slot, segments) {
                    problem(&mut report, slot.loc, format!("value of thread {thread:?} (ns {ns_name:?}): {e}"));
                }
                report.records_checked += 1;
            }
            for &loc in ns.writes.values().flatten() {
                if let Err(e) = segments.read_record(loc).and_then(|b| {
                    decode::<WritesRecord>(b.view().body).map(|_| ()).map_err(|r| record_error(segments, b.loc, r))
                }) {
                    problem(&mut report, loc, format!("pending writes of thread {thread:?}: {e}"));
                }
                report.records_checked += 1;
            }
            for (key, slot) in &ns.checkpoints {
                report.records_checked += 1;
                progress(report.records_checked, total);
                let bytes = match segments.read_record(slot.loc) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        problem(
                            &mut report,
                            slot.loc,
                            format!("checkpoint {} of thread {thread:?}: {e}", key.as_str()),
                        );
                        continue;
                    }
                };
                let record = match checkpoint_of(&bytes.view(), crate::codec::DECODE_LIMIT) {
                    Ok(record) => record,
                    Err(e) => {
                        problem(&mut report, slot.loc, format!("checkpoint {}: {e}", key.as_str()));
                        continue;
                    }
                };
                for (channel, version) in record.body.channel_versions.iter() {
                    report.references_checked += 1;
                    let Some(blob) = ns.stored_blob(blob_hash(channel, version)) else {
                        problem(
                            &mut report,
                            slot.loc,
                            format!(
                                "checkpoint {} of thread {thread:?} (ns {ns_name:?}) names channel {channel:?} version {version}, which has no stored value",
                                key.as_str()
                            ),
                        );
                        continue;
                    };
                    let matches = segments.read_record(blob.loc).ok().and_then(|b| {
                        let k: BlobKey = decode_prefix(b.view().body).ok()?;
                        Some(k.channel == channel.as_str() && *k.version == *version && k.thread_id == thread)
                    });
                    if matches != Some(true) {
                        problem(
                            &mut report,
                            blob.loc,
                            format!(
                                "blob index entry for channel {channel:?} version {version} points at another record"
                            ),
                        );
                    }
                }
            }
        }
    }
    // What a resumed thread reads first: each namespace's latest values, rebuilt through their
    // chains (every other delta is checked on its own, and its link to its base).
    for (thread, thread_index) in index.threads() {
        for (ns_name, ns) in &thread_index.namespaces {
            let Some((_, slot)) = ns.checkpoints.last_key_value() else { continue };
            let versions = segments.read_record(slot.loc).and_then(|b| {
                checkpoint_of(&b.view(), crate::codec::DECODE_LIMIT)
                    .map(|r| r.body.channel_versions.into_owned())
                    .map_err(|r| record_error(segments, b.loc, r))
            });
            let Ok(versions) = versions else { continue }; // reported above
            for (channel, version) in &versions {
                let rebuilt = crate::values::pin_chain(segments, ns, blob_hash(channel, version)).and_then(|chain| {
                    chain.map_or(Ok(()), |chain| {
                        crate::values::read_chain(
                            &chain,
                            thread,
                            ns_name,
                            channel,
                            version,
                            crate::codec::DECODE_LIMIT,
                            &mut crate::values::ChainMemo::disabled(),
                            // verify checks the bytes on disk, never a cached copy.
                            None,
                        )
                        .map(|_| ())
                    })
                });
                if let Err(e) = rebuilt {
                    problem(
                        &mut report,
                        slot.loc,
                        format!("latest value of channel {channel:?} of thread {thread:?}: {e}"),
                    );
                }
            }
        }
    }
    progress(total, total);
    report
}

/// One stored value: its record decodes, its payload decodes to the length it states, and a
/// delta's base is stored under the key the delta names.
fn check_value(ns: &crate::index::NamespaceIndex, slot: &crate::index::BlobSlot, segments: &SegmentSet) -> Result<()> {
    let bytes = segments.read_record(slot.loc)?;
    let corrupt = |reason: String| record_error(segments, slot.loc, reason);
    match StoredBlob::decode(&bytes.view()).map_err(corrupt)? {
        StoredBlob::Plain(_) => Ok(()),
        StoredBlob::Value(record) => {
            if let Some(value) = &record.value {
                value.packed.unpack(crate::codec::DECODE_LIMIT).map_err(corrupt)?;
            }
            let Some(base) = record.head.base.as_deref() else { return Ok(()) };
            if slot.refs == 0 {
                // Nothing reads it: its base may be gone already (compaction drops what nothing
                // reads), which is not damage.
                return Ok(());
            }
            let channel = &record.head.key.channel;
            let base_slot = slot.base.and_then(|hash| ns.stored_blob(hash)).ok_or_else(|| {
                corrupt(format!("the base of this delta (channel {channel:?} version {base}) is not stored"))
            })?;
            let base_bytes = segments.read_record(base_slot.loc)?;
            let base_key: BlobKey = decode_prefix(base_bytes.view().body).map_err(corrupt)?;
            if base_key.channel != channel.as_ref() || *base_key.version != *base {
                return Err(corrupt(format!(
                    "the base of this delta (channel {channel:?} version {base}) points at another record"
                )));
            }
            Ok(())
        }
    }
}

impl Engine {
    /// Store writes with explicit `idx` slots (an import restoring exactly what was exported).
    pub(crate) fn put_raw_writes(
        &self,
        config: &Config,
        task_id: &str,
        task_path: &str,
        writes: &[(i64, String, Blob)],
    ) -> Result<()> {
        let slotted: Vec<(i64, &str, &Blob)> =
            writes.iter().map(|(idx, channel, value)| (*idx, channel.as_str(), value)).collect();
        let mut batch = Batch::new();
        encode_slotted_writes(&mut batch, config, task_id, task_path, &slotted)?;
        self.commit_batch(batch)
    }
}
