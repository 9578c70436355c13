//! Channel values as stored (format version 2): reading one through its delta chain, and
//! choosing how to store a new one.
//!
//! A value record holds a whole value or a delta against an earlier version of the same channel
//! in the same (thread, namespace) (its base), either compressed or not. A chain is a delta,
//! its base, that one's base, ... down to a whole value; a read decodes at most
//! [`ValueEncoding::max_chain`] deltas because a write stores the value whole after that many,
//! or sooner if the chain's deltas would add up to more stored bytes than the whole value they
//! rest on is long (so a chain keeps alive at most that whole value's length in deltas, on top
//! of the whole value as stored). The index holds each
//! delta's base link, counted as a reference, so a base lives as long as a live delta needs it
//! (see `index.rs`).

use std::sync::Arc;

use crate::delta;
use crate::error::{Error, Result};
use crate::format::RecordKind;
use crate::index::NamespaceIndex;
use crate::model::{Blob, ChannelVersion};
use crate::options::{MAX_CHAIN_LIMIT, ValueEncoding};
use crate::reads::check_blob_key;
use crate::records::{BlobKey, BlobRecord, Packed, StoredValue, ValueHead, ValueRecord, decode, decode_prefix};
use crate::segment::{Pinned, RecordBytes, SegmentSet};
use crate::value_cache::{CachedValue, ValueCache};

/// Values shorter than this are stored whole and not cached: a delta could save little, and
/// looking up and keeping the base would cost more than writing the value.
pub(crate) const MIN_DELTA_VALUE: usize = 1024;

/// The records one stored value needs, pinned under the index lock: its own first, then each
/// base down its chain.
pub(crate) type Chain = Vec<Pinned>;

/// Pin the record of blob `hash` and those of its chain, following the index's base links.
/// `None` if the blob is not stored. A base missing from the index ends the chain early; the
/// read reports it.
pub(crate) fn pin_chain(segments: &SegmentSet, ns: &NamespaceIndex, hash: u64) -> Result<Option<Chain>> {
    let Some(slot) = ns.stored_blob(hash) else { return Ok(None) };
    let mut chain = vec![segments.pin(slot.loc)?];
    let mut base = slot.base;
    while let Some(hash) = base {
        // One more than a read accepts, so a looping chain is reported, not followed forever.
        if chain.len() > MAX_CHAIN_LIMIT as usize + 1 {
            break;
        }
        let Some(slot) = ns.stored_blob(hash) else { break };
        chain.push(segments.pin(slot.loc)?);
        base = slot.base;
    }
    Ok(Some(chain))
}

/// A value read back, with what a delta against it needs to know.
pub(crate) struct DecodedValue {
    /// The value (`None`: the empty sentinel).
    pub blob: Option<Blob>,
    /// Deltas below its record down to the whole value.
    pub depth: u32,
    /// Stored bytes of those deltas.
    pub chain_bytes: u64,
    /// Bytes of the whole value the chain starts from (uncompressed: what the chain's deltas are
    /// weighed against).
    pub whole_bytes: u64,
    /// Taken as it is from the value cache's decoded records (its own record's entry): no
    /// delta was applied.
    pub from_cache: bool,
}

impl DecodedValue {
    /// The cache entry for this value, read from the record at `chain[0]`.
    pub fn cached(&self, version: &ChannelVersion, chain: &[Pinned]) -> Option<CachedValue> {
        Some(CachedValue {
            version: version.clone(),
            loc: chain.first()?.loc,
            blob: Arc::new(self.blob.clone()?),
            depth: self.depth,
            chain_bytes: self.chain_bytes,
            whole_bytes: self.whole_bytes,
        })
    }
}

/// Values decoded during one call that reads many (`list`), by the record they came from:
/// consecutive checkpoints' values share their chains, so with the memo each delta is applied
/// once per call instead of once per value above it. Bounded by [`MEMO_BUDGET`] bytes; a
/// disabled memo (single reads) keeps nothing.
pub(crate) struct ChainMemo {
    values: std::collections::HashMap<crate::segment::Loc, Memoized>,
    bytes: u64,
    enabled: bool,
}

/// What one call's memo may hold.
const MEMO_BUDGET: u64 = 64 << 20;

