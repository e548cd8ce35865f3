//! Weights and whole models on disk, in safetensors.
//!
//! - `save_weights` writes every parameter under its Keras name
//!   (`conv2d/kernel`, `conv2d/bias`, `dense/kernel`, ...), f32 little-endian,
//!   conv kernels HWIO and dense kernels `[in, out]` as Keras stores them.
//! - `save` writes the same file plus the architecture JSON in the safetensors
//!   metadata (`convnet.model`), so [`Model::load`] rebuilds the model alone.
//!
//! The same model always gives the same file bytes: the header is written in
//! a fixed order (metadata keys sorted, tensors by name), so checkpoints can
//! be compared by hash.
//!
//! Writes are atomic: a temporary file in the same directory is written,
//! fsynced and renamed over the target, then the directory is fsynced, so a
//! crash never leaves half a checkpoint where the old one was.
//!
//! Loads validate everything (format, every name present, no extra tensor,
//! dtype, shape) and convert every tensor before assigning any, so a bad
//! file is an `Err` and leaves the model unchanged.

use crate::model::Model;
use crate::{Error, Result};
use convnet_tensor::Tensor;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Metadata key holding the architecture JSON in whole-model files.
pub const MODEL_METADATA_KEY: &str = "convnet.model";
/// Metadata key naming the writer and format version.
pub const FORMAT_METADATA_KEY: &str = "format";
/// The value of [`FORMAT_METADATA_KEY`] in files this crate writes.
pub const FORMAT: &str = "convnet-1";

