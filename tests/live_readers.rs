//! Readers beside a live writer, and online backup.
//!
//! - In one process, with real threads: a read-only store opened beside the writer sees every
//!   checkpoint acknowledged before each of its reads, whole (all values readable), while the
//!   writer rotates small segments and compacts; it keeps working after the writer closes, and
//!   follows a new writer onto a new segment.
//! - Across processes: a child writes (and compacts) and prints what was acknowledged; the
//!   parent reads beside it read-only, takes a backup from its read-only view, then kills the
//!   child with kill -9; the reader carries on, a reopened writer carries on, and the reader
//!   follows it. The backup holds everything acknowledged before it began and passes verify.
//! - A backup taken by the writer itself while other threads write.
#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    reason = "test data: byte patterns from a hash seed (keeping the low byte is intended); small counts as f64"
)]
#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code outside #[test] fns (helpers, closures): a panic is the failure report"
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logsaver::{
    Blob, ChannelVersion, Checkpoint, CheckpointSaver, Config, Durability, Error, ListQuery, LogStore, Options,
};

const CHILD_DIR: &str = "LOGSAVER_LIVE_DIR";

/// The value a checkpoint carries, derived from its id so any reader can check it.
fn payload(name: &str) -> Vec<u8> {
    let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let len = 32 + (seed % 3000) as usize;
    (0..len).map(|i| (seed >> (i % 56)) as u8 ^ i as u8).collect()
}

/// Put checkpoint `id` (two values: one shared by every step, one new) after `config`.
fn put_step(store: &LogStore, config: &Config, id: &str, step: u64) -> Config {
    let mut cp = Checkpoint::empty(id);
    cp.channel_values.insert("state".into(), Blob::new("bytes", payload(id)));
    cp.channel_values.insert("constant".into(), Blob::new("bytes", b"the same every step".to_vec()));
    cp.channel_versions.insert("state".into(), ChannelVersion::Int(step as i64 + 1));
    cp.channel_versions.insert("constant".into(), ChannelVersion::Int(1));
    let mut new_versions = cp.channel_versions.clone();
    if step > 0 {
        new_versions.remove("constant");
    }
    store.put(config, &cp, &Default::default(), &new_versions).expect("put")
}

/// `id` is readable from `store`, whole, with the values it was written with.
fn assert_whole(store: &LogStore, thread: &str, id: &str) {
    let tuple = store
        .get_tuple(&Config::thread(thread).with_checkpoint(id))
        .unwrap_or_else(|e| panic!("reading {thread}/{id}: {e}"))
        .unwrap_or_else(|| panic!("acknowledged checkpoint {thread}/{id} is not visible to the reader"));
    assert!(tuple.checkpoint.channel_values["state"].bytes == payload(id), "{thread}/{id}: value differs");
    assert!(tuple.checkpoint.channel_values["constant"].bytes == b"the same every step", "{thread}/{id}: shared value");
}

fn small_segments(durability: Durability) -> Options {
    Options { segment_size: 16 << 10, auto_compaction: None, ..Options::with_durability(durability) }
}

