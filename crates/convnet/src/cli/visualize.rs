//! `convnet visualize activations|filters|gradcam`: the pictures of
//! [`convnet::visualize`] from the command line (docs/VISUALISE.md).
//!
//! `--model` is a built-in name (`mnist`, the chapter's model; `vgg16`,
//! with its top at 224x224x3, or its convolutional base at `--size H,W`) or
//! a model file as `eval` and `predict` take it; `--weights FILE` loads
//! weights into a built-in (a file written by `train --save`, or Keras
//! ImageNet weights for `vgg16`). A built-in without weights is untrained,
//! and the command says so.
//!
//! Images: a model with one input channel reads them as `predict` does
//! (grey, resized, scaled to `[0, 1]`, `--invert` for dark-on-light); a
//! three-channel model reads RGB, resized to its input, as values 0-255
//! (for the built-in `vgg16`, then Keras's "caffe" preprocessing).

use super::{load_model, CliResult};
use clap::{Args, Subcommand};
use convnet::applications::vgg16::{preprocess_input, Vgg16};
use convnet::images::{decode_for_model, load_grey, ImageOptions, ModelImageOptions};
use convnet::limits::Limits;
use convnet::visualize::{self, Colormap, FilterOptions, GradCamOptions, GridOptions};
use convnet::weights::LoadOptions;
use convnet::{mnist_convnet, Model};
use convnet_tensor::{Shape, Tensor};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum VisualizeCommand {
    /// Every channel of every image-shaped layer's output for one image, one PNG per layer in DIR.
    Activations(ActivationsArgs),
    /// The input patterns the first N filters of a layer respond to most (gradient ascent), as one PNG grid.
    Filters(FiltersArgs),
    /// Grad-CAM: where in an image the evidence for a class lies, as a heatmap over the image.
    Gradcam(GradcamArgs),
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// A built-in model (`mnist`, `vgg16`) or a model file (whole-model safetensors from
    /// `train --save`, Keras `.keras` / `.h5`).
    #[arg(long, value_name = "FILE|NAME", default_value = "mnist")]
    model: String,
    /// Weights for a built-in model: a file from `train --save` (mnist) or Keras's ImageNet
    /// weights file (vgg16).
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// For `--model vgg16`: the convolutional base at this input size instead of the whole
    /// model at 224x224.
    #[arg(long, value_name = "H,W", value_parser = parse_size)]
    size: Option<(usize, usize)>,
}

#[derive(Args, Debug)]
pub struct ImageArgs {
    /// The image (PNG, JPEG, BMP, GIF, PNM).
    #[arg(long, value_name = "IMG")]
    image: PathBuf,
    /// Invert grey levels first (dark digits on a light background), for one-channel models.
    #[arg(long)]
    invert: bool,
}

#[derive(Args, Debug)]
pub struct ActivationsArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    image: ImageArgs,
    /// Directory for the pictures (created if missing): NN_LAYER.png per layer.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Tiles per row.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    per_row: u64,
    /// Only these layers (comma-separated names).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    layers: Vec<String>,
    /// viridis (the book's), jet or gray.
    #[arg(long, default_value = "viridis")]
    colormap: Colormap,
}

