//! The concurrent model test: several threads issue random mixes of `put`, `put_writes`,
//! `delete_thread`, `delete_for_runs`, `copy_thread`, `prune`, retention, `compact` and reads
//! on overlapping threads, against one [`LogStore`] on the power-loss simulator.
//!
//! Every call carries a tag ([`set_op_tag`]); the store logs the tags of the batches it commits
//! in commit order ([`LogStore::commit_log`]). After each phase the store must hold exactly what
//! [`MemorySaver`] holds when fed the same calls in that order: live, after a clean reopen
//! (from the snapshot), after a full replay without the snapshot, and after a power cut in the
//! middle of a phase (then a prefix of the commit order: all of it in `Sync` mode). Every read
//! made during the run must return a state that existed: each value is the one its put wrote,
//! each parent the one its put named (or none, once retention removed it).
//!
//! Schedules come from real threads; the seed decides each worker's calls, not the
//! interleaving, so a failure names its seed and the calls, and repeated runs explore
//! different interleavings of the same calls.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::model::{Blob, ChannelVersion, Checkpoint, CheckpointTuple, Config, ListQuery};
use crate::testing::model::{Call, KEEP_LAST};
use crate::testing::{Rng, SimFs};
use crate::{CheckpointSaver, Durability, LogStore, MemorySaver, Options, PruneStrategy, Retention};

/// Tag this thread's next calls: the store logs the tag of each batch it commits for them.
pub fn set_op_tag(tag: u64) {
    crate::commit::OP_TAG.with(|cell| cell.set(tag));
}

/// What a concurrent model run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConcurrentReport {
    /// Calls issued (reads and compactions included).
    pub calls: u64,
    /// Batches committed and replayed into the reference.
    pub committed: u64,
    /// Checkpoint tuples returned by reads during the run and checked.
    pub reads_checked: u64,
    /// Compactions run concurrently with the other calls.
    pub compactions: u64,
    /// Times the whole state was compared with the reference.
    pub states_compared: u64,
    /// Values stored as deltas when the live state was compared, summed over phases.
    pub deltas: u64,
    /// Deltas compaction stored whole while the other calls ran.
    pub deltas_stored_whole: u64,
}

/// The value every put writes for (channel, version): reads check values against it.
/// The value of a channel version: a function of the version alone (so any read can be checked),
/// and for `a` a list that grows with it, so each put's value shares all but its head and tail
/// with the thread's previous one and is stored as a delta (chains, bases, re-bases).
fn value_of(channel: &str, version: &ChannelVersion) -> Vec<u8> {
    let mut value = format!("{channel}={version};").into_bytes();
    if let (ChannelVersion::Int(n), "a") = (version, channel) {
        for block in 0..n % 48 {
            value.extend_from_slice(format!("[block {block:04} of a list that grows with each version]").as_bytes());
        }
    }
    value
}

/// Shared by the workers of a run.
struct Shared {
    next_tag: AtomicU64,
    next_version: AtomicU64,
    calls: Mutex<HashMap<u64, Call>>,
    /// Parent each put named, by (thread, checkpoint id); copies keep their source's.
    parents: Mutex<HashMap<String, Option<String>>>,
    report: Mutex<ConcurrentReport>,
}

/// Check one tuple a read returned: each value is the one its put wrote, the parent the one its
/// put named or none.
fn check_read(shared: &Shared, tuple: &CheckpointTuple) -> Result<(), String> {
    let id = tuple.checkpoint.id.as_str();
    for (channel, version) in &tuple.checkpoint.channel_versions {
        match tuple.checkpoint.channel_values.get(channel) {
            Some(value) if value.bytes == value_of(channel, version) => {}
            Some(value) => {
                return Err(format!(
                    "read of {}/{id}: channel {channel} at {version} holds {:?}",
                    tuple.config.thread_id,
                    String::from_utf8_lossy(&value.bytes)
                ));
            }
            None => {
                return Err(format!(
                    "read of {}/{id}: channel {channel} at {version} lost its value",
                    tuple.config.thread_id
                ));
            }
        }
    }
    let parent = tuple.parent_config.as_ref().and_then(|p| p.checkpoint_id.clone());
    if let Some(parent) = parent {
        let named = shared.parents.lock().get(id).cloned().flatten();
        if named.as_deref() != Some(parent.as_str()) {
            return Err(format!(
                "read of {}/{id}: parent {parent}, but its put named {named:?}",
                tuple.config.thread_id
            ));
        }
    }
    Ok(())
}

