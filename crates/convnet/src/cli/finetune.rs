//! `train --weights FILE` and `train --trainable-from LAYER`: start a run
//! from pretrained weights and freeze the layers below one, the chapter's
//! fine-tuning in one command:
//!
//! ```text
//! convnet train --model book.keras --weights vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
//!     --trainable-from block5_conv1 --data cats_vs_dogs_small --rescale ... --learning-rate 1e-5
//! ```
//!
//! `--weights` takes what `eval --weights` takes (safetensors, Keras
//! `.weights.h5`, legacy `.h5`, a `.keras` archive's weights) for the whole
//! model or, when the file holds fewer layers, for the model's convolutional
//! base: its layers before the first `Flatten` or global pooling layer, as
//! Keras's `conv_base.load_weights(...)` before `model.add(conv_base)`. The
//! layers after the base keep their initial weights (`--seed`).

use super::CliResult;
use convnet::weights::LoadOptions;
use convnet::{Layer, Model, Sequential};
use std::path::Path;

/// Loads `path` into `model` (see the module doc); on error the model is
/// unchanged and the message names the file and both attempts.
pub fn load_weights(model: &mut Model, path: &Path, opts: &LoadOptions) -> CliResult<()> {
    let whole = match model.load_any_weights(path, opts) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    // A missing or unreadable file is not retried as a base.
    if !path.is_file() {
        return Err(format!("--weights: {whole}").into());
    }
    let Some(end) = base_end(model) else {
        return Err(format!("--weights: {whole}").into());
    };
    let mut base = base_model(model, end)?;
    match base.load_any_weights(path, opts) {
        Ok(()) => {
            model.copy_weights_from(&base)?;
            Ok(())
        }
        Err(e) => Err(format!(
            "--weights: {whole}; nor does it fit the model's convolutional base (its {end} layers before {}): {e}",
            model.layers()[end].name
        )
        .into()),
    }
}

/// The index of the model's first `Flatten` or global pooling layer, when
/// some layer before it has weights.
fn base_end(model: &Model) -> Option<usize> {
    let end = model.layers().iter().position(|l| {
        matches!(l.layer, Layer::Flatten(_) | Layer::GlobalAveragePooling2D(_) | Layer::GlobalMaxPooling2D(_))
    })?;
    model.layers()[..end].iter().any(|l| !l.params.is_empty()).then_some(end)
}

/// A model of the first `end` layers of `model` (same names and input).
fn base_model(model: &Model, end: usize) -> CliResult<Model> {
    let seq = model.to_sequential();
    let layers = seq.layers[..end].to_vec();
    Ok(Sequential { layers, frozen: Vec::new(), ..seq }.build()?)
}

/// Freezes every layer before `name` (Keras's `layer.trainable = False` for
/// each, the book's `set_trainable` loop): an unknown name is an error that
/// lists the model's layers, and changes nothing.
pub fn trainable_from(model: &mut Model, name: &str) -> CliResult<()> {
    model.set_trainable_from(name).map_err(|e| format!("--trainable-from: {e}"))?;
    Ok(())
}
