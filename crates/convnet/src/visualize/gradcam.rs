//! Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep
//! Networks via Gradient-based Localization", arXiv:1610.02391; the book's
//! Listings 5.40-5.44): where in an image the evidence for a class lies.
//!
//! The gradient of the class score (the last layer's output before its
//! activation: the logit before a softmax, as the paper's `y^c`) with
//! respect to the output `A` of the last convolutional layer; channel `k`'s
//! weight is that gradient's mean over positions; the map is
//! `relu(sum_k weight_k A_k)`, divided by its maximum (all zeros when
//! nothing is positive). It is upsampled bilinearly to the picture's size
//! and drawn over it with a colormap at opacity `alpha`:
//! `(1 - alpha) * picture + alpha * colour`.
//!
//! Cost: the layers up to the conv layer run once, tape-free; only the
//! layers after it are recorded and differentiated (no weight gradients).

use super::Colormap;
use crate::gradients::Objective;
use crate::layers::Layer;
use crate::model::Model;
use crate::{Error, Result};
use convnet_autodiff::Tape;
use image::{Rgb, RgbImage};

/// Options of [`grad_cam`].
#[derive(Clone, Debug, PartialEq)]
pub struct GradCamOptions {
    /// The class to explain; `None`: the predicted one.
    pub class: Option<usize>,
    /// The conv layer whose output is weighted; `None`: the last one.
    pub layer: Option<String>,
    /// The heatmap's colours (default jet, as the book).
    pub colormap: Colormap,
    /// The heatmap's opacity over the picture, in `[0, 1]` (default 0.4, the book's factor).
    pub alpha: f32,
}

impl Default for GradCamOptions {
    fn default() -> Self {
        GradCamOptions { class: None, layer: None, colormap: Colormap::Jet, alpha: 0.4 }
    }
}

/// What [`grad_cam`] returns.
#[derive(Clone, Debug)]
pub struct GradCam {
    /// The class explained.
    pub class: usize,
    /// The model's output for that class (its probability, for a softmax model).
    pub output: f32,
    /// The conv layer used.
    pub layer: String,
    /// The normalised map at the conv layer's resolution, `(h, w)` row-major, in `[0, 1]`.
    pub heatmap: Vec<f32>,
    /// `(h, w)` of [`GradCam::heatmap`].
    pub heatmap_size: (usize, usize),
    /// The map upsampled to the picture's size, row-major, in `[0, 1]`.
    pub upsampled: Vec<f32>,
    /// The picture with the coloured map over it.
    pub overlay: RgbImage,
}

/// The last layer of `model` whose output is `(h, w, c)` and that
/// convolves (Conv2D, DepthwiseConv2D, SeparableConv2D), by name.
pub fn last_conv_layer(model: &Model) -> Result<String> {
    model
        .layers()
        .iter()
        .rev()
        .find(|l| {
            l.output.len() == 3
                && matches!(l.layer, Layer::Conv2D(_) | Layer::DepthwiseConv2D(_) | Layer::SeparableConv2D(_))
        })
        .map(|l| l.name.clone())
        .ok_or_else(|| Error::invalid("model", "Grad-CAM needs a convolutional layer, and this model has none"))
}

