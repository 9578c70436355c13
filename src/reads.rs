//! The read path: `get_tuple`, `list`, the delta-channel history, and the record reads behind
//! them.

use std::borrow::Cow;
use std::collections::BinaryHeap;

use crate::engine::Engine;
use crate::error::Result;
use crate::index::{CheckpointKey, CheckpointSlot, NamespaceIndex, blob_hash};
use crate::model::{
    Blob, ChannelVersion, Checkpoint, CheckpointTuple, Config, DeltaChannelHistory, ListQuery, Metadata,
};
use crate::pending::{load_pending_writes, record_error};
use crate::plans;
use crate::records::{BlobKey, BlobRecord, CheckpointHead, CheckpointRecord, decode_prefix};
use crate::saver::{Ancestor, check_thread_id, metadata_matches, walk_delta_history};
use crate::segment::{Loc, RecordBytes};

/// One (thread, namespace) source for `list`'s newest-first merge.
struct ListSource<'a> {
    thread: &'a str,
    ns_name: &'a str,
    ns: &'a NamespaceIndex,
    entries: Box<dyn Iterator<Item = (&'a CheckpointKey, &'a CheckpointSlot)> + 'a>,
}

impl Engine {
    /// Decode the body of a record read from the log; a record that passed its CRC but does
    /// not decode is corruption at its location.
    pub(crate) fn decoded<'b, T: serde::Deserialize<'b>>(&self, bytes: &'b RecordBytes) -> Result<T> {
        plans::decoded(&self.segments, bytes)
    }

    /// The blob record of (channel, version) in `ns`, if stored, read once. Its key is checked
    /// against the request, so a hash collision is reported rather than answered with the
    /// wrong value.
    pub(crate) fn find_blob(
        &self,
        thread: &str,
        ns_name: &str,
        ns: &NamespaceIndex,
        channel: &str,
        version: &ChannelVersion,
    ) -> Result<Option<RecordBytes>> {
        let Some(loc) = ns.stored_blob(blob_hash(channel, version)).map(|slot| slot.loc) else { return Ok(None) };
        let bytes = self.segments.read_record(loc)?;
        let key: BlobKey =
            decode_prefix(bytes.view().body).map_err(|reason| record_error(&self.segments, loc, reason))?;
        if key.thread_id != thread || key.checkpoint_ns != ns_name || key.channel != channel || *key.version != *version
        {
            return Err(record_error(
                &self.segments,
                loc,
                format!(
                    "blob index entry for channel {channel:?} version {version} of thread {thread:?} points at another blob"
                ),
            ));
        }
        Ok(Some(bytes))
    }

    /// The stored value of (channel, version) in `ns`; `None` if nothing is stored or it is the
    /// `empty` sentinel.
    pub(crate) fn blob_value(
        &self,
        thread: &str,
        ns_name: &str,
        ns: &NamespaceIndex,
        channel: &str,
        version: &ChannelVersion,
    ) -> Result<Option<Blob>> {
        let Some(bytes) = self.find_blob(thread, ns_name, ns, channel, version)? else { return Ok(None) };
        let record: BlobRecord = self.decoded(&bytes)?;
        Ok(record.value.map(|value| value.to_blob()))
    }

    /// Read a checkpoint record and decode it.
    pub(crate) fn read_checkpoint(&self, loc: Loc) -> Result<(RecordBytes, Metadata)> {
        let bytes = self.segments.read_record(loc)?;
        let head: CheckpointHead =
            decode_prefix(bytes.view().body).map_err(|reason| record_error(&self.segments, loc, reason))?;
        let metadata = serde_json::from_str(&head.metadata_json)
            .map_err(|e| record_error(&self.segments, loc, format!("metadata is not a JSON object: {e}")))?;
        Ok((bytes, metadata))
    }

    /// Assemble the tuple of one indexed checkpoint.
    pub(crate) fn load_tuple(
        &self,
        thread: &str,
        ns_name: &str,
        ns: &NamespaceIndex,
        key: &CheckpointKey,
        slot: &CheckpointSlot,
        loaded: Option<(RecordBytes, Metadata)>,
    ) -> Result<CheckpointTuple> {
        let (bytes, metadata) = match loaded {
            Some(loaded) => loaded,
            None => self.read_checkpoint(slot.loc)?,
        };
        let record: CheckpointRecord = self.decoded(&bytes)?;
        let id = key.as_str();
        if record.head.checkpoint_id != id || record.head.thread_id != thread || record.head.checkpoint_ns != ns_name {
            return Err(record_error(
                &self.segments,
                slot.loc,
                format!("index entry for checkpoint {id} of thread {thread:?} points at another record"),
            ));
        }
        let body = record.body;
        let mut channel_values = std::collections::BTreeMap::new();
        for (channel, version) in body.channel_versions.iter() {
            if let Some(value) = self.blob_value(thread, ns_name, ns, channel, version)? {
                channel_values.insert(channel.clone(), value);
            }
        }
        let pending_writes = match ns.writes.get(key) {
            Some(locs) => load_pending_writes(&self.segments, locs)?,
            None => Vec::new(),
        };
        let config = Config {
            thread_id: thread.to_owned(),
            checkpoint_ns: ns_name.to_owned(),
            checkpoint_id: Some(id.to_string()),
        };
        let parent_config = record.head.parent_id.map(|parent| config.clone().with_checkpoint(parent.into_owned()));
        Ok(CheckpointTuple {
            checkpoint: Checkpoint {
                v: body.v,
                id: id.into_owned(),
                ts: body.ts.into_owned(),
                channel_values,
                channel_versions: body.channel_versions.into_owned(),
                versions_seen: body.versions_seen.into_owned(),
                updated_channels: body.updated_channels.map(Cow::into_owned),
            },
            config,
            metadata,
            parent_config,
            pending_writes,
        })
    }

