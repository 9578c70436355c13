//! `logsaver._native`: the Rust store as a Python class.
//!
//! This layer converts. `put`, `put_writes` and `read_tuple` take LangGraph's own arguments
//! (the config dict, the checkpoint dict, the metadata, the serializer's `dumps`/`loads`) in
//! one call: the config is checked here, values serialized, metadata written to JSON text, and
//! `read_tuple`/`read_list` build LangGraph's `CheckpointTuple`s. `get_tuple` and `list` return
//! the raw `StoredCheckpoint`s (values still serialized) for tools. The rest of the
//! `BaseCheckpointSaver` surface lives in `logsaver/saver.py`. Reads, maintenance and `sync`
//! writes run with the GIL released (`Python::detach`), so LangGraph's thread pool and asyncio's
//! worker threads run meanwhile and concurrent `sync` writes share an fdatasync (group commit).
//! `flush`/`none` writes keep the GIL: they only copy into the page cache or a buffer, and
//! releasing and re-taking the GIL cost more than the call (measured in the README).

// pyo3 hands a method its arguments by value (it extracts them from Python objects).
#![expect(clippy::needless_pass_by_value, reason = "pyo3 extracts #[pymethods] arguments by value")]

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::time::Duration;

use logsaver::{
    AutoCompaction, Blob, ChannelVersion, ChannelVersions, Checkpoint, CheckpointSaver, CheckpointTuple, Config,
    Durability, Error, ListQuery, LogStore, Metadata, Options, PendingWrite, PruneStrategy, Retention, ValueEncoding,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

mod checkpoint_metadata;
mod metadata_json;

/// Raise `err` as the matching class of `logsaver.errors`.
fn to_py_err(py: Python<'_>, err: &Error) -> PyErr {
    let class = match err {
        Error::Locked { .. } => "StoreLockedError",
        Error::Corruption { .. } => "CorruptionError",
        Error::Closed => "SaverClosedError",
        Error::InvalidArgument(_) | Error::TooLarge { .. } => "InvalidArgumentError",
        Error::ReadOnly { .. } => "StoreReadOnlyError",
        Error::Poisoned { .. } => "StorePoisonedError",
        _ => "LogSaverError",
    };
    let message = err.to_string();
    // The kind of the I/O failure behind the error ("StorageFull", "Other" for EIO, ...).
    let kind = err.io_kind().map(|kind| format!("{kind:?}"));
    let raised = py.import("logsaver.errors").and_then(|module| module.getattr(class)).and_then(|class| {
        if matches!(err, Error::Poisoned { .. }) {
            class.call1((message.clone(), kind))
        } else {
            class.call1((message.clone(),))
        }
    });
    match raised {
        Ok(instance) => PyErr::from_value(instance),
        Err(import_failed) => import_failed,
    }
}

fn version_from_py(value: &Bound<'_, PyAny>) -> PyResult<ChannelVersion> {
    if let Ok(s) = value.cast::<PyString>() {
        Ok(ChannelVersion::Str(s.to_str()?.to_owned()))
    } else if value.is_instance_of::<PyInt>() {
        Ok(ChannelVersion::Int(value.extract()?))
    } else if value.is_instance_of::<PyFloat>() {
        Ok(ChannelVersion::Float(value.extract()?))
    } else {
        Err(PyTypeError::new_err(format!(
            "channel versions must be str, int or float, not {}",
            value.get_type().name()?
        )))
    }
}

fn version_to_py<'py>(py: Python<'py>, version: &ChannelVersion) -> PyResult<Bound<'py, PyAny>> {
    Ok(match version {
        ChannelVersion::Int(n) => n.into_pyobject(py)?.into_any(),
        ChannelVersion::Float(x) => x.into_pyobject(py)?.into_any(),
        ChannelVersion::Str(s) => s.into_pyobject(py)?.into_any(),
    })
}

fn versions_from_py(dict: &Bound<'_, PyDict>) -> PyResult<ChannelVersions> {
    dict.iter().map(|(channel, version)| Ok((channel.extract::<String>()?, version_from_py(&version)?))).collect()
}

fn versions_to_py<'py>(py: Python<'py>, versions: &ChannelVersions) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (channel, version) in versions {
        dict.set_item(channel, version_to_py(py, version)?)?;
    }
    Ok(dict)
}

fn blob_to_py<'py>(py: Python<'py>, blob: &Blob) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, [blob.type_tag.as_str().into_pyobject(py)?.into_any(), PyBytes::new(py, &blob.bytes).into_any()])
}

