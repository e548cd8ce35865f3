//! `convnet predict`: classify digit images with saved weights.
//!
//! Images are read with the `image` crate (PNG, PGM/PNM), converted to 8-bit
//! grey, resized to 28x28 (triangle filter) when they are not already, and
//! scaled to `[0, 1]` as in training. MNIST digits are white on a black
//! background; `--invert` turns a dark-on-light drawing into that convention.

use super::{load_model, CliResult};
use convnet_tensor::{Shape, Tensor};
use std::path::{Path, PathBuf};

const SIDE: u32 = 28;

fn load_image(path: &Path, invert: bool) -> CliResult<Vec<f32>> {
    let img = image::ImageReader::open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .with_guessed_format()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .decode()
        .map_err(|e| format!("{}: cannot decode image: {e}", path.display()))?
        .into_luma8();
    let img = if img.dimensions() == (SIDE, SIDE) {
        img
    } else {
        image::imageops::resize(&img, SIDE, SIDE, image::imageops::FilterType::Triangle)
    };
    Ok(img.into_raw().into_iter().map(|p| f32::from(if invert { 255 - p } else { p }) / 255.0).collect())
}

pub fn run(weights: &Path, images: &[PathBuf], invert: bool) -> CliResult<()> {
    let model = load_model(weights)?;
    if model.input_shape() != [SIDE as usize, SIDE as usize, 1] {
        return Err(
            format!("{}: the model takes {:?}, not 28x28 grey images", weights.display(), model.input_shape()).into()
        );
    }
    let mut pixels = Vec::with_capacity(images.len() * (SIDE * SIDE) as usize);
    for p in images {
        pixels.extend(load_image(p, invert)?);
    }
    let x = Tensor::from_slice(Shape::nhwc(images.len(), SIDE as usize, SIDE as usize, 1), &pixels)?;
    let probs = model.predict(&x, 64)?;
    let k = model.output_shape()[0];
    for (path, row) in images.iter().zip(probs.data().chunks_exact(k)) {
        let (digit, p) =
            row.iter().enumerate().fold((0, f32::MIN), |best, (i, &p)| if p > best.1 { (i, p) } else { best });
        println!("{}: {digit} ({p:.4})", path.display());
    }
    Ok(())
}
