//! Each documented outcome of damage found at open (docs/design.md, "Recovery"): a flipped bit,
//! a truncated segment, a zeroed tail, a duplicated frame, a damaged segment header, a missing
//! segment. Never a panic, never wrong data.
#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code outside #[test] fns (helpers, closures): a panic is the failure report"
)]
#![expect(
    clippy::cast_possible_truncation,
    reason = "offsets and lengths within small test segment files, far below usize::MAX"
)]

mod common;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use common::{checkpoint, directory_bytes, drop_snapshot, everything, segment_files};
use logsaver::{CheckpointIdGenerator, CheckpointSaver, Config, Error, ListQuery, LogStore, Options, RecoveryMode};

/// Frame boundaries of a segment: (offset, length), read from the headers.
fn frames(path: &Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(path).expect("read");
    let mut out = Vec::new();
    let mut at = 64usize;
    while at + 32 <= bytes.len() {
        let payload = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if payload == 0 {
            break;
        }
        let span = (32 + payload).div_ceil(8) * 8;
        out.push((at as u64, span as u64));
        at += span;
    }
    out
}

/// A store with one thread of `n` single-put frames; returns the last segment's path.
fn store_with_puts(dir: &Path, n: usize, options: Options) -> PathBuf {
    let store = LogStore::open(dir, options).expect("open");
    let ids = CheckpointIdGenerator::new(None);
    let mut config = Config::thread("t");
    for i in 0..n {
        let cp = checkpoint(&ids.next_id(), &[("x", format!("value {i}").repeat(20).as_bytes())], i as i64);
        config = store.put(&config, &cp, &Default::default(), &cp.channel_versions).expect("put");
    }
    drop(store);
    // These tests are about the log scan; with the snapshot, open would not read the log.
    drop_snapshot(dir);
    segment_files(dir).pop().expect("a segment")
}

fn count(store: &LogStore) -> usize {
    store.list(&ListQuery::thread("t")).expect("list").len()
}

fn expect_corruption(dir: &Path, options: &Options) -> (PathBuf, u64, String) {
    let opened = LogStore::open(dir, options.clone());
    match opened {
        Err(Error::Corruption { file, offset, reason }) => (file, offset, reason),
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("expected corruption, the store opened"),
    }
}

#[test]
fn flipped_bit_in_the_last_frame_is_a_torn_tail_and_earlier_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = store_with_puts(dir.path(), 6, Options::default());
    let frames = frames(&segment);
    let file = OpenOptions::new().read(true).write(true).open(&segment).expect("open");
    let flip = |offset: u64| {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8];
        file.read_exact_at(&mut b, offset).expect("read");
        file.write_all_at(&[b[0] ^ 0x10], offset).expect("write");
    };
    // In the middle of frame 3 of 6: later frames prove it had been synced.
    flip(frames[2].0 + frames[2].1 / 2);
    let (file_name, offset, reason) = expect_corruption(dir.path(), &Options::default());
    assert_eq!((file_name, offset), (segment.clone(), frames[2].0));
    assert!(reason.contains("checksum"), "{reason}");
    flip(frames[2].0 + frames[2].1 / 2); // repair
    // In the last frame: nothing after it, so it was never known durable by a later frame.
    flip(frames[5].0 + 40);
    let store = LogStore::open(dir.path(), Options::default()).expect("torn tail tolerated");
    assert_eq!(store.recovery_report().torn_tail.as_ref().map(|d| d.offset), Some(frames[5].0));
    assert_eq!(count(&store), 5);
}

#[test]
fn truncated_last_segment_loses_only_the_cut_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = store_with_puts(dir.path(), 5, Options::default());
    let frames = frames(&segment);
    let cut = frames[4].0 + 20;
    OpenOptions::new().write(true).open(&segment).expect("open").set_len(cut).expect("truncate");
    let store = LogStore::open(dir.path(), Options::default()).expect("open");
    assert_eq!(count(&store), 4);
    let torn = store.recovery_report().torn_tail.clone().expect("reported");
    assert_eq!(torn.offset, frames[4].0);
}

#[test]
fn truncated_sealed_segment_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options { segment_size: 4096, ..Options::default() };
    store_with_puts(dir.path(), 40, options.clone());
    let first = segment_files(dir.path()).remove(0);
    let len = std::fs::metadata(&first).expect("stat").len();
    OpenOptions::new().write(true).open(&first).expect("open").set_len(len - 10).expect("truncate");
    let (file, _, reason) = expect_corruption(dir.path(), &options);
    assert_eq!(file, first);
    assert!(reason.contains("sealed segment"), "{reason}");
}

