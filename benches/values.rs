//! How to store a new version of a growing value: the copy/insert delta of `src/delta.rs`
//! (then zstd on the ops) against zstd with the previous version as its dictionary
//! ("patch-from"), and zstd of the whole value, on what a chat agent's `messages` channel looks
//! like as it grows (a msgpack-like list: a count header that changes, then every earlier
//! message, then a new one). Reports time per write and bytes stored; decoding time too.
//!
//!     cargo bench --features testing --bench values
#![expect(clippy::expect_used, reason = "benchmark setup: a panic is the failure report")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use logsaver::testing::values::{apply_delta, encode_delta, pack, unpack};
use logsaver::{Blob, ChannelVersion, Checkpoint, CheckpointSaver, Config, LogStore, Options, ValueEncoding};

/// The list after `n` messages: a 3-byte count header, then each message (~300 bytes of
/// chat-like text with a tool call every other turn).
fn messages(n: usize) -> Vec<u8> {
    let count = u16::try_from(n).expect("under 65536 messages").to_be_bytes();
    let mut value = vec![0xdc, count[0], count[1]];
    for i in 0..n {
        let text = match i % 4 {
            0 => format!("user question {i}: what about topic {i}? please look it up and summarise"),
            1 => format!(r#"{{"name":"search","args":{{"query":"question {i}: topic {i}"}},"id":"call_{i}"}}"#),
            2 => format!("result: {}", "lorem ipsum dolor sit amet ".repeat(8)),
            _ => format!("Here is what I found (step {i}): {}", "the answer is 42. ".repeat(8)),
        };
        value.extend_from_slice(
            format!("\u{0085}{{\"type\":\"message\",\"id\":\"run-{i:08}\",\"content\":{text:?}}}").as_bytes(),
        );
    }
    value
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("values");
    for n in [40, 400] {
        let (base, new) = (messages(n), messages(n + 1));
        let ops = encode_delta(&base, &new);
        let (_, delta_stored) = pack(&ops, Some(1));
        let whole = zstd::bulk::compress(&new, 1).expect("zstd");
        let patch = zstd::bulk::Compressor::with_dictionary(1, &base).expect("dict").compress(&new).expect("zstd");
        println!(
            "{} B value: copy/insert delta {} B ({} B after zstd), zstd patch-from {} B, zstd whole {} B",
            new.len(),
            ops.len(),
            delta_stored.len(),
            patch.len(),
            whole.len()
        );
        group.bench_with_input(BenchmarkId::new("delta_encode", new.len()), &n, |b, _| {
            b.iter(|| pack(&encode_delta(black_box(&base), black_box(&new)), Some(1)).1.len());
        });
        group.bench_with_input(BenchmarkId::new("patch_from_encode", new.len()), &n, |b, _| {
            b.iter(|| {
                zstd::bulk::Compressor::with_dictionary(1, black_box(&base))
                    .expect("dict")
                    .compress(black_box(&new))
                    .expect("zstd")
            });
        });
        group.bench_with_input(BenchmarkId::new("whole_zstd1", new.len()), &n, |b, _| {
            b.iter(|| pack(black_box(&new), Some(1)).1.len());
        });
        let (codec, packed) = pack(&ops, Some(1));
        group.bench_with_input(BenchmarkId::new("delta_decode", new.len()), &n, |b, _| {
            b.iter(|| {
                let ops = unpack(codec, &packed, ops.len() as u64, u64::MAX).expect("unpack");
                apply_delta(black_box(&base), &ops, new.len()).expect("apply")
            });
        });
        group.bench_with_input(BenchmarkId::new("patch_from_decode", new.len()), &n, |b, _| {
            b.iter(|| {
                zstd::bulk::Decompressor::with_dictionary(black_box(&base))
                    .expect("dict")
                    .decompress(&patch, new.len())
                    .expect("zstd")
            });
        });
    }
    group.finish();

    // What compressing a small payload costs (checkpoint bodies are a few hundred bytes).
    let mut group = c.benchmark_group("small_payload");
    for len in [256usize, 600, 2048] {
        let text: Vec<u8> = format!(
            r#"{{"source":"loop","step":3,"versions_seen":{{"agent":{{"messages":"{:032}.0.4","turn":"{:032}.0.5"}}}}}}"#,
            7, 9
        )
        .into_bytes()
        .into_iter()
        .cycle()
        .take(len)
        .collect();
        for level in [1, -5] {
            let (_, packed) = pack(&text, Some(level));
            println!("{len} B at level {level}: {} B", packed.len());
            group.bench_with_input(BenchmarkId::new(format!("pack_level_{level}"), len), &text, |b, text| {
                b.iter(|| pack(black_box(text), Some(level)).1.len());
            });
        }
    }
    group.finish();

    // A put of the next version of a growing list (Flush; 150-250 KB, and 2-8 KB), values stored as deltas and
    // compressed, against values stored whole (format version 1's way): the write-path cost.
    let mut group = c.benchmark_group("put_growing");
    for (size, lists) in
        [("large", (600..800).map(messages).collect::<Vec<_>>()), ("small", (10..30).map(messages).collect())]
    {
        for (name, values) in [
            ("deltas", ValueEncoding::default()),
            ("whole", ValueEncoding { deltas: false, compression_level: None, ..ValueEncoding::default() }),
        ] {
            group.bench_function(format!("{size}/{name}"), |b| {
                b.iter_custom(|iters| {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let options = Options {
                        durability: logsaver::Durability::Flush,
                        values: values.clone(),
                        auto_compaction: None,
                        ..Options::default()
                    };
                    let store = LogStore::open(dir.path(), options).expect("open");
                    let mut parent = Config::thread("chat");
                    let started = std::time::Instant::now();
                    for i in 0..iters {
                        let mut checkpoint = Checkpoint::empty(store.next_checkpoint_id());
                        let at = usize::try_from(i).unwrap_or(0) % lists.len();
                        let value = lists.get(at).expect("a list").clone();
                        checkpoint.channel_values.insert("messages".into(), Blob::new("msgpack", value));
                        checkpoint.channel_versions.insert("messages".into(), ChannelVersion::Int(i as i64 + 1));
                        let versions = checkpoint.channel_versions.clone();
                        parent = store.put(&parent, &checkpoint, &Default::default(), &versions).expect("put");
                    }
                    started.elapsed()
                });
            });
        }
    }
    group.finish();

    // The cost of `max_chain` for reads: `get_tuple` by id of the checkpoint that sits deepest
    // in a chain (not the latest: its values come from the cache), against disk per version.
    let mut group = c.benchmark_group("chain_read");
    for max_chain in [16u32, 64, 256] {
        let dir = tempfile::tempdir().expect("tempdir");
        let values = ValueEncoding { max_chain, ..ValueEncoding::default() };
        let store =
            LogStore::open(dir.path(), Options { values, auto_compaction: None, ..Options::default() }).expect("open");
        let mut deepest: Option<(u32, Config)> = None;
        let mut parent = Config::thread("chat");
        for n in 1..=800 {
            let mut checkpoint = Checkpoint::empty(store.next_checkpoint_id());
            checkpoint.channel_values.insert("messages".into(), Blob::new("msgpack", messages(n)));
            checkpoint.channel_versions.insert("messages".into(), ChannelVersion::Int(n as i64));
            let versions = checkpoint.channel_versions.clone();
            parent = store.put(&parent, &checkpoint, &Default::default(), &versions).expect("put");
            let depth = store.value_space().longest_chain;
            if n < 800 && deepest.as_ref().is_none_or(|(d, _)| depth > *d) {
                deepest = Some((depth, parent.clone()));
            }
        }
        let (depth, config) = deepest.expect("a chain");
        let stored = store.space().record_bytes / 800;
        println!("max_chain {max_chain}: {stored} B per version on disk, deepest read {depth} deltas");
        group.bench_with_input(BenchmarkId::new("get_tuple_deepest", max_chain), &config, |b, config| {
            b.iter(|| store.get_tuple(black_box(config)).expect("get").expect("stored"));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
