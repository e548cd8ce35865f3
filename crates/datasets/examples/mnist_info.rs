//! Loads the default MNIST copy (verifying its SHA-256 digests) and prints the
//! shapes of the tensors a model trains on and the class counts.
//!
//! ```text
//! cargo run --release -p convnet-datasets --example mnist_info [DIR]
//! ```
//!
//! With `DIR`, loads that MNIST-format directory (or `.npz`) instead, strictly
//! parsed but without the digest check.

use convnet_datasets::{Mnist, CLASSES};
use std::time::Instant;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> convnet_datasets::Result<()> {
    let start = Instant::now();
    let (source, mnist) = match std::env::args_os().nth(1) {
        Some(dir) => (format!("{} (not digest-checked)", dir.to_string_lossy()), Mnist::load(&dir)?),
        None => {
            let dir = Mnist::default_dir()?;
            (format!("{} (SHA-256 verified)", dir.display()), Mnist::load_default()?)
        }
    };
    let loaded = start.elapsed();
    println!("MNIST from {source}, loaded in {:.0} ms", loaded.as_secs_f64() * 1e3);
    for (name, ds) in [("train", &mnist.train), ("test", &mnist.test)] {
        let x = ds.images_f32();
        let y = ds.labels_onehot();
        println!("{name:>5}: x {} f32 in [0, 1], y {} one-hot", x.shape(), y.shape());
        let counts = ds.class_counts();
        let line: Vec<String> = (0..CLASSES).map(|c| format!("{c}:{}", counts[c])).collect();
        println!("       class counts {}", line.join(" "));
    }
    Ok(())
}