/// Grad-CAM of `model` on `image` (one example, `[h, w, c]` or
/// `[1, h, w, c]`, scaled as the model expects), drawn over `picture` (the
/// image as shown to a person, any size: the map is upsampled to it).
///
/// ```
/// use convnet::visualize::{grad_cam, GradCamOptions};
/// use convnet_tensor::{Shape, Tensor};
/// let model = convnet::mnist_convnet().build()?;
/// let digit = Tensor::full(Shape::new(&[28, 28, 1])?, 0.5);
/// let picture = image::RgbImage::from_pixel(112, 112, image::Rgb([128, 128, 128]));
/// let cam = grad_cam(&model, &digit, &picture, &GradCamOptions { class: Some(3), ..Default::default() })?;
/// assert_eq!((cam.class, cam.layer.as_str(), cam.heatmap_size), (3, "conv2d_2", (3, 3)));
/// assert_eq!(cam.overlay.dimensions(), (112, 112));
/// # Ok::<(), convnet::Error>(())
/// ```
pub fn grad_cam(
    model: &Model,
    image: &convnet_tensor::Tensor,
    picture: &RgbImage,
    options: &GradCamOptions,
) -> Result<GradCam> {
    if !(0.0..=1.0).contains(&options.alpha) {
        return Err(Error::invalid("alpha", format!("must be in [0, 1], got {}", options.alpha)));
    }
    let x = super::activations::one_example(model, image)?;
    let layer = match &options.layer {
        Some(name) => {
            let i = model.layer_index(name)?;
            let l = &model.layers()[i];
            if l.output.len() != 3 {
                return Err(Error::invalid("layer", format!("{name} has a flat output: Grad-CAM needs (h, w, c)")));
            }
            name.clone()
        }
        None => last_conv_layer(model)?,
    };
    let li = model.layer_index(&layer)?;
    if li + 1 == model.layers().len() {
        return Err(Error::invalid("layer", format!("{layer} is the last layer: there is no class score after it")));
    }
    let classes = *model.output_shape().last().unwrap_or(&0);
    if model.output_shape().len() != 1 {
        return Err(Error::invalid("model", "Grad-CAM needs a classifier: an output of shape (classes,)"));
    }
    if let Some(k) = options.class.filter(|&k| k >= classes) {
        return Err(Error::invalid(
            "class",
            format!("class {k} is out of range: the model has {classes} (0..{classes})"),
        ));
    }
    // The conv output once, tape-free; the head after it gives the prediction.
    let (a, probs) = {
        let mut s = model.scratch();
        let a = model.run_layers(&mut s, 0..li + 1, &x, 1)?;
        let probs = model.run_layers(&mut s, li + 1..model.layers().len(), &a, 1)?;
        (a, probs)
    };
    let class = match options.class {
        Some(k) => k,
        None => probs.data().iter().enumerate().fold(0, |best, (i, &p)| if p > probs.data()[best] { i } else { best }),
    };
    let g = model.gradient_from(&mut Tape::new(), li + 1, &a, &Objective::ClassScore(vec![class]))?;
    let (h, w, c) = (model.layers()[li].output[0], model.layers()[li].output[1], model.layers()[li].output[2]);
    let mut weights = vec![0f64; c];
    for px in g.grad.data().chunks_exact(c) {
        for (wk, &v) in weights.iter_mut().zip(px) {
            *wk += v as f64;
        }
    }
    let mut heatmap: Vec<f32> = a
        .data()
        .chunks_exact(c)
        .map(|px| px.iter().zip(&weights).map(|(&v, &wk)| v as f64 * wk / (h * w) as f64).sum::<f64>().max(0.0) as f32)
        .collect();
    let max = heatmap.iter().fold(0f32, |m, &v| m.max(v));
    if max > 0.0 {
        heatmap.iter_mut().for_each(|v| *v /= max);
    }
    let (pw, ph) = picture.dimensions();
    let upsampled = bilinear(&heatmap, h, w, ph as usize, pw as usize);
    let mut overlay = picture.clone();
    for (p, &t) in overlay.pixels_mut().zip(&upsampled) {
        let colour = options.colormap.rgb(t);
        *p = Rgb(std::array::from_fn(|k| {
            ((1.0 - options.alpha) * p.0[k] as f32 + options.alpha * colour[k] as f32).round().clamp(0.0, 255.0) as u8
        }));
    }
    Ok(GradCam { class, output: probs.data()[class], layer, heatmap, heatmap_size: (h, w), upsampled, overlay })
}

