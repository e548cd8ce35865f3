//! Loads an image folder and reports what it holds and how long the load took.
//!
//! ```text
//! cargo run --release -p convnet-datasets --example folder_info -- DIR [--size H,W]
//!     [--color-mode grayscale|rgb|rgba] [--cache CACHE_DIR] [--crop]
//! ```
//!
//! With `--cache`, a first run decodes and writes the cache, a second maps it.
//! The benchmark of docs/BENCHMARKS.md (TensorFlow side: `folder_tf.py`).

use convnet_datasets::folder::{self, FolderOptions};
use std::time::Instant;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut opts = FolderOptions { image_size: (150, 150), shuffle: false, ..FolderOptions::default() };
    let mut dir = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--size" => {
                let v = args.next().ok_or("--size needs H,W")?;
                let (h, w) = v.split_once(',').ok_or("--size needs H,W")?;
                opts.image_size = (h.parse()?, w.parse()?);
            }
            "--color-mode" => opts.color_mode = args.next().ok_or("--color-mode needs a value")?.parse()?,
            "--cache" => opts.cache_dir = Some(args.next().ok_or("--cache needs a directory")?.into()),
            "--crop" => opts.crop_to_aspect_ratio = true,
            _ if dir.is_none() => dir = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}").into()),
        }
    }
    let dir = dir.ok_or("usage: folder_info DIR [--size H,W] [--color-mode M] [--cache DIR] [--crop]")?;
    let start = Instant::now();
    let ds = folder::load(&dir, &opts)?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{{\"images\": {}, \"classes\": {:?}, \"shape\": {:?}, \"cache\": \"{:?}\", \"seconds\": {:.3}, \"images_per_s\": {:.1}, \"threads\": {}}}",
        ds.len(),
        ds.class_names(),
        ds.input_shape(),
        ds.cache_status(),
        seconds,
        ds.len() as f64 / seconds,
        rayon::current_num_threads()
    );
    Ok(())
}
