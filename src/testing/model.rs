//! The model-based crash test: random operations against a [`LogStore`] on the power-loss
//! simulator and against [`MemorySaver`] references, with crashes (between calls, and in the
//! middle of a call at its n-th I/O) and reopens.
//!
//! After every recovery the store must hold exactly the state after some prefix of the
//! acknowledged calls — at least everything that was durable (every acknowledged call in `Sync`
//! mode; everything before the last `flush` in the others), nothing that was never written —
//! or that state plus the call that was cut off. The comparison covers every checkpoint, its
//! channel values, metadata, parent link and pending writes, so per-thread order and parent
//! links are checked too. Used by the fuzz target `model` and by `tests/crash_model.rs`.

use std::path::Path;

use crate::model::{Blob, ChannelVersion, ChannelVersions, Checkpoint, CheckpointTuple, Config, ListQuery, Metadata};
use crate::testing::{Fault, FaultFs, FaultKind, SimFs};
use crate::{CheckpointSaver, Durability, LogStore, MemorySaver, Options, PruneStrategy};

/// One step of a model run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelOp {
    /// `put` a checkpoint on a thread (root or a subgraph namespace).
    Put {
        /// Thread 0..4.
        thread: u8,
        /// In the subgraph namespace instead of the root.
        sub_ns: bool,
        /// Bytes of the changing channel's value.
        size: u16,
        /// Keep channel `b` unchanged (found through `channel_versions`).
        keep_b: bool,
    },
    /// `put_writes` against the thread's latest checkpoint.
    PutWrites {
        /// Thread 0..4.
        thread: u8,
        /// Task 0..4.
        task: u8,
        /// Include a write to a special channel (overwrites instead of insert-if-absent).
        special: bool,
    },
    /// `delete_thread`.
    DeleteThread {
        /// Thread 0..4.
        thread: u8,
    },
    /// `delete_for_runs` of one of three run ids.
    DeleteForRun {
        /// Run 0..3.
        run: u8,
    },
    /// `prune` one thread.
    Prune {
        /// Thread 0..4.
        thread: u8,
        /// `keep_latest` instead of `delete`.
        keep_latest: bool,
    },
    /// `copy_thread`.
    CopyThread {
        /// Source thread 0..4.
        from: u8,
        /// Target thread 0..4.
        to: u8,
    },
    /// `flush`: everything so far becomes durable.
    Flush,
    /// Power cut between calls.
    Crash {
        /// Decides which unsynced writes survive, drop or tear.
        seed: u64,
    },
    /// The next `put` fails at its `nth_io`-th mutating I/O (every later one fails too), then
    /// the power is cut.
    CrashDuring {
        /// The failing I/O, counted over writes, syncs, allocations, renames and opens.
        nth_io: u8,
        /// As for `Crash`.
        seed: u64,
    },
    /// Clean close and reopen.
    Reopen,
    /// Clean close, the snapshot removed (what a crash between compaction's MANIFEST switch and
    /// its snapshot leaves), reopen replaying the whole log.
    ReopenFullReplay,
    /// `apply_retention` with `keep_last` 2.
    Retention,
    /// Compact every segment; the logical state must not change.
    Compact,
}

/// Operations from arbitrary bytes (at most 64), three bytes each.
pub fn decode_ops(data: &[u8]) -> Vec<ModelOp> {
    data.chunks(3)
        .take(64)
        .map(|chunk| {
            let byte = |at: usize| chunk.get(at).copied().unwrap_or(0);
            let (code, a, b) = (byte(0), byte(1), byte(2));
            match code % 16 {
                0..=4 => ModelOp::Put { thread: a % 4, sub_ns: b & 1 == 1, size: u16::from(b) * 8, keep_b: b & 2 == 2 },
                5..=7 => ModelOp::PutWrites { thread: a % 4, task: b % 4, special: b & 4 == 4 },
                8 => ModelOp::DeleteThread { thread: a % 4 },
                9 => ModelOp::DeleteForRun { run: a % 3 },
                10 => ModelOp::Prune { thread: a % 4, keep_latest: b & 1 == 0 },
                11 => ModelOp::CopyThread { from: a % 4, to: b % 4 },
                12 => ModelOp::Flush,
                13 => ModelOp::Crash { seed: (u64::from(a) << 8) | u64::from(b) },
                14 => ModelOp::CrashDuring { nth_io: a % 12 + 1, seed: u64::from(b) + 1 },
                _ => match a % 4 {
                    0 => ModelOp::Reopen,
                    1 => ModelOp::Compact,
                    2 => ModelOp::Retention,
                    _ => ModelOp::ReopenFullReplay,
                },
            }
        })
        .collect()
}

