//! Filter patterns: the input each filter of a layer responds to most,
//! grown by gradient ascent in input space (the book's "visualizing convnet
//! filters", Listings 5.32-5.38).
//!
//! From a grey image with a little uniform noise (the book's
//! `random((1, size, size, 3)) * 20 + 128` on a 0-255 scale), each step adds
//! `step * g / (sqrt(mean(g^2)) + 1e-5)` to the image, where `g` is the
//! gradient of the filter's mean activation (over every position of the
//! layer's output) with respect to the image: the book's normalised-gradient
//! step, so every step moves the image by about the same amount whatever the
//! gradient's scale. The patterns are drawn as the book's `deprocess_image`
//! does: standardise the whole image, `x 0.1 + 0.5`, clip to `[0, 1]`,
//! `x 255`.
//!
//! All `N` filters ascend together, as one batch of `N` images whose
//! objective is the sum of example `i`'s mean of filter `i`: one forward and
//! one backward pass per step for all of them (each image's gradient is its
//! own filter's), through the layers up to the chosen one only, with no
//! weight gradients.

use super::canvas::{self, GAP, TEXT};
use crate::gradients::{Objective, Wrt};
use crate::model::Model;
use crate::{Error, Result};
use convnet_autodiff::Tape;
use convnet_tensor::{Rng, Shape, Tensor};
use image::RgbImage;

/// Options of [`filter_patterns`].
#[derive(Clone, Debug, PartialEq)]
pub struct FilterOptions {
    /// How many filters, from the first (default 64).
    pub filters: usize,
    /// Gradient-ascent steps (default 40, as the book).
    pub steps: usize,
    /// Step length on a 0-255 scale (default 1, as the book).
    pub step: f32,
    /// The input value that means white: 1 for a model trained on images
    /// scaled to `[0, 1]` (the chapter's MNIST model, the default), 255
    /// for raw pixels (VGG16 as the book feeds it). The start image and the
    /// step are scaled by `input_max / 255`.
    pub input_max: f32,
    /// The start images' grey level on a 0-255 scale (default 128, as the book).
    pub grey: f32,
    /// The start images' noise: uniform in `[0, noise)` added to `grey`, on a
    /// 0-255 scale (default 20, as the book). A filter that is zero everywhere
    /// on the start image gets no gradient and cannot ascend; a start with
    /// more spread (`grey` 0, `noise` 255: uniform noise) wakes more of them.
    pub noise: f32,
    /// Seed of the start images' noise (default 0).
    pub seed: u64,
    /// Tiles per row of the grid (default 8, as the book's 8x8 grid).
    pub per_row: usize,
    /// Each tile is scaled up by an integer factor until its longer side is
    /// at least this many pixels (default 64).
    pub min_tile: usize,
}

impl Default for FilterOptions {
    fn default() -> Self {
        FilterOptions {
            filters: 64,
            steps: 40,
            step: 1.0,
            input_max: 1.0,
            grey: 128.0,
            noise: 20.0,
            seed: 0,
            per_row: 8,
            min_tile: 64,
        }
    }
}

/// What [`filter_patterns`] returns.
#[derive(Clone, Debug)]
pub struct FilterPatterns {
    /// The grid: a title bar, then filter `i`'s pattern as tile `i`.
    pub grid: RgbImage,
    /// The patterns themselves, `[filters, h, w, c]` in the model's input scale.
    pub images: Tensor,
    /// Each filter's mean activation on its start image.
    pub initial: Vec<f32>,
    /// Each filter's mean activation on its final pattern (after the last step).
    pub last: Vec<f32>,
}

