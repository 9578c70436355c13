//! Compaction throughput and write amplification at 30/60/90% garbage, and reopen time against
//! store size with and without the index snapshot.
//!
//! `cargo bench --features testing --bench compaction` (stores of up to 1,000,000 checkpoints;
//! under `cargo test` the sizes are small, as a smoke pass).
#![expect(
    clippy::expect_used,
    reason = "benchmark harness: a failed setup or call aborts the run, and that panic is the report"
)]

use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use logsaver::{
    Blob, ChannelVersion, Checkpoint, CheckpointIdGenerator, CheckpointSaver, Config, Durability, LogStore, Options,
};

fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn options() -> Options {
    Options { durability: Durability::None, auto_compaction: None, ..Options::default() }
}

/// `threads` threads of `per_thread` checkpoints, each with a new 1 KiB blob and one write.
fn fill(store: &LogStore, threads: usize, per_thread: usize, value: usize) {
    let ids = CheckpointIdGenerator::new(None);
    let blob = Blob::new("msgpack", vec![7u8; value]);
    for step in 0..per_thread {
        for t in 0..threads {
            let mut checkpoint = Checkpoint::empty(ids.next_id());
            checkpoint.channel_values.insert("state".into(), blob.clone());
            checkpoint.channel_versions.insert("state".into(), ChannelVersion::Int(step as i64 + 1));
            let config = store
                .put(
                    &Config::thread(format!("t{t:06}")),
                    &checkpoint,
                    &Default::default(),
                    &checkpoint.channel_versions,
                )
                .expect("put");
            store.put_writes(&config, &[("x".into(), Blob::new("json", b"1".to_vec()))], "task", "").expect("writes");
        }
    }
    store.flush().expect("flush");
}

fn compaction(c: &mut Criterion) {
    let threads = if full() { 200 } else { 20 };
    let mut group = c.benchmark_group("compaction");
    group.sample_size(10).measurement_time(Duration::from_secs(if full() { 20 } else { 1 }));
    for garbage in [30usize, 60, 90] {
        let setup = || {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = LogStore::open(dir.path(), options()).expect("open");
            fill(&store, threads, 50, 1024);
            let doomed = threads * garbage / 100;
            for t in 0..doomed {
                store.delete_thread(&format!("t{t:06}")).expect("delete");
            }
            (dir, store)
        };
        {
            let (_dir, store) = setup();
            let before = store.space();
            let stats = store.compact().expect("compact");
            let reclaimed = stats.bytes_before.saturating_sub(stats.bytes_after);
            println!(
                "compaction at {garbage}% garbage: {:.1} MB in {} segments -> {:.1} MB; copied {:.1} MB; write amplification {:.2} bytes written per byte reclaimed; measured garbage {:.0}%",
                stats.bytes_before as f64 / 1e6,
                stats.segments_rewritten,
                stats.bytes_after as f64 / 1e6,
                stats.bytes_copied as f64 / 1e6,
                stats.bytes_copied as f64 / reclaimed.max(1) as f64,
                before.garbage_ratio() * 100.0,
            );
            group.throughput(Throughput::Bytes(stats.bytes_before));
        }
        group.bench_function(BenchmarkId::new("garbage_percent", garbage), |b| {
            b.iter_batched(setup, |(_dir, store)| store.compact().expect("compact"), BatchSize::PerIteration);
        });
    }
    group.finish();
}

fn reopen(c: &mut Criterion) {
    let sizes: &[usize] = if full() { &[10_000, 100_000, 1_000_000] } else { &[2_000] };
    let mut group = c.benchmark_group("reopen");
    group.sample_size(10).measurement_time(Duration::from_secs(if full() { 15 } else { 1 }));
    for &checkpoints in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = LogStore::open(dir.path(), options()).expect("open");
            fill(&store, 1_000.min(checkpoints), checkpoints / 1_000.min(checkpoints), 64);
        }
        let snapshot = dir.path().join("INDEX");
        let saved = std::fs::read(&snapshot).expect("snapshot written at close");
        // Only the open is timed; dropping the store closes it (and rewrites the snapshot).
        let time_open = |use_snapshot: bool, iters: u64| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if use_snapshot {
                    std::fs::write(&snapshot, &saved).expect("restore snapshot");
                } else {
                    let _ = std::fs::remove_file(&snapshot);
                }
                let started = Instant::now();
                let store = LogStore::open(dir.path(), options()).expect("reopen");
                total += started.elapsed();
                assert_eq!(store.recovery_report().used_snapshot, use_snapshot);
            }
            total
        };
        group.bench_function(BenchmarkId::new("with_snapshot", checkpoints), |b| {
            b.iter_custom(|iters| time_open(true, iters));
        });
        group.bench_function(BenchmarkId::new("full_scan", checkpoints), |b| {
            b.iter_custom(|iters| time_open(false, iters));
        });
    }
    group.finish();
}

criterion_group!(benches, compaction, reopen);
criterion_main!(benches);
