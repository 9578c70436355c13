//! The bodies of the fuzz targets, here so `cargo test` can replay the committed corpus
//! through exactly the code libFuzzer runs (`tests/fuzz_corpus.rs`).
#![expect(clippy::expect_used, reason = "fuzz-target and seed-building code: a panic is the failure libFuzzer reports")]
#![expect(
    clippy::indexing_slicing,
    reason = "fuzz-target and seed-building code: slices are bounded by the checks beside them (`rest.len() >= 2`, lengths capped with `min`, `first.len() > 64`); the probe's `channel_values[\"a\"]` lookup is an assertion, whose panic is the failure libFuzzer reports"
)]
#![expect(
    clippy::cast_possible_truncation,
    reason = "small bounded counts: at most 8 files, lengths capped at u16::MAX, seed and step numbers below 10"
)]

use std::path::{Path, PathBuf};

use crate::format::{FrameHeader, SegmentHeader, parse_frame, parse_record};
use crate::records::{
    BlobRecord, CheckpointRecord, DeleteCheckpointsRecord, DeleteThreadRecord, PackedCheckpointRecord, ValueRecord,
    WritesRecord, decode,
};
use crate::testing::SimFs;
use crate::testing::model::{decode_ops, run_model};
use crate::{
    Blob, ChannelVersion, Checkpoint, CheckpointSaver, Config, Durability, ListQuery, LogStore, Options, RecoveryMode,
};

/// Target `decode`: the segment header, frame and record decoders on arbitrary bytes. Must
/// never panic (and, being bounded by the input, never allocate from an unchecked length).
pub fn decode_target(data: &[u8]) {
    let _ = SegmentHeader::decode(data);
    let seq = data.first().copied().map_or(1, u64::from);
    let _ = FrameHeader::decode(data, seq);
    if let Ok((_, records)) = parse_frame(data, seq) {
        for (_, record) in records {
            decode_any(record.body);
        }
    }
    if let Ok((record, _)) = parse_record(data) {
        decode_any(record.body);
    }
    decode_any(data);
}

fn decode_any(body: &[u8]) {
    let _ = decode::<CheckpointRecord>(body);
    let _ = decode::<BlobRecord>(body);
    let _ = decode::<WritesRecord>(body);
    let _ = decode::<DeleteThreadRecord>(body);
    let _ = decode::<DeleteCheckpointsRecord>(body);
    // The version 2 records, with their payloads decoded as a read would (bounded by a 1 MiB
    // value limit: a claimed length is checked before anything is allocated).
    if let Ok(record) = decode::<ValueRecord>(body)
        && let Some(value) = record.value
        && let Ok(payload) = value.packed.unpack(1 << 20)
    {
        let len = usize::try_from(value.len).unwrap_or(usize::MAX).min(1 << 20);
        let _ = crate::delta::apply(&payload, &payload, len);
    }
    if let Ok(record) = decode::<PackedCheckpointRecord>(body) {
        let _ = record.rest.unpack(1 << 20);
    }
    let _ = crate::delta::apply(body, body, body.len());
}

/// The store directory the recovery target builds.
pub const FUZZ_DIR: &str = "/fuzz-store";

/// Split input into the files of a store directory: a little-endian u16 length before each
/// file; the files are segments 1, 2, ... in order, and a MANIFEST listing them is added.
pub fn files_from_bytes(data: &[u8]) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 && files.len() < 8 {
        let len = (usize::from(rest[0]) | (usize::from(rest[1]) << 8)).min(rest.len() - 2);
        let name = format!("{:010}.seg", files.len() + 1);
        files.push((Path::new(FUZZ_DIR).join(name), rest[2..2 + len].to_vec()));
        rest = &rest[2 + len..];
    }
    let manifest = crate::manifest::Manifest { generation: 1, segments: (1..=files.len() as u32).collect() };
    files.push((crate::manifest::Manifest::path(Path::new(FUZZ_DIR)), manifest.encode()));
    files
}

/// The inverse of [`files_from_bytes`], for building seeds from real stores.
pub fn bytes_from_files(files: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for file in files {
        let len = file.len().min(u16::MAX as usize);
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&file[..len]);
    }
    out
}

/// Target `recovery`: open a store over arbitrary directory contents. Opening may fail with an
/// error; it must never panic, and a store that opens must be consistent: everything `list`
/// returns reads back the same through `get_tuple`, and it accepts and keeps a new write.
pub fn recovery_target(data: &[u8]) {
    let mode = match data.first().map(|b| b % 3) {
        Some(0) => RecoveryMode::TolerateTornTail,
        Some(1) => RecoveryMode::SkipCorrupted,
        _ => RecoveryMode::AbsoluteConsistency,
    };
    let files = files_from_bytes(data.get(1..).unwrap_or_default());
    let sim = SimFs::with_files(files);
    let options = Options { recovery: mode, segment_size: 4096, ..Options::default() };
    let Ok(store) = LogStore::open_with(sim.vfs(), Path::new(FUZZ_DIR), options.clone()) else { return };
    let Ok(all) = store.list(&ListQuery::all()) else { return };
    for tuple in &all {
        // Records can be unreadable (a damaged blob found only on read): an error, not a panic.
        if let Ok(again) = store.get_tuple(&tuple.config) {
            let again = again.unwrap_or_else(|| panic!("listed checkpoint {:?} not found by get_tuple", tuple.config));
            assert_eq!(&again, tuple, "get_tuple disagrees with list");
        }
        let _ = store.get_delta_channel_history(&tuple.config, &["a".to_string()]);
    }
    let mut checkpoint = Checkpoint::empty("zzzz-fuzz-probe");
    checkpoint.channel_values.insert("a".into(), Blob::new("bytes", b"probe".to_vec()));
    checkpoint.channel_versions.insert("a".into(), ChannelVersion::Str("fuzz-probe".into()));
    let config = Config::thread("fuzz-probe-thread");
    if store.put(&config, &checkpoint, &Default::default(), &checkpoint.channel_versions).is_err() {
        return;
    }
    drop(store);
    let reopened = LogStore::open_with(sim.vfs(), Path::new(FUZZ_DIR), options).expect("a store that opened reopens");
    let probe = reopened.get_tuple(&config).expect("read probe").expect("the probe write survives a reopen");
    assert_eq!(probe.checkpoint.channel_values["a"].bytes, b"probe");
}

