//! The knobs and what each does, measured: segment size, preallocation, preparing segments
//! ahead, and group commit (writers sharing fdatasyncs); the compaction threshold's effect is
//! in the `compaction` bench (write amplification at 30/60/90% garbage).
//!
//! `cargo bench --bench tuning` prints a table (mean and p99 latency of durable puts, and
//! throughput); under `cargo test` it runs a short smoke pass.
#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark harness: the p99 index is below the sample count, and a failed call aborts the run with that panic as the report"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use logsaver::{
    Blob, ChannelVersion, Checkpoint, CheckpointIdGenerator, CheckpointSaver, Config, Durability, LogStore, Options,
};

fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

struct Run {
    mean: Duration,
    p99: Duration,
    puts_per_s: f64,
}

/// `writers` threads each doing `per_writer` durable puts of `size` bytes.
fn run(options: Options, writers: usize, per_writer: usize, size: usize) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LogStore::open(dir.path(), options).expect("open"));
    let ids = Arc::new(CheckpointIdGenerator::new(None));
    let started = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (store, ids) = (store.clone(), ids.clone());
                scope.spawn(move || {
                    let mut lat = Vec::with_capacity(per_writer);
                    let value = Blob::new("msgpack", vec![1u8; size]);
                    for i in 0..per_writer {
                        let mut cp = Checkpoint::empty(ids.next_id());
                        cp.channel_values.insert("state".into(), value.clone());
                        cp.channel_versions.insert("state".into(), ChannelVersion::Int(i as i64 + 1));
                        let t = Instant::now();
                        store
                            .put(&Config::thread(format!("w{w}")), &cp, &Default::default(), &cp.channel_versions)
                            .expect("put");
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("writer")).collect()
    });
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let mean = latencies.iter().sum::<Duration>() / u32::try_from(latencies.len()).expect("fewer than 2^32 samples");
    let p99 = latencies[latencies.len() * 99 / 100];
    Run { mean, p99, puts_per_s: latencies.len() as f64 / elapsed.as_secs_f64() }
}

fn main() {
    let scale = if full() { 1 } else { 20 };
    let base = Options { durability: Durability::Sync, auto_compaction: None, ..Options::default() };
    let mut rows: Vec<(String, String, Run)> = Vec::new();
    let size = 16 << 10;
    let puts = 3000 / scale;
    for (label, segment_size) in [("8 MiB (default)", 8u64 << 20), ("64 MiB", 64 << 20), ("256 MiB", 256 << 20)] {
        let options = Options { segment_size, ..base.clone() };
        rows.push(("segment_size".into(), label.into(), run(options, 1, puts, size)));
    }
    for (label, preallocate, ahead) in [
        ("zero-filled, prepared ahead (default)", true, true),
        ("zero-filled, on rotation", true, false),
        ("sparse (set_len), prepared ahead", false, true),
    ] {
        let options = Options { segment_size: 8 << 20, preallocate, prepare_segments_ahead: ahead, ..base.clone() };
        rows.push(("preallocation".into(), label.into(), run(options, 1, puts, size)));
    }
    for writers in [1usize, 2, 4, 8, 16] {
        let options = base.clone();
        rows.push((
            "group commit: writers".into(),
            writers.to_string(),
            run(options, writers, 2000 / scale / writers.min(4), 1024),
        ));
    }
    println!("\n{:<24} {:<40} {:>10} {:>10} {:>10}", "knob", "setting", "mean", "p99", "puts/s");
    for (knob, setting, r) in &rows {
        println!(
            "{knob:<24} {setting:<40} {:>8.0}µs {:>8.0}µs {:>10.0}",
            r.mean.as_secs_f64() * 1e6,
            r.p99.as_secs_f64() * 1e6,
            r.puts_per_s
        );
    }
}