fn write_to_py<'py>(py: Python<'py>, write: &PendingWrite) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            write.task_id.as_str().into_pyobject(py)?.into_any(),
            write.channel.as_str().into_pyobject(py)?.into_any(),
            blob_to_py(py, &write.value)?.into_any(),
            write.task_path.as_str().into_pyobject(py)?.into_any(),
        ],
    )
}

/// One stored checkpoint as the native module returns it: named fields, values still
/// serialized. `channel_values` maps a channel to `(type_tag, bytes)`; `pending_writes` is a
/// list of `(task_id, channel, (type_tag, bytes), task_path)`. `logsaver/saver.py` turns it into
/// LangGraph's `CheckpointTuple`.
#[pyclass(frozen, get_all, module = "logsaver._native")]
struct StoredCheckpoint {
    thread_id: String,
    checkpoint_ns: String,
    checkpoint_id: String,
    parent_id: Option<String>,
    v: i64,
    ts: String,
    channel_values: Py<PyDict>,
    channel_versions: Py<PyDict>,
    versions_seen: Py<PyDict>,
    updated_channels: Option<Vec<String>>,
    metadata_json: String,
    pending_writes: Py<PyList>,
}

fn tuple_to_py(py: Python<'_>, tuple: &CheckpointTuple) -> PyResult<StoredCheckpoint> {
    let checkpoint = &tuple.checkpoint;
    let values = PyDict::new(py);
    for (channel, blob) in &checkpoint.channel_values {
        values.set_item(channel, blob_to_py(py, blob)?)?;
    }
    let seen = PyDict::new(py);
    for (node, versions) in &checkpoint.versions_seen {
        seen.set_item(node, versions_to_py(py, versions)?)?;
    }
    let writes = PyList::empty(py);
    for write in &tuple.pending_writes {
        writes.append(write_to_py(py, write)?)?;
    }
    let metadata_json = serde_json::to_string(&tuple.metadata).map_err(|e| PyTypeError::new_err(e.to_string()))?;
    Ok(StoredCheckpoint {
        thread_id: tuple.config.thread_id.clone(),
        checkpoint_ns: tuple.config.checkpoint_ns.clone(),
        checkpoint_id: checkpoint.id.clone(),
        parent_id: tuple.parent_config.as_ref().and_then(|p| p.checkpoint_id.clone()),
        v: checkpoint.v,
        ts: checkpoint.ts.clone(),
        channel_values: values.unbind(),
        channel_versions: versions_to_py(py, &checkpoint.channel_versions)?.unbind(),
        versions_seen: seen.unbind(),
        updated_channels: checkpoint.updated_channels.clone(),
        metadata_json,
        pending_writes: writes.unbind(),
    })
}

/// Metadata (JSON) as Python objects, as `json.loads` would build them.
fn json_to_py<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => metadata_to_py(py, map)?.into_any(),
    })
}

fn metadata_to_py<'py>(
    py: Python<'py>,
    map: &serde_json::Map<String, serde_json::Value>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, value) in map {
        dict.set_item(key, json_to_py(py, value)?)?;
    }
    Ok(dict)
}

/// LangGraph's `CheckpointTuple` class, imported once.
static CHECKPOINT_TUPLE: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

fn config_to_py<'py>(py: Python<'py>, thread_id: &str, ns: &str, checkpoint_id: &str) -> PyResult<Bound<'py, PyDict>> {
    let configurable = PyDict::new(py);
    configurable.set_item(pyo3::intern!(py, "thread_id"), thread_id)?;
    configurable.set_item(pyo3::intern!(py, "checkpoint_ns"), ns)?;
    configurable.set_item(pyo3::intern!(py, "checkpoint_id"), checkpoint_id)?;
    let config = PyDict::new(py);
    config.set_item(pyo3::intern!(py, "configurable"), configurable)?;
    Ok(config)
}

