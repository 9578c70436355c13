//! Record bodies: what each [`RecordKind`] carries, encoded with postcard.
//!
//! Fields that recovery and filters need come first in each record (the "head"), so they can be
//! decoded with `postcard::take_from_bytes` without touching the rest. Strings and bytes borrow
//! from the segment bytes when decoded from a mapped segment.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::codec::{self, Codec};
use crate::format::{RecordKind, RecordView};
use crate::index::IndexOp;
use crate::model::{Blob, ChannelVersion, ChannelVersions};

/// A value inside a record: the borrowed form of [`Blob`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlobRef<'a> {
    /// The serializer's type tag.
    #[serde(borrow)]
    pub type_tag: Cow<'a, str>,
    /// The serialized bytes.
    #[serde(borrow, with = "serde_bytes")]
    pub bytes: Cow<'a, [u8]>,
}

impl<'a> BlobRef<'a> {
    /// Borrow a blob for encoding.
    pub fn of(blob: &'a Blob) -> Self {
        BlobRef { type_tag: Cow::Borrowed(&blob.type_tag), bytes: Cow::Borrowed(&blob.bytes) }
    }

    /// Copy out an owned blob.
    pub fn to_blob(&self) -> Blob {
        Blob { type_tag: self.type_tag.clone().into_owned(), bytes: self.bytes.clone().into_owned() }
    }
}

/// The head of a checkpoint record: identity, lineage and metadata.
#[derive(Debug, Serialize, Deserialize)]
pub struct CheckpointHead<'a> {
    /// Thread.
    #[serde(borrow)]
    pub thread_id: Cow<'a, str>,
    /// Namespace.
    #[serde(borrow)]
    pub checkpoint_ns: Cow<'a, str>,
    /// Checkpoint id.
    #[serde(borrow)]
    pub checkpoint_id: Cow<'a, str>,
    /// Parent checkpoint id (the `checkpoint_id` of the `put` config).
    #[serde(borrow)]
    pub parent_id: Option<Cow<'a, str>>,
    /// `metadata["run_id"]` when it is a string, for `delete_for_runs`.
    #[serde(borrow)]
    pub run_id: Option<Cow<'a, str>>,
    /// The metadata as JSON text (postcard cannot carry self-describing values).
    #[serde(borrow)]
    pub metadata_json: Cow<'a, str>,
}

/// The rest of a checkpoint record. Channel values are separate [`BlobRecord`]s.
#[derive(Debug, Serialize, Deserialize)]
pub struct CheckpointBody<'a> {
    /// Checkpoint format version, as given.
    pub v: i64,
    /// Timestamp.
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    /// Channel → version; the keys of the blobs this checkpoint reads.
    pub channel_versions: Cow<'a, ChannelVersions>,
    /// Node → channel → version seen.
    pub versions_seen: Cow<'a, std::collections::BTreeMap<String, ChannelVersions>>,
    /// Channels updated by the step.
    pub updated_channels: Option<Cow<'a, [String]>>,
}

/// [`RecordKind::Checkpoint`].
#[derive(Debug, Serialize, Deserialize)]
pub struct CheckpointRecord<'a> {
    /// Identity, lineage, metadata.
    #[serde(borrow)]
    pub head: CheckpointHead<'a>,
    /// Versions and the rest.
    #[serde(borrow)]
    pub body: CheckpointBody<'a>,
}

/// The key of a blob record, decodable alone.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct BlobKey<'a> {
    /// Thread.
    #[serde(borrow)]
    pub thread_id: Cow<'a, str>,
    /// Namespace.
    #[serde(borrow)]
    pub checkpoint_ns: Cow<'a, str>,
    /// Channel.
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    /// Version.
    pub version: Cow<'a, ChannelVersion>,
}

/// [`RecordKind::Blob`]: one channel value. `value: None` is LangGraph's `empty` sentinel (a
/// channel named in `new_versions` without a value).
#[derive(Debug, Serialize, Deserialize)]
pub struct BlobRecord<'a> {
    /// Which channel version this is.
    #[serde(borrow)]
    pub key: BlobKey<'a>,
    /// The value.
    #[serde(borrow)]
    pub value: Option<BlobRef<'a>>,
}

