//! `convnet predict`: classify image files with any saved model.
//!
//! Each file is read and checked by [`convnet::images::decode_for_model`]
//! (PNG, JPEG, BMP, GIF, PNM of any size and colour; size limits before
//! decoding; transparency composited with a note; corrupt palettes and
//! multi-image PNM files refused), converted to the model's channels and
//! resized to its input size exactly as the image-folder loader prepares a
//! training image, then scaled as the model's training data was: by the
//! pixel scale its file records (`convnet.pixel_scale`: 1/255 for models
//! trained on MNIST-format data, 1 for image folders, whose scaling is a
//! `Rescaling` layer inside the model); a file without the record (older
//! saves, Keras files) is taken as 1 when its first layer is `Rescaling`,
//! else 1/255.
//!
//! The output names classes by the names the file records
//! (`convnet.class_names`: the training folder's class folders), else digits
//! for a 10-way model, else `class K`. One line per image, the top K classes
//! with their probabilities (a one-unit sigmoid model: both classes, p and
//! 1 - p; a linear last layer: softmax of its logits), or one JSON object per
//! image with `--json`. Directories are searched recursively for image files
//! (by extension: .png .jpg .jpeg .bmp .gif .pgm .ppm .pbm .pnm .pam), in
//! sorted order. A file that cannot be read or decoded is reported on stderr
//! and the rest go on; the exit code is then 1.
//!
//! `--center` is MNIST's digit preprocessing (fit the digit's bounding box
//! into 20x20, centre its mass in 28x28; [`convnet::images::center_digit`])
//! for grey models: a digit drawn anywhere on a large canvas then looks like
//! an MNIST digit. `--invert` turns dark ink on light paper into MNIST's
//! white on black.

use super::models::{self, ModelSpec};
use super::{load_model, CliResult};
use clap::Args;
use convnet::images::{decode_for_model, ModelImageOptions};
use convnet::limits::{Limits, INFERENCE_BATCH_BYTES};
use convnet::weights::LoadOptions;
use convnet::{Activation, Model, CLASS_NAMES_KEY, PIXEL_SCALE_KEY};
use convnet_tensor::{Shape, Tensor};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The model: a file written by `train --save`, a Keras `.keras` / legacy `.h5` model, or a
    /// built-in name with --weights.
    #[arg(long, value_name = "FILE|NAME", required_unless_present = "weights")]
    model: Option<String>,
    /// Weights: alone, a file as --model takes (a weights-only safetensors file is the chapter's
    /// MNIST model); with --model, weights loaded into that model (safetensors, Keras .weights.h5 or
    /// legacy .h5).
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Print the K most probable classes of each image.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    top: u64,
    /// One JSON object per image: {"file": .., "predictions": [{"class": .., "probability": ..}, ..]}.
    #[arg(long)]
    json: bool,
    /// Invert the colours first (for dark digits on a light background).
    #[arg(long)]
    invert: bool,
    /// MNIST's digit preprocessing: fit the digit's bounding box into 20x20 and centre its mass
    /// in 28x28 (grey models).
    #[arg(long)]
    center: bool,
    /// Load weights even if some are NaN or infinite (refused by default).
    #[arg(long)]
    allow_non_finite: bool,
    /// Images to classify, or directories of them.
    #[arg(required = true, value_name = "IMAGE|DIR")]
    images: Vec<PathBuf>,
}

/// The file extensions a directory is searched for.
const EXTENSIONS: [&str; 10] = ["png", "jpg", "jpeg", "bmp", "gif", "pgm", "ppm", "pbm", "pnm", "pam"];

/// Most files one `predict` lists from directories (a bound on memory for the list).
const MAX_FILES: usize = 10_000_000;

/// Images decoded and run per batch (memory stays bounded however many files).
const CHUNK: usize = 64;

