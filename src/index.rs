//! The in-memory index: per thread, per namespace, an ordered map of checkpoint id → location,
//! plus blob and pending-write locations.
//!
//! Memory per checkpoint is kept small: canonical uuid ids are stored as 16 bytes, blobs are
//! keyed by a 64-bit hash of (channel, version) and checked against the record on every read,
//! and run ids are interned.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroU32;

use crate::model::ChannelVersion;
use crate::segment::Loc;

/// A checkpoint id as the index stores it. Ordered exactly like the id strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckpointKey {
    /// A canonical lowercase hyphenated uuid, as its 16 bytes.
    Uuid([u8; 16]),
    /// Any other id.
    Text(Box<str>),
}

impl CheckpointKey {
    /// The key of an id string.
    pub fn new(id: &str) -> Self {
        match parse_canonical_uuid(id) {
            Some(bytes) => CheckpointKey::Uuid(bytes),
            None => CheckpointKey::Text(id.into()),
        }
    }

    /// The id string.
    pub fn as_str(&self) -> Cow<'_, str> {
        match self {
            CheckpointKey::Uuid(bytes) => Cow::Owned(uuid::Uuid::from_bytes(*bytes).hyphenated().to_string()),
            CheckpointKey::Text(text) => Cow::Borrowed(text),
        }
    }
}

impl Ord for CheckpointKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            // Canonical lowercase hex compares like the bytes it encodes.
            (CheckpointKey::Uuid(a), CheckpointKey::Uuid(b)) => a.cmp(b),
            (CheckpointKey::Text(a), CheckpointKey::Text(b)) => a.cmp(b),
            _ => self.as_str().cmp(&other.as_str()),
        }
    }
}

impl PartialOrd for CheckpointKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The bytes of `id` if it is a uuid in canonical form (lowercase, hyphenated), so that
/// formatting the bytes gives back exactly `id`.
fn parse_canonical_uuid(id: &str) -> Option<[u8; 16]> {
    if id.len() != 36 || id.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let uuid = uuid::Uuid::try_parse(id).ok()?;
    (uuid.hyphenated().to_string() == id).then(|| *uuid.as_bytes())
}

/// A stable 64-bit FNV-1a hash of a blob's (channel, version). Stable across runs and builds so
/// it may be persisted; collisions are caught because every read compares the record's key.
pub fn blob_hash(channel: &str, version: &ChannelVersion) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(channel.as_bytes());
    match version {
        ChannelVersion::Int(n) => {
            eat(&[0xff, 0]);
            eat(&n.to_le_bytes());
        }
        ChannelVersion::Float(x) => {
            eat(&[0xff, 1]);
            eat(&x.to_bits().to_le_bytes());
        }
        ChannelVersion::Str(s) => {
            eat(&[0xff, 2]);
            eat(s.as_bytes());
        }
    }
    hash
}

/// Keys that are already hashes need no rehashing.
#[derive(Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Interned run ids: `delete_for_runs` needs each checkpoint's run without a disk read.
#[derive(Default)]
pub struct RunTable {
    ids: HashMap<Box<str>, NonZeroU32>,
    names: Vec<Box<str>>,
}

impl RunTable {
    fn intern(&mut self, run_id: &str) -> NonZeroU32 {
        if let Some(&id) = self.ids.get(run_id) {
            return id;
        }
        self.names.push(run_id.into());
        let id = NonZeroU32::new(self.names.len() as u32).unwrap_or(NonZeroU32::MIN);
        self.ids.insert(run_id.into(), id);
        id
    }

    /// The interned id of a run, if any checkpoint ever named it.
    pub fn lookup(&self, run_id: &str) -> Option<NonZeroU32> {
        self.ids.get(run_id).copied()
    }
}

/// One checkpoint in the index: 16 bytes.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointSlot {
    /// Where its record is.
    pub loc: Loc,
    /// Its interned `run_id`.
    pub run: Option<NonZeroU32>,
}

