//! logsaver side by side with SQLite (LangGraph's SqliteSaver schema and settings, through
//! rusqlite) and with the physical floor (a preallocated write of the same size plus
//! fdatasync), all in one run, then a table of the ratios the project targets.
//!
//! `cargo bench --bench side_by_side` (under `cargo test` each case runs once, as a smoke pass).
#![expect(
    clippy::expect_used,
    reason = "benchmark harness: a failed setup or call aborts the run, and that panic is the report"
)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use logsaver::{
    Blob, ChannelVersion, Checkpoint, CheckpointIdGenerator, CheckpointSaver, Config, Durability, ListQuery, LogStore,
    Options,
};
use rusqlite::{Connection, params};

const SIZES: [usize; 4] = [256, 4 << 10, 64 << 10, 1 << 20];

fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn store(dir: &Path, durability: Durability) -> LogStore {
    LogStore::open(dir, Options { durability, auto_compaction: None, ..Options::default() }).expect("open")
}

fn checkpoint(ids: &CheckpointIdGenerator, size: usize, version: i64) -> Checkpoint {
    let mut checkpoint = Checkpoint::empty(ids.next_id());
    checkpoint.channel_values.insert("state".into(), Blob::new("msgpack", vec![42u8; size]));
    checkpoint.channel_versions.insert("state".into(), ChannelVersion::Int(version));
    checkpoint
}

/// SQLite with LangGraph's SqliteSaver schema (langgraph-checkpoint-sqlite 3.1.2): WAL, and the
/// whole checkpoint (values inline) in one row per put.
struct Sqlite {
    conn: Connection,
}

impl Sqlite {
    fn open(path: &Path, synchronous: &str) -> Sqlite {
        let conn = Connection::open(path).expect("sqlite open");
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous};
             CREATE TABLE IF NOT EXISTS checkpoints (
                thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL DEFAULT '', checkpoint_id TEXT NOT NULL,
                parent_checkpoint_id TEXT, type TEXT, checkpoint BLOB, metadata BLOB,
                PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id));
             CREATE TABLE IF NOT EXISTS writes (
                thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL DEFAULT '', checkpoint_id TEXT NOT NULL,
                task_id TEXT NOT NULL, idx INTEGER NOT NULL, channel TEXT NOT NULL, type TEXT, value BLOB,
                PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx));"
        ))
        .expect("schema");
        Sqlite { conn }
    }

    fn put(&self, thread: &str, id: &str, parent: Option<&str>, checkpoint: &[u8]) {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, '', ?, ?, 'msgpack', ?, ?)",
            )
            .and_then(|mut s| s.execute(params![thread, id, parent, checkpoint, b"{\"step\":1}".as_slice()]))
            .expect("insert");
    }

    fn put_write(&self, thread: &str, id: &str, task: &str, value: &[u8]) {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, value) VALUES (?, '', ?, ?, 0, 'messages', 'msgpack', ?)",
            )
            .and_then(|mut s| s.execute(params![thread, id, task, value]))
            .expect("insert write");
    }

    /// SqliteSaver.get_tuple without an id: the latest row, then its writes.
    fn get_latest(&self, thread: &str) -> (Vec<u8>, usize) {
        let (id, blob): (String, Vec<u8>) = self
            .conn
            .prepare_cached(
                "SELECT checkpoint_id, checkpoint FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![thread], |row| Ok((row.get(0)?, row.get(1)?))))
            .expect("select");
        let writes = self
            .conn
            .prepare_cached(
                "SELECT task_id, channel, type, value FROM writes WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id = ? ORDER BY task_id, idx",
            )
            .and_then(|mut s| s.query_map(params![thread, id], |row| row.get::<_, Vec<u8>>(3))?.count_ok())
            .expect("writes");
        (blob, writes)
    }
}

trait CountOk {
    fn count_ok(self) -> rusqlite::Result<usize>;
}

impl<I: Iterator<Item = rusqlite::Result<Vec<u8>>>> CountOk for I {
    fn count_ok(self) -> rusqlite::Result<usize> {
        let mut n = 0;
        for row in self {
            row?;
            n += 1;
        }
        Ok(n)
    }
}