#[test]
fn zeroed_tail_reads_as_the_end_of_the_log_and_zeroed_synced_frames_are_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = store_with_puts(dir.path(), 6, Options::default());
    let frames = frames(&segment);
    let zero = |(offset, len): (u64, u64)| {
        use std::os::unix::fs::FileExt;
        let file = OpenOptions::new().write(true).open(&segment).expect("open");
        file.write_all_at(&vec![0u8; len as usize], offset).expect("zero");
    };
    // Zeros in the middle, valid synced frames after: corruption.
    let saved = std::fs::read(&segment).expect("read");
    zero(frames[1]);
    let (_, offset, reason) = expect_corruption(dir.path(), &Options::default());
    assert_eq!(offset, frames[1].0);
    assert!(reason.contains("damaged frame"), "{reason}");
    std::fs::write(&segment, &saved).expect("restore");
    // Zeros at the very end look exactly like never-written preallocated space: the log ends
    // there (the documented limit of detection without an external record of the end).
    zero(frames[5]);
    let store = LogStore::open(dir.path(), Options::default()).expect("open");
    assert_eq!(count(&store), 5);
    assert!(store.recovery_report().torn_tail.is_none());
}

#[test]
fn duplicated_frame_is_rejected_not_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = store_with_puts(dir.path(), 4, Options::default());
    let frames = frames(&segment);
    let before = everything(&LogStore::open(dir.path(), Options::default()).expect("open"));
    drop_snapshot(dir.path());
    // Copy frame 1 (the first put) after the last frame: its CRCs pass (same segment salt).
    let bytes = std::fs::read(&segment).expect("read");
    let (offset, len) = frames[0];
    let copy = bytes[offset as usize..(offset + len) as usize].to_vec();
    let end = frames[3].0 + frames[3].1;
    {
        use std::os::unix::fs::FileExt;
        OpenOptions::new().write(true).open(&segment).expect("open").write_all_at(&copy, end).expect("write");
    }
    let store = LogStore::open(dir.path(), Options::default()).expect("open");
    let torn = store.recovery_report().torn_tail.clone().expect("the stray frame is cut off");
    assert_eq!(torn.offset, end);
    assert!(torn.reason.contains("out of sequence"), "{}", torn.reason);
    assert_eq!(everything(&store), before, "state unchanged by the duplicate");
    drop(store);
    // Under absolute consistency the same is an error.
    {
        use std::os::unix::fs::FileExt;
        OpenOptions::new().write(true).open(&segment).expect("open").write_all_at(&copy, end).expect("write");
    }
    let strict = Options { recovery: RecoveryMode::AbsoluteConsistency, ..Options::default() };
    let (_, offset, reason) = expect_corruption(dir.path(), &strict);
    assert_eq!(offset, end);
    assert!(reason.contains("out of sequence"), "{reason}");
}

#[test]
fn skip_corrupted_opens_with_what_is_valid_and_reports_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options { segment_size: 4096, ..Options::default() };
    store_with_puts(dir.path(), 40, options.clone());
    let files = segment_files(dir.path());
    std::fs::remove_file(&files[1]).expect("remove a middle segment");
    let lenient = Options { recovery: RecoveryMode::SkipCorrupted, ..options };
    let store = LogStore::open(dir.path(), lenient.clone()).expect("open");
    let report = store.recovery_report();
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].file, files[1]);
    let left = count(&store);
    assert!(left > 0 && left < 40, "{left}");
    // Every checkpoint still listed reads back whole.
    for tuple in store.list(&ListQuery::thread("t")).expect("list") {
        assert_eq!(tuple.checkpoint.channel_values.len(), 1);
    }
}

fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new().read(true).write(true).open(path).expect("open");
    let mut b = [0u8];
    file.read_exact_at(&mut b, offset).expect("read");
    file.write_all_at(&[b[0] ^ 0x10], offset).expect("write");
}

