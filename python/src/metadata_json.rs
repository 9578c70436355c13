//! `put`'s metadata dict written straight to JSON text, the form the store keeps it in.
//!
//! The types `json.dumps` writes as themselves (str, int within 64 bits, finite float, bool,
//! None, lists, tuples, dicts with str keys) are written here with no intermediate map; anything
//! else makes the caller hand the whole dict to `json.dumps` instead, so exotic values behave
//! exactly as `json.dumps` treats them (converted, or refused with its error).

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// Nesting written natively; deeper metadata (or a cycle) takes the `json.dumps` path, which
/// refuses a cycle, and the store refuses more than 128 levels when it reads the text.
const MAX_NATIVE_DEPTH: usize = 64;

/// The metadata as JSON text, or `None` when it holds a value only `json.dumps` may convert.
pub(crate) fn metadata_json(metadata: &Bound<'_, PyDict>) -> Option<String> {
    serde_json::to_string(&Json { value: metadata.as_any(), depth: 0 }).ok()
}

/// A Python value seen as something serde can write.
struct Json<'a, 'py> {
    value: &'a Bound<'py, PyAny>,
    depth: usize,
}

impl Serialize for Json<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.value;
        let not_plain = || S::Error::custom("not a plain JSON value");
        if self.depth > MAX_NATIVE_DEPTH {
            return Err(not_plain());
        }
        let depth = self.depth + 1;
        if value.is_none() {
            serializer.serialize_unit()
        } else if let Ok(flag) = value.cast::<PyBool>() {
            serializer.serialize_bool(flag.is_true())
        } else if let Ok(text) = value.cast::<PyString>() {
            serializer.serialize_str(text.to_str().map_err(|_| not_plain())?)
        } else if value.is_instance_of::<PyInt>() {
            match value.extract::<i64>() {
                Ok(n) => serializer.serialize_i64(n),
                Err(_) => serializer.serialize_u64(value.extract::<u64>().map_err(|_| not_plain())?),
            }
        } else if let Ok(float) = value.cast::<PyFloat>() {
            let x = float.value();
            if x.is_finite() { serializer.serialize_f64(x) } else { Err(not_plain()) }
        } else if let Ok(dict) = value.cast::<PyDict>() {
            let mut map = serializer.serialize_map(Some(dict.len()))?;
            for (key, item) in dict.iter() {
                let key = key.cast::<PyString>().map_err(|_| not_plain())?;
                map.serialize_entry(key.to_str().map_err(|_| not_plain())?, &Json { value: &item, depth })?;
            }
            map.end()
        } else if let Ok(list) = value.cast::<PyList>() {
            let mut seq = serializer.serialize_seq(Some(list.len()))?;
            for item in list.iter() {
                seq.serialize_element(&Json { value: &item, depth })?;
            }
            seq.end()
        } else if let Ok(tuple) = value.cast::<PyTuple>() {
            let mut seq = serializer.serialize_seq(Some(tuple.len()))?;
            for item in tuple.iter() {
                seq.serialize_element(&Json { value: &item, depth })?;
            }
            seq.end()
        } else {
            Err(not_plain())
        }
    }
}
