//! LogStore engine behaviour: reopen, recovery from torn tails and damage, the directory lock,
//! durability modes, limits, and concurrent writers checked against `MemorySaver`.
#![expect(
    clippy::expect_used,
    reason = "test code outside #[test] fns (helpers, closures): a panic is the failure report"
)]
#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "test data: `as u8` fill bytes from counters (wrapping intended) and lengths within small test files"
)]

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use common::{checkpoint, data_end, drop_snapshot, everything, meta, segment_files, workload};
use logsaver::{
    Blob, ChannelVersion, CheckpointIdGenerator, CheckpointSaver, Config, Durability, Error, ListQuery, LogStore,
    MemorySaver, Options, RecoveryMode,
};

fn open(dir: &std::path::Path) -> LogStore {
    LogStore::open(dir, Options::default()).expect("open store")
}

fn flip_byte(path: &std::path::Path, offset: u64) {
    let file = OpenOptions::new().read(true).write(true).open(path).expect("open segment");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).expect("read byte");
    byte[0] ^= 0x5a;
    file.write_all_at(&byte, offset).expect("write byte");
}

#[test]
fn reopen_reads_back_everything_in_every_durability_mode() {
    for durability in [Durability::Sync, Durability::Flush, Durability::None] {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = CheckpointIdGenerator::new(None);
        let reference = MemorySaver::new();
        {
            let store = LogStore::open(dir.path(), Options::with_durability(durability)).expect("open");
            workload(&store, &ids, "t", 5, 8);
            store.close().expect("close");
        }
        let ids = CheckpointIdGenerator::new(None);
        workload(&reference, &ids, "t", 5, 8);
        let store = open(dir.path());
        let got = everything(&store);
        let want = everything(&reference);
        assert_eq!(got.len(), 40, "{durability:?}");
        // Ids differ between the two runs; compare everything else.
        let strip = |tuples: Vec<logsaver::CheckpointTuple>| {
            tuples
                .into_iter()
                .map(|t| (t.config.thread_id, t.checkpoint.channel_values, t.metadata, t.pending_writes))
                .collect::<Vec<_>>()
        };
        let (mut got, mut want) = (strip(got), strip(want));
        got.sort_by(|a, b| {
            (&a.0, a.2.get("step").and_then(serde_json::Value::as_u64))
                .cmp(&(&b.0, b.2.get("step").and_then(serde_json::Value::as_u64)))
        });
        want.sort_by(|a, b| {
            (&a.0, a.2.get("step").and_then(serde_json::Value::as_u64))
                .cmp(&(&b.0, b.2.get("step").and_then(serde_json::Value::as_u64)))
        });
        assert_eq!(got, want, "{durability:?}");
    }
}

#[test]
fn state_matches_the_reference_after_reopen_with_the_same_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = MemorySaver::new();
    let ids = Arc::new(CheckpointIdGenerator::new(None));
    {
        let store = open(dir.path());
        // Same ids to both: drive both with one id sequence.
        let recorded: Vec<String> = (0..30).map(|_| ids.next_id()).collect();
        for saver in [&store as &dyn CheckpointSaver, &reference] {
            let mut parent = None;
            for (step, id) in recorded.iter().enumerate() {
                let ns = if step % 3 == 0 { "sub:1" } else { "" };
                let config = Config {
                    thread_id: format!("t{}", step % 4),
                    checkpoint_ns: ns.into(),
                    checkpoint_id: parent.clone(),
                };
                let cp = checkpoint(id, &[("a", format!("value {step}").as_bytes())], step as i64);
                let md = meta(serde_json::json!({"step": step}));
                let saved = saver.put(&config, &cp, &md, &cp.channel_versions).expect("put");
                saver
                    .put_writes(&saved, &[("a".into(), Blob::new("json", vec![step as u8]))], "task", "path")
                    .expect("put_writes");
                parent = Some(id.clone());
            }
            saver.delete_thread("t3").expect("delete");
        }
    }
    let store = open(dir.path());
    assert_eq!(everything(&store), everything(&reference));
    assert!(store.next_checkpoint_id() > everything(&store)[0].checkpoint.id, "ids keep increasing after reopen");
}