/// Regression (issue 10, defect 6): `verify` opened with `SkipCorrupted`, zeroed the tail,
/// trimmed the segment and wrote an INDEX without the skipped frames; after one `verify` a
/// normal open no longer reported the damage. Now it changes no byte, and says what it found.
#[test]
fn verify_changes_not_one_byte_and_the_damage_stays_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = store_with_puts(dir.path(), 6, Options::default());
    let frames = frames(&segment);
    flip_byte(&segment, frames[2].0 + frames[2].1 / 2);
    // A torn tail too (a flipped byte in the last frame), which a writer would zero.
    flip_byte(&segment, frames[5].0 + 40);
    let before = directory_bytes(dir.path());
    let (report, checked) = LogStore::verify_dir(dir.path(), &mut |_, _| {}).expect("verify");
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.skipped[0].offset, frames[2].0);
    assert!(report.torn_tail.is_some());
    assert!(checked.records_checked > 0);
    assert_eq!(directory_bytes(dir.path()), before, "verify changed the store");
    // The CLI goes through the same path.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_logsaver"))
        .args(["verify", &dir.path().display().to_string(), "--json"])
        .output()
        .expect("run logsaver verify");
    assert!(!status.status.success(), "verify reports the damage with its exit status");
    assert_eq!(directory_bytes(dir.path()), before, "logsaver verify changed the store");
    let (_, offset, _) = expect_corruption(dir.path(), &Options::default());
    assert_eq!(offset, frames[2].0, "a normal open still reports the damage");
}

/// Regression (issue 10, defect 6): a `SkipCorrupted` open that skipped damage wrote its lossy
/// index as the snapshot at close, so the next normal open used it and never saw the damage.
#[test]
fn skip_corrupted_never_persists_its_lossy_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options { segment_size: 4096, ..Options::default() };
    let segment = store_with_puts(dir.path(), 40, options.clone());
    let first = segment_files(dir.path()).remove(0);
    assert_ne!(first, segment);
    let frames = frames(&first);
    flip_byte(&first, frames[1].0 + frames[1].1 / 2);
    let lenient = Options { recovery: RecoveryMode::SkipCorrupted, ..options.clone() };
    let store = LogStore::open(dir.path(), lenient.clone()).expect("open");
    assert_eq!(store.recovery_report().skipped.len(), 1);
    // New writes are fine; compaction (which would drop the damaged frame for good) is refused.
    let cp = checkpoint("zzz-new", &[("x", b"after".as_slice())], 99);
    store.put(&Config::thread("t"), &cp, &Default::default(), &cp.channel_versions).expect("put");
    match store.compact() {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("skipped"), "{message}"),
        other => panic!("compaction of a degraded store: {other:?}"),
    }
    store.close().expect("close");
    assert!(!dir.path().join("INDEX").exists(), "a degraded store wrote a snapshot");
    let (file, offset, _) = expect_corruption(dir.path(), &options);
    assert_eq!((file, offset), (first, frames[1].0), "the damage is reported at every open");
}

/// Regression (issue 10, defect 6): the docs said a damaged segment header is skipped under
/// `SkipCorrupted`, the code failed. Now it is skipped, reported, and never written to.
#[test]
fn damaged_segment_header_is_skipped_under_skip_corrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options { segment_size: 4096, ..Options::default() };
    store_with_puts(dir.path(), 40, options.clone());
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    flip_byte(&files[1], 2);
    let (file, offset, reason) = expect_corruption(dir.path(), &options.clone());
    assert_eq!((file, offset), (files[1].clone(), 0));
    assert!(reason.contains("header"), "{reason}");
    let lenient = Options { recovery: RecoveryMode::SkipCorrupted, ..options.clone() };
    let store = LogStore::open(dir.path(), lenient.clone()).expect("open");
    let skipped = store.recovery_report().skipped.clone();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].file, files[1]);
    let left = count(&store);
    assert!(left > 0 && left < 40, "{left}");
    drop(store);
    // The last segment's header damaged: the writer starts a new segment instead of appending
    // to it, and the damaged file stays as it was.
    let last = segment_files(dir.path()).pop().expect("last");
    flip_byte(&last, 2);
    let damaged = std::fs::read(&last).expect("read");
    let store = LogStore::open(dir.path(), lenient.clone()).expect("open");
    let cp = checkpoint("zzz-new", &[("x", b"after".as_slice())], 99);
    store.put(&Config::thread("t"), &cp, &Default::default(), &cp.channel_versions).expect("put");
    drop(store);
    assert_eq!(std::fs::read(&last).expect("read"), damaged, "a skipped segment was written to");
}

