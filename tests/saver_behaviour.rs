//! The LangGraph checkpoint-saver conformance cases, translated to Rust and run against both
//! savers: every case is a generic function over `&dyn CheckpointSaver`, and `saver_tests!`
//! instantiates it as one `#[test]` for [`MemorySaver`] and one for [`LogStore`] (each in a fresh
//! temporary directory that lives as long as the test).
//!
//! Semantics follow the protocol page (docs/langgraph-protocol.md) and LangGraph's
//! `InMemorySaver` plus the `langgraph-checkpoint-conformance` suite.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code: the cases are plain fns that `saver_tests!` turns into #[test]s, so clippy does not treat them as tests; a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use logsaver::{
    Blob, ChannelVersion, ChannelVersions, Checkpoint, CheckpointIdGenerator, CheckpointSaver, CheckpointTuple, Config,
    Error, ListQuery, LogStore, MemorySaver, Metadata, Options, PendingWrite, PruneStrategy,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Test harness
// ---------------------------------------------------------------------------------------------

/// A `LogStore` in a fresh temporary directory; the directory is removed after the store.
struct TempStore {
    store: LogStore,
    _dir: tempfile::TempDir,
}

impl TempStore {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // Small segments: the tests store a few KiB, no need to zero-fill 64 MiB each.
        let options = Options { segment_size: 1 << 20, ..Options::default() };
        let store = LogStore::open(dir.path(), options).expect("open LogStore");
        TempStore { store, _dir: dir }
    }
}

/// Instantiates every listed case once per saver, in modules `memory` and `log_store`.
macro_rules! saver_tests {
    (memory => $memory:expr, log_store => $log_store:expr; $($case:ident),+ $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[test]
                fn $case() {
                    let saver = $memory;
                    super::$case(&saver);
                }
            )+
        }
        mod log_store {
            use super::*;
            $(
                #[test]
                fn $case() {
                    let fixture = $log_store;
                    super::$case(&fixture.store);
                }
            )+
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One process-wide generator: every id handed out in this test binary is larger than the last.
static IDS: LazyLock<CheckpointIdGenerator> = LazyLock::new(|| CheckpointIdGenerator::new(None));

fn new_id() -> String {
    IDS.next_id()
}

fn new_ids(n: usize) -> Vec<String> {
    (0..n).map(|_| new_id()).collect()
}

fn blob(text: &str) -> Blob {
    Blob::new("json", text.as_bytes().to_vec())
}

fn meta(value: Value) -> Metadata {
    let Value::Object(map) = value else { panic!("metadata must be a JSON object") };
    map
}

fn int(n: i64) -> ChannelVersion {
    ChannelVersion::Int(n)
}

fn versions(pairs: &[(&str, i64)]) -> ChannelVersions {
    pairs.iter().map(|&(ch, v)| (ch.to_owned(), int(v))).collect()
}

/// A checkpoint (v = 1, like the conformance suite) with `(channel, value, int version)` triples.
fn cp(id: &str, channels: &[(&str, &str, i64)]) -> Checkpoint {
    let mut c = Checkpoint::empty(id);
    c.v = 1;
    c.ts = "2024-07-01T10:00:00.000000+00:00".to_owned();
    for &(channel, value, version) in channels {
        c.channel_values.insert(channel.to_owned(), blob(value));
        c.channel_versions.insert(channel.to_owned(), int(version));
    }
    c
}

/// `put` with every channel of the checkpoint in `new_versions`.
fn put(s: &dyn CheckpointSaver, config: &Config, c: &Checkpoint, metadata: Value) -> Config {
    s.put(config, c, &meta(metadata), &c.channel_versions.clone()).expect("put")
}

/// `put` with explicit `new_versions`.
fn put_nv(s: &dyn CheckpointSaver, config: &Config, c: &Checkpoint, metadata: Value, nv: &[(&str, i64)]) -> Config {
    s.put(config, c, &meta(metadata), &versions(nv)).expect("put")
}

/// `n` chained checkpoints in (thread, ns): metadata `{source: "loop", step: i}`, channel
/// `step` = `"i"` at version i + 1. Returns the ids, oldest first.
fn chain(s: &dyn CheckpointSaver, thread: &str, ns: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut config = Config::thread(thread).with_ns(ns);
    for i in 0..n {
        let id = new_id();
        let c = cp(&id, &[("step", &i.to_string(), i as i64 + 1)]);
        config = put(s, &config, &c, json!({"source": "loop", "step": i, "parents": {}}));
        ids.push(id);
    }
    ids
}

fn at(thread: &str, ns: &str, id: &str) -> Config {
    Config::thread(thread).with_ns(ns).with_checkpoint(id)
}

fn get(s: &dyn CheckpointSaver, config: &Config) -> CheckpointTuple {
    s.get_tuple(config).expect("get_tuple").unwrap_or_else(|| panic!("no checkpoint for {config:?}"))
}

fn list(s: &dyn CheckpointSaver, query: &ListQuery) -> Vec<CheckpointTuple> {
    s.list(query).expect("list")
}

fn list_ids(s: &dyn CheckpointSaver, query: &ListQuery) -> Vec<String> {
    list(s, query).into_iter().map(|t| t.checkpoint.id).collect()
}

fn rev(ids: &[String]) -> Vec<String> {
    ids.iter().rev().cloned().collect()
}

fn w(channel: &str, value: &str) -> (String, Blob) {
    (channel.to_owned(), blob(value))
}

fn put_writes(s: &dyn CheckpointSaver, config: &Config, writes: &[(String, Blob)], task_id: &str, task_path: &str) {
    s.put_writes(config, writes, task_id, task_path).expect("put_writes");
}

/// Channel values as text.
fn values(t: &CheckpointTuple) -> BTreeMap<String, String> {
    t.checkpoint
        .channel_values
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8(v.bytes.clone()).expect("utf8")))
        .collect()
}

fn value_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// Pending writes as `(task_path, task_id, idx, channel, value)`.
fn writes_of(t: &CheckpointTuple) -> Vec<(String, String, i64, String, String)> {
    t.pending_writes
        .iter()
        .map(|pw| {
            (
                pw.task_path.clone(),
                pw.task_id.clone(),
                pw.idx,
                pw.channel.clone(),
                String::from_utf8(pw.value.bytes.clone()).expect("utf8"),
            )
        })
        .collect()
}

fn pw(task_path: &str, task_id: &str, idx: i64, channel: &str, value: &str) -> (String, String, i64, String, String) {
    (task_path.to_owned(), task_id.to_owned(), idx, channel.to_owned(), value.to_owned())
}