/// A payload as stored: its codec, its length once decoded, its bytes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Packed<'a> {
    /// How `payload` is encoded.
    pub codec: Codec,
    /// Bytes of the payload once decoded; checked before anything is decoded.
    pub len: u64,
    /// The stored bytes.
    #[serde(borrow, with = "serde_bytes")]
    pub payload: Cow<'a, [u8]>,
}

impl<'a> Packed<'a> {
    /// `bytes` compressed at `level` when that pays (see [`codec::pack`]).
    pub fn of(bytes: &'a [u8], level: Option<i32>) -> Self {
        let (codec, payload) = codec::pack(bytes, level);
        Packed { codec, len: bytes.len() as u64, payload }
    }

    /// The decoded payload; `limit` bounds the length it may claim.
    pub fn unpack(&self, limit: u64) -> Result<Cow<'_, [u8]>, String> {
        codec::unpack(self.codec, &self.payload, self.len, limit)
    }

    /// Bytes it takes in its record.
    pub fn stored_len(&self) -> u64 {
        self.payload.len() as u64
    }
}

/// What replay and the index read of a [`ValueRecord`]: which value, and its base.
#[derive(Debug, Serialize, Deserialize)]
pub struct ValueHead<'a> {
    /// Which channel version this is.
    #[serde(borrow)]
    pub key: BlobKey<'a>,
    /// The version of the same channel (same thread and namespace) this value is a delta
    /// against; `None` for a whole value.
    #[serde(borrow)]
    pub base: Option<Cow<'a, ChannelVersion>>,
    /// Deltas from this record down to the whole value its chain started from when it was
    /// written (0: whole). Informational: compaction may since have stored a base whole.
    pub depth: u32,
}

/// A channel value as stored by [`ValueRecord`].
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredValue<'a> {
    /// The serializer's type tag.
    #[serde(borrow)]
    pub type_tag: Cow<'a, str>,
    /// Bytes of the value itself.
    pub len: u64,
    /// The value, or for a delta the ops that rebuild it from its base (`crate::delta`).
    #[serde(borrow)]
    pub packed: Packed<'a>,
}

/// [`RecordKind::Value`]: one channel value, whole or as a delta, compressed or not. `value:
/// None` is LangGraph's `empty` sentinel, as in [`BlobRecord`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ValueRecord<'a> {
    /// Which value, and its base.
    #[serde(borrow)]
    pub head: ValueHead<'a>,
    /// The value.
    #[serde(borrow)]
    pub value: Option<StoredValue<'a>>,
}

/// Identity and lineage of a [`PackedCheckpointRecord`].
#[derive(Debug, Serialize, Deserialize)]
pub struct PackedCheckpointHead<'a> {
    /// Thread.
    #[serde(borrow)]
    pub thread_id: Cow<'a, str>,
    /// Namespace.
    #[serde(borrow)]
    pub checkpoint_ns: Cow<'a, str>,
    /// Checkpoint id.
    #[serde(borrow)]
    pub checkpoint_id: Cow<'a, str>,
    /// Parent checkpoint id.
    #[serde(borrow)]
    pub parent_id: Option<Cow<'a, str>>,
    /// `metadata["run_id"]` when it is a string.
    #[serde(borrow)]
    pub run_id: Option<Cow<'a, str>>,
    /// Channel → version: the values it reads. Outside the packed part: replay and every
    /// release of a checkpoint read it.
    pub channel_versions: Cow<'a, ChannelVersions>,
}

/// The packed part of a [`PackedCheckpointRecord`], postcard-encoded before compression.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointRest<'a> {
    #[serde(borrow)]
    metadata_json: Cow<'a, str>,
    v: i64,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    versions_seen: Cow<'a, std::collections::BTreeMap<String, ChannelVersions>>,
    updated_channels: Option<Cow<'a, [String]>>,
}

/// [`RecordKind::PackedCheckpoint`]: a [`CheckpointRecord`] whose metadata and body (most of
/// its bytes: `versions_seen` names every channel per node) are one compressed payload.
#[derive(Debug, Serialize, Deserialize)]
pub struct PackedCheckpointRecord<'a> {
    /// Identity, lineage, versions.
    #[serde(borrow)]
    pub head: PackedCheckpointHead<'a>,
    /// Metadata and the rest of the body.
    #[serde(borrow)]
    pub rest: Packed<'a>,
}