struct Memoized {
    channel: String,
    version: ChannelVersion,
    value: Vec<u8>,
    type_tag: String,
    depth: u32,
    chain_bytes: u64,
    whole_bytes: u64,
}

impl ChainMemo {
    /// A memo for a call that reads many values.
    pub fn new() -> Self {
        ChainMemo { values: std::collections::HashMap::new(), bytes: 0, enabled: true }
    }

    /// A memo that keeps nothing.
    pub fn disabled() -> Self {
        ChainMemo { enabled: false, ..ChainMemo::new() }
    }

    fn remember(&mut self, loc: crate::segment::Loc, entry: impl FnOnce() -> Memoized, len: usize) {
        if self.enabled && self.bytes + len as u64 <= MEMO_BUDGET {
            self.bytes += len as u64;
            self.values.insert(loc, entry());
        }
    }
}

/// Read a value through its pinned chain (no lock held): each record's key is checked (the
/// thread, namespace and channel, and the version its successor names as base), every length
/// is checked against `limit` before anything is allocated, and a chain longer than
/// [`MAX_CHAIN_LIMIT`] is refused as corruption. A record `memo` holds starts the rebuild, or
/// else the chain's bottom whole value if `bases` holds it (decoded from that very record).
#[expect(
    clippy::too_many_arguments,
    reason = "the value's full key, the limit, and the two caches a read may start from"
)]
pub(crate) fn read_chain(
    chain: &[Pinned],
    thread: &str,
    ns: &str,
    channel: &str,
    version: &ChannelVersion,
    limit: u64,
    memo: &mut ChainMemo,
    bases: Option<&ValueCache>,
) -> Result<DecodedValue> {
    let mut records: Vec<(&Pinned, RecordBytes)> = Vec::with_capacity(chain.len());
    let mut expected = version.clone();
    let mut from_memo = None;
    let mut from_base = None;
    for (at, pinned) in chain.iter().enumerate() {
        if let Some(known) = memo.values.get(&pinned.loc)
            && known.channel == channel
            && known.version == expected
        {
            // The chain is as long as a cold read would find it: the memo must not hide a
            // chain that read refuses.
            if at as u64 + u64::from(known.depth) > u64::from(MAX_CHAIN_LIMIT) {
                return Err(pinned.corruption(format!(
                    "the value of channel {channel:?} version {version} of thread {thread:?} has a delta chain longer than {MAX_CHAIN_LIMIT}"
                )));
            }
            from_memo = Some(known);
            break;
        }
        // Decoded before from this very record: the value itself, or the chain's bottom. (Not
        // every record in between: a lookup takes the pool's lock, and a cold read of a long
        // chain would pay one per record for nothing.)
        if (at == 0 || at + 1 == chain.len())
            && let Some(known) = bases.and_then(|cache| cache.get_record(pinned.loc, thread, ns, channel))
            && known.version == expected
        {
            from_base = Some(known);
            break;
        }
        let base = {
            let bytes = pinned.read()?;
            let base = match bytes.view().kind {
                // The head holds the key: one decode checks it and names the base.
                RecordKind::Value => {
                    let head: ValueHead =
                        decode_prefix(bytes.view().body).map_err(|reason| pinned.corruption(reason))?;
                    check_blob_key(pinned, &head.key, thread, ns, channel, &expected)?;
                    head.base.map(std::borrow::Cow::into_owned)
                }
                _ => {
                    let key: BlobKey = decode_prefix(bytes.view().body).map_err(|reason| pinned.corruption(reason))?;
                    check_blob_key(pinned, &key, thread, ns, channel, &expected)?;
                    None
                }
            };
            records.push((pinned, bytes));
            base
        };
        let Some(base) = base else { break };
        if at >= MAX_CHAIN_LIMIT as usize {
            return Err(pinned.corruption(format!(
                "the value of channel {channel:?} version {version} of thread {thread:?} has a delta chain longer than {MAX_CHAIN_LIMIT}"
            )));
        }
        if at + 1 == chain.len() {
            return Err(pinned.corruption(format!(
                "the base (version {base}) of a delta of channel {channel:?} of thread {thread:?} is not stored"
            )));
        }
        expected = base;
    }
    // The value's own record was found decoded: nothing to rebuild.
    let from_cache = records.is_empty() && from_base.is_some();
    // Where the rebuild starts: a value the memo holds, or the whole value at the bottom.
    let (mut value, mut type_tag, mut depth, mut chain_bytes, whole_bytes, deltas) = match (from_memo, from_base) {
        (Some(known), _) => (
            known.value.clone(),
            known.type_tag.clone(),
            known.depth,
            known.chain_bytes,
            known.whole_bytes,
            &records[..],
        ),
        (None, Some(known)) => (
            known.blob.bytes.clone(),
            known.blob.type_tag.clone(),
            known.depth,
            known.chain_bytes,
            known.whole_bytes,
            &records[..],
        ),
        (None, None) => {
            let Some(((bottom_pin, bottom), deltas)) = records.split_last() else {
                return Err(Error::invariant("a value chain with no record"));
            };
            let (whole, whole_bytes, type_tag) =
                match whole_value(bottom, limit).map_err(|r| bottom_pin.corruption(r))? {
                    Some(value) => value,
                    None if deltas.is_empty() => {
                        return Ok(DecodedValue {
                            blob: None,
                            depth: 0,
                            chain_bytes: 0,
                            whole_bytes: 0,
                            from_cache: false,
                        });
                    }
                    None => return Err(bottom_pin.corruption("the base of a delta is the empty value")),
                };
            if !deltas.is_empty() {
                let key: BlobKey = decode_prefix(bottom.view().body).map_err(|r| bottom_pin.corruption(r))?;
                let (version, len) = (key.version.into_owned(), whole.len());
                if let Some(cache) = bases.filter(|cache| cache.keeps_anything()) {
                    let base = Blob { type_tag: type_tag.clone(), bytes: whole.clone() };
                    cache.insert_record(
                        thread,
                        ns,
                        channel,
                        CachedValue {
                            version: version.clone(),
                            loc: bottom_pin.loc,
                            blob: Arc::new(base),
                            depth: 0,
                            chain_bytes: 0,
                            whole_bytes,
                        },
                    );
                }
                memo.remember(
                    bottom_pin.loc,
                    || Memoized {
                        channel: channel.to_owned(),
                        version,
                        value: whole.clone(),
                        type_tag: type_tag.clone(),
                        depth: 0,
                        chain_bytes: 0,
                        whole_bytes,
                    },
                    len,
                );
            }
            (whole, type_tag, 0, 0, whole_bytes, deltas)
        }
    };
    for (i, (pinned, bytes)) in deltas.iter().enumerate().rev() {
        let record: ValueRecord = decode(bytes.view().body).map_err(|reason| pinned.corruption(reason))?;
        let stored = record.value.ok_or_else(|| pinned.corruption("a delta without a value"))?;
        chain_bytes += stored.packed.stored_len();
        let len = checked_len(stored.len, limit).map_err(|r| pinned.corruption(r))?;
        let ops = stored.packed.unpack(limit).map_err(|r| pinned.corruption(r))?;
        value = delta::apply(&value, &ops, len).map_err(|r| pinned.corruption(r))?;
        // The last one applied is the value's own record, whose tag is the value's.
        type_tag = stored.type_tag.into_owned();
        depth += 1;
        if i > 0 {
            let version = record.head.key.version.into_owned();
            memo.remember(
                pinned.loc,
                || Memoized {
                    channel: channel.to_owned(),
                    version,
                    value: value.clone(),
                    type_tag: type_tag.clone(),
                    depth,
                    chain_bytes,
                    whole_bytes,
                },
                len,
            );
        }
    }
    Ok(DecodedValue { blob: Some(Blob { type_tag, bytes: value }), depth, chain_bytes, whole_bytes, from_cache })
}