#[test]
fn a_reader_beside_the_writer_sees_every_acknowledged_checkpoint_through_rotation_and_compaction() {
    for durability in [Durability::Sync, Durability::Flush] {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = Arc::new(LogStore::open(dir.path(), small_segments(durability)).expect("open writer"));
        put_step(&writer, &Config::thread("init"), "0000-first", 0);
        let reader = Arc::new(LogStore::open_read_only(dir.path(), Options::default()).expect("open beside writer"));
        // The last id each writer thread has had acknowledged.
        let acked: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let (writer, acked) = (writer.clone(), acked.clone());
                std::thread::spawn(move || {
                    let thread = format!("w{w}");
                    let mut config = Config::thread(&thread);
                    for step in 0..300u64 {
                        let id = format!("{step:06}-{w}");
                        config = put_step(&writer, &config, &id, step);
                        acked.lock().expect("lock").entry(thread.clone()).or_default().push(id);
                    }
                })
            })
            .collect();
        let compactor = {
            let (writer, done) = (writer.clone(), done.clone());
            std::thread::spawn(move || {
                let mut compactions = 0;
                while !done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(15));
                    writer.compact().expect("compact");
                    compactions += 1;
                }
                compactions
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (reader, acked, done) = (reader.clone(), acked.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut reads = 0;
                    while !done.load(Ordering::SeqCst) {
                        let before = acked.lock().expect("lock").clone();
                        for (thread, ids) in &before {
                            // Everything acknowledged before this read: the newest id, and a
                            // sample of older ones (their values may have moved by compaction).
                            let latest = reader.get_tuple(&Config::thread(thread)).expect("latest").expect("some");
                            assert!(
                                latest.checkpoint.id >= *ids.last().expect("one"),
                                "{thread}: the reader's latest {} is older than the acknowledged {}",
                                latest.checkpoint.id,
                                ids.last().expect("one")
                            );
                            for id in ids.iter().rev().step_by(37) {
                                assert_whole(&reader, thread, id);
                            }
                            reads += 1;
                        }
                    }
                    reads
                })
            })
            .collect();
        for handle in writers {
            handle.join().expect("writer");
        }
        done.store(true, Ordering::SeqCst);
        let compactions = compactor.join().expect("compactor");
        let reads: usize = readers.into_iter().map(|r| r.join().expect("reader")).sum();
        assert!(compactions > 2 && reads > 10, "too little happened: {compactions} compactions, {reads} reads");
        assert!(writer.stats().segments > 1);

        // Same view as the writer's, then the writer closes (trimming its segment: a mapped
        // reader would fault here) and the reader keeps reading.
        let query = ListQuery::all();
        assert_eq!(reader.list(&query).expect("list"), writer.list(&query).expect("list"), "{durability:?}");
        let everything = writer.list(&query).expect("list");
        writer.close().expect("close");
        assert_eq!(reader.list(&query).expect("list after close"), everything);

        // A new writer: its first write starts a new segment, which the reader follows.
        let writer = LogStore::open(dir.path(), small_segments(durability)).expect("reopen");
        put_step(&writer, &Config::thread("late"), "999999-late", 0);
        assert_whole(&reader, "late", "999999-late");
        let refused = reader.delete_thread("late");
        assert!(matches!(refused, Err(Error::ReadOnly { .. })), "{refused:?}");
    }
}

#[test]
fn a_backup_taken_by_the_writer_during_writes_holds_everything_acknowledged_before_it() {
    for durability in [Durability::Sync, Durability::Flush, Durability::None] {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = Arc::new(LogStore::open(dir.path(), small_segments(durability)).expect("open"));
        let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..3)
            .map(|w| {
                let (writer, acked, stop) = (writer.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    let thread = format!("w{w}");
                    let mut config = Config::thread(&thread);
                    for step in 0u64.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let id = format!("{step:06}-{w}");
                        config = put_step(&writer, &config, &id, step);
                        acked.lock().expect("lock").push((thread.clone(), id));
                        if step % 50 == 49 {
                            writer.compact().expect("compact");
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150));
        let before = acked.lock().expect("lock").clone();
        let dest = dir.path().join("backup");
        let stats = writer.backup(&dest).expect("backup");
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::SeqCst);
        threads.into_iter().for_each(|t| t.join().expect("writer"));
        assert!(before.len() > 20 && stats.segments >= 1, "{} acknowledged, {stats:?}", before.len());

        let (recovery, verified) = LogStore::verify_dir(&dest, &mut |_, _| {}).expect("verify the backup");
        assert!(verified.problems.is_empty() && recovery.skipped.is_empty(), "{verified:?} {recovery:?}");
        assert!(recovery.torn_tail.is_none(), "{:?}", recovery.torn_tail);
        let restored = LogStore::open(&dest, Options::default()).expect("a backup opens as a store");
        for (thread, id) in &before {
            assert_whole(&restored, thread, id);
        }
        // Restored, it is an ordinary store: it takes writes.
        put_step(&restored, &Config::thread("after"), "after-restore", 0);
        let refused = writer.backup(&dest);
        assert!(matches!(refused, Err(Error::InvalidArgument(_))), "a non-empty destination: {refused:?}");
    }
}

/// The child of the cross-process test: writes with `Flush`, compacts, and prints each
/// checkpoint once its put has returned. Runs only when the parent sets the environment.
#[test]
fn live_writer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let store = Arc::new(LogStore::open(&dir, small_segments(Durability::Flush)).expect("child open"));
    let compactor = {
        let store = store.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(25));
                store.compact().expect("compact");
            }
        })
    };
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let thread = format!("c{w}");
                let mut config = Config::thread(&thread);
                for step in 0u64.. {
                    let id = format!("{step:08}-{w}");
                    config = put_step(&store, &config, &id, step);
                    println!("CP {thread} {id}");
                    std::thread::sleep(Duration::from_micros(300));
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| drop(w.join()));
    drop(compactor.join());
}