/// One worker's calls for a phase.
fn worker(store: &LogStore, shared: &Shared, seed: u64, calls: usize) -> Result<(), String> {
    let mut rng = Rng(seed | 1);
    let thread = |n: u64| format!("t{n}");
    for _ in 0..calls {
        let tag = shared.next_tag.fetch_add(1, Ordering::Relaxed);
        set_op_tag(tag);
        let t = rng.below(4);
        let ns = if rng.below(4) == 0 { "sub" } else { "" };
        let call = match rng.below(20) {
            0..=6 => {
                let config = Config::thread(thread(t)).with_ns(ns);
                let parent = store.get_tuple(&config).map_err(|e| format!("get_tuple: {e}"))?.map(|t| t.checkpoint.id);
                let id = store.next_checkpoint_id();
                let mut checkpoint = Checkpoint::empty(&id);
                checkpoint.ts = format!("ts-{id}");
                let a = ChannelVersion::Int(shared.next_version.fetch_add(1, Ordering::Relaxed) as i64);
                // A few shared versions: the same value put again is stored once (the dedupe
                // whose assumption the leader re-checks).
                let b = ChannelVersion::Int(rng.below(4) as i64 + 1);
                for (channel, version) in [("a", a), ("b", b)] {
                    checkpoint.channel_values.insert(channel.into(), Blob::new("bytes", value_of(channel, &version)));
                    checkpoint.channel_versions.insert(channel.into(), version);
                }
                let new_versions = checkpoint.channel_versions.clone();
                let metadata = serde_json::json!({"run_id": format!("run{}", rng.below(3)), "source": "loop"});
                shared.parents.lock().insert(id.clone(), parent.clone());
                Some(Call::Put {
                    config: Config { checkpoint_id: parent, ..config },
                    checkpoint,
                    metadata: metadata.as_object().cloned().unwrap_or_default(),
                    new_versions,
                })
            }
            7..=9 => {
                let latest = store.get_tuple(&Config::thread(thread(t))).map_err(|e| format!("get_tuple: {e}"))?;
                let id = latest.map_or_else(|| format!("orphan-{tag}"), |t| t.checkpoint.id);
                let mut writes = vec![("a".to_string(), Blob::new("json", format!("w{tag}").into_bytes()))];
                if rng.below(3) == 0 {
                    writes.push(("__interrupt__".into(), Blob::new("json", format!("i{tag}").into_bytes())));
                }
                Some(Call::PutWrites {
                    config: Config::thread(thread(t)).with_checkpoint(id),
                    writes,
                    task_id: format!("task{}", rng.below(3)),
                    task_path: String::new(),
                })
            }
            10 => Some(Call::DeleteThread(thread(t))),
            11 => Some(Call::DeleteForRuns(vec![format!("run{}", rng.below(3))])),
            12 => {
                let to = (t + 1 + rng.below(3)) % 4;
                Some(Call::CopyThread(thread(t), thread(to)))
            }
            13 => Some(Call::Prune(vec![thread(t)], PruneStrategy::KeepLatest)),
            14 => Some(Call::Prune(vec![thread(t)], PruneStrategy::Delete)),
            15 => Some(Call::Retention),
            16 => {
                let stats = store.compact().map_err(|e| format!("compact: {e}"))?;
                let mut report = shared.report.lock();
                report.compactions += 1;
                report.deltas_stored_whole += stats.deltas_stored_whole;
                None
            }
            _ => {
                let tuples = if rng.below(2) == 0 {
                    store.get_tuple(&Config::thread(thread(t)).with_ns(ns)).map(|t| t.into_iter().collect())
                } else {
                    store.list(&ListQuery::thread(thread(t)))
                };
                let tuples = tuples.map_err(|e| format!("read: {e}"))?;
                for tuple in &tuples {
                    check_read(shared, tuple)?;
                }
                shared.report.lock().reads_checked += tuples.len() as u64;
                None
            }
        };
        shared.report.lock().calls += 1;
        let Some(call) = call else { continue };
        shared.calls.lock().insert(tag, call.clone());
        call.apply_store(store).map_err(|e| format!("{call:?} failed: {e}"))?;
    }
    Ok(())
}