#[test]
fn small_segments_rotate_and_sealed_segments_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options { segment_size: 8192, ..Options::default() };
    let ids = CheckpointIdGenerator::new(None);
    let before;
    {
        let store = LogStore::open(dir.path(), options.clone()).expect("open");
        workload(&store, &ids, "rot", 4, 20);
        assert!(store.stats().segments > 3, "{:?}", store.stats());
        before = everything(&store);
    }
    assert!(segment_files(dir.path()).len() > 3);
    let store = LogStore::open(dir.path(), options).expect("reopen");
    assert_eq!(everything(&store), before);
    // A blob bigger than a whole segment gets a segment of its own.
    let big = vec![7u8; 100_000];
    let cp = checkpoint(&ids.next_id(), &[("big", &big)], 1);
    let saved = store.put(&Config::thread("big"), &cp, &Default::default(), &cp.channel_versions).expect("put");
    drop(store);
    let store = LogStore::open(dir.path(), Options { segment_size: 8192, ..Options::default() }).expect("reopen");
    let got = store.get_tuple(&saved).expect("get").expect("present");
    assert_eq!(got.checkpoint.channel_values["big"].bytes, big);
}

/// Writes `count` puts, returning the data end of the segment before the last put and after it.
fn puts_with_last_frame(store: &LogStore, segment: &std::path::Path, count: usize) -> (u64, u64) {
    let ids = CheckpointIdGenerator::new(None);
    for i in 0..count - 1 {
        let cp = checkpoint(&ids.next_id(), &[("x", format!("payload {i}").as_bytes())], i as i64);
        store.put(&Config::thread("torn"), &cp, &Default::default(), &cp.channel_versions).expect("put");
    }
    let before = data_end(segment);
    let cp = checkpoint(&ids.next_id(), &[("x", b"the last one")], 99);
    store.put(&Config::thread("torn"), &cp, &Default::default(), &cp.channel_versions).expect("put");
    (before, data_end(segment))
}

#[test]
fn torn_tail_is_truncated_and_reported_and_the_store_keeps_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = dir.path().join("0000000001.seg");
    let (before, after) = {
        let store = open(dir.path());
        puts_with_last_frame(&store, &segment, 10)
    };
    drop_snapshot(dir.path()); // these tests exercise the log scan
    // Tear the last frame: its second half never reached the disk.
    let file = OpenOptions::new().write(true).open(&segment).expect("open");
    let half = (after - before) / 2;
    file.write_all_at(&vec![0u8; (after - before - half) as usize], before + half).expect("tear");
    drop(file);

    let store = open(dir.path());
    let torn = store.recovery_report().torn_tail.clone().expect("torn tail reported");
    let frame_start = before.div_ceil(8) * 8;
    assert_eq!(torn.offset, frame_start);
    assert_eq!(store.list(&ListQuery::thread("torn")).expect("list").len(), 9, "the torn put is gone, the rest intact");
    // New writes land after the truncation point and survive another reopen.
    let cp = checkpoint(&store.next_checkpoint_id(), &[("x", b"after recovery")], 100);
    store.put(&Config::thread("torn"), &cp, &Default::default(), &cp.channel_versions).expect("put");
    drop(store);
    let store = open(dir.path());
    assert!(store.recovery_report().torn_tail.is_none());
    let latest = store.get_tuple(&Config::thread("torn")).expect("get").expect("latest");
    assert_eq!(latest.checkpoint.channel_values["x"].bytes, b"after recovery");
    assert_eq!(store.list(&ListQuery::thread("torn")).expect("list").len(), 10);
}

