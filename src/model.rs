//! The data model, mirroring LangGraph's checkpoint types.
//!
//! Values are opaque [`Blob`]s: the Python side serializes with its own serializer and the store
//! never looks inside. Channel versions keep their exact type so nothing changes on a round trip.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A JSON object: checkpoint metadata, and the metadata filter of [`ListQuery`].
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// Channel name → version.
pub type ChannelVersions = BTreeMap<String, ChannelVersion>;

/// The version of a channel. LangGraph uses zero-padded strings with a random suffix
/// (see [`crate::next_version`]); tests and other runtimes use plain integers or floats.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ChannelVersion {
    /// An integer version.
    Int(i64),
    /// A float version.
    Float(f64),
    /// A string version, e.g. `"00000000000000000000000000000003.0.4417930521"`.
    Str(String),
}

impl ChannelVersion {
    /// The integer part of the version: the int itself, the float truncated, or the part of a
    /// string before the first `.` parsed as an integer. `None` if a string does not parse.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "truncating a float version to its integer part is the documented behaviour (`as` saturates)"
    )]
    pub fn counter(&self) -> Option<i64> {
        match self {
            ChannelVersion::Int(n) => Some(*n),
            ChannelVersion::Float(f) => Some(*f as i64),
            ChannelVersion::Str(s) => s.split('.').next().and_then(|head| head.parse().ok()),
        }
    }
}

/// Exact equality: floats compare by bit pattern, so a version is always equal to itself and
/// `Eq`/`Hash` hold (blob keys are hashed).
impl PartialEq for ChannelVersion {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ChannelVersion::Int(a), ChannelVersion::Int(b)) => a == b,
            (ChannelVersion::Float(a), ChannelVersion::Float(b)) => a.to_bits() == b.to_bits(),
            (ChannelVersion::Str(a), ChannelVersion::Str(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for ChannelVersion {}

impl std::hash::Hash for ChannelVersion {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            ChannelVersion::Int(n) => (0u8, n).hash(state),
            ChannelVersion::Float(x) => (1u8, x.to_bits()).hash(state),
            ChannelVersion::Str(s) => (2u8, s).hash(state),
        }
    }
}

impl fmt::Display for ChannelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelVersion::Int(n) => write!(f, "{n}"),
            ChannelVersion::Float(x) => write!(f, "{x}"),
            ChannelVersion::Str(s) => f.write_str(s),
        }
    }
}

/// A serialized value: the serializer's type tag (`msgpack`, `json`, `bytes`, `null`, ...) and
/// its bytes. Opaque to the store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// The serializer's type tag.
    pub type_tag: String,
    /// The serialized bytes.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl Blob {
    /// A blob from a tag and bytes.
    pub fn new(type_tag: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Blob { type_tag: type_tag.into(), bytes: bytes.into() }
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({}, {} bytes)", self.type_tag, self.bytes.len())
    }
}

/// Addresses a thread, a namespace within it and optionally one checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Config {
    /// The thread (conversation, run history): the partition key.
    pub thread_id: String,
    /// `""` for the root graph; opaque strings for subgraphs.
    pub checkpoint_ns: String,
    /// One checkpoint; `None` means "the latest" for reads and "no parent" for `put`.
    pub checkpoint_id: Option<String>,
}

impl Config {
    /// The root namespace of a thread, no checkpoint id.
    pub fn thread(thread_id: impl Into<String>) -> Self {
        Config { thread_id: thread_id.into(), checkpoint_ns: String::new(), checkpoint_id: None }
    }

    /// The same config in namespace `ns`.
    pub fn with_ns(mut self, ns: impl Into<String>) -> Self {
        self.checkpoint_ns = ns.into();
        self
    }

    /// The same config pointing at checkpoint `id`.
    pub fn with_checkpoint(mut self, id: impl Into<String>) -> Self {
        self.checkpoint_id = Some(id.into());
        self
    }
}

/// A snapshot of a graph's state after one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version of the checkpoint, stored exactly as given.
    pub v: i64,
    /// Checkpoint id: a uuid6 string made by the caller; string order is creation order.
    pub id: String,
    /// ISO-8601 timestamp.
    pub ts: String,
    /// Channel values. On `put` only the channels named in `new_versions` are read from here.
    pub channel_values: BTreeMap<String, Blob>,
    /// The current version of every channel.
    pub channel_versions: ChannelVersions,
    /// Node → channel → the version that node last saw.
    pub versions_seen: BTreeMap<String, ChannelVersions>,
    /// Channels updated in the step that made this checkpoint.
    pub updated_channels: Option<Vec<String>>,
}

