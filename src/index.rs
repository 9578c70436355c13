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
            // As one big-endian number: the same order, without a libc `memcmp` call.
            (CheckpointKey::Uuid(a), CheckpointKey::Uuid(b)) => u128::from_be_bytes(*a).cmp(&u128::from_be_bytes(*b)),
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
    let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
    (uuid.hyphenated().encode_lower(&mut canonical) == id).then(|| *uuid.as_bytes())
}

/// A stable 64-bit hash of a blob's (channel, version). Stable across runs and builds so it may
/// be persisted (the index snapshot holds it); collisions are caught because every read compares
/// the record's key. Eight bytes at a time, then a 64-bit finalizer (MurmurHash3's `fmix64`) so
/// every bit of the input reaches the low bits a hash table uses: a put hashes every channel
/// version of its checkpoint a few times, and byte-at-a-time FNV-1a took 2-7% of a put.
pub fn blob_hash(channel: &str, version: &ChannelVersion) -> u64 {
    let mut hash = StableHash(0x9e37_79b9_7f4a_7c15);
    hash.eat(channel.as_bytes());
    match version {
        ChannelVersion::Int(n) => {
            hash.eat(&[0xff, 0]);
            hash.eat(&n.to_le_bytes());
        }
        ChannelVersion::Float(x) => {
            hash.eat(&[0xff, 1]);
            hash.eat(&x.to_bits().to_le_bytes());
        }
        ChannelVersion::Str(s) => {
            hash.eat(&[0xff, 2]);
            hash.eat(s.as_bytes());
        }
    }
    hash.finish()
}

/// The state of [`blob_hash`]. Each piece is taken with its length, so ("ab", "c") and ("a",
/// "bc") differ.
struct StableHash(u64);