/// Writes `bytes` to `path` atomically: temp file in the same directory,
/// write, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path")))?;
    let tmp = dir.join(format!(".{}.tmp.{}", file_name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself; directories cannot be opened for sync on every platform.
        #[cfg(unix)]
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// A JSON string literal (quotes and escapes as serde_json writes them).
fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

impl Model {
    /// The parameters as safetensors bytes, byte for byte the same for the
    /// same weights and metadata, in any process.
    ///
    /// `safetensors::serialize` takes the metadata as a `HashMap` and writes
    /// it in hash order, which differs between maps, so two saves of one model
    /// could differ in the header. This writes the same format itself, in a
    /// fixed order: the 8-byte little-endian header length; the JSON header
    /// with `__metadata__` first (keys sorted), then every tensor in the order
    /// `safetensors::serialize` uses (by name; all are F32) as
    /// `{"dtype":"F32","shape":[..],"data_offsets":[begin,end]}`; spaces up to
    /// a multiple of 8 bytes; then the f32 little-endian data, back to back.
    /// With one metadata key the output equals `safetensors::serialize`'s
    /// (a test checks it), so any safetensors reader loads it.
    fn to_safetensors(&self, metadata: &BTreeMap<&str, String>) -> Result<Vec<u8>> {
        let mut tensors: Vec<(&str, &Tensor)> = self.params.iter().map(|(_, name, value, _)| (name, value)).collect();
        tensors.sort_by(|a, b| a.0.cmp(b.0));
        let mut header = String::from("{\"__metadata__\":{");
        for (i, (key, value)) in metadata.iter().enumerate() {
            if i > 0 {
                header.push(',');
            }
            header.push_str(&json_string(key));
            header.push(':');
            header.push_str(&json_string(value));
        }
        header.push('}');
        let too_big = || Error::invalid("weights", "the parameters do not fit in one file's offsets");
        let mut offset = 0usize;
        for (name, value) in &tensors {
            let dims: Vec<String> = value.shape().dims().iter().map(|d| d.to_string()).collect();
            let end = value.len().checked_mul(4).and_then(|n| n.checked_add(offset)).ok_or_else(too_big)?;
            header.push_str(&format!(
                ",{}:{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
                json_string(name),
                dims.join(",")
            ));
            offset = end;
        }
        header.push('}');
        let padded = header.len().div_ceil(8).checked_mul(8).ok_or_else(too_big)?;
        let total = padded.checked_add(8).and_then(|n| n.checked_add(offset)).ok_or_else(too_big)?;
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(&(padded as u64).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.resize(8 + padded, b' ');
        for (_, value) in &tensors {
            bytes.extend(value.data().iter().flat_map(|x| x.to_le_bytes()));
        }
        debug_assert_eq!(bytes.len(), total);
        Ok(bytes)
    }

    /// The weights as safetensors bytes (what [`Model::save_weights`] writes):
    /// the same weights always give the same bytes.
    pub fn weights_to_bytes(&self) -> Result<Vec<u8>> {
        self.to_safetensors(&BTreeMap::from([(FORMAT_METADATA_KEY, FORMAT.to_string())]))
    }

    /// The whole model (architecture JSON in the metadata, and the weights) as
    /// safetensors bytes (what [`Model::save`] writes): the same model always
    /// gives the same bytes, so checkpoints can be compared by hash.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.to_safetensors(&BTreeMap::from([
            (FORMAT_METADATA_KEY, FORMAT.to_string()),
            (MODEL_METADATA_KEY, self.to_json()),
        ]))
    }

    /// Saves every parameter to a safetensors file under Keras names, atomically.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), &self.weights_to_bytes()?)
    }

    /// Saves the architecture (JSON in the safetensors metadata) and the
    /// weights in one file, atomically; [`Model::load`] reads it back. The
    /// same model always writes the same bytes ([`Model::to_bytes`]).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), &self.to_bytes()?)
    }

    /// Loads a whole model written by [`Model::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| Error::weights(path, describe(&e)))?;
        let json = meta.metadata().as_ref().and_then(|m| m.get(MODEL_METADATA_KEY)).ok_or_else(|| {
            Error::weights(path, "no model architecture in the file (written by save_weights, not save?)")
        })?;
        let mut model = Model::from_json(json).map_err(|e| Error::weights(path, e.to_string()))?;
        model.load_weights_bytes(&bytes).map_err(|e| Error::weights(path, e.to_string()))?;
        Ok(model)
    }

    /// Loads weights written by [`Model::save_weights`] or [`Model::save`]
    /// (or any safetensors file with the same names, f32, same shapes). On any
    /// error the model is left unchanged.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        self.load_weights_bytes(&bytes).map_err(|e| match e {
            Error::WeightsFile { reason, .. } => Error::weights(path, reason),
            other => other,
        })
    }

    /// [`Model::load_weights`] from bytes in memory. Validates every tensor
    /// (names, dtype, shapes, lengths) before assigning any.
    pub fn load_weights_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let here = Path::new("<weights>");
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::weights(here, describe(&e)))?;
        let expected: std::collections::HashSet<&str> = self.params.iter().map(|(_, name, _, _)| name).collect();
        let mut extra: Vec<String> =
            st.names().into_iter().filter(|n| !expected.contains(n.as_str())).cloned().collect();
        if !extra.is_empty() {
            extra.sort();
            return Err(Error::weights(here, format!("tensors not in the model: {}", extra.join(", "))));
        }
        let mut staged = Vec::with_capacity(self.params.len());
        for (id, name, value, _) in self.params.iter() {
            let t = st.tensor(name).map_err(|_| Error::weights(here, format!("missing tensor {name}")))?;
            if t.dtype() != Dtype::F32 {
                return Err(Error::weights(here, format!("{} has dtype {:?}, expected F32", name, t.dtype())));
            }
            if t.shape() != value.shape().dims() {
                return Err(Error::weights(
                    here,
                    format!("{} has shape {:?}, the model expects {:?}", name, t.shape(), value.shape().dims()),
                ));
            }
            let data = t.data();
            if data.len() != value.len() * 4 {
                return Err(Error::weights(
                    here,
                    format!("{} holds {} bytes, expected {}", name, data.len(), value.len() * 4),
                ));
            }
            let values: Vec<f32> = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            staged.push((id, values));
        }
        for (id, values) in staged {
            self.params.set_value(id, &values)?;
        }
        Ok(())
    }
}

fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "not a safetensors file: shorter than its 8-byte header length".into(),
        E::HeaderTooLarge | E::InvalidHeaderLength => "corrupt or truncated safetensors header".into(),
        E::InvalidHeader | E::InvalidHeaderStart | E::InvalidHeaderDeserialization => {
            "corrupt safetensors header (not valid JSON)".into()
        }
        E::MetadataIncompleteBuffer => "truncated or padded: the data does not match the header's offsets".into(),
        other => format!("invalid safetensors file: {other:?}"),
    }
}
