//! The index snapshot (`INDEX`): the whole in-memory index, written at close and after each
//! compaction, so opening a large store reads one file instead of replaying every segment.
//!
//! The snapshot records the position it covers (the end of the last frame applied) and the
//! segments before it. At open it is used only if the manifest still starts with those
//! segments; the log after the position is then replayed as usual. A damaged, stale or missing
//! snapshot falls back to the full scan. It is written only after the data it covers is
//! durable (`flush` first), through a temporary file, fsync and rename.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `"LGSVIDX1"` |
//! | 8 | n | postcard-encoded [`Image`] |
//! | 8+n | 4 | CRC32 of bytes 8..8+n |

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::{
    Applied, BlobSlot, CheckpointKey, CheckpointSlot, Index, NamespaceIndex, RunTable, SegmentUsage, ThreadIndex,
};
use crate::manifest::Manifest;
use crate::segment::{Loc, SegmentSet, sync_dir};
use crate::vfs::{OpenMode, Vfs};

/// File name of the snapshot in a store directory.
pub const SNAPSHOT_FILE: &str = "INDEX";
/// Version 4: blob hashes are [`crate::index::blob_hash`]'s word-at-a-time hash (version 3 held
/// FNV-1a hashes and added each blob's delta base; version 2 run ids as a table with free
/// numbers). Older snapshots are ignored: the next open replays the log and writes this one.
const MAGIC: &[u8; 8] = b"LGSVIDX4";

#[derive(Serialize, Deserialize)]
enum Key {
    Uuid([u8; 16]),
    Text(String),
}

impl From<&CheckpointKey> for Key {
    fn from(key: &CheckpointKey) -> Self {
        match key {
            CheckpointKey::Uuid(bytes) => Key::Uuid(*bytes),
            CheckpointKey::Text(text) => Key::Text(text.to_string()),
        }
    }
}

impl From<Key> for CheckpointKey {
    fn from(key: Key) -> Self {
        match key {
            Key::Uuid(bytes) => CheckpointKey::Uuid(bytes),
            Key::Text(text) => CheckpointKey::Text(text.into()),
        }
    }
}

type L = (u32, u32, u32);

fn l(loc: Loc) -> L {
    (loc.segment, loc.offset, loc.len)
}

fn loc((segment, offset, len): L) -> Loc {
    Loc { segment, offset, len }
}

#[derive(Serialize, Deserialize)]
struct Namespace {
    name: String,
    checkpoints: Vec<(Key, L, u32)>,
    blobs: Vec<(u64, L, u32, u32, Option<u64>)>,
    writes: Vec<(Key, Vec<L>)>,
}

/// What the file holds: the index as of a durable position. Taken under the index lock,
/// encoded and written after it is released.
#[derive(Serialize, Deserialize)]
pub struct Image {
    /// Manifest segments up to and including the covered one, with their file lengths.
    segments: Vec<(u32, u64)>,
    applied: (u32, u64, u64),
    /// Run id of each interned number (`None`: a free number).
    runs: Vec<Option<String>>,
    max_checkpoint_id: Option<Key>,
    usage: Vec<(u32, u64, u64)>,
    threads: Vec<(String, Vec<Namespace>)>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_FILE)
}

/// Write a snapshot of `index`, which covers the log up to `index.applied` (durable by now).
/// The image of `index`, which must cover only durable frames: the caller holds the commit path
/// still (no frame can be applied meanwhile) after a sync.
pub fn capture(manifest: &Manifest, segments: &SegmentSet, index: &Index) -> Result<Image> {
    let applied = index.applied;
    let covered: Vec<(u32, u64)> = match manifest.segments.iter().position(|&s| s == applied.segment) {
        Some(i) => manifest
            .segments
            .iter()
            .take(i + 1)
            .map(|&seq| (seq, segments.get(seq).map_or(0, |s| s.file_len())))
            .collect(),
        None => Vec::new(),
    };
    if covered.is_empty() && !index.threads.is_empty() {
        // The index says it covers a position the log no longer has: never write a snapshot
        // that would make the next open replay everything on top of it.
        return Err(Error::invariant("index position is not in the manifest; snapshot not written"));
    }
    let image = Image {
        segments: covered,
        applied: (applied.segment, applied.offset, applied.frame_seq),
        runs: index.runs.names.iter().map(|n| n.as_ref().map(ToString::to_string)).collect(),
        max_checkpoint_id: index.max_checkpoint_id.as_ref().map(Key::from),
        usage: index.usage.iter().map(|(seq, u)| (*seq, u.records, u.live)).collect(),
        threads: index
            .threads
            .iter()
            .map(|(name, thread)| {
                let namespaces = thread
                    .namespaces
                    .iter()
                    .map(|(ns, n)| Namespace {
                        name: ns.to_string(),
                        checkpoints: n
                            .checkpoints
                            .iter()
                            .map(|(k, s)| (Key::from(k), l(s.loc), s.run.map_or(0, NonZeroU32::get)))
                            .collect(),
                        blobs: n.blobs.iter().map(|(h, b)| (*h, l(b.loc), b.refs, b.delta_refs, b.base)).collect(),
                        writes: n
                            .writes
                            .iter()
                            .map(|(k, locs)| (Key::from(k), locs.iter().map(|x| l(*x)).collect()))
                            .collect(),
                    })
                    .collect();
                (name.to_string(), namespaces)
            })
            .collect(),
    };
    Ok(image)
}

