//! `MemorySaver`: the plain in-memory reference implementation.
//!
//! Simple on purpose: every test of [`crate::LogStore`] compares against it. It shares the
//! protocol rules of [`crate::saver`] with the log store and nothing else.

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;

use crate::error::Result;
use crate::model::{
    Blob, ChannelVersion, ChannelVersions, Checkpoint, CheckpointTuple, Config, ListQuery, Metadata, PruneStrategy,
};
use crate::saver::{
    CheckpointSaver, WriteBatch, check_thread_id, metadata_matches, required_checkpoint_id, resolve_pending_writes,
    run_id_of, write_slot,
};

/// An in-memory saver. Lost when dropped.
#[derive(Default)]
pub struct MemorySaver {
    threads: RwLock<BTreeMap<String, BTreeMap<String, Namespace>>>,
}

#[derive(Clone, Default)]
struct Namespace {
    /// Checkpoints by id, without channel values (those live in `blobs`).
    checkpoints: BTreeMap<String, StoredCheckpoint>,
    /// `(channel, version)` → value; `None` is the `empty` sentinel.
    blobs: HashMap<(String, ChannelVersion), Option<Blob>>,
    /// Checkpoint id → `put_writes` calls in arrival order.
    writes: HashMap<String, Vec<WriteBatch>>,
}

#[derive(Clone)]
struct StoredCheckpoint {
    checkpoint: Checkpoint,
    metadata: Metadata,
    parent_id: Option<String>,
}

impl MemorySaver {
    /// An empty saver.
    pub fn new() -> Self {
        MemorySaver::default()
    }

    /// The reference for [`crate::LogStore::apply_retention`] with `keep_last` (no `max_age`):
    /// per (thread, namespace) keep the newest `keep_last` checkpoints, remove the others with
    /// their pending writes (writes of ids never stored stay: a background sweep leaves them),
    /// and clear the parent of a kept checkpoint whose parent is not kept.
    pub fn apply_retention(&self, keep_last: usize) {
        let mut threads = self.threads.write();
        for namespaces in threads.values_mut() {
            for ns in namespaces.values_mut() {
                let removed: Vec<String> = ns.checkpoints.keys().rev().skip(keep_last).cloned().collect();
                if removed.is_empty() {
                    continue;
                }
                for id in &removed {
                    ns.checkpoints.remove(id);
                    ns.writes.remove(id);
                }
                let kept_ids: std::collections::HashSet<String> = ns.checkpoints.keys().cloned().collect();
                for kept in ns.checkpoints.values_mut() {
                    if kept.parent_id.as_ref().is_some_and(|parent| !kept_ids.contains(parent)) {
                        kept.parent_id = None;
                    }
                }
                let referenced: std::collections::HashSet<(String, ChannelVersion)> = ns
                    .checkpoints
                    .values()
                    .flat_map(|kept| kept.checkpoint.channel_versions.iter().map(|(c, v)| (c.clone(), v.clone())))
                    .collect();
                ns.blobs.retain(|key, _| referenced.contains(key));
            }
        }
    }

    fn tuple(thread_id: &str, ns_name: &str, ns: &Namespace, id: &str, stored: &StoredCheckpoint) -> CheckpointTuple {
        let mut checkpoint = stored.checkpoint.clone();
        checkpoint.channel_values = checkpoint
            .channel_versions
            .iter()
            .filter_map(|(channel, version)| {
                let value = ns.blobs.get(&(channel.clone(), version.clone()))?.clone()?;
                Some((channel.clone(), value))
            })
            .collect();
        let batches = ns.writes.get(id).into_iter().flatten().cloned();
        let config = Config {
            thread_id: thread_id.to_owned(),
            checkpoint_ns: ns_name.to_owned(),
            checkpoint_id: Some(id.to_owned()),
        };
        CheckpointTuple {
            parent_config: stored.parent_id.as_ref().map(|parent| config.clone().with_checkpoint(parent.clone())),
            config,
            checkpoint,
            metadata: stored.metadata.clone(),
            pending_writes: resolve_pending_writes(batches),
        }
    }
}

