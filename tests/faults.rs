//! Environment faults from the fault injector: a full disk (ENOSPC), failed fdatasync (EIO),
//! failed preallocation and rename, a read-only directory (EROFS). Each is a clear error, the
//! store poisons itself, and reopening finds everything that was acknowledged, byte for byte.
#![expect(
    clippy::expect_used,
    reason = "test code outside #[test] fns (helpers, closures): a panic is the failure report"
)]
#![expect(
    clippy::cast_possible_truncation,
    reason = "test data: `as u8` fill bytes from a call counter, wrapping intended"
)]

mod common;

use std::path::Path;

use common::{checkpoint, everything, meta};
use logsaver::testing::{Fault, FaultFs, FaultKind, SimFs};
use logsaver::{Blob, CheckpointSaver, Config, Error, LogStore, MemorySaver, Options};

const DIR: &str = "/store";

enum Call {
    Put(Config, logsaver::Checkpoint),
    Writes(Config, Vec<(String, Blob)>),
}

impl Call {
    fn apply(&self, saver: &dyn CheckpointSaver) -> logsaver::Result<()> {
        match self {
            Call::Put(config, cp) => {
                saver.put(config, cp, &meta(serde_json::json!({"n": cp.id})), &cp.channel_versions).map(|_| ())
            }
            Call::Writes(config, writes) => saver.put_writes(config, writes, "task", ""),
        }
    }
}

fn call(i: usize) -> Call {
    let thread = format!("t{}", i % 3);
    let id = format!("{i:08}");
    if i.is_multiple_of(2) {
        let cp = checkpoint(&id, &[("v", format!("payload {i}").repeat(30).as_bytes())], i as i64);
        Call::Put(Config::thread(thread), cp)
    } else {
        let target = Config::thread(thread).with_checkpoint(format!("{:08}", i - 1));
        Call::Writes(target, vec![("w".into(), Blob::new("bytes", vec![i as u8; 100]))])
    }
}

/// Runs calls until one fails under `fault`; checks the error, the poisoning and what a
/// reopen finds. Returns the error's message.
fn run_fault(fault: Fault, options: Options) -> String {
    let sim = SimFs::new();
    let faults = FaultFs::new(sim.vfs());
    let reference = MemorySaver::new();
    // Every I/O on the calling thread, so the n-th operation is the same one in every run.
    let options = Options { prepare_segments_ahead: false, ..options };
    let store = LogStore::open_with(faults.vfs(), Path::new(DIR), options.clone()).expect("open");
    faults.arm(fault);
    let mut failed = None;
    for i in 0..200 {
        let next = call(i);
        match next.apply(&store) {
            Ok(()) => next.apply(&reference).expect("reference"),
            Err(error) => {
                failed = Some((next, error));
                break;
            }
        }
    }
    let (failed_call, error) = failed.unwrap_or_else(|| panic!("{fault:?} never fired"));
    assert!(matches!(error, Error::Io { .. }), "{fault:?}: first failure is the I/O error itself: {error}");
    let kind = error.io_kind();
    assert!(kind.is_some(), "{fault:?}: an I/O error has a kind");
    match call(999).apply(&store) {
        Err(later @ Error::Poisoned { .. }) => {
            assert_eq!(later.io_kind(), kind, "{fault:?}: the poisoned error keeps the original kind");
        }
        other => panic!("{fault:?}: every later call is refused, got {other:?}"),
    }
    assert!(matches!(store.get_tuple(&Config::thread("t0")), Err(Error::Poisoned { .. })));
    faults.disarm();
    drop(store);
    let reopened = LogStore::open_with(faults.vfs(), Path::new(DIR), options).expect("reopen after the fault");
    let got = everything(&reopened);
    if got != everything(&reference) {
        // The failed call may have reached the disk before its fsync failed; nothing else may differ.
        failed_call.apply(&reference).expect("reference");
        assert_eq!(got, everything(&reference), "{fault:?}: acknowledged data lost or changed");
    }
    error.to_string()
}

#[test]
fn disk_full_on_every_write_position() {
    for nth in 1..=25 {
        let message = run_fault(Fault { kind: FaultKind::Write, nth, errno: 28, sticky: true }, Options::default());
        assert!(message.contains("No space left on device") && message.contains(".seg"), "{message}");
    }
}

#[test]
fn failed_fdatasync_poisons_and_is_never_retried() {
    for nth in 1..=15 {
        let message = run_fault(Fault { kind: FaultKind::Sync, nth, errno: 5, sticky: false }, Options::default());
        assert!(message.contains("Input/output error"), "{message}");
    }
}

#[test]
fn failed_preallocation_and_rename_of_a_new_segment() {
    let small = Options { segment_size: 4096, ..Options::default() };
    for nth in 1..=3 {
        let message = run_fault(Fault { kind: FaultKind::Allocate, nth, errno: 28, sticky: true }, small.clone());
        assert!(message.contains("No space left on device"), "{message}");
        let message = run_fault(Fault { kind: FaultKind::Rename, nth, errno: 5, sticky: false }, small.clone());
        assert!(message.contains("rename"), "{message}");
    }
}