/// The model `--model` / `--weights` name.
pub fn model_of(model: Option<&str>, weights: Option<&Path>, opts: &LoadOptions) -> CliResult<Model> {
    match (model, weights) {
        (Some(spec), None) => match models::resolve(spec, opts)? {
            ModelSpec::Trained { model, .. } => Ok(*model),
            ModelSpec::Definition { origin, .. } => Err(format!(
                "--model {spec}: {origin} is a definition without trained weights; pass --weights FILE too, or a \
                 model file written by train --save"
            )
            .into()),
        },
        (Some(spec), Some(w)) => {
            let mut m = match models::resolve(spec, opts)? {
                ModelSpec::Trained { model, .. } => *model,
                def => def.build(None, convnet::DEFAULT_SEED, opts)?,
            };
            m.load_any_weights(w, opts)?; // safetensors or Keras HDF5 (.weights.h5, legacy .h5)
            Ok(m)
        }
        (None, Some(w)) => load_model(w, opts),
        (None, None) => Err(super::UsageError("give --model FILE (or --weights FILE)".into()).into()),
    }
}

/// The class names a model's file records, else digits for 10 outputs, else `class K`.
pub fn class_names(model: &Model, outputs: usize) -> CliResult<Vec<String>> {
    if let Some(json) = model.metadata(CLASS_NAMES_KEY) {
        let names: Vec<String> =
            serde_json::from_str(json).map_err(|e| format!("metadata {CLASS_NAMES_KEY}: not a list of names: {e}"))?;
        let want = if outputs == 1 { 2 } else { outputs };
        if names.len() < want.min(2) || names.len() > want {
            return Err(format!(
                "metadata {CLASS_NAMES_KEY}: {} names for a model with {outputs} output{}",
                names.len(),
                if outputs == 1 { "" } else { "s" }
            )
            .into());
        }
        let mut names = names;
        names.extend((names.len()..want).map(|k| format!("class {k}")));
        return Ok(names);
    }
    Ok(match outputs {
        10 => (0..10).map(|d| d.to_string()).collect(),
        1 => vec!["class 0".into(), "class 1".into()],
        k => (0..k).map(|i| format!("class {i}")).collect(),
    })
}

/// The factor 0-255 pixels are multiplied by before they reach the model.
pub fn pixel_scale(model: &Model) -> CliResult<f32> {
    if let Some(s) = model.metadata(PIXEL_SCALE_KEY) {
        return match s.trim().parse::<f32>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
            _ => Err(format!("metadata {PIXEL_SCALE_KEY}: {s:?} is not a positive number").into()),
        };
    }
    Ok(match model.layers().first().map(|l| &l.layer) {
        Some(convnet::Layer::Rescaling(_)) => 1.0,
        _ => 1.0 / 255.0,
    })
}

/// Every file named, directories searched recursively (sorted).
fn expand(paths: &[PathBuf]) -> CliResult<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
            if out.is_empty() {
                return Err(
                    format!("{}: no image files ({}) in this directory", p.display(), EXTENSIONS.join(", ")).into()
                );
            }
        } else {
            out.push(p.clone());
        }
        if out.len() > MAX_FILES {
            return Err(format!("more than {MAX_FILES} files to classify").into());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> CliResult<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    entries.sort();
    for p in entries {
        let meta = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.is_dir() {
            walk(&p, out)?;
        } else if meta.is_file() {
            let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            if ext.is_some_and(|e| EXTENSIONS.contains(&e.as_str())) {
                out.push(p);
            }
        }
        if out.len() > MAX_FILES {
            return Err(format!("more than {MAX_FILES} files to classify").into());
        }
    }
    Ok(())
}

/// Probabilities of each class from a model's output row.
fn probabilities(row: &[f32], last: Activation) -> Vec<f32> {
    match (row.len(), last) {
        (1, Activation::Sigmoid) => vec![1.0 - row[0], row[0]],
        (1, _) => {
            let p = 1.0 / (1.0 + (-row[0]).exp());
            vec![1.0 - p, p]
        }
        (_, Activation::Linear) => {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|&v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect()
        }
        _ => row.to_vec(),
    }
}

