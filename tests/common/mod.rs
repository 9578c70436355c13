//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test crate uses its own subset of these helpers")]
#![expect(clippy::expect_used, reason = "test helpers: a panic is the failure report")]

use std::path::{Path, PathBuf};

use logsaver::{Blob, ChannelVersion, Checkpoint, CheckpointIdGenerator, CheckpointSaver, Config, Metadata};

/// A checkpoint with the given channel values (all at version `version`).
pub fn checkpoint(id: &str, channels: &[(&str, &[u8])], version: i64) -> Checkpoint {
    let mut checkpoint = Checkpoint::empty(id);
    checkpoint.ts = "2026-11-21T00:00:00+00:00".into();
    for (channel, bytes) in channels {
        checkpoint.channel_values.insert((*channel).into(), Blob::new("msgpack", bytes.to_vec()));
        checkpoint.channel_versions.insert((*channel).into(), ChannelVersion::Int(version));
    }
    checkpoint
}

/// Metadata from a JSON literal.
pub fn meta(value: serde_json::Value) -> Metadata {
    match value {
        serde_json::Value::Object(map) => map,
        _ => Metadata::default(),
    }
}

/// A deterministic workload: `threads` threads, `steps` checkpoints each with writes, run
/// against `saver`. Returns the ids used.
pub fn workload(saver: &dyn CheckpointSaver, ids: &CheckpointIdGenerator, prefix: &str, threads: usize, steps: usize) {
    for t in 0..threads {
        let thread = format!("{prefix}-{t}");
        let mut parent: Option<String> = None;
        for step in 0..steps {
            let id = ids.next_id();
            let config =
                Config { thread_id: thread.clone(), checkpoint_ns: String::new(), checkpoint_id: parent.clone() };
            let message = format!("message {step} of {thread}").repeat(step + 1);
            let mut cp =
                checkpoint(&id, &[("messages", message.as_bytes()), ("counter", &step.to_le_bytes())], step as i64 + 1);
            cp.versions_seen.insert("agent".into(), cp.channel_versions.clone());
            let new_versions = cp.channel_versions.clone();
            let metadata = meta(serde_json::json!({"step": step, "source": "loop", "run_id": format!("run-{t}")}));
            let saved = saver.put(&config, &cp, &metadata, &new_versions).expect("put");
            let writes = vec![("messages".to_string(), Blob::new("msgpack", format!("w{step}").into_bytes()))];
            saver.put_writes(&saved, &writes, &format!("task-{step}"), "").expect("put_writes");
            parent = Some(id);
        }
    }
}

/// Everything a saver holds, newest first.
pub fn everything(saver: &dyn CheckpointSaver) -> Vec<logsaver::CheckpointTuple> {
    saver.list(&logsaver::ListQuery::all()).expect("list")
}

/// The only segment files of a store directory, sorted.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Offset just past the last non-zero byte of a file: the end of its written data.
pub fn data_end(path: &Path) -> u64 {
    let bytes = std::fs::read(path).expect("read segment");
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i as u64 + 1)
}

/// Every file of a directory with its bytes, sorted: to prove that something changed nothing
/// (a file removed while it is read counts as empty).
pub fn directory_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Collect a child process's stdout as lines, on a thread, keeping whole lines only: a line cut
/// short by a kill was never fully reported, so it acknowledges nothing.
pub fn collect_whole_lines(
    stdout: std::process::ChildStdout,
) -> (std::sync::Arc<std::sync::Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    use std::io::BufRead;
    let lines: std::sync::Arc<std::sync::Mutex<Vec<String>>> = std::sync::Arc::default();
    let collected = lines.clone();
    let collector = std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            if line.ends_with(b"\n") {
                collected.lock().expect("lock").push(String::from_utf8_lossy(&line).trim().to_owned());
            }
            line.clear();
        }
    });
    (lines, collector)
}

/// Remove the index snapshot, so the next open replays (and checks) the whole log.
pub fn drop_snapshot(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("INDEX"));
}

/// `len` pseudo-random bytes from `seed` (xorshift): values that do not compress, and the crash
/// model's operation bytes.
#[expect(clippy::cast_possible_truncation, reason = "a byte of the xorshift state")]
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
