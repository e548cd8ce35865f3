//! Inference speed of the chapter's model: `evaluate` throughput over the
//! 10,000 MNIST test images at batch 64 (and 256), and batch-1 `predict`
//! latency (median of 2,000 calls after 200 warm-up calls).
//!
//! ```text
//! cargo run --release -p convnet --example inference_speed [WEIGHTS]
//! ```
//!
//! Without a weights file the model keeps its initial weights: speed does not
//! depend on the values.

use convnet::{mnist_convnet, Loss, Metric, Model};
use convnet_datasets::Mnist;
use convnet_optim::RMSprop;
use convnet_tensor::{Shape, Tensor};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut model = match std::env::args().nth(1) {
        Some(path) => Model::load(path)?,
        None => mnist_convnet().build()?,
    };
    model.compile(RMSprop::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy])?;
    let mnist = Mnist::load_default()?;
    let test = &mnist.test;
    for batch in [64, 256] {
        let mut rates = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let (_, acc) = model.evaluate_examples(test, batch)?;
            rates.push((test.len() as f64 / t.elapsed().as_secs_f64(), acc));
        }
        rates.sort_by(|a, b| a.0.total_cmp(&b.0));
        println!(
            "evaluate, batch {batch}: median {:.0} images/s over 5 passes of {} images (accuracy {:.4})",
            rates[2].0,
            test.len(),
            rates[2].1
        );
    }
    let x = Tensor::from_slice(
        Shape::nhwc(1, 28, 28, 1),
        &test.pixels()[..784].iter().map(|&p| f32::from(p) / 255.0).collect::<Vec<_>>(),
    )?;
    for _ in 0..200 {
        model.predict(&x, 1)?;
    }
    let mut times: Vec<f64> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            model.predict(&x, 1).map(|_| t.elapsed().as_secs_f64())
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    println!("predict, batch 1: median {:.3} ms, p90 {:.3} ms over 2000 calls", times[1000] * 1e3, times[1800] * 1e3);
    Ok(())
}
