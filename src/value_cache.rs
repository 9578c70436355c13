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

/// An entry: the value, its thread's hash (for `forget_thread`), the hash of its (thread,
/// namespace, channel), its cost and its last use.
struct Entry {
    value: Arc<CachedValue>,
    thread: u64,
    name: u64,
    cost: u64,
    used_at: u64,
}

/// One pool of entries within its own budget, least recently used out. Entries are keyed by a
/// 64-bit hash: of (thread, namespace, channel) for channels' last values, of the record's
/// location for decoded records. No names are kept or compared: an entry is only ever used for
/// the record it names (see the module doc), so two keys that hash alike only take each other's
/// place, as an eviction would. A lookup allocates nothing and calls no `memcmp`.
struct Pool {
    budget: u64,
    entries: hashbrown::HashMap<u64, Entry, BuildHasherDefault<PassThroughHasher>>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, u64>,
    tick: u64,
    used: u64,
}

impl Pool {
    fn new(budget: u64) -> Self {
        Pool { budget, entries: hashbrown::HashMap::default(), order: BTreeMap::new(), tick: 0, used: 0 }
    }

    /// The entry under `key` if it is of `name` (see [`Entry`]).
    fn get(&mut self, key: u64, name: u64) -> Option<Arc<CachedValue>> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(&key).filter(|entry| entry.name == name)?;
        let (value, old) = (entry.value.clone(), std::mem::replace(&mut entry.used_at, tick));
        self.order.remove(&old);
        self.order.insert(tick, key);
        Some(value)
    }

    /// Hold `value` under `key`, evicting the least recently used beyond the budget. A value
    /// costing more than a quarter of the budget is not kept (it would empty the pool for one
    /// value), and the entry it would have replaced is gone.
    fn insert(&mut self, key: u64, thread: u64, name: u64, cost: u64, value: CachedValue) {
        if let Some(old) = self.entries.remove(&key) {
            self.used -= old.cost;
            self.order.remove(&old.used_at);
        }
        if cost > self.budget / 4 {
            return;
        }
        self.tick += 1;
        let tick = self.tick;
        self.used += cost;
        self.order.insert(tick, key);
        self.entries.insert(key, Entry { value: Arc::new(value), thread, name, cost, used_at: tick });
        while self.used > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some(old) = self.entries.remove(&oldest) {
                self.used -= old.cost;
            }
        }
    }

    fn forget_thread(&mut self, thread: u64) {
        let doomed: Vec<(u64, u64, u64)> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.thread == thread)
            .map(|(key, entry)| (*key, entry.used_at, entry.cost))
            .collect();
        for (key, at, cost) in doomed {
            self.entries.remove(&key);
            self.order.remove(&at);
            self.used -= cost;
        }
    }
}

