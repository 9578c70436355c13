//! Compaction, retention and space reclamation: liveness accounting, online compaction, crash
//! safety at every step, retention that never damages what it keeps, bounded churn.
#![expect(
    clippy::expect_used,
    reason = "test code outside #[test] fns (helpers, closures): a panic is the failure report"
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{checkpoint, everything, meta, noise, workload};
use logsaver::{
    AutoCompaction, Blob, CheckpointIdGenerator, CheckpointSaver, Config, ListQuery, LogStore, MemorySaver, Options,
    PruneStrategy, Retention,
};

fn options() -> Options {
    Options { segment_size: 64 << 10, auto_compaction: None, ..Options::default() }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry").metadata().expect("stat").len()).sum()
}

#[test]
fn deleting_75_percent_and_pruning_the_rest_then_compacting_shrinks_to_15_percent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = CheckpointIdGenerator::new(None);
    let store = LogStore::open(dir.path(), options()).expect("open");
    workload(&store, &ids, "t", 40, 40);
    store.flush().expect("flush");
    let before = dir_bytes(dir.path());
    let threads: Vec<String> = (0..40).map(|t| format!("t-{t}")).collect();
    for thread in &threads[..30] {
        store.delete_thread(thread).expect("delete");
    }
    store.prune(&threads[30..], PruneStrategy::KeepLatest).expect("prune");
    let expected: Vec<_> = everything(&store);
    assert_eq!(expected.len(), 10);
    let space = store.space();
    assert!(space.garbage_ratio() > 0.9, "accounting sees the garbage: {:.3}", space.garbage_ratio());

    let stats = store.compact().expect("compact");
    assert!(stats.segments_rewritten >= 1 && stats.bytes_after < stats.bytes_before, "{stats:?}");
    assert_eq!(everything(&store), expected, "compaction changes nothing visible");
    drop(store);
    let after = dir_bytes(dir.path());
    println!(
        "directory: {before} bytes before, {after} after compaction ({:.1}%)",
        after as f64 * 100.0 / before as f64
    );
    assert!(after * 100 <= before * 15, "directory went from {before} to {after} bytes");
    let store = LogStore::open(dir.path(), options()).expect("reopen");
    assert_eq!(everything(&store), expected, "everything kept reads back after reopen");
    for tuple in &expected {
        assert_eq!(tuple.checkpoint.channel_values.len(), 2, "values of kept checkpoints intact");
        assert_eq!(tuple.pending_writes.len(), 1, "pending writes of kept checkpoints intact");
        assert!(tuple.parent_config.is_none(), "the pruned parent is gone, cleanly");
    }
}

#[test]
fn churn_keeps_the_directory_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = CheckpointIdGenerator::new(None);
    let store = LogStore::open(dir.path(), options()).expect("open");
    let mut sizes = Vec::new();
    for round in 0..8 {
        let prefix = format!("r{round}");
        workload(&store, &ids, &prefix, 10, 10);
        for t in 0..10 {
            store.delete_thread(&format!("{prefix}-{t}")).expect("delete");
        }
        store.compact().expect("compact");
        sizes.push(dir_bytes(dir.path()));
    }
    let (first, last) = (sizes[1], sizes[sizes.len() - 1]);
    assert!(last <= first + (64 << 10), "directory grows round after round: {sizes:?}");
}

