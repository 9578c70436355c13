//! The write path: `put`, `put_writes`, and the deletes, copy and prune, which hand their plans
//! to the commit leader (`plans.rs`).

use std::borrow::Cow;
use std::sync::Arc;

use crate::commit::{Batch, Committed, Work};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::index::blob_hash;
use crate::model::{Blob, ChannelVersion, ChannelVersions, Checkpoint, Config, Metadata, PruneStrategy};
use crate::options::Retention;
use crate::pending::encode_writes;
use crate::plans;
use crate::reads::read_blob;
use crate::records::{
    BlobKey, CheckpointBody, CheckpointHead, CheckpointRecord, PackedCheckpointRecord, ValueHead, ValueRecord,
};
use crate::saver::check_thread_id;
use crate::segment::Pinned;
use crate::value_cache::CachedValue;
use crate::values::{self, MIN_DELTA_VALUE};

/// Push a checkpoint record, its metadata and body compressed at `level` when that makes it
/// smaller (the one way checkpoint records are written: put, copy, retention's rewrites).
pub(crate) fn push_checkpoint(batch: &mut Batch, record: &CheckpointRecord<'_>, level: Option<i32>) -> Result<()> {
    match PackedCheckpointRecord::pack(record, level) {
        Some(packed) => batch.push(&packed),
        None => batch.push(record),
    }
}

/// The `run_id` of metadata given as JSON text (a string value, as `run_id_of` reads it),
/// checking that the text is one JSON object that reads will parse back. It is walked exactly as
/// reads parse it (numbers parsed, strings unescaped, serde_json's 128-level nesting limit), so
/// a number out of range or a lone surrogate escape is refused here instead of stored
/// unreadable, but nothing is built.
fn metadata_run_id(json: &str) -> std::result::Result<Option<String>, String> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let run_id = serde::Deserializer::deserialize_map(&mut deserializer, MetadataCheck).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(run_id)
}

/// Walks metadata's top-level object for [`metadata_run_id`]: yields its `run_id` string.
struct MetadataCheck;

impl<'de> serde::de::Visitor<'de> for MetadataCheck {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let mut run_id = None;
        while let Some(IsRunId(is_run_id)) = map.next_key::<IsRunId>()? {
            let JsonValue(text) = map.next_value_seed(JsonSeed(is_run_id))?;
            if is_run_id {
                run_id = text;
            }
        }
        Ok(run_id)
    }
}

/// A key, checked and compared with `"run_id"` without being kept.
struct IsRunId(bool);