impl PackedCheckpointRecord<'static> {
    /// `record` with its metadata and body compressed at `level`; `None` when that does not
    /// make it smaller (the caller writes the plain record).
    pub fn pack(record: &CheckpointRecord<'_>, level: Option<i32>) -> Option<Self> {
        // Most checkpoint bodies are below what compression pays for: tell from the lengths of
        // their strings (a lower bound of the encoding), without encoding them twice.
        let version_len = |v: &ChannelVersion| match v {
            ChannelVersion::Str(s) => s.len(),
            ChannelVersion::Int(_) | ChannelVersion::Float(_) => 1,
        };
        let versions = |v: &ChannelVersions| v.iter().map(|(c, v)| c.len() + version_len(v)).sum::<usize>();
        let estimate = record.head.metadata_json.len()
            + record.body.ts.len()
            + record.body.versions_seen.iter().map(|(node, seen)| node.len() + versions(seen)).sum::<usize>();
        if level.is_none() || estimate < codec::MIN_COMPRESS {
            return None;
        }
        let rest = CheckpointRest {
            metadata_json: Cow::Borrowed(&record.head.metadata_json),
            v: record.body.v,
            ts: Cow::Borrowed(&record.body.ts),
            versions_seen: Cow::Borrowed(&record.body.versions_seen),
            updated_channels: record.body.updated_channels.as_deref().map(Cow::Borrowed),
        };
        let plain = postcard::to_allocvec(&rest).ok()?;
        // Mostly names and versions, unless the metadata (free text) is most of it.
        let content = if record.head.metadata_json.len() * 2 > estimate {
            codec::Content::Values
        } else {
            codec::Content::Identifiers
        };
        let (codec, payload) = codec::pack_content(&plain, level, content);
        let packed = Packed { codec, len: plain.len() as u64, payload };
        if packed.codec == Codec::Raw {
            return None;
        }
        let own = |s: &Cow<'_, str>| Cow::Owned(s.to_string());
        Some(PackedCheckpointRecord {
            head: PackedCheckpointHead {
                thread_id: own(&record.head.thread_id),
                checkpoint_ns: own(&record.head.checkpoint_ns),
                checkpoint_id: own(&record.head.checkpoint_id),
                parent_id: record.head.parent_id.as_ref().map(own),
                run_id: record.head.run_id.as_ref().map(own),
                channel_versions: Cow::Owned(record.body.channel_versions.clone().into_owned()),
            },
            rest: Packed { codec: packed.codec, len: packed.len, payload: Cow::Owned(packed.payload.into_owned()) },
        })
    }
}

/// A checkpoint record of either kind, as a [`CheckpointRecord`] (owned where it was packed).
/// `limit` bounds what a packed record may claim to decode to.
pub fn checkpoint_of<'a>(record: &RecordView<'a>, limit: u64) -> Result<CheckpointRecord<'a>, String> {
    match record.kind {
        RecordKind::Checkpoint => decode(record.body),
        RecordKind::PackedCheckpoint => {
            let packed: PackedCheckpointRecord = decode(record.body)?;
            let plain = packed.rest.unpack(limit)?;
            let rest: CheckpointRest = decode(&plain)?;
            let own = |s: Cow<'_, str>| -> Cow<'a, str> { Cow::Owned(s.into_owned()) };
            let head = packed.head;
            Ok(CheckpointRecord {
                head: CheckpointHead {
                    thread_id: head.thread_id,
                    checkpoint_ns: head.checkpoint_ns,
                    checkpoint_id: head.checkpoint_id,
                    parent_id: head.parent_id,
                    run_id: head.run_id,
                    metadata_json: own(rest.metadata_json),
                },
                body: CheckpointBody {
                    v: rest.v,
                    ts: own(rest.ts),
                    channel_versions: head.channel_versions,
                    versions_seen: Cow::Owned(rest.versions_seen.into_owned()),
                    updated_channels: rest.updated_channels.map(|c| Cow::Owned(c.into_owned())),
                },
            })
        }
        other => Err(format!("a {other:?} record where a checkpoint was expected")),
    }
}

/// The channel versions of a checkpoint record of either kind, without decoding the rest.
pub fn checkpoint_versions<'a>(record: &RecordView<'a>) -> Result<Cow<'a, ChannelVersions>, String> {
    match record.kind {
        RecordKind::Checkpoint => decode::<CheckpointRecord>(record.body).map(|r| r.body.channel_versions),
        RecordKind::PackedCheckpoint => decode_prefix::<PackedCheckpointHead>(record.body).map(|h| h.channel_versions),
        other => Err(format!("a {other:?} record where a checkpoint was expected")),
    }
}