/// The physical floor: overwrite a preallocated file at increasing offsets, fdatasync each.
struct Floor {
    file: std::fs::File,
    at: u64,
    len: u64,
}

impl Floor {
    fn new(path: &Path) -> Floor {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).expect("floor file");
        let len = 256u64 << 20;
        let zeros = vec![0u8; 1 << 20];
        for i in 0..(len >> 20) {
            file.write_all_at(&zeros, i << 20).expect("preallocate");
        }
        file.sync_all().expect("sync");
        Floor { file, at: 0, len }
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.at + bytes.len() as u64 > self.len {
            self.at = 0;
        }
        self.file.write_all_at(bytes, self.at).expect("write");
        self.file.sync_data().expect("fdatasync");
        self.at += bytes.len() as u64;
    }
}

fn puts(c: &mut Criterion) {
    for (durability, synchronous) in
        [(Durability::Sync, "FULL"), (Durability::Flush, "NORMAL"), (Durability::None, "OFF")]
    {
        let mut group = c.benchmark_group(format!("put_{durability:?}").to_lowercase());
        group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            let dir = tempfile::tempdir().expect("tempdir");
            let log = store(&dir.path().join("log"), durability);
            let ids = CheckpointIdGenerator::new(None);
            let mut version = 0;
            group.bench_function(BenchmarkId::new("logsaver", size), |b| {
                b.iter(|| {
                    version += 1;
                    let cp = checkpoint(&ids, size, version);
                    log.put(&Config::thread("bench"), &cp, &Default::default(), &cp.channel_versions).expect("put")
                });
            });
            let sqlite = Sqlite::open(&dir.path().join("sqlite.db"), synchronous);
            let value = vec![42u8; size];
            group.bench_function(BenchmarkId::new("sqlite", size), |b| {
                b.iter(|| {
                    let id = ids.next_id();
                    sqlite.put("bench", &id, None, &value);
                });
            });
            if durability == Durability::Sync {
                let mut floor = Floor::new(&dir.path().join("floor"));
                // The floor writes what a put writes: the value plus the record and frame framing.
                let bytes = vec![42u8; size + 160];
                group.bench_function(BenchmarkId::new("floor", size), |b| b.iter(|| floor.write(&bytes)));
            }
        }
        group.finish();
    }
}

fn concurrency(c: &mut Criterion) {
    let mut group = c.benchmark_group("concurrent_sync_put");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    for writers in [1usize, 2, 4, 8] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(store(dir.path(), Durability::Sync));
        let ids = Arc::new(CheckpointIdGenerator::new(None));
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("writers", writers), |b| {
            // Time per put with `writers` threads putting at once (lower is more throughput).
            b.iter_custom(|iters| {
                let per_writer = iters.div_ceil(writers as u64);
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for w in 0..writers {
                        let (log, ids) = (log.clone(), ids.clone());
                        scope.spawn(move || {
                            for i in 0..per_writer {
                                let cp = checkpoint(&ids, 1024, i as i64 + 1);
                                let config = Config::thread(format!("writer-{w}"));
                                log.put(&config, &cp, &Default::default(), &cp.channel_versions).expect("put");
                            }
                        });
                    }
                });
                started.elapsed().mul_f64(iters as f64 / (per_writer * writers as u64) as f64)
            });
        });
    }
    group.finish();
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = store(&dir.path().join("log"), Durability::None);
    let sqlite = Sqlite::open(&dir.path().join("sqlite.db"), "OFF");
    let ids = CheckpointIdGenerator::new(None);
    let mut config = Config::thread("bench");
    let mut by_id = None;
    let value = vec![7u8; 1024];
    for step in 0..1000 {
        let cp = checkpoint(&ids, 1024, step);
        let metadata = serde_json::json!({"step": step, "source": if step % 2 == 0 { "loop" } else { "input" }});
        config = log.put(&config, &cp, metadata.as_object().expect("object"), &cp.channel_versions).expect("put");
        log.put_writes(&config, &[("messages".into(), Blob::new("msgpack", value.clone()))], "task", "")
            .expect("writes");
        sqlite.put("bench", &cp.id, None, &value);
        sqlite.put_write("bench", &cp.id, "task", &value);
        if step == 500 {
            by_id = Some(config.clone());
        }
    }
    log.flush().expect("flush");
    let by_id = by_id.expect("middle checkpoint");
    let mut group = c.benchmark_group("read");
    group.sample_size(30).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    group.bench_function("get_tuple_latest/logsaver", |b| {
        b.iter(|| log.get_tuple(&Config::thread("bench")).expect("get"));
    });
    group.bench_function("get_tuple_latest/sqlite", |b| b.iter(|| sqlite.get_latest("bench")));
    group.bench_function("get_tuple_by_id/logsaver", |b| b.iter(|| log.get_tuple(&by_id).expect("get")));
    for limit in [10, 100] {
        group.bench_function(format!("list_limit_{limit}/logsaver"), |b| {
            b.iter(|| log.list(&ListQuery::thread("bench").limit(limit)).expect("list"));
        });
    }
    group.bench_function("list_filter_limit_10/logsaver", |b| {
        b.iter(|| {
            log.list(&ListQuery::thread("bench").filter("source", serde_json::json!("input")).limit(10)).expect("list")
        });
    });
    group.finish();
    let mut group = c.benchmark_group("put_writes");
    group.sample_size(20).measurement_time(Duration::from_secs(2));
    let target = by_id.clone();
    let mut task = 0u64;
    group.bench_function("flush/logsaver", |b| {
        let log = store(&dir.path().join("log-writes"), Durability::Flush);
        b.iter(|| {
            task += 1;
            log.put_writes(
                &target,
                &[("messages".into(), Blob::new("msgpack", vec![1u8; 512]))],
                &format!("t{task}"),
                "",
            )
            .expect("put_writes");
        });
    });
    group.finish();
}

