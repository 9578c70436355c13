//! Values stored as deltas (format version 2): chains stay readable through every call that
//! removes, copies or moves data, bounded by `max_chain`, with or without the value cache, and
//! under concurrent writers, maintenance and readers.
#![expect(clippy::expect_used, reason = "test code: a panic is the failure report")]
#![expect(clippy::cast_possible_truncation, reason = "small test counters")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use logsaver::{
    Blob, ChannelVersion, Checkpoint, CheckpointSaver, Config, ListQuery, LogStore, MemorySaver, Options,
    PruneStrategy, Retention, ValueEncoding,
};

mod common;
use common::{drop_snapshot, everything, meta};

fn options(max_chain: u32, cache_bytes: u64) -> Options {
    Options {
        segment_size: 32 << 10,
        auto_compaction: None,
        values: ValueEncoding { max_chain, cache_bytes, ..ValueEncoding::default() },
        ..Options::default()
    }
}

/// Without compression: whole values stay large against their deltas, so chains reach
/// `max_chain` (compressed, this workload's whole values are small and chains end sooner).
fn uncompressed(max_chain: u32, cache_bytes: u64) -> Options {
    let options = options(max_chain, cache_bytes);
    Options { values: ValueEncoding { compression_level: None, ..options.values }, ..options }
}

