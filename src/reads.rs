//! The read path: `get_tuple`, `list`, the delta-channel history.
//!
//! No file is read under the index lock. A read takes the lock twice, briefly, and reads in
//! between and after (raft-engine's `fetch_entries_to` pattern):
//!
//! 1. under the lock, find the checkpoint and pin its record's location ([`Pinned`]: the segment
//!    is held, so a compaction retiring it meanwhile does not take the bytes away);
//! 2. without the lock, read the record: its channel versions say which values to read;
//! 3. under the lock again, check that the index still names that record (else the checkpoint
//!    was replaced, moved by a compaction or deleted in between: start again), and pin the
//!    values' and pending writes' locations;
//! 4. without the lock, read them.
//!
//! What step 3 pins is what the index holds at that moment, and the checkpoint is the one it
//! names then, so the tuple is a state that existed. A checkpoint that keeps changing under the
//! reader is read with the lock held throughout after a few tries, so a read always finishes.
//! `list` runs the same steps for a chunk of candidates at a time.

use std::borrow::Cow;
use std::collections::{BTreeMap, BinaryHeap};

use crate::engine::Engine;
use crate::error::Result;
use crate::index::{CheckpointKey, Index, NamespaceIndex, blob_hash};
use crate::model::{ChannelVersion, Checkpoint, CheckpointTuple, Config, DeltaChannelHistory, ListQuery, Metadata};
use crate::pending::load_pending_writes;
use crate::records::{BlobKey, checkpoint_of, decode_prefix};
use crate::saver::{Ancestor, check_thread_id, metadata_matches, walk_delta_history};
use crate::segment::{Pinned, RecordBytes};
use crate::text::same_text;
use crate::values::{Chain, ChainMemo, pin_chain};

/// Optimistic tries before a read holds the lock throughout.
const OPTIMISTIC_TRIES: usize = 4;

/// Candidates `list` pins in its first lock acquisition; each later chunk doubles, up to
/// [`MAX_LIST_CHUNK`], so a long listing re-opens its sources a logarithmic number of times.
const LIST_CHUNK: usize = 64;

/// The largest chunk `list` pins at once.
const MAX_LIST_CHUNK: usize = 1 << 16;

/// A checkpoint record read outside the lock, with what step 3 needs to find it again.
struct ReadCheckpoint {
    thread: String,
    ns: String,
    key: CheckpointKey,
    /// The key as the id string (formatted once).
    id: String,
    pinned: Pinned,
    metadata: Metadata,
    body: Option<Body>,
}

/// The rest of a checkpoint record.
struct Body {
    checkpoint: Checkpoint,
    parent_id: Option<String>,
}

impl ReadCheckpoint {
    /// The record's body (decoded with its metadata).
    fn body(&mut self) -> Result<Body> {
        self.body.take().ok_or_else(|| crate::error::Error::invariant("a checkpoint body taken twice"))
    }
}

/// The locations step 3 pins: each named channel's value (with its delta chain), and the
/// checkpoint's writes.
struct Contents {
    values: Vec<(String, ChannelVersion, Chain)>,
    writes: Vec<Pinned>,
}

/// Read a checkpoint record, its metadata and body (no lock held); `limit` bounds what a packed
/// record may claim to decode to.
fn read_checkpoint(thread: &str, ns: &str, key: CheckpointKey, pinned: Pinned, limit: u64) -> Result<ReadCheckpoint> {
    let bytes = pinned.read()?;
    let record = checkpoint_of(&bytes.view(), limit).map_err(|reason| pinned.corruption(reason))?;
    let head = &record.head;
    let id = key.as_str().into_owned();
    if head.checkpoint_id != id || head.thread_id != thread || !same_text(&head.checkpoint_ns, ns) {
        return Err(
            pinned.corruption(format!("index entry for checkpoint {id} of thread {thread:?} points at another record"))
        );
    }
    let metadata = serde_json::from_str(&head.metadata_json)
        .map_err(|e| pinned.corruption(format!("metadata is not a JSON object: {e}")))?;
    let body = record.body;
    let body = Body {
        checkpoint: Checkpoint {
            v: body.v,
            id: id.clone(),
            ts: body.ts.into_owned(),
            channel_values: BTreeMap::new(),
            channel_versions: body.channel_versions.into_owned(),
            versions_seen: body.versions_seen.into_owned(),
            updated_channels: body.updated_channels.map(Cow::into_owned),
        },
        parent_id: record.head.parent_id.map(Cow::into_owned),
    };
    Ok(ReadCheckpoint { thread: thread.to_owned(), ns: ns.to_owned(), key, id, pinned, metadata, body: Some(body) })
}

