//! The fused inference convolution (`conv::fused`: conv + bias + ReLU, and
//! the 2x2 max pool when one follows) against what it replaces, the unfused
//! `direct` forward (ReLU in its epilogue) followed by `max_pool2d_forward`,
//! on the chapter model's three conv layers at batch 64 (pool threaded) and
//! batch 1 (fused on the calling thread), at every SIMD level this CPU runs.
//! At batch 1 it also runs `conv::blocked` (the batch-1 plan's kernel), and
//! the `dense` group times the chapter's dense layers at batch 1 and 64.
//! Throughput is the convolution's FLOPs (over the outputs the pool keeps
//! for the fused variant, the whole map for the unfused one, so the
//! figures compare time per call).
//!
//! ```text
//! cargo bench -p convnet-benches --bench fused
//! cargo bench -p convnet-benches --bench fused -- 1x13x13x32 --measurement-time 5
//! ```

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::blocked::BlockedConv;
use convnet_kernels::conv::fused::{FusedConv, FusedPool, Threading};
use convnet_kernels::conv::{conv2d_forward_at, ConvAlgo, ConvShape, Padding};
use convnet_kernels::dense::{dense_forward, DenseShape};
use convnet_kernels::pool::{max_pool2d_forward_at, PoolShape};
use convnet_kernels::simd::SimdLevel;
use convnet_tensor::Rng;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn fused(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let layers = [(28, 1, 32, FusedPool::Max2x2), (13, 32, 64, FusedPool::Max2x2), (5, 64, 64, FusedPool::None)];
    for n in [64, 1] {
        for (hw, ci, co, pool) in layers {
            let s = ConvShape::new(n, hw, hw, ci, co, 3, 3).unwrap();
            let x: Vec<f32> = (0..s.input_len()).map(|_| rng.uniform(0.0, 1.0)).collect();
            let w: Vec<f32> = (0..s.filter_len()).map(|_| rng.uniform(-0.1, 0.1)).collect();
            let b: Vec<f32> = (0..co).map(|_| rng.uniform(-0.1, 0.1)).collect();
            let threading = if n == 1 { Threading::CallingThread } else { Threading::Pool };
            let mut group = c.benchmark_group(format!("fused/{n}x{hw}x{hw}x{ci}->{co}"));
            group.throughput(Throughput::Elements(s.flops() as u64));
            for level in SimdLevel::available() {
                let conv = FusedConv::new_at(level, &s, Activation::Relu, pool).unwrap();
                let mut y = vec![0.0; conv.output_len(n).unwrap()];
                group.bench_function(format!("fused/{}", level.name()), |bch| {
                    bch.iter(|| {
                        conv.run(&x, n, &w, Some(&b), &mut y, threading).unwrap();
                        black_box(&y);
                    })
                });
                if n == 1 {
                    let conv = BlockedConv::new_at(level, &s, Activation::Relu, pool).unwrap();
                    group.bench_function(format!("blocked/{}", level.name()), |bch| {
                        bch.iter(|| {
                            conv.run(&x, n, &w, Some(&b), &mut y).unwrap();
                            black_box(&y);
                        })
                    });
                }
                let mut map = vec![0.0; s.output_len()];
                let ps = PoolShape::new(n, s.out_h(), s.out_w(), co, (2, 2), (2, 2), Padding::Valid).unwrap();
                let (mut py, mut am) = (vec![0.0; ps.output_len()], vec![0u32; ps.output_len()]);
                group.bench_function(format!("direct+pool/{}", level.name()), |bch| {
                    bch.iter(|| {
                        conv2d_forward_at(level, ConvAlgo::Direct, &s, &x, &w, Some(&b), Activation::Relu, &mut map)
                            .unwrap();
                        if pool == FusedPool::Max2x2 {
                            max_pool2d_forward_at(level, &ps, &map, &mut py, &mut am).unwrap();
                        }
                        black_box((&map, &py));
                    })
                });
            }
            group.finish();
        }
    }
}

/// The chapter's dense layers at batch 1 (`dense_forward`: a one-row GEMM,
/// which runs as a matrix-vector product) and at batch 64.
fn dense(c: &mut Criterion) {
    let mut rng = Rng::new(2);
    for (inputs, outputs) in [(576, 64), (64, 10)] {
        for batch in [1, 64] {
            let s = DenseShape { batch, inputs, outputs };
            let x: Vec<f32> = (0..batch * inputs).map(|_| rng.uniform(0.0, 1.0)).collect();
            let w: Vec<f32> = (0..inputs * outputs).map(|_| rng.uniform(-0.1, 0.1)).collect();
            let b: Vec<f32> = (0..outputs).map(|_| rng.uniform(-0.1, 0.1)).collect();
            let mut y = vec![0.0; batch * outputs];
            let mut group = c.benchmark_group(format!("dense/{batch}x{inputs}->{outputs}"));
            group.throughput(Throughput::Elements((2 * batch * inputs * outputs) as u64));
            group.bench_function("dense_forward", |bch| {
                bch.iter(|| {
                    dense_forward(&s, &x, &w, Some(&b), Activation::Relu, &mut y).unwrap();
                    black_box(&y);
                })
            });
            group.finish();
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! { name = benches; config = config(); targets = fused, dense }
criterion_main!(benches);
