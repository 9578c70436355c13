//! The last value of each (thread, namespace, channel), and the whole values at the bottom of
//! delta chains, kept within one memory budget.
//!
//! A write stores a new version as a delta against the channel's previous one, so it needs that
//! value: the cache holds it, as the write left it or a read decoded it. The latest checkpoint's
//! values are these, so reading it does not decode a chain either.
//!
//! An entry is trusted only for the record it was taken from: it holds that record's location,
//! and a user checks that the index still names that location for the version (under the index
//! lock) before using the bytes. Records never change in place, so an entry can be stale (a
//! thread deleted and written again, a copy over it, a compaction that moved the record) but
//! never wrong: a stale entry is a miss.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::index::PassThroughHasher;
use crate::model::{Blob, ChannelVersion};
use crate::segment::Loc;

/// One cached value and what the next delta against it needs to know.
#[derive(Clone, Debug)]
pub(crate) struct CachedValue {
    /// The version it is.
    pub version: ChannelVersion,
    /// The record it was taken from.
    pub loc: Loc,
    /// The value.
    pub blob: Arc<Blob>,
    /// Deltas from its record down to the whole value of its chain (0: stored whole).
    pub depth: u32,
    /// Stored bytes of those deltas.
    pub chain_bytes: u64,
    /// Bytes of the whole value the chain starts from (uncompressed).
    pub whole_bytes: u64,
}

impl CachedValue {
    fn cost(&self, names: usize) -> u64 {
        (self.blob.bytes.len() + self.blob.type_tag.len() + names + 128) as u64
    }
}

/// Counters shown by `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValueCacheStats {
    /// The budget, bytes.
    pub budget_bytes: u64,
    /// Bytes held.
    pub used_bytes: u64,
    /// Values held.
    pub entries: u64,
    /// Lookups answered.
    pub hits: u64,
    /// Lookups not answered (absent or stale).
    pub misses: u64,
}

/// An entry: the value, its thread's hash (for `forget_thread`), its cost and its last use.
struct Entry {
    value: Arc<CachedValue>,
    thread: u64,
    cost: u64,
    used_at: u64,
}

/// Entries by the hash of (thread, namespace, channel). No names are kept or compared: an
/// entry is only ever used for the record it names (see the module doc), so two channels whose
/// names hash alike only take each other's place, as an eviction would. A lookup allocates
/// nothing and calls no `memcmp`.
#[derive(Default)]
struct Inner {
    entries: hashbrown::HashMap<u64, Entry, BuildHasherDefault<PassThroughHasher>>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, u64>,
    tick: u64,
    used: u64,
}