/// Read a blob record outside the lock and check its key against the request, so a hash
/// collision is reported rather than answered with the wrong value.
pub(crate) fn read_blob(
    pinned: &Pinned,
    thread: &str,
    ns: &str,
    channel: &str,
    version: &ChannelVersion,
) -> Result<RecordBytes> {
    let bytes = pinned.read()?;
    let key: BlobKey = decode_prefix(bytes.view().body).map_err(|reason| pinned.corruption(reason))?;
    check_blob_key(pinned, &key, thread, ns, channel, version)?;
    Ok(bytes)
}

/// That the blob record at `pinned` has the key the request names.
pub(crate) fn check_blob_key(
    pinned: &Pinned,
    key: &BlobKey<'_>,
    thread: &str,
    ns: &str,
    channel: &str,
    version: &ChannelVersion,
) -> Result<()> {
    if key.thread_id != thread
        || !same_text(&key.checkpoint_ns, ns)
        || key.channel != channel
        || *key.version != *version
    {
        return Err(pinned.corruption(format!(
            "blob index entry for channel {channel:?} version {version} of thread {thread:?} points at another blob"
        )));
    }
    Ok(())
}

impl Engine {
    /// Step 3, under the lock: if `read` is still the record the index names, pin the values of
    /// `channels` (all of its channels when `None`) and its writes. `None`: it changed.
    fn pin_contents(
        &self,
        index: &Index,
        read: &ReadCheckpoint,
        versions: &BTreeMap<String, ChannelVersion>,
        channels: Option<&[String]>,
    ) -> Result<Option<Contents>> {
        let Some(ns) = index.namespace(&read.thread, &read.ns) else { return Ok(None) };
        if ns.checkpoints.get(&read.key).is_none_or(|slot| slot.loc != read.pinned.loc) {
            return Ok(None);
        }
        let mut values = Vec::new();
        let mut pin_value = |channel: &String, version: &ChannelVersion| -> Result<()> {
            if let Some(chain) = pin_chain(&self.segments, ns, blob_hash(channel, version))? {
                values.push((channel.clone(), version.clone(), chain));
            }
            Ok(())
        };
        match channels {
            None => versions.iter().try_for_each(|(channel, version)| pin_value(channel, version))?,
            Some(channels) => channels
                .iter()
                .filter_map(|channel| versions.get_key_value(channel))
                .try_for_each(|(channel, version)| pin_value(channel, version))?,
        }
        let writes = ns.writes.get(&read.key).map_or(Ok(Vec::new()), |locs| {
            locs.iter().map(|&loc| self.segments.pin(loc)).collect::<Result<Vec<_>>>()
        })?;
        Ok(Some(Contents { values, writes }))
    }

    /// Step 1 for one checkpoint: pin the record the index names for `id` (the latest when
    /// `None`).
    fn pin_checkpoint(&self, thread: &str, ns: &str, id: Option<&str>) -> Result<Option<(CheckpointKey, Pinned)>> {
        let index = self.index.read();
        match find_checkpoint(&index, thread, ns, id) {
            Some((key, slot)) => Ok(Some((key.clone(), self.segments.pin(slot.loc)?))),
            None => Ok(None),
        }
    }