/// Grows the patterns of the first `options.filters` filters of `layer` by
/// gradient ascent and draws them as one grid.
///
/// ```
/// use convnet::visualize::{filter_patterns, FilterOptions};
/// let model = convnet::mnist_convnet().build()?;
/// let p = filter_patterns(&model, "conv2d", &FilterOptions { filters: 4, steps: 5, ..Default::default() })?;
/// assert_eq!(p.images.shape().dims(), &[4, 28, 28, 1]);
/// assert!(p.grid.width() > 4 * 28);
/// # Ok::<(), convnet::Error>(())
/// ```
pub fn filter_patterns(model: &Model, layer: &str, options: &FilterOptions) -> Result<FilterPatterns> {
    let li = model.layer_index(layer)?;
    let out = &model.layers()[li].output;
    if out.len() != 3 {
        return Err(Error::invalid(
            "layer",
            format!("{layer} has a flat output {out:?}: filter patterns need a layer with (h, w, c) output"),
        ));
    }
    let channels = out[2];
    if options.filters == 0 || options.filters > channels {
        return Err(Error::invalid(
            "filters",
            format!("{} filters asked of {layer}, which has {channels} (1..={channels})", options.filters),
        ));
    }
    let finite = options.step.is_finite() && options.grey.is_finite() && options.noise.is_finite();
    if !(options.input_max.is_finite() && options.input_max > 0.0 && finite && options.noise >= 0.0) {
        return Err(Error::invalid("filter options", "input_max must be positive, noise non-negative, all finite"));
    }
    if options.per_row == 0 {
        return Err(Error::invalid("per_row", "must be at least 1"));
    }
    let n = options.filters;
    let mut dims = vec![n];
    dims.extend_from_slice(model.input_shape());
    let shape = Shape::new(&dims)?;
    let unit = options.input_max / 255.0;
    let mut rng = Rng::new(options.seed);
    let (lo, hi) = (options.grey * unit, (options.grey + options.noise) * unit);
    let mut x = if hi > lo { Tensor::uniform(shape, lo, hi, &mut rng)? } else { Tensor::full(shape, lo) };
    let objective = Objective::ChannelMean { layer: layer.to_string(), channels: (0..n).collect() };
    let mut tape = Tape::new();
    let item = shape.item_len();
    let mut initial = Vec::new();
    for step in 0..options.steps {
        let g = model.gradient_on(&mut tape, &x, &objective, &Wrt::Input)?;
        if step == 0 {
            initial = g.values.clone();
        }
        for (xi, gi) in x.data_mut().chunks_exact_mut(item).zip(g.grad.data().chunks_exact(item)) {
            let rms = (gi.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / item as f64).sqrt() as f32;
            let scale = options.step * unit / (rms + 1e-5);
            for (v, &d) in xi.iter_mut().zip(gi) {
                *v += scale * d;
            }
        }
    }
    let mut s = model.scratch();
    let reached = model.run_layers(&mut s, 0..li + 1, &x, n)?;
    drop(s);
    let positions = out[0] * out[1];
    let last: Vec<f32> = reached
        .data()
        .chunks_exact(positions * channels)
        .enumerate()
        .map(|(i, a)| (a.chunks_exact(channels).map(|px| px[i] as f64).sum::<f64>() / positions as f64) as f32)
        .collect();
    if options.steps == 0 {
        initial = last.clone();
    }
    let grid = grid(layer, &x, model.input_shape(), options)?;
    Ok(FilterPatterns { grid, images: x, initial, last })
}

/// The book's `deprocess_image`: standardise, `x 0.1 + 0.5`, clip, `x 255`.
///
/// ```
/// let v = convnet::visualize::deprocess(&[0.0, 2.0]);
/// assert_eq!(v, vec![102, 152]); // mean 1, std 1: 0.4 and 0.6 of 255, truncated as astype("uint8")
/// ```
pub fn deprocess(values: &[f32]) -> Vec<u8> {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    values.iter().map(|&v| (((v as f64 - mean) / (std + 1e-5) * 0.1 + 0.5).clamp(0.0, 1.0) * 255.0) as u8).collect()
}

