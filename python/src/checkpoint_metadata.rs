//! LangGraph's `get_checkpoint_metadata` (`langgraph.checkpoint.base`), natively, for the shapes
//! LangGraph's own loop passes: `put`'s metadata a dict, the config a dict whose `metadata` is a
//! dict or a `collections.ChainMap` of dicts (what LangGraph's config merging makes) and whose
//! `configurable` is a dict, every key a `str`. Anything else is left to LangGraph's function.
//!
//! Why: that function cost a sixth of a `flush` put in the replay profile, most of it iterating
//! the ChainMap in Python. The result is the same dict, key order included: the metadata's own
//! items with NUL characters removed from strings, then the config's `metadata` and
//! `configurable` items that are str, int, bool or float, whose key is not already there, not
//! in `EXCLUDED_METADATA_KEYS` (read from LangGraph) and not `__`-prefixed. A test compares
//! both on every shape above and the ones left to LangGraph.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyFloat, PyInt, PyList, PySet, PyString};

/// LangGraph's `EXCLUDED_METADATA_KEYS` and Python's `collections.ChainMap`, looked up once.
static EXCLUDED_KEYS: PyOnceLock<Py<PySet>> = PyOnceLock::new();
static CHAIN_MAP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `get_checkpoint_metadata(config, metadata)`, or `None` for a shape left to LangGraph's own.
pub(crate) fn merged<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
    metadata: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let (Ok(config), Ok(metadata)) = (config.cast_exact::<PyDict>(), metadata.cast_exact::<PyDict>()) else {
        return Ok(None);
    };
    let excluded = EXCLUDED_KEYS
        .get_or_try_init(py, || -> PyResult<Py<PySet>> {
            let keys = py.import("langgraph.checkpoint.base")?.getattr("EXCLUDED_METADATA_KEYS")?;
            Ok(keys.cast_into_exact::<PySet>()?.unbind())
        })?
        .bind(py);
    // Each source of config items, in LangGraph's order: (key, value) pairs as its `.items()`
    // yields them. Every shape is checked before anything is merged.
    let mut sources = Vec::with_capacity(2);
    for name in [pyo3::intern!(py, "metadata"), pyo3::intern!(py, "configurable")] {
        let Some(source) = config.get_item(name)? else { continue };
        match items_of(py, &source)? {
            Some(items) => sources.push(items),
            None => return Ok(None),
        }
    }
    let merged = PyDict::new(py);
    for (key, value) in metadata.iter() {
        let value = if value.is_instance_of::<PyString>() { without_nul(py, &value)? } else { value };
        merged.set_item(key, value)?;
    }
    for items in sources {
        for (key, value) in items {
            // Checked by `items_of`: every key is an exact str.
            if merged.contains(&key)? || excluded.contains(&key)? || is_dunder(py, key.cast::<PyString>()?)? {
                continue;
            }
            if value.is_instance_of::<PyString>() {
                merged.set_item(key, without_nul(py, &value)?)?;
            } else if value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>() {
                // `bool` is an `int` subclass: kept, as LangGraph keeps it.
                merged.set_item(key, value)?;
            }
        }
    }
    Ok(Some(merged))
}

/// A mapping's `(key, value)` pairs in the order its `.items()` yields them.
type Items<'py> = Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>;

/// A config source's items as LangGraph's loop sees them (`if not obj: continue`, then
/// `obj.items()`): empty for a falsy source, `None` for a shape left to LangGraph.
fn items_of<'py>(py: Python<'py>, source: &Bound<'py, PyAny>) -> PyResult<Option<Items<'py>>> {
    if source.is_none() {
        return Ok(Some(Vec::new()));
    }
    let items: Items<'py> = if let Ok(dict) = source.cast_exact::<PyDict>() {
        dict.iter().collect()
    } else {
        let chain_map = CHAIN_MAP
            .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                Ok(py.import("collections")?.getattr("ChainMap")?.unbind())
            })?
            .bind(py);
        if !source.get_type().is(chain_map) {
            return Ok(None);
        }
        let Ok(maps) = source.getattr(pyo3::intern!(py, "maps"))?.cast_into_exact::<PyList>() else {
            return Ok(None);
        };
        let maps: Vec<Bound<'py, PyDict>> = match maps.iter().map(Bound::cast_into_exact::<PyDict>).collect() {
            Ok(maps) => maps,
            Err(_) => return Ok(None),
        };
        // ChainMap's iteration: keys in the order `dict.fromkeys` of each map, last map first,
        // would give them; each key's value from the first map that has it.
        let keys = PyDict::new(py);
        for map in maps.iter().rev() {
            for key in map.keys() {
                // Setting a key already there keeps its place, as `dict.update` does.
                keys.set_item(&key, py.None())?;
            }
        }
        let mut items = Vec::with_capacity(keys.len());
        for key in keys.keys() {
            let value = maps.iter().find_map(|map| map.get_item(&key).transpose()).transpose()?;
            let Some(value) = value else { return Ok(None) };
            items.push((key, value));
        }
        items
    };
    // A key LangGraph would call `startswith` on must be a str; anything else is its to handle.
    if items.iter().any(|(key, _)| !key.is_exact_instance_of::<PyString>()) {
        return Ok(None);
    }
    Ok(Some(items))
}

/// `key.startswith("__")`.
fn is_dunder(py: Python<'_>, key: &Bound<'_, PyString>) -> PyResult<bool> {
    match key.to_str() {
        Ok(text) => Ok(text.starts_with("__")),
        // Not UTF-8 (a lone surrogate): Python's own method.
        Err(_) => key.call_method1(pyo3::intern!(py, "startswith"), ("__",))?.is_truthy(),
    }
}

/// `value.replace("\u0000", "")` for a str `value`: itself when exact and free of NULs.
fn without_nul<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let nul = pyo3::intern!(py, "\u{0}");
    if value.is_exact_instance_of::<PyString>() && !value.contains(nul)? {
        return Ok(value.clone());
    }
    value.call_method1(pyo3::intern!(py, "replace"), (nul, pyo3::intern!(py, "")))
}