/// Ids acknowledged by the child so far (whole lines only).
fn acknowledged(lines: &Mutex<Vec<String>>) -> Vec<(String, String)> {
    lines
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|line| match line.split(' ').collect::<Vec<_>>().as_slice() {
            ["CP", thread, id] => Some(((*thread).to_owned(), (*id).to_owned())),
            _ => None,
        })
        .collect()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_reader_in_another_process_follows_a_writer_through_compaction_and_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "live_writer_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let (lines, collector) = common::collect_whole_lines(child.stdout.take().expect("stdout"));
    wait_for("the child's first checkpoints", || acknowledged(&lines).len() >= 20);
    let reader = LogStore::open_read_only(dir.path(), Options::default()).expect("open beside a live writer");
    let mut checked = 0;
    let mut backup_taken = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let before = acknowledged(&lines);
        for (thread, id) in before.iter().rev().take(8) {
            assert_whole(&reader, thread, id);
            checked += 1;
        }
        if backup_taken.is_none() && started.elapsed() > Duration::from_millis(700) {
            let dest = dir.path().join("backup");
            reader.backup(&dest).expect("backup from a read-only store beside the writer");
            backup_taken = Some((dest, before));
        }
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    collector.join().expect("collector");

    // The writer is gone mid-work (maybe mid-frame, mid-compaction): the reader carries on.
    let all = acknowledged(&lines);
    for (thread, id) in &all {
        assert_whole(&reader, thread, id);
    }
    // A reopened writer recovers and carries on, and the reader follows it.
    let writer = LogStore::open(dir.path(), small_segments(Durability::Sync)).expect("reopen after kill -9");
    for (thread, id) in all.iter().rev().take(50) {
        assert_whole(&writer, thread, id);
    }
    put_step(&writer, &Config::thread("after-kill"), "after-kill-0", 0);
    writer.compact().expect("compact");
    put_step(&writer, &Config::thread("after-kill"), "after-kill-1", 1);
    assert_whole(&reader, "after-kill", "after-kill-0");
    assert_whole(&reader, "after-kill", "after-kill-1");
    let query = ListQuery::all();
    assert_eq!(reader.list(&query).expect("list"), writer.list(&query).expect("list"));

    let (dest, before) = backup_taken.expect("a backup was taken");
    check_backup(&dest, &before);
    assert!(checked > 100, "only {checked} reads were checked");
}

fn check_backup(dest: &Path, before: &[(String, String)]) {
    let (recovery, verified) = LogStore::verify_dir(dest, &mut |_, _| {}).expect("verify");
    assert!(verified.problems.is_empty() && recovery.skipped.is_empty(), "{verified:?} {recovery:?}");
    let restored = LogStore::open_read_only(dest, Options::default()).expect("open the backup");
    for (thread, id) in before {
        assert_whole(&restored, thread, id);
    }
    assert!(!before.is_empty());
}

#[test]
fn metrics_count_calls_fsyncs_and_groups_and_the_writer_leaves_them_for_other_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LogStore::open(dir.path(), small_segments(Durability::Sync)).expect("open"));
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let thread = format!("m{w}");
                let mut config = Config::thread(&thread);
                for step in 0..25u64 {
                    config = put_step(&store, &config, &format!("{step:04}-{w}"), step);
                    store.get_tuple(&Config::thread(&thread)).expect("get");
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().expect("writer"));
    assert!(store.get_tuple(&Config::thread("m0").with_checkpoint("no-such-id")).expect("get").is_none());
    let refused = store.backup(dir.path().join("sub")).and_then(|_| store.backup(dir.path().join("sub")));
    assert!(refused.is_err());

    let metrics = store.metrics();
    let op = |name: &str| metrics.operation(name).expect("operation").clone();
    assert_eq!(op("put").latency_us.count, 100);
    assert_eq!(op("get_tuple").latency_us.count, 101);
    assert_eq!((op("backup").latency_us.count, op("backup").errors), (2, 1));
    let put = op("put").latency_us;
    assert!(put.p50 > 0.0 && put.p50 <= put.p99 && put.p99 <= put.max, "{put:?}");
    // Every counted fsync is timed: commits' fdatasyncs and seals' fsyncs alike.
    assert!(metrics.fsync_us.count > 0 && metrics.fsync_us.count == metrics.fsyncs, "{metrics:?}");
    let groups = metrics.group_size;
    assert!(metrics.commits == 100 && groups.count > 0 && groups.count <= metrics.frames, "{metrics:?}");
    assert!((groups.mean * groups.count as f64 - 100.0).abs() < 1e-6, "group sizes add up to the calls: {groups:?}");
    assert!(metrics.bytes_written > 0 && metrics.bytes_read > 0 && metrics.writer);

    // Closed, the writer leaves them in METRICS.json; a read-only store writes none.
    store.close().expect("close");
    let text = std::fs::read_to_string(dir.path().join(logsaver::METRICS_FILE)).expect("METRICS.json");
    let persisted: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(persisted["operations"][0]["op"], "put");
    assert_eq!(persisted["operations"][0]["latency_us"]["count"], 100);
    std::fs::remove_file(dir.path().join(logsaver::METRICS_FILE)).expect("remove");
    let reader = LogStore::open_read_only(dir.path(), Options::default()).expect("read-only");
    reader.get_tuple(&Config::thread("m1")).expect("get").expect("some");
    assert!(!reader.metrics().writer && reader.metrics().operation("get_tuple").expect("op").latency_us.count == 1);
    reader.close().expect("close");
    assert!(!dir.path().join(logsaver::METRICS_FILE).exists());
}