fn everything(saver: &dyn CheckpointSaver) -> Result<Vec<CheckpointTuple>, String> {
    saver.list(&ListQuery::all()).map_err(|e| format!("list: {e}"))
}

/// The reference and the commit order it was fed.
struct Reference {
    saver: MemorySaver,
    /// Tags applied, in order (each call once).
    history: Vec<u64>,
    applied: HashSet<u64>,
}

impl Reference {
    fn new() -> Self {
        Reference { saver: MemorySaver::new(), history: Vec::new(), applied: HashSet::new() }
    }

    /// Apply the call of `tag` unless already applied (a call whose records span several
    /// batches, like a large retention pass, is one call).
    fn apply(&mut self, calls: &HashMap<u64, Call>, tag: u64) -> Result<bool, String> {
        if !self.applied.insert(tag) {
            return Ok(false);
        }
        let call = calls.get(&tag).ok_or_else(|| format!("committed tag {tag} names no call"))?;
        call.apply_reference(&self.saver).map_err(|e| format!("reference refused {call:?}: {e}"))?;
        self.history.push(tag);
        Ok(true)
    }
}

/// The calls the reference was fed, one a line (for failure reports).
fn trace(reference: &Reference, calls: &HashMap<u64, Call>) -> String {
    reference.history.iter().map(|tag| format!("  {tag}: {:?}", calls.get(tag))).collect::<Vec<_>>().join("\n")
}

/// What differs between two states: checkpoints only in one, and those that differ.
fn diff(got: &[CheckpointTuple], want: &[CheckpointTuple]) -> String {
    let key =
        |t: &CheckpointTuple| (t.config.thread_id.clone(), t.config.checkpoint_ns.clone(), t.checkpoint.id.clone());
    let got_map: BTreeMap<_, _> = got.iter().map(|t| (key(t), t)).collect();
    let want_map: BTreeMap<_, _> = want.iter().map(|t| (key(t), t)).collect();
    let mut out = Vec::new();
    for (k, t) in &got_map {
        match want_map.get(k) {
            None => out.push(format!(
                "only in the store: {k:?} parent {:?}",
                t.parent_config.as_ref().map(|p| &p.checkpoint_id)
            )),
            Some(w) if w != t => out.push(format!(
                "differs: {k:?}: parent {:?} vs {:?}; values {:?} vs {:?}; writes {:?} vs {:?}",
                t.parent_config.as_ref().map(|p| &p.checkpoint_id),
                w.parent_config.as_ref().map(|p| &p.checkpoint_id),
                t.checkpoint.channel_values.keys().collect::<Vec<_>>(),
                w.checkpoint.channel_values.keys().collect::<Vec<_>>(),
                t.pending_writes.iter().map(|p| (&p.task_id, &p.channel)).collect::<Vec<_>>(),
                w.pending_writes.iter().map(|p| (&p.task_id, &p.channel)).collect::<Vec<_>>(),
            )),
            Some(_) => {}
        }
    }
    for k in want_map.keys().filter(|k| !got_map.contains_key(*k)) {
        out.push(format!("only in the reference: {k:?}"));
    }
    out.join("\n")
}

fn compare(store: &dyn CheckpointSaver, reference: &MemorySaver, what: &str) -> Result<(), String> {
    let got = everything(store)?;
    let want = everything(reference)?;
    if got != want {
        return Err(format!(
            "{what}: the store differs from the reference fed the same calls in commit order:\n{}",
            diff(&got, &want)
        ));
    }
    Ok(())
}

