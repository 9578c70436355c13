//! Readers and writers together: 8 threads reading (`get_tuple` latest and by id, `list` of a
//! thread) while 8 threads write (`put` with a 2 KiB value, `put_writes`), on 64 threads of 50
//! checkpoints each, in `Flush` mode (so the figures show the locks, not the fdatasync) and in
//! `Sync` mode. Prints throughput and latency percentiles per side.
//!
//! `cargo bench --bench contention` (the README's Performance section quotes it);
//! `cargo bench --bench contention -- --quick` runs a short pass.
#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark harness: indices are taken modulo the table sizes or scaled by a fraction in 0..=1, and a failed call aborts the run with that panic as the report"
)]
#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "fill bytes and random indices from counters (truncation intended) and percentile positions from a non-negative fraction"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use logsaver::{Blob, ChannelVersion, Checkpoint, CheckpointSaver, Config, Durability, ListQuery, LogStore, Options};

const THREADS: usize = 64;
const STEPS: usize = 50;

fn checkpoint(store: &LogStore, step: usize) -> Checkpoint {
    let mut cp = Checkpoint::empty(store.next_checkpoint_id());
    cp.channel_values.insert("messages".into(), Blob::new("msgpack", vec![step as u8; 2048]));
    cp.channel_values.insert("step".into(), Blob::new("msgpack", step.to_le_bytes().to_vec()));
    cp.channel_versions.insert("messages".into(), ChannelVersion::Int(step as i64 + 1));
    cp.channel_versions.insert("step".into(), ChannelVersion::Int(step as i64 + 1));
    cp
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

struct Side {
    ops: u64,
    latencies: Vec<Duration>,
}

fn run(durability: Durability, seconds: f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        LogStore::open(dir.path(), Options { durability, auto_compaction: None, ..Options::default() }).expect("open"),
    );
    // Every thread gets STEPS checkpoints; readers pick ids from these.
    let mut ids = Vec::new();
    for t in 0..THREADS {
        let mut config = Config::thread(format!("thread-{t}"));
        let mut thread_ids = Vec::new();
        for step in 0..STEPS {
            let cp = checkpoint(&store, step);
            config = store.put(&config, &cp, &Default::default(), &cp.channel_versions).expect("put");
            thread_ids.push(cp.id);
        }
        ids.push(thread_ids);
    }
    let ids = Arc::new(ids);
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..8usize {
        let (store, ids, stop) = (store.clone(), ids.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let mut side = Side { ops: 0, latencies: Vec::new() };
            let mut x = r as u64 * 7919 + 1;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let t = (x as usize) % THREADS;
                let started = Instant::now();
                match x % 3 {
                    0 => drop(store.get_tuple(&Config::thread(format!("thread-{t}"))).expect("get")),
                    1 => {
                        let id = &ids[t][(x as usize / 3) % STEPS];
                        drop(
                            store
                                .get_tuple(&Config::thread(format!("thread-{t}")).with_checkpoint(id.clone()))
                                .expect("get"),
                        );
                    }
                    _ => drop(
                        store
                            .list(&ListQuery { limit: Some(5), ..ListQuery::thread(format!("thread-{t}")) })
                            .expect("list"),
                    ),
                }
                side.latencies.push(started.elapsed());
                side.ops += 1;
            }
            side
        }));
    }
    let mut writers = Vec::new();
    for w in 0..8usize {
        let (store, stop) = (store.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let mut side = Side { ops: 0, latencies: Vec::new() };
            let mut step = STEPS;
            while !stop.load(Ordering::Relaxed) {
                let t = (w * 8 + step) % THREADS;
                let config = Config::thread(format!("thread-{t}"));
                let cp = checkpoint(&store, step);
                let started = Instant::now();
                let saved = store.put(&config, &cp, &Default::default(), &cp.channel_versions).expect("put");
                let writes = vec![("messages".to_string(), Blob::new("msgpack", vec![1u8; 256]))];
                store.put_writes(&saved, &writes, "task", "").expect("put_writes");
                side.latencies.push(started.elapsed());
                side.ops += 2;
                step += 1;
            }
            side
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let collect = |handles: Vec<std::thread::JoinHandle<Side>>| {
        let mut ops = 0;
        let mut latencies = Vec::new();
        for handle in handles {
            let side = handle.join().expect("thread");
            ops += side.ops;
            latencies.extend(side.latencies);
        }
        latencies.sort_unstable();
        (ops, latencies)
    };
    let (read_ops, read_lat) = collect(readers);
    let (write_ops, write_lat) = collect(writers);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{durability:?}: readers {:.0} reads/s (p50 {:.1} µs, p99 {:.1} µs, max {:.0} µs); writers {:.0} write calls/s (put+put_writes pair p50 {:.1} µs, p99 {:.1} µs, max {:.0} µs)",
        read_ops as f64 / seconds,
        us(percentile(&read_lat, 0.5)),
        us(percentile(&read_lat, 0.99)),
        us(percentile(&read_lat, 1.0)),
        write_ops as f64 / seconds,
        us(percentile(&write_lat, 0.5)),
        us(percentile(&write_lat, 0.99)),
        us(percentile(&write_lat, 1.0)),
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let seconds = if quick { 0.3 } else { 5.0 };
    println!("8 readers + 8 writers, {THREADS} threads × {STEPS} checkpoints, {seconds} s per mode");
    for durability in [Durability::Flush, Durability::Sync] {
        run(durability, seconds);
    }
}