/// Target `model`: the model-based crash harness on operations decoded from the input.
pub fn model_target(data: &[u8]) {
    let durability = match data.first().map(|b| b % 3) {
        Some(0) => Durability::Sync,
        Some(1) => Durability::Flush,
        _ => Durability::None,
    };
    let ops = decode_ops(data.get(1..).unwrap_or_default());
    if let Err(violation) = run_model(&ops, durability) {
        panic!("model violation ({durability:?}): {violation}\nops: {ops:?}");
    }
}

/// Seed inputs for the three targets: `(target, name, bytes)`, built from real stores so the
/// fuzzer starts deep inside valid formats.
pub fn seed_corpus() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (i, (threads, steps, segment_size)) in
        [(1usize, 2usize, 4096u64), (2, 6, 4096), (3, 10, 8192)].into_iter().enumerate()
    {
        let sim = SimFs::new();
        let options = Options { segment_size, ..Options::default() };
        {
            let store = LogStore::open_with(sim.vfs(), Path::new(FUZZ_DIR), options).expect("seed store");
            for t in 0..threads {
                let mut config = Config::thread(format!("t{t}"));
                // Channel `b` grows by a chunk each step from 1.2 KiB: whole values compressed,
                // then deltas (format version 2's records in the seeds).
                let mut grown: Vec<u8> = (0..1200u32).map(|i| (i * 7 % 251) as u8).collect();
                for step in 0..steps {
                    let mut cp = Checkpoint::empty(format!("{step:04}-{t}"));
                    cp.channel_values.insert("a".into(), Blob::new("bytes", vec![step as u8; 40 * step]));
                    grown.extend(std::iter::repeat_n(step as u8, 100));
                    cp.channel_values.insert("b".into(), Blob::new("bytes", grown.clone()));
                    cp.channel_versions.insert("b".into(), ChannelVersion::Int(step as i64 + 1));
                    cp.channel_versions.insert("a".into(), ChannelVersion::Int(step as i64 + 1));
                    let metadata = serde_json::json!({"step": step, "run_id": format!("r{t}")});
                    let metadata = metadata.as_object().cloned().unwrap_or_default();
                    config = store.put(&config, &cp, &metadata, &cp.channel_versions).expect("put");
                    store
                        .put_writes(&config, &[("a".into(), Blob::new("json", b"1".to_vec()))], "task", "")
                        .expect("writes");
                }
                if t == 1 {
                    store.prune(&[format!("t{t}")], crate::PruneStrategy::KeepLatest).expect("prune");
                }
            }
        }
        let mut files = Vec::new();
        for n in 1u32.. {
            match sim.read(&Path::new(FUZZ_DIR).join(format!("{n:010}.seg"))) {
                // Trim the preallocated zeros: the fuzzer mutates what matters.
                Some(mut bytes) => {
                    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                    bytes.truncate(end.div_ceil(8) * 8);
                    files.push(bytes);
                }
                None => break,
            }
        }
        let mut recovery = vec![i as u8];
        recovery.extend(bytes_from_files(&files));
        seeds.push(("recovery", format!("store-{i}"), recovery));
        if let Some(first) = files.first() {
            seeds.push(("decode", format!("segment-{i}"), first.clone()));
            if first.len() > 64 {
                seeds.push(("decode", format!("frames-{i}"), first[64..].to_vec()));
            }
        }
    }
    let model_seeds: [&[u8]; 4] = [
        &[0, 0, 1, 2, 0, 2, 6, 5, 1, 4, 13, 7, 9, 1, 3, 3, 15, 0, 0],
        &[1, 0, 0, 8, 1, 1, 6, 5, 1, 4, 12, 0, 0, 2, 2, 2, 13, 4, 4, 0, 1, 1],
        &[2, 0, 3, 200, 11, 0, 2, 10, 2, 1, 14, 3, 9, 0, 1, 1, 9, 1, 0],
        &[0, 0, 0, 250, 0, 1, 250, 0, 2, 250, 14, 5, 1, 14, 9, 2, 8, 1, 0, 15, 0, 0],
    ];
    for (i, seed) in model_seeds.iter().enumerate() {
        seeds.push(("model", format!("ops-{i}"), seed.to_vec()));
    }
    seeds
}
