//! Any model or weights file convnet reads or writes, Keras's or its own:
//! recognised by content when read, chosen by extension when written. What
//! `--model`, `--weights` and `convnet convert` use.
//!
//! | file | read as | written by |
//! |---|---|---|
//! | `.keras` (zip) | a model | [`Model::save_keras`] |
//! | legacy `.h5` model (`model_config` attribute) | a model | (Keras 2 `model.save`) |
//! | `.weights.h5` (Keras 3 layout) | weights | [`Model::save_keras_weights`] |
//! | legacy `.h5` weights (`layer_names` attribute) | weights | [`Model::save_legacy_h5_weights`] |
//! | `.safetensors` with an architecture | a model (or its weights) | [`Model::save`] |
//! | `.safetensors` without one | weights | [`Model::save_weights`] |

use super::Limits;
use crate::model::Model;
use crate::weights::LoadOptions;
use crate::{Error, Result};
use std::path::Path;

const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";

/// The formats [`Model::save_as`](crate::Model::save_as) writes, chosen from a file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFormat {
    /// `.keras`: the Keras 3 archive (architecture and weights).
    Keras,
    /// `.weights.h5`: weights in the Keras 3 layout.
    KerasWeights,
    /// `.h5` / `.hdf5`: weights in the legacy Keras 2 layout.
    LegacyH5Weights,
    /// `.safetensors`: convnet's whole-model file (architecture and weights).
    Safetensors,
}

impl SaveFormat {
    /// The format a file name asks for, or an error listing the names understood.
    ///
    /// ```
    /// use convnet::keras::SaveFormat;
    /// assert_eq!(SaveFormat::for_path("m.weights.h5")?, SaveFormat::KerasWeights);
    /// assert_eq!(SaveFormat::for_path("vgg16_notop.h5")?, SaveFormat::LegacyH5Weights);
    /// assert!(SaveFormat::for_path("model.onnx").is_err());
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn for_path(path: impl AsRef<Path>) -> Result<SaveFormat> {
        let path = path.as_ref();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
        Ok(if name.ends_with(".keras") {
            SaveFormat::Keras
        } else if name.ends_with(".weights.h5") {
            SaveFormat::KerasWeights
        } else if name.ends_with(".h5") || name.ends_with(".hdf5") {
            SaveFormat::LegacyH5Weights
        } else if name.ends_with(".safetensors") {
            SaveFormat::Safetensors
        } else {
            return Err(Error::invalid(
                "output file",
                format!(
                    "{}: the extension does not say which format to write (.keras, .weights.h5, .h5 for legacy \
                     Keras weights, .safetensors)",
                    path.display()
                ),
            ));
        })
    }
}

/// Loads a model from any model file: a `.keras` archive, a legacy Keras
/// `.h5` model, or a whole-model safetensors file written by
/// [`Model::save`]. A weights-only file is an error saying so (build the
/// model and call [`Model::load_any_weights`]).
pub fn load_any(path: impl AsRef<Path>) -> Result<Model> {
    load_any_with(path, &LoadOptions::default())
}

/// [`load_any`] with explicit limits (file size, parameters) and the
/// non-finite policy of safetensors files.
pub fn load_any_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
    let path = path.as_ref();
    let bytes = crate::files::read_regular_file(path, opts.limits.max_file_bytes)?;
    let relabel = |e: Error| super::relabel(e, path);
    if bytes.starts_with(super::ZIP_MAGIC) || bytes.starts_with(HDF5_MAGIC) {
        let limits = Limits { max_file_bytes: opts.limits.max_file_bytes, max_params: opts.limits.max_params };
        return super::model_from_bytes(bytes, &limits).map_err(relabel);
    }
    match crate::weights::architecture_of(&bytes).map_err(|_| {
        Error::weights(path, "not a model file convnet reads (.keras, Keras .h5 or safetensors)".to_string())
    })? {
        Some(_) => Model::load_bytes_with(&bytes, opts).map_err(relabel),
        None => Err(Error::weights(
            path,
            "a weights-only safetensors file has no architecture: build the model and load the weights into it"
                .to_string(),
        )),
    }
}

impl Model {
    /// Loads weights from any weights file into this model: Keras HDF5
    /// (`.weights.h5`, a legacy `.h5` weights file such as the ImageNet
    /// VGG16 files, or the weights of a legacy `.h5` model), a `.keras`
    /// archive's weights, or safetensors. Every tensor is checked before any
    /// is assigned; on error the model is unchanged.
    pub fn load_any_weights(&mut self, path: impl AsRef<Path>, opts: &LoadOptions) -> Result<()> {
        let path = path.as_ref();
        let bytes = crate::files::read_regular_file(path, opts.limits.max_file_bytes)?;
        if bytes.starts_with(HDF5_MAGIC) {
            return self.load_keras_weights_bytes(bytes).map_err(|e| super::relabel(e, path));
        }
        if bytes.starts_with(super::ZIP_MAGIC) {
            let limits = Limits { max_file_bytes: opts.limits.max_file_bytes, max_params: opts.limits.max_params };
            let archive = super::archive::read(&bytes, &limits).map_err(|e| Error::weights(path, e))?;
            return self.load_keras_weights_bytes(archive.weights).map_err(|e| super::relabel(e, path)).map_err(|e| {
                match e {
                    Error::WeightsFile { path, reason } => {
                        Error::WeightsFile { path, reason: format!("model.weights.h5: {reason}") }
                    }
                    other => other,
                }
            });
        }
        self.load_weights_bytes_with(&bytes, opts).map_err(|e| super::relabel(e, path))
    }

    /// Saves the model in the format `path`'s extension names (see
    /// [`SaveFormat::for_path`]), atomically; returns the format written.
    pub fn save_as(&self, path: impl AsRef<Path>) -> Result<SaveFormat> {
        let path = path.as_ref();
        let format = SaveFormat::for_path(path)?;
        match format {
            SaveFormat::Keras => self.save_keras(path)?,
            SaveFormat::KerasWeights => self.save_keras_weights(path)?,
            SaveFormat::LegacyH5Weights => self.save_legacy_h5_weights(path)?,
            SaveFormat::Safetensors => self.save(path)?,
        }
        Ok(format)
    }
}