/// The value of a record that holds it whole and uncompressed (`Some(None)`: the empty sentinel);
/// `None` if the record holds a delta or a compressed value.
fn read_raw_whole(
    pinned: &Pinned,
    thread: &str,
    ns: &str,
    channel: &str,
    version: &ChannelVersion,
) -> Result<Option<Option<Blob>>> {
    // One decode of the record checks its key and yields the value.
    let bytes = pinned.read()?;
    match bytes.view().kind {
        RecordKind::Blob => {
            let record: BlobRecord = decode(bytes.view().body).map_err(|reason| pinned.corruption(reason))?;
            check_blob_key(pinned, &record.key, thread, ns, channel, version)?;
            Ok(Some(record.value.map(|value| value.to_blob())))
        }
        RecordKind::Value => {
            let record: ValueRecord = decode(bytes.view().body).map_err(|reason| pinned.corruption(reason))?;
            check_blob_key(pinned, &record.head.key, thread, ns, channel, version)?;
            match record.value {
                None if record.head.base.is_none() => Ok(Some(None)),
                Some(value) if record.head.base.is_none() && value.packed.codec == crate::codec::Codec::Raw => {
                    if value.len != value.packed.len || value.packed.payload.len() as u64 != value.len {
                        return Err(pinned.corruption(format!(
                            "a whole value of {} bytes holds a {}-byte payload",
                            value.len,
                            value.packed.payload.len()
                        )));
                    }
                    Ok(Some(Some(Blob {
                        type_tag: value.type_tag.into_owned(),
                        bytes: value.packed.payload.into_owned(),
                    })))
                }
                _ => Ok(None),
            }
        }
        other => Err(pinned.corruption(format!("a {other:?} record where a value was expected"))),
    }
}