/// A stored checkpoint as LangGraph's `CheckpointTuple`, built in one pass with values
/// deserialized by `loads` (the saver's `serde.loads_typed`): what `LogSaver.get_tuple` and
/// `list` return. Building it here instead of in Python halves the cost of a read (README).
fn tuple_to_langgraph<'py>(
    py: Python<'py>,
    tuple: &CheckpointTuple,
    loads: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let class = CHECKPOINT_TUPLE.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("langgraph.checkpoint.base")?.getattr("CheckpointTuple")?.unbind())
    })?;
    let checkpoint = &tuple.checkpoint;
    let (thread_id, ns) = (tuple.config.thread_id.as_str(), tuple.config.checkpoint_ns.as_str());
    let load = |blob: &Blob| loads.call1((blob_to_py(py, blob)?,));
    let values = PyDict::new(py);
    for (channel, blob) in &checkpoint.channel_values {
        values.set_item(channel, load(blob)?)?;
    }
    let seen = PyDict::new(py);
    for (node, versions) in &checkpoint.versions_seen {
        seen.set_item(node, versions_to_py(py, versions)?)?;
    }
    let body = PyDict::new(py);
    body.set_item(pyo3::intern!(py, "v"), checkpoint.v)?;
    body.set_item(pyo3::intern!(py, "id"), &checkpoint.id)?;
    body.set_item(pyo3::intern!(py, "ts"), &checkpoint.ts)?;
    body.set_item(pyo3::intern!(py, "channel_values"), values)?;
    body.set_item(pyo3::intern!(py, "channel_versions"), versions_to_py(py, &checkpoint.channel_versions)?)?;
    body.set_item(pyo3::intern!(py, "versions_seen"), seen)?;
    body.set_item(pyo3::intern!(py, "updated_channels"), checkpoint.updated_channels.clone())?;
    let parent = match tuple.parent_config.as_ref().and_then(|p| p.checkpoint_id.as_deref()) {
        Some(parent_id) => config_to_py(py, thread_id, ns, parent_id)?.into_any(),
        None => py.None().into_bound(py),
    };
    let writes = PyList::empty(py);
    for write in &tuple.pending_writes {
        writes.append((write.task_id.as_str(), write.channel.as_str(), load(&write.value)?))?;
    }
    class.bind(py).call1((
        config_to_py(py, thread_id, ns, &checkpoint.id)?,
        body,
        metadata_to_py(py, &tuple.metadata)?,
        parent,
        writes,
    ))
}

/// `put`'s metadata as the JSON text the store keeps: written natively, or by `json.dumps` for
/// values only it may convert (see `metadata_json`).
fn metadata_text(py: Python<'_>, metadata: &Bound<'_, PyDict>) -> PyResult<String> {
    if let Some(text) = metadata_json::metadata_json(metadata) {
        return Ok(text);
    }
    let dumps = JSON_DUMPS
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> { Ok(py.import("json")?.getattr("dumps")?.unbind()) })?;
    dumps.bind(py).call((metadata,), Some(&[("ensure_ascii", false)].into_py_dict(py)?))?.extract()
}

/// Python's `json.dumps`, imported once.
static JSON_DUMPS: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// LangGraph's `get_checkpoint_metadata` (the config's metadata merged in), imported once.
static GET_CHECKPOINT_METADATA: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// What a call's `config` names: thread, namespace and checkpoint id, checked as the saver
/// always did (a missing `configurable` dict or `thread_id` is an `InvalidArgumentError` that
/// says what to pass; a non-str thread id is taken as `str(thread_id)`).
fn config_from_py(py: Python<'_>, config: &Bound<'_, PyAny>) -> PyResult<Config> {
    let configurable = if config.is_truthy()? { config.get_item(pyo3::intern!(py, "configurable")).ok() } else { None };
    let invalid = |message: &str| to_py_err(py, &Error::InvalidArgument(message.into()));
    let Some(configurable) = configurable.as_ref().and_then(|c| c.cast::<PyDict>().ok()) else {
        return Err(invalid(
            "config must have a 'configurable' dict with a 'thread_id', e.g. {'configurable': {'thread_id': '1'}}",
        ));
    };
    let thread_id = match configurable.get_item(pyo3::intern!(py, "thread_id"))? {
        Some(id) if !id.is_none() && !id.cast::<PyString>().is_ok_and(|s| s.is_empty().unwrap_or(false)) => {
            // Exactly `str(thread_id)`, as the saver always took it: a str subclass (an enum
            // member, say) may print differently from its data.
            match id.cast_exact::<PyString>() {
                Ok(text) => text.to_str()?.to_owned(),
                Err(_) => id.str()?.to_str()?.to_owned(),
            }
        }
        _ => {
            return Err(invalid(
                "config['configurable'] has no 'thread_id': pass {'configurable': {'thread_id': ...}} when invoking a graph with a checkpointer",
            ));
        }
    };
    let checkpoint_ns = match configurable.get_item(pyo3::intern!(py, "checkpoint_ns"))? {
        Some(ns) if ns.is_truthy()? => ns.extract()?,
        _ => String::new(),
    };
    let checkpoint_id = match configurable.get_item(pyo3::intern!(py, "checkpoint_id"))? {
        Some(id) if !id.is_none() => Some(id.extract()?),
        _ => None,
    };
    Ok(Config { thread_id, checkpoint_ns, checkpoint_id })
}

