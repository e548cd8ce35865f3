//! Weights and whole models on disk, in safetensors.
//!
//! - `save_weights` writes every parameter under its Keras name
//!   (`conv2d/kernel`, `conv2d/bias`, `dense/kernel`, ...), f32 little-endian,
//!   conv kernels HWIO and dense kernels `[in, out]` as Keras stores them.
//! - `save` writes the same file plus the architecture JSON in the safetensors
//!   metadata (`convnet.model`), so [`Model::load`] rebuilds the model alone,
//!   and the model's own metadata entries ([`Model::metadata`]: class names,
//!   the pixel scale of its training data) beside it.
//!
//! The same model always gives the same file bytes: the header is written in
//! a fixed order (metadata keys sorted, tensors by name), so checkpoints can
//! be compared by hash.
//!
//! Writes are atomic ([`write_atomic`], see [`crate::files`]): a temporary
//! file in the same directory is written, fsynced and renamed over the
//! target, then the directory is fsynced, so a crash never leaves half a
//! checkpoint where the old one was; a target that is not a regular file is
//! refused, never replaced.
//!
//! Loads read only regular files of bounded size ([`LoadOptions`]) and
//! validate everything before allocating or assigning anything: the
//! architecture of a whole-model file against the [`Limits`] (parameter
//! count, activation memory), then every tensor against the architecture
//! (every name present, no extra tensor, dtype, shape, finite values), so a
//! bad file is an `Err` naming the file and the problem and leaves the
//! model unchanged.

use crate::limits::Limits;
use crate::model::Model;
use crate::{Error, Result, Sequential};
use convnet_tensor::Tensor;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// Metadata key holding the architecture JSON in whole-model files.
pub const MODEL_METADATA_KEY: &str = "convnet.model";
/// Metadata key naming the writer and format version.
pub const FORMAT_METADATA_KEY: &str = "format";
/// The value of [`FORMAT_METADATA_KEY`] in files this crate writes.
pub const FORMAT: &str = "convnet-1";

pub use crate::files::write_atomic;

/// How [`Model::load_with`] and [`Model::load_weights_with`] treat a file.
///
/// ```
/// use convnet::weights::LoadOptions;
/// let opts = LoadOptions { allow_non_finite: true, ..LoadOptions::default() };
/// assert!(opts.allow_non_finite && !LoadOptions::default().allow_non_finite);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The file size and (for whole models) the architecture's limits.
    pub limits: Limits,
    /// Accept NaN and infinite weights. Off by default: such a model
    /// predicts NaN (or garbage after a softmax) without a word, so a file
    /// holding one is refused, naming the tensor and the first bad index.
    pub allow_non_finite: bool,
}

/// The architecture JSON stored in a whole-model file's metadata, `None`
/// for a weights-only file; `Err` when `bytes` is not a safetensors file.
/// Only the header is parsed.
pub fn architecture_of(bytes: &[u8]) -> Result<Option<String>> {
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| Error::weights(Path::new(BYTES_NAME), describe(&e)))?;
    Ok(meta.metadata().as_ref().and_then(|m| m.get(MODEL_METADATA_KEY)).cloned())
}

/// The name errors give a file loaded from bytes in memory.
const BYTES_NAME: &str = "<weights>";

/// Lists at most this many names in an error, then "and N more".
const NAMES_SHOWN: usize = 5;

/// `a, b, c, d, e and 199995 more` (sorted).
fn some_names(mut names: Vec<&str>) -> String {
    names.sort_unstable();
    let shown = names.iter().take(NAMES_SHOWN).copied().collect::<Vec<_>>().join(", ");
    match names.len().checked_sub(NAMES_SHOWN) {
        Some(more) if more > 0 => format!("{shown} and {more} more"),
        _ => shown,
    }
}

