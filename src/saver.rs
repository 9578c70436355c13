//! The standard saver trait and the protocol rules every implementation shares.
//!
//! The rules here (write slots, pending-write resolution, metadata filters, version numbers) are
//! written once and used by both [`crate::MemorySaver`] and [`crate::LogStore`], so the two cannot
//! drift apart.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use crate::error::{Error, Result};
use crate::model::{
    Blob, ChannelVersion, ChannelVersions, Checkpoint, CheckpointTuple, Config, DeltaChannelHistory, ListQuery,
    Metadata, PendingWrite, PruneStrategy,
};

/// The LangGraph checkpoint saver protocol (`BaseCheckpointSaver`), in Rust.
///
/// Implementations are shared across threads (`Send + Sync`) and usable as
/// `dyn CheckpointSaver`.
pub trait CheckpointSaver: Send + Sync {
    /// The checkpoint `config` names (exact id), or the latest of its thread and namespace
    /// when it names no id. `None` if there is none.
    fn get_tuple(&self, config: &Config) -> Result<Option<CheckpointTuple>>;

    /// Checkpoints matching `query`, newest first, each with its pending writes.
    fn list(&self, query: &ListQuery) -> Result<Vec<CheckpointTuple>>;

    /// Store a checkpoint (upsert on thread, namespace, id). Its parent is
    /// `config.checkpoint_id`. Only the channels named in `new_versions` are stored; the others
    /// were stored by earlier puts. A (channel, version) already stored in the thread and
    /// namespace keeps its first value (PostgresSaver's `ON CONFLICT DO NOTHING`): versions are
    /// unique by construction, so a repeat is the same value. Returns the config of the stored
    /// checkpoint.
    fn put(
        &self,
        config: &Config,
        checkpoint: &Checkpoint,
        metadata: &Metadata,
        new_versions: &ChannelVersions,
    ) -> Result<Config>;

    /// Store the writes of task `task_id` against the checkpoint `config` names
    /// (`config.checkpoint_id` is required). Regular writes are kept on first insert; writes to
    /// the special channels (`__error__`, `__scheduled__`, `__interrupt__`, `__resume__`)
    /// overwrite.
    fn put_writes(&self, config: &Config, writes: &[(String, Blob)], task_id: &str, task_path: &str) -> Result<()>;

    /// Remove everything of a thread, in every namespace. A missing thread is not an error.
    fn delete_thread(&self, thread_id: &str) -> Result<()>;

    /// Remove the checkpoints (and their writes) whose `metadata["run_id"]` is listed.
    fn delete_for_runs(&self, run_ids: &[String]) -> Result<()>;

    /// Copy every checkpoint, write and blob of `source` to `target`, same ids.
    fn copy_thread(&self, source: &str, target: &str) -> Result<()>;

    /// Apply a retention strategy to each listed thread.
    fn prune(&self, thread_ids: &[String], strategy: PruneStrategy) -> Result<()>;

    /// For each of `channels`, the pending writes along the parent chain of the checkpoint
    /// `config` names (starting at its parent) up to and including the nearest ancestor that
    /// stores a value for the channel (the seed). See [`DeltaChannelHistory`].
    ///
    /// This default walks [`get_tuple`](Self::get_tuple) once per ancestor; stores override it
    /// to walk their own index.
    fn get_delta_channel_history(
        &self,
        config: &Config,
        channels: &[String],
    ) -> Result<BTreeMap<String, DeltaChannelHistory>> {
        let Some(target) = self.get_tuple(config)? else {
            return walk_delta_history(channels, None, |_| Ok(None));
        };
        let start = target.parent_config.and_then(|parent| parent.checkpoint_id);
        walk_delta_history(channels, start, |id| {
            let Some(tuple) = self.get_tuple(&Config { checkpoint_id: Some(id.to_owned()), ..config.clone() })? else {
                return Ok(None);
            };
            Ok(Some(Ancestor {
                parent_id: tuple.parent_config.and_then(|parent| parent.checkpoint_id),
                values: tuple.checkpoint.channel_values,
                writes: tuple.pending_writes,
            }))
        })
    }

    /// The version a channel gets after `current`; see [`next_version`].
    fn get_next_version(&self, current: Option<&ChannelVersion>) -> ChannelVersion {
        next_version(current)
    }
}

/// One ancestor as [`walk_delta_history`] needs it.
pub(crate) struct Ancestor {
    pub parent_id: Option<String>,
    /// Stored channel values (at least the requested channels that have one).
    pub values: BTreeMap<String, Blob>,
    /// Pending writes in `(task_path, task_id, idx)` order.
    pub writes: Vec<PendingWrite>,
}