/// The cache; shared by every caller of a store.
pub(crate) struct ValueCache {
    budget: u64,
    /// hashbrown's default (foldhash, seeded per process).
    hasher: hashbrown::DefaultHashBuilder,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ValueCache {
    /// A cache holding at most `budget` bytes (0: nothing is kept).
    pub fn new(budget: u64) -> Self {
        ValueCache {
            budget,
            hasher: hashbrown::DefaultHashBuilder::default(),
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn thread_hash(&self, thread: &str) -> u64 {
        self.hasher.hash_one(thread)
    }

    fn key(&self, thread: &str, ns: &str, channel: &str) -> u64 {
        self.hasher.hash_one((thread, ns, channel))
    }

    /// The entry for a channel, if one is held; the caller checks it against the index.
    pub fn get(&self, thread: &str, ns: &str, channel: &str) -> Option<Arc<CachedValue>> {
        self.get_key(self.key(thread, ns, channel))
    }

    /// The whole value at the bottom of a delta chain, decoded from the record at `loc` (every
    /// delta above it starts from it, and decoding it, usually a zstd frame, costs more than
    /// applying the deltas). Keyed by the record, which never changes: an entry is never stale.
    pub fn get_base(&self, loc: Loc) -> Option<Arc<CachedValue>> {
        self.get_key(self.base_key(loc)).filter(|base| base.loc == loc)
    }

    fn base_key(&self, loc: Loc) -> u64 {
        self.hasher.hash_one((loc.segment, loc.offset, "base"))
    }

    fn get_key(&self, key: u64) -> Option<Arc<CachedValue>> {
        if self.budget == 0 {
            return None;
        }
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(&key)?;
        let (value, old) = (entry.value.clone(), std::mem::replace(&mut entry.used_at, tick));
        inner.order.remove(&old);
        inner.order.insert(tick, key);
        Some(value)
    }

    /// Count a lookup that answered (`true`) or not.
    pub fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Hold `value` as the channel's last value, evicting the least recently used beyond the
    /// budget. A value larger than a quarter of the budget is not kept (it would empty the cache
    /// for one channel).
    pub fn insert(&self, thread: &str, ns: &str, channel: &str, value: CachedValue) {
        let cost = value.cost(thread.len() + ns.len() + channel.len());
        self.insert_key(self.key(thread, ns, channel), self.thread_hash(thread), cost, value);
    }

    /// Hold `value`, the whole value decoded from the record at `value.loc`, as a chain's base
    /// (see [`ValueCache::get_base`]).
    pub fn insert_base(&self, thread: &str, value: CachedValue) {
        let cost = value.cost(0);
        self.insert_key(self.base_key(value.loc), self.thread_hash(thread), cost, value);
    }

    fn insert_key(&self, key: u64, thread: u64, cost: u64, value: CachedValue) {
        let mut inner = self.inner.lock();
        if let Some(old) = inner.entries.remove(&key) {
            inner.used -= old.cost;
            inner.order.remove(&old.used_at);
        }
        if cost > self.budget / 4 {
            return;
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.used += cost;
        inner.order.insert(tick, key);
        inner.entries.insert(key, Entry { value: Arc::new(value), thread, cost, used_at: tick });
        while inner.used > self.budget {
            let Some((_, oldest)) = inner.order.pop_first() else { break };
            if let Some(old) = inner.entries.remove(&oldest) {
                inner.used -= old.cost;
            }
        }
    }

    /// Drop every entry of a thread (deleted: its entries could only be stale).
    pub fn forget_thread(&self, thread: &str) {
        let thread = self.thread_hash(thread);
        let mut inner = self.inner.lock();
        let doomed: Vec<(u64, u64, u64)> = inner
            .entries
            .iter()
            .filter(|(_, entry)| entry.thread == thread)
            .map(|(key, entry)| (*key, entry.used_at, entry.cost))
            .collect();
        for (key, at, cost) in doomed {
            inner.entries.remove(&key);
            inner.order.remove(&at);
            inner.used -= cost;
        }
    }

    /// Budget, use and counters.
    pub fn stats(&self) -> ValueCacheStats {
        let inner = self.inner.lock();
        ValueCacheStats {
            budget_bytes: self.budget,
            used_bytes: inner.used,
            entries: inner.entries.len() as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(version: i64, len: usize) -> CachedValue {
        CachedValue {
            version: ChannelVersion::Int(version),
            loc: Loc { segment: 1, offset: 64, len: 10 },
            blob: Arc::new(Blob::new("json", vec![b'x'; len])),
            depth: 0,
            chain_bytes: 0,
            whole_bytes: 10,
        }
    }

    #[test]
    fn keeps_the_last_value_within_the_budget_least_recently_used_out() {
        let cache = ValueCache::new(10_000);
        cache.insert("a", "", "m", value(1, 2000));
        cache.insert("a", "", "m", value(2, 2000));
        assert_eq!(cache.get("a", "", "m").map(|v| v.version.clone()), Some(ChannelVersion::Int(2)));
        assert_eq!(cache.stats().entries, 1);
        cache.insert("b", "", "m", value(1, 2000));
        cache.insert("c", "", "m", value(1, 2000));
        // "a" used last of the three: "b" goes first.
        assert!(cache.get("a", "", "m").is_some());
        cache.insert("d", "", "m", value(1, 2000));
        cache.insert("e", "", "m", value(1, 2000));
        let stats = cache.stats();
        assert!(stats.used_bytes <= 10_000, "{stats:?}");
        assert!(cache.get("b", "", "m").is_none());
        assert!(cache.get("a", "", "m").is_some());
        // Too large for a quarter of the budget: not kept, and the old entry is gone.
        cache.insert("a", "", "m", value(3, 5000));
        assert!(cache.get("a", "", "m").is_none());
        cache.forget_thread("e");
        assert!(cache.get("e", "", "m").is_none());
        let off = ValueCache::new(0);
        off.insert("a", "", "m", value(1, 1));
        assert!(off.get("a", "", "m").is_none());
    }

    #[test]
    fn a_base_is_found_only_by_the_record_it_was_decoded_from() {
        let cache = ValueCache::new(10_000);
        let base = value(1, 100);
        let loc = base.loc;
        cache.insert_base("a", base);
        assert_eq!(cache.get_base(loc).map(|b| b.version.clone()), Some(ChannelVersion::Int(1)));
        // The same bytes moved by a compaction are another record: a miss.
        assert!(cache.get_base(Loc { offset: loc.offset + 1, ..loc }).is_none());
        assert!(cache.get_base(Loc { segment: loc.segment + 1, ..loc }).is_none());
        // Bases and channels' last values share the budget, and a deleted thread's go too.
        cache.insert("a", "", "m", value(2, 100));
        assert_eq!(cache.stats().entries, 2);
        cache.forget_thread("a");
        assert!(cache.get_base(loc).is_none());
        assert_eq!(cache.stats(), ValueCacheStats { budget_bytes: 10_000, ..ValueCacheStats::default() });
    }
}
