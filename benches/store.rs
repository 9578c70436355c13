//! Early speed checks of the engine: `put` in each durability mode, `put_writes`, `get_tuple`
//! latest and by id, and `list`. The full side-by-side suite (SQLite, the fdatasync floor,
//! concurrency) builds on this.
#![expect(
    clippy::expect_used,
    reason = "benchmark harness: a failed setup or call aborts the run, and that panic is the report"
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use logsaver::{
    Blob, ChannelVersion, Checkpoint, CheckpointIdGenerator, CheckpointSaver, Config, Durability, ListQuery, LogStore,
    Options,
};

fn checkpoint(ids: &CheckpointIdGenerator, size: usize, version: i64) -> Checkpoint {
    let mut checkpoint = Checkpoint::empty(ids.next_id());
    checkpoint.channel_values.insert("state".into(), Blob::new("msgpack", vec![42u8; size]));
    checkpoint.channel_versions.insert("state".into(), ChannelVersion::Int(version));
    checkpoint
}

fn put(c: &mut Criterion) {
    let mut group = c.benchmark_group("put");
    for durability in [Durability::Sync, Durability::Flush, Durability::None] {
        for size in [256usize, 16 << 10] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = LogStore::open(dir.path(), Options::with_durability(durability)).expect("open");
            let ids = CheckpointIdGenerator::new(None);
            let config = Config::thread("bench");
            let mut version = 0;
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(format!("{durability:?}"), size), |b| {
                b.iter(|| {
                    version += 1;
                    let cp = checkpoint(&ids, size, version);
                    store.put(&config, &cp, &Default::default(), &cp.channel_versions).expect("put")
                });
            });
        }
    }
    group.finish();
}

/// A `put` shaped like LangGraph's agent loop: four channel versions (two new values, one of
/// 2 KiB), `versions_seen` for four nodes, the usual metadata, each step the child of the last.
fn put_langgraph_shape(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), Options::with_durability(Durability::Flush)).expect("open");
    let ids = CheckpointIdGenerator::new(None);
    let mut config = Config::thread("agent");
    let mut step = 0i64;
    let metadata: logsaver::Metadata = serde_json::from_str(
        r#"{"source":"loop","step":3,"parents":{},"run_id":"1f0c3b9e-0000-6000-8000-000000000001"}"#,
    )
    .expect("metadata");
    c.bench_function("put/Flush/langgraph_shape", |b| {
        b.iter(|| {
            step += 1;
            let version = |n: i64| ChannelVersion::Str(format!("{step:032}.{n:016}"));
            let mut cp = Checkpoint::empty(ids.next_id());
            cp.channel_values.insert("messages".into(), Blob::new("msgpack", vec![7u8; 2200]));
            cp.channel_values.insert("turn".into(), Blob::new("msgpack", vec![3u8]));
            for (channel, n) in [("messages", 1), ("turn", 2), ("branch:to:agent", 3), ("__start__", 4)] {
                cp.channel_versions.insert(channel.into(), version(n));
            }
            for node in ["agent", "tools", "__input__", "__start__"] {
                cp.versions_seen.insert(node.into(), cp.channel_versions.clone());
            }
            let mut new_versions = cp.channel_versions.clone();
            new_versions.retain(|channel, _| channel == "messages" || channel == "turn");
            config = store.put(&config, &cp, &metadata, &new_versions).expect("put");
        });
    });
}

fn put_writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), Options::with_durability(Durability::Flush)).expect("open");
    let config = Config::thread("bench").with_checkpoint("c1");
    let writes = vec![("messages".to_string(), Blob::new("msgpack", vec![1u8; 512]))];
    let mut task = 0u64;
    c.bench_function("put_writes/Flush/512", |b| {
        b.iter(|| {
            task += 1;
            store.put_writes(&config, &writes, &format!("task-{task}"), "").expect("put_writes");
        });
    });
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), Options::with_durability(Durability::None)).expect("open");
    let ids = CheckpointIdGenerator::new(None);
    let mut config = Config::thread("bench");
    let mut middle = None;
    for step in 0..1000 {
        let cp = checkpoint(&ids, 1024, step);
        config = store.put(&config, &cp, &Default::default(), &cp.channel_versions).expect("put");
        store.put_writes(&config, &[("x".into(), Blob::new("json", b"1".to_vec()))], "t", "").expect("writes");
        if step == 500 {
            middle = Some(config.clone());
        }
    }
    store.flush().expect("flush");
    let middle = middle.expect("middle");
    c.bench_function("get_tuple/latest", |b| b.iter(|| store.get_tuple(&Config::thread("bench")).expect("get")));
    c.bench_function("get_tuple/by_id", |b| b.iter(|| store.get_tuple(&middle).expect("get")));
    c.bench_function("list/limit10", |b| b.iter(|| store.list(&ListQuery::thread("bench").limit(10)).expect("list")));
}

criterion_group!(benches, put, put_langgraph_shape, put_writes, reads);
criterion_main!(benches);