/// Checks the tensors described by `meta` against the parameters the model
/// expects (`(name, dims)` in order) before anything is allocated: no name
/// missing, none extra, every dtype f32, every shape equal, and (unless
/// allowed) every value finite. Returns, per expected parameter, the byte
/// range of its data in the file.
fn check_tensors(
    bytes: &[u8],
    header_len: usize,
    meta: &safetensors::tensor::Metadata,
    expected: &[(String, Vec<usize>)],
    opts: &LoadOptions,
) -> std::result::Result<Vec<std::ops::Range<usize>>, String> {
    let infos = meta.tensors();
    let wanted: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let extra: Vec<&str> = infos.keys().map(String::as_str).filter(|n| !wanted.contains(n)).collect();
    if !extra.is_empty() {
        return Err(format!("{} tensor(s) not in the model: {}", extra.len(), some_names(extra)));
    }
    let data_start = 8 + header_len;
    let mut ranges = Vec::with_capacity(expected.len());
    for (name, dims) in expected {
        let Some(info) = infos.get(name.as_str()) else {
            let missing: Vec<&str> =
                expected.iter().map(|(n, _)| n.as_str()).filter(|n| !infos.contains_key(*n)).collect();
            return Err(format!("{} tensor(s) of the model missing: {}", missing.len(), some_names(missing)));
        };
        if info.dtype != Dtype::F32 {
            return Err(format!("tensor {name} has dtype {:?}, expected F32", info.dtype));
        }
        if info.shape != *dims {
            return Err(format!("tensor {name} has shape {:?}, the model expects {:?}", info.shape, dims));
        }
        // `read_metadata` checked that the offsets tile the data exactly.
        let (s, e) = info.data_offsets;
        let range = data_start + s..data_start + e;
        if range.end > bytes.len() || range.len() % 4 != 0 {
            return Err(format!("tensor {name}: data offsets {s}..{e} do not fit the file"));
        }
        if !opts.allow_non_finite {
            let bad = bytes[range.clone()]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .enumerate()
                .filter(|(_, v)| !v.is_finite());
            let mut count = 0usize;
            let mut first = None;
            for (i, v) in bad {
                first.get_or_insert((i, v));
                count += 1;
            }
            if let Some((i, v)) = first {
                return Err(format!(
                    "tensor {name} holds {count} non-finite value{} (the first, at flat index {i}, is {v}); \
                     refusing to load it (opt in with LoadOptions::allow_non_finite or --allow-non-finite)",
                    if count == 1 { "" } else { "s" }
                ));
            }
        }
        ranges.push(range);
    }
    Ok(ranges)
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
        let mut metadata: BTreeMap<&str, String> = self.metadata.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        metadata.insert(FORMAT_METADATA_KEY, FORMAT.to_string());
        metadata.insert(MODEL_METADATA_KEY, self.to_json());
        self.to_safetensors(&metadata)
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

    /// Loads a whole model written by [`Model::save`], within the default
    /// limits, refusing non-finite weights ([`LoadOptions::default`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, &LoadOptions::default())
    }

    /// Loads a whole model written by [`Model::save`]. The file must be a
    /// regular file within `opts.limits.max_file_bytes` (checked from its
    /// metadata before it is read); its architecture is checked against
    /// `opts.limits` and its tensors against the architecture before any
    /// weight is allocated.
    pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
        let path = path.as_ref();
        let bytes = crate::files::read_regular_file(path, opts.limits.max_file_bytes)?;
        Model::load_bytes_impl(&bytes, opts).map_err(|reason| Error::weights(path, reason))
    }

    /// [`Model::load_with`] from the bytes of a whole-model file in memory.
    pub fn load_bytes_with(bytes: &[u8], opts: &LoadOptions) -> Result<Model> {
        Model::load_bytes_impl(bytes, opts).map_err(|reason| Error::weights(Path::new(BYTES_NAME), reason))
    }

    fn load_bytes_impl(bytes: &[u8], opts: &LoadOptions) -> std::result::Result<Model, String> {
        let (header_len, meta) = SafeTensors::read_metadata(bytes).map_err(|e| describe(&e))?;
        let json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(MODEL_METADATA_KEY))
            .ok_or("no model architecture in the file (written by save_weights, not save?)")?;
        let seq = Sequential::from_json(json).map_err(|e| format!("metadata {MODEL_METADATA_KEY}: {e}"))?;
        let frozen = seq.frozen;
        let plan = crate::plan::plan(seq.name, seq.layers, seq.seed, &opts.limits)
            .map_err(|e| format!("metadata {MODEL_METADATA_KEY}: {e}"))?;
        let expected: Vec<(String, Vec<usize>)> = plan
            .layers
            .iter()
            .flat_map(|l| l.params.iter().map(move |p| (format!("{}/{}", l.name, p.kind), p.dims.clone())))
            .collect();
        let ranges = check_tensors(bytes, header_len, &meta, &expected, opts)?;
        // Everything is checked: only now are the weights allocated.
        let mut model = Model::from_plan(plan, false).map_err(|e| e.to_string())?;
        model.freeze_named(&frozen).map_err(|e| format!("metadata {MODEL_METADATA_KEY}: {e}"))?;
        model.assign(bytes, &ranges).map_err(|e| e.to_string())?;
        for (key, value) in meta.metadata().iter().flatten() {
            if key != FORMAT_METADATA_KEY && key != MODEL_METADATA_KEY {
                model.set_metadata(key.clone(), value.clone()).map_err(|e| e.to_string())?;
            }
        }
        Ok(model)
    }

    /// Loads weights written by [`Model::save_weights`] or [`Model::save`]
    /// (or any safetensors file with the same names, f32, same shapes),
    /// refusing non-finite values. On any error the model is left unchanged.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.load_weights_with(path, &LoadOptions::default())
    }

    /// [`Model::load_weights`] with options: the file must be a regular file
    /// of at most `opts.limits.max_file_bytes` (checked before it is read).
    pub fn load_weights_with(&mut self, path: impl AsRef<Path>, opts: &LoadOptions) -> Result<()> {
        let path = path.as_ref();
        let bytes = crate::files::read_regular_file(path, opts.limits.max_file_bytes)?;
        self.load_weights_impl(&bytes, opts).map_err(|reason| Error::weights(path, reason))
    }

    /// [`Model::load_weights`] from bytes in memory. Validates every tensor
    /// (names, dtype, shapes, lengths, finiteness) before assigning any.
    pub fn load_weights_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.load_weights_bytes_with(bytes, &LoadOptions::default())
    }

    /// [`Model::load_weights_bytes`] with options.
    pub fn load_weights_bytes_with(&mut self, bytes: &[u8], opts: &LoadOptions) -> Result<()> {
        self.load_weights_impl(bytes, opts).map_err(|reason| Error::weights(Path::new(BYTES_NAME), reason))
    }

    fn load_weights_impl(&mut self, bytes: &[u8], opts: &LoadOptions) -> std::result::Result<(), String> {
        let (header_len, meta) = SafeTensors::read_metadata(bytes).map_err(|e| describe(&e))?;
        let expected: Vec<(String, Vec<usize>)> =
            self.params.iter().map(|(_, name, value, _)| (name.to_string(), value.shape().dims().to_vec())).collect();
        let ranges = check_tensors(bytes, header_len, &meta, &expected, opts)?;
        self.assign(bytes, &ranges).map_err(|e| e.to_string())
    }

    /// Copies each parameter's little-endian f32 data from `bytes[range]`
    /// (ranges checked by `check_tensors`, in parameter order).
    fn assign(&mut self, bytes: &[u8], ranges: &[std::ops::Range<usize>]) -> Result<()> {
        let ids: Vec<_> = self.params.ids().collect();
        for (id, range) in ids.into_iter().zip(ranges) {
            let dst = self.params.value_mut(id)?.data_mut();
            for (d, b) in dst.iter_mut().zip(bytes[range.clone()].chunks_exact(4)) {
                *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Ok(())
    }
}

/// A safetensors parse error in plain words (never a Debug string).
fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "not a safetensors file: shorter than its 8-byte header length".into(),
        E::HeaderTooLarge => "not a safetensors file: the header length is over the format's 100 MB limit".into(),
        E::InvalidHeaderLength => "truncated: the header length is larger than the file".into(),
        E::InvalidHeader | E::InvalidHeaderStart => "corrupt safetensors header (not UTF-8 JSON)".into(),
        E::InvalidHeaderDeserialization | E::JsonError(_) => {
            "corrupt safetensors header (not valid JSON, or a tensor entry without dtype, shape and data_offsets)"
                .into()
        }
        E::MetadataIncompleteBuffer => "truncated or padded: the data does not match the header's offsets".into(),
        E::InvalidOffset(name) => {
            let name: String = name.chars().take(100).collect();
            format!("corrupt safetensors header: the data offsets of tensor {name:?} overlap or leave a gap")
        }
        E::TensorInvalidInfo => "corrupt safetensors header: a tensor's data size does not match its shape".into(),
        E::ValidationOverflow => "corrupt safetensors header: a tensor's shape overflows".into(),
        E::TensorNotFound(name) => format!("no tensor named {:?}", name.chars().take(100).collect::<String>()),
        E::InvalidTensorView(dtype, shape, len) => {
            format!("a {dtype:?} tensor of shape {shape:?} cannot hold {len} bytes")
        }
        E::IoError(e) => format!("read error: {e}"),
    }
}