/// Median estimate (ns) criterion saved for a benchmark, if it ran.
fn median_ns(group: &str, id: &str) -> Option<f64> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion").join(group).join(id).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json.get("median")?.get("point_estimate")?.as_f64()
}

fn ratio_table() {
    println!("\nratios from this run (median times; target in brackets):");
    let line = |name: &str, value: Option<f64>, target: &str, met: Option<bool>| {
        let shown = value.map_or("n/a".to_string(), |v| format!("{v:.2}"));
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        println!("  {name:<58} {shown:>8}  [{target}] {verdict}");
    };
    for size in SIZES {
        let ours = median_ns("put_sync", &format!("logsaver/{size}"));
        let floor = median_ns("put_sync", &format!("floor/{size}"));
        let r = ours.zip(floor).map(|(a, b)| a / b);
        line(&format!("durable put / fdatasync floor, {size} B"), r, "<= 1.3", r.map(|r| r <= 1.3));
        let sqlite = median_ns("put_sync", &format!("sqlite/{size}"));
        let r = sqlite.zip(ours).map(|(a, b)| a / b);
        line(&format!("sqlite FULL put / durable put, {size} B"), r, "speedup", None);
    }
    for size in SIZES {
        let r = median_ns("put_flush", &format!("sqlite/{size}"))
            .zip(median_ns("put_flush", &format!("logsaver/{size}")))
            .map(|(a, b)| a / b);
        line(&format!("sqlite NORMAL put / Flush put, {size} B"), r, ">= 10", r.map(|r| r >= 10.0));
    }
    let one = median_ns("concurrent_sync_put", "writers/1");
    let eight = median_ns("concurrent_sync_put", "writers/8");
    let r = one.zip(eight).map(|(a, b)| a / b);
    line("8 durable writers / 1 writer, throughput", r, ">= 4", r.map(|r| r >= 4.0));
    let r = median_ns("read", "get_tuple_latest_sqlite")
        .zip(median_ns("read", "get_tuple_latest_logsaver"))
        .map(|(a, b)| a / b);
    line("sqlite latest get / logsaver latest get_tuple", r, ">= 10", r.map(|r| r >= 10.0));
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    puts(&mut criterion);
    concurrency(&mut criterion);
    reads(&mut criterion);
    criterion.final_summary();
    if full() {
        ratio_table();
    }
}
