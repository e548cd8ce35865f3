//! Times `Vgg16::load_imagenet` on a VGG16 notop weights file (the ImageNet
//! file's layout): building the 14.7M-parameter base and reading the 58 MB
//! file. Write a file with random weights in that layout with
//! `~/.cache/convnet-anchors-venv/bin/python crates/convnet/tests/fixtures/keras/make_fixtures.py --vgg16-notop /tmp/vgg16_notop.h5`,
//! then `cargo run --release -p convnet --example vgg16_import -- /tmp/vgg16_notop.h5`.
//!
//! Each run alternates three timings: building the base with initialised
//! weights alone, `load_imagenet` (which builds without initialising the
//! weights the file replaces), and the old way, an initialised build followed
//! by `load_keras_weights`.

use convnet::applications::vgg16::Vgg16;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: vgg16_import NOTOP.h5 [RUNS]")?;
    let runs: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let mut build = Vec::new();
    let mut total = Vec::new();
    let mut init_then_load = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let model = Vgg16::new().include_top(false).input_shape((150, 150, 3)).build()?;
        build.push(t.elapsed().as_secs_f64());
        drop(model);
        let t = Instant::now();
        let model = Vgg16::new().include_top(false).input_shape((150, 150, 3)).load_imagenet(&path)?;
        total.push(t.elapsed().as_secs_f64());
        assert_eq!(model.param_count(), 14_714_688);
        drop(model);
        let t = Instant::now();
        let mut model = Vgg16::new().include_top(false).input_shape((150, 150, 3)).build()?;
        model.load_keras_weights(&path)?;
        init_then_load.push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, t, old) = (median(&mut build), median(&mut total), median(&mut init_then_load));
    println!("build only (init 14.7M weights): median {b:.3} s over {runs} runs");
    println!("load_imagenet (uninitialised build + read + assign): median {t:.3} s");
    println!("initialised build + load_keras_weights: median {old:.3} s");
    Ok(())
}