/// The `messages` value at `step` of `thread`: a JSON list with one more message each step,
/// after a 2 KiB system prompt that does not compress (so whole values stay large against the
/// deltas and chains grow long).
fn messages(thread: &str, step: usize) -> Vec<u8> {
    let prompt: String = common::noise(7, 1024).iter().map(|b| format!("{b:02x}")).collect();
    let items: Vec<String> = std::iter::once(format!(r#"{{"role":"system","content":"{prompt}"}}"#))
        .chain((0..=step)
        .map(|i| {
            format!(r#"{{"role":"ai","content":"message {i} of {thread}: the answer is {}, lorem ipsum dolor sit amet, consectetur adipiscing elit"}}"#, i * 7)
        }))
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

/// One step of a conversation on `thread`: `messages` grows, `step` changes.
fn put_step(saver: &dyn CheckpointSaver, thread: &str, step: usize, parent: Option<String>, id: &str) -> Config {
    let mut cp = Checkpoint::empty(id);
    cp.ts = format!("2026-11-22T00:00:00.{step:06}+00:00");
    cp.channel_values.insert("messages".into(), Blob::new("json", messages(thread, step)));
    cp.channel_versions.insert("messages".into(), ChannelVersion::Str(format!("{:032}.0.1", step + 1)));
    cp.channel_values.insert("step".into(), Blob::new("json", step.to_string().into_bytes()));
    cp.channel_versions.insert("step".into(), ChannelVersion::Int(step as i64 + 1));
    let new_versions = cp.channel_versions.clone();
    let metadata = meta(serde_json::json!({"step": step, "run_id": format!("run-{}", step % 3)}));
    let config = Config { thread_id: thread.into(), checkpoint_ns: String::new(), checkpoint_id: parent };
    saver.put(&config, &cp, &metadata, &new_versions).expect("put")
}

fn conversation(
    savers: &[&dyn CheckpointSaver],
    thread: &str,
    steps: std::ops::Range<usize>,
    ids: &logsaver::CheckpointIdGenerator,
) {
    let first = savers.first().expect("a saver");
    let mut parent = first.get_tuple(&Config::thread(thread)).expect("get").map(|t| t.checkpoint.id);
    for step in steps {
        let id = ids.next_id();
        for saver in savers {
            put_step(*saver, thread, step, parent.clone(), &id);
        }
        parent = Some(id);
    }
}

/// `actual == expected`, reported by the first byte that differs (values are kilobytes long).
#[track_caller]
fn assert_value(actual: &[u8], expected: &[u8], what: &str) {
    if actual != expected {
        let at = actual.iter().zip(expected).take_while(|(a, b)| a == b).count();
        panic!("{what}: {} bytes, expected {}; first difference at byte {at}", actual.len(), expected.len());
    }
}

fn same(store: &LogStore, reference: &MemorySaver, what: &str) {
    assert_eq!(everything(store), everything(reference), "{what}");
    let report = store.verify(&mut |_, _| {});
    assert!(report.problems.is_empty(), "{what}: {:?}", report.problems);
}

#[test]
fn chains_stay_readable_through_every_maintenance_call() {
    for (compressed, cache_bytes) in [(true, 64 << 20), (false, 0)] {
        let options =
            |max_chain| if compressed { options(max_chain, cache_bytes) } else { uncompressed(max_chain, cache_bytes) };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(dir.path(), options(8)).expect("open");
        let reference = MemorySaver::new();
        let ids = logsaver::CheckpointIdGenerator::new(None);
        let both: [&dyn CheckpointSaver; 2] = [&store, &reference];
        for thread in ["a", "b", "c"] {
            conversation(&both, thread, 0..40, &ids);
        }
        let space = store.value_space();
        assert!(space.deltas > 60, "values are stored as deltas: {space:?}");
        assert!(space.longest_chain <= 8, "chains are bounded by max_chain: {space:?}");
        if compressed {
            assert!(space.logical_bytes > 5 * space.stored_bytes, "{space:?}");
        } else {
            assert_eq!(space.longest_chain, 8, "chains grow to max_chain: {space:?}");
            assert_eq!(space.compressed, 0, "{space:?}");
        }
        same(&store, &reference, "after writing");

        // Bases lose their checkpoints: only chains keep them.
        store.prune(&["a".to_string()], PruneStrategy::KeepLatest).expect("prune");
        reference.prune(&["a".to_string()], PruneStrategy::KeepLatest).expect("prune");
        same(&store, &reference, "after prune keep_latest");
        store.delete_for_runs(&["run-1".to_string()]).expect("delete_for_runs");
        reference.delete_for_runs(&["run-1".to_string()]).expect("delete_for_runs");
        same(&store, &reference, "after delete_for_runs");
        store.compact().expect("compact");
        same(&store, &reference, "after compaction dropped what no chain needs");
        // A copy carries its chains; the source's deletion leaves them whole.
        store.copy_thread("b", "copy").expect("copy");
        reference.copy_thread("b", "copy").expect("copy");
        store.delete_thread("b").expect("delete");
        reference.delete_thread("b").expect("delete");
        store.compact().expect("compact");
        same(&store, &reference, "after copy, delete of the source and compaction");
        // Writing on after all that: deltas against whatever survived.
        conversation(&both, "a", 40..50, &ids);
        conversation(&both, "copy", 40..50, &ids);
        same(&store, &reference, "after writing on");
        let retention = Retention { keep_last: Some(3), ..Retention::default() };
        drop(store);
        let store = LogStore::open(dir.path(), Options { retention, ..options(8) }).expect("reopen");
        store.apply_retention().expect("retention");
        let kept: Vec<_> = everything(&store);
        store.compact().expect("compact");
        assert_eq!(everything(&store), kept, "compaction after retention");
        store.close().expect("close");
        drop_snapshot(dir.path());
        let store = LogStore::open(dir.path(), options(8)).expect("reopen with a full replay");
        assert_eq!(everything(&store), kept, "a full replay rebuilds the same chains");
        assert!(store.verify(&mut |_, _| {}).problems.is_empty());
    }
}

#[test]
fn a_delta_whose_checkpoints_died_is_not_revived_after_its_base_was_compacted() {
    // The cached last value of a channel is a delta nothing reads any more, in the active
    // segment; compaction of the sealed segments drops its base. A put must not store a delta
    // against it, nor reuse it for the same version: it names a base that is gone. Found by the
    // concurrent model (the drop raced with the put); this is its deterministic form.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), options(8, 64 << 20)).expect("open");
    let ids = logsaver::CheckpointIdGenerator::new(None);
    let base = put_step(&store, "t", 3, None, &ids.next_id());
    fill_the_segment(&store, &ids);
    let delta = put_step(&store, "t", 4, base.checkpoint_id.clone(), &ids.next_id());
    assert_eq!(store.value_space().deltas, 1, "step 4 is a delta against step 3");
    let seal_position = store.space().segments.len();
    assert!(seal_position >= 2, "the delta is in a later segment than its base");
    // Both checkpoints go; compacting the sealed segments drops the base, not the dead delta.
    store.delete_for_runs(&["run-0".to_string(), "run-1".to_string()]).expect("delete");
    let policy = logsaver::AutoCompaction { garbage_ratio: 0.0, min_garbage_bytes: 0, ..Default::default() };
    store.compact_if_needed(&policy).expect("compact").expect("compacted the sealed segments");
    // Step 4 again (same versions: the stored delta is not reused) and step 5 (not a delta
    // against the dead one).
    let again = put_step(&store, "t", 4, None, &delta.checkpoint_id.clone().expect("id"));
    let next = put_step(&store, "t", 5, again.checkpoint_id.clone(), &ids.next_id());
    for config in [&again, &next] {
        let tuple = store.get_tuple(config).expect("readable").expect("stored");
        let step = tuple.metadata["step"].as_u64().expect("step") as usize;
        assert_value(&tuple.checkpoint.channel_values["messages"].bytes, &messages("t", step), "value read back");
    }
    assert!(store.verify(&mut |_, _| {}).problems.is_empty());
}

#[test]
fn a_cached_value_overwritten_by_a_copy_is_not_used_as_a_base() {
    // `t`'s cache holds version 1 as `t` wrote it; copy_thread then puts `s`'s version 1 (other
    // bytes, same version) in its place. The next put on `t` must encode against what the
    // index holds, or readers would rebuild a different value.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), options(8, 64 << 20)).expect("open");
    let ids = logsaver::CheckpointIdGenerator::new(None);
    // Six steps each: the values differ in one character per message ("of t" / "of s"), so a
    // delta against the wrong one is small, and would be used.
    let mut parent = None;
    for step in 0..6 {
        parent = put_step(&store, "t", step, parent, &ids.next_id()).checkpoint_id;
    }
    let mut s_latest = Config::thread("s");
    for step in 0..6 {
        s_latest = put_step(&store, "s", step, s_latest.checkpoint_id, &ids.next_id());
    }
    store.copy_thread("s", "t").expect("copy");
    // The latest of `t` is now `s`'s step 5, copied. Write on it a value that resembles what `t`
    // held before (a delta against `t`'s old bytes copies most of them: applied to `s`'s bytes it
    // would rebuild something else). No read first: a read would refresh the cache.
    let parent = Config::thread("t").with_checkpoint(s_latest.checkpoint_id.expect("id"));
    let mut cp = Checkpoint::empty(ids.next_id());
    cp.channel_values.insert("messages".into(), Blob::new("json", messages("t", 6)));
    cp.channel_versions.insert("messages".into(), ChannelVersion::Str(format!("{:032}.0.1", 7)));
    let versions = cp.channel_versions.clone();
    let saved = store.put(&parent, &cp, &Default::default(), &versions).expect("put");
    assert!(store.value_space().deltas > 0);
    let read = store.get_tuple(&saved).expect("get").expect("stored");
    assert_value(&read.checkpoint.channel_values["messages"].bytes, &messages("t", 6), "value read back");
    drop(store);
    let store = LogStore::open(dir.path(), options(8, 64 << 20)).expect("reopen");
    let read = store.get_tuple(&saved).expect("get").expect("stored");
    assert_value(&read.checkpoint.channel_values["messages"].bytes, &messages("t", 6), "value read back");
}

#[test]
fn writers_maintenance_and_readers_at_once_keep_every_value_whole() {
    // Four writers grow one conversation each; one thread prunes, deletes runs, copies and
    // compacts in a loop; two readers read latest, by id and lists. Every value read must be
    // exactly what its step wrote (values are a function of thread and step), through chains
    // whose bases are pruned and compacted under them. A small cache forces evictions, so bases
    // are also read back from the log.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LogStore::open(dir.path(), options(6, 256 << 10)).expect("open"));
    let ids = Arc::new(logsaver::CheckpointIdGenerator::new(None));
    let done = Arc::new(AtomicBool::new(false));
    let check = |tuple: &logsaver::CheckpointTuple| {
        let thread = tuple.config.thread_id.trim_start_matches("copy-");
        let step = tuple.metadata["step"].as_u64().expect("step") as usize;
        let value = &tuple.checkpoint.channel_values["messages"].bytes;
        assert_value(
            value,
            &messages(thread, step),
            &format!("{}/{} step {step}", tuple.config.thread_id, tuple.checkpoint.id),
        );
    };
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (store, ids) = (store.clone(), ids.clone());
                scope.spawn(move || {
                    let thread = format!("w{w}");
                    let mut parent = None;
                    for step in 0..150 {
                        let id = ids.next_id();
                        put_step(&*store, &thread, step, parent.take(), &id);
                        parent = Some(id);
                    }
                })
            })
            .collect();
        let maintenance = {
            let (store, done) = (store.clone(), done.clone());
            scope.spawn(move || {
                let (mut round, mut stored_whole) = (0usize, 0u64);
                while !done.load(Ordering::Relaxed) {
                    let thread = format!("w{}", round % 4);
                    match round % 5 {
                        0 => store.prune(&[thread], PruneStrategy::KeepLatest).expect("prune"),
                        1 => store.delete_for_runs(&[format!("run-{}", round % 3)]).expect("delete_for_runs"),
                        2 => {
                            let copy = format!("copy-{thread}");
                            store.delete_thread(&copy).expect("delete copy");
                            store.copy_thread(&thread, &copy).expect("copy");
                        }
                        _ => stored_whole += store.compact().expect("compact").deltas_stored_whole,
                    }
                    round += 1;
                }
                (round, stored_whole)
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (store, done) = (store.clone(), done.clone());
                scope.spawn(move || {
                    let mut reads = 0usize;
                    while !done.load(Ordering::Relaxed) {
                        let thread =
                            format!("{}w{}", if reads.is_multiple_of(3) { "copy-" } else { "" }, (reads + r) % 4);
                        for tuple in store.list(&ListQuery::thread(&thread).limit(5)).expect("list") {
                            check(&tuple);
                            if let Some(again) = store.get_tuple(&tuple.config).expect("by id") {
                                check(&again);
                            }
                            reads += 1;
                        }
                        if let Some(latest) = store.get_tuple(&Config::thread(&thread)).expect("latest") {
                            check(&latest);
                        }
                    }
                    reads
                })
            })
            .collect();
        // verify beside them: it takes the index lock one namespace (and one value's chain) at
        // a time and rebuilds values without it, so each step must hold whatever ran between.
        let verifier = {
            let (store, done) = (store.clone(), done.clone());
            scope.spawn(move || {
                // Passes over a store holding something (the first ones may find it empty).
                let mut passes = 0usize;
                while !done.load(Ordering::Relaxed) {
                    let report = store.verify(&mut |_, _| {});
                    assert!(report.problems.is_empty(), "verify beside writers: {:?}", report.problems);
                    passes += usize::from(report.records_checked > 100);
                }
                passes
            })
        };
        for writer in writers {
            writer.join().expect("writer");
        }
        done.store(true, Ordering::Relaxed);
        let (rounds, stored_whole) = maintenance.join().expect("maintenance");
        let reads: usize = readers.into_iter().map(|r| r.join().expect("reader")).sum();
        let passes = verifier.join().expect("verifier");
        println!(
            "{rounds} maintenance rounds ({stored_whole} deltas stored whole), {reads} values read and checked, {passes} verify passes over 100+ records"
        );
        assert!(passes > 0, "verify ran beside the writers over a populated store");
        assert!(rounds > 10 && reads > 100, "{rounds} rounds, {reads} reads");
        assert!(stored_whole > 0, "compactions stored deltas whole while writers wrote on them");
    });
    for tuple in everything(&*store) {
        check(&tuple);
    }
    assert!(store.verify(&mut |_, _| {}).problems.is_empty());
    let space = store.value_space();
    assert!(space.deltas > 0 && space.longest_chain <= 6, "{space:?}");
}

#[test]
fn compaction_stores_whole_a_delta_that_alone_kept_its_bases_and_reclaims_them() {
    // After prune(keep_latest) a thread's one checkpoint reads a value deep in a chain whose
    // other versions nothing reads. Compaction stores that value whole; its bases then die and
    // the next compaction drops them.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), uncompressed(64, 64 << 20)).expect("open");
    let reference = MemorySaver::new();
    let ids = logsaver::CheckpointIdGenerator::new(None);
    let both: [&dyn CheckpointSaver; 2] = [&store, &reference];
    conversation(&both, "t", 0..40, &ids);
    for saver in both {
        saver.prune(&["t".to_string()], PruneStrategy::KeepLatest).expect("prune");
    }
    let before = store.value_space();
    assert!(before.longest_chain >= 10 && before.deltas >= 10, "{before:?}");
    let first = store.compact().expect("compact");
    assert!(first.deltas_stored_whole >= 1, "{first:?}");
    same(&store, &reference, "after the compaction that stored the delta whole");
    store.compact().expect("compact again");
    let after = store.value_space();
    assert_eq!((after.deltas, after.longest_chain), (0, 0), "{after:?}");
    assert!(after.values <= 2 && after.stored_bytes < before.stored_bytes, "{before:?} -> {after:?}");
    same(&store, &reference, "after the bases were reclaimed");
    // Writing on: deltas against the value stored whole.
    conversation(&both, "t", 40..45, &ids);
    same(&store, &reference, "after writing on");
    drop(store);
    drop_snapshot(dir.path());
    let store = LogStore::open(dir.path(), uncompressed(64, 64 << 20)).expect("reopen with a full replay");
    same(&store, &reference, "after a full replay");
}

#[test]
fn compaction_stores_whole_only_the_deltas_checkpoints_read() {
    // Retention keeps the newest 3 checkpoints: the oldest kept one's value rests on a dead
    // stretch of chain. Only that value is stored whole (not every dead delta below it), and
    // the two newer ones stay deltas.
    let dir = tempfile::tempdir().expect("tempdir");
    let retention = Retention { keep_last: Some(3), ..Retention::default() };
    let store = LogStore::open(dir.path(), Options { retention, ..uncompressed(64, 64 << 20) }).expect("open");
    let reference = MemorySaver::new();
    let ids = logsaver::CheckpointIdGenerator::new(None);
    conversation(&[&store, &reference], "t", 0..30, &ids);
    store.apply_retention().expect("retention");
    let kept = everything(&store);
    assert_eq!(kept.len(), 3);
    let stats = store.compact().expect("compact");
    assert_eq!(stats.deltas_stored_whole, 1, "{stats:?}");
    store.compact().expect("compact again");
    let space = store.value_space();
    assert_eq!((space.deltas, space.longest_chain), (2, 2), "{space:?}");
    assert_eq!(everything(&store), kept);
    assert!(store.verify(&mut |_, _| {}).problems.is_empty());
}

/// Fill the active segment with values that do not compress (48 KiB on thread "filler"), so the
/// next put lands in a new one.
fn fill_the_segment(store: &LogStore, ids: &logsaver::CheckpointIdGenerator) {
    for i in 0..6 {
        let mut cp = Checkpoint::empty(ids.next_id());
        cp.channel_values.insert("noise".into(), Blob::new("bytes", common::noise(i, 8 << 10)));
        cp.channel_versions.insert("noise".into(), ChannelVersion::Int(i as i64 + 1));
        let versions = cp.channel_versions.clone();
        store.put(&Config::thread("filler"), &cp, &Default::default(), &versions).expect("filler");
    }
}

/// A store whose thread `s` holds, in the active segment, a delta nothing reads (step 4's value)
/// whose base (step 3's) compaction dropped from a sealed segment. Returns the store and the
/// version of that delta.
fn a_dead_delta_without_its_base(dir: &std::path::Path, ids: &logsaver::CheckpointIdGenerator) -> LogStore {
    let store = LogStore::open(dir, options(8, 64 << 20)).expect("open");
    let base = put_step(&store, "s", 3, None, &ids.next_id());
    fill_the_segment(&store, ids);
    put_step(&store, "s", 4, base.checkpoint_id, &ids.next_id());
    store.delete_for_runs(&["run-0".to_string(), "run-1".to_string()]).expect("delete");
    let policy = logsaver::AutoCompaction { garbage_ratio: 0.0, min_garbage_bytes: 0, ..Default::default() };
    store.compact_if_needed(&policy).expect("compact").expect("compacted the sealed segments");
    store
}

#[test]
fn copy_thread_does_not_copy_a_delta_nothing_reads_over_a_live_value() {
    // Found by review: the copy carried `s`'s dead delta (its base gone) over `t`'s own live
    // value of the same version, and `t` could no longer be read.
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = logsaver::CheckpointIdGenerator::new(None);
    let store = a_dead_delta_without_its_base(dir.path(), &ids);
    let own = put_step(&store, "t", 4, None, &ids.next_id());
    store.copy_thread("s", "t").expect("copy");
    let tuple = store.get_tuple(&own).expect("readable").expect("stored");
    assert_value(&tuple.checkpoint.channel_values["messages"].bytes, &messages("t", 4), "t's own value");
    let report = store.verify(&mut |_, _| {});
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn a_carried_over_version_that_is_a_dead_delta_is_written_again() {
    // Found by review: a put naming (not writing) a version whose value is a delta nothing
    // reads, base compacted away, revived it and could not be read. The put now writes the
    // value again from the checkpoint's values.
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = logsaver::CheckpointIdGenerator::new(None);
    let store = a_dead_delta_without_its_base(dir.path(), &ids);
    let mut cp = Checkpoint::empty(ids.next_id());
    cp.channel_values.insert("messages".into(), Blob::new("json", messages("s", 4)));
    cp.channel_versions.insert("messages".into(), ChannelVersion::Str(format!("{:032}.0.1", 5)));
    cp.channel_values.insert("step".into(), Blob::new("json", b"5".to_vec()));
    cp.channel_versions.insert("step".into(), ChannelVersion::Int(6));
    let new_versions = [("step".to_string(), ChannelVersion::Int(6))].into();
    let saved = store.put(&Config::thread("s"), &cp, &Default::default(), &new_versions).expect("put");
    let tuple = store.get_tuple(&saved).expect("readable").expect("stored");
    assert_value(&tuple.checkpoint.channel_values["messages"].bytes, &messages("s", 4), "carried-over value");
    assert!(store.verify(&mut |_, _| {}).problems.is_empty());
}

#[test]
fn copy_thread_over_a_target_keeps_the_targets_deltas_whole() {
    // Found by review: `s` and `t` share versions with other bytes (integer-like versions); the
    // copy replaces `t`'s early values (as MemorySaver does), and `t`'s later deltas rested on
    // them. They are stored whole first, so `t` reads what MemorySaver reads.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), uncompressed(64, 64 << 20)).expect("open");
    let reference = MemorySaver::new();
    let ids = logsaver::CheckpointIdGenerator::new(None);
    let both: [&dyn CheckpointSaver; 2] = [&store, &reference];
    conversation(&both, "t", 0..8, &ids);
    conversation(&both, "s", 0..3, &ids);
    for saver in both {
        saver.copy_thread("s", "t").expect("copy");
    }
    same(&store, &reference, "after copying s over t");
    drop(store);
    drop_snapshot(dir.path());
    let store = LogStore::open(dir.path(), uncompressed(64, 64 << 20)).expect("reopen");
    same(&store, &reference, "after a full replay");
}