/// The bytes, length and type tag of a record holding a whole value (`None`: the empty
/// sentinel).
fn whole_value(bytes: &RecordBytes, limit: u64) -> std::result::Result<Option<(Vec<u8>, u64, String)>, String> {
    match bytes.view().kind {
        RecordKind::Blob => {
            let record: BlobRecord = decode(bytes.view().body)?;
            Ok(record.value.map(|v| {
                let stored = v.bytes.len() as u64;
                (v.bytes.into_owned(), stored, v.type_tag.into_owned())
            }))
        }
        RecordKind::Value => {
            let record: ValueRecord = decode(bytes.view().body)?;
            if record.head.base.is_some() {
                return Err("a delta where a whole value was expected".into());
            }
            let Some(value) = record.value else { return Ok(None) };
            if value.len != value.packed.len {
                return Err(format!("a whole value of {} bytes holds a {}-byte payload", value.len, value.packed.len));
            }
            let bytes = value.packed.unpack(limit)?.into_owned();
            let len = bytes.len() as u64;
            Ok(Some((bytes, len, value.type_tag.into_owned())))
        }
        other => Err(format!("a {other:?} record where a value was expected")),
    }
}

fn checked_len(len: u64, limit: u64) -> std::result::Result<usize, String> {
    if len > limit {
        return Err(format!("a stored value claims {len} bytes, over the {limit}-byte value limit"));
    }
    usize::try_from(len).map_err(|_| format!("a stored value claims {len} bytes"))
}

/// A value record ready to push, and the cache entry it leaves once committed (its location
/// filled in then).
pub(crate) struct EncodedValue<'a> {
    /// The record.
    pub record: ValueRecord<'a>,
    /// Depth, delta bytes and whole bytes of its chain, for the cache.
    pub depth: u32,
    pub chain_bytes: u64,
    pub whole_bytes: u64,
}

/// How to store `value` as `key`: a delta against `base` (the channel's previous value, already
/// checked to be what the index holds) when allowed and smaller, else whole; compressed when
/// that pays.
pub(crate) fn encode<'a>(
    key: BlobKey<'a>,
    value: &'a Blob,
    base: Option<&CachedValue>,
    options: &ValueEncoding,
) -> EncodedValue<'a> {
    let level = options.compression_level;
    let new = &value.bytes;
    if let Some(base) =
        base.filter(|b| options.deltas && b.depth < options.max_chain && b.blob.type_tag == value.type_tag)
    {
        let ops = delta::encode(&base.blob.bytes, new);
        // Worth storing only if well below the value itself.
        if ops.len() * 2 <= new.len() {
            let packed = Packed::of(&ops, level);
            let stored = packed.stored_len();
            if base.chain_bytes + stored <= base.whole_bytes {
                let packed =
                    Packed { codec: packed.codec, len: packed.len, payload: packed.payload.into_owned().into() };
                let depth = base.depth + 1;
                return EncodedValue {
                    record: ValueRecord {
                        head: ValueHead { key, base: Some(std::borrow::Cow::Owned(base.version.clone())), depth },
                        value: Some(StoredValue {
                            type_tag: std::borrow::Cow::Borrowed(&value.type_tag),
                            len: new.len() as u64,
                            packed,
                        }),
                    },
                    depth,
                    chain_bytes: base.chain_bytes + stored,
                    whole_bytes: base.whole_bytes,
                };
            }
        }
    }
    let packed = Packed::of(new, level);
    let whole_bytes = new.len() as u64;
    EncodedValue {
        record: ValueRecord {
            head: ValueHead { key, base: None, depth: 0 },
            value: Some(StoredValue {
                type_tag: std::borrow::Cow::Borrowed(&value.type_tag),
                len: new.len() as u64,
                packed,
            }),
        },
        depth: 0,
        chain_bytes: 0,
        whole_bytes,
    }
}

