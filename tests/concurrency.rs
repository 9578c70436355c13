//! Where concurrent callers meet the maintenance paths (prune, retention, compaction, close):
//! one regression test per defect of issue 10, each with real threads racing the calls that
//! used to interleave wrongly, run for many rounds.
#![expect(
    clippy::expect_used,
    reason = "test code outside #[test] fns (helpers, closures): a panic is the failure report"
)]
#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "test data: `as u8` fill bytes from loop counters, wrapping intended"
)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use common::{checkpoint, directory_bytes, drop_snapshot, everything, meta};
use logsaver::testing::SimFs;
use logsaver::vfs::{LockGuard, OpenMode, RealFs, Vfs, VfsFile};
use logsaver::{CheckpointSaver, Config, Durability, Error, ListQuery, LogStore, Options, PruneStrategy, Retention};

fn options(durability: Durability) -> Options {
    Options { durability, auto_compaction: None, ..Options::default() }
}

/// Put `n` chained checkpoints on `thread`, all of run `run`; returns the last config.
fn fill(store: &LogStore, thread: &str, n: usize, run: &str) -> Config {
    let mut config = Config::thread(thread);
    for i in 0..n {
        let cp = checkpoint(&store.next_checkpoint_id(), &[("messages", format!("{thread} {i}").as_bytes())], i as i64);
        let metadata = meta(serde_json::json!({"run_id": run, "step": i}));
        config = store.put(&config, &cp, &metadata, &cp.channel_versions).expect("put");
    }
    config
}

/// Run `a` and `b` at the same moment on two threads.
fn race(a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
    let start = Barrier::new(2);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            start.wait();
            a();
        });
        scope.spawn(|| {
            start.wait();
            b();
        });
    });
}

/// Regression (defect 1): a prune or retention planned before a `delete_thread` (or
/// `delete_for_runs`) used to commit its rewrite of the kept checkpoint after the delete, and the
/// thread came back (7-30% of rounds). A delete that has returned is final.
#[test]
fn a_deleted_thread_never_comes_back_when_prune_or_retention_races_the_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(
        dir.path(),
        Options { retention: Retention { keep_last: Some(1), ..Retention::default() }, ..options(Durability::Flush) },
    )
    .expect("open");
    let mut deleted = Vec::new();
    for round in 0..1500 {
        let thread = format!("t{round}");
        let run = format!("run{round}");
        fill(&store, &thread, 4, &run);
        race(
            || match round % 3 {
                0 => store.prune(std::slice::from_ref(&thread), PruneStrategy::KeepLatest).expect("prune"),
                1 => drop(store.apply_retention().expect("retention")),
                _ => drop(store.compact().expect("compact")),
            },
            || match round % 2 {
                0 => store.delete_thread(&thread).expect("delete"),
                _ => store.delete_for_runs(std::slice::from_ref(&run)).expect("delete for runs"),
            },
        );
        deleted.push(thread);
    }
    let back = |store: &LogStore| -> Vec<String> {
        deleted
            .iter()
            .filter(|t| store.get_tuple(&Config::thread(t.as_str())).expect("get").is_some())
            .cloned()
            .collect()
    };
    assert_eq!(back(&store), Vec::<String>::new(), "deleted threads came back");
    store.close().expect("close");
    drop(store);
    drop_snapshot(dir.path());
    let replayed = LogStore::open(dir.path(), options(Durability::Flush)).expect("reopen");
    assert_eq!(back(&replayed), Vec::<String>::new(), "deleted threads came back after a full replay");
}