impl StableHash {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(0x5851_f42d_4c95_7f2d);
    }

    fn eat(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in words.by_ref() {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            self.mix(u64::from_le_bytes(le));
        }
        let mut tail = [0u8; 8];
        for (into, &byte) in tail.iter_mut().zip(words.remainder()) {
            *into = byte;
        }
        self.mix(u64::from_le_bytes(tail));
        self.mix(bytes.len() as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
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
///
/// Each id counts the live checkpoints that name it and is freed (its number reused) when the
/// last one goes, so the table follows what is live, not every run ever seen.
#[derive(Default)]
pub struct RunTable {
    ids: HashMap<Box<str>, NonZeroU32>,
    /// Run id of each number (number `n` at `n - 1`); `None` for a freed number.
    pub(crate) names: Vec<Option<Box<str>>>,
    /// Live checkpoints naming each number.
    counts: Vec<u32>,
    free: Vec<NonZeroU32>,
}

impl RunTable {
    /// A table holding `names` as numbers 1, 2, ... (`None`: a free number), with no
    /// checkpoint counted yet: [`RunTable::retain`] counts each one.
    pub(crate) fn from_names(names: Vec<Option<Box<str>>>) -> Self {
        let mut table = RunTable { counts: vec![0; names.len()], ..RunTable::default() };
        for (i, name) in names.into_iter().enumerate() {
            let Some(number) = u32::try_from(i + 1).ok().and_then(NonZeroU32::new) else { break };
            match name {
                Some(name) => {
                    table.ids.insert(name.clone(), number);
                    table.names.push(Some(name));
                }
                None => {
                    table.names.push(None);
                    table.free.push(number);
                }
            }
        }
        table
    }

    /// Count one more checkpoint of `run_id`, interning it if new.
    fn intern(&mut self, run_id: &str) -> Option<NonZeroU32> {
        if let Some(&number) = self.ids.get(run_id) {
            self.retain(number);
            return Some(number);
        }
        let number = match self.free.pop() {
            Some(number) => {
                // Freed numbers are always below `names.len()`.
                *self.names.get_mut(number.get() as usize - 1)? = Some(run_id.into());
                number
            }
            None => {
                let number = u32::try_from(self.names.len() + 1).ok().and_then(NonZeroU32::new)?;
                self.names.push(Some(run_id.into()));
                self.counts.push(0);
                number
            }
        };
        self.ids.insert(run_id.into(), number);
        self.retain(number);
        Some(number)
    }

    /// Count one more checkpoint of run `number`.
    pub(crate) fn retain(&mut self, number: NonZeroU32) {
        if let Some(count) = self.counts.get_mut(number.get() as usize - 1) {
            *count += 1;
        }
    }

    /// A checkpoint of run `number` is gone; the number is freed with its last checkpoint.
    fn release(&mut self, number: Option<NonZeroU32>) {
        let Some(number) = number else { return };
        let at = number.get() as usize - 1;
        let Some(count) = self.counts.get_mut(at) else { return };
        *count = count.saturating_sub(1);
        if *count == 0
            && let Some(name) = self.names.get_mut(at).and_then(Option::take)
        {
            self.ids.remove(&name);
            self.free.push(number);
        }
    }

    /// After counting every checkpoint of a loaded table: free the numbers no checkpoint names.
    pub(crate) fn free_unused(&mut self) {
        for (at, (name, count)) in self.names.iter_mut().zip(&self.counts).enumerate() {
            if *count == 0
                && let Some(name) = name.take()
            {
                self.ids.remove(&name);
                if let Some(number) = u32::try_from(at + 1).ok().and_then(NonZeroU32::new) {
                    self.free.push(number);
                }
            }
        }
    }

    /// The interned id of a run, if a live checkpoint names it.
    pub fn lookup(&self, run_id: &str) -> Option<NonZeroU32> {
        self.ids.get(run_id).copied()
    }

    /// Run ids interned (live ones).
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
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

/// One blob in the index: where it is and how many live readers it has: checkpoints that read
/// it, and live deltas stored against it. A blob with no reader is garbage: it stays findable
/// until compaction drops it.
///
/// The count is of checkpoints, whatever the order of records in the log: a checkpoint that
/// names a (channel, version) whose record is not indexed (yet) counts on a placeholder slot
/// ([`Loc::ABSENT`]), which the blob record fills when it comes. Replay after compaction (which
/// may write a blob after the checkpoints that read it) so rebuilds the counts the live index had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobSlot {
    /// Where its record is; [`Loc::ABSENT`] for a placeholder.
    pub loc: Loc,
    /// Live checkpoints whose `channel_versions` name this (channel, version), plus live deltas
    /// whose base it is.
    pub refs: u32,
    /// How many of `refs` are live deltas (the rest are checkpoints). A blob whose readers are
    /// all deltas is kept only for their chains: compaction may store its one dependent whole
    /// and let it go.
    pub delta_refs: u32,
    /// For a delta: the [`blob_hash`] of its base (same thread, namespace and channel), which
    /// holds one reference for as long as this blob has any.
    pub base: Option<u64>,
}

impl BlobSlot {
    /// A slot counting readers of a blob not indexed (yet).
    pub fn placeholder() -> Self {
        BlobSlot { loc: Loc::ABSENT, refs: 0, delta_refs: 0, base: None }
    }

    /// Whether the blob's record is indexed (not a placeholder).
    pub fn is_stored(&self) -> bool {
        self.loc != Loc::ABSENT
    }
}

/// The index of one (thread, namespace).
#[derive(Default)]
pub struct NamespaceIndex {
    /// Checkpoints by id, ordered: the last one is the latest.
    pub checkpoints: BTreeMap<CheckpointKey, CheckpointSlot>,
    /// Blob records by [`blob_hash`].
    pub blobs: HashMap<u64, BlobSlot, BuildHasherDefault<PassThroughHasher>>,
    /// Writes records per checkpoint id, in commit order. May name checkpoints not stored (yet).
    pub writes: HashMap<CheckpointKey, Vec<Loc>>,
}

impl NamespaceIndex {
    /// The slot of a stored blob (placeholders are not stored).
    pub fn stored_blob(&self, hash: u64) -> Option<&BlobSlot> {
        self.blobs.get(&hash).filter(|slot| slot.is_stored())
    }

    /// The slot of a stored blob a new checkpoint or delta may rely on: a whole value, or a
    /// delta with readers. A delta nothing reads holds no reference on its base, so compaction
    /// may already have dropped the base: giving it a reader again would make it unreadable.
    /// (A blob with readers has its whole chain stored: each delta with readers holds its base.)
    pub fn reusable_blob(&self, hash: u64) -> Option<&BlobSlot> {
        self.stored_blob(hash).filter(|slot| slot.refs > 0 || slot.base.is_none())
    }
}

/// The index of one thread.
#[derive(Default)]
pub struct ThreadIndex {
    /// Namespaces by name; `""` is the root graph.
    pub namespaces: BTreeMap<Box<str>, NamespaceIndex>,
}

impl ThreadIndex {
    /// The index of namespace `ns`. The root graph's `""`, on nearly every call, sorts first and
    /// is found without comparing names: comparing with `""` is a zero-length libc `memcmp`,
    /// which costs ~150 ns on some virtual machines (see `text.rs`, where it was measured).
    pub fn namespace(&self, ns: &str) -> Option<&NamespaceIndex> {
        if ns.is_empty() {
            return self.namespaces.first_key_value().filter(|(name, _)| name.is_empty()).map(|(_, index)| index);
        }
        self.namespaces.get(ns)
    }

    /// [`ThreadIndex::namespace`], to change.
    pub fn namespace_mut(&mut self, ns: &str) -> Option<&mut NamespaceIndex> {
        if ns.is_empty() {
            return self
                .namespaces
                .first_entry()
                .filter(|entry| entry.key().is_empty())
                .map(std::collections::btree_map::OccupiedEntry::into_mut);
        }
        self.namespaces.get_mut(ns)
    }

    #[expect(clippy::expect_used, reason = "inserted just above when missing")]
    fn namespace_or_insert(&mut self, ns: &str) -> &mut NamespaceIndex {
        // Looked up first so the common case allocates no key.
        if self.namespace(ns).is_none() {
            self.namespaces.insert(ns.into(), NamespaceIndex::default());
        }
        self.namespace_mut(ns).expect("namespace inserted above")
    }
}

/// A change to the index, made by a committed record (live) or a replayed one (recovery). Both
/// paths apply the same ops in log order, so they agree by construction.
#[derive(Clone, Debug)]
pub enum IndexOp<'a> {
    /// A checkpoint record (insert or replace); `refs` are the [`blob_hash`]es of its
    /// `channel_versions`.
    Checkpoint {
        thread: Cow<'a, str>,
        ns: Cow<'a, str>,
        id: Cow<'a, str>,
        run_id: Option<Cow<'a, str>>,
        refs: Vec<u64>,
    },
    /// A blob record; `base` is the [`blob_hash`] of the value a delta is stored against.
    Blob { thread: Cow<'a, str>, ns: Cow<'a, str>, hash: u64, base: Option<u64> },
    /// A writes record; `special` if it writes a special channel (which may leave earlier
    /// records of the checkpoint with nothing to contribute).
    Writes { thread: Cow<'a, str>, ns: Cow<'a, str>, checkpoint_id: Cow<'a, str>, special: bool },
    /// A thread tombstone.
    DeleteThread { thread: Cow<'a, str> },
    /// A checkpoints tombstone.
    DeleteCheckpoints { thread: Cow<'a, str>, ns: Cow<'a, str>, ids: Vec<Cow<'a, str>> },
}

/// What the index needs to read back from records it indexed, when data dies.
pub trait RecordSource {
    /// The blob hashes a checkpoint record refers to (its `channel_versions`).
    fn checkpoint_refs(&self, loc: Loc) -> Vec<u64>;
    /// The `(task_id, idx)` keys of a writes record.
    fn write_keys(&self, loc: Loc) -> Vec<(String, i64)>;
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

/// Record bytes of one segment, and how many of them are live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentUsage {
    /// Bytes of all records replayed or written into the segment.
    pub records: u64,
    /// Bytes of records the index still needs.
    pub live: u64,
}

/// The whole index.
#[derive(Default)]
pub struct Index {
    /// By thread id; hashbrown for `entry_ref` (a lookup that allocates the key only to insert)
    /// and foldhash, several times faster than SipHash on short keys.
    pub(crate) threads: hashbrown::HashMap<String, ThreadIndex>,
    /// Interned run ids.
    pub runs: RunTable,
    /// The largest checkpoint id ever indexed (seeds the id generator after reopen).
    pub max_checkpoint_id: Option<CheckpointKey>,
    /// Liveness per segment.
    pub usage: HashMap<u32, SegmentUsage>,
    /// The end of the last frame applied: what a snapshot of this index covers.
    pub applied: Applied,
}

/// A position in the log: just after a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Segment number (0: nothing applied yet).
    pub segment: u32,
    /// Offset just past the frame.
    pub offset: u64,
    /// The frame's sequence number.
    pub frame_seq: u64,
}

fn add_live(usage: &mut HashMap<u32, SegmentUsage>, loc: Loc) {
    usage.entry(loc.segment).or_default().live += loc.disk_len();
}

fn sub_live(usage: &mut HashMap<u32, SegmentUsage>, loc: Loc) {
    let entry = usage.entry(loc.segment).or_default();
    entry.live = entry.live.saturating_sub(loc.disk_len());
}

/// Who reads a blob: a checkpoint (its `channel_versions`) or a delta stored against it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    Checkpoint,
    Delta,
}

/// One more reader of blob `hash`. A blob that gains its first reader becomes live, and if it
/// is a delta its base gains a (delta) reader in turn, down the chain. A blob not indexed (yet)
/// is counted on a placeholder.
fn incref(namespace: &mut NamespaceIndex, usage: &mut HashMap<u32, SegmentUsage>, hash: u64, reader: Reader) {
    let mut next = Some((hash, reader));
    // Bounded: a chain that loops (only damaged records could make one) stops at the limit.
    for _ in 0..=crate::options::MAX_CHAIN_LIMIT {
        let Some((hash, reader)) = next.take() else { return };
        let slot = namespace.blobs.entry(hash).or_insert(BlobSlot::placeholder());
        slot.refs += 1;
        if reader == Reader::Delta {
            slot.delta_refs += 1;
        }
        if slot.refs == 1 {
            if slot.is_stored() {
                add_live(usage, slot.loc);
            }
            next = slot.base.map(|base| (base, Reader::Delta));
        }
    }
}

/// One reader fewer of blob `hash`; a blob that loses its last reader releases its base.
fn decref(namespace: &mut NamespaceIndex, usage: &mut HashMap<u32, SegmentUsage>, hash: u64, reader: Reader) {
    let mut next = Some((hash, reader));
    for _ in 0..=crate::options::MAX_CHAIN_LIMIT {
        let Some((hash, reader)) = next.take() else { return };
        let Some(slot) = namespace.blobs.get_mut(&hash) else { return };
        if slot.refs == 0 {
            return;
        }
        slot.refs -= 1;
        if reader == Reader::Delta {
            slot.delta_refs = slot.delta_refs.saturating_sub(1);
        }
        if slot.refs == 0 {
            next = slot.base.map(|base| (base, Reader::Delta));
            if slot.is_stored() {
                sub_live(usage, slot.loc);
            } else {
                // A placeholder nothing counts on any more.
                namespace.blobs.remove(&hash);
            }
        }
    }
}

/// Which records of one checkpoint's writes still decide its pending writes: a regular write
/// counts if no earlier record has its key, a special write if no later record has it.
fn contributing(keys: &[Vec<(String, i64)>]) -> Vec<bool> {
    keys.iter()
        .enumerate()
        .map(|(i, record)| {
            let (earlier, later) = (keys.get(..i).unwrap_or_default(), keys.get(i + 1..).unwrap_or_default());
            record.iter().any(|(task, idx)| {
                let same = |other: &Vec<(String, i64)>| other.iter().any(|(t, x)| t == task && x == idx);
                if *idx >= 0 { !earlier.iter().any(same) } else { !later.iter().any(same) }
            })
        })
        .collect()
}

impl Index {
    /// Apply one op for a record at `loc`; `source` reads back records whose data dies.
    pub fn apply(&mut self, op: &IndexOp<'_>, loc: Loc, source: &dyn RecordSource) {
        self.usage.entry(loc.segment).or_default().records += loc.disk_len();
        match op {
            IndexOp::Checkpoint { thread, ns, id, run_id, refs } => {
                let key = CheckpointKey::new(id);
                if self.max_checkpoint_id.as_ref().is_none_or(|max| *max < key) {
                    self.max_checkpoint_id = Some(key.clone());
                }
                let run = run_id.as_deref().and_then(|run| self.runs.intern(run));
                let (namespace, usage) = self.namespace_mut(thread, ns);
                let old = namespace.checkpoints.insert(key, CheckpointSlot { loc, run });
                add_live(usage, loc);
                for &hash in refs {
                    incref(namespace, usage, hash, Reader::Checkpoint);
                }
                if let Some(old) = old {
                    sub_live(usage, old.loc);
                    for hash in source.checkpoint_refs(old.loc) {
                        decref(namespace, usage, hash, Reader::Checkpoint);
                    }
                    self.runs.release(old.run);
                }
            }
            IndexOp::Blob { thread, ns, hash, base } => {
                let (namespace, usage) = self.namespace_mut(thread, ns);
                // A repeated record (a copy, a re-put) moves the blob; the count of its readers
                // stays. While it has any, it holds its base: the new record's, then no longer
                // the old one's.
                let (refs, delta_refs, old_base) = match namespace.blobs.get(hash) {
                    Some(old) => {
                        if old.refs > 0 && old.is_stored() {
                            sub_live(usage, old.loc);
                        }
                        (old.refs, old.delta_refs, old.base)
                    }
                    None => (0, 0, None),
                };
                namespace.blobs.insert(*hash, BlobSlot { loc, refs, delta_refs, base: *base });
                if refs > 0 {
                    add_live(usage, loc);
                    if let Some(base) = base {
                        incref(namespace, usage, *base, Reader::Delta);
                    }
                    if let Some(old_base) = old_base {
                        decref(namespace, usage, old_base, Reader::Delta);
                    }
                }
            }
            IndexOp::Writes { thread, ns, checkpoint_id, special } => {
                let key = CheckpointKey::new(checkpoint_id);
                let (namespace, usage) = self.namespace_mut(thread, ns);
                let locs = namespace.writes.entry(key).or_default();
                // Most checkpoints get a handful of calls: grow 1, 2, 4, ... instead of Vec's
                // default first allocation of 4 slots.
                locs.reserve_exact(locs.len().max(1));
                locs.push(loc);
                add_live(usage, loc);
                if *special && locs.len() > 1 {
                    // Overwritten special writes may leave earlier records with nothing to give.
                    let keys: Vec<_> = locs.iter().map(|&l| source.write_keys(l)).collect();
                    // One flag per record, in order: `retain` visits each once, in order.
                    let mut keep = contributing(&keys).into_iter();
                    locs.retain(|&l| {
                        let kept = keep.next().unwrap_or(true);
                        if !kept {
                            sub_live(usage, l);
                        }
                        kept
                    });
                }
            }
            IndexOp::DeleteThread { thread } => {
                if let Some(removed) = self.threads.remove(thread.as_ref()) {
                    for namespace in removed.namespaces.values() {
                        Self::release_namespace(&mut self.usage, namespace);
                        for slot in namespace.checkpoints.values() {
                            self.runs.release(slot.run);
                        }
                    }
                }
            }
            IndexOp::DeleteCheckpoints { thread, ns, ids } => {
                let Some(namespace) = self.threads.get_mut(thread.as_ref()).and_then(|t| t.namespace_mut(ns.as_ref()))
                else {
                    return;
                };
                for id in ids {
                    let key = CheckpointKey::new(id);
                    if let Some(slot) = namespace.checkpoints.remove(&key) {
                        sub_live(&mut self.usage, slot.loc);
                        for hash in source.checkpoint_refs(slot.loc) {
                            decref(namespace, &mut self.usage, hash, Reader::Checkpoint);
                        }
                        self.runs.release(slot.run);
                    }
                    for loc in namespace.writes.remove(&key).unwrap_or_default() {
                        sub_live(&mut self.usage, loc);
                    }
                }
            }
        }
    }

    fn release_namespace(usage: &mut HashMap<u32, SegmentUsage>, namespace: &NamespaceIndex) {
        for slot in namespace.checkpoints.values() {
            sub_live(usage, slot.loc);
        }
        for slot in namespace.blobs.values().filter(|slot| slot.refs > 0 && slot.is_stored()) {
            sub_live(usage, slot.loc);
        }
        for &loc in namespace.writes.values().flatten() {
            sub_live(usage, loc);
        }
    }

    fn namespace_mut(&mut self, thread: &str, ns: &str) -> (&mut NamespaceIndex, &mut HashMap<u32, SegmentUsage>) {
        // One lookup; the key is allocated only when the thread is new.
        (self.threads.entry_ref(thread).or_default().namespace_or_insert(ns), &mut self.usage)
    }

    /// Whether the record at `loc` that made `op` is still needed: a live checkpoint or writes
    /// record, or a blob some live checkpoint reads.
    pub fn is_live(&self, op: &IndexOp<'_>, loc: Loc) -> bool {
        match op {
            IndexOp::Checkpoint { thread, ns, id, .. } => self
                .namespace(thread, ns)
                .and_then(|n| n.checkpoints.get(&CheckpointKey::new(id)))
                .is_some_and(|slot| slot.loc == loc),
            IndexOp::Blob { thread, ns, hash, .. } => self
                .namespace(thread, ns)
                .and_then(|n| n.blobs.get(hash))
                .is_some_and(|slot| slot.loc == loc && slot.refs > 0),
            IndexOp::Writes { thread, ns, checkpoint_id, .. } => self
                .namespace(thread, ns)
                .and_then(|n| n.writes.get(&CheckpointKey::new(checkpoint_id)))
                .is_some_and(|locs| locs.contains(&loc)),
            IndexOp::DeleteThread { .. } | IndexOp::DeleteCheckpoints { .. } => false,
        }
    }

    /// Point the entry that `op` made at `to` instead of `from`, if it still points at `from`
    /// (a newer write since the copy wins). Returns whether it moved.
    pub fn relocate(&mut self, op: &IndexOp<'_>, from: Loc, to: Loc) -> bool {
        self.usage.entry(to.segment).or_default().records += to.disk_len();
        let Some(namespace) = self.threads.get_mut(op_thread(op)).and_then(|t| t.namespace_mut(op_ns(op))) else {
            return false;
        };
        // (moved, counted live)
        let (moved, live) = match op {
            IndexOp::Checkpoint { id, .. } => match namespace.checkpoints.get_mut(&CheckpointKey::new(id)) {
                Some(slot) if slot.loc == from => {
                    slot.loc = to;
                    (true, true)
                }
                _ => (false, false),
            },
            IndexOp::Blob { hash, base, .. } => match namespace.blobs.get_mut(hash) {
                Some(slot) if slot.loc == from => {
                    slot.loc = to;
                    let live = slot.refs > 0;
                    // Compaction stored a delta whole (`base` is now `None`): its old base loses
                    // this reader.
                    let released = (slot.base != *base).then_some(slot.base).flatten();
                    slot.base = *base;
                    if let Some(released) = released.filter(|_| live) {
                        decref(namespace, &mut self.usage, released, Reader::Delta);
                    }
                    (true, live)
                }
                _ => (false, false),
            },
            // In place: a checkpoint's writes keep their commit order.
            IndexOp::Writes { checkpoint_id, .. } => {
                match namespace
                    .writes
                    .get_mut(&CheckpointKey::new(checkpoint_id))
                    .and_then(|locs| locs.iter_mut().find(|l| **l == from))
                {
                    Some(loc) => {
                        *loc = to;
                        (true, true)
                    }
                    None => (false, false),
                }
            }
            IndexOp::DeleteThread { .. } | IndexOp::DeleteCheckpoints { .. } => (false, false),
        };
        if live {
            sub_live(&mut self.usage, from);
            add_live(&mut self.usage, to);
        }
        moved
    }

    /// Remove a blob entry that nothing reads if it still points at `loc` (compaction drops
    /// the record). Returns false if a checkpoint started reading it meanwhile.
    pub fn drop_unreferenced_blob(&mut self, thread: &str, ns: &str, hash: u64, loc: Loc) -> bool {
        let Some(namespace) = self.threads.get_mut(thread).and_then(|t| t.namespace_mut(ns)) else { return true };
        match namespace.blobs.get(&hash) {
            Some(slot) if slot.loc == loc && slot.refs == 0 => {
                namespace.blobs.remove(&hash);
                true
            }
            Some(slot) if slot.loc == loc => false,
            _ => true,
        }
    }

    /// Forget the usage of retired segments.
    pub fn forget_segments(&mut self, segments: &[u32]) {
        for seq in segments {
            self.usage.remove(seq);
        }
    }

    /// The index of one thread.
    pub fn thread(&self, thread: &str) -> Option<&ThreadIndex> {
        self.threads.get(thread)
    }

    /// The index of one (thread, namespace).
    pub fn namespace(&self, thread: &str, ns: &str) -> Option<&NamespaceIndex> {
        self.threads.get(thread)?.namespace(ns)
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
                counts.blobs += ns.blobs.values().filter(|slot| slot.is_stored()).count() as u64;
                counts.write_records += ns.writes.values().map(|locs| locs.len() as u64).sum::<u64>();
            }
        }
        counts
    }
}