#[test]
fn read_only_directory_is_a_clear_error() {
    let faults = FaultFs::new(SimFs::new().vfs());
    faults.arm(Fault { kind: FaultKind::OpenWrite, nth: 1, errno: 30, sticky: true });
    match LogStore::open_with(
        faults.vfs(),
        Path::new(DIR),
        Options { prepare_segments_ahead: false, ..Options::default() },
    ) {
        Err(error @ Error::Io { .. }) => {
            let message = error.to_string();
            assert!(message.contains("Read-only file system") && message.contains("/store/LOCK"), "{message}");
        }
        other => panic!("expected an I/O error, got {:?}", other.map(|_| ())),
    }
}

/// Regression (issue 10, defect 3): a caller queued behind a leader whose fdatasync failed used
/// to become leader itself; its own fdatasync returned 0 (Linux reports a writeback error once),
/// so it was acknowledged although its frame sat after the lost one, and recovery truncated it
/// as a torn tail. Now every queued and later call fails with `Poisoned`, keeping the kind.
#[test]
fn callers_queued_behind_a_failed_fdatasync_are_never_acknowledged() {
    use std::sync::{Arc, Barrier};
    let mut after_failure = 0;
    for round in 0..40u64 {
        let sim = SimFs::new();
        let options = Options { prepare_segments_ahead: false, auto_compaction: None, ..Options::default() };
        let store = Arc::new(LogStore::open_with(sim.vfs(), Path::new(DIR), options.clone()).expect("open"));
        sim.fail_sync_losing_data(3 + round % 5);
        let writers = 6;
        let start = Arc::new(Barrier::new(writers));
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (store, start) = (store.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut acknowledged = Vec::new();
                    for i in 0..40 {
                        let id = format!("{w:02}-{i:04}");
                        let cp = checkpoint(&id, &[("v", id.as_bytes())], i);
                        match store.put(
                            &Config::thread(format!("w{w}")),
                            &cp,
                            &meta(serde_json::json!({})),
                            &cp.channel_versions,
                        ) {
                            Ok(_) => acknowledged.push(id),
                            Err(error) => return (acknowledged, Some(error)),
                        }
                    }
                    (acknowledged, None)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("writer")).collect();
        let mut io_errors = 0;
        for (_, error) in &results {
            match error {
                Some(Error::Io { source, .. }) => {
                    assert_eq!(source.raw_os_error(), Some(5), "round {round}");
                    io_errors += 1;
                }
                Some(error @ Error::Poisoned { .. }) => {
                    assert!(error.io_kind().is_some(), "round {round}: {error}");
                    after_failure += 1;
                }
                Some(other) => panic!("round {round}: unexpected error {other}"),
                None => panic!("round {round}: a writer finished although an fdatasync failed"),
            }
        }
        assert!(io_errors <= 1, "round {round}: one caller sees the I/O error itself, the rest Poisoned");
        drop(store);
        sim.crash(round + 1);
        let reopened = LogStore::open_with(sim.vfs(), Path::new(DIR), options).expect("reopen");
        for (w, (acknowledged, _)) in results.iter().enumerate() {
            for id in acknowledged {
                let found = reopened.get_tuple(&Config::thread(format!("w{w}")).with_checkpoint(id.clone()));
                assert!(
                    matches!(found, Ok(Some(_))),
                    "round {round}: acknowledged checkpoint {id} of writer {w} lost after the failed fdatasync"
                );
            }
        }
    }
    assert!(after_failure > 0, "no caller was ever queued behind the failed fdatasync");
}

/// Rotation that fails after sealing the active segment (the next segment cannot be created)
/// poisons the store: no later call writes into the sealed, trimmed segment.
#[test]
fn rotation_failing_after_the_seal_poisons_the_store() {
    let sim = SimFs::new();
    let faults = FaultFs::new(sim.vfs());
    let options = Options { segment_size: 4096, prepare_segments_ahead: false, ..Options::default() };
    let store = LogStore::open_with(faults.vfs(), Path::new(DIR), options.clone()).expect("open");
    // Opening a new segment file for writing is the step after the seal.
    faults.arm(Fault { kind: FaultKind::OpenWrite, nth: 1, errno: 28, sticky: false });
    let mut acknowledged = Vec::new();
    let mut failure = None;
    for i in 0..100 {
        let id = format!("{i:08}");
        let cp = checkpoint(&id, &[("v", vec![7u8; 600].as_slice())], i);
        match store.put(&Config::thread("t"), &cp, &meta(serde_json::json!({})), &cp.channel_versions) {
            Ok(_) => acknowledged.push(id),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let failure = failure.expect("the rotation failed");
    assert_eq!(failure.io_kind(), Some(std::io::ErrorKind::StorageFull), "{failure}");
    let cp = checkpoint("after", &[("v", b"x".as_slice())], 1);
    let later = store.put(&Config::thread("t"), &cp, &meta(serde_json::json!({})), &cp.channel_versions);
    assert!(
        matches!(&later, Err(e @ Error::Poisoned { .. }) if e.io_kind() == Some(std::io::ErrorKind::StorageFull)),
        "{later:?}"
    );
    drop(store);
    sim.crash(7);
    let reopened = LogStore::open_with(sim.vfs(), Path::new(DIR), options).expect("reopen");
    for id in &acknowledged {
        assert!(matches!(reopened.get_tuple(&Config::thread("t").with_checkpoint(id.clone())), Ok(Some(_))), "{id}");
    }
}
