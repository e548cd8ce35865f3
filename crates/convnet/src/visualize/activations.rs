//! Activation grids: for one input, each image-shaped layer's output with
//! every channel as a tile (the book's "visualizing intermediate
//! activations", Listing 5.29-5.30).
//!
//! Each channel is scaled on its own, as the book does: standardised
//! (minus its mean, divided by its standard deviation), times 64, plus 128,
//! clipped to 0-255, then coloured by a [`Colormap`] (viridis, the book's
//! `imshow` default). A channel that is constant (a filter that does not
//! fire on this input) has no spread to standardise: its values become 0,
//! the colormap's lowest colour (where the book's NaN tiles show blank).
//! Layers whose output is flat (`Flatten`,
//! `Dense`) have no picture and are left out.

use super::canvas::{self, GAP, TEXT};
use super::Colormap;
use crate::model::Model;
use crate::{Error, Result};
use convnet_tensor::{Shape, Tensor};
use image::RgbImage;

/// How [`activation_grids`] lays out and colours its pictures.
#[derive(Clone, Debug, PartialEq)]
pub struct GridOptions {
    /// Tiles per row (default 16, as the book's `images_per_row`).
    pub per_row: usize,
    /// Each tile is scaled up by an integer factor until its longer side is
    /// at least this many pixels (default 32), so a 3x3 map stays visible.
    pub min_tile: usize,
    /// Colour of the 0-255 values (default viridis).
    pub colormap: Colormap,
    /// Only these layers (by name, in model order); empty: every layer with
    /// an `(h, w, c)` output.
    pub layers: Vec<String>,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions { per_row: 16, min_tile: 32, colormap: Colormap::Viridis, layers: Vec::new() }
    }
}

/// One layer's picture.
#[derive(Clone, Debug)]
pub struct LayerGrid {
    /// The layer's name (also the picture's title).
    pub name: String,
    /// The layer's output shape `(h, w, c)`.
    pub shape: [usize; 3],
    /// The picture: a title bar, then the channels in rows of `per_row` tiles.
    pub image: RgbImage,
}

/// The book's per-channel scaling: standardise, `x 64 + 128`, clip to
/// `[0, 255]`; a constant channel gives zeros. `values` is one channel.
///
/// ```
/// let s = convnet::visualize::scale_channel(&[1.0, 3.0]);
/// assert_eq!(s, vec![64, 192]); // mean 2, std 1
/// assert_eq!(convnet::visualize::scale_channel(&[5.0, 5.0]), vec![0, 0]);
/// ```
pub fn scale_channel(values: &[f32]) -> Vec<u8> {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    if std.is_nan() || std <= f64::EPSILON * mean.abs().max(1.0) {
        return vec![0; values.len()];
    }
    values.iter().map(|&v| ((v as f64 - mean) / std * 64.0 + 128.0).clamp(0.0, 255.0) as u8).collect()
}

/// One picture per image-shaped layer of `model` for `image` (one example:
/// `[h, w, c]` or `[1, h, w, c]`, scaled as the model expects its input).
///
/// ```
/// use convnet::visualize::{activation_grids, GridOptions};
/// use convnet_tensor::{Shape, Tensor};
/// let model = convnet::mnist_convnet().build()?;
/// let digit = Tensor::full(Shape::new(&[28, 28, 1])?, 0.5);
/// let grids = activation_grids(&model, &digit, &GridOptions::default())?;
/// // conv2d, max_pooling2d, conv2d_1, max_pooling2d_1, conv2d_2: the flat layers have no picture.
/// assert_eq!(grids.len(), 5);
/// assert_eq!(grids[0].shape, [26, 26, 32]);
/// grids[0].image.save(std::env::temp_dir().join("conv2d.png")).unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn activation_grids(model: &Model, image: &Tensor, options: &GridOptions) -> Result<Vec<LayerGrid>> {
    if options.per_row == 0 {
        return Err(Error::invalid("per_row", "must be at least 1"));
    }
    let x = one_example(model, image)?;
    let names: Vec<&str> = options.layers.iter().map(String::as_str).collect();
    for name in &names {
        let i = model.layer_index(name)?;
        if model.layers()[i].output.len() != 3 {
            return Err(Error::invalid(
                "layer",
                format!(
                    "{name} has a flat output {:?}: only (h, w, c) outputs have pictures",
                    model.layers()[i].output
                ),
            ));
        }
    }
    let mut grids = Vec::new();
    for (name, act) in model.activations(&x, &names)? {
        let dims = act.shape().dims().to_vec();
        if dims.len() != 4 {
            continue; // Flatten, Dense: no picture
        }
        let shape = [dims[1], dims[2], dims[3]];
        grids.push(LayerGrid { image: grid(&name, act.data(), shape, options)?, name, shape });
    }
    Ok(grids)
}

/// `image` as a batch of one, checked against the model's input shape.
pub(crate) fn one_example(model: &Model, image: &Tensor) -> Result<Tensor> {
    let shape = image.shape();
    let dims = shape.dims();
    let item = if dims.first() == Some(&1) && dims.len() == model.input_shape().len() + 1 { &dims[1..] } else { dims };
    if item != model.input_shape() {
        return Err(Error::Data(format!(
            "the image has shape {} but the model takes one {:?} input",
            image.shape(),
            model.input_shape()
        )));
    }
    let mut batch = vec![1];
    batch.extend_from_slice(item);
    Ok(Tensor::from_slice(Shape::new(&batch)?, image.data())?)
}