impl IndexOp<'_> {
    /// The same op owning its strings (to outlive the record it came from).
    pub fn to_static(&self) -> IndexOp<'static> {
        let own = |s: &Cow<'_, str>| Cow::Owned(s.to_string());
        match self {
            IndexOp::Checkpoint { thread, ns, id, run_id, refs } => IndexOp::Checkpoint {
                thread: own(thread),
                ns: own(ns),
                id: own(id),
                run_id: run_id.as_ref().map(own),
                refs: refs.clone(),
            },
            IndexOp::Blob { thread, ns, hash, base } => {
                IndexOp::Blob { thread: own(thread), ns: own(ns), hash: *hash, base: *base }
            }
            IndexOp::Writes { thread, ns, checkpoint_id, special } => IndexOp::Writes {
                thread: own(thread),
                ns: own(ns),
                checkpoint_id: own(checkpoint_id),
                special: *special,
            },
            IndexOp::DeleteThread { thread } => IndexOp::DeleteThread { thread: own(thread) },
            IndexOp::DeleteCheckpoints { thread, ns, ids } => {
                IndexOp::DeleteCheckpoints { thread: own(thread), ns: own(ns), ids: ids.iter().map(own).collect() }
            }
        }
    }
}

fn op_thread<'b>(op: &'b IndexOp<'_>) -> &'b str {
    match op {
        IndexOp::Checkpoint { thread, .. }
        | IndexOp::Blob { thread, .. }
        | IndexOp::Writes { thread, .. }
        | IndexOp::DeleteThread { thread }
        | IndexOp::DeleteCheckpoints { thread, .. } => thread,
    }
}