/// Regression (issue 10, defect 6): after a skipped frame the next one's sequence number was
/// not checked, so a stray copy of an older frame right after the damage was replayed.
#[test]
fn frame_order_is_still_checked_after_a_skipped_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = store_with_puts(dir.path(), 6, Options::default());
    let frames = frames(&segment);
    // Frames 2.. are the same size (each put names its parent); copy frame 2 over frame 4 and
    // damage frame 3: the copy is the first frame after the skipped one.
    assert_eq!(frames[1].1, frames[3].1, "equal-size frames");
    let bytes = std::fs::read(&segment).expect("read");
    let copy = bytes[frames[1].0 as usize..(frames[1].0 + frames[1].1) as usize].to_vec();
    {
        use std::os::unix::fs::FileExt;
        OpenOptions::new().write(true).open(&segment).expect("open").write_all_at(&copy, frames[3].0).expect("write");
    }
    flip_byte(&segment, frames[2].0 + frames[2].1 / 2);
    let lenient = Options { recovery: RecoveryMode::SkipCorrupted, ..Options::default() };
    let store = LogStore::open(dir.path(), lenient.clone()).expect("open");
    let skipped: Vec<u64> = store.recovery_report().skipped.iter().map(|d| d.offset).collect();
    assert_eq!(skipped, vec![frames[2].0, frames[3].0], "the copy of frame 2 is damage, not a frame");
    assert!(store.recovery_report().skipped[1].reason.contains("out of sequence"));
}

/// Regression (issue 10, defect 6): with the MANIFEST missing, `SkipCorrupted` took the
/// segments in numeric order, which replays a compaction's output (highest numbers, oldest
/// records) after newer records and tombstones. The order is unknown: an error in every mode.
#[test]
fn missing_manifest_is_an_error_in_every_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_puts(dir.path(), 4, Options::default());
    std::fs::remove_file(dir.path().join("MANIFEST")).expect("remove MANIFEST");
    for recovery in [RecoveryMode::AbsoluteConsistency, RecoveryMode::TolerateTornTail, RecoveryMode::SkipCorrupted] {
        let (file, _, reason) = expect_corruption(dir.path(), &Options { recovery, ..Options::default() });
        assert!(file.ends_with("MANIFEST") && reason.contains("order"), "{recovery:?}: {reason}");
    }
}

/// Regression (review of issue 10's fixes): the CLI's read commands opened the store for writing,
/// so `stats` zeroed a torn tail (destroying what `verify` would report), removed leftovers,
/// prepared a segment and rewrote INDEX at close. A read-only open changes no byte.
#[test]
fn read_only_open_and_the_read_commands_change_not_one_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = store_with_puts(dir.path(), 6, Options::default());
    let frames = frames(&segment);
    flip_byte(&segment, frames[5].0 + 40); // a torn tail a writer would zero
    std::fs::write(dir.path().join("0000000099.seg.tmp"), b"leftover").expect("leftover");
    let before = directory_bytes(dir.path());
    {
        let store = LogStore::open_read_only(dir.path(), Options::default()).expect("open read-only");
        assert_eq!(store.recovery_report().torn_tail.as_ref().map(|d| d.offset), Some(frames[5].0));
        assert_eq!(count(&store), 5);
        let cp = checkpoint("zzz", &[("x", b"v".as_slice())], 9);
        let refused = store.put(&Config::thread("t"), &cp, &Default::default(), &cp.channel_versions);
        assert!(matches!(refused, Err(Error::ReadOnly { .. })), "{refused:?}");
        assert!(matches!(store.compact(), Err(Error::ReadOnly { .. })));
        assert!(matches!(store.delete_thread("t"), Err(Error::ReadOnly { .. })));
        store.flush().expect("nothing to flush");
        store.close().expect("close");
    }
    assert_eq!(directory_bytes(dir.path()), before, "the read-only open changed the store");
    let dir_arg = dir.path().display().to_string();
    for args in [
        vec!["stats", dir_arg.as_str()],
        vec!["threads", dir_arg.as_str()],
        vec!["history", dir_arg.as_str(), "t"],
        vec!["show", dir_arg.as_str(), "t"],
        vec!["export", dir_arg.as_str()],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_logsaver")).args(&args).output().expect("run");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(directory_bytes(dir.path()), before, "logsaver {args:?} changed the store");
    }
    // A writer then finds the torn tail as it was, and truncates it itself.
    let store = LogStore::open(dir.path(), Options::default()).expect("open");
    assert_eq!(store.recovery_report().torn_tail.as_ref().map(|d| d.offset), Some(frames[5].0));
}
