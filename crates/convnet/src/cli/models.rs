//! `--model FILE|NAME`: which model a command runs.
//!
//! A NAME is a built-in definition: `mnist` (the chapter's first convnet),
//! `small-data` (the chapter's 150x150x3 cats-vs-dogs convnet) or `vgg16`
//! (VGG16's convolutional base, as the chapter uses it). Anything else is a
//! file: an architecture JSON (a definition: text starting with `{`, the
//! format `Model::to_json` writes and docs/MODEL_FILES.md describes), a
//! whole-model safetensors file written by `train --save`, or a Keras
//! `.keras` / legacy `.h5` model. A name wins over a file of the same name in
//! the current directory; write `./mnist` for the file.

use super::{load_model, CliResult};
use convnet::applications::vgg16::Vgg16;
use convnet::weights::LoadOptions;
use convnet::{Model, Sequential};
use std::path::{Path, PathBuf};

/// The built-in model names, for messages.
pub const BUILTIN_NAMES: &str = "mnist, small-data, vgg16";

/// What `--model` named.
pub enum ModelSpec {
    /// A definition (built-in or architecture JSON): weights still to be
    /// initialised, input shape still adjustable.
    Definition {
        /// The definition.
        seq: Sequential,
        /// `vgg16`'s input shape is an argument of its builder, not a layer setting.
        vgg16: bool,
        /// Where it came from, for messages.
        origin: String,
    },
    /// A trained model read from a file.
    Trained {
        /// The model.
        model: Box<Model>,
        /// Its file.
        path: PathBuf,
    },
}

/// The built-in definition called `name`, if there is one.
pub fn builtin(name: &str) -> CliResult<Option<ModelSpec>> {
    let (seq, vgg16) = match name {
        "mnist" => (convnet::mnist_convnet(), false),
        "small-data" => (convnet::small_data_convnet(), false),
        "vgg16" => (Vgg16::new().include_top(false).input_shape((150, 150, 3)).sequential()?, true),
        _ => return Ok(None),
    };
    Ok(Some(ModelSpec::Definition { seq, vgg16, origin: format!("the built-in model {name}") }))
}

/// Resolves `--model`: a built-in name, or a file (read once, bounded).
pub fn resolve(spec: &str, opts: &LoadOptions) -> CliResult<ModelSpec> {
    if let Some(m) = builtin(spec)? {
        return Ok(m);
    }
    let path = Path::new(spec);
    if !path.exists() && !spec.contains(['/', '.']) {
        return Err(format!("--model {spec}: no such file, and not a built-in model ({BUILTIN_NAMES})").into());
    }
    let bytes = convnet::files::read_regular_file(path, opts.limits.max_file_bytes)?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let text = std::str::from_utf8(&bytes).map_err(|e| format!("{}: not UTF-8 text: {e}", path.display()))?;
        let seq = Sequential::from_json(text).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(ModelSpec::Definition { seq, vgg16: false, origin: path.display().to_string() });
    }
    drop(bytes);
    Ok(ModelSpec::Trained { model: Box::new(load_model(path, opts)?), path: path.to_path_buf() })
}

impl ModelSpec {
    /// The input shape the model takes (`None`: a definition whose first
    /// layer declares none).
    pub fn input_shape(&self) -> Option<Vec<usize>> {
        match self {
            ModelSpec::Definition { seq, .. } => seq.input_shape().map(<[usize]>::to_vec),
            ModelSpec::Trained { model, .. } => Some(model.input_shape().to_vec()),
        }
    }

    /// Builds the model, with `input` (h, w, c) as its input shape when
    /// given: a definition is rebuilt at that shape; a trained model must
    /// already take it.
    pub fn build(self, input: Option<[usize; 3]>, seed: u64, opts: &LoadOptions) -> CliResult<Model> {
        match self {
            ModelSpec::Definition { seq, vgg16, origin } => {
                let model = if vgg16 {
                    let shape = input.map_or((150, 150, 3), |[h, w, c]| (h, w, c));
                    let s = Vgg16::new().include_top(false).input_shape(shape).sequential()?;
                    s.seed(seed).build_with(&opts.limits)
                } else {
                    let seq = match input {
                        Some([h, w, c]) => seq.with_input_shape((h, w, c)),
                        None => seq,
                    };
                    seq.seed(seed).build_with(&opts.limits)
                };
                model.map_err(|e| format!("{origin}: {e}").into())
            }
            ModelSpec::Trained { model, path } => {
                if let Some(want) = input {
                    if model.input_shape() != want {
                        return Err(format!(
                            "{}: the trained model takes inputs of shape {:?}, not {want:?} (its weights fix it)",
                            path.display(),
                            model.input_shape()
                        )
                        .into());
                    }
                }
                Ok(*model)
            }
        }
    }
}