    /// Build the tuple from a record and its pinned contents (no lock held).
    /// `memo` carries values decoded for earlier tuples of the same call (see `ChainMemo`).
    fn assemble(
        &self,
        read: ReadCheckpoint,
        body: Body,
        contents: &Contents,
        memo: &mut ChainMemo,
    ) -> Result<CheckpointTuple> {
        let mut checkpoint = body.checkpoint;
        for (channel, version, chain) in &contents.values {
            if let Some(value) = self.read_value(&read.thread, &read.ns, channel, version, chain, memo)? {
                checkpoint.channel_values.insert(channel.clone(), value);
            }
        }
        let pending_writes = load_pending_writes(&contents.writes)?;
        let config =
            Config { thread_id: read.thread, checkpoint_ns: read.ns, checkpoint_id: Some(checkpoint.id.clone()) };
        let parent_config = body.parent_id.map(|parent| config.clone().with_checkpoint(parent));
        Ok(CheckpointTuple { checkpoint, config, metadata: read.metadata, parent_config, pending_writes })
    }

    /// Steps 3-4 for a record read in step 2: `None` if it changed in between.
    fn finish_read(&self, mut read: ReadCheckpoint) -> Result<Option<CheckpointTuple>> {
        let body = read.body()?;
        let contents = self.pin_contents(&self.index.read(), &read, &body.checkpoint.channel_versions, None)?;
        contents.map(|contents| self.assemble(read, body, &contents, &mut ChainMemo::disabled())).transpose()
    }