/// The index of one (thread, namespace).
#[derive(Default)]
pub struct NamespaceIndex {
    /// Checkpoints by id, ordered: the last one is the latest.
    pub checkpoints: BTreeMap<CheckpointKey, CheckpointSlot>,
    /// Blob records by [`blob_hash`].
    pub blobs: HashMap<u64, Loc, BuildHasherDefault<PassThroughHasher>>,
    /// Writes records per checkpoint id, in commit order. May name checkpoints not stored (yet).
    pub writes: HashMap<CheckpointKey, Vec<Loc>>,
}

/// The index of one thread.
#[derive(Default)]
pub struct ThreadIndex {
    /// Namespaces by name; `""` is the root graph.
    pub namespaces: BTreeMap<Box<str>, NamespaceIndex>,
}

/// A change to the index, made by a committed record (live) or a replayed one (recovery). Both
/// paths apply the same ops in log order, so they agree by construction.
#[derive(Debug)]
pub enum IndexOp<'a> {
    /// A checkpoint record (insert or replace).
    Checkpoint { thread: Cow<'a, str>, ns: Cow<'a, str>, id: Cow<'a, str>, run_id: Option<Cow<'a, str>> },
    /// A blob record.
    Blob { thread: Cow<'a, str>, ns: Cow<'a, str>, hash: u64 },
    /// A writes record.
    Writes { thread: Cow<'a, str>, ns: Cow<'a, str>, checkpoint_id: Cow<'a, str> },
    /// A thread tombstone.
    DeleteThread { thread: Cow<'a, str> },
    /// A checkpoints tombstone.
    DeleteCheckpoints { thread: Cow<'a, str>, ns: Cow<'a, str>, ids: Vec<Cow<'a, str>> },
}

/// Counts kept as the index changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexCounts {
    /// Threads.
    pub threads: u64,
    /// Checkpoints.
    pub checkpoints: u64,
    /// Blob entries.
    pub blobs: u64,
    /// Writes records.
    pub write_records: u64,
}

/// The whole index.
#[derive(Default)]
pub struct Index {
    threads: HashMap<Box<str>, ThreadIndex>,
    /// Interned run ids.
    pub runs: RunTable,
    /// The largest checkpoint id ever indexed (seeds the id generator after reopen).
    pub max_checkpoint_id: Option<CheckpointKey>,
}

impl Index {
    /// Apply one op for a record at `loc`.
    pub fn apply(&mut self, op: &IndexOp<'_>, loc: Loc) {
        match op {
            IndexOp::Checkpoint { thread, ns, id, run_id } => {
                let key = CheckpointKey::new(id);
                if self.max_checkpoint_id.as_ref().is_none_or(|max| *max < key) {
                    self.max_checkpoint_id = Some(key.clone());
                }
                let run = run_id.as_deref().map(|run| self.runs.intern(run));
                self.namespace_mut(thread, ns).checkpoints.insert(key, CheckpointSlot { loc, run });
            }
            IndexOp::Blob { thread, ns, hash } => {
                self.namespace_mut(thread, ns).blobs.insert(*hash, loc);
            }
            IndexOp::Writes { thread, ns, checkpoint_id } => {
                let key = CheckpointKey::new(checkpoint_id);
                let locs = self.namespace_mut(thread, ns).writes.entry(key).or_default();
                // Most checkpoints get a handful of calls: grow 1, 2, 4, ... instead of Vec's
                // default first allocation of 4 slots.
                locs.reserve_exact(locs.len().max(1));
                locs.push(loc);
            }
            IndexOp::DeleteThread { thread } => {
                self.threads.remove(thread.as_ref());
            }
            IndexOp::DeleteCheckpoints { thread, ns, ids } => {
                let Some(namespace) =
                    self.threads.get_mut(thread.as_ref()).and_then(|t| t.namespaces.get_mut(ns.as_ref()))
                else {
                    return;
                };
                for id in ids {
                    let key = CheckpointKey::new(id);
                    namespace.checkpoints.remove(&key);
                    namespace.writes.remove(&key);
                }
            }
        }
    }

    fn namespace_mut(&mut self, thread: &str, ns: &str) -> &mut NamespaceIndex {
        // Look up before inserting so the common case allocates no key.
        if !self.threads.contains_key(thread) {
            self.threads.insert(thread.into(), ThreadIndex::default());
        }
        let namespaces = &mut self.threads.get_mut(thread).expect("thread inserted above").namespaces;
        if !namespaces.contains_key(ns) {
            namespaces.insert(ns.into(), NamespaceIndex::default());
        }
        namespaces.get_mut(ns).expect("namespace inserted above")
    }

    /// The index of one thread.
    pub fn thread(&self, thread: &str) -> Option<&ThreadIndex> {
        self.threads.get(thread)
    }

    /// The index of one (thread, namespace).
    pub fn namespace(&self, thread: &str, ns: &str) -> Option<&NamespaceIndex> {
        self.threads.get(thread)?.namespaces.get(ns)
    }

    /// Every thread.
    pub fn threads(&self) -> impl Iterator<Item = (&str, &ThreadIndex)> {
        self.threads.iter().map(|(name, thread)| (name.as_ref(), thread))
    }

    /// Counts of what is indexed (walks the index; for stats, not hot paths).
    pub fn counts(&self) -> IndexCounts {
        let mut counts = IndexCounts { threads: self.threads.len() as u64, ..IndexCounts::default() };
        for thread in self.threads.values() {
            for ns in thread.namespaces.values() {
                counts.checkpoints += ns.checkpoints.len() as u64;
                counts.blobs += ns.blobs.len() as u64;
                counts.write_records += ns.writes.values().map(|locs| locs.len() as u64).sum::<u64>();
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_keys_order_like_their_strings() {
        let ids = [
            "1f0c1d2e-3a4b-6c5d-8e7f-0123456789ab",
            "1f0c1d2e-3a4b-6c5d-8e7f-0123456789ac",
            "1F0C1D2E-3A4B-6C5D-8E7F-0123456789AB",
            "1",
            "zzz",
            "00000000-0000-6000-8000-000000000000",
            "1f0c1d2e3a4b6c5d8e7f0123456789ab",
        ];
        for a in ids {
            for b in ids {
                assert_eq!(CheckpointKey::new(a).cmp(&CheckpointKey::new(b)), a.cmp(b), "{a} vs {b}");
            }
            assert_eq!(CheckpointKey::new(a).as_str(), a);
        }
        assert!(matches!(CheckpointKey::new(ids[0]), CheckpointKey::Uuid(_)));
        assert!(matches!(CheckpointKey::new(ids[2]), CheckpointKey::Text(_)));
    }

    #[test]
    fn ops_insert_replace_and_delete() {
        let loc = |offset| Loc { segment: 1, offset, len: 10 };
        let mut index = Index::default();
        let cp = |id: &'static str| IndexOp::Checkpoint {
            thread: "t".into(),
            ns: "".into(),
            id: id.into(),
            run_id: Some("r".into()),
        };
        index.apply(&cp("a"), loc(1));
        index.apply(&cp("b"), loc(2));
        index.apply(&cp("a"), loc(3));
        index.apply(&IndexOp::Writes { thread: "t".into(), ns: "".into(), checkpoint_id: "a".into() }, loc(4));
        let ns = index.namespace("t", "").expect("namespace");
        assert_eq!(ns.checkpoints.len(), 2);
        assert_eq!(ns.checkpoints[&CheckpointKey::new("a")].loc, loc(3));
        assert_eq!(ns.checkpoints.last_key_value().map(|(k, _)| k.as_str().into_owned()), Some("b".into()));
        index.apply(&IndexOp::DeleteCheckpoints { thread: "t".into(), ns: "".into(), ids: vec!["a".into()] }, loc(5));
        assert_eq!(index.counts(), IndexCounts { threads: 1, checkpoints: 1, blobs: 0, write_records: 0 });
        index.apply(&IndexOp::DeleteThread { thread: "t".into() }, loc(6));
        assert!(index.thread("t").is_none());
    }
}
