//! Section 5.4.1 of "Deep Learning with Python": visualizing intermediate
//! activations. Every channel of every conv and pooling layer of the
//! chapter's MNIST model, for one test digit, one PNG per layer.
//!
//! ```text
//! cargo run --release -p convnet -- train --save mnist.safetensors    # once: the trained model
//! cargo run --release -p convnet --example 5_4_activations -- mnist.safetensors 5_4_activations
//! cargo run --release -p convnet --example 5_4_activations             # no file: trains 1 epoch first
//! ```
//!
//! Arguments: a model file written by `convnet train --save` (without one,
//! the example trains the chapter's model for **one epoch** on MNIST first,
//! about a minute, and says so), and the output directory (default
//! `5_4_activations`). The command-line equivalent is
//! `convnet visualize activations --model mnist --weights FILE --image IMG --out DIR`.

use convnet::visualize::{activation_grids, save_png, GridOptions};
use convnet::{mnist_convnet, FitOptions, Loss, Metric, Model};
use convnet_datasets::Mnist;
use convnet_optim::RMSprop;
use convnet_tensor::{Shape, Tensor};

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
    let out = std::path::PathBuf::from(args.get(1).map_or("5_4_activations", String::as_str));
    let mnist = Mnist::load_default()?;
    let model = trained_model(args.first().map(String::as_str), &mnist)?;

    // img_tensor = test_images[0]  (a 7), scaled to [0, 1] as in training
    let pixels: Vec<f32> = mnist.test.image(0).ok_or("no test image")?.iter().map(|&p| p as f32 / 255.0).collect();
    let digit = Tensor::from_slice(Shape::new(&[28, 28, 1])?, &pixels)?;
    println!("test digit 0 is a {}", mnist.test.labels()[0]);

    // activation_model = models.Model(inputs=model.input, outputs=layer_outputs)
    // activations = activation_model.predict(img_tensor)
    // ... one display_grid per layer, 16 images per row, each channel standardised, *64 + 128, clipped
    std::fs::create_dir_all(&out)?;
    for grid in activation_grids(&model, &digit, &GridOptions::default())? {
        let path = out.join(format!("{}.png", grid.name));
        save_png(&grid.image, &path)?;
        println!("{} {:?}: {}", grid.name, grid.shape, path.display());
    }
    Ok(())
}