impl<'de> serde::Deserialize<'de> for IsRunId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = IsRunId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E>(self, key: &str) -> std::result::Result<IsRunId, E> {
                Ok(IsRunId(key == "run_id"))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Any JSON value, checked exactly as `serde_json::Value` would be parsed and then dropped; a
/// top-level string is kept when asked (the run id). Nothing else is allocated.
struct JsonValue(Option<String>);

/// [`JsonValue`] as a seed: whether to keep a string.
struct JsonSeed(bool);

impl<'de> serde::de::DeserializeSeed<'de> for JsonSeed {
    type Value = JsonValue;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> std::result::Result<JsonValue, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonSeed {
    type Value = JsonValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<JsonValue, E> {
        Ok(JsonValue(None))
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<JsonValue, E> {
        Ok(JsonValue(None))
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<JsonValue, E> {
        Ok(JsonValue(None))
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<JsonValue, E> {
        Ok(JsonValue(None))
    }
    fn visit_str<E>(self, text: &str) -> std::result::Result<JsonValue, E> {
        Ok(JsonValue(self.0.then(|| text.to_owned())))
    }
    fn visit_unit<E>(self) -> std::result::Result<JsonValue, E> {
        Ok(JsonValue(None))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<JsonValue, A::Error> {
        while seq.next_element_seed(JsonSeed(false))?.is_some() {}
        Ok(JsonValue(None))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<JsonValue, A::Error> {
        while map.next_key::<IsRunId>()?.is_some() {
            map.next_value_seed(JsonSeed(false))?;
        }
        Ok(JsonValue(None))
    }
}

/// How often a put whose assumed values vanished is encoded again before giving up (each retry
/// writes the vanished values itself, so a second one needs yet another delete in between).
const MAX_STALE_RETRIES: usize = 64;

impl Engine {
    pub(crate) fn check_value(&self, what: impl FnOnce() -> String, value: &Blob) -> Result<()> {
        let size = value.bytes.len() as u64;
        if size > self.options.max_value_bytes {
            return Err(Error::TooLarge { what: what(), size, limit: self.options.max_value_bytes });
        }
        Ok(())
    }

    pub(crate) fn put(
        &self,
        config: &Config,
        checkpoint: &Checkpoint,
        metadata: &Metadata,
        new_versions: &ChannelVersions,
    ) -> Result<Config> {
        let metadata_json = serde_json::to_string(metadata).map_err(|e| Error::invalid(format!("metadata: {e}")))?;
        // The same check as text handed over: a map nested deeper than reads parse is refused.
        self.put_json(config, checkpoint, &metadata_json, new_versions)
    }

    /// `put` with the metadata as the JSON object text to store, checked to be one that reads
    /// parse back, and stored as given: for a caller that already holds the text
    /// (`LogStore::put_with_metadata_json`).
    pub(crate) fn put_json(
        &self,
        config: &Config,
        checkpoint: &Checkpoint,
        metadata_json: &str,
        new_versions: &ChannelVersions,
    ) -> Result<Config> {
        let run_id = metadata_run_id(metadata_json).map_err(|e| {
            Error::invalid(format!(
                "metadata of checkpoint {} is not a JSON object that reads can parse back: {e}",
                checkpoint.id
            ))
        })?;
        self.put_metadata_json(config, checkpoint, metadata_json, run_id.as_deref(), new_versions)
    }

    fn put_metadata_json(
        &self,
        config: &Config,
        checkpoint: &Checkpoint,
        metadata_json: &str,
        run_id: Option<&str>,
        new_versions: &ChannelVersions,
    ) -> Result<Config> {
        let _call = self.enter()?;
        check_thread_id(&config.thread_id)?;
        if checkpoint.id.is_empty() {
            return Err(Error::invalid(format!("checkpoint for thread {:?} has an empty id", config.thread_id)));
        }
        let (thread, ns_name) = (&config.thread_id, &config.checkpoint_ns);
        for value in
            new_versions.keys().filter_map(|channel| checkpoint.channel_values.get(channel).map(|v| (channel, v)))
        {
            self.check_value(|| format!("channel {:?} of thread {thread:?}", value.0), value.1)?;
        }
        // A value already stored is not written again; the leader checks that it is still
        // stored when the batch commits (a delete or a compaction may drop it meanwhile), and a
        // stale batch is encoded again, writing the value this time. A new value is stored as a
        // delta against the channel's last value when that is smaller: the leader checks that
        // the index still names the very record the delta was made against.
        for _attempt in 0..MAX_STALE_RETRIES {
            let mut batch = Batch::new();
            // Under the lock: which values are stored already (their keys checked after), and
            // which cached last values the index still names (usable as delta bases). Versions the
            // checkpoint carries over from its parent are read, not written: the leader checks
            // that those stored are still there, and one stored but no longer reusable (a delta
            // nothing reads, whose base compaction may have dropped) is written again from the
            // checkpoint's values.
            let mut to_store: Vec<(&String, &ChannelVersion)> = new_versions.iter().collect();
            let (stored, mut bases): (Vec<Option<Pinned>>, Vec<Option<Arc<CachedValue>>>) = {
                let index = self.index.read();
                let ns = index.namespace(thread, ns_name);
                for (channel, version) in &checkpoint.channel_versions {
                    if new_versions.contains_key(channel) {
                        continue;
                    }
                    let hash = blob_hash(channel, version);
                    if ns.and_then(|ns| ns.reusable_blob(hash)).is_some() {
                        batch.assume_stored(thread, ns_name, hash);
                    } else if ns.and_then(|ns| ns.stored_blob(hash)).is_some()
                        && let Some(value) = checkpoint.channel_values.get(channel)
                    {
                        self.check_value(|| format!("channel {channel:?} of thread {thread:?}"), value)?;
                        // Stored, not reusable: the value is there, its chain may not be. (A
                        // version not stored at all stays unfound, as the protocol says: only
                        // `new_versions` are written.)
                        to_store.push((channel, version));
                    }
                }
                let mut stored = Vec::with_capacity(to_store.len());
                let mut bases = Vec::with_capacity(to_store.len());
                for &(channel, version) in &to_store {
                    let found = ns.and_then(|ns| ns.reusable_blob(blob_hash(channel, version)));
                    stored.push(found.map(|slot| self.segments.pin(slot.loc)).transpose()?);
                    let wants_base = found.is_none()
                        && self.options.values.deltas
                        && checkpoint.channel_values.get(channel).is_some_and(|v| v.bytes.len() >= MIN_DELTA_VALUE);
                    let base = wants_base
                        .then(|| self.value_cache.get(thread, ns_name, channel))
                        .flatten()
                        .filter(|cached| &cached.version != version)
                        .filter(|cached| {
                            ns.and_then(|ns| ns.reusable_blob(blob_hash(channel, &cached.version)))
                                .is_some_and(|slot| slot.loc == cached.loc)
                        });
                    bases.push(base);
                }
                (stored, bases)
            };
            // Values to remember once committed: (record position, channel, version, encoding).
            let mut fills = Vec::new();
            for (((channel, version), stored), base) in to_store.iter().copied().zip(stored).zip(bases.iter_mut()) {
                if let Some(pinned) = stored {
                    read_blob(&pinned, thread, ns_name, channel, version)?;
                    batch.assume_stored(thread, ns_name, blob_hash(channel, version));
                    continue;
                }
                let key = BlobKey {
                    thread_id: Cow::Borrowed(thread),
                    checkpoint_ns: Cow::Borrowed(ns_name),
                    channel: Cow::Borrowed(channel),
                    version: Cow::Borrowed(version),
                };
                let Some(value) = checkpoint.channel_values.get(channel) else {
                    batch.push(&ValueRecord { head: ValueHead { key, base: None, depth: 0 }, value: None })?;
                    continue;
                };
                // A carried-over version written again is an older value: it must not take the
                // channel's place in the cache.
                let cacheable = value.bytes.len() >= MIN_DELTA_VALUE && new_versions.contains_key(channel);
                if self.options.values.deltas && cacheable {
                    self.value_cache.count(base.is_some());
                    if base.is_none() {
                        *base = self.latest_value(thread, ns_name, channel).filter(|latest| &latest.version != version);
                    }
                }
                if let Some(base) = base.as_ref() {
                    batch.assume_record(thread, ns_name, blob_hash(channel, &base.version), base.loc);
                }
                let encoded = values::encode(key, value, base.as_deref(), &self.options.values);
                if cacheable {
                    fills.push((
                        batch.record_count(),
                        channel,
                        version,
                        value,
                        encoded.depth,
                        encoded.chain_bytes,
                        encoded.whole_bytes,
                    ));
                }
                batch.push(&encoded.record)?;
            }
            let record = CheckpointRecord {
                head: CheckpointHead {
                    thread_id: Cow::Borrowed(thread),
                    checkpoint_ns: Cow::Borrowed(ns_name),
                    checkpoint_id: Cow::Borrowed(&checkpoint.id),
                    parent_id: config.checkpoint_id.as_deref().map(Cow::Borrowed),
                    run_id: run_id.map(Cow::Borrowed),
                    metadata_json: Cow::Borrowed(metadata_json),
                },
                body: CheckpointBody {
                    v: checkpoint.v,
                    ts: Cow::Borrowed(&checkpoint.ts),
                    channel_versions: Cow::Borrowed(&checkpoint.channel_versions),
                    versions_seen: Cow::Borrowed(&checkpoint.versions_seen),
                    updated_channels: checkpoint.updated_channels.as_deref().map(Cow::Borrowed),
                },
            };
            push_checkpoint(&mut batch, &record, self.options.values.compression_level)?;
            match self.committer.commit(Work::Encoded(batch), &self.index)? {
                Committed::Done(locs) => {
                    for (at, channel, version, value, depth, chain_bytes, whole_bytes) in fills {
                        let Some(&loc) = locs.get(at) else { continue };
                        let entry = CachedValue {
                            version: version.clone(),
                            loc,
                            blob: Arc::new(value.clone()),
                            depth,
                            chain_bytes,
                            whole_bytes,
                        };
                        self.value_cache.insert(thread, ns_name, channel, entry);
                    }
                    return Ok(Config {
                        thread_id: thread.clone(),
                        checkpoint_ns: ns_name.clone(),
                        checkpoint_id: Some(checkpoint.id.clone()),
                    });
                }
                Committed::Stale => continue,
            }
        }
        Err(Error::invalid(format!(
            "put of checkpoint {} of thread {thread:?}: its stored values kept being deleted under it; retry",
            checkpoint.id
        )))
    }

    pub(crate) fn put_writes(
        &self,
        config: &Config,
        writes: &[(String, Blob)],
        task_id: &str,
        task_path: &str,
    ) -> Result<()> {
        let _call = self.enter()?;
        let mut batch = Batch::new();
        encode_writes(&mut batch, config, writes, task_id, task_path, self.options.max_value_bytes)?;
        self.commit(batch)
    }

    pub(crate) fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.prune(&[thread_id.to_owned()], PruneStrategy::Delete)
    }

    pub(crate) fn delete_for_runs(&self, run_ids: &[String]) -> Result<()> {
        let _call = self.enter()?;
        if run_ids.is_empty() {
            return Ok(());
        }
        self.commit_planned(plans::delete_for_runs(run_ids.to_vec()))
    }

    pub(crate) fn copy_thread(&self, source: &str, target: &str) -> Result<()> {
        let _call = self.enter()?;
        check_thread_id(source)?;
        check_thread_id(target)?;
        let values = plans::CopyValues { level: self.options.values.compression_level, limit: self.read_limit() };
        self.commit_planned(plans::copy_thread(self.segments.clone(), source.to_owned(), target.to_owned(), &values))
    }

    pub(crate) fn prune(&self, thread_ids: &[String], strategy: PruneStrategy) -> Result<()> {
        let _call = self.enter()?;
        for thread in thread_ids {
            check_thread_id(thread)?;
        }
        match strategy {
            PruneStrategy::Delete => {
                self.commit_planned(plans::delete_threads(thread_ids.to_vec()))?;
                // Their cached values could only be stale now: free the memory.
                thread_ids.iter().for_each(|thread| self.value_cache.forget_thread(thread));
                Ok(())
            }
            PruneStrategy::KeepLatest => {
                let keep_latest = Retention { keep_last: Some(1), ..Retention::default() };
                self.retain(&keep_latest, plans::RetentionScope::Threads(thread_ids.to_vec()), true).map(|_| ())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::metadata_run_id;

    #[test]
    fn run_id_is_read_from_metadata_text_like_from_the_map() {
        assert_eq!(metadata_run_id(r#"{"source":"loop","run_id":"r-1","step":3}"#), Ok(Some("r-1".into())));
        assert_eq!(metadata_run_id(r#"{"run_id": 7}"#), Ok(None));
        assert_eq!(metadata_run_id(r#"{"writes": {"a": [1, 2]}}"#), Ok(None));
        assert_eq!(metadata_run_id(" {} "), Ok(None));
        assert!(metadata_run_id(r#"["run_id"]"#).is_err());
        assert!(metadata_run_id(r#"{"run_id": "r"#).is_err());
        assert!(metadata_run_id("null").is_err());
        // Text a skimming check let through and reads then refused (found by review).
        assert!(metadata_run_id(&format!("{{\"n\": 1{}}}", "0".repeat(400))).is_err());
        assert!(metadata_run_id(r#"{"s": "\ud800"}"#).is_err());
        // Nesting the read path refuses is refused at put, not stored unreadable.
        let deep = format!("{{\"m\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(metadata_run_id(&deep).is_err());
        let fine = format!("{{\"m\":{}{},\"s\":\"[[[\\\"\"}}", "[".repeat(100), "]".repeat(100));
        assert_eq!(metadata_run_id(&fine), Ok(None));
    }
}
