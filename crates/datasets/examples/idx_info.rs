//! Opens IDX files (raw or gzip, images or labels) and prints what they hold.
//!
//! ```text
//! cargo run --release -p convnet-datasets --example idx_info -- data/mnist/train-images-idx3-ubyte.gz
//! ```
//!
//! Also the timing harness for `docs/BENCHMARKS.md`, beside `gzip -dc FILE > /dev/null`.

use convnet_datasets::idx::{IdxImages, IdxLabels};

fn main() {
    let files: Vec<_> = std::env::args_os().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: idx_info FILE...");
        std::process::exit(2);
    }
    let mut failed = false;
    for file in files {
        let name = file.to_string_lossy();
        match IdxImages::open(&file) {
            Ok(images) => println!(
                "{name}: {} images of {}x{} ({})",
                images.len(),
                images.rows(),
                images.cols(),
                if images.is_mapped() { "memory-mapped" } else { "decompressed" }
            ),
            Err(images_err) => match IdxLabels::open(&file) {
                Ok(labels) => println!("{name}: {} labels", labels.len()),
                Err(labels_err) => {
                    eprintln!("not IDX images: {images_err}\nnot IDX labels: {labels_err}");
                    failed = true;
                }
            },
        }
    }
    if failed {
        std::process::exit(1);
    }
}