/// A checkpoint record of either kind as stored, for the calls that copy one with a change
/// (another thread, no parent) and keep its stored form.
pub enum StoredCheckpoint<'a> {
    /// [`RecordKind::Checkpoint`].
    Plain(CheckpointRecord<'a>),
    /// [`RecordKind::PackedCheckpoint`].
    Packed(PackedCheckpointRecord<'a>),
}

impl<'a> StoredCheckpoint<'a> {
    /// Decode a checkpoint record of either kind.
    pub fn decode(record: &RecordView<'a>) -> Result<Self, String> {
        match record.kind {
            RecordKind::Checkpoint => decode(record.body).map(StoredCheckpoint::Plain),
            RecordKind::PackedCheckpoint => decode(record.body).map(StoredCheckpoint::Packed),
            other => Err(format!("a {other:?} record where a checkpoint was expected")),
        }
    }

    /// Its parent id.
    pub fn parent_id(&self) -> Option<&str> {
        match self {
            StoredCheckpoint::Plain(r) => r.head.parent_id.as_deref(),
            StoredCheckpoint::Packed(r) => r.head.parent_id.as_deref(),
        }
    }

    /// Drop its parent.
    pub fn clear_parent(&mut self) {
        match self {
            StoredCheckpoint::Plain(r) => r.head.parent_id = None,
            StoredCheckpoint::Packed(r) => r.head.parent_id = None,
        }
    }

    /// Move it to another thread.
    pub fn set_thread(&mut self, thread: &'a str) {
        match self {
            StoredCheckpoint::Plain(r) => r.head.thread_id = Cow::Borrowed(thread),
            StoredCheckpoint::Packed(r) => r.head.thread_id = Cow::Borrowed(thread),
        }
    }
}

/// A value record of either kind as stored, for `copy_thread`.
pub enum StoredBlob<'a> {
    /// [`RecordKind::Blob`] (format version 1).
    Plain(BlobRecord<'a>),
    /// [`RecordKind::Value`].
    Value(ValueRecord<'a>),
}

impl<'a> StoredBlob<'a> {
    /// Decode a value record of either kind.
    pub fn decode(record: &RecordView<'a>) -> Result<Self, String> {
        match record.kind {
            RecordKind::Blob => decode(record.body).map(StoredBlob::Plain),
            RecordKind::Value => decode(record.body).map(StoredBlob::Value),
            other => Err(format!("a {other:?} record where a value was expected")),
        }
    }

    /// Move it to another thread (a delta's base moves with it: same key but the thread).
    pub fn set_thread(&mut self, thread: &'a str) {
        match self {
            StoredBlob::Plain(r) => r.key.thread_id = Cow::Borrowed(thread),
            StoredBlob::Value(r) => r.head.key.thread_id = Cow::Borrowed(thread),
        }
    }
}

/// The key of a writes record.
#[derive(Debug, Serialize, Deserialize)]
pub struct WritesKey<'a> {
    /// Thread.
    #[serde(borrow)]
    pub thread_id: Cow<'a, str>,
    /// Namespace.
    #[serde(borrow)]
    pub checkpoint_ns: Cow<'a, str>,
    /// The checkpoint the writes belong to (which may not be stored yet).
    #[serde(borrow)]
    pub checkpoint_id: Cow<'a, str>,
}

/// One write of a [`WritesRecord`].
#[derive(Debug, Serialize, Deserialize)]
pub struct WriteEntry<'a> {
    /// Slot: position in the call's list or a special channel's fixed negative slot.
    pub idx: i64,
    /// Channel.
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    /// Value.
    #[serde(borrow)]
    pub value: BlobRef<'a>,
}

/// [`RecordKind::Writes`]: one `put_writes` call, resolved against earlier calls on read.
#[derive(Debug, Serialize, Deserialize)]
pub struct WritesRecord<'a> {
    /// Which checkpoint.
    #[serde(borrow)]
    pub key: WritesKey<'a>,
    /// Task id.
    #[serde(borrow)]
    pub task_id: Cow<'a, str>,
    /// Task path.
    #[serde(borrow)]
    pub task_path: Cow<'a, str>,
    /// The writes, in the call's order.
    #[serde(borrow)]
    pub writes: Vec<WriteEntry<'a>>,
}

