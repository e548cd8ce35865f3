//! Keras model and weight files in: `.keras` archives, Keras 3
//! `.weights.h5`, and the legacy Keras 2 HDF5 layout (`model.save("x.h5")`,
//! `save_weights("x.h5")`, the downloadable ImageNet weight files).
//!
//! ```no_run
//! // model = keras.saving.load_model("model.keras")
//! let model = convnet::keras::load_model("model.keras")?;
//! print!("{}", model.summary());
//!
//! // model.load_weights("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
//! let mut base = convnet::keras::load_model("conv_base.keras")?;
//! base.load_keras_weights("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")?;
//! # Ok::<(), convnet::Error>(())
//! ```
//!
//! - `archive`: the `.keras` zip (`config.json`, `model.weights.h5`).
//! - `config`: Keras architecture JSON to a [`Sequential`]: Sequential
//!   models, single-chain Functional models, and either holding such a model
//!   as a layer (inlined).
//! - `layouts`: the Keras 3 and Keras 2 HDF5 weight layouts.
//! - `hdf5`: the HDF5 reads, on the pure-Rust `hdf5-pure` crate.
//!
//! Hostile files: a file is read only if it is a regular file of at most
//! [`Limits::max_file_bytes`]; an archive member's size is checked against
//! what the archive can hold before it is read; the architecture's parameter
//! count is computed (checked arithmetic, no allocation) and held to
//! [`Limits::max_params`] before the model is built; every tensor's dtype and
//! shape is checked against the model before its data is read; and all
//! tensors are read before any is assigned, so a failed load leaves a model
//! unchanged. Errors name the file and the layer or tensor.

mod any;
mod archive;
mod config;
mod hdf5;
mod layouts;
mod save;

use crate::layers::InputShape;
use crate::model::{Model, Sequential};
use crate::{Error, Result};
use std::path::Path;

pub use any::{load_any, load_any_with, SaveFormat};
pub use archive::MAX_CONFIG_BYTES;
pub use save::KERAS_VERSION;

/// Size limits of the Keras readers (see `docs/LIMITS.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest file (or archive member) read; default
    /// [`crate::limits::MAX_FILE_BYTES`] (VGG16's full ImageNet weights are 528 MiB).
    pub max_file_bytes: u64,
    /// The most parameters a model file may declare; default
    /// [`crate::limits::MAX_PARAMS`] (VGG16 with its top has 138 million).
    pub max_params: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_file_bytes: crate::limits::MAX_FILE_BYTES, max_params: crate::limits::MAX_PARAMS }
    }
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Loads a Keras model file: a `.keras` archive (Keras 3) or a legacy
/// `model.save("x.h5")` file (architecture in its `model_config` attribute).
/// The format is recognised from the content, not the extension.
pub fn load_model(path: impl AsRef<Path>) -> Result<Model> {
    load_model_with(path, &Limits::default())
}

/// [`load_model`] with explicit [`Limits`].
pub fn load_model_with(path: impl AsRef<Path>, limits: &Limits) -> Result<Model> {
    let path = path.as_ref();
    let bytes = read_bounded(path, limits.max_file_bytes)?;
    model_from_bytes(bytes, limits).map_err(|e| relabel(e, path))
}

/// [`load_model`] from the file's bytes.
pub fn model_from_bytes(bytes: Vec<u8>, limits: &Limits) -> Result<Model> {
    let here = Path::new("<keras model>");
    let fail = |reason: String| Error::weights(here, reason);
    if bytes.starts_with(ZIP_MAGIC) {
        let a = archive::read(&bytes, limits).map_err(fail)?;
        drop(bytes);
        let seq = config::sequential_from_json(&a.config).map_err(|e| fail(format!("config.json: {e}")))?;
        let mut model = build_bounded(seq, limits).map_err(|e| fail(format!("config.json: {e}")))?;
        layouts::load(&mut model, a.weights).map_err(|e| fail(format!("model.weights.h5: {e}")))?;
        Ok(model)
    } else {
        let file = hdf5::open(bytes)
            .map_err(|e| fail(format!("neither a .keras archive (zip) nor a legacy Keras .h5 model: {e}")))?;
        let attrs = hdf5::attrs(&file.root(), "the root group").map_err(fail)?;
        let json = hdf5::string(&attrs, "model_config").map_err(fail)?.ok_or_else(|| {
            fail(
                "an HDF5 file without a model_config attribute holds weights only: build the model and call \
                  load_keras_weights"
                    .into(),
            )
        })?;
        let seq = config::sequential_from_json(&json).map_err(|e| fail(format!("model_config: {e}")))?;
        let mut model = build_bounded(seq, limits).map_err(|e| fail(format!("model_config: {e}")))?;
        layouts::load_from(&mut model, &file).map_err(fail)?;
        Ok(model)
    }
}

