//! Times the augmentation warp on the chapter's small-data batch (32 RGB
//! images of 150x150, random rotation +-0.1 turn, zoom +-20%, translation
//! +-10%, reflect, bilinear), for CPU-time measurements on a shared machine:
//!
//! ```text
//! cargo build --release -p convnet-kernels --example warp_batch
//! RAYON_NUM_THREADS=1 /usr/bin/time target/release/examples/warp_batch 200 [portable|avx2|avx512|reference]
//! ```
//!
//! Prints the wall time per batch; `/usr/bin/time`'s user time divided by the
//! batch count is the CPU cost per batch, whatever the machine's load.

use convnet_kernels::image::{affine_warp_at, reference, Affine, WarpOptions, WarpShape};
use convnet_kernels::simd::SimdLevel;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let batches: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let path = args.next().unwrap_or_else(|| SimdLevel::detect().name().to_string());
    let level = match path.as_str() {
        "portable" => Some(SimdLevel::Portable),
        "avx2" => Some(SimdLevel::Avx2),
        "avx512" => Some(SimdLevel::Avx512),
        "reference" => None,
        other => {
            eprintln!("unknown path {other:?}: portable, avx2, avx512 or reference");
            std::process::exit(2);
        }
    };
    let shape = WarpShape { n: 32, h: 150, w: 150, c: 3 };
    let len = shape.elements().expect("small shape");
    let mut seed = 1u32;
    let mut uniform = |lo: f32, hi: f32| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        lo + (hi - lo) * (seed as f32 / u32::MAX as f32)
    };
    let x: Vec<f32> = (0..len).map(|_| uniform(0.0, 1.0)).collect();
    let transforms: Vec<Affine> = (0..shape.n)
        .map(|_| {
            let (angle, tx, ty, zoom) =
                (uniform(-36.0, 36.0), uniform(-15.0, 15.0), uniform(-15.0, 15.0), uniform(0.8, 1.2));
            Affine::keras(0.5, 0.5, angle, tx, ty, zoom, 0.0, 0.0, 150, 150)
        })
        .collect();
    let o = WarpOptions::default();
    let mut out = vec![0.0; len];
    let start = Instant::now();
    for _ in 0..batches {
        match level {
            Some(level) => {
                if let Err(e) = affine_warp_at(level, &x, shape, &transforms, o, &mut out) {
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
            }
            None => {
                reference::affine_warp_reference(&x, shape, &transforms, o.interpolation, o.fill_mode, 0.0, &mut out)
            }
        }
    }
    let per = start.elapsed().as_secs_f64() / batches as f64;
    println!("{path}: {:.3} ms per 32x150x150x3 batch (wall), checksum {}", per * 1e3, out.iter().sum::<f32>());
}
