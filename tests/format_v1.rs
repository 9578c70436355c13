//! A store written by format version 1 (commit f17991c, before deltas and compression) opens
//! and reads identically with this build, and takes new writes on top: new versions of its
//! values become deltas against the version 1 records.
//!
//! The fixture in `tests/fixtures/format-v1/` was made by `make_v1_fixture.rs.txt` run against
//! that commit; `export.jsonl` is that build's `logsaver export` of it.
#![expect(clippy::expect_used, reason = "test code: a panic is the failure report")]

use std::path::Path;
use std::process::Command;

use logsaver::{Blob, ChannelVersion, CheckpointSaver, Config, ListQuery, LogStore, Options};

mod common;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v1");

/// A copy of the fixture store (opening a writer writes a lock, a snapshot, metrics).
fn copy_fixture(to: &Path) {
    for entry in std::fs::read_dir(Path::new(FIXTURE).join("store")).expect("fixture") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

fn export(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_logsaver")).arg("export").arg(dir).output().expect("run logsaver");
    assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn a_version_1_store_reads_identically_and_takes_deltas_on_top() {
    let expected = std::fs::read_to_string(Path::new(FIXTURE).join("export.jsonl")).expect("fixture export");
    let dir = tempfile::tempdir().expect("tempdir");
    copy_fixture(dir.path());
    // Read-only first (no byte changes), then as the writer (its version 2 snapshot ignored
    // the old one and replayed the log).
    assert_eq!(export(dir.path()), expected, "read-only view of the version 1 store");
    let store = LogStore::open(dir.path(), Options::default()).expect("open");
    let report = store.verify(&mut |_, _| {});
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let latest = store.get_tuple(&Config::thread("alpha")).expect("get").expect("latest");
    store.close().expect("close");
    assert_eq!(export(dir.path()), expected, "the writer's reopen changed nothing visible");

    // A new version of `messages` on top: stored as a delta against the version 1 record.
    let store = LogStore::open(dir.path(), Options::default()).expect("reopen");
    let old = latest.checkpoint.channel_values["messages"].bytes.clone();
    let mut grown = old[..old.len() - 1].to_vec();
    // Long enough (over 1 KiB in all) to be stored as a delta.
    let message =
        format!(r#",{{"role":"human","content":"a new message after the upgrade: {}"}}]"#, "more ".repeat(80));
    grown.extend_from_slice(message.as_bytes());
    let mut cp = latest.checkpoint.clone();
    cp.id = store.next_checkpoint_id();
    cp.channel_values = [("messages".to_string(), Blob::new("json", grown.clone()))].into();
    cp.channel_versions.insert("messages".into(), ChannelVersion::Str(format!("{:032}.0.5", 13)));
    let new_versions = [("messages".to_string(), cp.channel_versions["messages"].clone())].into();
    let saved = store.put(&latest.config, &cp, &Default::default(), &new_versions).expect("put");
    let space = store.value_space();
    assert_eq!(space.deltas, 1, "the new version is a delta against the version 1 value: {space:?}");
    let read = |store: &LogStore| store.get_tuple(&saved).expect("get").expect("stored");
    assert_eq!(read(&store).checkpoint.channel_values["messages"].bytes, grown);
    store.close().expect("close");
    common::drop_snapshot(dir.path());
    let store = LogStore::open(dir.path(), Options::default()).expect("reopen, replaying both formats");
    assert_eq!(read(&store).checkpoint.channel_values["messages"].bytes, grown);
    assert_eq!(store.list(&ListQuery::all()).expect("list").len(), 49);
    store.compact().expect("compact both formats together");
    assert_eq!(read(&store).checkpoint.channel_values["messages"].bytes, grown);
    assert!(store.verify(&mut |_, _| {}).problems.is_empty());
}

#[test]
fn a_version_1_segment_left_active_by_a_crash_takes_no_version_2_records() {
    // A version 1 writer that crashed leaves its active segment preallocated (zeros after the
    // data, up to the 16 KiB the fixture's segments were created with). The new build resumes
    // such a segment; its new records must go into a new (version 2) segment, so an older build
    // refuses the store by its version instead of finding unknown records under a version 1
    // header.
    let dir = tempfile::tempdir().expect("tempdir");
    copy_fixture(dir.path());
    let last = dir.path().join("0000000004.seg");
    let original = std::fs::read(&last).expect("last segment");
    std::fs::OpenOptions::new().write(true).open(&last).expect("last segment").set_len(16 << 10).expect("extend");
    // Opened and closed without a write: no new segment (the old build can still open it).
    LogStore::open(dir.path(), Options::default()).expect("open").close().expect("close");
    assert_eq!(common::segment_files(dir.path()).len(), 4, "no segment added without a write");
    std::fs::OpenOptions::new().write(true).open(&last).expect("last segment").set_len(16 << 10).expect("extend");
    let store = LogStore::open(dir.path(), Options::default()).expect("open");
    let latest = store.get_tuple(&Config::thread("beta")).expect("get").expect("latest");
    let mut cp = latest.checkpoint.clone();
    cp.id = store.next_checkpoint_id();
    cp.channel_values = [("step".to_string(), Blob::new("msgpack", vec![99]))].into();
    cp.channel_versions.insert("step".into(), ChannelVersion::Int(99));
    let new_versions = [("step".to_string(), ChannelVersion::Int(99))].into();
    let saved = store.put(&latest.config, &cp, &Default::default(), &new_versions).expect("put");
    store.close().expect("close");
    assert!(std::fs::read(&last).expect("last segment") == original, "the version 1 segment took new records");
    let store = LogStore::open(dir.path(), Options::default()).expect("reopen");
    assert_eq!(
        store.get_tuple(&saved).expect("get").expect("stored").checkpoint.channel_values["step"].bytes,
        vec![99]
    );
}