impl crate::engine::Engine {
    /// A channel value through its pinned chain (no lock held), from the cache when the cache
    /// holds this very record.
    pub(crate) fn read_value(
        &self,
        thread: &str,
        ns: &str,
        channel: &str,
        version: &ChannelVersion,
        chain: &[Pinned],
        memo: &mut ChainMemo,
    ) -> Result<Option<Blob>> {
        let top = chain.first().map(|pinned| pinned.loc);
        if let [only] = chain
            && let Some(value) = read_raw_whole(only, thread, ns, channel, version)?
        {
            // Stored whole and uncompressed: a copy from the segment costs less than a cache lookup.
            return Ok(value);
        }
        let cached = self.value_cache.get(thread, ns, channel);
        if let Some(cached) = &cached
            && cached.version == *version
            && Some(cached.loc) == top
        {
            self.value_cache.count(true);
            return Ok(Some(Blob::clone(&cached.blob)));
        }
        let decoded =
            read_chain(chain, thread, ns, channel, version, self.read_limit(), memo, Some(&self.value_cache))?;
        if decoded.depth > 0 {
            self.value_cache.count(decoded.from_cache);
        }
        // A read fills the cache only where it holds nothing for the channel, or the same version
        // from a record since moved: reading an old checkpoint must not push out the latest value.
        if cached.is_none_or(|c| c.version == *version)
            && let Some(entry) = decoded.cached(version, chain)
        {
            self.value_cache.insert(thread, ns, channel, entry);
        } else if decoded.depth > 0
            && !memo.enabled
            && !decoded.from_cache
            && let Some(entry) = decoded.cached(version, chain)
        {
            // An older version a single read rebuilt through its chain (time travel): reading it
            // again starts here. (A `list` rebuilds its run of versions through its memo; keeping
            // each one too would cost a copy per value on every cold listing.)
            self.value_cache.insert_record(thread, ns, channel, entry);
        }
        Ok(decoded.blob)
    }

    /// The value of `channel` in the latest checkpoint of (thread, ns), read from the log: the
    /// base for a delta when the cache has none. `None` if there is no such value, or it cannot
    /// be read (the write then stores its value whole; a damaged old value must not fail it).
    pub(crate) fn latest_value(&self, thread: &str, ns: &str, channel: &str) -> Option<Arc<CachedValue>> {
        let read = || -> Result<Option<Arc<CachedValue>>> {
            let Some((chain, version)) = self.pin_latest_value(thread, ns, channel)? else { return Ok(None) };
            let decoded = read_chain(
                &chain,
                thread,
                ns,
                channel,
                &version,
                self.read_limit(),
                &mut ChainMemo::disabled(),
                Some(&self.value_cache),
            )?;
            let entry = decoded.cached(&version, &chain);
            if let Some(entry) = &entry {
                self.value_cache.insert(thread, ns, channel, entry.clone());
            }
            Ok(entry.map(Arc::new))
        };
        read().unwrap_or_else(|error| {
            tracing::warn!(%error, thread, ns, channel, "cannot read the previous value of a channel; storing the new one whole");
            None
        })
    }
}

