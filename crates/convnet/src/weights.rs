//! Weights and whole models on disk, in safetensors.
//!
//! - `save_weights` writes every parameter under its Keras name
//!   (`conv2d/kernel`, `conv2d/bias`, `dense/kernel`, ...), f32 little-endian,
//!   conv kernels HWIO and dense kernels `[in, out]` as Keras stores them.
//! - `save` writes the same file plus the architecture JSON in the safetensors
//!   metadata (`convnet.model`), so [`Model::load`] rebuilds the model alone.
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
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
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

fn f32_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Model {
    fn to_safetensors(&self, metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .params
            .iter()
            .map(|(_, name, value, _)| (name.to_string(), f32_bytes(value.data()), value.shape().dims().to_vec()))
            .collect();
        let views = bytes
            .iter()
            .map(|(name, data, dims)| TensorView::new(Dtype::F32, dims.clone(), data).map(|v| (name.as_str(), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::invalid("weights", format!("{e:?}")))?;
        safetensors::serialize(views, &metadata).map_err(|e| Error::invalid("weights", format!("{e:?}")))
    }

    /// The weights as safetensors bytes (what [`Model::save_weights`] writes).
    pub fn weights_to_bytes(&self) -> Result<Vec<u8>> {
        let meta = HashMap::from([(FORMAT_METADATA_KEY.to_string(), FORMAT.to_string())]);
        self.to_safetensors(Some(meta))
    }

    /// Saves every parameter to a safetensors file under Keras names, atomically.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), &self.weights_to_bytes()?)
    }

    /// Saves the architecture (JSON in the safetensors metadata) and the
    /// weights in one file, atomically; [`Model::load`] reads it back.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let meta = HashMap::from([
            (FORMAT_METADATA_KEY.to_string(), FORMAT.to_string()),
            (MODEL_METADATA_KEY.to_string(), self.to_json()),
        ]);
        write_atomic(path.as_ref(), &self.to_safetensors(Some(meta))?)
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