/// Run `phases` phases of `workers` threads × `calls` calls each on one store with
/// `durability`, checking the state after each phase as described in the module docs.
pub fn run_concurrent_model(
    seed: u64,
    durability: Durability,
    workers: usize,
    calls: usize,
    phases: usize,
) -> Result<ConcurrentReport, String> {
    let sim = SimFs::new();
    let dir = Path::new("/store");
    let options = Options {
        durability,
        segment_size: 8192,
        buffer_bytes: 4096,
        auto_compaction: None,
        prepare_segments_ahead: false,
        retention: Retention { keep_last: Some(KEEP_LAST), ..Retention::default() },
        // Short chains: runs store whole values, deltas and re-bases all the time.
        values: crate::ValueEncoding { max_chain: 4, ..crate::ValueEncoding::default() },
        ..Options::default()
    };
    let shared = Shared {
        next_tag: AtomicU64::new(1),
        next_version: AtomicU64::new(1),
        calls: Mutex::new(HashMap::new()),
        parents: Mutex::new(HashMap::new()),
        report: Mutex::new(ConcurrentReport::default()),
    };
    let mut reference = Reference::new();
    let mut report = ConcurrentReport::default();
    let open = |options: Options| LogStore::open_with(sim.vfs(), dir, options).map_err(|e| format!("open: {e}"));
    let run_phase = |store: &LogStore, phase: usize| -> Result<(), String> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let worker_seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((phase * 64 + w) as u64 + 1);
                    let shared = &shared;
                    scope.spawn(move || worker(store, shared, worker_seed, calls))
                })
                .collect();
            handles.into_iter().try_for_each(|h| h.join().map_err(|_| "a worker panicked".to_string())?)
        })
    };
    for phase in 0..phases {
        let store = open(options.clone())?;
        if phase > 0 {
            compare(&store, &reference.saver, &format!("phase {phase}: after a clean reopen"))?;
            report.states_compared += 1;
        }
        run_phase(&store, phase)?;
        let calls_by_tag = shared.calls.lock().clone();
        for tag in store.commit_log() {
            report.committed += u64::from(reference.apply(&calls_by_tag, tag)?);
        }
        compare(&store, &reference.saver, &format!("phase {phase}: live"))
            .map_err(|e| format!("{e}\ncalls in commit order:\n{}", trace(&reference, &calls_by_tag)))?;
        report.states_compared += 1;
        report.deltas += store.value_space().deltas;
        store.close().map_err(|e| format!("close: {e}"))?;
    }
    // A full replay of the log without the snapshot.
    let _ = sim.vfs().remove_file(&dir.join("INDEX"));
    let store = open(Options { use_snapshot: false, ..options.clone() })?;
    compare(&store, &reference.saver, "after a full replay")
        .map_err(|e| format!("{e}\ncalls:\n{}", trace(&reference, &shared.calls.lock())))?;
    report.states_compared += 1;
    // A power cut in the middle of a phase: the store is never closed.
    run_phase(&store, phases)?;
    let log = store.commit_log();
    std::mem::forget(store);
    sim.crash(seed ^ 0xC0FFEE);
    let store = open(options.clone())?;
    let recovered = everything(&store)?;
    // Sync: every committed batch was durable before it was applied. Otherwise any prefix.
    let floor = if durability == Durability::Sync { log.len() } else { 0 };
    let calls_by_tag = shared.calls.lock().clone();
    // The reference as it was before the phase, then one committed batch after another.
    let mut prefix = Reference::new();
    for &tag in &reference.history {
        prefix.apply(&calls_by_tag, tag)?;
    }
    let mut matched = false;
    for k in 0..=log.len() {
        if let Some(&tag) = k.checked_sub(1).and_then(|last| log.get(last)) {
            prefix.apply(&calls_by_tag, tag)?;
        }
        if k >= floor && everything(&prefix.saver)? == recovered {
            matched = true;
            break;
        }
    }
    if !matched {
        return Err(format!(
            "after a power cut ({durability:?}) the store matches no prefix of the {} batches committed \
             since the durable point ({} checkpoints recovered); against all of them:\n{}\ncalls:\n{}",
            log.len() - floor,
            recovered.len(),
            diff(&recovered, &everything(&prefix.saver)?),
            trace(&prefix, &calls_by_tag)
        ));
    }
    report.states_compared += 1;
    let counted = shared.report.lock().clone();
    report.calls = counted.calls;
    report.reads_checked = counted.reads_checked;
    report.compactions = counted.compactions;
    Ok(report)
}