#[test]
fn torn_tail_is_an_error_under_absolute_consistency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = dir.path().join("0000000001.seg");
    let (before, after) = {
        let store = open(dir.path());
        puts_with_last_frame(&store, &segment, 3)
    };
    drop_snapshot(dir.path());
    flip_byte(&segment, (before + after) / 2);
    let strict = Options { recovery: RecoveryMode::AbsoluteConsistency, ..Options::default() };
    match LogStore::open(dir.path(), strict) {
        Err(Error::Corruption { file, offset, reason }) => {
            assert_eq!(file, segment);
            assert_eq!(offset, before.div_ceil(8) * 8);
            assert!(reason.contains("torn tail"), "{reason}");
        }
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
    // The default mode accepts it as a torn tail.
    assert!(open(dir.path()).recovery_report().torn_tail.is_some());
}

#[test]
fn damage_before_synced_data_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = dir.path().join("0000000001.seg");
    {
        let store = open(dir.path());
        puts_with_last_frame(&store, &segment, 10);
    }
    drop_snapshot(dir.path());
    // The first frame starts right after the 64-byte segment header.
    flip_byte(&segment, 64 + 40);
    match LogStore::open(dir.path(), Options::default()) {
        Err(Error::Corruption { file, offset, reason }) => {
            assert_eq!(file, segment);
            assert_eq!(offset, 64);
            assert!(reason.contains("damaged frame"), "{reason}");
        }
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
    // Skipping is an explicit choice, and reported.
    let lenient = Options { recovery: RecoveryMode::SkipCorrupted, ..Options::default() };
    let store = LogStore::open(dir.path(), lenient).expect("open skipping damage");
    let skipped = &store.recovery_report().skipped;
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].offset, 64);
    assert_eq!(store.list(&ListQuery::thread("torn")).expect("list").len(), 9, "only the damaged frame is lost");
}

