//! Times Winograd F(2x2,3x3) / F(4x4,3x3) against im2col on the chapter's
//! and VGG's 3x3 layers (forward, backward-data, backward-filter), and measures their
//! error against the f64 reference on realistic data.
//!
//! ```text
//! cargo run --release -p convnet-kernels --example winograd_bench            # timings
//! cargo run --release -p convnet-kernels --example winograd_bench -- error   # accuracy
//! cargo run --release -p convnet-kernels --example winograd_bench -- time 256 winograd_f4 forward
//! ```
//!
//! Extra words after `time` keep only the rows whose layer, algorithm or
//! pass contains every one of them (for profiling one case).
//!
//! Timings: median of `RUNS` calls after two warm-ups, milliseconds and
//! direct-convolution-equivalent GFLOP/s (`2*N*Ho*Wo*Cout*Cin*9`), on the
//! rayon global pool (all cores unless `RAYON_NUM_THREADS` says otherwise).

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, reference, ConvAlgo, ConvPass, ConvShape, Padding};
use convnet_tensor::Rng;
use std::time::Instant;

const RUNS: usize = 21;

fn layers() -> Vec<(&'static str, ConvShape)> {
    let same = |n, hw, c_in, c_out| {
        ConvShape::new(n, hw, hw, c_in, c_out, 3, 3).and_then(|s| s.with_padding(Padding::Same)).expect("valid shape")
    };
    let valid = |n, hw, c_in, c_out| ConvShape::new(n, hw, hw, c_in, c_out, 3, 3).expect("valid shape");
    vec![
        ("chapter 64x13x13x32->64 valid", valid(64, 13, 32, 64)),
        ("chapter 64x5x5x64->64 valid", valid(64, 5, 64, 64)),
        ("VGG 8x56x56x64->64 same", same(8, 56, 64, 64)),
        ("VGG 8x28x28x256->256 same", same(8, 28, 256, 256)),
    ]
}

/// Random normal activations and Glorot-uniform weights (Keras's default init).
fn data(s: &ConvShape, rng: &mut Rng) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = (0..s.input_len()).map(|_| rng.standard_normal() as f32).collect();
    let limit = (6.0 / (9.0 * (s.c_in + s.c_out) as f32)).sqrt();
    let w = (0..s.filter_len()).map(|_| rng.uniform(-limit, limit)).collect();
    let g = (0..s.output_len()).map(|_| rng.standard_normal() as f32).collect();
    (x, w, g)
}

fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[RUNS / 2]
}

fn timings(filter: &[String]) {
    let mut rng = Rng::new(42);
    println!(
        "threads: {}, simd: {}",
        rayon::current_num_threads(),
        convnet_kernels::simd::try_level().map_or_else(|e| e.to_string(), |l| l.name().to_string())
    );
    println!("{:<32} {:<12} {:<14} {:>9} {:>9}", "layer", "algo", "pass", "ms", "GFLOP/s");
    for (name, s) in layers() {
        let (x, w, g) = data(&s, &mut rng);
        let mut y = vec![0.0; s.output_len()];
        let mut dx = vec![0.0; s.input_len()];
        let mut dw = vec![0.0; s.filter_len()];
        let gflop = s.flops() as f64 * 1e-9;
        for algo in [ConvAlgo::WinogradF4, ConvAlgo::WinogradF2, ConvAlgo::Im2col] {
            for pass in [ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter] {
                let row = format!("{name} {} {}", algo.name(), pass.name());
                if conv::supports(algo, &s, pass).is_err() || !filter.iter().all(|f| row.contains(f.as_str())) {
                    continue;
                }
                let ms = match pass {
                    ConvPass::Forward => median_ms(|| {
                        conv::conv2d_forward(algo, &s, &x, &w, None, Activation::Relu, &mut y).expect("forward")
                    }),
                    ConvPass::BackwardData => {
                        median_ms(|| conv::conv2d_backward_data(algo, &s, &g, &w, &mut dx).expect("backward-data"))
                    }
                    ConvPass::BackwardFilter => {
                        median_ms(|| conv::conv2d_backward_filter(algo, &s, &x, &g, &mut dw).expect("backward-filter"))
                    }
                };
                println!("{name:<32} {:<12} {:<14} {ms:>9.3} {:>9.1}", algo.name(), pass.name(), gflop / ms * 1e3);
            }
        }
    }
}

/// Max over outputs of `|y - ref|` divided by the largest `|ref|`, and the
/// max of `|y - ref| / sum(|x||w|)` (the window magnitude), per variant.
fn errors() {
    let mut rng = Rng::new(7);
    println!("{:<32} {:<12} {:<14} {:>12} {:>12}", "layer", "algo", "pass", "max|e|/max|y|", "max|e|/mag");
    for (name, s) in layers() {
        // One image of the VGG layers is enough (and keeps the f64 reference quick).
        let s = if s.h > 13 { s.with_batch(1).expect("batch 1") } else { s };
        let (x, w, g) = data(&s, &mut rng);
        let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<f32>>();
        let mut want = vec![0.0; s.output_len()];
        let mut mag = vec![0.0; s.output_len()];
        reference::forward(&s, &x, &w, None, &mut want);
        reference::forward(&s, &abs(&x), &abs(&w), None, &mut mag);
        let mut want_dw = vec![0.0; s.filter_len()];
        let mut mag_dw = vec![0.0; s.filter_len()];
        reference::backward_filter(&s, &x, &g, &mut want_dw);
        reference::backward_filter(&s, &abs(&x), &abs(&g), &mut mag_dw);
        let mut want_dx = vec![0.0; s.input_len()];
        let mut mag_dx = vec![0.0; s.input_len()];
        reference::backward_data(&s, &g, &w, &mut want_dx);
        reference::backward_data(&s, &abs(&g), &abs(&w), &mut mag_dx);
        for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4, ConvAlgo::Im2col] {
            let mut y = vec![f32::NAN; s.output_len()];
            conv::conv2d_forward(algo, &s, &x, &w, None, Activation::Linear, &mut y).expect("forward");
            report(name, algo, "forward", &y, &want, &mag);
            let mut dx = vec![f32::NAN; s.input_len()];
            conv::conv2d_backward_data(algo, &s, &g, &w, &mut dx).expect("backward-data");
            report(name, algo, "backward_data", &dx, &want_dx, &mag_dx);
            let mut dw = vec![f32::NAN; s.filter_len()];
            conv::conv2d_backward_filter(algo, &s, &x, &g, &mut dw).expect("backward-filter");
            report(name, algo, "backward_filter", &dw, &want_dw, &mag_dw);
        }
    }
}

fn report(name: &str, algo: ConvAlgo, pass: &str, got: &[f32], want: &[f32], mag: &[f32]) {
    let scale = want.iter().fold(0f64, |m, &r| m.max(r.abs() as f64));
    let (mut abs_err, mut rel_mag) = (0f64, 0f64);
    for ((&y, &r), &m) in got.iter().zip(want).zip(mag) {
        let e = (y as f64 - r as f64).abs();
        abs_err = abs_err.max(e);
        rel_mag = rel_mag.max(e / (m as f64).max(1e-30));
    }
    println!("{name:<32} {:<12} {pass:<14} {:>12.2e} {:>12.2e}", algo.name(), abs_err / scale, rel_mag);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("error") => errors(),
        Some("time") => timings(&args[1..]),
        _ => timings(&[]),
    }
}