/// Write `image` as the store's snapshot: temporary file, fsync, rename, directory fsync.
pub fn write(vfs: &dyn Vfs, dir: &Path, image: &Image) -> Result<()> {
    let mut bytes = MAGIC.to_vec();
    bytes = postcard::to_extend(image, bytes)
        .map_err(|e| Error::invariant(format!("cannot encode the index snapshot: {e}")))?;
    #[expect(clippy::indexing_slicing, reason = "bytes starts with the MAGIC it was built from")]
    let crc = crc32fast::hash(&bytes[MAGIC.len()..]);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let temp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let file = vfs.open(&temp, OpenMode::CreateTruncate).map_err(|e| Error::io("create", &temp, e))?;
    file.write_all_at(&bytes, 0).map_err(|e| Error::io("write", &temp, e))?;
    file.sync_all().map_err(|e| Error::io("fsync", &temp, e))?;
    vfs.rename(&temp, &path(dir)).map_err(|e| Error::io("rename snapshot", path(dir), e))?;
    sync_dir(vfs, dir)
}

/// An index loaded from a snapshot, and where replay resumes.
pub struct Loaded {
    /// The index as of the snapshot.
    pub index: Index,
    /// (position in the manifest, offset in that segment) where replay resumes.
    pub resume: (usize, u64),
    /// The last frame sequence number the snapshot covers.
    pub last_frame_seq: u64,
}

/// Load the snapshot of `dir` if there is one, it is intact, and the log it covers is still
/// the start of the manifest. Otherwise `None` (the caller replays everything).
pub fn load(vfs: &dyn Vfs, dir: &Path, manifest: &Manifest, segments: &SegmentSet) -> Option<Loaded> {
    let file = vfs.open(&path(dir), OpenMode::Read).ok()?;
    let len = usize::try_from(file.len().ok()?).ok()?;
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, 0).ok()?;
    match decode(&bytes, manifest, segments) {
        Ok(loaded) => Some(loaded),
        Err(reason) => {
            tracing::warn!(reason, "index snapshot not used; replaying the log");
            None
        }
    }
}

fn decode(bytes: &[u8], manifest: &Manifest, segments: &SegmentSet) -> Result<Loaded, String> {
    let Some((body, crc)) = bytes.strip_prefix(MAGIC.as_slice()).and_then(<[u8]>::split_last_chunk::<4>) else {
        return Err("not an index snapshot".into());
    };
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err("checksum mismatch".into());
    }
    let image: Image = postcard::from_bytes(body).map_err(|e| format!("does not decode: {e}"))?;
    let (segment, offset, frame_seq) = image.applied;
    let resume = if image.segments.is_empty() {
        (0, crate::format::SEGMENT_HEADER_LEN as u64)
    } else {
        let covered: Vec<u32> = image.segments.iter().map(|(seq, _)| *seq).collect();
        if !manifest.segments.starts_with(&covered) {
            return Err("stale: the log it covers has been compacted since".into());
        }
        let position = covered.len() - 1;
        if covered.last() != Some(&segment) {
            return Err("covered position is not in its last segment".into());
        }
        // A covered segment that changed size was damaged (or trimmed and refilled): scan.
        for (i, &(seq, len)) in image.segments.iter().enumerate() {
            let now = segments.get(seq).map_or(0, |s| s.file_len());
            let fits = if i == position { offset <= now } else { now == len };
            if !fits {
                return Err(format!("segment {seq} is {now} bytes, the snapshot saw {len}"));
            }
        }
        (position, offset)
    };
    let mut index = Index {
        runs: RunTable::from_names(image.runs.into_iter().map(|n| n.map(String::into_boxed_str)).collect()),
        max_checkpoint_id: image.max_checkpoint_id.map(CheckpointKey::from),
        usage: image.usage.into_iter().map(|(seq, records, live)| (seq, SegmentUsage { records, live })).collect(),
        applied: Applied { segment, offset, frame_seq },
        ..Index::default()
    };
    let mut threads = hashbrown::HashMap::with_capacity(image.threads.len());
    for (name, namespaces) in image.threads {
        let mut thread = ThreadIndex::default();
        for ns in namespaces {
            let namespace = NamespaceIndex {
                checkpoints: ns
                    .checkpoints
                    .into_iter()
                    .map(|(k, at, run)| {
                        (CheckpointKey::from(k), CheckpointSlot { loc: loc(at), run: NonZeroU32::new(run) })
                    })
                    .collect::<BTreeMap<_, _>>(),
                blobs: ns
                    .blobs
                    .into_iter()
                    .map(|(hash, at, refs, delta_refs, base)| (hash, BlobSlot { loc: loc(at), refs, delta_refs, base }))
                    .collect(),
                writes: ns
                    .writes
                    .into_iter()
                    .map(|(k, locs)| (CheckpointKey::from(k), locs.into_iter().map(loc).collect()))
                    .collect(),
            };
            thread.namespaces.insert(ns.name.into_boxed_str(), namespace);
        }
        threads.insert(name, thread);
    }
    index.threads = threads;
    // Count each run's checkpoints again (the image holds names, not counts).
    let runs: Vec<NonZeroU32> = index
        .threads
        .values()
        .flat_map(|t| t.namespaces.values())
        .flat_map(|n| n.checkpoints.values())
        .filter_map(|slot| slot.run)
        .collect();
    for run in runs {
        index.runs.retain(run);
    }
    index.runs.free_unused();
    Ok(Loaded { index, resume, last_frame_seq: frame_seq })
}