fn grid(layer: &str, x: &Tensor, input: &[usize], options: &FilterOptions) -> Result<RgbImage> {
    let (h, w, c) = match input {
        &[h, w, c] => (h, w, c),
        other => {
            return Err(Error::invalid("model", format!("filter patterns need an (h, w, c) input, not {other:?}")))
        }
    };
    let n = x.shape().batch();
    let per_row = options.per_row.min(n);
    let rows = n.div_ceil(per_row);
    let zoom = canvas::zoom_for(h, w, options.min_tile);
    let (tw, th, g) = (w * zoom as usize, h * zoom as usize, GAP as usize);
    let title = format!("{layer}: filters 0-{}", n - 1);
    let width = (per_row * (tw + g) + g).max(canvas::text_width(&title, 1) as usize + 2 * g);
    let scale = if width >= 400 { 2 } else { 1 };
    let title_h = 8 * scale + 2 * g;
    let width = width.max(canvas::text_width(&title, scale as u32) as usize + 2 * g);
    let mut img = canvas::canvas(width, title_h + rows * (th + g) + g, "filter grid")?;
    canvas::draw_text(&mut img, GAP, GAP, &title, scale as u32, TEXT);
    for (i, pattern) in x.data().chunks_exact(h * w * c).enumerate() {
        let bytes = deprocess(pattern);
        let colours: Vec<[u8; 3]> = bytes
            .chunks_exact(c)
            .map(|px| match c {
                3 => [px[0], px[1], px[2]],
                _ => [px[0]; 3], // grey (or the first channel of other counts)
            })
            .collect();
        let (row, col) = (i / per_row, i % per_row);
        canvas::blit(
            &mut img,
            (g + col * (tw + g)) as u32,
            (title_h + g + row * (th + g)) as u32,
            &colours,
            h,
            w,
            zoom,
        );
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gradient ascent raises every filter's mean activation (the chapter's
    /// model, untrained, every filter of its last conv layer). That layer's
    /// biases are set to 0.5: with Keras's zero biases about a fifth of the
    /// untrained filters are zero everywhere on grey noise, where the relu
    /// passes no gradient and no method can ascend (in Keras neither).
    #[test]
    fn ascent_raises_every_filters_mean() {
        let mut model = crate::mnist_convnet().build().unwrap();
        let weights: Vec<Vec<f32>> = model
            .weights()
            .iter()
            .map(|(name, t)| if *name == "conv2d_2/bias" { vec![0.5; t.len()] } else { t.data().to_vec() })
            .collect();
        model.set_weights(&weights).unwrap();
        let options = FilterOptions { filters: 64, steps: 10, ..FilterOptions::default() };
        let p = filter_patterns(&model, "conv2d_2", &options).unwrap();
        assert_eq!(p.initial.len(), 64);
        for (i, (a, b)) in p.initial.iter().zip(&p.last).enumerate() {
            assert!(b > a, "filter {i}: mean {a} -> {b}");
        }
        // The grid: 8 per row, 28x28 tiles zoomed 3x (84 >= 64), 8 rows, a
        // title at scale 2 (the grid is at least 400 pixels wide).
        let (tile, g) = (84, GAP);
        assert_eq!(p.grid.width(), 8 * (tile + g) + g);
        assert_eq!(p.grid.height(), 16 + 2 * g + 8 * (tile + g) + g);
        let first = p.grid.get_pixel(g + 5, 16 + 3 * g + 5);
        assert!(p.grid.pixels().any(|q| q != first), "the grid is constant");
    }

    #[test]
    fn bad_requests_are_clear_errors() {
        let model = crate::mnist_convnet().build().unwrap();
        let run = |layer: &str, filters: usize| {
            filter_patterns(&model, layer, &FilterOptions { filters, steps: 1, ..FilterOptions::default() })
                .unwrap_err()
                .to_string()
        };
        assert!(run("conv5", 1).contains("no layer \"conv5\""));
        assert!(run("conv2d", 33).contains("33 filters asked of conv2d, which has 32"));
        assert!(run("conv2d", 0).contains("0 filters"));
        assert!(run("dense", 1).contains("flat output"));
    }
}