/// [`RecordKind::DeleteThread`].
#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteThreadRecord<'a> {
    /// Thread removed with all its namespaces.
    #[serde(borrow)]
    pub thread_id: Cow<'a, str>,
}

/// [`RecordKind::DeleteCheckpoints`]: checkpoints removed with their writes.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteCheckpointsRecord<'a> {
    /// Thread.
    #[serde(borrow)]
    pub thread_id: Cow<'a, str>,
    /// Namespace.
    #[serde(borrow)]
    pub checkpoint_ns: Cow<'a, str>,
    /// Ids removed.
    #[serde(borrow)]
    pub checkpoint_ids: Vec<Cow<'a, str>>,
}

/// A record body type and its kind.
pub trait Record: Serialize {
    /// The kind tag this body is stored under.
    const KIND: RecordKind;

    /// What this record does to the index. Derived from the record itself, so a commit and a
    /// replay of the same record cannot disagree.
    fn index_op(&self) -> IndexOp<'_>;
}

fn borrow(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

impl Record for CheckpointRecord<'_> {
    const KIND: RecordKind = RecordKind::Checkpoint;

    fn index_op(&self) -> IndexOp<'_> {
        IndexOp::Checkpoint {
            thread: borrow(&self.head.thread_id),
            ns: borrow(&self.head.checkpoint_ns),
            id: borrow(&self.head.checkpoint_id),
            run_id: self.head.run_id.as_deref().map(borrow),
            refs: checkpoint_blob_refs(&self.body.channel_versions),
        }
    }
}

impl Record for BlobRecord<'_> {
    const KIND: RecordKind = RecordKind::Blob;

    fn index_op(&self) -> IndexOp<'_> {
        IndexOp::Blob {
            thread: borrow(&self.key.thread_id),
            ns: borrow(&self.key.checkpoint_ns),
            hash: crate::index::blob_hash(&self.key.channel, &self.key.version),
            base: None,
        }
    }
}

impl Record for ValueRecord<'_> {
    const KIND: RecordKind = RecordKind::Value;

    fn index_op(&self) -> IndexOp<'_> {
        self.head.index_op()
    }
}

impl ValueHead<'_> {
    fn index_op(&self) -> IndexOp<'_> {
        IndexOp::Blob {
            thread: borrow(&self.key.thread_id),
            ns: borrow(&self.key.checkpoint_ns),
            hash: crate::index::blob_hash(&self.key.channel, &self.key.version),
            base: self.base.as_deref().map(|base| crate::index::blob_hash(&self.key.channel, base)),
        }
    }
}

impl Record for PackedCheckpointRecord<'_> {
    const KIND: RecordKind = RecordKind::PackedCheckpoint;

    fn index_op(&self) -> IndexOp<'_> {
        IndexOp::Checkpoint {
            thread: borrow(&self.head.thread_id),
            ns: borrow(&self.head.checkpoint_ns),
            id: borrow(&self.head.checkpoint_id),
            run_id: self.head.run_id.as_deref().map(borrow),
            refs: checkpoint_blob_refs(&self.head.channel_versions),
        }
    }
}

impl Record for WritesRecord<'_> {
    const KIND: RecordKind = RecordKind::Writes;

    fn index_op(&self) -> IndexOp<'_> {
        IndexOp::Writes {
            thread: borrow(&self.key.thread_id),
            ns: borrow(&self.key.checkpoint_ns),
            checkpoint_id: borrow(&self.key.checkpoint_id),
            special: self.writes.iter().any(|w| w.idx < 0),
        }
    }
}

impl Record for DeleteThreadRecord<'_> {
    const KIND: RecordKind = RecordKind::DeleteThread;

    fn index_op(&self) -> IndexOp<'_> {
        IndexOp::DeleteThread { thread: borrow(&self.thread_id) }
    }
}

impl Record for DeleteCheckpointsRecord<'_> {
    const KIND: RecordKind = RecordKind::DeleteCheckpoints;

    fn index_op(&self) -> IndexOp<'_> {
        IndexOp::DeleteCheckpoints {
            thread: borrow(&self.thread_id),
            ns: borrow(&self.checkpoint_ns),
            ids: self.checkpoint_ids.iter().map(|id| borrow(id)).collect(),
        }
    }
}