pub fn run(a: PredictArgs, limits: Limits) -> CliResult<()> {
    let opts = LoadOptions { limits, allow_non_finite: a.allow_non_finite };
    let model = model_of(a.model.as_deref(), a.weights.as_deref(), &opts)?;
    let model_name = a.model.clone().or(a.weights.as_ref().map(|w| w.display().to_string())).unwrap_or_default();
    let (h, w, c) = match model.input_shape() {
        &[h, w, c] if matches!(c, 1 | 3 | 4) => (h, w, c),
        other => {
            return Err(format!(
                "{model_name}: the model takes {other:?}, not images (height, width, 1, 3 or 4 channels)"
            )
            .into())
        }
    };
    let outputs: usize = model.output_shape().iter().product();
    let names = class_names(&model, outputs)?;
    let scale = pixel_scale(&model)?;
    let last = model.layers()[model.layers().len() - 1].layer.activation();
    let files = expand(&a.images)?;
    let image_opts = ModelImageOptions { channels: c, invert: a.invert, center: a.center, limits };
    if a.center && c != 1 {
        return Err(super::UsageError(format!(
            "--center is for grey (1-channel) digit models; {model_name} takes {c} channels"
        ))
        .into());
    }
    let (h32, w32) = (u32::try_from(h)?, u32::try_from(w)?);
    let per_image = h.checked_mul(w).and_then(|n| n.checked_mul(c)).ok_or("the model's input size overflows")?;
    let batch = model.inference_batch(CHUNK, INFERENCE_BATCH_BYTES).max(1);
    let top = usize::try_from(a.top).unwrap_or(usize::MAX).min(names.len());
    let mut failed = 0usize;
    for chunk in files.chunks(batch) {
        let mut ok: Vec<&PathBuf> = Vec::with_capacity(chunk.len());
        let mut pixels: Vec<f32> = Vec::with_capacity(chunk.len() * per_image);
        for p in chunk {
            let decoded = convnet::files::read_regular_file(p, limits.max_file_bytes)
                .and_then(|bytes| decode_for_model(&p.display().to_string(), &bytes, h32, w32, &image_opts));
            match decoded {
                Ok(img) => {
                    for note in &img.notes {
                        eprintln!("note: {note}");
                    }
                    pixels.extend(img.pixels.iter().map(|&v| f32::from(v) * scale));
                    ok.push(p);
                }
                Err(e) => {
                    eprintln!("error: {}", with_sources(&e));
                    failed += 1;
                }
            }
        }
        if ok.is_empty() {
            continue;
        }
        let x = Tensor::from_slice(Shape::nhwc(ok.len(), h, w, c), &pixels)?;
        let out = model.predict(&x, batch)?;
        for (path, row) in ok.iter().zip(out.data().chunks_exact(outputs)) {
            let probs = probabilities(row, last);
            let mut order: Vec<usize> = (0..probs.len()).collect();
            order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]).then(i.cmp(&j)));
            order.truncate(top);
            if a.json {
                let preds: Vec<serde_json::Value> = order
                    .iter()
                    .map(|&k| serde_json::json!({"class": names[k], "index": k, "probability": short(probs[k])}))
                    .collect();
                println!("{}", serde_json::json!({"file": path.display().to_string(), "predictions": preds}));
            } else {
                let text: Vec<String> = order.iter().map(|&k| format!("{} ({:.4})", names[k], probs[k])).collect();
                println!("{}: {}", path.display(), text.join(", "));
            }
        }
    }
    if failed > 0 {
        return Err(format!(
            "{failed} of {} file{} could not be classified (see above)",
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        )
        .into());
    }
    Ok(())
}

/// An error's message followed by those of its sources (each once).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(&format!(": {text}"));
        }
        source = s.source();
    }
    msg
}

/// An f32 probability as the f64 of its shortest decimal form (0.9979833,
/// not 0.9979832768440247).
fn short(p: f32) -> f64 {
    format!("{p}").parse().unwrap_or(f64::NAN)
}