/// The parent-chain walk behind `get_delta_channel_history`, shared by every saver: `load`
/// returns one ancestor by id. Each ancestor is visited once for all channels; a cycle (possible
/// when ids are re-put) ends the walk.
pub(crate) fn walk_delta_history(
    channels: &[String],
    start: Option<String>,
    mut load: impl FnMut(&str) -> Result<Option<Ancestor>>,
) -> Result<BTreeMap<String, DeltaChannelHistory>> {
    let mut result: BTreeMap<String, DeltaChannelHistory> =
        channels.iter().map(|channel| (channel.clone(), DeltaChannelHistory::default())).collect();
    let mut remaining: HashSet<&str> = channels.iter().map(String::as_str).collect();
    let mut visited = HashSet::new();
    let mut cursor = start;
    while let Some(id) = cursor.take() {
        if remaining.is_empty() || !visited.insert(id.clone()) {
            break;
        }
        let Some(ancestor) = load(&id)? else { break };
        // Collected nearest-first, each ancestor's writes reversed; flipped once at the end.
        for write in ancestor.writes.into_iter().rev() {
            if remaining.contains(write.channel.as_str())
                && let Some(entry) = result.get_mut(&write.channel)
            {
                entry.writes.push(write);
            }
        }
        remaining.retain(|channel| match ancestor.values.get(*channel) {
            Some(value) => {
                if let Some(entry) = result.get_mut(*channel) {
                    entry.seed = Some(value.clone());
                }
                false
            }
            None => true,
        });
        cursor = ancestor.parent_id;
    }
    for entry in result.values_mut() {
        entry.writes.reverse();
    }
    Ok(result)
}

/// LangGraph's version scheme: `f"{n+1:032}.{random.random():016}"`, where `n` is the integer
/// part of `current` (0 if none). The random suffix keeps `(channel, version)` unique across
/// forks of a thread, which blob deduplication relies on.
pub fn next_version(current: Option<&ChannelVersion>) -> ChannelVersion {
    let n = current.and_then(ChannelVersion::counter).unwrap_or(0);
    ChannelVersion::Str(format!("{:032}.{:016}", n + 1, random_unit()))
}

/// A uniform float in [0, 1) from a per-thread xorshift generator seeded by std's random keys.
fn random_unit() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(std::process::id()) | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// The fixed slots of the special channels, LangGraph's `WRITES_IDX_MAP`.
const SPECIAL_WRITE_SLOTS: [(&str, i64); 4] =
    [("__error__", -1), ("__scheduled__", -2), ("__interrupt__", -3), ("__resume__", -4)];

/// The `idx` a write gets: its position in the list, or the fixed slot of a special channel.
pub fn write_slot(channel: &str, position: usize) -> i64 {
    SPECIAL_WRITE_SLOTS.iter().find(|(name, _)| *name == channel).map(|&(_, slot)| slot).unwrap_or(position as i64)
}

/// Refuse an empty thread id.
pub(crate) fn check_thread_id(thread_id: &str) -> Result<()> {
    if thread_id.is_empty() {
        return Err(Error::invalid("thread_id must not be empty"));
    }
    Ok(())
}

/// The checkpoint id `put_writes` needs.
pub(crate) fn required_checkpoint_id(config: &Config) -> Result<&str> {
    check_thread_id(&config.thread_id)?;
    match config.checkpoint_id.as_deref() {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(Error::invalid(format!(
            "put_writes for thread {:?} needs a checkpoint_id in its config",
            config.thread_id
        ))),
    }
}

/// The `run_id` a checkpoint's metadata names, used by `delete_for_runs`.
pub(crate) fn run_id_of(metadata: &Metadata) -> Option<&str> {
    metadata.get("run_id").and_then(serde_json::Value::as_str)
}

/// Whether `metadata` matches every term of `filter`: the value at the key (or, for a dotted key
/// absent at the top level, at the path it spells) equals the filter value as JSON. A missing
/// key matches only a `null` filter value, as in LangGraph's in-memory saver.
pub fn metadata_matches(metadata: &Metadata, filter: &Metadata) -> bool {
    filter.iter().all(|(key, wanted)| {
        let found = metadata.get(key).or_else(|| lookup_path(metadata, key));
        match found {
            Some(value) => value == wanted,
            None => wanted.is_null(),
        }
    })
}

fn lookup_path<'a>(metadata: &'a Metadata, dotted: &str) -> Option<&'a serde_json::Value> {
    if !dotted.contains('.') {
        return None;
    }
    let mut parts = dotted.split('.');
    let mut value = metadata.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// One `put_writes` call as stored: what the read side replays to resolve pending writes.
