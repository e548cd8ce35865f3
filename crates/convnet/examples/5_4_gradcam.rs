//! Section 5.4.3 of "Deep Learning with Python": heatmaps of class
//! activation (Grad-CAM). For a few MNIST test digits, where the chapter's
//! model finds the evidence for the class it predicts: the gradient of the
//! class score with respect to the last conv layer's output weights its
//! channels; the weighted sum, relu'd and normalised, is upsampled and drawn
//! over the digit (jet, opacity 0.4, as the book).
//!
//! ```text
//! cargo run --release -p convnet -- train --save mnist.safetensors    # once: the trained model
//! cargo run --release -p convnet --example 5_4_gradcam -- mnist.safetensors 5_4_gradcam
//! cargo run --release -p convnet --example 5_4_gradcam                 # no file: trains 1 epoch first
//! ```
//!
//! Arguments: a model file written by `convnet train --save` (without one,
//! the example trains the chapter's model for **one epoch** on MNIST first,
//! and says so), and the output directory (default `5_4_gradcam`). The
//! command-line equivalent is
//! `convnet visualize gradcam --model mnist --weights FILE --image IMG --out FILE`.

use convnet::visualize::{grad_cam, save_png, GradCamOptions};
use convnet::{mnist_convnet, FitOptions, Loss, Metric, Model};
use convnet_datasets::Mnist;
use convnet_optim::RMSprop;
use convnet_tensor::{Shape, Tensor};
use image::{imageops, Rgb, RgbImage};

/// The trained model from `path`, or the chapter's model trained for one epoch.
fn trained_model(path: Option<&str>, mnist: &Mnist) -> Result<Model, Box<dyn std::error::Error>> {
    if let Some(path) = path {
        return Ok(Model::load(path)?);
    }
    println!(
        "no model file given: training the chapter's model for 1 epoch first (pass a file from `convnet train --save`)"
    );
    let mut model = mnist_convnet().build()?;
    model.compile(RMSprop::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy])?;
    model.fit_examples(&mnist.train, FitOptions { epochs: 1, batch_size: 64, ..FitOptions::default() })?;
    Ok(model)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = std::path::PathBuf::from(args.get(1).map_or("5_4_gradcam", String::as_str));
    let mnist = Mnist::load_default()?;
    let model = trained_model(args.first().map(String::as_str), &mnist)?;
    std::fs::create_dir_all(&out)?;
    for i in 0..4 {
        let bytes = mnist.test.image(i).ok_or("no test image")?;
        let pixels: Vec<f32> = bytes.iter().map(|&p| p as f32 / 255.0).collect();
        let digit = Tensor::from_slice(Shape::new(&[28, 28, 1])?, &pixels)?;
        // The picture the heatmap is drawn on: the digit, 8x larger.
        let small = RgbImage::from_fn(28, 28, |x, y| Rgb([bytes[(y * 28 + x) as usize]; 3]));
        let picture = imageops::resize(&small, 224, 224, imageops::FilterType::Nearest);
        let cam = grad_cam(&model, &digit, &picture, &GradCamOptions::default())?;
        let path = out.join(format!("test{i}_label{}_class{}.png", mnist.test.labels()[i], cam.class));
        save_png(&cam.overlay, &path)?;
        println!(
            "test digit {i} (label {}): predicted {} ({:.3}), heat from {} ({}x{}): {}",
            mnist.test.labels()[i],
            cam.class,
            cam.output,
            cam.layer,
            cam.heatmap_size.0,
            cam.heatmap_size.1,
            path.display()
        );
    }
    Ok(())
}