#[derive(Args, Debug)]
pub struct FiltersArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The layer whose filters to show (a layer with (h, w, c) output).
    #[arg(long, value_name = "NAME")]
    layer: String,
    /// How many filters, from the first.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    filters: u64,
    /// Gradient-ascent steps.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    steps: u64,
    /// Step length on a 0-255 scale.
    #[arg(long, default_value_t = 1.0)]
    step: f32,
    /// The input value meaning white: 1 for models trained on [0, 1] images (default), 255 for raw
    /// pixels (default for vgg16).
    #[arg(long, value_name = "F")]
    input_max: Option<f32>,
    /// The start images' grey level, 0-255 scale (the book's 128).
    #[arg(long, default_value_t = 128.0)]
    grey: f32,
    /// The start images' noise amplitude, 0-255 scale (the book's 20); `--grey 0 --noise 255` starts
    /// from uniform noise, which wakes filters that are zero everywhere on grey.
    #[arg(long, default_value_t = 20.0)]
    noise: f32,
    /// Seed of the start images' noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tiles per row.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    per_row: u64,
    /// The PNG to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub struct GradcamArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    image: ImageArgs,
    /// The class to explain (default: the predicted one).
    #[arg(long, value_name = "K")]
    class: Option<usize>,
    /// The conv layer to weight (default: the last one).
    #[arg(long, value_name = "NAME")]
    layer: Option<String>,
    /// jet (the book's) or viridis.
    #[arg(long, default_value = "jet")]
    colormap: Colormap,
    /// Opacity of the heatmap over the image, 0-1.
    #[arg(long, default_value_t = 0.4)]
    alpha: f32,
    /// The picture's shorter side is scaled up (nearest neighbour) to at least this many pixels.
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u64).range(1..=4096))]
    min_side: u64,
    /// The PNG to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = s.split(',').collect();
    match parts.as_slice() {
        [h, w] => match (h.trim().parse(), w.trim().parse()) {
            (Ok(h), Ok(w)) if h > 0 && w > 0 => Ok((h, w)),
            _ => Err(format!("{s:?}: expected two positive integers H,W")),
        },
        _ => Err(format!("{s:?}: expected H,W")),
    }
}

/// The model `--model` / `--weights` / `--size` name, and whether it is the built-in VGG16.
fn model_of(a: &ModelArgs, limits: Limits) -> CliResult<(Model, bool)> {
    let opts = LoadOptions { limits, allow_non_finite: false };
    let untrained = |name: &str| {
        eprintln!(
            "note: the built-in {name} model is untrained (random weights): pass --weights FILE for a trained one"
        )
    };
    if a.size.is_some() && a.model != "vgg16" {
        return Err("--size applies to --model vgg16 only".into());
    }
    Ok(match a.model.as_str() {
        "mnist" => {
            let mut model = mnist_convnet().build()?;
            match &a.weights {
                Some(w) => model = load_model(w, &opts)?,
                None => untrained("mnist"),
            }
            (model, false)
        }
        "vgg16" => {
            let config = match a.size {
                Some((h, w)) => Vgg16::new().include_top(false).input_shape((h, w, 3)),
                None => Vgg16::new(),
            };
            let model = match &a.weights {
                Some(w) => config.load_imagenet(w)?,
                None => {
                    untrained("vgg16");
                    config.build()?
                }
            };
            (model, true)
        }
        file => {
            if a.weights.is_some() {
                return Err("--weights applies to the built-in models; a model file carries its own weights".into());
            }
            (load_model(Path::new(file), &opts)?, false)
        }
    })
}

/// The image as the model's input `[h, w, c]`, and as a picture (RGB, the model's input size).
fn image_of(model: &Model, a: &ImageArgs, vgg16: bool, limits: Limits) -> CliResult<(Tensor, RgbImage)> {
    let (h, w, c) = match model.input_shape() {
        &[h, w, c] if c == 1 || c == 3 => (h, w, c),
        other => {
            return Err(format!("the model takes {other:?}: only (h, w, 1) and (h, w, 3) images are supported").into())
        }
    };
    let (h32, w32) = (u32::try_from(h)?, u32::try_from(w)?);
    if c == 1 {
        let decoded = load_grey(&a.image, h32, w32, &ImageOptions { invert: a.invert, limits })?;
        for note in &decoded.notes {
            eprintln!("note: {note}");
        }
        let picture = RgbImage::from_fn(w32, h32, |x, y| {
            let v = (decoded.pixels[y as usize * w + x as usize] * 255.0).round().clamp(0.0, 255.0) as u8;
            image::Rgb([v, v, v])
        });
        return Ok((Tensor::from_slice(Shape::new(&[h, w, 1])?, &decoded.pixels)?, picture));
    }
    if a.invert {
        return Err("--invert applies to one-channel (grey) models".into());
    }
    // The path `predict` takes: the same header, pixel and resize-buffer
    // checks, colour conversion and TensorFlow bilinear resize as training.
    let bytes = convnet::files::read_regular_file(&a.image, limits.max_file_bytes)?;
    let name = a.image.display().to_string();
    let opts = ModelImageOptions { channels: 3, limits, ..ModelImageOptions::default() };
    let decoded = decode_for_model(&name, &bytes, h32, w32, &opts)?;
    for note in &decoded.notes {
        eprintln!("note: {note}");
    }
    let picture = RgbImage::from_raw(w32, h32, decoded.pixels)
        .ok_or_else(|| format!("{name}: decoded to the wrong number of samples"))?;
    let mut values: Vec<f32> = picture.as_raw().iter().map(|&v| v as f32).collect();
    if vgg16 {
        preprocess_input(&mut values)?;
    }
    Ok((Tensor::from_slice(Shape::new(&[h, w, 3])?, &values)?, picture))
}

