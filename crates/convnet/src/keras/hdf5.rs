//! The few HDF5 reads Keras files need, on the pure-Rust `hdf5-pure` crate
//! (no system libhdf5): string-list attributes in every form Keras and h5py
//! write them, and float32 datasets read only after their shape and dtype
//! matched what the model expects.

use hdf5_pure::{AttrValue, DType, Dataset, Group};
use std::collections::HashMap;

/// A file's or group's attributes by name.
pub(crate) type Attrs = HashMap<String, AttrValue>;

/// An HDF5 file held in memory.
pub(crate) fn open(bytes: Vec<u8>) -> Result<hdf5_pure::File, String> {
    if !hdf5_pure::is_hdf5_bytes(&bytes) {
        return Err("not an HDF5 file (no HDF5 signature)".into());
    }
    hdf5_pure::File::from_bytes(bytes).map_err(|e| format!("corrupt or truncated HDF5 file: {e}"))
}

/// The attributes of `g`, or an error naming `what`.
pub(crate) fn attrs(g: &Group, what: &str) -> Result<Attrs, String> {
    g.attrs().map_err(|e| format!("{what}: cannot read its attributes: {e}"))
}

/// A list-of-strings attribute: fixed-length (the downloadable ImageNet
/// files), variable-length (Keras 3, h5py), ASCII or UTF-8, one string or an
/// array; an empty numeric array (what h5py writes for an empty list, e.g.
/// `weight_names` of a layer without weights) is the empty list. `None` when absent.
pub(crate) fn string_list(attrs: &Attrs, key: &str) -> Result<Option<Vec<String>>, String> {
    let Some(v) = attrs.get(key) else { return Ok(None) };
    let list = match v {
        AttrValue::String(s)
        | AttrValue::AsciiString(s)
        | AttrValue::VarLenString(s)
        | AttrValue::VarLenAsciiString(s)
        | AttrValue::StringSized { value: s, .. }
        | AttrValue::AsciiStringSized { value: s, .. } => vec![s.clone()],
        AttrValue::StringArray(v)
        | AttrValue::AsciiStringArray(v)
        | AttrValue::VarLenStringArray(v)
        | AttrValue::VarLenAsciiStringArray(v)
        | AttrValue::VarLenAsciiCharArray(v)
        | AttrValue::StringArraySized { values: v, .. }
        | AttrValue::AsciiStringArraySized { values: v, .. } => v.clone(),
        AttrValue::F64Array(v) if v.is_empty() => Vec::new(),
        AttrValue::F32Array(v) if v.is_empty() => Vec::new(),
        _ => return Err(format!("attribute {key} is not a list of strings")),
    };
    Ok(Some(list))
}

/// A string-list attribute Keras may split into `key0`, `key1`, ... when it
/// would exceed HDF5's 64 KB object header (long `layer_names`, `weight_names`).
pub(crate) fn split_string_list(attrs: &Attrs, key: &str) -> Result<Option<Vec<String>>, String> {
    if let Some(v) = string_list(attrs, key)? {
        return Ok(Some(v));
    }
    let mut out: Option<Vec<String>> = None;
    for chunk in 0usize.. {
        match string_list(attrs, &format!("{key}{chunk}"))? {
            Some(v) => out.get_or_insert_with(Vec::new).extend(v),
            None => break,
        }
    }
    Ok(out)
}

/// One string attribute (`model_config`, a `vars` group's `name`), `None` when absent.
pub(crate) fn string(attrs: &Attrs, key: &str) -> Result<Option<String>, String> {
    match string_list(attrs, key)? {
        None => Ok(None),
        Some(v) if v.len() == 1 => Ok(v.into_iter().next()),
        Some(_) => Err(format!("attribute {key} is a list, expected one string")),
    }
}

/// Reads the float32 dataset `ds` (called `what` in messages) after checking
/// that its dtype is float32 and its shape is exactly `dims`, so nothing is
/// allocated for a tensor the model cannot take.
pub(crate) fn read_f32(ds: &Dataset, dims: &[usize], what: &str) -> Result<Vec<f32>, String> {
    let shape = ds.shape().map_err(|e| format!("{what}: cannot read its shape: {e}"))?;
    let same = shape.len() == dims.len() && shape.iter().zip(dims).all(|(&a, &b)| a == b as u64);
    if !same {
        return Err(format!("{what} has shape {}, the model expects {}", show(&shape), show(dims)));
    }
    match ds.dtype().map_err(|e| format!("{what}: cannot read its dtype: {e}"))? {
        DType::F32 => {}
        other => return Err(format!("{what} has dtype {other}; convnet reads float32 weights only")),
    }
    let values = ds.read_f32().map_err(|e| format!("{what}: cannot read its data: {e}"))?;
    let expected: usize = dims.iter().product();
    if values.len() != expected {
        return Err(format!("{what} holds {} values, its shape says {expected}", values.len()));
    }
    Ok(values)
}

fn show<T: std::fmt::Display>(d: &[T]) -> String {
    let inner: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    if d.len() == 1 {
        format!("({},)", inner[0])
    } else {
        format!("({})", inner.join(", "))
    }
}
