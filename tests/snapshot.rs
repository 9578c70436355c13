//! The index snapshot: used when valid, and any doubt (damage, staleness) falls back to the
//! full scan with the same result.

mod common;

use std::path::Path;

use common::{everything, workload};
use logsaver::testing::SimFs;
use logsaver::{CheckpointIdGenerator, CheckpointSaver, LogStore, Options};

fn options() -> Options {
    Options { segment_size: 16 << 10, auto_compaction: None, ..Options::default() }
}

#[test]
fn reopen_uses_the_snapshot_and_replays_only_what_follows_it() {
    let sim = SimFs::new();
    let dir = Path::new("/s");
    let ids = CheckpointIdGenerator::new(None);
    {
        let store = LogStore::open_with(sim.vfs(), dir, options()).expect("open");
        workload(&store, &ids, "a", 5, 10);
        store.close().expect("close writes the snapshot");
    }
    let store = LogStore::open_with(sim.vfs(), dir, options()).expect("reopen");
    assert!(store.recovery_report().used_snapshot);
    assert_eq!(store.recovery_report().records, 0, "nothing to replay after a clean close");
    workload(&store, &ids, "b", 3, 10);
    let expected = everything(&store);
    // Power cut after more writes (Sync: all durable), with no close: the old snapshot plus a
    // replay of the log written after it.
    std::mem::forget(store);
    sim.crash(7);
    let store = LogStore::open_with(sim.vfs(), dir, options()).expect("recover");
    assert!(store.recovery_report().used_snapshot);
    assert!(store.recovery_report().records > 0, "the tail after the snapshot was replayed");
    assert_eq!(everything(&store), expected);
}

#[test]
fn damaged_or_stale_snapshots_fall_back_to_the_scan() {
    let sim = SimFs::new();
    let dir = Path::new("/s");
    let snapshot = dir.join("INDEX");
    let ids = CheckpointIdGenerator::new(None);
    let expected;
    {
        let store = LogStore::open_with(sim.vfs(), dir, options()).expect("open");
        workload(&store, &ids, "a", 6, 12);
        for t in 0..4 {
            store.delete_thread(&format!("a-{t}")).expect("delete");
        }
        expected = everything(&store);
    }
    let good = sim.read(&snapshot).expect("snapshot written at close");
    let mut damaged = good.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    sim.write(&snapshot, damaged);
    {
        let store = LogStore::open_with(sim.vfs(), dir, options()).expect("open with a damaged snapshot");
        assert!(!store.recovery_report().used_snapshot);
        assert_eq!(everything(&store), expected);
        store.compact().expect("compact");
    }
    // The snapshot from before the compaction names segments that are gone: stale.
    sim.write(&snapshot, good);
    let store = LogStore::open_with(sim.vfs(), dir, options()).expect("open with a stale snapshot");
    assert!(!store.recovery_report().used_snapshot);
    assert_eq!(everything(&store), expected);
}