/// Bilinear resize of an `h x w` map to `out_h x out_w`, pixel centres
/// aligned (OpenCV's `INTER_LINEAR`, what the book's `cv2.resize` uses).
pub fn bilinear(map: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let coord = |o: usize, out: usize, inp: usize| -> (usize, usize, f32) {
        let s = ((o as f32 + 0.5) * inp as f32 / out as f32 - 0.5).clamp(0.0, (inp - 1) as f32);
        let i0 = s.floor() as usize;
        (i0, (i0 + 1).min(inp - 1), s - i0 as f32)
    };
    let mut out = Vec::with_capacity(out_h * out_w);
    for oy in 0..out_h {
        let (y0, y1, fy) = coord(oy, out_h, h);
        for ox in 0..out_w {
            let (x0, x1, fx) = coord(ox, out_w, w);
            let top = map[y0 * w + x0] * (1.0 - fx) + map[y0 * w + x1] * fx;
            let bottom = map[y1 * w + x0] * (1.0 - fx) + map[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Activation::{Relu, Softmax};
    use crate::{Conv2D, Dense, Flatten, MaxPooling2D, Padding, Sequential};
    use convnet_tensor::{Rng, Shape, Tensor};

    /// A model whose answer is known: conv channel 0 sums the ink in a 3x3
    /// window, channel 1 is `1 - ink` (background); class 0's score adds up
    /// channel 0 everywhere, class 1's channel 1. A blob in the bottom-right
    /// quadrant of a 16x16 canvas: Grad-CAM for class 0 puts its heat there,
    /// for class 1 everywhere else.
    fn known() -> (crate::Model, Tensor) {
        let mut model = Sequential::new()
            .add(Conv2D::new(2, 3).activation(Relu).padding(Padding::Same).input_shape((16, 16, 1)).name("feat"))
            .add(Flatten::new())
            .add(Dense::new(2).activation(Softmax))
            .build()
            .unwrap();
        let mut kernel = vec![0f32; 9 * 2];
        for k in 0..9 {
            kernel[k * 2] = 1.0 / 9.0;
            kernel[k * 2 + 1] = -1.0 / 9.0;
        }
        let bias = vec![0.0, 1.0];
        let mut dense = vec![0f32; 16 * 16 * 2 * 2];
        for p in 0..256 {
            dense[(p * 2) * 2] = 0.05; // channel 0 -> class 0
            dense[(p * 2 + 1) * 2 + 1] = 0.05; // channel 1 -> class 1
        }
        model.set_weights(&[kernel, bias, dense, vec![0.0, 0.0]]).unwrap();
        let mut rng = Rng::new(3);
        let mut x = Tensor::zeros(Shape::new(&[16, 16, 1]).unwrap());
        for y in 10..15 {
            for xx in 9..15 {
                x.data_mut()[y * 16 + xx] = 0.7 + 0.3 * rng.next_f64() as f32;
            }
        }
        (model, x)
    }

    /// Fraction of the upsampled map's mass in the bottom-right quadrant.
    fn bottom_right_share(cam: &GradCam, side: usize) -> f64 {
        let total: f64 = cam.upsampled.iter().map(|&v| v as f64).sum();
        let inside: f64 = cam
            .upsampled
            .iter()
            .enumerate()
            .filter(|(i, _)| i / side >= side / 2 && i % side >= side / 2)
            .map(|(_, &v)| v as f64)
            .sum();
        inside / total
    }

    #[test]
    fn heat_sits_where_the_evidence_is() {
        let (model, x) = known();
        let picture = RgbImage::from_pixel(48, 48, Rgb([0, 0, 0]));
        let ink = grad_cam(&model, &x, &picture, &GradCamOptions { class: Some(0), ..Default::default() }).unwrap();
        assert_eq!((ink.layer.as_str(), ink.heatmap_size), ("feat", (16, 16)));
        assert_eq!(ink.upsampled.len(), 48 * 48);
        let share = bottom_right_share(&ink, 48);
        assert!(share > 0.9, "class 0: {share} of the heat in the blob's quadrant");
        let background =
            grad_cam(&model, &x, &picture, &GradCamOptions { class: Some(1), ..Default::default() }).unwrap();
        let share = bottom_right_share(&background, 48);
        assert!(share < 0.25, "class 1: {share} of the heat in the blob's quadrant");
        // Normalised to a maximum of 1; the overlay is the colormap at alpha over black.
        assert_eq!(ink.heatmap.iter().fold(0f32, |m, &v| m.max(v)), 1.0);
        let hot = ink.upsampled.iter().position(|&v| v == 1.0).unwrap();
        let p = ink.overlay.get_pixel((hot % 48) as u32, (hot / 48) as u32);
        let want = Colormap::Jet.rgb(1.0).map(|c| (0.4 * c as f32).round() as u8);
        assert_eq!(p.0, want);
        // The default class is the predicted one.
        let default = grad_cam(&model, &x, &picture, &GradCamOptions::default()).unwrap();
        let probs = model.predict(&Tensor::from_slice(Shape::nhwc(1, 16, 16, 1), x.data()).unwrap(), 1).unwrap();
        let predicted = if probs.data()[0] > probs.data()[1] { 0 } else { 1 };
        assert_eq!(default.class, predicted);
        assert_eq!(default.output, probs.data()[predicted]);
    }

    #[test]
    fn bad_requests_are_clear_errors() {
        let (model, x) = known();
        let picture = RgbImage::new(16, 16);
        let run = |o: GradCamOptions| grad_cam(&model, &x, &picture, &o).unwrap_err().to_string();
        assert!(run(GradCamOptions { class: Some(2), ..Default::default() }).contains("class 2 is out of range"));
        assert!(run(GradCamOptions { layer: Some("nope".into()), ..Default::default() }).contains("no layer \"nope\""));
        assert!(run(GradCamOptions { layer: Some("flatten".into()), ..Default::default() }).contains("flat output"));
        assert!(run(GradCamOptions { alpha: 1.5, ..Default::default() }).contains("alpha"));
        let dense_only = Sequential::new()
            .add(MaxPooling2D::new(2).input_shape((4, 4, 1)))
            .add(Flatten::new())
            .add(Dense::new(2))
            .build()
            .unwrap();
        let e = grad_cam(&dense_only, &Tensor::zeros(Shape::new(&[4, 4, 1]).unwrap()), &picture, &Default::default());
        assert!(e.unwrap_err().to_string().contains("needs a convolutional layer"));
    }

    #[test]
    fn bilinear_keeps_constants_and_corners() {
        assert_eq!(bilinear(&[0.25; 6], 2, 3, 5, 7), vec![0.25; 35]);
        let up = bilinear(&[0.0, 1.0], 1, 2, 1, 4);
        assert_eq!(up, vec![0.0, 0.25, 0.75, 1.0]);
    }
}