/// Regression (defect 2): blob reference counts rebuilt by replay depended on the order of
/// records, which compaction changes (a copied thread's blob written after a checkpoint that
/// reads it). A full replay counted one reader too few; pruning the other dropped the value.
#[test]
fn a_shared_value_survives_compaction_full_replay_prune_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = options(Durability::Sync);
    let store = LogStore::open(dir.path(), opts.clone()).expect("open");
    let cp2 = checkpoint("2", &[("ch", b"v".as_slice())], 1);
    store.put(&Config::thread("T2"), &cp2, &Default::default(), &cp2.channel_versions).expect("put T2");
    let cp1 = checkpoint("1", &[("ch", b"v".as_slice())], 1);
    store.put(&Config::thread("T1"), &cp1, &Default::default(), &cp1.channel_versions).expect("put T1");
    store.copy_thread("T1", "T2").expect("copy");
    store.compact().expect("compact");
    store.close().expect("close");
    drop(store);
    // What a crash between compaction's MANIFEST switch and its snapshot leaves.
    drop_snapshot(dir.path());
    let store = LogStore::open(dir.path(), opts.clone()).expect("reopen");
    store.prune(&["T2".into()], PruneStrategy::KeepLatest).expect("prune");
    store.compact().expect("compact");
    let value = |store: &LogStore| {
        let tuple = store.get_tuple(&Config::thread("T2").with_checkpoint("2")).expect("get").expect("kept");
        tuple.checkpoint.channel_values.get("ch").map(|b| b.bytes.clone())
    };
    assert_eq!(value(&store), Some(b"v".to_vec()), "the value was dropped");
    store.close().expect("close");
    drop(store);
    let store = LogStore::open(dir.path(), opts.clone()).expect("reopen");
    assert_eq!(value(&store), Some(b"v".to_vec()), "the value was dropped (snapshot)");
    store.close().expect("close");
    drop(store);
    drop_snapshot(dir.path());
    let store = LogStore::open(dir.path(), opts).expect("reopen");
    assert_eq!(value(&store), Some(b"v".to_vec()), "the value was dropped (full replay)");
}

/// Regression (defect 4): the index snapshot written after a compaction covered frames that
/// were not durable (Flush and None modes): compaction flushed, a put landed, then the snapshot
/// covered it. After a power cut the index pointed into zeros. A snapshot covers durable frames
/// only, in every mode.
#[test]
fn a_snapshot_never_covers_frames_lost_in_a_power_cut() {
    for durability in [Durability::None, Durability::Flush] {
        for round in 0..12u64 {
            let sim = SimFs::new();
            let opts = Options {
                segment_size: 16 << 10,
                prepare_segments_ahead: false,
                buffer_bytes: 64 << 10,
                ..options(durability)
            };
            let store = LogStore::open_with(sim.vfs(), Path::new("/store"), opts.clone()).expect("open");
            let done = std::sync::atomic::AtomicBool::new(false);
            let puts = std::sync::atomic::AtomicU64::new(0);
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    let mut config = Config::thread("w");
                    let mut i = 0i64;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let cp = checkpoint(&format!("{i:012}"), &[("x", vec![i as u8; 300].as_slice())], i);
                        config = store.put(&config, &cp, &Default::default(), &cp.channel_versions).expect("put");
                        puts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        i += 1;
                    }
                });
                // Compact while the writer is in full swing: its puts land between compaction's
                // flush and its snapshot.
                let wait_for = |n: u64| {
                    while puts.load(std::sync::atomic::Ordering::Relaxed) < n {
                        std::thread::yield_now();
                    }
                };
                wait_for(100);
                let mut compactions = 0u64;
                while puts.load(std::sync::atomic::Ordering::Relaxed) < 3000 || compactions < 20 {
                    store.compact().expect("compact");
                    compactions += 1;
                }
                done.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            // Power cut: the unflushed tail is lost, the snapshot stays.
            std::mem::forget(store);
            sim.crash(round + 1);
            let store = LogStore::open_with(sim.vfs(), Path::new("/store"), opts.clone())
                .unwrap_or_else(|e| panic!("{durability:?} round {round}: reopen: {e}"));
            let from_snapshot = store
                .list(&ListQuery::all())
                .unwrap_or_else(|e| panic!("{durability:?} round {round}: the snapshot covers lost frames: {e}"));
            drop(store);
            sim.crash(1000 + round);
            let replayed = LogStore::open_with(sim.vfs(), Path::new("/store"), Options { use_snapshot: false, ..opts })
                .unwrap_or_else(|e| panic!("{durability:?} round {round}: full replay: {e}"));
            assert_eq!(everything(&replayed), from_snapshot, "{durability:?} round {round}");
        }
    }
}

/// Regression (defect 4), deterministic: a put that lands between compaction's switch and its
/// snapshot (the test hook runs one there) is acknowledged in `None` and `Flush` mode without
/// being durable; the snapshot used to cover it, and after a power cut the index pointed into
/// zeros ("unknown record kind 0").
#[test]
fn a_put_landing_just_before_the_snapshot_is_covered_only_once_durable() {
    for durability in [Durability::None, Durability::Flush] {
        for seed in 1..=8u64 {
            let sim = SimFs::new();
            let opts = Options { prepare_segments_ahead: false, ..options(durability) };
            let store = Arc::new(LogStore::open_with(sim.vfs(), Path::new("/store"), opts.clone()).expect("open"));
            fill(&store, "before", 5, "r");
            let weak = Arc::downgrade(&store);
            store.set_before_snapshot_hook(move || {
                if let Some(store) = weak.upgrade() {
                    fill(&store, "landed-before-the-snapshot", 2, "r");
                }
            });
            store.compact().expect("compact");
            std::mem::forget(store); // a power cut: nothing more is flushed
            sim.crash(seed);
            let store = LogStore::open_with(sim.vfs(), Path::new("/store"), opts.clone()).expect("reopen");
            let from_snapshot = store
                .list(&ListQuery::all())
                .unwrap_or_else(|e| panic!("{durability:?} seed {seed}: the snapshot covers a lost frame: {e}"));
            drop(store);
            let replayed = LogStore::open_with(sim.vfs(), Path::new("/store"), Options { use_snapshot: false, ..opts })
                .expect("full replay");
            assert_eq!(everything(&replayed), from_snapshot, "{durability:?} seed {seed}");
        }
    }
}

