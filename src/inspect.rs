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

    /// Read back every indexed record of the open store (see [`check_records`]), taking the
    /// index lock one namespace (and one value's chain) at a time.
    pub(crate) fn verify(&self, progress: &mut dyn FnMut(u64, u64)) -> VerifyReport {
        check_records(&self.index, &self.segments, progress)
    }
}

/// How [`check_records`] reaches an index: a private one (a read-only recovery's) directly, an
/// open store's through its read lock, taken for one step at a time, so that a writer waits for
/// at most one namespace's record checks and never for a value being rebuilt.
pub(crate) trait IndexAccess {
    /// `f` with the index.
    fn with<T>(&self, f: impl FnOnce(&Index) -> T) -> T;
}

impl IndexAccess for Index {
    fn with<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        f(self)
    }
}

impl IndexAccess for parking_lot::RwLock<Index> {
    fn with<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        f(&self.read())
    }
}

/// A value a checkpoint names, to rebuild once the namespace's records are checked.
struct NamedValue {
    channel: String,
    version: crate::model::ChannelVersion,
    /// The first (oldest) checkpoint naming it, and that checkpoint's record.
    checkpoint: String,
    loc: Loc,
}

/// Read back every record the index names (checking its CRC and decoding it), every blob
/// reference of every checkpoint, and every value a checkpoint names, rebuilt through its delta
/// chain as a read would (each once, oldest checkpoints first, the chain's decoded bases shared
/// through a per-namespace memo). `progress` is called with (done, total) records.
pub(crate) fn check_records(
    index: &impl IndexAccess,
    segments: &SegmentSet,
    progress: &mut dyn FnMut(u64, u64),
) -> VerifyReport {
    let mut report = VerifyReport::default();
    let (total, namespaces) = index.with(|index| {
        let counts = index.counts();
        let namespaces: Vec<(String, String)> = index
            .threads()
            .flat_map(|(thread, t)| t.namespaces.keys().map(move |ns| (thread.to_owned(), ns.to_string())))
            .collect();
        (counts.checkpoints + counts.blobs + counts.write_records, namespaces)
    });
    for (thread, ns_name) in &namespaces {
        // A namespace deleted since it was listed has nothing left to check.
        let named = index.with(|index| {
            index
                .namespace(thread, ns_name)
                .map(|ns| check_namespace(thread, ns_name, ns, segments, &mut report, total, progress))
                .unwrap_or_default()
        });
        let mut memo = crate::values::ChainMemo::new();
        for value in named {
            let hash = blob_hash(&value.channel, &value.version);
            // Pinned under the lock, read without it (records never change in place).
            let chain = index.with(|index| {
                index.namespace(thread, ns_name).map(|ns| crate::values::pin_chain(segments, ns, hash)).transpose()
            });
            let read = chain.map(Option::flatten).and_then(|chain| {
                chain.map_or(Ok(()), |chain| {
                    crate::values::read_chain(
                        &chain,
                        thread,
                        ns_name,
                        &value.channel,
                        &value.version,
                        crate::codec::DECODE_LIMIT,
                        &mut memo,
                        // verify checks the bytes on disk, never a cached copy.
                        None,
                    )
                    .map(|_| ())
                })
            });
            if let Err(e) = read {
                report.problems.push(Problem {
                    file: file_of(segments, value.loc.segment),
                    offset: u64::from(value.loc.offset),
                    what: format!(
                        "value of channel {:?} version {} of thread {thread:?} (ns {ns_name:?}), named by checkpoint {}: {e}",
                        value.channel, value.version, value.checkpoint
                    ),
                });
            }
        }
    }
    progress(total, total);
    report
}

/// The path of segment `seq`, for a problem's report.
fn file_of(segments: &SegmentSet, seq: u32) -> PathBuf {
    segments.get(seq).map(|s| s.path.clone()).unwrap_or_else(|| PathBuf::from(format!("segment {seq}")))
}

