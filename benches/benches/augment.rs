//! The augmentation warp on the chapter's small-data batch: 32 RGB images of
//! 150x150, each with its own random rotation (+-0.1 turn), zoom (+-20%) and
//! translation (+-10%) composed into one matrix, reflect fill, bilinear
//! (Keras's defaults): the fast path at each available SIMD level (2 threads
//! unless RAYON_NUM_THREADS says otherwise) and the scalar oracle.
//!
//! ```text
//! cargo bench -p convnet-benches --bench augment
//! cargo bench -p convnet-benches --bench augment -- --warm-up-time 1 --measurement-time 5 --sample-size 30
//! ```
//!
//! Sample size 20, warm-up 0.5 s and measurement 2 s are the defaults of the
//! group config at the bottom; the command-line flags override them.

use convnet_kernels::image::{affine_warp_at, reference, Affine, WarpOptions, WarpShape};
use convnet_kernels::simd::SimdLevel;
use convnet_tensor::Rng;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn warp(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let shape = WarpShape { n: 32, h: 150, w: 150, c: 3 };
    let len = shape.elements().unwrap();
    let x: Vec<f32> = (0..len).map(|_| rng.uniform(0.0, 1.0)).collect();
    let transforms: Vec<Affine> = (0..shape.n)
        .map(|_| {
            Affine::keras(
                0.5,
                0.5,
                rng.uniform(-36.0, 36.0),
                rng.uniform(-15.0, 15.0),
                rng.uniform(-15.0, 15.0),
                rng.uniform(0.8, 1.2),
                0.0,
                0.0,
                shape.h,
                shape.w,
            )
        })
        .collect();
    let o = WarpOptions::default();
    let mut out = vec![0.0; len];
    let mut group = c.benchmark_group("affine_warp/32x150x150x3");
    group.throughput(Throughput::Elements(len as u64));
    for level in SimdLevel::available() {
        group.bench_function(level.name(), |b| {
            b.iter(|| {
                affine_warp_at(level, &x, shape, &transforms, o, &mut out).unwrap();
                black_box(&out);
            })
        });
    }
    group.bench_function("reference", |b| {
        b.iter(|| {
            reference::affine_warp_reference(
                &x,
                shape,
                &transforms,
                o.interpolation,
                o.fill_mode,
                o.fill_value,
                &mut out,
            );
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Defaults only: criterion applies the command line after this config.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = warp
}
criterion_main!(benches);