/// The picture of one `(h, w, c)` activation (NHWC values of one example).
fn grid(title: &str, values: &[f32], [h, w, c]: [usize; 3], options: &GridOptions) -> Result<RgbImage> {
    let per_row = options.per_row.min(c).max(1);
    let rows = c.div_ceil(per_row);
    let zoom = canvas::zoom_for(h, w, options.min_tile);
    let (tile_w, tile_h) = (w * zoom as usize, h * zoom as usize);
    let g = GAP as usize;
    let width = per_row * (tile_w + g) + g;
    let title = format!("{title} ({h}x{w}x{c})");
    let scale = if width >= 400 { 2 } else { 1 };
    let title_h = 8 * scale as usize + 2 * g;
    let height = title_h + rows * (tile_h + g) + g;
    let mut img =
        canvas::canvas(width.max(canvas::text_width(&title, scale) as usize + 2 * g), height, "activation grid")?;
    canvas::draw_text(&mut img, GAP, GAP, &title, scale, TEXT);
    let mut channel = vec![0f32; h * w];
    for k in 0..c {
        for (dst, px) in channel.iter_mut().zip(values.chunks_exact(c)) {
            *dst = px[k];
        }
        let colours: Vec<[u8; 3]> =
            scale_channel(&channel).iter().map(|&v| options.colormap.rgb(v as f32 / 255.0)).collect();
        let (row, col) = (k / per_row, k % per_row);
        let x = g + col * (tile_w + g);
        let y = title_h + g + row * (tile_h + g);
        canvas::blit(&mut img, x as u32, y as u32, &colours, h, w, zoom);
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activation, Conv2D, Dense, Flatten, Sequential};
    use convnet_tensor::Rng;

    #[test]
    fn grids_have_the_stated_size_and_channel_order() {
        let model = Sequential::new()
            .add(Conv2D::new(5, 3).activation(Activation::Relu).input_shape((8, 8, 1)))
            .add(Flatten::new())
            .add(Dense::new(2))
            .build()
            .unwrap();
        let mut rng = Rng::new(1);
        let x = Tensor::uniform(Shape::new(&[8, 8, 1]).unwrap(), 0.0, 1.0, &mut rng).unwrap();
        let options = GridOptions { per_row: 2, min_tile: 12, ..GridOptions::default() };
        let grids = activation_grids(&model, &x, &options).unwrap();
        assert_eq!(grids.len(), 1);
        let g = &grids[0];
        assert_eq!((g.name.as_str(), g.shape), ("conv2d", [6, 6, 5]));
        // 6x6 tiles zoomed 2x to 12x12; 3 rows of 2; title bar 8 + 2 gaps.
        let title = "conv2d (6x6x5)";
        let width = (2 * (12 + GAP) + GAP).max(canvas::text_width(title, 1) + 2 * GAP);
        assert_eq!(g.image.dimensions(), (width, 12 + 3 * (12 + GAP) + GAP));
        // Tile k shows channel k: its pixels are that channel's scaled values.
        let act = model.activations(&one_example(&model, &x).unwrap(), &["conv2d"]).unwrap().remove(0).1;
        let ch3: Vec<f32> = act.data().chunks(5).map(|px| px[3]).collect();
        let want = scale_channel(&ch3);
        let (x0, y0) = (GAP + (12 + GAP), 12 + GAP + (12 + GAP)); // row 1, column 1
        for r in 0..6 {
            for c in 0..6 {
                let p = g.image.get_pixel(x0 + 2 * c + 1, y0 + 2 * r);
                assert_eq!(p.0, Colormap::Viridis.rgb(want[(r * 6 + c) as usize] as f32 / 255.0));
            }
        }
        // Named layers: a flat one is refused by name, an unknown one too.
        let bad = GridOptions { layers: vec!["dense".into()], ..GridOptions::default() };
        assert!(activation_grids(&model, &x, &bad).unwrap_err().to_string().contains("dense has a flat output"));
        let bad = GridOptions { layers: vec!["conv9".into()], ..GridOptions::default() };
        assert!(activation_grids(&model, &x, &bad).unwrap_err().to_string().contains("no layer \"conv9\""));
        let wrong = Tensor::zeros(Shape::new(&[7, 8, 1]).unwrap());
        assert!(activation_grids(&model, &wrong, &options).is_err());
    }

    #[test]
    fn channel_scaling_is_the_books() {
        // mean 0, std 2: -2 -> 64, 2 -> 192; an outlier clips at 255.
        let v = [-2.0, 2.0, -2.0, 2.0];
        assert_eq!(scale_channel(&v), vec![64, 192, 64, 192]);
        let mut big = vec![0.0; 99];
        big.push(100.0);
        assert_eq!(*scale_channel(&big).last().unwrap(), 255);
        assert_eq!(scale_channel(&[f32::NAN, 1.0]), vec![0, 0]);
    }
}
