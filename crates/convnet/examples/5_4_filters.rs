//! Section 5.4.2 of "Deep Learning with Python": visualizing convnet
//! filters. The input pattern each filter of the chapter's MNIST model
//! responds to most, grown by gradient ascent from grey noise (40 steps of
//! the book's normalised-gradient step), for the first 32 filters of each of
//! its three conv layers: all filters of a layer in one batch.
//!
//! ```text
//! cargo run --release -p convnet -- train --save mnist.safetensors    # once: the trained model
//! cargo run --release -p convnet --example 5_4_filters -- mnist.safetensors 5_4_filters
//! cargo run --release -p convnet --example 5_4_filters                 # no file: trains 1 epoch first
//! ```
//!
//! Arguments: a model file written by `convnet train --save` (without one,
//! the example trains the chapter's model for **one epoch** on MNIST first,
//! and says so), and the output directory (default `5_4_filters`). The
//! command-line equivalent is
//! `convnet visualize filters --model mnist --weights FILE --layer conv2d_2 --out FILE`.

use convnet::visualize::{filter_patterns, save_png, FilterOptions};
use convnet::{mnist_convnet, FitOptions, Loss, Metric, Model};
use convnet_datasets::Mnist;
use convnet_optim::RMSprop;
use std::time::Instant;

/// The trained model from `path`, or the chapter's model trained for one epoch.
fn trained_model(path: Option<&str>) -> Result<Model, Box<dyn std::error::Error>> {
    if let Some(path) = path {
        return Ok(Model::load(path)?);
    }
    println!(
        "no model file given: training the chapter's model for 1 epoch first (pass a file from `convnet train --save`)"
    );
    let mnist = Mnist::load_default()?;
    let mut model = mnist_convnet().build()?;
    model.compile(RMSprop::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy])?;
    model.fit_examples(&mnist.train, FitOptions { epochs: 1, batch_size: 64, ..FitOptions::default() })?;
    Ok(model)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = std::path::PathBuf::from(args.get(1).map_or("5_4_filters", String::as_str));
    let model = trained_model(args.first().map(String::as_str))?;
    std::fs::create_dir_all(&out)?;
    // for layer_name in ['conv2d', 'conv2d_1', 'conv2d_2']: generate_pattern(layer_name, i) for i in range(...)
    for layer in ["conv2d", "conv2d_1", "conv2d_2"] {
        let options = FilterOptions { filters: 32, steps: 40, ..FilterOptions::default() };
        let started = Instant::now();
        let p = filter_patterns(&model, layer, &options)?;
        let path = out.join(format!("{layer}.png"));
        save_png(&p.grid, &path)?;
        let raised = p.initial.iter().zip(&p.last).filter(|(a, b)| b > a).count();
        println!(
            "{layer}: {} filters, {} steps in {:.2} s, mean activation raised for {raised}: {}",
            options.filters,
            options.steps,
            started.elapsed().as_secs_f64(),
            path.display()
        );
    }
    Ok(())
}