#[test]
fn damage_in_a_sealed_segment_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options { segment_size: 4096, ..Options::default() };
    {
        let store = LogStore::open(dir.path(), options.clone()).expect("open");
        workload(&store, &CheckpointIdGenerator::new(None), "s", 3, 10);
    }
    drop_snapshot(dir.path());
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    let sealed = &files[0];
    let end = data_end(sealed);
    flip_byte(sealed, end - 4);
    match LogStore::open(dir.path(), options) {
        Err(Error::Corruption { file, reason, .. }) => {
            assert_eq!(&file, sealed);
            assert!(reason.contains("sealed segment"), "{reason}");
        }
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_missing_segment_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options { segment_size: 4096, ..Options::default() };
    {
        let store = LogStore::open(dir.path(), options.clone()).expect("open");
        workload(&store, &CheckpointIdGenerator::new(None), "m", 3, 10);
    }
    let files = segment_files(dir.path());
    std::fs::remove_file(&files[1]).expect("remove");
    match LogStore::open(dir.path(), options) {
        Err(Error::Corruption { file, reason, .. }) => {
            assert_eq!(file, files[1]);
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_damaged_segment_header_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        workload(&store, &CheckpointIdGenerator::new(None), "h", 1, 2);
    }
    let segment = dir.path().join("0000000001.seg");
    flip_byte(&segment, 20);
    match LogStore::open(dir.path(), Options::default()) {
        Err(Error::Corruption { file, offset, reason }) => {
            assert_eq!((file, offset), (segment, 0));
            assert!(reason.contains("header"), "{reason}");
        }
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn second_open_in_the_same_process_is_locked_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    match LogStore::open(dir.path(), Options::default()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    let message = LogStore::open(dir.path(), Options::default()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains(&dir.path().display().to_string()), "{message}");
    drop(store);
    open(dir.path());
}

const LOCK_PROBE_ENV: &str = "LOGSAVER_LOCK_PROBE_DIR";

/// Run as a child process by `second_process_is_locked_out`; does nothing otherwise.
#[test]
fn lock_probe_child() {
    let Ok(dir) = std::env::var(LOCK_PROBE_ENV) else { return };
    match LogStore::open(&dir, Options::default()) {
        Err(Error::Locked { .. }) => println!("PROBE: locked"),
        Err(other) => println!("PROBE: other error {other}"),
        Ok(_) => println!("PROBE: opened"),
    }
}

#[test]
fn second_process_is_locked_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let probe = |dir: &std::path::Path| {
        let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "lock_probe_child", "--nocapture", "--test-threads=1"])
            .env(LOCK_PROBE_ENV, dir)
            .output()
            .expect("run child");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(probe(dir.path()).contains("PROBE: locked"));
    drop(store);
    assert!(probe(dir.path()).contains("PROBE: opened"));
}

#[test]
fn eight_threads_writing_and_reading_match_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(dir.path()));
    let reference = Arc::new(MemorySaver::new());
    let ids = Arc::new(CheckpointIdGenerator::new(None));
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let (store, reference, ids) = (store.clone(), reference.clone(), ids.clone());
            scope.spawn(move || {
                for round in 0..25 {
                    let thread = format!("w{worker}-t{}", round % 3);
                    let parent = store.get_tuple(&Config::thread(&thread)).expect("get").map(|t| t.checkpoint.id);
                    let want_parent =
                        reference.get_tuple(&Config::thread(&thread)).expect("get").map(|t| t.checkpoint.id);
                    assert_eq!(parent, want_parent, "readers see what they wrote");
                    let id = ids.next_id();
                    let config =
                        Config { thread_id: thread.clone(), checkpoint_ns: String::new(), checkpoint_id: parent };
                    let cp = checkpoint(&id, &[("m", format!("{worker}/{round}").as_bytes())], round);
                    let md = meta(serde_json::json!({"worker": worker, "round": round}));
                    for saver in [&*store as &dyn CheckpointSaver, &*reference] {
                        let saved = saver.put(&config, &cp, &md, &cp.channel_versions).expect("put");
                        let writes = vec![("m".to_string(), Blob::new("json", vec![round as u8]))];
                        saver.put_writes(&saved, &writes, "task", "").expect("put_writes");
                    }
                    // Reads of other workers' threads must never fail or see torn state.
                    let other = format!("w{}-t0", (worker + 1) % 8);
                    if let Some(t) = store.get_tuple(&Config::thread(&other)).expect("get other") {
                        assert_eq!(t.checkpoint.channel_values.len(), 1);
                    }
                }
            });
        }
    });
    assert_eq!(everything(&*store), everything(&*reference));
    let stats = store.stats();
    assert_eq!(stats.commits, 8 * 25 * 2);
    assert!(stats.fsyncs <= stats.commits, "{stats:?}");
    drop(store);
    let reopened = open(dir.path());
    assert_eq!(everything(&reopened), everything(&*reference));
}

#[test]
fn durability_none_buffers_until_flush_and_reads_see_buffered_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), Options::with_durability(Durability::None)).expect("open");
    let cp = checkpoint("a", &[("x", b"buffered")], 1);
    store.put(&Config::thread("t"), &cp, &Default::default(), &cp.channel_versions).expect("put");
    let segment = dir.path().join("0000000001.seg");
    assert!(data_end(&segment) <= 64, "nothing but the segment header is in the file yet");
    let got = store.get_tuple(&Config::thread("t")).expect("get").expect("visible before flush");
    assert_eq!(got.checkpoint.channel_values["x"].bytes, b"buffered");
    assert_eq!(store.stats().fsyncs, 0);
    store.flush().expect("flush");
    assert!(data_end(&segment) > 64);
    assert_eq!(store.stats().fsyncs, 1);
    drop(store);
    let store = open(dir.path());
    assert!(store.get_tuple(&Config::thread("t")).expect("get").is_some());
}

