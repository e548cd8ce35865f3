//! `convnet predict`: classify digit images with saved weights.
//!
//! Images are read and checked by [`convnet::images`] (PNG, JPEG, BMP, GIF,
//! PNM; size limits
//! before decoding; transparency composited with a note; corrupt palettes
//! and multi-image PNM files refused), converted to grey, resized to the
//! model's input size (triangle filter) when they are not already, and
//! scaled to `[0, 1]` as in training. MNIST digits are white on a black
//! background; `--invert` turns a dark-on-light drawing into that convention.

use super::{load_model, CliResult};
use convnet::images::{load_grey, ImageOptions};
use convnet::limits::INFERENCE_BATCH_BYTES;
use convnet::weights::LoadOptions;
use convnet_tensor::{Shape, Tensor};
use std::path::{Path, PathBuf};

pub fn run(weights: &Path, images: &[PathBuf], invert: bool, opts: &LoadOptions) -> CliResult<()> {
    let model = load_model(weights, opts)?;
    let (h, w) = match model.input_shape() {
        &[h, w, 1] => (h, w),
        other => {
            return Err(format!("{}: the model takes {other:?}, not (h, w, 1) grey images", weights.display()).into())
        }
    };
    let (h32, w32) = (u32::try_from(h)?, u32::try_from(w)?);
    let image_opts = ImageOptions { invert, limits: opts.limits };
    let per_image = h.checked_mul(w).ok_or("image size overflows")?;
    let mut pixels = Vec::with_capacity(images.len().saturating_mul(per_image).min(1 << 24));
    for p in images {
        let decoded = load_grey(p, h32, w32, &image_opts)?;
        for note in &decoded.notes {
            eprintln!("note: {note}");
        }
        pixels.extend(decoded.pixels);
    }
    let x = Tensor::from_slice(Shape::nhwc(images.len(), h, w, 1), &pixels)?;
    let probs = model.predict(&x, model.inference_batch(64, INFERENCE_BATCH_BYTES))?;
    let k = model.output_shape()[0];
    for (path, row) in images.iter().zip(probs.data().chunks_exact(k)) {
        let (digit, p) =
            row.iter().enumerate().fold((0, f32::MIN), |best, (i, &p)| if p > best.1 { (i, p) } else { best });
        println!("{}: {digit} ({p:.4})", path.display());
    }
    Ok(())
}