#[test]
fn liveness_accounting_follows_data_as_it_dies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), options()).expect("open");
    let live = |s: &LogStore| s.space().live_bytes;
    // Values that do not compress, so stored bytes are their lengths.
    let (one_value, two_value) = (noise(1, 1000), noise(2, 1000));
    let cp = checkpoint("c1", &[("a", &one_value)], 1);
    let config = store.put(&Config::thread("t"), &cp, &Default::default(), &cp.channel_versions).expect("put");
    let one = live(&store);
    assert_eq!(store.space().garbage_ratio(), 0.0);
    // A re-put supersedes the checkpoint record (the blob is stored once and stays live).
    store.put(&Config::thread("t"), &cp, &meta(serde_json::json!({"x": 1})), &cp.channel_versions).expect("re-put");
    assert!(store.space().garbage_ratio() > 0.0);
    assert!(live(&store) >= one - 200 && live(&store) <= one + 200);
    // A newer checkpoint with a new version: the old version's blob dies when its only reader goes.
    let cp2 = checkpoint("c2", &[("a", &two_value)], 2);
    store.put(&config, &cp2, &Default::default(), &cp2.channel_versions).expect("put c2");
    let two = live(&store);
    store.prune(&["t".to_string()], PruneStrategy::KeepLatest).expect("prune");
    assert!(live(&store) + 1000 < two, "pruned checkpoint and its unreferenced blob are dead");
    // Special writes overwritten by later ones die; the last one stays.
    let target = Config::thread("t").with_checkpoint("c2");
    let before_writes = live(&store);
    for i in 0..5u8 {
        store
            .put_writes(&target, &[("__interrupt__".into(), Blob::new("json", vec![i; 500]))], "task", "")
            .expect("writes");
    }
    let grown = live(&store) - before_writes;
    assert!((500..700).contains(&grown), "only the last special write is live: {grown} bytes");
    let tuple = store.get_tuple(&Config::thread("t")).expect("get").expect("c2");
    assert_eq!(tuple.pending_writes.len(), 1);
    assert_eq!(tuple.pending_writes[0].value.bytes, vec![4u8; 500]);
    store.delete_thread("t").expect("delete");
    assert_eq!(live(&store), 0);
}

#[test]
fn readers_and_writers_keep_working_during_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LogStore::open(dir.path(), options()).expect("open"));
    let reference = Arc::new(MemorySaver::new());
    let ids = Arc::new(CheckpointIdGenerator::new(None));
    workload(&*store, &ids, "old", 20, 10);
    for t in 0..15 {
        store.delete_thread(&format!("old-{t}")).expect("delete");
    }
    let survivors: Vec<_> = everything(&*store);
    std::thread::scope(|scope| {
        let writer = {
            let (store, reference, ids) = (store.clone(), reference.clone(), ids.clone());
            scope.spawn(move || {
                for i in 0..300 {
                    let cp = checkpoint(&ids.next_id(), &[("v", format!("{i}").as_bytes())], i);
                    let config = Config::thread(format!("new-{}", i % 5));
                    for saver in [&*store as &dyn CheckpointSaver, &*reference] {
                        saver
                            .put(&config, &cp, &Default::default(), &cp.channel_versions)
                            .expect("put during compaction");
                    }
                }
            })
        };
        let reader = {
            let store = store.clone();
            let survivors = survivors.clone();
            scope.spawn(move || {
                for round in 0..200 {
                    let tuple = &survivors[round % survivors.len()];
                    let got = store.get_tuple(&tuple.config).expect("read during compaction").expect("present");
                    assert_eq!(&got, tuple);
                }
            })
        };
        for _ in 0..3 {
            store.compact().expect("compact while busy");
        }
        writer.join().expect("writer");
        reader.join().expect("reader");
    });
    let mut want = survivors;
    want.extend(everything(&*reference));
    want.sort_by(|a, b| b.checkpoint.id.cmp(&a.checkpoint.id));
    assert_eq!(everything(&*store), want);
}