/// Regression (review of issue 10's fixes): in `Flush` and `None` mode a compaction dropped the
/// records that an unsynced frame had just killed (retention's rewrite of the kept checkpoint),
/// switched the MANIFEST and unlinked them; a power cut before that frame was synced lost the
/// kept checkpoint altogether. The switch now syncs the active segment first.
#[test]
fn compaction_never_drops_records_killed_only_by_frames_a_power_cut_can_lose() {
    for durability in [Durability::Flush, Durability::None] {
        for seed in 1..=6u64 {
            let sim = SimFs::new();
            let opts = Options {
                prepare_segments_ahead: false,
                retention: Retention { keep_last: Some(1), ..Retention::default() },
                ..options(durability)
            };
            let store = LogStore::open_with(sim.vfs(), Path::new("/store"), opts.clone()).expect("open");
            let kept = fill(&store, "t", 2, "r");
            // Everything so far sealed and durable: the victims of the next compaction.
            store.compact().expect("seal and compact");
            // Unsynced: the kept checkpoint rewritten without its parent, the parent removed.
            let removed = store.apply_retention().expect("retention");
            assert_eq!(removed.checkpoints_removed, 1);
            // The background compactor's path: it compacts sealed segments without sealing the
            // active one, so nothing else syncs the retention frame.
            // The power goes right after the switch (before the snapshot, which syncs too).
            let cut = sim.clone();
            store.set_before_snapshot_hook(move || cut.crash(seed));
            let policy = logsaver::AutoCompaction { garbage_ratio: 0.0, min_garbage_bytes: 0, ..Default::default() };
            let _ = store.compact_if_needed(&policy);
            std::mem::forget(store);
            let store = LogStore::open_with(sim.vfs(), Path::new("/store"), opts.clone()).expect("reopen");
            let latest = store.get_tuple(&Config::thread("t")).expect("get");
            assert_eq!(
                latest.map(|t| t.config),
                Some(kept.clone()),
                "{durability:?} seed {seed}: the kept checkpoint, durable before the retention pass, is gone"
            );
        }
    }
}

/// Regression (review of issue 10's fixes): a second, concurrent `close` returned at once while
/// the first was still flushing and holding the directory lock; a caller that then reopened got
/// `Locked`, and in `None` mode believed data flushed that was not yet. Now it waits.
#[test]
fn a_concurrent_close_waits_for_the_first() {
    for round in 0..40 {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = options(Durability::None);
        let store = LogStore::open(dir.path(), opts.clone()).expect("open");
        let last = fill(&store, "t", 50, "r");
        race(
            || store.close().expect("close"),
            || {
                store.close().expect("second close");
                let reopened = LogStore::open(dir.path(), opts.clone())
                    .unwrap_or_else(|e| panic!("round {round}: reopen right after close returned: {e}"));
                let latest = reopened.get_tuple(&Config::thread("t")).expect("get").map(|t| t.config);
                assert_eq!(latest, Some(last.clone()), "round {round}: the buffered puts were not flushed yet");
            },
        );
    }
}