fn op_ns<'b>(op: &'b IndexOp<'_>) -> &'b str {
    match op {
        IndexOp::Checkpoint { ns, .. }
        | IndexOp::Blob { ns, .. }
        | IndexOp::Writes { ns, .. }
        | IndexOp::DeleteCheckpoints { ns, .. } => ns,
        IndexOp::DeleteThread { .. } => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_hash_is_stable_and_separates_its_pieces() {
        // The index snapshot stores these hashes: a change here needs a new snapshot magic
        // (snapshot.rs), so old snapshots are replayed instead of read with the wrong hashes.
        let version = ChannelVersion::Str(format!("{:032}.{:016}", 7, 0.25));
        assert_eq!(blob_hash("messages", &version), 11_359_846_126_297_935_117);
        assert_ne!(
            blob_hash("ab", &ChannelVersion::Str("c".into())),
            blob_hash("a", &ChannelVersion::Str("bc".into()))
        );
        assert_ne!(blob_hash("a", &ChannelVersion::Int(1)), blob_hash("a", &ChannelVersion::Float(f64::from_bits(1))));
        assert_ne!(blob_hash("a", &ChannelVersion::Int(1)), blob_hash("a", &ChannelVersion::Int(1 << 32)));
    }

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

    struct NoRecords;

    impl RecordSource for NoRecords {
        fn checkpoint_refs(&self, _: Loc) -> Vec<u64> {
            Vec::new()
        }
        fn write_keys(&self, _: Loc) -> Vec<(String, i64)> {
            Vec::new()
        }
    }

    #[test]
    fn run_numbers_freed_before_a_snapshot_are_reused_after_loading_it() {
        // A snapshot's table: number 1 live, number 2 freed before the snapshot was written.
        let mut table = RunTable::from_names(vec![Some("a".into()), None]);
        let one = NonZeroU32::new(1).expect("non-zero");
        table.retain(one);
        table.free_unused();
        let reused = table.intern("b").expect("interned");
        assert_eq!(reused.get(), 2, "the freed number is reused, the table does not grow");
        assert_eq!(table.names.len(), 2);
        table.release(Some(one));
        assert_eq!(table.intern("c").map(NonZeroU32::get), Some(1));
        assert_eq!(table.names.len(), 2);
    }

    #[test]
    fn contributing_records_follow_first_and_last_wins() {
        let k = |keys: &[(&str, i64)]| keys.iter().map(|(t, i)| (t.to_string(), *i)).collect::<Vec<_>>();
        // A regular write repeated, a special write overwritten twice.
        let keys = vec![k(&[("a", 0), ("a", -1)]), k(&[("a", 0)]), k(&[("a", -1)]), k(&[("a", -1), ("b", 0)])];
        assert_eq!(contributing(&keys), vec![true, false, false, true]);
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
            refs: vec![],
        };
        index.apply(&cp("a"), loc(1), &NoRecords);
        index.apply(&cp("b"), loc(2), &NoRecords);
        index.apply(&cp("a"), loc(3), &NoRecords);
        let writes = IndexOp::Writes { thread: "t".into(), ns: "".into(), checkpoint_id: "a".into(), special: false };
        index.apply(&writes, loc(4), &NoRecords);
        let ns = index.namespace("t", "").expect("namespace");
        assert_eq!(ns.checkpoints.len(), 2);
        assert_eq!(ns.checkpoints[&CheckpointKey::new("a")].loc, loc(3));
        assert_eq!(ns.checkpoints.last_key_value().map(|(k, _)| k.as_str().into_owned()), Some("b".into()));
        index.apply(
            &IndexOp::DeleteCheckpoints { thread: "t".into(), ns: "".into(), ids: vec!["a".into()] },
            loc(5),
            &NoRecords,
        );
        assert_eq!(index.counts(), IndexCounts { threads: 1, checkpoints: 1, blobs: 0, write_records: 0 });
        index.apply(&IndexOp::DeleteThread { thread: "t".into() }, loc(6), &NoRecords);
        assert!(index.thread("t").is_none());
    }
}