/// The cache; shared by every caller of a store. Two pools in one budget: the channels' last
/// values (three quarters: what writes need as delta bases and latest reads return) and
/// decoded records (a quarter: chain bottoms and older versions reads rebuilt), so reading a
/// long history never pushes out what the next write needs.
pub(crate) struct ValueCache {
    budget: u64,
    /// hashbrown's default (foldhash, seeded per process).
    hasher: hashbrown::DefaultHashBuilder,
    latest: Mutex<Pool>,
    records: Mutex<Pool>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ValueCache {
    /// A cache holding at most `budget` bytes (0: nothing is kept).
    pub fn new(budget: u64) -> Self {
        let records = budget / 4;
        ValueCache {
            budget,
            hasher: hashbrown::DefaultHashBuilder::default(),
            latest: Mutex::new(Pool::new(budget - records)),
            records: Mutex::new(Pool::new(records)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Whether the cache has any budget (with none, callers need not prepare entries).
    pub fn keeps_anything(&self) -> bool {
        self.budget > 0
    }

    fn thread_hash(&self, thread: &str) -> u64 {
        self.hasher.hash_one(thread)
    }

    fn key(&self, thread: &str, ns: &str, channel: &str) -> u64 {
        self.hasher.hash_one((thread, ns, channel))
    }

    /// The entry for a channel, if one is held; the caller checks it against the index.
    pub fn get(&self, thread: &str, ns: &str, channel: &str) -> Option<Arc<CachedValue>> {
        if self.budget == 0 {
            return None;
        }
        let key = self.key(thread, ns, channel);
        self.latest.lock().get(key, key)
    }

    /// The value of (thread, ns, channel) decoded from the record at `loc`: a delta chain's
    /// bottom (every delta above it starts from it, and decoding it, usually a zstd frame,
    /// costs more than applying the deltas) or an older version a read rebuilt. Keyed by the
    /// record, which never changes in place. The names are checked too: a read-only store
    /// following a writer that restarted can see a segment number come back, with other
    /// records at the same offsets (the caller checks the version as well).
    pub fn get_record(&self, loc: Loc, thread: &str, ns: &str, channel: &str) -> Option<Arc<CachedValue>> {
        if self.budget == 0 {
            return None;
        }
        let name = self.key(thread, ns, channel);
        self.records.lock().get(self.hasher.hash_one(loc), name).filter(|value| value.loc == loc)
    }

    /// Count a lookup that answered (`true`) or not.
    pub fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Hold `value` as the channel's last value (see [`Pool::insert`]).
    pub fn insert(&self, thread: &str, ns: &str, channel: &str, value: CachedValue) {
        let cost = value.cost(thread.len() + ns.len() + channel.len());
        let key = self.key(thread, ns, channel);
        self.latest.lock().insert(key, self.thread_hash(thread), key, cost, value);
    }

    /// Hold `value` of (thread, ns, channel), decoded from the record at `value.loc` (see
    /// [`ValueCache::get_record`]).
    pub fn insert_record(&self, thread: &str, ns: &str, channel: &str, value: CachedValue) {
        let cost = value.cost(0);
        let (key, name) = (self.hasher.hash_one(value.loc), self.key(thread, ns, channel));
        self.records.lock().insert(key, self.thread_hash(thread), name, cost, value);
    }

    /// Drop every entry of a thread (deleted: its entries could only be stale).
    pub fn forget_thread(&self, thread: &str) {
        let thread = self.thread_hash(thread);
        self.latest.lock().forget_thread(thread);
        self.records.lock().forget_thread(thread);
    }

    /// Budget, use and counters.
    pub fn stats(&self) -> ValueCacheStats {
        let (latest, records) = (self.latest.lock(), self.records.lock());
        ValueCacheStats {
            budget_bytes: self.budget,
            used_bytes: latest.used + records.used,
            entries: (latest.entries.len() + records.entries.len()) as u64,
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
        // Three quarters of the budget, 10,001 bytes, hold channels' last values.
        let cache = ValueCache::new(13_334);
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
        assert!(stats.used_bytes <= 10_001, "{stats:?}");
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
    fn a_record_is_found_only_by_the_location_it_was_decoded_from() {
        let cache = ValueCache::new(10_000);
        let base = value(1, 100);
        let loc = base.loc;
        cache.insert_record("a", "", "m", base);
        assert_eq!(cache.get_record(loc, "a", "", "m").map(|b| b.version.clone()), Some(ChannelVersion::Int(1)));
        // The same bytes moved by a compaction are another record: a miss.
        assert!(cache.get_record(Loc { offset: loc.offset + 1, ..loc }, "a", "", "m").is_none());
        assert!(cache.get_record(Loc { segment: loc.segment + 1, ..loc }, "a", "", "m").is_none());
        // Another channel's record at a location seen before (a follower whose writer
        // restarted and reused a segment number): a miss.
        assert!(cache.get_record(loc, "a", "", "other").is_none());
        assert!(cache.get_record(loc, "b", "", "m").is_none());
        // Bases and channels' last values share the budget, and a deleted thread's go too.
        cache.insert("a", "", "m", value(2, 100));
        assert_eq!(cache.stats().entries, 2);
        cache.forget_thread("a");
        assert!(cache.get_record(loc, "a", "", "m").is_none());
        assert_eq!(cache.stats(), ValueCacheStats { budget_bytes: 10_000, ..ValueCacheStats::default() });
        // Records and last values have separate pools: a long read of history keeps the last
        // values the next writes need.
        cache.insert("b", "", "m", value(1, 100));
        for offset in 0..100 {
            cache.insert_record(
                "b",
                "",
                "m",
                CachedValue { loc: Loc { segment: 2, offset, len: 10 }, ..value(1, 100) },
            );
        }
        assert!(cache.get("b", "", "m").is_some());
        assert!(cache.stats().used_bytes <= 10_000);
    }
}