/// Regression (CI failure after issue 11): `close` dropped the LOCK file's descriptor, but an
/// flock belongs to the open file description, and a process spawned on another thread shares
/// every descriptor between its fork and its exec. A reopen right after `close` then failed
/// with `Locked` now and again. `close` now unlocks explicitly.
#[test]
fn close_releases_the_lock_while_another_thread_spawns_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::process::Command::new("true").status().expect("spawn `true`");
            }
        });
        let outcome = std::panic::catch_unwind(|| {
            for round in 0..300 {
                let store = LogStore::open(dir.path(), options(Durability::None))
                    .unwrap_or_else(|e| panic!("round {round}: reopen right after close: {e}"));
                store.close().expect("close");
            }
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
}

/// Regression (defect 5): puts that passed the open check kept going after `close` had flushed
/// and released the lock (in None mode acknowledged and never written); a user's `compact()`
/// kept going too. Now close waits for calls in flight, and nothing touches the directory after
/// it returns.
#[test]
fn close_waits_for_calls_in_flight_and_nothing_changes_after_it() {
    for durability in [Durability::None, Durability::Flush, Durability::Sync] {
        for round in 0..8 {
            let dir = tempfile::tempdir().expect("tempdir");
            let opts = Options { segment_size: 64 << 10, ..options(durability) };
            let store = LogStore::open(dir.path(), opts.clone()).expect("open");
            let acknowledged = parking_lot::Mutex::new(Vec::new());
            let after_close = std::sync::atomic::AtomicBool::new(false);
            let changed = std::thread::scope(|scope| {
                for w in 0..3 {
                    let (store, acknowledged, after_close) = (&store, &acknowledged, &after_close);
                    scope.spawn(move || {
                        let mut config = Config::thread(format!("w{w}"));
                        for i in 0.. {
                            let cp = checkpoint(&format!("{i:012}"), &[("x", vec![w as u8; 500].as_slice())], i);
                            match store.put(&config, &cp, &Default::default(), &cp.channel_versions) {
                                Ok(saved) => {
                                    assert!(
                                        !after_close.load(std::sync::atomic::Ordering::SeqCst),
                                        "a put was acknowledged after close returned"
                                    );
                                    acknowledged.lock().push((format!("w{w}"), cp.id.clone()));
                                    config = saved;
                                }
                                Err(Error::Closed) => return,
                                Err(other) => panic!("put: {other}"),
                            }
                        }
                    });
                }
                let compactor = scope.spawn(|| {
                    loop {
                        match store.compact() {
                            Ok(_) => {}
                            Err(Error::Closed) => return,
                            Err(other) => panic!("compact: {other}"),
                        }
                    }
                });
                std::thread::sleep(std::time::Duration::from_millis(30 + round * 7));
                store.close().expect("close");
                after_close.store(true, std::sync::atomic::Ordering::SeqCst);
                let at_close = directory_bytes(dir.path());
                compactor.join().expect("compactor");
                std::thread::sleep(std::time::Duration::from_millis(20));
                directory_bytes(dir.path()) != at_close
            });
            assert!(!changed, "{durability:?} round {round}: the directory changed after close returned");
            drop(store);
            let reopened = LogStore::open(dir.path(), opts).expect("reopen");
            for (thread, id) in acknowledged.lock().iter() {
                let found = reopened.get_tuple(&Config::thread(thread.as_str()).with_checkpoint(id.clone()));
                assert!(
                    matches!(found, Ok(Some(_))),
                    "{durability:?} round {round}: acknowledged {thread}/{id} lost by close"
                );
            }
        }
    }
}

/// Regression (defect 7): `put` decided under the read lock that a value was stored and did not
/// write it; a `delete_thread`, or a compaction dropping the then unreferenced blob, could
/// remove it before the put committed, leaving a checkpoint without its value.
#[test]
fn a_put_never_references_a_value_dropped_under_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        LogStore::open(dir.path(), Options { segment_size: 16 << 10, ..options(Durability::Flush) }).expect("open");
    let check = |thread: &str, id: &str| {
        if let Some(tuple) = store.get_tuple(&Config::thread(thread).with_checkpoint(id)).expect("get") {
            assert_eq!(
                tuple.checkpoint.channel_values.get("ch").map(|b| b.bytes.as_slice()),
                Some(b"shared value".as_slice()),
                "checkpoint {id} of {thread} lost its value"
            );
        }
    };
    for round in 0..600 {
        let thread = format!("t{round}");
        // The value (ch, 1) is stored by a checkpoint that then goes: an unreferenced blob that
        // compaction drops, or a thread that delete_thread removes.
        let first = checkpoint(&format!("{round:06}-a"), &[("ch", b"shared value".as_slice())], 1);
        store
            .put(
                &Config::thread(thread.as_str()),
                &first,
                &meta(serde_json::json!({"run_id": "gone"})),
                &first.channel_versions,
            )
            .expect("put");
        if round % 2 == 0 {
            store.delete_for_runs(&["gone".into()]).expect("delete for runs");
        }
        let second = checkpoint(&format!("{round:06}-b"), &[("ch", b"shared value".as_slice())], 1);
        race(
            || {
                store
                    .put(&Config::thread(thread.as_str()), &second, &Default::default(), &second.channel_versions)
                    .expect("put");
                check(&thread, &second.id);
            },
            || match round % 2 {
                0 => drop(store.compact().expect("compact")),
                _ => store.delete_thread(&thread).expect("delete"),
            },
        );
        check(&thread, &second.id);
    }
    store.close().expect("close");
    drop(store);
    drop_snapshot(dir.path());
    let store = LogStore::open(dir.path(), options(Durability::Flush)).expect("reopen");
    for tuple in everything(&store) {
        assert!(tuple.checkpoint.channel_values.contains_key("ch"), "{} lost its value", tuple.config.thread_id);
    }
}