#[test]
fn retention_keep_last_and_max_age_never_damage_what_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options { retention: Retention { keep_last: Some(3), max_age: None, interval: None }, ..options() };
    let store = LogStore::open(dir.path(), opts).expect("open");
    let ids = CheckpointIdGenerator::new(None);
    workload(&store, &ids, "k", 3, 8);
    let before = everything(&store);
    let stats = store.apply_retention().expect("retention");
    assert_eq!(stats.checkpoints_removed, 3 * 5);
    assert_eq!(stats.parents_cleared, 3);
    for t in 0..3 {
        let kept = store.list(&ListQuery::thread(format!("k-{t}"))).expect("list");
        assert_eq!(kept.len(), 3);
        for (i, tuple) in kept.iter().enumerate() {
            let original = before.iter().find(|b| b.checkpoint.id == tuple.checkpoint.id).expect("was there");
            assert_eq!(tuple.checkpoint, original.checkpoint, "values intact");
            assert_eq!(tuple.pending_writes, original.pending_writes, "writes intact");
            if i < 2 {
                assert_eq!(tuple.parent_config, original.parent_config, "links between kept checkpoints intact");
            } else {
                assert!(tuple.parent_config.is_none(), "oldest kept: parent removed cleanly");
            }
        }
    }
    store.compact().expect("compact");
    drop(store);
    // max_age: everything written before the cutoff goes; uuid6 ids carry their time.
    let opts = Options {
        retention: Retention { keep_last: None, max_age: Some(Duration::from_millis(200)), interval: None },
        ..options()
    };
    let store = LogStore::open(dir.path(), opts).expect("reopen");
    std::thread::sleep(Duration::from_millis(300));
    let fresh = checkpoint(&store.next_checkpoint_id(), &[("a", b"fresh")], 1);
    store.put(&Config::thread("k-0"), &fresh, &Default::default(), &fresh.channel_versions).expect("put");
    let stats = store.apply_retention().expect("retention");
    assert_eq!(stats.checkpoints_removed, 9);
    let left = everything(&store);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].checkpoint.channel_values["a"].bytes, b"fresh");
}

#[test]
fn background_worker_compacts_and_applies_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        segment_size: 64 << 10,
        auto_compaction: Some(AutoCompaction {
            garbage_ratio: 0.5,
            min_garbage_bytes: 1,
            interval: Duration::from_millis(20),
        }),
        retention: Retention { keep_last: Some(1), max_age: None, interval: Some(Duration::from_millis(20)) },
        ..Options::default()
    };
    let store = LogStore::open(dir.path(), opts).expect("open");
    let ids = CheckpointIdGenerator::new(None);
    workload(&store, &ids, "bg", 10, 30);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let settled = everything(&store).len() == 10 && store.space().segments.len() <= 3;
        if settled {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "background work did not happen: {:?}", store.space());
        std::thread::sleep(Duration::from_millis(20));
    }
    for tuple in everything(&store) {
        assert_eq!(tuple.checkpoint.channel_values.len(), 2);
    }
}

#[test]
fn a_crash_at_any_step_of_compaction_loses_nothing() {
    use logsaver::testing::{Fault, FaultFs, FaultKind, SimFs};
    for nth in 1.. {
        let sim = SimFs::new();
        let faults = FaultFs::new(sim.vfs());
        let store = LogStore::open_with(faults.vfs(), Path::new("/c"), Options { segment_size: 4096, ..options() })
            .expect("open");
        let reference = MemorySaver::new();
        let ids = CheckpointIdGenerator::new(None);
        workload(&store, &ids, "c", 3, 6);
        workload(&reference, &CheckpointIdGenerator::new(None), "c", 0, 0);
        store.delete_thread("c-0").expect("delete");
        // A chain of deltas whose bases only the latest checkpoint's value still needs.
        let mut value = noise(9, 1500);
        let mut config = Config::thread("chain");
        for step in 0..8 {
            value.extend(noise(step + 10, 150));
            let cp = checkpoint(&ids.next_id(), &[("messages", &value)], step as i64 + 1);
            config = store.put(&config, &cp, &Default::default(), &cp.channel_versions).expect("put");
        }
        store.prune(&["chain".to_string()], PruneStrategy::KeepLatest).expect("prune");
        assert!(store.value_space().longest_chain >= 4, "{:?}", store.value_space());
        let expected = everything(&store);
        faults.arm(Fault { kind: FaultKind::Any, nth, errno: 5, sticky: true });
        let outcome = store.compact();
        let fired = faults.injected() > 0;
        faults.disarm();
        if !fired {
            outcome.expect("compaction without a fault");
            assert_eq!(everything(&store), expected);
            assert!(nth > 5, "the fault should have hit some step");
            break;
        }
        // A failure in the compaction proper surfaces; one in the snapshot written after it only
        // costs the next open a replay. Either way the power cut below must lose nothing.
        let _ = outcome;
        drop(store);
        sim.crash(nth);
        let reopened =
            LogStore::open_with(sim.vfs(), Path::new("/c"), options()).unwrap_or_else(|e| panic!("step {nth}: {e}"));
        assert_eq!(everything(&reopened), expected, "crash at compaction step {nth}");
    }
}