/// The two items of a pair: a 2-tuple's directly, any other iterable's by iterating it;
/// `Err(n)` when it holds `n` items instead.
type Pair<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>);
fn two_items<'py>(pair: &Bound<'py, PyAny>) -> PyResult<Result<Pair<'py>, usize>> {
    if let Ok(tuple) = pair.cast::<PyTuple>()
        && tuple.len() == 2
    {
        return Ok(Ok((tuple.get_item(0)?, tuple.get_item(1)?)));
    }
    let items: Vec<Bound<'py, PyAny>> = pair.try_iter()?.collect::<PyResult<_>>()?;
    Ok(<[Bound<'py, PyAny>; 2]>::try_from(items).map(|[a, b]| (a, b)).map_err(|items| items.len()))
}

/// One value serialized by `dumps` (the saver's `serde.dumps_typed`): `(type_tag, bytes)`, or
/// another serializer's pair (any two items, the second bytes-like).
fn dump(dumps: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<Blob> {
    let dumped = dumps.call1((value,))?;
    let (type_tag, bytes) = two_items(&dumped)?.map_err(|count| {
        PyTypeError::new_err(format!("dumps_typed must return (type_tag, bytes), not {count} items"))
    })?;
    if let (Ok(type_tag), Ok(bytes)) = (type_tag.cast::<PyString>(), bytes.cast::<PyBytes>()) {
        return Ok(Blob { type_tag: type_tag.to_str()?.to_owned(), bytes: bytes.as_bytes().to_vec() });
    }
    Ok(Blob { type_tag: type_tag.extract()?, bytes: bytes.extract()? })
}

/// An item of a checkpoint dict (a `KeyError` if it is missing, as in Python).
fn item<'py>(dict: &Bound<'py, PyDict>, key: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
    dict.get_item(key)?.ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(key.clone().unbind()))
}

/// The query of `list` and `read_list`: the metadata filter comes as JSON text.
fn list_query(
    py: Python<'_>,
    thread_id: Option<String>,
    checkpoint_ns: Option<String>,
    checkpoint_id: Option<String>,
    filter_json: Option<&str>,
    before: Option<String>,
    limit: Option<usize>,
) -> PyResult<ListQuery> {
    let filter: Metadata = match filter_json {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| to_py_err(py, &Error::InvalidArgument(format!("filter is not a JSON object: {e}"))))?,
        None => Metadata::new(),
    };
    Ok(ListQuery { thread_id, checkpoint_ns, checkpoint_id, filter, before, limit })
}

/// What `read_list` returns: the matching checkpoints as read, turned into `CheckpointTuple`s
/// one at a time.
#[pyclass(frozen, module = "logsaver._native")]
struct TupleIter {
    rest: std::sync::Mutex<std::vec::IntoIter<CheckpointTuple>>,
    loads: Py<PyAny>,
}

#[pymethods]
impl TupleIter {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        // A poisoned lock only means a conversion panicked; the iterator itself is intact.
        let next = self.rest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next();
        next.map(|tuple| tuple_to_langgraph(py, &tuple, self.loads.bind(py))).transpose()
    }
}

/// The Rust store. Used through `logsaver.LogSaver`.
#[pyclass(frozen, module = "logsaver._native")]
struct Store {
    inner: LogStore,
    /// Release the GIL around write calls: only when they wait for an fdatasync (`sync`), so
    /// concurrent Python threads share it (group commit). A `flush`/`none` write only copies
    /// into the page cache or a buffer: releasing and re-taking the GIL costs more than the call
    /// (and can queue behind another thread's switch interval).
    detach_writes: bool,
}

impl Store {
    /// The checkpoint `get_tuple` and `read_tuple` return (read with the GIL released).
    fn fetch(&self, py: Python<'_>, config: &Config) -> PyResult<Option<CheckpointTuple>> {
        py.detach(|| self.inner.get_tuple(config)).map_err(|e| to_py_err(py, &e))
    }

    /// The checkpoints `list` and `read_list` return (read with the GIL released).
    #[expect(clippy::too_many_arguments, reason = "the arguments of `list`, passed through")]
    fn fetch_list(
        &self,
        py: Python<'_>,
        thread_id: Option<String>,
        checkpoint_ns: Option<String>,
        checkpoint_id: Option<String>,
        filter_json: Option<&str>,
        before: Option<String>,
        limit: Option<usize>,
    ) -> PyResult<Vec<CheckpointTuple>> {
        let query = list_query(py, thread_id, checkpoint_ns, checkpoint_id, filter_json, before, limit)?;
        py.detach(|| self.inner.list(&query)).map_err(|e| to_py_err(py, &e))
    }

