//! Environment faults from the fault injector: a full disk (ENOSPC), failed fdatasync (EIO),
//! failed preallocation and rename, a read-only directory (EROFS). Each is a clear error, the
//! store poisons itself, and reopening finds everything that was acknowledged, byte for byte.

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
    if i % 2 == 0 {
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
    assert!(matches!(call(999).apply(&store), Err(Error::Poisoned(_))), "{fault:?}: every later call is refused");
    assert!(matches!(store.get_tuple(&Config::thread("t0")), Err(Error::Poisoned(_))));
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