/// Regression (defect 8): the run-id table interned every run id ever seen and the INDEX saved
/// all of them. Now it holds the runs of live checkpoints only, live and after reopen.
#[test]
fn run_ids_are_forgotten_with_their_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), options(Durability::Flush)).expect("open");
    for i in 0..2000 {
        fill(&store, &format!("t{}", i % 10), 1, &format!("run-{i}"));
    }
    assert_eq!(store.stats().run_ids, 2000);
    let gone: Vec<String> = (0..1500).map(|i| format!("run-{i}")).collect();
    store.delete_for_runs(&gone).expect("delete for runs");
    assert_eq!(store.stats().run_ids, 500);
    for t in 0..5 {
        store.delete_thread(&format!("t{t}")).expect("delete");
    }
    assert_eq!(store.stats().run_ids, 250);
    // Replacing a checkpoint releases its old run.
    store.close().expect("close");
    drop(store);
    let store = LogStore::open(dir.path(), options(Durability::Flush)).expect("reopen");
    assert_eq!(store.stats().run_ids, 250, "from the snapshot");
    store.close().expect("close");
    drop(store);
    drop_snapshot(dir.path());
    let store = LogStore::open(dir.path(), options(Durability::Flush)).expect("reopen");
    assert_eq!(store.stats().run_ids, 250, "from a full replay");
    // Freed numbers are reused: the table does not grow with churn.
    for i in 0..300 {
        fill(&store, "churn", 1, &format!("new-run-{i}"));
        store.delete_thread("churn").expect("delete");
    }
    assert_eq!(store.stats().run_ids, 250);
}

/// Regression (defect 8): `apply_retention` built one batch for the whole store under the index
/// read lock; on a large store it exceeded the frame limit and background retention failed every
/// pass. Now it commits bounded batches.
#[test]
fn retention_commits_in_bounded_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(
        dir.path(),
        Options { retention: Retention { keep_last: Some(1), ..Retention::default() }, ..options(Durability::Flush) },
    )
    .expect("open");
    let last = fill(&store, "big", 40_000, "r");
    for t in 0..50 {
        fill(&store, &format!("small{t}"), 3, "r");
    }
    let frames_before = store.stats().frames;
    let stats = store.apply_retention().expect("retention");
    assert_eq!(stats.checkpoints_removed, 39_999 + 50 * 2);
    let frames = store.stats().frames - frames_before;
    assert!(frames >= 3, "one batch for the whole store ({frames} frames)");
    let kept = store.list(&ListQuery::thread("big")).expect("list");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].config, last);
    assert_eq!(kept[0].parent_config, None, "the kept checkpoint's removed parent is cleared");
    assert_eq!(store.stats().checkpoints, 1 + 50);
}

/// A file system that records the directories it is asked to sync.
#[derive(Debug, Default)]
struct RecordingFs {
    synced_dirs: parking_lot::Mutex<Vec<PathBuf>>,
}

impl Vfs for RecordingFs {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn is_dir(&self, path: &Path) -> bool {
        RealFs.is_dir(path)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Arc<dyn VfsFile>> {
        RealFs.open(path, mode)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        RealFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.synced_dirs.lock().push(dir.to_path_buf());
        RealFs.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path) -> std::io::Result<Option<LockGuard>> {
        RealFs.try_lock(path)
    }
}

/// Regression (defect 9): the store directory's parent was not fsynced after the directory was
/// created, so a power cut could lose the whole directory entry with everything in it.
#[test]
fn the_parents_of_a_new_store_directory_are_fsynced() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("a").join("b").join("store");
    let fs = Arc::new(RecordingFs::default());
    let store = LogStore::open_with(fs.clone(), &dir, options(Durability::Sync)).expect("open");
    drop(store);
    let synced = fs.synced_dirs.lock().clone();
    for parent in [root.path().to_path_buf(), root.path().join("a"), root.path().join("a").join("b")] {
        assert!(synced.contains(&parent), "{} not fsynced: {synced:?}", parent.display());
    }
}