    /// Run a write call, with the GIL released when it waits for an fdatasync.
    fn write<T: Send>(&self, py: Python<'_>, call: impl FnOnce() -> T + Send) -> T {
        if self.detach_writes { py.detach(call) } else { call() }
    }
}

#[pymethods]
impl Store {
    #[new]
    #[pyo3(signature = (
        path, durability="sync", *, segment_size=None, preallocate=None, recovery=None, max_value_bytes=None,
        buffer_bytes=None, auto_compaction=true, compaction_garbage_ratio=None, compaction_min_garbage_bytes=None,
        compaction_interval_seconds=None, keep_last=None, max_age_seconds=None, retention_interval_seconds=None,
        metrics_interval_seconds=None, read_only=false, deltas=None, max_chain=None, compression_level=None,
        compress=None, value_cache_bytes=None,
    ))]
    #[expect(clippy::too_many_arguments, reason = "mirrors the Python signature, one argument per keyword")]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        durability: &str,
        segment_size: Option<u64>,
        preallocate: Option<bool>,
        recovery: Option<&str>,
        max_value_bytes: Option<u64>,
        buffer_bytes: Option<usize>,
        auto_compaction: bool,
        compaction_garbage_ratio: Option<f64>,
        compaction_min_garbage_bytes: Option<u64>,
        compaction_interval_seconds: Option<f64>,
        keep_last: Option<usize>,
        max_age_seconds: Option<f64>,
        retention_interval_seconds: Option<f64>,
        metrics_interval_seconds: Option<f64>,
        read_only: bool,
        deltas: Option<bool>,
        max_chain: Option<u32>,
        compression_level: Option<i32>,
        compress: Option<bool>,
        value_cache_bytes: Option<u64>,
    ) -> PyResult<Self> {
        let defaults = Options::default();
        let seconds = |s: f64| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| Error::InvalidArgument(format!("{s} is not a duration in seconds")))
        };
        let options = (|| -> Result<Options, Error> {
            let auto = AutoCompaction::default();
            Ok(Options {
                durability: durability.parse()?,
                segment_size: segment_size.unwrap_or(defaults.segment_size),
                preallocate: preallocate.unwrap_or(defaults.preallocate),
                recovery: recovery.map(str::parse).transpose()?.unwrap_or(defaults.recovery),
                max_value_bytes: max_value_bytes.unwrap_or(defaults.max_value_bytes),
                buffer_bytes: buffer_bytes.unwrap_or(defaults.buffer_bytes),
                auto_compaction: match auto_compaction {
                    false => None,
                    true => Some(AutoCompaction {
                        garbage_ratio: compaction_garbage_ratio.unwrap_or(auto.garbage_ratio),
                        min_garbage_bytes: compaction_min_garbage_bytes.unwrap_or(auto.min_garbage_bytes),
                        interval: compaction_interval_seconds.map(seconds).transpose()?.unwrap_or(auto.interval),
                    }),
                },
                retention: Retention {
                    keep_last,
                    max_age: max_age_seconds.map(seconds).transpose()?,
                    interval: retention_interval_seconds.map(seconds).transpose()?,
                },
                metrics_interval: match metrics_interval_seconds {
                    Some(s) => Some(seconds(s)?),
                    None => defaults.metrics_interval,
                },
                values: ValueEncoding {
                    deltas: deltas.unwrap_or(defaults.values.deltas),
                    max_chain: max_chain.unwrap_or(defaults.values.max_chain),
                    compression_level: match compress {
                        Some(false) => None,
                        _ => compression_level.or(defaults.values.compression_level),
                    },
                    cache_bytes: value_cache_bytes.unwrap_or(defaults.values.cache_bytes),
                },
                ..defaults
            })
        })()
        .map_err(|e| to_py_err(py, &e))?;
        let detach_writes = options.durability == Durability::Sync;
        let inner = py
            .detach(
                || if read_only { LogStore::open_read_only(&path, options) } else { LogStore::open(&path, options) },
            )
            .map_err(|e| to_py_err(py, &e))?;
        Ok(Store { inner, detach_writes })
    }

    /// Latest (or exact) checkpoint, or None.
    #[pyo3(signature = (thread_id, checkpoint_ns, checkpoint_id=None))]
    fn get_tuple(
        &self,
        py: Python<'_>,
        thread_id: String,
        checkpoint_ns: String,
        checkpoint_id: Option<String>,
    ) -> PyResult<Option<StoredCheckpoint>> {
        let found = self.fetch(py, &Config { thread_id, checkpoint_ns, checkpoint_id })?;
        found.map(|tuple| tuple_to_py(py, &tuple)).transpose()
    }

    /// `LogSaver.get_tuple`: the checkpoint `config` names (the latest when it names no id) as
    /// LangGraph's `CheckpointTuple`, values deserialized with `loads`; or None.
    fn read_tuple<'py>(
        &self,
        py: Python<'py>,
        config: &Bound<'py, PyAny>,
        loads: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let found = self.fetch(py, &config_from_py(py, config)?)?;
        found.map(|tuple| tuple_to_langgraph(py, &tuple, loads)).transpose()
    }

    /// `list` as an iterator of LangGraph's `CheckpointTuple`s, each built (its values
    /// deserialized with `loads`) only when the caller gets to it, as a generator would.
    #[pyo3(signature = (thread_id, checkpoint_ns, checkpoint_id, filter_json, before, limit, loads))]
    #[expect(clippy::too_many_arguments, reason = "mirrors the Python signature, one argument per keyword")]
    fn read_list(
        &self,
        py: Python<'_>,
        thread_id: Option<String>,
        checkpoint_ns: Option<String>,
        checkpoint_id: Option<String>,
        filter_json: Option<&str>,
        before: Option<String>,
        limit: Option<usize>,
        loads: Py<PyAny>,
    ) -> PyResult<TupleIter> {
        let tuples = self.fetch_list(py, thread_id, checkpoint_ns, checkpoint_id, filter_json, before, limit)?;
        Ok(TupleIter { rest: std::sync::Mutex::new(tuples.into_iter()), loads })
    }

    /// Matching checkpoints, newest first.
    #[pyo3(signature = (thread_id=None, checkpoint_ns=None, checkpoint_id=None, filter_json=None, before=None, limit=None))]
    #[expect(clippy::too_many_arguments, reason = "mirrors the Python signature, one argument per keyword")]
    fn list(
        &self,
        py: Python<'_>,
        thread_id: Option<String>,
        checkpoint_ns: Option<String>,
        checkpoint_id: Option<String>,
        filter_json: Option<&str>,
        before: Option<String>,
        limit: Option<usize>,
    ) -> PyResult<Vec<StoredCheckpoint>> {
        let tuples = self.fetch_list(py, thread_id, checkpoint_ns, checkpoint_id, filter_json, before, limit)?;
        tuples.iter().map(|tuple| tuple_to_py(py, tuple)).collect()
    }

    /// `LogSaver.put`, in one crossing: the config checked, the metadata merged by LangGraph's
    /// `get_checkpoint_metadata`, each value of `new_versions` serialized with `dumps` (a channel
    /// without a value is the `empty` sentinel), the metadata written as JSON text, the
    /// checkpoint stored. Returns the new checkpoint's config.
    fn put<'py>(
        &self,
        py: Python<'py>,
        config: &Bound<'py, PyAny>,
        checkpoint: &Bound<'py, PyDict>,
        metadata: &Bound<'py, PyAny>,
        new_versions: &Bound<'py, PyDict>,
        dumps: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let parent = config_from_py(py, config)?;
        let merged = match checkpoint_metadata::merged(py, config, metadata)? {
            Some(merged) => merged,
            None => {
                let merge = GET_CHECKPOINT_METADATA.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                    Ok(py.import("langgraph.checkpoint.base")?.getattr("get_checkpoint_metadata")?.unbind())
                })?;
                let merged = merge.bind(py).call1((config, metadata))?;
                match merged.cast::<PyDict>() {
                    Ok(dict) => dict.clone(),
                    Err(_) => PyDict::from_sequence(&merged.call_method0(pyo3::intern!(py, "items"))?)?,
                }
            }
        };
        let metadata_json = metadata_text(py, &merged)?;
        let values = item(checkpoint, pyo3::intern!(py, "channel_values"))?;
        let values = values.cast::<PyDict>()?;
        let mut channel_values = BTreeMap::new();
        let mut versions = ChannelVersions::new();
        for (channel, version) in new_versions.iter() {
            let name: String = channel.extract()?;
            if let Some(value) = values.get_item(&channel)? {
                channel_values.insert(name.clone(), dump(dumps, &value)?);
            }
            versions.insert(name, version_from_py(&version)?);
        }
        let mut seen = BTreeMap::new();
        for (node, node_versions) in item(checkpoint, pyo3::intern!(py, "versions_seen"))?.cast::<PyDict>()?.iter() {
            seen.insert(node.extract::<String>()?, versions_from_py(node_versions.cast::<PyDict>()?)?);
        }
        let updated_channels = match checkpoint.get_item(pyo3::intern!(py, "updated_channels"))? {
            Some(updated) if !updated.is_none() => Some(updated.extract()?),
            _ => None,
        };
        let stored = Checkpoint {
            v: item(checkpoint, pyo3::intern!(py, "v"))?.extract()?,
            id: item(checkpoint, pyo3::intern!(py, "id"))?.extract()?,
            ts: item(checkpoint, pyo3::intern!(py, "ts"))?.extract()?,
            channel_values,
            channel_versions: versions_from_py(
                item(checkpoint, pyo3::intern!(py, "channel_versions"))?.cast::<PyDict>()?,
            )?,
            versions_seen: seen,
            updated_channels,
        };
        let saved = self
            .write(py, || self.inner.put_with_metadata_json(&parent, &stored, &metadata_json, &versions))
            .map_err(|e| to_py_err(py, &e))?;
        config_to_py(py, &saved.thread_id, &saved.checkpoint_ns, &stored.id)
    }

    /// `LogSaver.put_writes`, in one crossing: `writes` is LangGraph's list of
    /// `(channel, value)`, each value serialized with `dumps`.
    fn put_writes(
        &self,
        py: Python<'_>,
        config: &Bound<'_, PyAny>,
        writes: &Bound<'_, PyAny>,
        task_id: &str,
        task_path: &str,
        dumps: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let config = config_from_py(py, config)?;
        let mut blobs = Vec::new();
        for write in writes.try_iter()? {
            // A `(channel, value)` pair, as a tuple (LangGraph's) or any two-item iterable.
            let (channel, value) = two_items(&write?)?.map_err(|count| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "a write is a (channel, value) pair, not {count} items"
                ))
            })?;
            blobs.push((channel.extract::<String>()?, dump(dumps, &value)?));
        }
        self.write(py, || self.inner.put_writes(&config, &blobs, task_id, task_path)).map_err(|e| to_py_err(py, &e))
    }

    fn delete_thread(&self, py: Python<'_>, thread_id: &str) -> PyResult<()> {
        py.detach(|| self.inner.delete_thread(thread_id)).map_err(|e| to_py_err(py, &e))
    }

    fn delete_for_runs(&self, py: Python<'_>, run_ids: Vec<String>) -> PyResult<()> {
        py.detach(|| self.inner.delete_for_runs(&run_ids)).map_err(|e| to_py_err(py, &e))
    }

    fn copy_thread(&self, py: Python<'_>, source: &str, target: &str) -> PyResult<()> {
        py.detach(|| self.inner.copy_thread(source, target)).map_err(|e| to_py_err(py, &e))
    }

    fn prune(&self, py: Python<'_>, thread_ids: Vec<String>, strategy: &str) -> PyResult<()> {
        let strategy: PruneStrategy = strategy.parse().map_err(|e| to_py_err(py, &e))?;
        py.detach(|| self.inner.prune(&thread_ids, strategy)).map_err(|e| to_py_err(py, &e))
    }

    /// `{channel: (writes, seed)}`: writes as in `get_tuple`, seed `(type_tag, bytes)` or None.
    fn get_delta_channel_history<'py>(
        &self,
        py: Python<'py>,
        config: &Bound<'py, PyAny>,
        channels: Vec<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let config = config_from_py(py, config)?;
        let history =
            py.detach(|| self.inner.get_delta_channel_history(&config, &channels)).map_err(|e| to_py_err(py, &e))?;
        let out = PyDict::new(py);
        for (channel, entry) in &history {
            let writes = PyList::empty(py);
            for write in &entry.writes {
                writes.append(write_to_py(py, write)?)?;
            }
            let seed = entry.seed.as_ref().map(|blob| blob_to_py(py, blob)).transpose()?;
            out.set_item(channel, (writes, seed))?;
        }
        Ok(out)
    }

    /// Make everything committed so far durable.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.flush()).map_err(|e| to_py_err(py, &e))
    }

    /// Flush and close; later calls raise SaverClosedError. Closing twice is harmless.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.close()).map_err(|e| to_py_err(py, &e))
    }

    /// Rewrite every segment's live records; returns what it did.
    fn compact<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let before = self.inner.space().file_bytes;
        let stats = py.detach(|| self.inner.compact()).map_err(|e| to_py_err(py, &e))?;
        let after = self.inner.space().file_bytes;
        let out = PyDict::new(py);
        out.set_item("bytes_before", stats.bytes_before)?;
        out.set_item("bytes_after", stats.bytes_after)?;
        out.set_item("store_bytes_before", before)?;
        out.set_item("store_bytes_after", after)?;
        out.set_item("segments_rewritten", stats.segments_rewritten)?;
        out.set_item("segments_written", stats.segments_written)?;
        out.set_item("bytes_copied", stats.bytes_copied)?;
        out.set_item("records_copied", stats.records_copied)?;
        out.set_item("records_dropped", stats.records_dropped)?;
        out.set_item("seconds", stats.elapsed.as_secs_f64())?;
        Ok(out)
    }

    /// Copy the store to `dest` while writers keep going; returns segments, bytes, seconds.
    fn backup<'py>(&self, py: Python<'py>, dest: PathBuf) -> PyResult<Bound<'py, PyDict>> {
        let stats = py.detach(|| self.inner.backup(&dest)).map_err(|e| to_py_err(py, &e))?;
        let out = PyDict::new(py);
        out.set_item("segments", stats.segments)?;
        out.set_item("bytes", stats.bytes)?;
        out.set_item("seconds", stats.elapsed.as_secs_f64())?;
        Ok(out)
    }

    /// The store's metrics as JSON text (see `LogStore::metrics`).
    fn metrics_json(&self) -> String {
        self.inner.metrics().to_json().to_string()
    }

    /// Every thread: `(thread_id, checkpoints, latest_checkpoint_id | None)`, sorted by id.
    fn threads(&self, py: Python<'_>) -> Vec<(String, usize, Option<String>)> {
        py.detach(|| self.inner.threads())
            .into_iter()
            .map(|t| (t.thread_id, t.checkpoints, t.latest_checkpoint_id))
            .collect()
    }

    /// Apply the retention options now.
    fn apply_retention<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = py.detach(|| self.inner.apply_retention()).map_err(|e| to_py_err(py, &e))?;
        let out = PyDict::new(py);
        out.set_item("checkpoints_removed", stats.checkpoints_removed)?;
        out.set_item("parents_cleared", stats.parents_cleared)?;
        Ok(out)
    }

    /// Bytes on disk, in records and live, and the garbage ratio.
    fn space<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let space = self.inner.space();
        let out = PyDict::new(py);
        out.set_item("file_bytes", space.file_bytes)?;
        out.set_item("record_bytes", space.record_bytes)?;
        out.set_item("live_bytes", space.live_bytes)?;
        out.set_item("garbage_ratio", space.garbage_ratio())?;
        out.set_item("segments", space.segments.len())?;
        Ok(out)
    }

    /// How the live channel values are stored (deltas, compression, the value cache).
    fn value_space<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let space = self.inner.value_space();
        let out = PyDict::new(py);
        for (key, value) in [
            ("values", space.values),
            ("whole", space.whole),
            ("deltas", space.deltas),
            ("compressed", space.compressed),
            ("logical_bytes", space.logical_bytes),
            ("stored_bytes", space.stored_bytes),
            ("cache_budget_bytes", space.cache.budget_bytes),
            ("cache_used_bytes", space.cache.used_bytes),
            ("cache_entries", space.cache.entries),
            ("cache_hits", space.cache.hits),
            ("cache_misses", space.cache.misses),
        ] {
            out.set_item(key, value)?;
        }
        out.set_item("longest_chain", space.longest_chain)?;
        out.set_item("ratio", space.ratio())?;
        Ok(out)
    }

    /// Counters of the index and write path.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.inner.stats();
        let out = PyDict::new(py);
        for (key, value) in [
            ("threads", stats.threads),
            ("checkpoints", stats.checkpoints),
            ("blobs", stats.blobs),
            ("write_records", stats.write_records),
            ("segments", stats.segments),
            ("commits", stats.commits),
            ("frames", stats.frames),
            ("fsyncs", stats.fsyncs),
            ("bytes_written", stats.bytes_written),
            ("run_ids", stats.run_ids),
        ] {
            out.set_item(key, value)?;
        }
        Ok(out)
    }
}

/// LangGraph's `get_checkpoint_metadata(config, metadata)` as `put` computes it natively, or
/// `None` for a shape `put` leaves to LangGraph's own function (the test compares the two).
#[pyfunction(name = "checkpoint_metadata")]
fn native_checkpoint_metadata<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
    metadata: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    checkpoint_metadata::merged(py, config, metadata)
}

/// The native half of `logsaver`: the Rust store behind `logsaver.LogSaver`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(native_checkpoint_metadata, m)?)?;
    m.add_class::<Store>()?;
    m.add_class::<StoredCheckpoint>()?;
    m.add_class::<TupleIter>()?;
    // One source for the version: the workspace's Cargo.toml (pyproject.toml reads it too).
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