/// An acknowledged (or cut-off) call, replayable on any saver.
#[derive(Clone, Debug)]
pub(crate) enum Call {
    Put {
        config: Config,
        checkpoint: Checkpoint,
        metadata: Metadata,
        new_versions: ChannelVersions,
    },
    PutWrites {
        config: Config,
        writes: Vec<(String, Blob)>,
        task_id: String,
        task_path: String,
    },
    DeleteThread(String),
    DeleteForRuns(Vec<String>),
    Prune(Vec<String>, PruneStrategy),
    CopyThread(String, String),
    /// `apply_retention` with [`KEEP_LAST`] (the reference: `MemorySaver::apply_retention`).
    Retention,
}

/// `keep_last` of the model's retention.
pub(crate) const KEEP_LAST: usize = 2;

impl Call {
    pub(crate) fn apply(&self, saver: &dyn CheckpointSaver) -> crate::Result<()> {
        match self {
            Call::Put { config, checkpoint, metadata, new_versions } => {
                saver.put(config, checkpoint, metadata, new_versions).map(|_| ())
            }
            Call::PutWrites { config, writes, task_id, task_path } => {
                saver.put_writes(config, writes, task_id, task_path)
            }
            Call::DeleteThread(thread) => saver.delete_thread(thread),
            Call::DeleteForRuns(runs) => saver.delete_for_runs(runs),
            Call::Prune(threads, strategy) => saver.prune(threads, *strategy),
            Call::CopyThread(from, to) => saver.copy_thread(from, to),
            Call::Retention => Ok(()),
        }
    }

    /// Apply to the store under test.
    pub(crate) fn apply_store(&self, store: &LogStore) -> crate::Result<()> {
        match self {
            Call::Retention => store.apply_retention().map(|_| ()),
            call => call.apply(store),
        }
    }

    /// Apply to a reference.
    pub(crate) fn apply_reference(&self, reference: &MemorySaver) -> crate::Result<()> {
        match self {
            Call::Retention => {
                reference.apply_retention(KEEP_LAST);
                Ok(())
            }
            call => call.apply(reference),
        }
    }
}

/// What a model run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelReport {
    /// Calls acknowledged.
    pub calls: u64,
    /// Power cuts simulated.
    pub crashes: u64,
    /// Unsynced writes torn by the cuts.
    pub torn_writes: u64,
    /// Faults injected into calls.
    pub faults: u64,
    /// Recoveries whose state was checked.
    pub recoveries: u64,
    /// Compactions run.
    pub compactions: u64,
    /// Retention passes run.
    pub retentions: u64,
    /// Reopens that replayed the whole log (snapshot removed).
    pub full_replays: u64,
    /// Values stored as deltas, summed over the recoveries checked (so the run covered chains).
    pub deltas: u64,
    /// Deltas compaction stored whole (their bases then died).
    pub deltas_stored_whole: u64,
}

fn everything(saver: &dyn CheckpointSaver) -> crate::Result<Vec<CheckpointTuple>> {
    saver.list(&ListQuery::all())
}

fn replay(calls: &[Call]) -> Result<MemorySaver, String> {
    let reference = MemorySaver::new();
    for call in calls {
        call.apply_reference(&reference).map_err(|e| format!("reference refused {call:?}: {e}"))?;
    }
    Ok(reference)
}

struct Harness {
    sim: SimFs,
    faults: FaultFs,
    options: Options,
    store: Option<LogStore>,
    acked: Vec<Call>,
    durable: usize,
    visible: MemorySaver,
    next_id: u64,
    report: ModelReport,
}

const DIR: &str = "/store";

impl Harness {
    fn open(&mut self) -> Result<(), String> {
        self.store = None;
        let store = LogStore::open_with(self.faults.vfs(), Path::new(DIR), self.options.clone())
            .map_err(|e| format!("reopen failed: {e}"))?;
        self.store = Some(store);
        Ok(())
    }

    fn store(&self) -> Result<&LogStore, String> {
        self.store.as_ref().ok_or_else(|| "store is not open".to_string())
    }

