//! Memory of the in-memory index per checkpoint, measured with a counting allocator.
//!
//! `cargo bench --bench index_memory` measures at 1,000,000 checkpoints (1,000 threads × 1,000
//! checkpoints, each with one new blob and one `put_writes` call, as a LangGraph step makes);
//! under `cargo test` it runs a 20,000-checkpoint smoke pass.
#![expect(
    clippy::expect_used,
    reason = "benchmark harness: a failed setup or call aborts the run, and that panic is the report"
)]

use std::alloc::System;
use std::time::Instant;

use logsaver::{
    Blob, ChannelVersion, Checkpoint, CheckpointIdGenerator, CheckpointSaver, Config, Durability, LogStore, Options,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

/// Counts every allocation, so the index's heap can be measured exactly.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (threads, per_thread): (u32, u32) = if full { (1_000, 1_000) } else { (100, 200) };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), Options::with_durability(Durability::None)).expect("open");
    let ids = CheckpointIdGenerator::new(None);
    let value = Blob::new("msgpack", vec![7u8; 64]);
    let region = Region::new(ALLOCATOR);
    let started = Instant::now();
    for step in 0..per_thread {
        for t in 0..threads {
            let mut checkpoint = Checkpoint::empty(ids.next_id());
            let version = ChannelVersion::Str(format!("{:032}.{:016}", step + 1, t));
            checkpoint.channel_values.insert("messages".into(), value.clone());
            checkpoint.channel_versions.insert("messages".into(), version);
            let metadata = serde_json::json!({"run_id": format!("run-{t}"), "step": step});
            let metadata = metadata.as_object().cloned().unwrap_or_default();
            let thread = format!("thread-{t:05}");
            let config =
                store.put(&Config::thread(&thread), &checkpoint, &metadata, &checkpoint.channel_versions).expect("put");
            store.put_writes(&config, &[("messages".into(), value.clone())], "task", "").expect("put_writes");
        }
    }
    store.flush().expect("flush");
    let elapsed = started.elapsed();
    let change = region.change();
    let bytes = change.bytes_allocated as isize - change.bytes_deallocated as isize;
    let checkpoints = threads * per_thread;
    let stats = store.stats();
    assert_eq!(stats.checkpoints, u64::from(checkpoints));
    println!(
        "index memory: {checkpoints} checkpoints ({} blobs, {} write records) use {:.1} MB: {:.0} bytes per checkpoint (loaded in {:.1} s)",
        stats.blobs,
        stats.write_records,
        bytes as f64 / 1e6,
        bytes as f64 / f64::from(checkpoints),
        elapsed.as_secs_f64()
    );
}
