//! LangGraph's `get_checkpoint_metadata` (`langgraph.checkpoint.base`), natively, for the shapes
//! LangGraph's own loop passes: `put`'s metadata a dict, the config a dict whose `metadata` is a
//! dict or a `collections.ChainMap` of dicts (what LangGraph's config merging makes) and whose
//! `configurable` is a dict, every key an exact `str`. Anything else is left to LangGraph's
//! function.
//!
//! Why: that function cost a sixth of a `flush` put in the replay profile, most of it iterating
//! the ChainMap in Python. The result is the same dict, key order and value objects included:
//! the metadata's own items with NUL characters removed from strings, then the config's
//! `metadata` and `configurable` items that are str, int, bool or float (as `isinstance` sees
//! them, a `__class__` property included), whose key is not already there, not in
//! `EXCLUDED_METADATA_KEYS` (read from LangGraph) and not `__`-prefixed. With exact-str keys no
//! Python code runs while the dicts are read (their hashing and comparison are the builtins'),
//! so nothing can change them under the merge. A test compares both functions on these shapes
//! and on the ones left to LangGraph.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PySet, PyString, PyTuple};

/// LangGraph's `EXCLUDED_METADATA_KEYS` and Python's `collections.ChainMap`, looked up once.
static EXCLUDED_KEYS: PyOnceLock<Py<PySet>> = PyOnceLock::new();
static CHAIN_MAP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A mapping's `(key, value)` pairs in the order its `.items()` yields them.
type Items<'py> = Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>;

/// `get_checkpoint_metadata(config, metadata)`, or `None` for a shape left to LangGraph's own.
pub(crate) fn merged<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
    metadata: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let (Ok(config), Ok(metadata)) = (config.cast_exact::<PyDict>(), metadata.cast_exact::<PyDict>()) else {
        return Ok(None);
    };
    let Some(own) = str_keyed_items(metadata) else { return Ok(None) };
    let excluded = EXCLUDED_KEYS
        .get_or_try_init(py, || -> PyResult<Py<PySet>> {
            let keys = py.import("langgraph.checkpoint.base")?.getattr("EXCLUDED_METADATA_KEYS")?;
            Ok(keys.cast_into_exact::<PySet>()?.unbind())
        })?
        .bind(py);
    // Each source of config items, in LangGraph's order. Every shape is checked before anything
    // is merged.
    let mut sources = Vec::with_capacity(2);
    for name in [pyo3::intern!(py, "metadata"), pyo3::intern!(py, "configurable")] {
        let Some(source) = config.get_item(name)? else { continue };
        match items_of(py, &source)? {
            Some(items) => sources.push(items),
            None => return Ok(None),
        }
    }
    let merged = PyDict::new(py);
    for (key, value) in own {
        let value = if is_str(py, &value)? { without_nul(py, &value)? } else { value };
        merged.set_item(key, value)?;
    }
    for items in sources {
        for (key, value) in items {
            if merged.contains(&key)? || excluded.contains(&key)? || is_dunder(py, key.cast::<PyString>()?)? {
                continue;
            }
            if is_str(py, &value)? {
                merged.set_item(key, without_nul(py, &value)?)?;
            } else if is_number(py, &value)? {
                // `bool` is an `int` subclass: kept, as LangGraph keeps it.
                merged.set_item(key, value)?;
            }
        }
    }
    Ok(Some(merged))
}

/// A dict's items when every key is an exact str (taken at once: no Python code runs while a
/// dict of such keys is read); `None` otherwise.
fn str_keyed_items<'py>(dict: &Bound<'py, PyDict>) -> Option<Items<'py>> {
    let items: Items<'py> = dict.iter().collect();
    items.iter().all(|(key, _)| key.is_exact_instance_of::<PyString>()).then_some(items)
}

/// A config source's items as LangGraph's loop sees them (`if not obj: continue`, then
/// `obj.items()`): empty for a falsy source, `None` for a shape left to LangGraph.
fn items_of<'py>(py: Python<'py>, source: &Bound<'py, PyAny>) -> PyResult<Option<Items<'py>>> {
    if source.is_none() {
        return Ok(Some(Vec::new()));
    }
    if let Ok(dict) = source.cast_exact::<PyDict>() {
        return Ok(str_keyed_items(dict));
    }
    let chain_map = CHAIN_MAP
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> { Ok(py.import("collections")?.getattr("ChainMap")?.unbind()) })?
        .bind(py);
    if !source.get_type().is(chain_map) {
        return Ok(None);
    }
    let Ok(maps) = source.getattr(pyo3::intern!(py, "maps"))?.cast_into_exact::<PyList>() else {
        return Ok(None);
    };
    let mut dicts = Vec::with_capacity(maps.len());
    for map in maps.iter() {
        let Ok(dict) = map.cast_into_exact::<PyDict>() else { return Ok(None) };
        let Some(items) = str_keyed_items(&dict) else { return Ok(None) };
        dicts.push((dict, items));
    }
    // ChainMap's iteration: keys in the order `dict.fromkeys` of each map, last map first, would
    // give them (a key set again keeps its place, as `dict.update` does); each key's value from
    // the first map that has it.
    let keys = PyDict::new(py);
    for (_, items) in dicts.iter().rev() {
        for (key, _) in items {
            keys.set_item(key, py.None())?;
        }
    }
    let mut items = Vec::with_capacity(keys.len());
    for key in keys.keys() {
        let value = dicts.iter().find_map(|(dict, _)| dict.get_item(&key).transpose()).transpose()?;
        let Some(value) = value else { return Ok(None) };
        items.push((key, value));
    }
    Ok(Some(items))
}

/// Of an exact builtin type (whose `__class__` is its type): for it `isinstance` is the C
/// type check, with no `__class__` to consult.
fn is_plain_builtin(value: &Bound<'_, PyAny>) -> bool {
    value.is_none()
        || value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyInt>()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyDict>()
        || value.is_exact_instance_of::<PyList>()
        || value.is_exact_instance_of::<PyTuple>()
        || value.is_exact_instance_of::<PyBytes>()
}

/// `isinstance(value, str)`: the C check, and when it says no for a value of another type,
/// Python's own `isinstance`, which also honours a `__class__` property (proxies, mocks).
fn is_str(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
    if value.is_instance_of::<PyString>() {
        return Ok(true);
    }
    if is_plain_builtin(value) {
        return Ok(false);
    }
    value.is_instance(&py.get_type::<PyString>())
}

/// `isinstance(value, (int, bool, float))`, decided as [`is_str`] decides.
fn is_number(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
    if value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>() {
        return Ok(true);
    }
    if is_plain_builtin(value) {
        return Ok(false);
    }
    Ok(value.is_instance(&py.get_type::<PyInt>())? || value.is_instance(&py.get_type::<PyFloat>())?)
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