impl Checkpoint {
    /// An empty checkpoint with the given id (format version 4, like LangGraph's).
    pub fn empty(id: impl Into<String>) -> Self {
        Checkpoint {
            v: 4,
            id: id.into(),
            ts: String::new(),
            channel_values: BTreeMap::new(),
            channel_versions: BTreeMap::new(),
            versions_seen: BTreeMap::new(),
            updated_channels: None,
        }
    }
}

/// A write made by a task during a super-step, attached to the checkpoint the step started from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// The task that made the write.
    pub task_id: String,
    /// Position in the task's write list, or a fixed negative slot for special channels.
    pub idx: i64,
    /// The channel written.
    pub channel: String,
    /// The value written.
    pub value: Blob,
    /// The task's path (`""` if the caller gave none).
    pub task_path: String,
}

/// One checkpoint with everything a reader needs.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointTuple {
    /// Thread, namespace and the id of this checkpoint.
    pub config: Config,
    /// The checkpoint with its channel values.
    pub checkpoint: Checkpoint,
    /// Its metadata.
    pub metadata: Metadata,
    /// The parent checkpoint's config, if it has a parent.
    pub parent_config: Option<Config>,
    /// Pending writes, sorted by `(task_path, task_id, idx)`.
    pub pending_writes: Vec<PendingWrite>,
}

/// What [`crate::CheckpointSaver::list`] returns: newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListQuery {
    /// Only this thread; `None` lists all threads, merged by checkpoint id.
    pub thread_id: Option<String>,
    /// Only this namespace; `None` lists every namespace of the thread.
    pub checkpoint_ns: Option<String>,
    /// Only this checkpoint id.
    pub checkpoint_id: Option<String>,
    /// Every key must equal the metadata value (JSON equality; a dotted key is a path).
    pub filter: Metadata,
    /// Only checkpoints whose id is smaller than this one.
    pub before: Option<String>,
    /// At most this many results.
    pub limit: Option<usize>,
}

impl ListQuery {
    /// All threads, all namespaces.
    pub fn all() -> Self {
        ListQuery::default()
    }

    /// One thread, all namespaces.
    pub fn thread(thread_id: impl Into<String>) -> Self {
        ListQuery { thread_id: Some(thread_id.into()), ..ListQuery::default() }
    }

    /// The query a LangGraph config makes: thread, namespace and (if set) checkpoint id.
    pub fn config(config: &Config) -> Self {
        ListQuery {
            thread_id: Some(config.thread_id.clone()),
            checkpoint_ns: Some(config.checkpoint_ns.clone()),
            checkpoint_id: config.checkpoint_id.clone(),
            ..ListQuery::default()
        }
    }

    /// Restrict to one namespace.
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.checkpoint_ns = Some(ns.into());
        self
    }

    /// Only checkpoints older than `id`.
    pub fn before(mut self, id: impl Into<String>) -> Self {
        self.before = Some(id.into());
        self
    }

    /// At most `n` results.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Add a metadata filter term.
    pub fn filter(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.filter.insert(key.into(), value);
        self
    }
}

/// What one channel contributed along a checkpoint's ancestry, for LangGraph's delta channels
/// (`get_delta_channel_history`, beta in LangGraph).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeltaChannelHistory {
    /// The channel's pending writes at each ancestor, oldest ancestor first, each ancestor's in
    /// pending-write order.
    pub writes: Vec<PendingWrite>,
    /// The channel's stored value at the nearest ancestor that has one; `None` if the walk
    /// reached the root without finding one ("start empty").
    pub seed: Option<Blob>,
}

/// What `prune` keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneStrategy {
    /// Keep only the newest checkpoint of each namespace, with its writes and blobs.
    KeepLatest,
    /// Remove the threads entirely.
    Delete,
}

impl FromStr for PruneStrategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "keep_latest" => Ok(PruneStrategy::KeepLatest),
            "delete" => Ok(PruneStrategy::Delete),
            other => {
                Err(Error::invalid(format!("unknown prune strategy {other:?}; expected \"keep_latest\" or \"delete\"")))
            }
        }
    }
}
