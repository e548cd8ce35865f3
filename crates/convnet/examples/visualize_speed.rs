//! The speed figures of docs/VISUALISE.md: Grad-CAM on VGG16 (224x224x3,
//! random weights: speed does not depend on the values) against one forward
//! pass and one forward+backward pass (the gradient of a class score with
//! respect to the input: every layer forward, every layer backward-data),
//! and filter patterns of the chapter's MNIST model (64 filters of
//! `conv2d_2`, 40 steps). Each timed `RUNS` times, alternating, medians
//! printed.
//!
//! ```text
//! cargo run --release -p convnet --example visualize_speed [RUNS=5]
//! ```

use convnet::applications::vgg16::Vgg16;
use convnet::gradients::{Objective, Wrt};
use convnet::visualize::{filter_patterns, grad_cam, FilterOptions, GradCamOptions};
use convnet_tensor::{Rng, Shape, Tensor};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    rayon::ThreadPoolBuilder::new().use_current_thread().build_global()?;
    let runs: usize = std::env::args().nth(1).map_or(Ok(5), |s| s.parse())?;
    let vgg = Vgg16::new().build()?;
    let mut rng = Rng::new(0);
    let x = Tensor::uniform(Shape::nhwc(1, 224, 224, 3), -120.0, 130.0, &mut rng)?;
    let image = Tensor::from_slice(Shape::new(&[224, 224, 3])?, x.data())?;
    let picture = image::RgbImage::from_pixel(224, 224, image::Rgb([128, 128, 128]));
    let mnist = convnet::mnist_convnet().build()?;
    let options = FilterOptions { filters: 64, steps: 40, ..FilterOptions::default() };
    let (mut fwd, mut fwd_bwd, mut cam, mut filters) = (vec![], vec![], vec![], vec![]);
    let time =
        |f: &mut dyn FnMut() -> Result<(), Box<dyn std::error::Error>>| -> Result<f64, Box<dyn std::error::Error>> {
            let t = Instant::now();
            f()?;
            Ok(t.elapsed().as_secs_f64())
        };
    // One untimed round first (buffers, caches).
    for round in 0..=runs {
        let a = time(&mut || {
            vgg.predict(&x, 1)?;
            Ok(())
        })?;
        let b = time(&mut || {
            vgg.gradient(&x, &Objective::ClassScore(vec![386]), &Wrt::Input)?;
            Ok(())
        })?;
        let c = time(&mut || {
            grad_cam(&vgg, &image, &picture, &GradCamOptions { class: Some(386), ..Default::default() })?;
            Ok(())
        })?;
        let d = time(&mut || {
            filter_patterns(&mnist, "conv2d_2", &options)?;
            Ok(())
        })?;
        if round > 0 {
            fwd.push(a);
            fwd_bwd.push(b);
            cam.push(c);
            filters.push(d);
        }
    }
    let (f, fb, c) = (median(fwd), median(fwd_bwd), median(cam));
    println!("VGG16 224x224, batch 1, {runs} runs, medians:");
    println!("  forward (predict):                    {f:.3} s");
    println!("  forward+backward (class score, dX):   {fb:.3} s");
    println!(
        "  Grad-CAM (block5_conv3):              {c:.3} s = {:.2}x forward+backward, {:.2}x forward",
        c / fb,
        c / f
    );
    println!("MNIST model, conv2d_2, 64 filters, 40 steps: {:.3} s (median)", median(filters));
    Ok(())
}
