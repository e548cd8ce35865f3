//! Quick side-by-side timing of the conv algorithms on the chapter's layers
//! and two VGG layers (median of repeated runs, release build):
//!
//! ```text
//! cargo run --release -p convnet-kernels --example conv_timing [-- FILTER]
//! ```
//!
//! FILTER (optional) keeps the shapes whose label contains it. The criterion
//! benches in `benches/` are the reference measurement; this is the quick look.

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{
    conv2d_backward_bias, conv2d_backward_data, conv2d_backward_filter, conv2d_forward, supports, ConvAlgo, ConvPass,
    ConvShape, Padding,
};
use std::time::Instant;

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[reps / 2]
}

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    // Optional second argument: a batch size to use instead of each layer's.
    let batch: Option<usize> = std::env::args().nth(2).and_then(|b| b.parse().ok());
    // Optional third argument: only this algorithm.
    let only: Option<ConvAlgo> = std::env::args().nth(3).and_then(|a| a.parse().ok());
    let same = |s: ConvShape| s.with_padding(Padding::Same).unwrap();
    let shapes = [
        ("mnist1 64x28x28x1->32", ConvShape::new(64, 28, 28, 1, 32, 3, 3).unwrap()),
        ("mnist2 64x13x13x32->64", ConvShape::new(64, 13, 13, 32, 64, 3, 3).unwrap()),
        ("mnist3 64x5x5x64->64", ConvShape::new(64, 5, 5, 64, 64, 3, 3).unwrap()),
        ("vgg56 8x56x56x64->64", same(ConvShape::new(8, 56, 56, 64, 64, 3, 3).unwrap())),
        ("vgg28 8x28x28x256->256", same(ConvShape::new(8, 28, 28, 256, 256, 3, 3).unwrap())),
    ];
    let algos = [ConvAlgo::Direct, ConvAlgo::Im2col, ConvAlgo::WinogradF2, ConvAlgo::WinogradF4, ConvAlgo::Auto];
    println!(
        "simd level: {}",
        convnet_kernels::simd::try_level().map_or_else(|e| e.to_string(), |l| l.name().to_string())
    );
    if filter == "gemm" {
        gemm_compare();
        return;
    }
    for (label, s) in shapes {
        if !label.contains(&filter) {
            continue;
        }
        let s = batch.map_or(s, |b| s.with_batch(b).unwrap());
        let reps = (2e9 / s.flops() as f64).clamp(5.0, 200.0) as usize;
        let x: Vec<f32> = (0..s.input_len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let w: Vec<f32> = (0..s.filter_len()).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let b = vec![0.1f32; s.c_out];
        let dy: Vec<f32> = (0..s.output_len()).map(|i| ((i * 15485863) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut y = vec![0f32; s.output_len()];
        let mut dx = vec![0f32; s.input_len()];
        let mut dw = vec![0f32; s.filter_len()];
        let mut db = vec![0f32; s.c_out];
        let gf = |ms: f64| s.flops() as f64 / ms / 1e6;
        for algo in algos {
            if only.is_some_and(|o| o != algo) {
                continue;
            }
            let fwd_only = std::env::args().nth(4).is_some_and(|a| a == "fwd");
            let run = |p| {
                if fwd_only && p != ConvPass::Forward {
                    return false;
                }
                let verdict = supports(algo, &s, p);
                if let Err(e) = &verdict {
                    // Shapes an algorithm cannot run are reported and skipped.
                    eprintln!("{e}");
                }
                verdict.is_ok()
            };
            let f = if run(ConvPass::Forward) {
                median_ms(reps, || conv2d_forward(algo, &s, &x, &w, Some(&b), Activation::Relu, &mut y).unwrap())
            } else {
                f64::NAN
            };
            let d = if run(ConvPass::BackwardData) {
                median_ms(reps, || conv2d_backward_data(algo, &s, &dy, &w, &mut dx).unwrap())
            } else {
                f64::NAN
            };
            let k = if run(ConvPass::BackwardFilter) {
                median_ms(reps, || conv2d_backward_filter(algo, &s, &x, &dy, &mut dw).unwrap())
            } else {
                f64::NAN
            };
            let bb = median_ms(reps, || conv2d_backward_bias(&s, &dy, &mut db).unwrap());
            println!(
                "{label:24} {:12} fwd {f:7.3} ms ({:5.0} GF/s)  bwd_data {d:7.3} ({:5.0})  bwd_filter {k:7.3} ({:5.0})  bias {bb:.3}  fwd+bwd(no dx) {:7.3}  fwd+bwd {:7.3}",
                algo.name(),
                gf(f),
                gf(d),
                gf(k),
                f + k + bb,
                f + d + k + bb
            );
        }
    }
}

/// Single-threaded GEMM on the im2col-equivalent shapes of the two VGG
/// layers and a chapter layer: ours (`gemm::sgemm`) vs matrixmultiply.
fn gemm_compare() {
    use convnet_kernels::gemm::{sgemm, MatLayout};
    for (label, m, k, n) in [
        ("vgg56 im2col", 8 * 56 * 56, 576, 64),
        ("vgg28 im2col", 8 * 28 * 28, 2304, 256),
        ("mnist2 im2col", 64 * 11 * 11, 288, 64),
        ("square 1024", 1024, 1024, 1024),
    ] {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 1000) as f32 / 1000.0).collect();
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let ours = median_ms(7, || {
            sgemm(1.0, &a, MatLayout::dense(m, k), false, &b, MatLayout::dense(k, n), false, 0.0, &mut c).unwrap()
        });
        let mm = median_ms(7, || {
            // SAFETY: a is m x k, b is k x n, c is m x n, all dense.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                )
            }
        });
        println!(
            "{label:14} {m}x{k}x{n}: ours {ours:8.3} ms ({:5.0} GF/s)  matrixmultiply {mm:8.3} ms ({:5.0} GF/s)",
            flops / ours / 1e6,
            flops / mm / 1e6
        );
    }
}