/// The [`Sequential`] definition in Keras architecture JSON (`config.json`
/// of a `.keras` archive, or a legacy file's `model_config`), unbuilt.
///
/// ```
/// let json = r#"{"class_name": "Sequential", "config": {"name": "tiny", "layers": [
///     {"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [null, 4]}},
///     {"class_name": "Dense", "config": {"name": "out", "units": 2, "activation": "softmax"}}]}}"#;
/// let model = convnet::keras::sequential_from_config(json)?.build()?;
/// assert_eq!(model.param_count(), 10);
/// # Ok::<(), convnet::Error>(())
/// ```
pub fn sequential_from_config(json: &str) -> Result<Sequential> {
    config::sequential_from_json(json).map_err(|e| Error::invalid("Keras model config", e))
}

impl Model {
    /// Loads weights from a Keras HDF5 file into this model (Keras's
    /// `model.load_weights`): a Keras 3 `.weights.h5`, a legacy weights file
    /// (such as `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`), or the
    /// weights of a legacy `model.save("x.h5")` file. Every tensor is
    /// checked (count, dtype, shape) before any is assigned: on error the
    /// model is unchanged.
    pub fn load_keras_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = read_bounded(path, Limits::default().max_file_bytes)?;
        self.load_keras_weights_bytes(bytes).map_err(|e| relabel(e, path))
    }

    /// [`Model::load_keras_weights`] from the file's bytes.
    pub fn load_keras_weights_bytes(&mut self, bytes: Vec<u8>) -> Result<()> {
        layouts::load(self, bytes).map_err(|e| Error::weights(Path::new("<keras weights>"), e))
    }
}

impl Model {
    /// Saves the model as a Keras 3 `.keras` archive (Keras's
    /// `model.save("x.keras")`): `metadata.json`, `config.json` (the
    /// architecture as a `Sequential`, each layer's `trainable` flag
    /// included) and `model.weights.h5`. Keras 3 loads it with
    /// `keras.saving.load_model`; the file is written atomically.
    ///
    /// ```no_run
    /// let model = convnet::mnist_convnet().build()?;
    /// model.save_keras("mnist.keras")?;
    /// let again = convnet::keras::load_model("mnist.keras")?;
    /// assert_eq!(again.weights().len(), model.weights().len());
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn save_keras(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_keras_bytes().map_err(|e| relabel(e, path))?;
        crate::files::write_atomic(path, &bytes)
    }

    /// The bytes [`Model::save_keras`] writes.
    pub fn to_keras_bytes(&self) -> Result<Vec<u8>> {
        let fail = |e: String| Error::weights(Path::new("<keras model>"), e);
        let config = save::config_json(self).map_err(fail)?;
        let weights = save::weights_h5(self).map_err(fail)?;
        save::archive(&config, &save::metadata_json(), &weights).map_err(fail)
    }

    /// Saves the weights in the Keras 3 layout (Keras's
    /// `model.save_weights("x.weights.h5")`), atomically; Keras's
    /// `load_weights` reads them into the same architecture.
    pub fn save_keras_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = save::weights_h5(self).map_err(|e| Error::weights(path, e))?;
        crate::files::write_atomic(path, &bytes)
    }

    /// Saves the weights in the legacy Keras 2 HDF5 layout (root
    /// `layer_names`, one group per layer with `weight_names`), as Keras 2's
    /// `save_weights("x.h5")` wrote them, atomically; Keras 3's
    /// `load_weights("x.h5")` reads them by layer order.
    pub fn save_legacy_h5_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = save::legacy_weights_h5(self).map_err(|e| Error::weights(path, e))?;
        crate::files::write_atomic(path, &bytes)
    }
}

/// Builds `seq` after checking, without allocating, that its parameters
/// number at most `limits.max_params`.
fn build_bounded(seq: Sequential, limits: &Limits) -> Result<Model> {
    let mut input: Option<Vec<usize>> = None;
    let mut total = 0usize;
    for (i, layer) in seq.layers.iter().enumerate() {
        let name = layer.user_name().unwrap_or("?").to_string();
        let shape = match (&input, layer.declared_input_shape()) {
            (None, Some(InputShape(d))) => d.clone(),
            (Some(cur), _) => cur.clone(),
            (None, None) => return Err(Error::build(&name, "no input shape")),
        };
        let out = layer.output_shape(&name, &shape)?;
        for p in layer.params(&shape) {
            let n = p
                .dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .and_then(|n| total.checked_add(n))
                .filter(|&t| t <= limits.max_params)
                .ok_or_else(|| {
                    Error::build(
                        &name,
                        format!(
                            "the model would have more than {} parameters (layer {} of {}); raise Limits::max_params \
                             if it is real",
                            limits.max_params,
                            i + 1,
                            seq.layers.len()
                        ),
                    )
                })?;
            total = n;
        }
        input = Some(out);
    }
    seq.build_uninitialised()
}

/// Reads a regular file of at most `max` bytes (a FIFO, device or directory
/// is refused before any read).
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    crate::files::read_regular_file(path, max)
}

/// Puts the real path in a bytes-level error.
fn relabel(e: Error, path: &Path) -> Error {
    match e {
        Error::WeightsFile { reason, .. } => Error::weights(path, reason),
        other => other,
    }
}