#[derive(Clone, Debug)]
pub(crate) struct WriteBatch {
    pub task_id: String,
    pub task_path: String,
    /// `(idx, channel, value)` in the call's order.
    pub writes: Vec<(i64, String, Blob)>,
}

/// Replays `put_writes` calls in commit order and returns the resulting pending writes, sorted
/// by `(task_path, task_id, idx)`. A regular write (idx ≥ 0) is kept on first insert, so repeats
/// are idempotent; a special write (idx < 0) overwrites.
pub(crate) fn resolve_pending_writes(batches: impl IntoIterator<Item = WriteBatch>) -> Vec<PendingWrite> {
    let mut resolved: BTreeMap<(String, i64), PendingWrite> = BTreeMap::new();
    for batch in batches {
        for (idx, channel, value) in batch.writes {
            let write = PendingWrite {
                task_id: batch.task_id.clone(),
                idx,
                channel,
                value,
                task_path: batch.task_path.clone(),
            };
            let key = (batch.task_id.clone(), idx);
            if idx >= 0 {
                resolved.entry(key).or_insert(write);
            } else {
                resolved.insert(key, write);
            }
        }
    }
    let mut writes: Vec<PendingWrite> = resolved.into_values().collect();
    writes.sort_by(|a, b| (&a.task_path, &a.task_id, a.idx).cmp(&(&b.task_path, &b.task_id, b.idx)));
    writes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(value: serde_json::Value) -> Metadata {
        match value {
            serde_json::Value::Object(map) => map,
            _ => Metadata::default(),
        }
    }

    #[test]
    fn next_version_counts_up_from_any_version_type() {
        let v1 = next_version(None);
        assert_eq!(v1.counter(), Some(1));
        let ChannelVersion::Str(s) = &v1 else { panic!("string version expected") };
        assert!(s.len() >= 32 + 1 + 16 && s.as_bytes()[32] == b'.', "{s}");
        assert!(s[..32].bytes().all(|b| b.is_ascii_digit()), "{s}");
        assert_eq!(next_version(Some(&v1)).counter(), Some(2));
        assert_eq!(next_version(Some(&ChannelVersion::Int(7))).counter(), Some(8));
        assert_eq!(next_version(Some(&ChannelVersion::Float(2.0))).counter(), Some(3));
        assert_ne!(next_version(None), next_version(None), "random suffix");
    }

    #[test]
    fn special_channels_take_fixed_slots() {
        assert_eq!(write_slot("__error__", 3), -1);
        assert_eq!(write_slot("__scheduled__", 0), -2);
        assert_eq!(write_slot("__interrupt__", 0), -3);
        assert_eq!(write_slot("__resume__", 0), -4);
        assert_eq!(write_slot("messages", 5), 5);
    }

    #[test]
    fn filter_uses_json_equality_paths_and_null_for_missing() {
        let m = meta(json!({"source": "loop", "step": 1, "nested": {"a": [1, 2]}}));
        assert!(metadata_matches(&m, &meta(json!({"source": "loop", "step": 1}))));
        assert!(!metadata_matches(&m, &meta(json!({"step": "1"}))));
        assert!(metadata_matches(&m, &meta(json!({"nested": {"a": [1, 2]}}))));
        assert!(metadata_matches(&m, &meta(json!({"nested.a": [1, 2]}))));
        assert!(!metadata_matches(&m, &meta(json!({"missing": 1}))));
        assert!(metadata_matches(&m, &meta(json!({"missing": null}))));
    }

    #[test]
    fn regular_writes_keep_first_and_special_writes_overwrite() {
        let (a, b) = (Blob::new("json", "a"), Blob::new("json", "b"));
        let batch = |task: &str, path: &str, writes: Vec<(i64, &str, &Blob)>| WriteBatch {
            task_id: task.into(),
            task_path: path.into(),
            writes: writes.into_iter().map(|(idx, ch, v)| (idx, ch.to_owned(), v.clone())).collect(),
        };
        let batches = vec![
            batch("t", "", vec![(0, "x", &a), (-1, "__error__", &a)]),
            batch("t", "", vec![(0, "x", &b), (-1, "__error__", &b)]),
            batch("s", "~p", vec![(0, "y", &a)]),
        ];
        let out = resolve_pending_writes(batches);
        let summary: Vec<_> = out.iter().map(|w| (w.task_id.as_str(), w.idx, w.value.bytes.clone())).collect();
        assert_eq!(summary, vec![("t", -1, b"b".to_vec()), ("t", 0, b"a".to_vec()), ("s", 0, b"a".to_vec())]);
    }
}