/// `picture` scaled up by an integer factor (nearest) until its shorter side is at least `min_side`.
fn enlarge(picture: &RgbImage, min_side: u32) -> RgbImage {
    let short = picture.width().min(picture.height()).max(1);
    let zoom = min_side.div_ceil(short).max(1);
    if zoom == 1 {
        return picture.clone();
    }
    image::imageops::resize(
        picture,
        picture.width() * zoom,
        picture.height() * zoom,
        image::imageops::FilterType::Nearest,
    )
}

pub fn run(command: VisualizeCommand, limits: Limits) -> CliResult<()> {
    match command {
        VisualizeCommand::Activations(a) => {
            let (model, vgg16) = model_of(&a.model, limits)?;
            let (x, _) = image_of(&model, &a.image, vgg16, limits)?;
            let options = GridOptions {
                per_row: a.per_row as usize,
                colormap: a.colormap,
                layers: a.layers.clone(),
                ..GridOptions::default()
            };
            let started = Instant::now();
            let grids = visualize::activation_grids(&model, &x, &options)?;
            std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
            for g in &grids {
                let index = model.layer_index(&g.name)?;
                let path = a.out.join(format!("{index:02}_{}.png", g.name));
                visualize::save_png(&g.image, &path)?;
                println!("{} ({}x{}x{}): {}", g.name, g.shape[0], g.shape[1], g.shape[2], path.display());
            }
            eprintln!("{} pictures in {:.2} s", grids.len(), started.elapsed().as_secs_f64());
            Ok(())
        }
        VisualizeCommand::Filters(a) => {
            let (model, vgg16) = model_of(&a.model, limits)?;
            convnet::files::check_writable(&a.out).map_err(|e| format!("--out: {e}"))?;
            let options = FilterOptions {
                filters: a.filters as usize,
                steps: a.steps as usize,
                step: a.step,
                input_max: a.input_max.unwrap_or(if vgg16 { 255.0 } else { 1.0 }),
                grey: a.grey,
                noise: a.noise,
                seed: a.seed,
                per_row: a.per_row as usize,
                ..FilterOptions::default()
            };
            let started = Instant::now();
            let p = visualize::filter_patterns(&model, &a.layer, &options)?;
            let seconds = started.elapsed().as_secs_f64();
            visualize::save_png(&p.grid, &a.out)?;
            let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
            let raised = p.initial.iter().zip(&p.last).filter(|(a, b)| b > a).count();
            println!(
                "{}: {} filters, {} steps in {seconds:.3} s; mean activation {:.4} -> {:.4}, raised for {raised} of {}",
                a.layer,
                options.filters,
                options.steps,
                mean(&p.initial),
                mean(&p.last),
                options.filters
            );
            println!("wrote {}", a.out.display());
            Ok(())
        }
        VisualizeCommand::Gradcam(a) => {
            let (model, vgg16) = model_of(&a.model, limits)?;
            convnet::files::check_writable(&a.out).map_err(|e| format!("--out: {e}"))?;
            let (x, picture) = image_of(&model, &a.image, vgg16, limits)?;
            let picture = enlarge(&picture, u32::try_from(a.min_side)?);
            let options =
                GradCamOptions { class: a.class, layer: a.layer.clone(), colormap: a.colormap, alpha: a.alpha };
            let started = Instant::now();
            let cam = visualize::grad_cam(&model, &x, &picture, &options)?;
            let seconds = started.elapsed().as_secs_f64();
            visualize::save_png(&cam.overlay, &a.out)?;
            println!(
                "class {} (output {:.4}), layer {} ({}x{}), {seconds:.3} s; wrote {}",
                cam.class,
                cam.output,
                cam.layer,
                cam.heatmap_size.0,
                cam.heatmap_size.1,
                a.out.display()
            );
            Ok(())
        }
    }
}