    fn next_call(&mut self, op: &ModelOp) -> Result<Option<Call>, String> {
        let thread = |t: u8| format!("t{t}");
        Ok(Some(match *op {
            ModelOp::Put { thread: t, sub_ns, size, keep_b } => {
                let ns = if sub_ns { "sub:1" } else { "" };
                let config = Config::thread(thread(t)).with_ns(ns);
                let latest = self.visible.get_tuple(&config).map_err(|e| e.to_string())?;
                self.next_id += 1;
                let id = format!("{:016}", self.next_id);
                let mut checkpoint = Checkpoint::empty(&id);
                checkpoint.ts = format!("ts-{id}");
                let mut new_versions = ChannelVersions::new();
                let mut set = |channel: &str, version: ChannelVersion, value: Option<Vec<u8>>, cp: &mut Checkpoint| {
                    if let Some(bytes) = value {
                        cp.channel_values.insert(channel.into(), Blob::new("bytes", bytes));
                    }
                    cp.channel_versions.insert(channel.into(), version.clone());
                    new_versions.insert(channel.into(), version);
                };
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "a byte pattern: keeping the low byte is the point"
                )]
                // Channel `a` grows like a message list: a count byte that changes at the front,
                // the previous value after it, new bytes at the end (stored as a delta against
                // the previous version), until it is long, then it starts over (stored whole).
                let fresh: Vec<u8> = (0..size).map(|i| u64::from(i).wrapping_mul(self.next_id) as u8).collect();
                #[expect(clippy::cast_possible_truncation, reason = "a count byte that changes: its low byte")]
                let count = self.next_id as u8;
                let previous = latest.as_ref().and_then(|t| t.checkpoint.channel_values.get("a")).map(|b| &b.bytes);
                let a: Vec<u8> = match previous {
                    Some(previous) if previous.len() < 6000 && size % 5 != 0 => {
                        std::iter::once(count).chain(previous.iter().skip(1).copied()).chain(fresh).collect()
                    }
                    _ => fresh,
                };
                set("a", ChannelVersion::Int(self.next_id as i64), Some(a), &mut checkpoint);
                let kept_b = latest.as_ref().and_then(|t| t.checkpoint.channel_versions.get("b").cloned());
                match kept_b {
                    Some(version) if keep_b => {
                        checkpoint.channel_versions.insert("b".into(), version);
                    }
                    _ => {
                        set(
                            "b",
                            ChannelVersion::Str(format!("{id}.b")),
                            Some(id.clone().into_bytes()),
                            &mut checkpoint,
                        );
                    }
                }
                if size % 7 == 0 {
                    set("c", ChannelVersion::Float(self.next_id as f64 + 0.5), None, &mut checkpoint);
                }
                checkpoint.versions_seen.insert("node".into(), checkpoint.channel_versions.clone());
                let metadata =
                    serde_json::json!({"step": self.next_id, "run_id": format!("run{}", t % 3), "source": "loop"});
                let parent = latest.map(|t| t.checkpoint.id);
                Call::Put {
                    config: Config { checkpoint_id: parent, ..config },
                    checkpoint,
                    metadata: metadata.as_object().cloned().unwrap_or_default(),
                    new_versions,
                }
            }
            ModelOp::PutWrites { thread: t, task, special } => {
                let latest = self.visible.get_tuple(&Config::thread(thread(t))).map_err(|e| e.to_string())?;
                let id = latest.map_or_else(|| "not-stored-yet".to_string(), |t| t.checkpoint.id);
                let mut writes = vec![("a".to_string(), Blob::new("json", format!("{id}/{task}").into_bytes()))];
                if special {
                    writes.push(("__interrupt__".into(), Blob::new("json", format!("i{}", self.next_id).into_bytes())));
                }
                Call::PutWrites {
                    config: Config::thread(thread(t)).with_checkpoint(id),
                    writes,
                    task_id: format!("task{task}"),
                    task_path: format!("p{}", task % 2),
                }
            }
            ModelOp::DeleteThread { thread: t } => Call::DeleteThread(thread(t)),
            ModelOp::DeleteForRun { run } => Call::DeleteForRuns(vec![format!("run{run}")]),
            ModelOp::Prune { thread: t, keep_latest } => Call::Prune(
                vec![thread(t)],
                if keep_latest { PruneStrategy::KeepLatest } else { PruneStrategy::Delete },
            ),
            ModelOp::CopyThread { from, to } if from != to => Call::CopyThread(thread(from), thread(to)),
            ModelOp::Retention => Call::Retention,
            _ => return Ok(None),
        }))
    }

    fn acknowledge(&mut self, call: Call) -> Result<(), String> {
        if matches!(call, Call::Retention) {
            self.report.retentions += 1;
        }
        call.apply_reference(&self.visible).map_err(|e| format!("reference refused {call:?}: {e}"))?;
        self.acked.push(call);
        self.report.calls += 1;
        if self.options.durability == Durability::Sync {
            self.durable = self.acked.len();
        }
        Ok(())
    }

    /// After a crash: the recovered state must be some prefix of the acknowledged calls from the
    /// durable point on, or everything plus the cut-off call.
    fn check_recovery(&mut self, cut_off: Option<Call>) -> Result<(), String> {
        self.open()?;
        let recovered = everything(self.store()?).map_err(|e| format!("list after recovery: {e}"))?;
        let mut candidates: Vec<Vec<Call>> =
            (self.durable..=self.acked.len()).rev().map(|k| self.acked.iter().take(k).cloned().collect()).collect();
        if let Some(call) = cut_off {
            let mut with_cut = self.acked.clone();
            with_cut.push(call);
            candidates.insert(0, with_cut);
        }
        for calls in candidates {
            let reference = replay(&calls)?;
            if everything(&reference).map_err(|e| e.to_string())? == recovered {
                self.acked = calls;
                self.durable = self.acked.len();
                self.visible = reference;
                self.report.recoveries += 1;
                self.report.deltas += self.store()?.value_space().deltas;
                return Ok(());
            }
        }
        Err(format!(
            "recovered state ({} checkpoints) matches no prefix of the {} acknowledged calls from the durable point {}",
            recovered.len(),
            self.acked.len(),
            self.durable
        ))
    }
}

