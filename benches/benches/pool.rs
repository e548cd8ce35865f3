//! Max pooling 2x2 on the chapter's two pooling layers (batch 64), forward
//! and backward: one criterion group per layer and pass, with the SIMD/threaded
//! kernel at every level this CPU runs (`max_pool2d_*_at`) beside the scalar
//! `pool::reference` loops. Throughput is bytes moved (input + output, and
//! the u32 argmax).
//!
//! ```text
//! cargo bench -p convnet-benches --bench pool
//! cargo bench -p convnet-benches --bench pool -- 64x26x26x32/backward --measurement-time 5 --sample-size 50
//! ```
//!
//! Sample size 20, warm-up 0.3 s and measurement 1 s are the defaults of the
//! config at the bottom; the command-line flags override them.

use convnet_kernels::conv::Padding;
use convnet_kernels::pool::{self, reference, PoolShape};
use convnet_kernels::simd::SimdLevel;
use convnet_tensor::Rng;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn max_pool(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    for (name, h, ch) in [("64x26x26x32", 26, 32), ("64x11x11x64", 11, 64)] {
        let s = PoolShape::new(64, h, h, ch, (2, 2), (2, 2), Padding::Valid).unwrap();
        let x: Vec<f32> = (0..s.input_len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let gy: Vec<f32> = (0..s.output_len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let (mut y, mut am, mut gx) = (vec![0.0; s.output_len()], vec![0u32; s.output_len()], vec![0.0; s.input_len()]);
        let bytes = Throughput::Bytes((4 * (s.input_len() + 2 * s.output_len())) as u64);

        let mut group = c.benchmark_group(format!("max_pool_2x2/{name}/forward"));
        group.throughput(bytes.clone());
        for level in SimdLevel::available() {
            group.bench_function(level.name(), |b| {
                b.iter(|| {
                    pool::max_pool2d_forward_at(level, &s, &x, &mut y, &mut am).unwrap();
                    black_box((&y, &am));
                })
            });
        }
        group.bench_function("reference", |b| {
            b.iter(|| {
                reference::max_pool2d_forward(&s, &x, &mut y, &mut am).unwrap();
                black_box((&y, &am));
            })
        });
        group.finish();

        pool::max_pool2d_forward(&s, &x, &mut y, &mut am).unwrap();
        let mut group = c.benchmark_group(format!("max_pool_2x2/{name}/backward"));
        group.throughput(bytes);
        for level in SimdLevel::available() {
            group.bench_function(level.name(), |b| {
                b.iter(|| {
                    pool::max_pool2d_backward_at(level, &s, &gy, &am, &mut gx).unwrap();
                    black_box(&gx);
                })
            });
        }
        group.bench_function("reference", |b| {
            b.iter(|| {
                reference::max_pool2d_backward(&s, &gy, &am, &mut gx).unwrap();
                black_box(&gx);
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // Defaults only: `--warm-up-time` / `--measurement-time` / `--sample-size`
    // on the command line override them.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = max_pool
}
criterion_main!(benches);