#[test]
fn sync_mode_fsyncs_every_commit_and_flush_mode_none() {
    for (durability, expect_fsyncs) in [(Durability::Sync, true), (Durability::Flush, false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(dir.path(), Options::with_durability(durability)).expect("open");
        workload(&store, &CheckpointIdGenerator::new(None), "d", 1, 5);
        let stats = store.stats();
        assert_eq!(stats.commits, 10);
        assert_eq!(stats.fsyncs == stats.commits, expect_fsyncs, "{durability:?} {stats:?}");
        // Flush mode: the bytes are in the file (page cache) before the call returns.
        assert!(data_end(&dir.path().join("0000000001.seg")) > 64);
    }
}

#[test]
fn closed_store_refuses_calls_and_closing_twice_is_harmless() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.close().expect("close");
    store.close().expect("close again");
    assert!(matches!(store.get_tuple(&Config::thread("t")), Err(Error::Closed)));
    assert!(matches!(store.list(&ListQuery::all()), Err(Error::Closed)));
    let cp = checkpoint("a", &[], 1);
    assert!(matches!(
        store.put(&Config::thread("t"), &cp, &Default::default(), &Default::default()),
        Err(Error::Closed)
    ));
    // Closing releases the directory: it opens again while the closed handle still exists.
    let again = open(dir.path());
    assert!(again.get_tuple(&Config::thread("t")).expect("get").is_none());
}

#[test]
fn values_over_the_limit_are_refused_with_the_channel_and_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), Options { max_value_bytes: 1000, ..Options::default() }).expect("open");
    let cp = checkpoint("a", &[("huge", &[1u8; 1001])], 1);
    match store.put(&Config::thread("t9"), &cp, &Default::default(), &cp.channel_versions) {
        Err(Error::TooLarge { what, size, limit }) => {
            assert!(what.contains("huge") && what.contains("t9"), "{what}");
            assert_eq!((size, limit), (1001, 1000));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let writes = vec![("w".to_string(), Blob::new("bytes", vec![0u8; 2000]))];
    assert!(matches!(
        store.put_writes(&Config::thread("t9").with_checkpoint("a"), &writes, "task", ""),
        Err(Error::TooLarge { .. })
    ));
    assert!(store.list(&ListQuery::all()).expect("list").is_empty(), "nothing half-written");
}

#[test]
fn a_value_of_257_mib_round_trips_through_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big: Vec<u8> = (0..(257usize << 20)).map(|i| (i % 251) as u8).collect();
    let cp = checkpoint("big", &[("state", &big), ("small", b"s")], 1);
    {
        let store = open(dir.path());
        store.put(&Config::thread("big"), &cp, &Default::default(), &cp.channel_versions).expect("put");
    }
    let store = open(dir.path());
    let got = store.get_tuple(&Config::thread("big")).expect("get").expect("present");
    assert!(got.checkpoint.channel_values["state"].bytes == big);
    assert_eq!(got.checkpoint.channel_values["small"].bytes, b"s");
}

#[test]
fn re_putting_a_version_stores_its_blob_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut cp = checkpoint("a", &[("x", b"value")], 1);
    cp.channel_versions.insert("f".into(), ChannelVersion::Float(1.5));
    cp.channel_values.insert("f".into(), Blob::new("json", b"1.5".to_vec()));
    store.put(&Config::thread("t"), &cp, &Default::default(), &cp.channel_versions).expect("put");
    let blobs = store.stats().blobs;
    let written = store.stats().bytes_written;
    cp.id = "b".into();
    store.put(&Config::thread("t"), &cp, &Default::default(), &cp.channel_versions).expect("put again");
    assert_eq!(store.stats().blobs, blobs);
    assert!(store.stats().bytes_written - written < 200, "only the checkpoint record was written");
    let got = store.get_tuple(&Config::thread("t").with_checkpoint("b")).expect("get").expect("b");
    assert_eq!(got.checkpoint.channel_values.len(), 2);
}