/// Run `ops` against a store with `durability`; `Err` describes the first violation. Chains of
/// deltas are kept short (3) so runs store whole values too; an odd number of ops runs without
/// the value cache (every delta base read back from the log), an even one with it.
pub fn run_model(ops: &[ModelOp], durability: Durability) -> Result<ModelReport, String> {
    let cache_bytes = if ops.len() % 2 == 1 { 0 } else { 1 << 20 };
    run_model_with(
        ops,
        durability,
        crate::ValueEncoding { max_chain: 3, cache_bytes, ..crate::ValueEncoding::default() },
    )
}

/// [`run_model`] with the given value encoding.
pub fn run_model_with(
    ops: &[ModelOp],
    durability: Durability,
    values: crate::ValueEncoding,
) -> Result<ModelReport, String> {
    let sim = SimFs::new();
    let faults = FaultFs::new(sim.vfs());
    // Small segments, so runs cross segment boundaries and crash during rotations.
    let options = Options {
        durability,
        segment_size: 4096,
        buffer_bytes: 2048,
        auto_compaction: None,         // compactions are the model's own operations
        prepare_segments_ahead: false, // keep every I/O on the caller's thread: reproducible runs
        retention: crate::Retention { keep_last: Some(KEEP_LAST), ..crate::Retention::default() },
        values,
        ..Options::default()
    };
    let mut harness = Harness {
        sim,
        faults,
        options,
        store: None,
        acked: Vec::new(),
        durable: 0,
        visible: MemorySaver::new(),
        next_id: 0,
        report: ModelReport::default(),
    };
    harness.open()?;
    for op in ops {
        match op {
            ModelOp::Flush => {
                harness.store()?.flush().map_err(|e| format!("flush: {e}"))?;
                harness.durable = harness.acked.len();
            }
            ModelOp::Reopen | ModelOp::ReopenFullReplay => {
                harness.store()?.close().map_err(|e| format!("close: {e}"))?;
                harness.durable = harness.acked.len();
                if *op == ModelOp::ReopenFullReplay {
                    let _ = harness.sim.vfs().remove_file(&Path::new(DIR).join("INDEX"));
                    harness.report.full_replays += 1;
                }
                harness.open()?;
                let got = everything(harness.store()?).map_err(|e| e.to_string())?;
                if got != everything(&harness.visible).map_err(|e| e.to_string())? {
                    return Err("state after a clean reopen differs from the reference".into());
                }
            }
            ModelOp::Compact => {
                let stats = harness.store()?.compact().map_err(|e| format!("compact: {e}"))?;
                harness.report.deltas_stored_whole += stats.deltas_stored_whole;
                let got = everything(harness.store()?).map_err(|e| e.to_string())?;
                if got != everything(&harness.visible).map_err(|e| e.to_string())? {
                    return Err("compaction changed what the store returns".into());
                }
                harness.report.compactions += 1;
            }
            ModelOp::Crash { seed } => {
                harness.sim.crash(*seed);
                harness.check_recovery(None)?;
            }
            ModelOp::CrashDuring { nth_io, seed } => {
                let put = ModelOp::Put { thread: (*seed % 4) as u8, sub_ns: false, size: 700, keep_b: false };
                let Some(call) = harness.next_call(&put)? else { continue };
                harness.faults.arm(Fault { kind: FaultKind::Any, nth: u64::from(*nth_io), errno: 5, sticky: true });
                let outcome = call.apply_store(harness.store()?);
                let injected = harness.faults.injected();
                harness.faults.disarm();
                let cut_off = match outcome {
                    Ok(()) => {
                        harness.acknowledge(call)?;
                        None
                    }
                    Err(_) => Some(call),
                };
                harness.report.faults = injected;
                harness.sim.crash(*seed);
                harness.check_recovery(cut_off)?;
            }
            op => {
                let Some(call) = harness.next_call(op)? else { continue };
                call.apply_store(harness.store()?).map_err(|e| format!("{call:?} failed: {e}"))?;
                harness.acknowledge(call)?;
            }
        }
    }
    let (crashes, torn, _) = harness.sim.crash_counts();
    harness.report.crashes = crashes;
    harness.report.torn_writes = torn;
    Ok(harness.report)
}
