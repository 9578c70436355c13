//! kill -9: a child process writes with `Durability::Sync` from four threads and prints each
//! checkpoint and write once its call has returned, while a fifth thread compacts in a loop; the
//! parent kills it at a random moment (often mid-compaction), reopens the store and checks that
//! every acknowledged item is there, byte for byte. 50 rounds on one store, so each round also
//! recovers from the previous kill.
#![expect(
    clippy::cast_possible_truncation,
    reason = "test data: byte patterns from a hash seed (keeping the low byte is intended) and a small round count"
)]

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use logsaver::{Blob, ChannelVersion, Checkpoint, CheckpointSaver, Config, Durability, LogStore, Options};

const CHILD_DIR: &str = "LOGSAVER_KILL9_DIR";
const CHILD_ROUND: &str = "LOGSAVER_KILL9_ROUND";
const ROUNDS: u64 = 50;

/// The value a checkpoint or write carries, derived from its name so the parent can check it.
fn payload(name: &str) -> Vec<u8> {
    let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let len = 64 + (seed % 4000) as usize;
    (0..len).map(|i| (seed >> (i % 56)) as u8 ^ i as u8).collect()
}

/// The child's work (runs only when the parent sets the environment).
#[test]
fn kill9_child() {
    let (Ok(dir), Ok(round)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ROUND)) else { return };
    let options = Options { segment_size: 1 << 20, ..Options::with_durability(Durability::Sync) };
    let store = Arc::new(LogStore::open(&dir, options).expect("child open"));
    // A fifth thread deletes finished rounds' threads and compacts in a loop, so kills also land
    // in the middle of compactions.
    let compactor = {
        let store = store.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(20));
                store.compact().expect("compact");
            }
        })
    };
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let (store, round) = (store.clone(), round.clone());
            std::thread::spawn(move || {
                let thread = format!("r{round}-w{worker}");
                let mut config = Config::thread(&thread);
                for step in 0u64.. {
                    let id = format!("{round:0>4}-{worker}-{step:08}");
                    let mut cp = Checkpoint::empty(&id);
                    cp.channel_values.insert("state".into(), Blob::new("bytes", payload(&id)));
                    cp.channel_versions.insert("state".into(), ChannelVersion::Int(step as i64 + 1));
                    config = store.put(&config, &cp, &Default::default(), &cp.channel_versions).expect("put");
                    println!("CP {thread} {id}");
                    let task = format!("{id}-task");
                    store
                        .put_writes(&config, &[("out".into(), Blob::new("bytes", payload(&task)))], &task, "")
                        .expect("writes");
                    println!("W {thread} {id} {task}");
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    let _ = compactor.join();
}

#[test]
fn every_acknowledged_item_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut verified = (0usize, 0usize);
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "kill9_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let (acked, reader) = common::collect_whole_lines(child.stdout.take().expect("stdout"));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(30 + rng % 150));
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        reader.join().expect("reader");

        let store = LogStore::open(dir.path(), Options::default())
            .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        for line in acked.lock().expect("lock").iter() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["CP", thread, id] => {
                    let tuple = store
                        .get_tuple(&Config::thread(*thread).with_checkpoint(*id))
                        .expect("get")
                        .unwrap_or_else(|| panic!("round {round}: acknowledged checkpoint {id} is missing"));
                    assert_eq!(
                        tuple.checkpoint.channel_values["state"].bytes,
                        payload(id),
                        "round {round}: {id} differs"
                    );
                    verified.0 += 1;
                }
                ["W", thread, id, task] => {
                    let tuple = store
                        .get_tuple(&Config::thread(*thread).with_checkpoint(*id))
                        .expect("get")
                        .expect("checkpoint");
                    let write = tuple
                        .pending_writes
                        .iter()
                        .find(|w| w.task_id == *task)
                        .unwrap_or_else(|| panic!("round {round}: acknowledged write {task} is missing"));
                    assert_eq!(write.value.bytes, payload(task), "round {round}: write {task} differs");
                    verified.1 += 1;
                }
                _ => {}
            }
        }
    }
    println!("kill -9: {ROUNDS} rounds, {} acknowledged checkpoints and {} writes verified", verified.0, verified.1);
    assert!(verified.0 > ROUNDS as usize * 4, "the children wrote too little to prove anything: {verified:?}");
}
