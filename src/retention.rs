//! Retention: which checkpoints `keep_last` and `max_age` remove, planned from the index.
//!
//! The plan names, per (thread, namespace), the checkpoints to remove (with their pending
//! writes, and writes of ids never stored) and the kept checkpoints; those whose parent is not
//! kept are rewritten with no parent, so a kept checkpoint never points at a missing one.

use std::time::{Duration, SystemTime};

use crate::index::{CheckpointKey, Index};
use crate::options::Retention;

/// What one (thread, namespace) loses.
pub struct NamespacePlan {
    /// Thread.
    pub thread: String,
    /// Namespace.
    pub ns: String,
    /// Checkpoint ids removed (and ids that only have pending writes).
    pub remove: Vec<CheckpointKey>,
    /// Ids kept.
    pub keep: Vec<CheckpointKey>,
}

/// What a retention pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionStats {
    /// Checkpoints removed.
    pub checkpoints_removed: u64,
    /// Kept checkpoints whose parent was removed, now without a parent.
    pub parents_cleared: u64,
}

/// The age of a checkpoint from the time in its id, if it is a time-ordered uuid.
fn age(key: &CheckpointKey, now: SystemTime) -> Option<Duration> {
    let CheckpointKey::Uuid(bytes) = key else { return None };
    let made = crate::id::uuid_time(&uuid::Uuid::from_bytes(*bytes))?;
    now.duration_since(made).ok()
}

/// Plan `retention` for `threads` (all threads when `None`). `orphan_writes`: also remove
/// pending writes of ids never stored (an explicit prune does; a background sweep does not,
/// since writes may arrive before their checkpoint).
pub fn plan(
    index: &Index,
    retention: &Retention,
    threads: Option<&[String]>,
    orphan_writes: bool,
    now: SystemTime,
) -> Vec<NamespacePlan> {
    let mut plans = Vec::new();
    let mut consider = |thread: &str| {
        let Some(thread_index) = index.thread(thread) else { return };
        for (ns, namespace) in &thread_index.namespaces {
            let total = namespace.checkpoints.len();
            let mut remove = Vec::new();
            let mut keep = Vec::new();
            for (rank, key) in namespace.checkpoints.keys().rev().enumerate() {
                let too_many = retention.keep_last.is_some_and(|n| rank >= n);
                let too_old = retention.max_age.is_some_and(|max| age(key, now).is_some_and(|a| a > max));
                if too_many || too_old { remove.push(key.clone()) } else { keep.push(key.clone()) }
            }
            debug_assert_eq!(remove.len() + keep.len(), total);
            if orphan_writes {
                remove.extend(namespace.writes.keys().filter(|k| !namespace.checkpoints.contains_key(*k)).cloned());
            }
            // An explicit prune also plans a namespace it removes nothing from: its kept
            // checkpoints may name a parent that is already gone, and lose it like the others.
            if !remove.is_empty() || (orphan_writes && !keep.is_empty()) {
                plans.push(NamespacePlan { thread: thread.to_owned(), ns: ns.to_string(), remove, keep });
            }
        }
    };
    match threads {
        Some(threads) => threads.iter().for_each(|t| consider(t)),
        None => index.threads().for_each(|(t, _)| consider(t)),
    }
    plans
}