    /// One checkpoint, every step; with the lock held throughout once the optimistic tries are
    /// used up (the checkpoint keeps being replaced or moved under the reader).
    fn read_one(&self, thread: &str, ns: &str, id: Option<&str>) -> Result<Option<CheckpointTuple>> {
        for _ in 0..OPTIMISTIC_TRIES {
            let Some((key, pinned)) = self.pin_checkpoint(thread, ns, id)? else { return Ok(None) };
            let read = read_checkpoint(thread, ns, key, pinned, self.read_limit())?;
            if let Some(tuple) = self.finish_read(read)? {
                return Ok(Some(tuple));
            }
        }
        let index = self.index.read();
        let Some((key, slot)) = find_checkpoint(&index, thread, ns, id) else { return Ok(None) };
        let mut read = read_checkpoint(thread, ns, key.clone(), self.segments.pin(slot.loc)?, self.read_limit())?;
        let body = read.body()?;
        match self.pin_contents(&index, &read, &body.checkpoint.channel_versions, None)? {
            Some(contents) => self.assemble(read, body, &contents, &mut ChainMemo::disabled()).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn get_tuple(&self, config: &Config) -> Result<Option<CheckpointTuple>> {
        let _call = self.enter()?;
        check_thread_id(&config.thread_id)?;
        self.read_one(&config.thread_id, &config.checkpoint_ns, config.checkpoint_id.as_deref())
    }

    pub(crate) fn list(&self, query: &ListQuery) -> Result<Vec<CheckpointTuple>> {
        let _call = self.enter()?;
        let limit = query.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cursors = self.list_sources(query);
        let mut out = Vec::new();
        let mut chunk = LIST_CHUNK;
        let mut memo = ChainMemo::new();
        while out.len() < limit {
            // Step 1 for a chunk of candidates, newest first across every source.
            let candidates = self.next_candidates(query, &mut cursors, chunk.min(limit - out.len()))?;
            chunk = (chunk * 2).min(MAX_LIST_CHUNK);
            if candidates.is_empty() {
                break;
            }
            // Step 2, and the metadata filter, outside the lock.
            let mut reads = Vec::with_capacity(candidates.len());
            for (thread, ns, key, pinned) in candidates {
                let read = read_checkpoint(&thread, &ns, key, pinned, self.read_limit())?;
                if metadata_matches(&read.metadata, &query.filter) {
                    reads.push(read);
                }
            }
            // Step 3 for the whole chunk under one lock; a candidate that changed meanwhile is
            // read again on its own (it may no longer match, or no longer exist).
            let mut pinned = Vec::with_capacity(reads.len());
            {
                let index = self.index.read();
                for mut read in reads {
                    let body = read.body()?;
                    let contents = self.pin_contents(&index, &read, &body.checkpoint.channel_versions, None)?;
                    pinned.push((read, body, contents));
                }
            }
            for (read, body, contents) in pinned {
                let tuple = match contents {
                    Some(contents) => Some(self.assemble(read, body, &contents, &mut memo)?),
                    None => self
                        .read_one(&read.thread, &read.ns, Some(&read.id))?
                        .filter(|tuple| metadata_matches(&tuple.metadata, &query.filter)),
                };
                out.extend(tuple);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The (thread, namespace) sources `list` merges, sorted by thread so checkpoints with equal
    /// ids (copied threads) list in a stable order.
    fn list_sources(&self, query: &ListQuery) -> Vec<ListCursor> {
        let index = self.index.read();
        let mut threads: Vec<&str> = match &query.thread_id {
            Some(thread) => index.thread(thread).map(|_| thread.as_str()).into_iter().collect(),
            None => index.threads().map(|(thread, _)| thread).collect(),
        };
        threads.sort_unstable();
        let mut cursors = Vec::new();
        for thread in threads {
            let Some(thread_index) = index.thread(thread) else { continue };
            for ns in thread_index.namespaces.keys() {
                if query.checkpoint_ns.as_deref().is_some_and(|wanted| wanted != ns.as_ref()) {
                    continue;
                }
                cursors.push(ListCursor {
                    thread: thread.to_owned(),
                    ns: ns.to_string(),
                    below: query.before.as_deref().map(CheckpointKey::new),
                });
            }
        }
        cursors
    }

    /// Up to `n` next candidates (thread, namespace, key, pinned record), newest first across
    /// the sources; each source's cursor moves below what it gave.
    fn next_candidates(
        &self,
        query: &ListQuery,
        cursors: &mut [ListCursor],
        n: usize,
    ) -> Result<Vec<(String, String, CheckpointKey, Pinned)>> {
        let index = self.index.read();
        let exact = query.checkpoint_id.as_deref().map(CheckpointKey::new);
        let mut sources: Vec<Box<dyn Iterator<Item = (&CheckpointKey, &crate::index::CheckpointSlot)> + '_>> =
            Vec::with_capacity(cursors.len());
        for cursor in cursors.iter() {
            let Some(ns) = index.namespace(&cursor.thread, &cursor.ns) else {
                sources.push(Box::new(std::iter::empty()));
                continue;
            };
            sources.push(entries_below(ns, exact.as_ref(), cursor.below.as_ref()));
        }
        // A max-heap holding each source's next entry.
        let mut heap = BinaryHeap::new();
        let mut heads = Vec::with_capacity(sources.len());
        for (i, source) in sources.iter_mut().enumerate() {
            let head = source.next();
            if let Some((key, _)) = head {
                heap.push((key, std::cmp::Reverse(i)));
            }
            heads.push(head);
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some((_, std::cmp::Reverse(i))) = heap.pop() else { break };
            let (Some(Some((key, slot))), Some(source)) = (heads.get(i).copied(), sources.get_mut(i)) else { break };
            let next = source.next();
            if let Some((next_key, _)) = next {
                heap.push((next_key, std::cmp::Reverse(i)));
            }
            if let Some(head) = heads.get_mut(i) {
                *head = next;
            }
            if let Some(cursor) = cursors.get_mut(i) {
                cursor.below = Some(key.clone());
                out.push((cursor.thread.clone(), cursor.ns.clone(), key.clone(), self.segments.pin(slot.loc)?));
            }
        }
        Ok(out)
    }

    /// One ancestor for the delta-history walk: its parent, the requested channels' stored
    /// values and its pending writes, without loading other channels.
    fn load_ancestor(
        &self,
        thread: &str,
        ns: &str,
        id: &str,
        channels: &[String],
        memo: &mut ChainMemo,
    ) -> Result<Option<Ancestor>> {
        for _ in 0..OPTIMISTIC_TRIES {
            let Some((key, pinned)) = self.pin_checkpoint(thread, ns, Some(id))? else { return Ok(None) };
            let mut read = read_checkpoint(thread, ns, key, pinned, self.read_limit())?;
            let Body { checkpoint, parent_id } = read.body()?;
            let Some(contents) =
                self.pin_contents(&self.index.read(), &read, &checkpoint.channel_versions, Some(channels))?
            else {
                continue;
            };
            let mut values = BTreeMap::new();
            for (channel, version, chain) in &contents.values {
                if let Some(value) = self.read_value(thread, ns, channel, version, chain, memo)? {
                    values.insert(channel.clone(), value);
                }
            }
            let writes = load_pending_writes(&contents.writes)?;
            return Ok(Some(Ancestor { parent_id, values, writes }));
        }
        // The ancestor keeps changing under the walk: read it through the one-checkpoint path,
        // which falls back to holding the lock.
        let Some(tuple) = self.read_one(thread, ns, Some(id))? else { return Ok(None) };
        let values =
            tuple.checkpoint.channel_values.into_iter().filter(|(channel, _)| channels.contains(channel)).collect();
        Ok(Some(Ancestor {
            parent_id: tuple.parent_config.and_then(|p| p.checkpoint_id),
            values,
            writes: tuple.pending_writes,
        }))
    }

    pub(crate) fn get_delta_channel_history(
        &self,
        config: &Config,
        channels: &[String],
    ) -> Result<BTreeMap<String, DeltaChannelHistory>> {
        let _call = self.enter()?;
        check_thread_id(&config.thread_id)?;
        let (thread, ns) = (config.thread_id.as_str(), config.checkpoint_ns.as_str());
        let start = match self.pin_checkpoint(thread, ns, config.checkpoint_id.as_deref())? {
            Some((key, _)) => self
                .load_ancestor(thread, ns, &key.as_str(), &[], &mut ChainMemo::disabled())?
                .and_then(|a| a.parent_id),
            None => None,
        };
        // Ancestors share their values' chains: one memo for the whole walk.
        let mut memo = ChainMemo::new();
        walk_delta_history(channels, start, |id| self.load_ancestor(thread, ns, id, channels, &mut memo))
    }
}

/// The checkpoint `id` of (thread, namespace) in the index, or its latest when `id` is `None`.
fn find_checkpoint<'a>(
    index: &'a Index,
    thread: &str,
    ns: &str,
    id: Option<&str>,
) -> Option<(&'a CheckpointKey, &'a crate::index::CheckpointSlot)> {
    let namespace = index.namespace(thread, ns)?;
    match id {
        Some(id) => namespace.checkpoints.get_key_value(&CheckpointKey::new(id)),
        None => namespace.checkpoints.last_key_value(),
    }
}

/// Where `list` stands in one (thread, namespace): it has given every checkpoint at or above
/// `below`.
struct ListCursor {
    thread: String,
    ns: String,
    below: Option<CheckpointKey>,
}

/// The checkpoints of `ns` below `below`, newest first (only `exact`, if given).
fn entries_below<'a>(
    ns: &'a NamespaceIndex,
    exact: Option<&CheckpointKey>,
    below: Option<&CheckpointKey>,
) -> Box<dyn Iterator<Item = (&'a CheckpointKey, &'a crate::index::CheckpointSlot)> + 'a> {
    match (exact, below) {
        (Some(exact), _) => {
            Box::new(ns.checkpoints.get_key_value(exact).filter(|(key, _)| below.is_none_or(|b| *key < b)).into_iter())
        }
        (None, Some(below)) => Box::new(ns.checkpoints.range(..below.clone()).rev()),
        (None, None) => Box::new(ns.checkpoints.iter().rev()),
    }
}

impl Engine {
    /// The pinned chain and version of `channel`'s value in the latest checkpoint of (thread,
    /// ns); `None` if there is none (or the namespace keeps changing under the read).
    pub(crate) fn pin_latest_value(
        &self,
        thread: &str,
        ns: &str,
        channel: &str,
    ) -> Result<Option<(Chain, ChannelVersion)>> {
        let channels = [channel.to_owned()];
        for _ in 0..OPTIMISTIC_TRIES {
            let Some((key, pinned)) = self.pin_checkpoint(thread, ns, None)? else { return Ok(None) };
            let mut read = read_checkpoint(thread, ns, key, pinned, self.read_limit())?;
            let body = read.body()?;
            let Some(contents) =
                self.pin_contents(&self.index.read(), &read, &body.checkpoint.channel_versions, Some(&channels))?
            else {
                continue;
            };
            return Ok(contents.values.into_iter().next().map(|(_, version, chain)| (chain, version)));
        }
        Ok(None)
    }
}