fn assert_invalid<T: std::fmt::Debug>(result: logsaver::Result<T>, what: &str) {
    match result {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("{what}: expected Err(InvalidArgument), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// put
// ---------------------------------------------------------------------------------------------

fn put_returns_config_with_thread_ns_and_id(s: &dyn CheckpointSaver) {
    let (id, parent) = (new_id(), new_id());
    let c = cp(&id, &[("k", "\"v\"", 1)]);
    let returned = put(s, &Config::thread("t1"), &c, json!({"source": "input", "step": -1}));
    assert_eq!(returned, Config { thread_id: "t1".into(), checkpoint_ns: "".into(), checkpoint_id: Some(id.clone()) });

    // In a namespace, with a parent id in the incoming config: the returned id is the new one.
    let c2 = cp(&parent, &[("k", "\"w\"", 2)]);
    let returned = put(s, &at("t1", "child:abc", &id), &c2, json!({}));
    assert_eq!(returned, at("t1", "child:abc", &parent));
}

fn put_round_trips_all_fields_v1(s: &dyn CheckpointSaver) {
    let id = new_id();
    let mut c = cp(&id, &[]);
    c.v = 1;
    c.ts = "2024-05-01T12:34:56.789012+00:00".into();
    c.channel_values.insert("msg".into(), Blob::new("msgpack", vec![0xa5, b'h', b'e', b'l', b'l', b'o']));
    c.channel_values.insert("raw".into(), Blob::new("bytes", vec![0, 255, 1, 254]));
    c.channel_values.insert("list".into(), Blob::new("json", b"[1,2,3]".to_vec()));
    c.channel_versions = versions(&[("msg", 1), ("raw", 1), ("list", 1)]);
    c.versions_seen.insert("node1".into(), versions(&[("msg", 1)]));
    c.versions_seen.insert("node2".into(), versions(&[("msg", 1), ("raw", 1)]));
    c.versions_seen.insert("__input__".into(), ChannelVersions::new());
    c.updated_channels = Some(vec!["msg".into(), "raw".into()]);
    put(s, &Config::thread("t"), &c, json!({"source": "loop", "step": 0}));

    let got = get(s, &at("t", "", &id));
    assert_eq!(got.checkpoint, c, "every checkpoint field round-trips exactly");
    assert_eq!(got.checkpoint.v, 1, "v is stored as given, not normalised");
    assert_eq!(got.config, at("t", "", &id));
}

fn put_round_trips_v4_without_updated_channels(s: &dyn CheckpointSaver) {
    let id = new_id();
    let mut c = cp(&id, &[("messages", "[\"hi\"]", 1)]);
    c.v = 4;
    c.updated_channels = None;
    c.ts = "2025-01-02T03:04:05+00:00".into();
    put(s, &Config::thread("t"), &c, json!({}));
    let got = get(s, &Config::thread("t"));
    assert_eq!(got.checkpoint.v, 4);
    assert_eq!(got.checkpoint.updated_channels, None);
    assert_eq!(got.checkpoint.ts, "2025-01-02T03:04:05+00:00");
    assert_eq!(got.checkpoint, c);

    // An empty-but-present list stays Some(vec![]), distinct from None.
    let id2 = new_id();
    let mut c2 = cp(&id2, &[]);
    c2.v = 4;
    c2.updated_channels = Some(vec![]);
    put(s, &at("t", "", &id), &c2, json!({}));
    assert_eq!(get(s, &at("t", "", &id2)).checkpoint.updated_channels, Some(vec![]));
}

fn put_channel_versions_keep_their_exact_type(s: &dyn CheckpointSaver) {
    let id = new_id();
    let long = "00000000000000000000000000000002.0.7405195623349523".to_owned();
    let mut c = cp(&id, &[]);
    c.channel_values.insert("i".into(), blob("\"int\""));
    c.channel_values.insert("f".into(), blob("\"float\""));
    c.channel_values.insert("s".into(), blob("\"str\""));
    c.channel_versions.insert("i".into(), ChannelVersion::Int(3));
    c.channel_versions.insert("f".into(), ChannelVersion::Float(2.5));
    c.channel_versions.insert("s".into(), ChannelVersion::Str(long.clone()));
    let mut seen = ChannelVersions::new();
    seen.insert("i".into(), ChannelVersion::Int(2));
    seen.insert("f".into(), ChannelVersion::Float(1.0));
    seen.insert("s".into(), ChannelVersion::Str("1".into()));
    c.versions_seen.insert("node".into(), seen.clone());
    put(s, &Config::thread("t"), &c, json!({}));

    let got = get(s, &Config::thread("t"));
    assert_eq!(got.checkpoint.channel_versions["i"], ChannelVersion::Int(3));
    assert_eq!(got.checkpoint.channel_versions["f"], ChannelVersion::Float(2.5));
    assert_eq!(got.checkpoint.channel_versions["s"], ChannelVersion::Str(long));
    assert!(
        matches!(got.checkpoint.versions_seen["node"]["f"], ChannelVersion::Float(x) if x == 1.0),
        "Float stays Float"
    );
    assert!(matches!(&got.checkpoint.versions_seen["node"]["s"], ChannelVersion::Str(x) if x == "1"), "Str stays Str");
    assert_eq!(got.checkpoint.versions_seen["node"], seen);
    assert_eq!(values(&got), value_map(&[("i", "\"int\""), ("f", "\"float\""), ("s", "\"str\"")]));
}

fn put_parent_config_comes_from_config_checkpoint_id(s: &dyn CheckpointSaver) {
    let ids = new_ids(3);
    put(s, &Config::thread("t"), &cp(&ids[0], &[]), json!({}));
    put(s, &at("t", "", &ids[0]), &cp(&ids[1], &[]), json!({}));
    assert_eq!(get(s, &at("t", "", &ids[0])).parent_config, None, "no checkpoint_id in config: no parent");
    assert_eq!(get(s, &at("t", "", &ids[1])).parent_config, Some(at("t", "", &ids[0])));

    // In a namespace the parent config carries that namespace.
    put(s, &at("t", "sub:1", &ids[1]), &cp(&ids[2], &[]), json!({}));
    assert_eq!(get(s, &at("t", "sub:1", &ids[2])).parent_config, Some(at("t", "sub:1", &ids[1])));
}

fn put_stores_only_channels_in_new_versions(s: &dyn CheckpointSaver) {
    let ids = new_ids(3);
    // cp1: a and b at version 1, both new.
    put(s, &Config::thread("t"), &cp(&ids[0], &[("a", "a1", 1), ("b", "b1", 1)]), json!({}));
    // cp2: a moves to version 2; b is unchanged (still version 1, not in new_versions). The value
    // passed for b is ignored: b is found through its version, from cp1's put.
    let c2 = cp(&ids[1], &[("a", "a2", 2), ("b", "ignored", 1)]);
    put_nv(s, &at("t", "", &ids[0]), &c2, json!({}), &[("a", 2)]);
    // cp3: a new channel c appears; a and b are carried over.
    let mut c3 = cp(&ids[2], &[("a", "a2", 2), ("b", "b1", 1), ("c", "c1", 1)]);
    c3.channel_values.remove("a");
    c3.channel_values.remove("b");
    put_nv(s, &at("t", "", &ids[1]), &c3, json!({}), &[("c", 1)]);

    assert_eq!(values(&get(s, &at("t", "", &ids[0]))), value_map(&[("a", "a1"), ("b", "b1")]), "cp1 unchanged");
    assert_eq!(values(&get(s, &at("t", "", &ids[1]))), value_map(&[("a", "a2"), ("b", "b1")]));
    assert_eq!(values(&get(s, &at("t", "", &ids[2]))), value_map(&[("a", "a2"), ("b", "b1"), ("c", "c1")]));

    // A value whose version is in neither new_versions nor any earlier put is not found.
    let id = new_id();
    put_nv(s, &Config::thread("t2"), &cp(&id, &[("x", "x1", 1)]), json!({}), &[]);
    assert_eq!(values(&get(s, &Config::thread("t2"))), BTreeMap::new());
}

fn put_new_version_without_value_is_empty_sentinel(s: &dyn CheckpointSaver) {
    let id = new_id();
    let mut c = cp(&id, &[("a", "a1", 1), ("b", "b1", 1)]);
    c.channel_values.remove("b");
    put(s, &Config::thread("t"), &c, json!({}));
    let got = get(s, &Config::thread("t"));
    assert_eq!(values(&got), value_map(&[("a", "a1")]), "b was stored as the empty sentinel and is skipped");
    assert_eq!(got.checkpoint.channel_versions, versions(&[("a", 1), ("b", 1)]), "b keeps its version");
}

fn put_channel_missing_from_channel_versions_is_not_loaded(s: &dyn CheckpointSaver) {
    let ids = new_ids(2);
    // b has a value and is in new_versions, but not in channel_versions: it must not appear.
    let mut c = cp(&ids[0], &[("a", "a1", 1)]);
    c.channel_values.insert("b".into(), blob("b1"));
    put_nv(s, &Config::thread("t"), &c, json!({}), &[("a", 1), ("b", 1)]);
    assert_eq!(values(&get(s, &at("t", "", &ids[0]))), value_map(&[("a", "a1")]));

    // A channel dropped from channel_versions by a later checkpoint disappears there.
    let t = "t-removed";
    put(s, &Config::thread(t), &cp(&ids[0], &[("a", "a1", 1), ("b", "b1", 1)]), json!({}));
    put_nv(s, &at(t, "", &ids[0]), &cp(&ids[1], &[("a", "a2", 2)]), json!({}), &[("a", 2)]);
    let got = get(s, &Config::thread(t));
    assert_eq!(got.checkpoint.id, ids[1]);
    assert_eq!(values(&got), value_map(&[("a", "a2")]));
    assert!(!got.checkpoint.channel_values.contains_key("b"));
}

fn put_same_id_upserts_checkpoint_metadata_and_parent(s: &dyn CheckpointSaver) {
    let (parent, id) = (new_id(), new_id());
    put(s, &Config::thread("t"), &cp(&parent, &[]), json!({"step": 0}));
    put(s, &Config::thread("t"), &cp(&id, &[("a", "a1", 1)]), json!({"source": "loop", "step": 1, "old": true}));
    put_writes(s, &at("t", "", &id), &[w("ch", "val")], "task", "");

    let mut again = cp(&id, &[("a", "a2", 2)]);
    again.ts = "2030-01-01T00:00:00+00:00".into();
    put(s, &at("t", "", &parent), &again, json!({"source": "update", "step": 2}));

    let got = get(s, &at("t", "", &id));
    assert_eq!(got.metadata, meta(json!({"source": "update", "step": 2})), "metadata replaced, old keys gone");
    assert_eq!(got.checkpoint.ts, "2030-01-01T00:00:00+00:00");
    assert_eq!(values(&got), value_map(&[("a", "a2")]));
    assert_eq!(got.parent_config, Some(at("t", "", &parent)), "parent replaced");
    assert_eq!(writes_of(&got), vec![pw("", "task", 0, "ch", "val")], "existing writes are kept");
    assert_eq!(list_ids(s, &ListQuery::thread("t")), vec![id.clone(), parent.clone()], "no duplicate entry");
}

fn put_metadata_round_trips_nested_json(s: &dyn CheckpointSaver) {
    let metadata = json!({
        "source": "loop",
        "step": 3,
        "parents": {"": "1f0-parent", "sub:1": "1f0-other"},
        "run_id": "run-42",
        "score": 0.25,
        "flag": false,
        "nothing": null,
        "custom": {"list": [1, 2.5, "x", null, true, {"k": []}], "deep": {"a": {"b": {"c": "d"}}}},
        "unicode": "héllo ✓ \"quoted\"",
    });
    let id = new_id();
    put(s, &Config::thread("t"), &cp(&id, &[]), metadata.clone());
    assert_eq!(Value::Object(get(s, &Config::thread("t")).metadata), metadata);
    let listed = list(s, &ListQuery::thread("t"));
    assert_eq!(listed.len(), 1);
    assert_eq!(Value::Object(listed[0].metadata.clone()), metadata);
}

fn put_namespaces_are_independent(s: &dyn CheckpointSaver) {
    let (root, child) = (new_id(), new_id());
    // Same thread, same channel and version in two namespaces: values must not mix.
    put(s, &Config::thread("t"), &cp(&root, &[("a", "root", 1)]), json!({"ns": "root"}));
    put(s, &Config::thread("t").with_ns("child:abc"), &cp(&child, &[("a", "child", 1)]), json!({"ns": "child"}));

    let r = get(s, &Config::thread("t"));
    assert_eq!((r.checkpoint.id.as_str(), r.config.checkpoint_ns.as_str()), (root.as_str(), ""));
    assert_eq!(values(&r), value_map(&[("a", "root")]));
    let c = get(s, &Config::thread("t").with_ns("child:abc"));
    assert_eq!((c.checkpoint.id.as_str(), c.config.checkpoint_ns.as_str()), (child.as_str(), "child:abc"));
    assert_eq!(values(&c), value_map(&[("a", "child")]));
    assert_eq!(c.metadata, meta(json!({"ns": "child"})));
}

fn put_empty_thread_id_is_invalid_argument(s: &dyn CheckpointSaver) {
    let id = new_id();
    assert_invalid(s.put(&Config::thread(""), &cp(&id, &[]), &Metadata::new(), &ChannelVersions::new()), "put");
    assert!(list(s, &ListQuery::all()).is_empty(), "nothing stored");
}

// ---------------------------------------------------------------------------------------------
// put_writes
// ---------------------------------------------------------------------------------------------

fn put_writes_sorted_by_task_path_task_id_idx(s: &dyn CheckpointSaver) {
    let id = new_id();
    put(s, &Config::thread("t"), &cp(&id, &[]), json!({}));
    let config = at("t", "", &id);
    put_writes(s, &config, &[w("x", "x")], "t2", "b");
    put_writes(s, &config, &[w("y", "y"), w("z", "z")], "t1", "b");
    put_writes(s, &config, &[w("u", "u")], "t9", "");
    put_writes(s, &config, &[w("v", "v")], "t0", "c");
    put_writes(s, &config, &[w("q", "q")], "t3", "a");
    assert_eq!(
        writes_of(&get(s, &config)),
        vec![
            pw("", "t9", 0, "u", "u"),
            pw("a", "t3", 0, "q", "q"),
            pw("b", "t1", 0, "y", "y"),
            pw("b", "t1", 1, "z", "z"),
            pw("b", "t2", 0, "x", "x"),
            pw("c", "t0", 0, "v", "v"),
        ]
    );
}

fn put_writes_idx_is_position_in_list(s: &dyn CheckpointSaver) {
    let id = new_id();
    put(s, &Config::thread("t"), &cp(&id, &[]), json!({}));
    let config = at("t", "", &id);
    put_writes(s, &config, &[w("c3", "v0"), w("c1", "v1"), w("c2", "v2"), w("c1", "v3")], "task", "");
    let got = get(s, &config);
    assert_eq!(
        writes_of(&got),
        vec![
            pw("", "task", 0, "c3", "v0"),
            pw("", "task", 1, "c1", "v1"),
            pw("", "task", 2, "c2", "v2"),
            pw("", "task", 3, "c1", "v3")
        ]
    );
    assert_eq!(got.pending_writes[2].value, blob("v2"));
}

fn put_writes_special_channels_take_fixed_slots(s: &dyn CheckpointSaver) {
    let id = new_id();
    put(s, &Config::thread("t"), &cp(&id, &[]), json!({}));
    let config = at("t", "", &id);
    put_writes(
        s,
        &config,
        &[
            w("messages", "m"),
            w("__error__", "err"),
            w("__scheduled__", "sched"),
            w("__interrupt__", "{\"value\": 1}"),
            w("__resume__", "res"),
            w("other", "o"),
        ],
        "task",
        "",
    );
    assert_eq!(
        writes_of(&get(s, &config)),
        vec![
            pw("", "task", -4, "__resume__", "res"),
            pw("", "task", -3, "__interrupt__", "{\"value\": 1}"),
            pw("", "task", -2, "__scheduled__", "sched"),
            pw("", "task", -1, "__error__", "err"),
            pw("", "task", 0, "messages", "m"),
            pw("", "task", 5, "other", "o"),
        ]
    );
}

fn put_writes_regular_repeat_keeps_first_value(s: &dyn CheckpointSaver) {
    let id = new_id();
    put(s, &Config::thread("t"), &cp(&id, &[]), json!({}));
    let config = at("t", "", &id);
    put_writes(s, &config, &[w("ch", "val")], "task", "");
    put_writes(s, &config, &[w("ch", "val")], "task", "");
    assert_eq!(writes_of(&get(s, &config)), vec![pw("", "task", 0, "ch", "val")], "identical repeat is idempotent");

    put_writes(s, &config, &[w("ch", "second"), w("ch2", "new")], "task", "");
    assert_eq!(
        writes_of(&get(s, &config)),
        vec![pw("", "task", 0, "ch", "val"), pw("", "task", 1, "ch2", "new")],
        "slot 0 keeps its first value; slot 1 was free"
    );
    // Same slot, another task: a separate write.
    put_writes(s, &config, &[w("ch", "other-task")], "task2", "");
    assert_eq!(get(s, &config).pending_writes.len(), 3);
}

fn put_writes_special_write_overwrites(s: &dyn CheckpointSaver) {
    let id = new_id();
    put(s, &Config::thread("t"), &cp(&id, &[]), json!({}));
    let config = at("t", "", &id);
    put_writes(s, &config, &[w("__error__", "e1")], "task", "");
    put_writes(s, &config, &[w("__error__", "e2")], "task", "");
    assert_eq!(writes_of(&get(s, &config)), vec![pw("", "task", -1, "__error__", "e2")]);

    // Mixed batches: decided per write, so the special one overwrites, the regular one does not.
    put_writes(s, &config, &[w("ch", "v1"), w("__interrupt__", "i1")], "task", "");
    put_writes(s, &config, &[w("ch", "v2"), w("__interrupt__", "i2")], "task", "");
    assert_eq!(
        writes_of(&get(s, &config)),
        vec![
            pw("", "task", -3, "__interrupt__", "i2"),
            pw("", "task", -1, "__error__", "e2"),
            pw("", "task", 0, "ch", "v1")
        ]
    );
}

fn put_writes_before_put_are_visible_after_put(s: &dyn CheckpointSaver) {
    let (root, child) = (new_id(), new_id());
    put_writes(s, &at("t", "", &root), &[w("ch", "early")], "task", "p");
    put_writes(s, &at("t", "sub:1", &child), &[w("ch", "early-sub")], "task", "");
    assert_eq!(s.get_tuple(&at("t", "", &root)).unwrap(), None, "writes alone do not make a checkpoint");
    assert!(list(s, &ListQuery::thread("t")).is_empty(), "writes alone do not list");

    put(s, &Config::thread("t"), &cp(&root, &[]), json!({}));
    put(s, &Config::thread("t").with_ns("sub:1"), &cp(&child, &[]), json!({}));
    assert_eq!(writes_of(&get(s, &at("t", "", &root))), vec![pw("p", "task", 0, "ch", "early")]);
    assert_eq!(writes_of(&get(s, &at("t", "sub:1", &child))), vec![pw("", "task", 0, "ch", "early-sub")]);
}

fn put_writes_stores_task_path(s: &dyn CheckpointSaver) {
    let id = new_id();
    put(s, &Config::thread("t"), &cp(&id, &[]), json!({}));
    let config = at("t", "", &id);
    let path = "~__pregel_pull, agent|~__pregel_push, 0";
    put_writes(s, &config, &[w("ch", "val")], "task", path);
    let got = get(s, &config);
    assert_eq!(
        got.pending_writes,
        vec![PendingWrite {
            task_id: "task".into(),
            idx: 0,
            channel: "ch".into(),
            value: blob("val"),
            task_path: path.into()
        }]
    );
}

fn put_writes_without_checkpoint_id_is_invalid_argument(s: &dyn CheckpointSaver) {
    let id = new_id();
    put(s, &Config::thread("t"), &cp(&id, &[]), json!({}));
    assert_invalid(s.put_writes(&Config::thread("t"), &[w("ch", "v")], "task", ""), "no checkpoint_id");
    assert_invalid(
        s.put_writes(&Config::thread("t").with_checkpoint(""), &[w("ch", "v")], "task", ""),
        "empty checkpoint_id",
    );
    assert!(get(s, &Config::thread("t")).pending_writes.is_empty(), "nothing was written");
}

fn put_writes_belong_to_one_checkpoint(s: &dyn CheckpointSaver) {
    let ids = new_ids(2);
    put(s, &Config::thread("t"), &cp(&ids[0], &[]), json!({}));
    put_writes(s, &at("t", "", &ids[0]), &[w("ch", "on-first")], "task", "");
    put(s, &at("t", "", &ids[0]), &cp(&ids[1], &[]), json!({}));
    assert!(get(s, &at("t", "", &ids[1])).pending_writes.is_empty(), "the child does not see its parent's writes");
    assert_eq!(writes_of(&get(s, &at("t", "", &ids[0]))), vec![pw("", "task", 0, "ch", "on-first")]);

    // Same checkpoint id in another namespace and another thread: separate.
    put(s, &Config::thread("t").with_ns("child:1"), &cp(&ids[0], &[]), json!({}));
    put(s, &Config::thread("u"), &cp(&ids[0], &[]), json!({}));
    assert!(get(s, &at("t", "child:1", &ids[0])).pending_writes.is_empty());
    assert!(get(s, &at("u", "", &ids[0])).pending_writes.is_empty());
    put_writes(s, &at("t", "child:1", &ids[0]), &[w("ch", "on-child")], "task", "");
    assert_eq!(writes_of(&get(s, &at("t", "child:1", &ids[0]))), vec![pw("", "task", 0, "ch", "on-child")]);
    assert_eq!(writes_of(&get(s, &at("t", "", &ids[0]))), vec![pw("", "task", 0, "ch", "on-first")]);
}

// ---------------------------------------------------------------------------------------------
// get_tuple
// ---------------------------------------------------------------------------------------------

fn get_tuple_without_id_returns_max_id(s: &dyn CheckpointSaver) {
    let ids = new_ids(3);
    // Put out of id order: "latest" is the largest id, not the last put.
    put(s, &Config::thread("t"), &cp(&ids[1], &[]), json!({"step": 1}));
    put(s, &Config::thread("t"), &cp(&ids[2], &[]), json!({"step": 2}));
    put(s, &Config::thread("t"), &cp(&ids[0], &[]), json!({"step": 0}));
    let got = get(s, &Config::thread("t"));
    assert_eq!(got.checkpoint.id, ids[2]);
    assert_eq!(got.metadata["step"], json!(2));
    assert_eq!(got.config, at("t", "", &ids[2]));
}

fn get_tuple_with_id_returns_that_checkpoint(s: &dyn CheckpointSaver) {
    let ids = chain(s, "t", "", 3);
    let got = get(s, &at("t", "", &ids[0]));
    assert_eq!(got.checkpoint.id, ids[0]);
    assert_eq!(got.config, at("t", "", &ids[0]));
    assert_eq!(got.metadata, meta(json!({"source": "loop", "step": 0, "parents": {}})));
    assert_eq!(values(&got), value_map(&[("step", "0")]));
    let mid = get(s, &at("t", "", &ids[1]));
    assert_eq!((mid.checkpoint.id.as_str(), mid.metadata["step"].clone()), (ids[1].as_str(), json!(1)));
    assert_eq!(mid.parent_config, Some(at("t", "", &ids[0])));
}

fn get_tuple_missing_id_or_thread_is_none(s: &dyn CheckpointSaver) {
    let ids = chain(s, "t", "", 2);
    let missing = new_id();
    assert_eq!(s.get_tuple(&at("t", "", &missing)).unwrap(), None, "unknown id in a known thread");
    assert_eq!(s.get_tuple(&Config::thread("nope")).unwrap(), None, "unknown thread, latest");
    assert_eq!(s.get_tuple(&at("nope", "", &ids[0])).unwrap(), None, "unknown thread, known id");
    assert_eq!(s.get_tuple(&Config::thread("t").with_ns("missing-ns")).unwrap(), None, "unknown namespace");
}

fn get_tuple_respects_namespace(s: &dyn CheckpointSaver) {
    let (root, inner) = (new_id(), new_id());
    put(s, &Config::thread("t"), &cp(&root, &[]), json!({"where": "root"}));
    put(s, &Config::thread("t").with_ns("inner:1"), &cp(&inner, &[]), json!({"where": "inner"}));

    // Config::thread has the default namespace "": the root one, even though `inner` is newer.
    let got = get(s, &Config::thread("t"));
    assert_eq!((got.checkpoint.id.as_str(), got.config.checkpoint_ns.as_str()), (root.as_str(), ""));
    let got = get(s, &Config::thread("t").with_ns("inner:1"));
    assert_eq!((got.checkpoint.id.as_str(), got.config.checkpoint_ns.as_str()), (inner.as_str(), "inner:1"));
    assert_eq!(got.metadata["where"], json!("inner"));
    assert_eq!(s.get_tuple(&at("t", "inner:1", &root)).unwrap(), None, "root id is not in inner:1");
    assert_eq!(s.get_tuple(&at("t", "", &inner)).unwrap(), None, "inner id is not in the root namespace");
}

fn get_tuple_attaches_pending_writes(s: &dyn CheckpointSaver) {
    let ids = chain(s, "t", "", 2);
    put_writes(s, &at("t", "", &ids[1]), &[w("ch", "val")], "task-1", "");
    let got = get(s, &Config::thread("t"));
    assert_eq!(
        got.pending_writes,
        vec![PendingWrite {
            task_id: "task-1".into(),
            idx: 0,
            channel: "ch".into(),
            value: blob("val"),
            task_path: "".into()
        }]
    );
    assert!(get(s, &at("t", "", &ids[0])).pending_writes.is_empty());
}

// ---------------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------------

fn list_newest_first_filtered_by_thread(s: &dyn CheckpointSaver) {
    let ids = chain(s, "t", "", 4);
    let other = chain(s, "other", "", 2);
    assert_eq!(list_ids(s, &ListQuery::thread("t")), rev(&ids));
    assert_eq!(list_ids(s, &ListQuery::config(&Config::thread("t"))), rev(&ids));
    assert_eq!(list_ids(s, &ListQuery::thread("other")), rev(&other));
    assert!(list(s, &ListQuery::thread("unknown")).is_empty());
    let listed = list(s, &ListQuery::thread("t"));
    assert!(
        listed
            .iter()
            .all(|t| t.config.thread_id == "t" && t.config.checkpoint_id.as_deref() == Some(t.checkpoint.id.as_str()))
    );
    assert_eq!(listed[0].parent_config, Some(at("t", "", &ids[2])));
    assert_eq!(listed[3].parent_config, None);
    assert_eq!(values(&listed[1]), value_map(&[("step", "2")]), "list loads channel values too");
}

fn list_namespace_root_only_vs_all(s: &dyn CheckpointSaver) {
    let root = chain(s, "t", "", 2);
    let c1 = chain(s, "t", "child:1", 1);
    let c2 = chain(s, "t", "child:2", 1);
    let mut all: Vec<String> = root.iter().chain(&c1).chain(&c2).cloned().collect();
    all.sort();
    all.reverse();

    assert_eq!(list_ids(s, &ListQuery::thread("t").namespace("")), rev(&root), "Some(\"\"): root only");
    assert_eq!(list_ids(s, &ListQuery::config(&Config::thread("t"))), rev(&root), "a config lists its namespace");
    assert_eq!(list_ids(s, &ListQuery::thread("t")), all, "None: every namespace, newest first");
    assert_eq!(list_ids(s, &ListQuery::thread("t").namespace("child:1")), c1);
    let child2 = list(s, &ListQuery::thread("t").namespace("child:2"));
    assert_eq!(child2.len(), 1);
    assert_eq!(child2[0].config, at("t", "child:2", &c2[0]));
    assert!(list(s, &ListQuery::thread("t").namespace("child:3")).is_empty());
}

fn list_checkpoint_id_is_equality(s: &dyn CheckpointSaver) {
    let ids = chain(s, "t", "", 3);
    assert_eq!(list_ids(s, &ListQuery::config(&at("t", "", &ids[1]))), vec![ids[1].clone()]);
    assert!(list(s, &ListQuery::config(&at("t", "", &new_id()))).is_empty());
    assert!(list(s, &ListQuery::config(&at("t", "other-ns", &ids[1]))).is_empty());
}

fn list_before_is_strictly_older(s: &dyn CheckpointSaver) {
    let ids = chain(s, "t", "", 4);
    assert_eq!(list_ids(s, &ListQuery::thread("t").before(&ids[2])), vec![ids[1].clone(), ids[0].clone()]);
    assert!(list(s, &ListQuery::thread("t").before(&ids[0])).is_empty());
    assert_eq!(list_ids(s, &ListQuery::thread("t").before(new_id())), rev(&ids), "a later id keeps everything");
}

fn list_limit(s: &dyn CheckpointSaver) {
    let ids = chain(s, "t", "", 4);
    assert_eq!(list_ids(s, &ListQuery::thread("t").limit(1)), vec![ids[3].clone()]);
    assert_eq!(list_ids(s, &ListQuery::thread("t").limit(2)), vec![ids[3].clone(), ids[2].clone()]);
    assert_eq!(list_ids(s, &ListQuery::thread("t").limit(10)), rev(&ids));
    assert!(list(s, &ListQuery::thread("t").limit(0)).is_empty(), "limit 0 yields nothing");
    assert!(list(s, &ListQuery::all().limit(0)).is_empty(), "limit 0 yields nothing, all threads");
}

fn list_before_with_limit_one_returns_the_previous(s: &dyn CheckpointSaver) {
    let ids = chain(s, "t", "", 4);
    assert_eq!(list_ids(s, &ListQuery::thread("t").before(&ids[3]).limit(1)), vec![ids[2].clone()]);
    assert_eq!(list_ids(s, &ListQuery::thread("t").before(&ids[1]).limit(1)), vec![ids[0].clone()]);
}

fn list_metadata_filter(s: &dyn CheckpointSaver) {
    let ids = new_ids(4);
    let metas = [
        json!({"source": "input", "step": 0, "parents": {}}),
        json!({"source": "loop", "step": 1, "parents": {}, "user": {"name": "ann", "tags": ["a", "b"]}}),
        json!({"source": "input", "step": 2, "parents": {}, "score": null}),
        json!({"source": "loop", "step": 3, "parents": {}, "user": {"name": "bob", "tags": []}}),
    ];
    let mut config = Config::thread("t");
    for (id, m) in ids.iter().zip(&metas) {
        config = put(s, &config, &cp(id, &[]), m.clone());
    }
    let q = || ListQuery::thread("t");
    assert_eq!(list_ids(s, &q().filter("source", json!("input"))), vec![ids[2].clone(), ids[0].clone()]);
    assert_eq!(list_ids(s, &q().filter("step", json!(1))), vec![ids[1].clone()]);
    assert_eq!(
        list_ids(s, &q().filter("source", json!("input")).filter("step", json!(2))),
        vec![ids[2].clone()],
        "all keys must match"
    );
    assert!(list(s, &q().filter("source", json!("input")).filter("step", json!(1))).is_empty());
    assert!(list(s, &q().filter("source", json!("update")).filter("step", json!(99))).is_empty());
    assert!(list(s, &q().filter("step", json!("1"))).is_empty(), "JSON equality: a string is not a number");
    // Nested values: deep equality (object key order does not matter, list order does).
    assert_eq!(list_ids(s, &q().filter("user", json!({"name": "ann", "tags": ["a", "b"]}))), vec![ids[1].clone()]);
    assert_eq!(list_ids(s, &q().filter("user", json!({"tags": ["a", "b"], "name": "ann"}))), vec![ids[1].clone()]);
    assert!(list(s, &q().filter("user", json!({"name": "ann", "tags": ["b", "a"]}))).is_empty());
    assert!(list(s, &q().filter("user", json!({"name": "ann"}))).is_empty(), "a partial object does not match");
    // A missing key does not match a non-null value.
    assert!(list(s, &q().filter("missing", json!(1))).is_empty());
    assert!(list(s, &q().filter("score", json!(0))).is_empty());
    // An empty filter matches everything; filter and limit combine (limit counts matches).
    assert_eq!(list_ids(s, &q()), rev(&ids));
    assert_eq!(list_ids(s, &q().filter("source", json!("loop")).limit(1)), vec![ids[3].clone()]);
}

fn list_all_threads_ordered_by_id_desc(s: &dyn CheckpointSaver) {
    // Interleave threads and namespaces; ids come from one increasing generator.
    let mut expected = Vec::new();
    let places = [("b", ""), ("a", ""), ("c", "sub:1"), ("b", ""), ("a", "sub:2"), ("c", ""), ("a", "")];
    let mut last: BTreeMap<(&str, &str), String> = BTreeMap::new();
    for (thread, ns) in places {
        let id = new_id();
        let mut config = Config::thread(thread).with_ns(ns);
        if let Some(parent) = last.get(&(thread, ns)) {
            config = config.with_checkpoint(parent);
        }
        put(s, &config, &cp(&id, &[]), json!({"thread": thread}));
        last.insert((thread, ns), id.clone());
        expected.push((id, thread.to_owned(), ns.to_owned()));
    }
    expected.reverse();
    let listed: Vec<(String, String, String)> = list(s, &ListQuery::all())
        .into_iter()
        .map(|t| (t.checkpoint.id, t.config.thread_id, t.config.checkpoint_ns))
        .collect();
    assert_eq!(listed, expected);
    let top: Vec<String> = expected.iter().take(3).map(|e| e.0.clone()).collect();
    assert_eq!(list_ids(s, &ListQuery::all().limit(3)), top);
    let older: Vec<String> = expected.iter().skip(2).map(|e| e.0.clone()).collect();
    assert_eq!(list_ids(s, &ListQuery::all().before(&expected[1].0)), older, "before applies across threads");
    let a_only: Vec<String> = expected.iter().filter(|e| e.1 == "a").map(|e| e.0.clone()).collect();
    assert_eq!(list_ids(s, &ListQuery::all().filter("thread", json!("a"))), a_only);
}

fn list_each_tuple_carries_its_pending_writes(s: &dyn CheckpointSaver) {
    let ids = chain(s, "t", "", 3);
    put_writes(s, &at("t", "", &ids[0]), &[w("ch", "first")], "task-a", "");
    put_writes(s, &at("t", "", &ids[2]), &[w("ch", "val"), w("__error__", "boom")], "task-b", "p");
    let listed = list(s, &ListQuery::thread("t"));
    assert_eq!(listed.len(), 3);
    assert_eq!(
        writes_of(&listed[0]),
        vec![pw("p", "task-b", -1, "__error__", "boom"), pw("p", "task-b", 0, "ch", "val")]
    );
    assert!(listed[1].pending_writes.is_empty());
    assert_eq!(writes_of(&listed[2]), vec![pw("", "task-a", 0, "ch", "first")]);
    let all = list(s, &ListQuery::all());
    assert_eq!(all.iter().map(|t| t.pending_writes.len()).collect::<Vec<_>>(), vec![2, 0, 1]);
}

// ---------------------------------------------------------------------------------------------
// delete_thread
// ---------------------------------------------------------------------------------------------

fn delete_thread_removes_every_namespace_and_nothing_else(s: &dyn CheckpointSaver) {
    let root = chain(s, "t", "", 2);
    let child = chain(s, "t", "child:1", 2);
    let other = chain(s, "keep", "", 2);
    put_writes(s, &at("t", "", &root[1]), &[w("ch", "gone")], "task", "");
    put_writes(s, &at("keep", "", &other[1]), &[w("ch", "kept")], "task", "");

    s.delete_thread("t").unwrap();
    assert_eq!(s.get_tuple(&Config::thread("t")).unwrap(), None);
    assert_eq!(s.get_tuple(&Config::thread("t").with_ns("child:1")).unwrap(), None);
    assert_eq!(s.get_tuple(&at("t", "child:1", &child[0])).unwrap(), None);
    assert!(list(s, &ListQuery::thread("t")).is_empty());

    let kept = get(s, &Config::thread("keep"));
    assert_eq!(kept.checkpoint.id, other[1]);
    assert_eq!(values(&kept), value_map(&[("step", "1")]));
    assert_eq!(writes_of(&kept), vec![pw("", "task", 0, "ch", "kept")]);
    assert_eq!(list_ids(s, &ListQuery::all()), rev(&other));

    // Writes and blobs went too: re-putting the same id with the same versions (none new)
    // finds neither.
    let c = cp(&root[1], &[("step", "1", 2)]);
    put_nv(s, &at("t", "", &root[0]), &c, json!({}), &[]);
    let again = get(s, &Config::thread("t"));
    assert!(again.pending_writes.is_empty(), "writes of the deleted thread are gone");
    assert!(again.checkpoint.channel_values.is_empty(), "blobs of the deleted thread are gone");
}

fn delete_thread_missing_is_noop(s: &dyn CheckpointSaver) {
    let ids = chain(s, "t", "", 2);
    s.delete_thread("does-not-exist").expect("deleting a missing thread is not an error");
    assert_eq!(list_ids(s, &ListQuery::all()), rev(&ids));
    s.delete_thread("t").unwrap();
    s.delete_thread("t").expect("deleting twice is not an error");
    assert!(list(s, &ListQuery::all()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// delete_for_runs
// ---------------------------------------------------------------------------------------------

fn delete_for_runs_removes_run_everywhere_without_cascade(s: &dyn CheckpointSaver) {
    let ids = new_ids(6);
    // t: run1 (root) <- run2 (root); run1 in child:1 too. u: run1 and a keeper.
    put(s, &Config::thread("t"), &cp(&ids[0], &[]), json!({"run_id": "run1", "step": 0}));
    put(s, &at("t", "", &ids[0]), &cp(&ids[1], &[]), json!({"run_id": "run2", "step": 1}));
    put(s, &Config::thread("t").with_ns("child:1"), &cp(&ids[2], &[]), json!({"run_id": "run1"}));
    put(s, &Config::thread("u"), &cp(&ids[3], &[]), json!({"run_id": "run1"}));
    put(s, &at("u", "", &ids[3]), &cp(&ids[4], &[]), json!({"run_id": "keep"}));
    put(s, &Config::thread("v"), &cp(&ids[5], &[]), json!({"step": 0}));
    put_writes(s, &at("t", "", &ids[0]), &[w("ch", "run1-write")], "task", "");
    put_writes(s, &at("t", "", &ids[1]), &[w("ch", "run2-write")], "task", "");

    s.delete_for_runs(&["run1".to_owned()]).unwrap();

    assert_eq!(s.get_tuple(&at("t", "", &ids[0])).unwrap(), None);
    assert_eq!(s.get_tuple(&at("t", "child:1", &ids[2])).unwrap(), None, "across namespaces");
    assert_eq!(s.get_tuple(&at("u", "", &ids[3])).unwrap(), None, "across threads");
    let child = get(s, &at("t", "", &ids[1]));
    assert_eq!(child.metadata["run_id"], json!("run2"), "no cascade to a child of another run");
    assert_eq!(child.parent_config, Some(at("t", "", &ids[0])), "the child keeps its parent pointer");
    assert_eq!(writes_of(&child), vec![pw("", "task", 0, "ch", "run2-write")]);
    assert_eq!(list_ids(s, &ListQuery::all()), vec![ids[5].clone(), ids[4].clone(), ids[1].clone()]);

    // The deleted checkpoint's writes went with it: re-putting its id finds none.
    put(s, &Config::thread("t"), &cp(&ids[0], &[]), json!({"run_id": "run1-again"}));
    assert!(get(s, &at("t", "", &ids[0])).pending_writes.is_empty());
}

fn delete_for_runs_multiple_runs(s: &dyn CheckpointSaver) {
    let ids = new_ids(3);
    put(s, &Config::thread("t"), &cp(&ids[0], &[]), json!({"run_id": "r1"}));
    put(s, &at("t", "", &ids[0]), &cp(&ids[1], &[]), json!({"run_id": "r2"}));
    put(s, &at("t", "", &ids[1]), &cp(&ids[2], &[]), json!({"run_id": "r3"}));
    s.delete_for_runs(&["r1".to_owned(), "r2".to_owned()]).unwrap();
    assert_eq!(list_ids(s, &ListQuery::thread("t")), vec![ids[2].clone()]);
    assert_eq!(get(s, &Config::thread("t")).metadata["run_id"], json!("r3"));
}

fn delete_for_runs_empty_or_unknown_is_noop(s: &dyn CheckpointSaver) {
    let ids = new_ids(3);
    put(s, &Config::thread("t"), &cp(&ids[0], &[]), json!({"run_id": "r1"}));
    put(s, &at("t", "", &ids[0]), &cp(&ids[1], &[]), json!({"step": 1}));
    put(s, &Config::thread("t").with_ns("child:1"), &cp(&ids[2], &[]), json!({"run_id": "r2"}));
    put_writes(s, &at("t", "", &ids[0]), &[w("ch", "val")], "task", "");
    let before = list(s, &ListQuery::all());
    assert_eq!(before.len(), 3);

    s.delete_for_runs(&[]).expect("empty list");
    s.delete_for_runs(&["unknown-run".to_owned()]).expect("unknown run id");
    s.delete_for_runs(&["".to_owned()]).expect("empty run id");
    assert_eq!(list(s, &ListQuery::all()), before);
}

// ---------------------------------------------------------------------------------------------
// copy_thread
// ---------------------------------------------------------------------------------------------

/// Source thread `src`: 3 root checkpoints and 2 in `child:1`, with metadata, values and writes.
fn copy_source(s: &dyn CheckpointSaver) -> (Vec<String>, Vec<String>) {
    let root = new_ids(3);
    let mut config = Config::thread("src");
    for (i, id) in root.iter().enumerate() {
        let c = cp(id, &[("step", &format!("v{i}"), i as i64 + 1), ("const", "c", 1)]);
        let nv: Vec<(&str, i64)> = if i == 0 { vec![("step", 1), ("const", 1)] } else { vec![("step", i as i64 + 1)] };
        config = put_nv(s, &config, &c, json!({"source": "loop", "step": i, "run_id": "r", "extra": {"i": i}}), &nv);
    }
    put_writes(s, &at("src", "", &root[0]), &[w("ch", "w0")], "task-0", "");
    put_writes(s, &at("src", "", &root[2]), &[w("ch", "w2"), w("__interrupt__", "int")], "task-2", "a:b:c");
    let child = chain(s, "src", "child:1", 2);
    put_writes(s, &at("src", "child:1", &child[1]), &[w("sub", "sw")], "task-c", "child-path");
    (root, child)
}

fn copy_thread_copies_everything_with_same_ids(s: &dyn CheckpointSaver) {
    let (root, child) = copy_source(s);
    s.copy_thread("src", "dst").unwrap();

    let src = list(s, &ListQuery::thread("src"));
    let dst = list(s, &ListQuery::thread("dst"));
    assert_eq!(src.len(), 5);
    assert_eq!(
        dst.iter().map(|t| t.checkpoint.id.clone()).collect::<Vec<_>>(),
        src.iter().map(|t| t.checkpoint.id.clone()).collect::<Vec<_>>(),
        "same ids, same order"
    );
    for (a, b) in src.iter().zip(&dst) {
        assert_eq!(b.config, Config { thread_id: "dst".into(), ..a.config.clone() });
        assert_eq!(b.checkpoint, a.checkpoint, "checkpoint {} with channel values", a.checkpoint.id);
        assert_eq!(b.metadata, a.metadata);
        assert_eq!(b.pending_writes, a.pending_writes, "writes with task paths");
        assert_eq!(b.parent_config, a.parent_config.clone().map(|p| Config { thread_id: "dst".into(), ..p }));
    }
    // Spot checks against known values, so equal-but-empty copies cannot pass.
    let latest = get(s, &Config::thread("dst"));
    assert_eq!(latest.checkpoint.id, root[2]);
    assert_eq!(values(&latest), value_map(&[("step", "v2"), ("const", "c")]));
    assert_eq!(latest.metadata["extra"], json!({"i": 2}));
    assert_eq!(
        writes_of(&latest),
        vec![pw("a:b:c", "task-2", -3, "__interrupt__", "int"), pw("a:b:c", "task-2", 0, "ch", "w2")]
    );
    assert_eq!(writes_of(&get(s, &at("dst", "", &root[0]))), vec![pw("", "task-0", 0, "ch", "w0")]);
    let sub = get(s, &Config::thread("dst").with_ns("child:1"));
    assert_eq!(sub.checkpoint.id, child[1]);
    assert_eq!(writes_of(&sub), vec![pw("child-path", "task-c", 0, "sub", "sw")]);
    assert_eq!(list_ids(s, &ListQuery::thread("dst").namespace("")), rev(&root));
    assert_eq!(list_ids(s, &ListQuery::thread("dst").namespace("child:1")), rev(&child));
}

fn copy_thread_leaves_source_untouched(s: &dyn CheckpointSaver) {
    copy_source(s);
    chain(s, "bystander", "", 1);
    let before_src = list(s, &ListQuery::thread("src"));
    let before_other = list(s, &ListQuery::thread("bystander"));
    s.copy_thread("src", "dst").unwrap();
    assert_eq!(list(s, &ListQuery::thread("src")), before_src);
    assert_eq!(list(s, &ListQuery::thread("bystander")), before_other);

    // The copy is independent: deleting it leaves the source, and vice versa.
    s.delete_thread("dst").unwrap();
    assert_eq!(list(s, &ListQuery::thread("src")), before_src);
    s.copy_thread("src", "dst").unwrap();
    s.delete_thread("src").unwrap();
    assert_eq!(list(s, &ListQuery::thread("dst")).len(), before_src.len());
    assert_eq!(get(s, &Config::thread("dst")).pending_writes.len(), 2);
}

fn copy_thread_missing_source_leaves_target_empty(s: &dyn CheckpointSaver) {
    chain(s, "other", "", 1);
    // Raising is tolerated by the conformance suite; what matters is that nothing appears.
    let _ = s.copy_thread("does-not-exist", "dst");
    assert!(list(s, &ListQuery::thread("dst")).is_empty());
    assert_eq!(s.get_tuple(&Config::thread("dst")).unwrap(), None);
    assert_eq!(list(s, &ListQuery::all()).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// prune
// ---------------------------------------------------------------------------------------------

fn prune_keep_latest_keeps_newest_per_namespace(s: &dyn CheckpointSaver) {
    let ids = new_ids(3);
    // Root: b is written only by the first put; the latest finds it through its version.
    put(s, &Config::thread("t"), &cp(&ids[0], &[("a", "a1", 1), ("b", "b1", 1)]), json!({"step": 0}));
    put_nv(s, &at("t", "", &ids[0]), &cp(&ids[1], &[("a", "a2", 2), ("b", "b1", 1)]), json!({"step": 1}), &[("a", 2)]);
    put_nv(s, &at("t", "", &ids[1]), &cp(&ids[2], &[("a", "a3", 3), ("b", "b1", 1)]), json!({"step": 2}), &[("a", 3)]);
    for id in &ids {
        put_writes(s, &at("t", "", id), &[w("ch", id)], "task", "p");
    }
    let child = chain(s, "t", "child:1", 2);
    put_writes(s, &at("t", "child:1", &child[1]), &[w("sub", "kept")], "task-c", "");
    let other = chain(s, "other", "", 3);
    let other_before = list(s, &ListQuery::thread("other"));

    s.prune(&["t".to_owned()], PruneStrategy::KeepLatest).unwrap();

    assert_eq!(list_ids(s, &ListQuery::thread("t")), vec![child[1].clone(), ids[2].clone()]);
    let kept = get(s, &Config::thread("t"));
    assert_eq!(kept.checkpoint.id, ids[2]);
    assert_eq!(kept.metadata, meta(json!({"step": 2})));
    assert_eq!(values(&kept), value_map(&[("a", "a3"), ("b", "b1")]), "kept checkpoint keeps every channel value");
    assert_eq!(writes_of(&kept), vec![pw("p", "task", 0, "ch", &ids[2])]);
    let kept_child = get(s, &Config::thread("t").with_ns("child:1"));
    assert_eq!(kept_child.checkpoint.id, child[1]);
    assert_eq!(values(&kept_child), value_map(&[("step", "1")]));
    assert_eq!(writes_of(&kept_child), vec![pw("", "task-c", 0, "sub", "kept")]);
    assert_eq!(s.get_tuple(&at("t", "", &ids[0])).unwrap(), None);
    assert_eq!(s.get_tuple(&at("t", "child:1", &child[0])).unwrap(), None);

    assert_eq!(list(s, &ListQuery::thread("other")), other_before, "other threads untouched");
    assert_eq!(list_ids(s, &ListQuery::thread("other")), rev(&other));

    // The removed checkpoints' writes went too: re-putting an old id finds none.
    put(s, &Config::thread("t"), &cp(&ids[0], &[]), json!({}));
    assert!(get(s, &at("t", "", &ids[0])).pending_writes.is_empty());
}

fn prune_delete_removes_threads(s: &dyn CheckpointSaver) {
    chain(s, "t", "", 3);
    chain(s, "t", "child:1", 2);
    let t2 = chain(s, "t2", "", 2);
    let other = chain(s, "other", "", 2);
    put_writes(s, &at("other", "", &other[1]), &[w("ch", "v")], "task", "");
    let other_before = list(s, &ListQuery::thread("other"));

    s.prune(&["t".to_owned(), "t2".to_owned(), "missing".to_owned()], PruneStrategy::Delete).unwrap();
    assert!(list(s, &ListQuery::thread("t")).is_empty());
    assert!(list(s, &ListQuery::thread("t2")).is_empty());
    assert_eq!(s.get_tuple(&Config::thread("t").with_ns("child:1")).unwrap(), None);
    assert_eq!(s.get_tuple(&at("t2", "", &t2[0])).unwrap(), None);
    assert_eq!(list(s, &ListQuery::thread("other")), other_before);
    assert_eq!(list_ids(s, &ListQuery::all()), rev(&other));
}

fn prune_empty_or_missing_threads_is_noop(s: &dyn CheckpointSaver) {
    let ids = chain(s, "t", "", 3);
    let before = list(s, &ListQuery::all());
    s.prune(&[], PruneStrategy::KeepLatest).unwrap();
    s.prune(&[], PruneStrategy::Delete).unwrap();
    s.prune(&["missing".to_owned()], PruneStrategy::KeepLatest).unwrap();
    s.prune(&["missing".to_owned()], PruneStrategy::Delete).unwrap();
    assert_eq!(list(s, &ListQuery::all()), before);
    assert_eq!(before.len(), ids.len());
}

fn prune_strategy_parses_and_rejects_unknown(_s: &dyn CheckpointSaver) {
    assert_eq!("keep_latest".parse::<PruneStrategy>().unwrap(), PruneStrategy::KeepLatest);
    assert_eq!("delete".parse::<PruneStrategy>().unwrap(), PruneStrategy::Delete);
    assert_invalid("bogus".parse::<PruneStrategy>(), "bogus strategy");
    assert_invalid("".parse::<PruneStrategy>(), "empty strategy");
    assert_invalid("KEEP_LATEST".parse::<PruneStrategy>(), "strategy names are exact");
}

// ---------------------------------------------------------------------------------------------

saver_tests! {
    memory => MemorySaver::new(),
    log_store => TempStore::new();

    put_returns_config_with_thread_ns_and_id,
    put_round_trips_all_fields_v1,
    put_round_trips_v4_without_updated_channels,
    put_channel_versions_keep_their_exact_type,
    put_parent_config_comes_from_config_checkpoint_id,
    put_stores_only_channels_in_new_versions,
    put_new_version_without_value_is_empty_sentinel,
    put_channel_missing_from_channel_versions_is_not_loaded,
    put_same_id_upserts_checkpoint_metadata_and_parent,
    put_metadata_round_trips_nested_json,
    put_namespaces_are_independent,
    put_empty_thread_id_is_invalid_argument,

    put_writes_sorted_by_task_path_task_id_idx,
    put_writes_idx_is_position_in_list,
    put_writes_special_channels_take_fixed_slots,
    put_writes_regular_repeat_keeps_first_value,
    put_writes_special_write_overwrites,
    put_writes_before_put_are_visible_after_put,
    put_writes_stores_task_path,
    put_writes_without_checkpoint_id_is_invalid_argument,
    put_writes_belong_to_one_checkpoint,

    get_tuple_without_id_returns_max_id,
    get_tuple_with_id_returns_that_checkpoint,
    get_tuple_missing_id_or_thread_is_none,
    get_tuple_respects_namespace,
    get_tuple_attaches_pending_writes,

    list_newest_first_filtered_by_thread,
    list_namespace_root_only_vs_all,
    list_checkpoint_id_is_equality,
    list_before_is_strictly_older,
    list_limit,
    list_before_with_limit_one_returns_the_previous,
    list_metadata_filter,
    list_all_threads_ordered_by_id_desc,
    list_each_tuple_carries_its_pending_writes,

    delete_thread_removes_every_namespace_and_nothing_else,
    delete_thread_missing_is_noop,

    delete_for_runs_removes_run_everywhere_without_cascade,
    delete_for_runs_multiple_runs,
    delete_for_runs_empty_or_unknown_is_noop,

    copy_thread_copies_everything_with_same_ids,
    copy_thread_leaves_source_untouched,
    copy_thread_missing_source_leaves_target_empty,

    prune_keep_latest_keeps_newest_per_namespace,
    prune_delete_removes_threads,
    prune_empty_or_missing_threads_is_noop,
    prune_strategy_parses_and_rejects_unknown,
}