/// A small xorshift generator (deterministic per seed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Every kind of call the writer makes (puts with shared values, writes, deletes, prunes,
/// deletes for runs, copies, retention, compaction, rotations of tiny segments, restarts of
/// the writer), and a reader in the same directory, looking after some of them, must show
/// exactly what the writer shows: tombstones, prunes and copies followed, not only appends.
#[test]
fn a_reader_shows_exactly_the_writers_state_after_every_kind_of_call() {
    use logsaver::{PruneStrategy, Retention};
    let seeds: u64 = std::env::var("LIVE_READER_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    for seed in 1..=seeds {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = || Options {
            segment_size: 8 << 10,
            auto_compaction: None,
            retention: Retention { keep_last: Some(4), ..Retention::default() },
            ..Options::with_durability(Durability::Flush)
        };
        let mut writer = LogStore::open(dir.path(), options()).expect("open");
        put_step(&writer, &Config::thread("t0"), "000000-seed", 0);
        let mut reader = LogStore::open_read_only(dir.path(), Options::default()).expect("reader");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut heads: BTreeMap<String, (Config, u64)> = BTreeMap::new();
        let mut next_id = 1u64;
        for step in 0..160 {
            let thread = format!("t{}", rng.below(5));
            let what = rng.below(100);
            let call = match what {
                0..=54 => {
                    let (config, n) = heads.get(&thread).cloned().unwrap_or((Config::thread(&thread), 0));
                    let id = format!("{next_id:06}-{seed}");
                    next_id += 1;
                    let mut cp = Checkpoint::empty(&id);
                    cp.channel_values.insert("state".into(), Blob::new("bytes", payload(&id)));
                    cp.channel_versions.insert("state".into(), ChannelVersion::Int(n as i64 + 1));
                    let metadata = common::meta(serde_json::json!({"run_id": format!("run-{}", rng.below(3))}));
                    let saved = writer.put(&config, &cp, &metadata, &cp.channel_versions).expect("put");
                    heads.insert(thread.clone(), (saved, n + 1));
                    "put"
                }
                55..=69 => {
                    if let Some((config, _)) = heads.get(&thread) {
                        let value = Blob::new("bytes", payload(&format!("w{step}")));
                        writer
                            .put_writes(config, &[("out".into(), value)], &format!("task{step}"), "")
                            .expect("writes");
                    }
                    "put_writes"
                }
                70..=74 => {
                    writer.delete_thread(&thread).expect("delete");
                    heads.remove(&thread);
                    "delete_thread"
                }
                75..=79 => {
                    writer.prune(std::slice::from_ref(&thread), PruneStrategy::KeepLatest).expect("prune");
                    "prune"
                }
                80..=82 => {
                    writer.delete_for_runs(&[format!("run-{}", rng.below(3))]).expect("delete for runs");
                    heads.clear(); // parents may be gone: start fresh chains
                    "delete_for_runs"
                }
                83..=86 => {
                    let target = format!("t{}", rng.below(5));
                    if target != thread {
                        writer.copy_thread(&thread, &target).expect("copy");
                        heads.remove(&target);
                    }
                    "copy_thread"
                }
                87..=89 => {
                    writer.apply_retention().expect("retention");
                    "retention"
                }
                90..=95 => {
                    writer.compact().expect("compact");
                    "compact"
                }
                96..=97 => {
                    writer.close().expect("close");
                    writer = LogStore::open(dir.path(), options()).expect("reopen the writer");
                    "reopen writer"
                }
                _ => {
                    reader = LogStore::open_read_only(dir.path(), Options::default()).expect("reopen the reader");
                    "reopen reader"
                }
            };
            // The reader looks after one call in three: it also has to catch up over several
            // frames, rotations, compactions and restarts at once.
            if rng.below(3) != 0 {
                continue;
            }
            let query = ListQuery::all();
            let (seen, truth) = (reader.list(&query).expect("reader list"), writer.list(&query).expect("writer list"));
            assert!(
                seen == truth,
                "seed {seed}, step {step} ({call}): the reader shows {} checkpoints, the writer {}",
                seen.len(),
                truth.len()
            );
        }
    }
}