    /// One ancestor for the delta-history walk: its parent, the requested channels' stored
    /// values and its pending writes, without loading other channels.
    pub(crate) fn load_ancestor(
        &self,
        thread: &str,
        ns_name: &str,
        ns: &NamespaceIndex,
        id: &str,
        channels: &[String],
    ) -> Result<Option<Ancestor>> {
        let Some((key, slot)) = ns.checkpoints.get_key_value(&CheckpointKey::new(id)) else { return Ok(None) };
        let bytes = self.segments.read_record(slot.loc)?;
        let record: CheckpointRecord = self.decoded(&bytes)?;
        let mut values = std::collections::BTreeMap::new();
        for channel in channels {
            let Some(version) = record.body.channel_versions.get(channel) else { continue };
            if let Some(value) = self.blob_value(thread, ns_name, ns, channel, version)? {
                values.insert(channel.clone(), value);
            }
        }
        let writes = match ns.writes.get(key) {
            Some(locs) => load_pending_writes(&self.segments, locs)?,
            None => Vec::new(),
        };
        Ok(Some(Ancestor { parent_id: record.head.parent_id.map(Cow::into_owned), values, writes }))
    }

    pub(crate) fn get_tuple(&self, config: &Config) -> Result<Option<CheckpointTuple>> {
        let _call = self.enter()?;
        check_thread_id(&config.thread_id)?;
        let index = self.index.read();
        let Some(ns) = index.namespace(&config.thread_id, &config.checkpoint_ns) else { return Ok(None) };
        let found = match &config.checkpoint_id {
            Some(id) => ns.checkpoints.get_key_value(&CheckpointKey::new(id)),
            None => ns.checkpoints.last_key_value(),
        };
        let Some((key, slot)) = found else { return Ok(None) };
        self.load_tuple(&config.thread_id, &config.checkpoint_ns, ns, key, slot, None).map(Some)
    }

    pub(crate) fn list(&self, query: &ListQuery) -> Result<Vec<CheckpointTuple>> {
        let _call = self.enter()?;
        let limit = query.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = self.index.read();
        let before = query.before.as_deref().map(CheckpointKey::new);
        let exact = query.checkpoint_id.as_deref().map(CheckpointKey::new);
        let mut sources = Vec::new();
        let threads: Vec<(&str, &crate::index::ThreadIndex)> = match &query.thread_id {
            Some(thread) => index.thread(thread).map(|t| (thread.as_str(), t)).into_iter().collect(),
            None => {
                // Sorted, so checkpoints with equal ids (copied threads) list in a stable order.
                let mut all: Vec<_> = index.threads().collect();
                all.sort_unstable_by(|a, b| a.0.cmp(b.0));
                all
            }
        };
        for (thread, thread_index) in threads {
            for (ns_name, ns) in &thread_index.namespaces {
                if query.checkpoint_ns.as_deref().is_some_and(|wanted| wanted != ns_name.as_ref()) {
                    continue;
                }
                let entries: Box<dyn Iterator<Item = _>> = match (&exact, &before) {
                    (Some(exact), _) => Box::new(
                        ns.checkpoints
                            .get_key_value(exact)
                            .filter(|(key, _)| before.as_ref().is_none_or(|b| *key < b))
                            .into_iter(),
                    ),
                    (None, Some(before)) => Box::new(ns.checkpoints.range(..before.clone()).rev()),
                    (None, None) => Box::new(ns.checkpoints.iter().rev()),
                };
                sources.push(ListSource { thread, ns_name, ns, entries });
            }
        }
        // Newest first across every source: a max-heap holding each source's next entry.
        let mut heap = BinaryHeap::new();
        let mut heads = Vec::with_capacity(sources.len());
        for (i, source) in sources.iter_mut().enumerate() {
            let head = source.entries.next();
            if let Some((key, _)) = head {
                heap.push((key, std::cmp::Reverse(i)));
            }
            heads.push(head);
        }
        let mut out = Vec::new();
        while let Some((_, std::cmp::Reverse(i))) = heap.pop() {
            let Some((key, slot)) = heads[i] else { continue };
            heads[i] = sources[i].entries.next();
            if let Some((next, _)) = heads[i] {
                heap.push((next, std::cmp::Reverse(i)));
            }
            let source = &sources[i];
            let loaded = self.read_checkpoint(slot.loc)?;
            if !metadata_matches(&loaded.1, &query.filter) {
                continue;
            }
            out.push(self.load_tuple(source.thread, source.ns_name, source.ns, key, slot, Some(loaded))?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub(crate) fn get_delta_channel_history(
        &self,
        config: &Config,
        channels: &[String],
    ) -> Result<std::collections::BTreeMap<String, DeltaChannelHistory>> {
        let _call = self.enter()?;
        check_thread_id(&config.thread_id)?;
        let (thread, ns_name) = (config.thread_id.as_str(), config.checkpoint_ns.as_str());
        // One read lock for the whole walk: a consistent view, no per-ancestor lookups.
        let index = self.index.read();
        let Some(ns) = index.namespace(thread, ns_name) else {
            return walk_delta_history(channels, None, |_| Ok(None));
        };
        let target = match &config.checkpoint_id {
            Some(id) => ns.checkpoints.get_key_value(&CheckpointKey::new(id)),
            None => ns.checkpoints.last_key_value(),
        };
        let start = match target {
            Some((key, _)) => self.load_ancestor(thread, ns_name, ns, &key.as_str(), &[])?.and_then(|a| a.parent_id),
            None => None,
        };
        walk_delta_history(channels, start, |id| self.load_ancestor(thread, ns_name, ns, id, channels))
    }
}