/// Check one namespace's records and references (see [`check_records`]); returns the values its
/// checkpoints name, each once, oldest checkpoint first.
fn check_namespace(
    thread: &str,
    ns_name: &str,
    ns: &crate::index::NamespaceIndex,
    segments: &SegmentSet,
    report: &mut VerifyReport,
    total: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Vec<NamedValue> {
    let problem = |report: &mut VerifyReport, loc: Loc, what: String| {
        report.problems.push(Problem { file: file_of(segments, loc.segment), offset: u64::from(loc.offset), what });
    };
    let mut named = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for slot in ns.blobs.values().filter(|slot| slot.is_stored()) {
        if let Err(e) = check_value(ns, slot, segments) {
            problem(report, slot.loc, format!("value of thread {thread:?} (ns {ns_name:?}): {e}"));
        }
        report.records_checked += 1;
    }
    for &loc in ns.writes.values().flatten() {
        if let Err(e) = segments.read_record(loc).and_then(|b| {
            decode::<WritesRecord>(b.view().body).map(|_| ()).map_err(|r| record_error(segments, b.loc, r))
        }) {
            problem(report, loc, format!("pending writes of thread {thread:?}: {e}"));
        }
        report.records_checked += 1;
    }
    for (key, slot) in &ns.checkpoints {
        report.records_checked += 1;
        progress(report.records_checked, total);
        let bytes = match segments.read_record(slot.loc) {
            Ok(bytes) => bytes,
            Err(e) => {
                problem(report, slot.loc, format!("checkpoint {} of thread {thread:?}: {e}", key.as_str()));
                continue;
            }
        };
        let record = match checkpoint_of(&bytes.view(), crate::codec::DECODE_LIMIT) {
            Ok(record) => record,
            Err(e) => {
                problem(report, slot.loc, format!("checkpoint {}: {e}", key.as_str()));
                continue;
            }
        };
        for (channel, version) in record.body.channel_versions.iter() {
            report.references_checked += 1;
            let Some(blob) = ns.stored_blob(blob_hash(channel, version)) else {
                problem(
                    report,
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
                    report,
                    blob.loc,
                    format!("blob index entry for channel {channel:?} version {version} points at another record"),
                );
                continue;
            }
            if seen.insert(blob_hash(channel, version)) {
                named.push(NamedValue {
                    channel: channel.clone(),
                    version: version.clone(),
                    checkpoint: key.as_str().into_owned(),
                    loc: slot.loc,
                });
            }
        }
    }
    named
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use crate::commit::Batch;
    use crate::engine::Engine;
    use crate::id::CheckpointIdGenerator;
    use crate::model::{Blob, ChannelVersion, Checkpoint, Config};
    use crate::options::{Durability, Options};
    use crate::records::{BlobKey, Packed, StoredValue, ValueHead, ValueRecord};
    use crate::vfs::RealFs;

    fn messages(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| format!("message {i}: lorem ipsum dolor sit amet, ").into_bytes()).collect()
    }

    fn open(dir: &std::path::Path) -> Engine {
        Engine::open_with(RealFs::shared(), dir, Options::with_durability(Durability::Flush)).expect("open")
    }

    /// A delta record of `channel` of thread "t", written past the write path's checks: version
    /// `version` on base `version - 1`, `ops` rebuilding `len` bytes.
    fn push_delta(batch: &mut Batch, channel: &str, version: i64, ops: &[u8], len: usize) {
        batch
            .push(&ValueRecord {
                head: ValueHead {
                    key: BlobKey {
                        thread_id: Cow::Borrowed("t"),
                        checkpoint_ns: Cow::Borrowed(""),
                        channel: Cow::Borrowed(channel),
                        version: Cow::Owned(ChannelVersion::Int(version)),
                    },
                    base: Some(Cow::Owned(ChannelVersion::Int(version - 1))),
                    depth: u32::try_from(version).expect("small"),
                },
                value: Some(StoredValue {
                    type_tag: Cow::Borrowed("json"),
                    len: len as u64,
                    packed: Packed::of(ops, None),
                }),
            })
            .expect("encode");
    }

    #[test]
    fn verify_rebuilds_older_values_not_only_the_latest() {
        // Step 2's value is a delta on step 1's; step 3 starts a new chain, so the latest
        // checkpoint reads nothing of the first. Step 2's record is then replaced by a delta
        // whose every record-level check passes (CRC, decode, lengths, base link) but whose ops
        // do not rebuild the value from its base: only rebuilding step 2's value finds it.
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = open(dir.path());
        let ids = CheckpointIdGenerator::new(None);
        let version = |step: i64| ChannelVersion::Int(step);
        let mut config = Config::thread("t");
        let values = [messages(60), messages(61), b"a new conversation".repeat(80)];
        for (step, value) in values.iter().enumerate() {
            let step = step as i64 + 1;
            let mut checkpoint = Checkpoint::empty(ids.next_id());
            checkpoint.channel_values.insert("messages".into(), Blob::new("json", value.clone()));
            checkpoint.channel_versions.insert("messages".into(), version(step));
            let new_versions = [("messages".to_string(), version(step))].into();
            config = engine.put(&config, &checkpoint, &Default::default(), &new_versions).expect("put");
        }
        assert!(engine.verify(&mut |_, _| {}).problems.is_empty(), "a sound store");

        // Made against a longer base: it copies bytes past the end of the real one.
        let longer_base = [values[1].clone(), b"padding".repeat(500)].concat();
        let ops = crate::delta::encode(&longer_base, &values[1]);
        let mut batch = Batch::new();
        push_delta(&mut batch, "messages", 2, &ops, values[1].len());
        engine.commit_batch(batch).expect("commit");
        let report = engine.verify(&mut |_, _| {});
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        let what = &report.problems[0].what;
        assert!(what.contains("channel \"messages\" version 2 of thread \"t\""), "{what}");
        assert!(what.contains("delta copies"), "found by rebuilding the value: {what}");
        engine.close().expect("close");
    }

    #[test]
    fn a_memo_never_hides_a_chain_longer_than_a_read_accepts() {
        // A chain of MAX_CHAIN_LIMIT + 1 deltas (only a writer bug makes one): a cold read
        // refuses its top value. verify rebuilds an older value of the same chain first, and its
        // memo then holds a value deep in the chain: the top must still be refused, not rebuilt
        // from the memo's value in a few steps.
        use crate::options::MAX_CHAIN_LIMIT;
        use crate::records::{CheckpointBody, CheckpointHead, CheckpointRecord};

        let dir = tempfile::tempdir().expect("tempdir");
        let engine = open(dir.path());
        let ids = CheckpointIdGenerator::new(None);
        let value = b"the same 64 bytes at every version of this channel, padded out..".to_vec();
        let mut checkpoint = Checkpoint::empty(ids.next_id());
        checkpoint.channel_values.insert("m".into(), Blob::new("json", value.clone()));
        checkpoint.channel_versions.insert("m".into(), ChannelVersion::Int(0));
        let new_versions = checkpoint.channel_versions.clone();
        engine.put(&Config::thread("t"), &checkpoint, &Default::default(), &new_versions).expect("put");
        let top = i64::from(MAX_CHAIN_LIMIT) + 1;
        let ops = crate::delta::encode(&value, &value);
        let mut batch = Batch::new();
        for version in 1..=top {
            push_delta(&mut batch, "m", version, &ops, value.len());
        }
        // Two checkpoints: the older names a version 100 deltas below the top.
        for version in [top - 100, top] {
            let versions: crate::model::ChannelVersions = [("m".to_string(), ChannelVersion::Int(version))].into();
            let id = ids.next_id();
            batch
                .push(&CheckpointRecord {
                    head: CheckpointHead {
                        thread_id: Cow::Borrowed("t"),
                        checkpoint_ns: Cow::Borrowed(""),
                        checkpoint_id: Cow::Borrowed(&id),
                        parent_id: None,
                        run_id: None,
                        metadata_json: Cow::Borrowed("{}"),
                    },
                    body: CheckpointBody {
                        v: 4,
                        ts: Cow::Borrowed("2026-11-23T00:00:00+00:00"),
                        channel_versions: Cow::Owned(versions),
                        versions_seen: Cow::Owned(Default::default()),
                        updated_channels: None,
                    },
                })
                .expect("encode");
        }
        engine.commit_batch(batch).expect("commit");
        let report = engine.verify(&mut |_, _| {});
        let longer = format!("longer than {MAX_CHAIN_LIMIT}");
        assert!(
            report.problems.iter().any(|p| p.what.contains(&format!("version {top} ")) && p.what.contains(&longer)),
            "{:?}",
            report.problems
        );
        assert!(
            !report.problems.iter().any(|p| p.what.contains(&format!("version {} ", top - 100))),
            "the older value's chain is within the limit: {:?}",
            report.problems
        );
        engine.close().expect("close");
    }
}