#[test]
fn native_delta_channel_history_matches_the_generic_walk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let reference = MemorySaver::new();
    for saver in [&store as &dyn CheckpointSaver, &reference] {
        // root(a=seed) <- c1 (writes to a, b) <- c2 (writes to a) <- c3; fork: c1 <- f1.
        let mut root = checkpoint("c0", &[("a", b"seed-a")], 1);
        root.channel_versions.insert("b".into(), ChannelVersion::Int(1)); // empty sentinel: no value
        let new_versions = root.channel_versions.clone();
        let c0 = saver.put(&Config::thread("t"), &root, &Default::default(), &new_versions).expect("put");
        let mut parent = c0.clone();
        for id in ["c1", "c2", "c3"] {
            // Delta channels are not in the intermediate checkpoints' versions: only writes.
            let cp = checkpoint(id, &[], 1);
            parent = saver.put(&parent, &cp, &Default::default(), &Default::default()).expect("put");
            let writes = vec![
                ("a".to_string(), Blob::new("json", format!("{id}-a").into_bytes())),
                ("b".to_string(), Blob::new("json", format!("{id}-b").into_bytes())),
            ];
            saver.put_writes(&parent, &writes, &format!("task-{id}"), "").expect("writes");
        }
        let fork = checkpoint("f1", &[], 1);
        saver
            .put(&Config::thread("t").with_checkpoint("c1"), &fork, &Default::default(), &Default::default())
            .expect("fork");
    }
    let channels = vec!["a".to_string(), "b".to_string(), "missing".to_string()];
    for target in ["c3", "c2", "f1", "c0", "nope"] {
        let config = Config::thread("t").with_checkpoint(target);
        let native = store.get_delta_channel_history(&config, &channels).expect("native");
        let generic = reference.get_delta_channel_history(&config, &channels).expect("generic");
        assert_eq!(native, generic, "target {target}");
    }
    let history = store.get_delta_channel_history(&Config::thread("t").with_checkpoint("c3"), &channels).expect("walk");
    let a: Vec<Vec<u8>> = history["a"].writes.iter().map(|w| w.value.bytes.clone()).collect();
    assert_eq!(a, vec![b"c1-a".to_vec(), b"c2-a".to_vec()]);
    assert_eq!(history["a"].seed.as_ref().map(|b| b.bytes.clone()), Some(b"seed-a".to_vec()));
    assert_eq!(history["b"].writes.len(), 2, "b has no stored value: the walk reaches the root");
    assert!(history["b"].seed.is_none());
    // A re-put that makes a cycle (c0's parent becomes c3) ends the walk instead of looping.
    let cyclic = checkpoint("c0", &[], 1);
    store
        .put(&Config::thread("t").with_checkpoint("c3"), &cyclic, &Default::default(), &Default::default())
        .expect("re-put");
    store.get_delta_channel_history(&Config::thread("t").with_checkpoint("c3"), &channels).expect("terminates");
}

/// Metadata handed over as JSON text is stored as given, reads back as the same map, names its
/// run for `delete_for_runs`, and must be one JSON object.
#[test]
fn metadata_as_json_text_round_trips_and_names_its_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), Options::default()).expect("open");
    let cp = checkpoint("1", &[("x", b"v".as_slice())], 1);
    let text = r#"{"source":"loop","step":3,"run_id":"run-a","writes":{"agent":[1,2.5,null]},"note":"é"}"#;
    store.put_with_metadata_json(&Config::thread("t"), &cp, text, &cp.channel_versions).expect("put");
    let got = store.get_tuple(&Config::thread("t")).expect("get").expect("stored");
    let expected: logsaver::Metadata = serde_json::from_str(text).expect("json");
    assert_eq!(got.metadata, expected);
    let filter = meta(serde_json::json!({"step": 3}));
    assert_eq!(store.list(&ListQuery { filter, ..ListQuery::thread("t") }).expect("list").len(), 1);
    for bad in ["[1, 2]", "null", "{\"run_id\": ", ""] {
        let cp = checkpoint("2", &[("x", b"w".as_slice())], 2);
        let refused = store.put_with_metadata_json(&Config::thread("t"), &cp, bad, &cp.channel_versions);
        assert!(matches!(refused, Err(Error::InvalidArgument(_))), "{bad:?}: {refused:?}");
    }
    store.delete_for_runs(&["run-a".to_string()]).expect("delete for runs");
    assert!(store.get_tuple(&Config::thread("t")).expect("get").is_none(), "the run named in the text is deleted");
}