impl CheckpointSaver for MemorySaver {
    fn get_tuple(&self, config: &Config) -> Result<Option<CheckpointTuple>> {
        check_thread_id(&config.thread_id)?;
        let threads = self.threads.read();
        let Some(ns) = threads.get(&config.thread_id).and_then(|t| t.get(&config.checkpoint_ns)) else {
            return Ok(None);
        };
        let found = match &config.checkpoint_id {
            Some(id) => ns.checkpoints.get_key_value(id),
            None => ns.checkpoints.last_key_value(),
        };
        Ok(found.map(|(id, stored)| Self::tuple(&config.thread_id, &config.checkpoint_ns, ns, id, stored)))
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<CheckpointTuple>> {
        let threads = self.threads.read();
        let mut out = Vec::new();
        for (thread_id, namespaces) in threads.iter() {
            if query.thread_id.as_ref().is_some_and(|wanted| wanted != thread_id) {
                continue;
            }
            for (ns_name, ns) in namespaces {
                if query.checkpoint_ns.as_ref().is_some_and(|wanted| wanted != ns_name) {
                    continue;
                }
                for (id, stored) in &ns.checkpoints {
                    let wanted_id = query.checkpoint_id.as_ref().is_none_or(|wanted| wanted == id);
                    let before = query.before.as_ref().is_none_or(|before| id < before);
                    if wanted_id && before && metadata_matches(&stored.metadata, &query.filter) {
                        out.push(Self::tuple(thread_id, ns_name, ns, id, stored));
                    }
                }
            }
        }
        out.sort_by(|a, b| b.checkpoint.id.cmp(&a.checkpoint.id));
        out.truncate(query.limit.unwrap_or(usize::MAX));
        Ok(out)
    }

    fn put(
        &self,
        config: &Config,
        checkpoint: &Checkpoint,
        metadata: &Metadata,
        new_versions: &ChannelVersions,
    ) -> Result<Config> {
        check_thread_id(&config.thread_id)?;
        let mut threads = self.threads.write();
        let ns = threads.entry(config.thread_id.clone()).or_default().entry(config.checkpoint_ns.clone()).or_default();
        for (channel, version) in new_versions {
            let value = checkpoint.channel_values.get(channel).cloned();
            ns.blobs.entry((channel.clone(), version.clone())).or_insert(value);
        }
        let stored = StoredCheckpoint {
            checkpoint: Checkpoint { channel_values: BTreeMap::new(), ..checkpoint.clone() },
            metadata: metadata.clone(),
            parent_id: config.checkpoint_id.clone(),
        };
        ns.checkpoints.insert(checkpoint.id.clone(), stored);
        Ok(Config { checkpoint_id: Some(checkpoint.id.clone()), ..config.clone() })
    }

    fn put_writes(&self, config: &Config, writes: &[(String, Blob)], task_id: &str, task_path: &str) -> Result<()> {
        let checkpoint_id = required_checkpoint_id(config)?;
        let stored = WriteBatch {
            task_id: task_id.to_owned(),
            task_path: task_path.to_owned(),
            writes: writes
                .iter()
                .enumerate()
                .map(|(position, (channel, value))| (write_slot(channel, position), channel.clone(), value.clone()))
                .collect(),
        };
        let mut threads = self.threads.write();
        let ns = threads.entry(config.thread_id.clone()).or_default().entry(config.checkpoint_ns.clone()).or_default();
        ns.writes.entry(checkpoint_id.to_owned()).or_default().push(stored);
        Ok(())
    }

    fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.threads.write().remove(thread_id);
        Ok(())
    }

    fn delete_for_runs(&self, run_ids: &[String]) -> Result<()> {
        let mut threads = self.threads.write();
        for namespaces in threads.values_mut() {
            for ns in namespaces.values_mut() {
                let doomed: Vec<String> = ns
                    .checkpoints
                    .iter()
                    .filter(|(_, stored)| {
                        run_id_of(&stored.metadata).is_some_and(|run| run_ids.iter().any(|r| r == run))
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in doomed {
                    ns.checkpoints.remove(&id);
                    ns.writes.remove(&id);
                }
            }
        }
        Ok(())
    }

    fn copy_thread(&self, source: &str, target: &str) -> Result<()> {
        check_thread_id(source)?;
        check_thread_id(target)?;
        let mut threads = self.threads.write();
        let Some(copied) = threads.get(source).cloned() else { return Ok(()) };
        let target_namespaces = threads.entry(target.to_owned()).or_default();
        for (ns_name, ns) in copied {
            let into = target_namespaces.entry(ns_name).or_default();
            into.checkpoints.extend(ns.checkpoints);
            into.blobs.extend(ns.blobs);
            for (id, batches) in ns.writes {
                into.writes.entry(id).or_default().extend(batches);
            }
        }
        Ok(())
    }

    fn prune(&self, thread_ids: &[String], strategy: PruneStrategy) -> Result<()> {
        let mut threads = self.threads.write();
        for thread_id in thread_ids {
            match strategy {
                PruneStrategy::Delete => {
                    threads.remove(thread_id);
                }
                PruneStrategy::KeepLatest => {
                    let Some(namespaces) = threads.get_mut(thread_id) else { continue };
                    for ns in namespaces.values_mut() {
                        let Some(latest) = ns.checkpoints.last_key_value().map(|(id, _)| id.clone()) else {
                            ns.writes.clear();
                            ns.blobs.clear();
                            continue;
                        };
                        ns.checkpoints.retain(|id, _| *id == latest);
                        ns.writes.retain(|id, _| *id == latest);
                        // The kept checkpoint's parent is gone: it has none now.
                        if let Some(kept) = ns.checkpoints.get_mut(&latest) {
                            if kept.parent_id.as_deref() != Some(latest.as_str()) {
                                kept.parent_id = None;
                            }
                            let kept = &kept.checkpoint.channel_versions;
                            ns.blobs.retain(|(channel, version), _| kept.get(channel) == Some(version));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