impl crate::engine::Engine {
    /// How the live values are stored (see [`crate::ValueSpace`]). Reads each live value
    /// record's head, without the index lock (located under it first).
    pub(crate) fn value_space(&self) -> crate::ValueSpace {
        let mut longest_chain = 0u32;
        let locs: Vec<Pinned> = {
            let index = self.index.read();
            let mut locs = Vec::new();
            for ns in index.threads().flat_map(|(_, thread)| thread.namespaces.values()) {
                // Chains as the index links them now (a record's own depth is as written:
                // compaction may since have stored a base whole), each link followed once.
                let mut depths = std::collections::HashMap::new();
                for (&hash, slot) in ns.blobs.iter().filter(|(_, slot)| slot.is_stored() && slot.refs > 0) {
                    longest_chain = longest_chain.max(chain_depth(ns, hash, &mut depths));
                    locs.extend(self.segments.pin(slot.loc).ok());
                }
            }
            locs
        };
        let mut space =
            crate::ValueSpace { cache: self.value_cache.stats(), longest_chain, ..crate::ValueSpace::default() };
        for pinned in locs {
            let Ok(bytes) = pinned.read() else { continue };
            space.values += 1;
            space.stored_bytes += pinned.loc.disk_len();
            match crate::records::StoredBlob::decode(&bytes.view()) {
                Ok(crate::records::StoredBlob::Plain(record)) => {
                    space.whole += 1;
                    space.logical_bytes += record.value.map_or(0, |v| v.bytes.len() as u64);
                }
                Ok(crate::records::StoredBlob::Value(record)) => {
                    if record.head.base.is_some() {
                        space.deltas += 1;
                    } else {
                        space.whole += 1;
                    }
                    if let Some(value) = record.value {
                        space.logical_bytes += value.len;
                        space.compressed += u64::from(value.packed.codec != crate::codec::Codec::Raw);
                    }
                }
                Err(_) => {}
            }
        }
        space
    }
}

/// Deltas below blob `hash` down to a whole value, as the index links them (at most
/// [`MAX_CHAIN_LIMIT`]); `depths` remembers every blob met, so a namespace's chains are walked
/// once in all.
fn chain_depth(ns: &NamespaceIndex, hash: u64, depths: &mut std::collections::HashMap<u64, u32>) -> u32 {
    // Down to a blob already measured or the end of the chain, then back up.
    let mut path = Vec::new();
    let mut at = Some(hash);
    let mut below = 0;
    while let Some(h) = at {
        if let Some(&known) = depths.get(&h) {
            below = known + 1;
            break;
        }
        if path.len() > MAX_CHAIN_LIMIT as usize {
            break;
        }
        path.push(h);
        at = ns.stored_blob(h).and_then(|slot| slot.base);
    }
    let mut depth = 0;
    for (i, h) in path.iter().rev().enumerate() {
        #[expect(clippy::cast_possible_truncation, reason = "i <= MAX_CHAIN_LIMIT + 1, checked in the walk")]
        let d = (below + i as u32).min(MAX_CHAIN_LIMIT);
        depths.insert(*h, d);
        depth = d;
    }
    depth
}

/// A stored value, rebuilt through its pinned `chain` and encoded as a whole value record under
/// the same key (compressed at `level`): how compaction ends a chain, and how `copy_thread`
/// keeps a target's deltas whole before it overwrites their base. `None` for the empty sentinel.
pub(crate) fn whole_record(
    chain: &[Pinned],
    thread: &str,
    ns: &str,
    level: Option<i32>,
    limit: u64,
) -> Result<Option<ValueRecord<'static>>> {
    let Some(top) = chain.first() else { return Ok(None) };
    let top_bytes = top.read()?;
    let key: BlobKey = decode_prefix(top_bytes.view().body).map_err(|reason| top.corruption(reason))?;
    // Compaction reads what is on disk, not what a cache holds.
    let decoded = read_chain(chain, thread, ns, &key.channel, &key.version, limit, &mut ChainMemo::disabled(), None)?;
    let Some(blob) = decoded.blob else { return Ok(None) };
    let packed = Packed::of(&blob.bytes, level);
    let packed =
        Packed { codec: packed.codec, len: packed.len, payload: std::borrow::Cow::Owned(packed.payload.into_owned()) };
    let own = |s: &str| std::borrow::Cow::Owned(s.to_owned());
    Ok(Some(ValueRecord {
        head: ValueHead {
            key: BlobKey {
                thread_id: own(thread),
                checkpoint_ns: own(ns),
                channel: own(&key.channel),
                version: std::borrow::Cow::Owned(key.version.into_owned()),
            },
            base: None,
            depth: 0,
        },
        value: Some(StoredValue {
            type_tag: std::borrow::Cow::Owned(blob.type_tag),
            len: blob.bytes.len() as u64,
            packed,
        }),
    }))
}