/// Decode a replayed record and hand its index op to `f` (without copying its strings).
pub fn with_index_op<T>(record: &RecordView<'_>, f: impl FnOnce(&IndexOp<'_>) -> T) -> Result<T, String> {
    Ok(match record.kind {
        RecordKind::Checkpoint => f(&decode::<CheckpointRecord>(record.body)?.index_op()),
        RecordKind::Blob => {
            f(&decode_prefix::<BlobKey>(record.body).map(|key| BlobRecord { key, value: None })?.index_op())
        }
        RecordKind::Writes => f(&decode::<WritesRecord>(record.body)?.index_op()),
        RecordKind::DeleteThread => f(&decode::<DeleteThreadRecord>(record.body)?.index_op()),
        RecordKind::DeleteCheckpoints => f(&decode::<DeleteCheckpointsRecord>(record.body)?.index_op()),
        RecordKind::Value => f(&decode_prefix::<ValueHead>(record.body)?.index_op()),
        RecordKind::PackedCheckpoint => {
            let head: PackedCheckpointHead = decode_prefix(record.body)?;
            f(&IndexOp::Checkpoint {
                thread: borrow(&head.thread_id),
                ns: borrow(&head.checkpoint_ns),
                id: borrow(&head.checkpoint_id),
                run_id: head.run_id.as_deref().map(borrow),
                refs: checkpoint_blob_refs(&head.channel_versions),
            })
        }
    })
}

/// The blob hashes a checkpoint's `channel_versions` name.
pub fn checkpoint_blob_refs(versions: &ChannelVersions) -> Vec<u64> {
    versions.iter().map(|(channel, version)| crate::index::blob_hash(channel, version)).collect()
}

/// The `(task_id, idx)` keys of a writes record body.
pub fn write_keys_of(body: &[u8]) -> Result<Vec<(String, i64)>, String> {
    let record: WritesRecord = decode(body)?;
    Ok(record.writes.iter().map(|w| (record.task_id.to_string(), w.idx)).collect())
}

impl crate::index::RecordSource for crate::segment::SegmentSet {
    fn checkpoint_refs(&self, loc: crate::segment::Loc) -> Vec<u64> {
        let refs = self.read_record(loc).and_then(|bytes| {
            let versions =
                checkpoint_versions(&bytes.view()).map_err(|reason| crate::pending::record_error(self, loc, reason))?;
            Ok(checkpoint_blob_refs(&versions))
        });
        refs.unwrap_or_else(|error| {
            tracing::warn!(%error, ?loc, "cannot read a replaced checkpoint; its blobs stay counted live");
            Vec::new()
        })
    }

    fn write_keys(&self, loc: crate::segment::Loc) -> Vec<(String, i64)> {
        let keys = self.read_record(loc).and_then(|bytes| {
            write_keys_of(bytes.view().body).map_err(|reason| crate::pending::record_error(self, loc, reason))
        });
        keys.unwrap_or_else(|error| {
            tracing::warn!(%error, ?loc, "cannot read a writes record; it stays counted live");
            vec![(String::new(), i64::MIN)]
        })
    }
}

/// Decode a whole record body; `Err` holds postcard's reason.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(body).map_err(|e| format!("record body does not decode: {e}"))
}

/// Decode the leading part of a record body (a head or key struct), ignoring the rest.
pub fn decode_prefix<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    postcard::take_from_bytes(body).map(|(value, _rest)| value).map_err(|e| format!("record head does not decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_decode_alone_and_bytes_borrow() {
        let blob = Blob::new("msgpack", vec![1, 2, 3]);
        let version = ChannelVersion::Str("0001.5".into());
        let record = BlobRecord {
            key: BlobKey {
                thread_id: "t".into(),
                checkpoint_ns: "".into(),
                channel: "messages".into(),
                version: Cow::Borrowed(&version),
            },
            value: Some(BlobRef::of(&blob)),
        };
        let bytes = postcard::to_allocvec(&record).expect("encode");
        let key: BlobKey = decode_prefix(&bytes).expect("key");
        assert_eq!(key, record.key);
        let back: BlobRecord = decode(&bytes).expect("record");
        let value = back.value.expect("value");
        assert!(matches!(value.bytes, Cow::Borrowed(_)), "bytes should borrow from the buffer");
        assert_eq!(value.to_blob(), blob);
        assert!(decode::<BlobRecord>(&bytes[..bytes.len() - 1]).is_err());
    }
}
